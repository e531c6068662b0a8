//! The one error type of configuration loading and validation.

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

impl ConfigError {
    /// Adds the reason for a bound, in brackets, to an
    /// [`ConfigError::Invalid`] message; other errors are returned as they are.
    #[must_use]
    pub fn because(self, reason: &str) -> Self {
        match self {
            Self::Invalid { key, message } => Self::Invalid {
                key,
                message: format!("{message} ({reason})"),
            },
            other => other,
        }
    }
}

/// An [`ConfigError::Invalid`] for `key`.
pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}
