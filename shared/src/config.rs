//! Configuration files, as the relay and the agent read them: YAML,
//! `${VAR}` expanded first ([`crate::envsubst`]), unknown keys refused by the
//! caller's serde types (`deny_unknown_fields`), and one error type whose
//! messages name the file, the line, or the dotted key at fault.
//!
//! - [`load_file`], [`load_yaml`]: the one loader of both binaries.
//! - [`check`]: range and relation checks used by their validation.
//! - [`host`]: host names (one rule for a default relay or node name).
//! - [`tls`]: where certificates come from ([`TlsSource`]).

use std::path::Path;

use serde::de::DeserializeOwned;

pub mod check;
mod error;
pub mod host;
pub mod tls;

pub use error::{ConfigError, invalid};
pub use tls::{TlsPaths, TlsSource};

/// Reads a configuration file, expands its `${VAR}` references from the
/// process environment and parses it into `T` (not yet validated).
pub fn load_file<T: DeserializeOwned + Default>(path: &Path) -> Result<T, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: origin.clone(),
        source,
    })?;
    load_yaml(&text, &origin, process_env)
}

/// Expands `${VAR}` references (looked up by `env`) and parses the YAML into
/// `T`; empty text gives `T::default()`. `origin` names the text in errors.
pub fn load_yaml<T: DeserializeOwned + Default>(
    text: &str,
    origin: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<T, ConfigError> {
    let text = crate::envsubst::expand_with(text, env).map_err(|source| ConfigError::Env {
        path: origin.to_owned(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_saphyr::from_str(&text).map_err(|e| ConfigError::Parse {
        path: origin.to_owned(),
        message: e.to_string(),
    })
}

/// A variable of the process environment, for [`load_yaml`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests;
