//! Configuration files, as the relay and the agent read them: YAML,
//! `${VAR}` expanded first ([`crate::envsubst`]), unknown keys refused by the
//! caller's serde types (`deny_unknown_fields`), and one error type whose
//! messages name the file, the line, or the dotted key at fault.

use std::path::Path;

use serde::de::DeserializeOwned;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A `${VAR}` reference could not be expanded.
    #[error("{path}: {source}")]
    Env {
        /// The file.
        path: String,
        /// The cause.
        source: crate::envsubst::EnvError,
    },
    /// The YAML is malformed, has an unknown key or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid value for {key}: {message}")]
    Invalid {
        /// The dotted key, e.g. `server.max_connections`.
        key: String,
        /// What is wrong, with the value.
        message: String,
    },
}

/// An [`ConfigError::Invalid`] for `key`.
pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Reads a configuration file: its text, and its name for errors.
pub fn read_file(path: &Path) -> Result<(String, String), ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: origin.clone(),
        source,
    })?;
    Ok((text, origin))
}

/// Expands `${VAR}` references (looked up by `env`) and parses the YAML into
/// `T`; empty text gives `T::default()`. `origin` names the text in errors.
pub fn parse_yaml<T: DeserializeOwned + Default>(
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
