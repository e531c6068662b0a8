//! Range and relation checks of configuration values. Each takes the dotted
//! key it checks, and its error names that key and the value:
//! `invalid value for server.keep_alive_secs: 120 must be between 1 and 119`.

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::Duration;

use super::error::{ConfigError, invalid};

/// Longest duration [`seconds`] accepts: a day.
pub const MAX_SECONDS: f64 = 86_400.0;

/// `v` is at least 1.
pub fn positive<T: PartialOrd + From<u8> + Display>(key: &str, v: T) -> Result<T, ConfigError> {
    if v < T::from(1) {
        Err(invalid(key, format!("must be at least 1 (got {v})")))
    } else {
        Ok(v)
    }
}

/// `v` is at least `min`.
pub fn at_least<T: PartialOrd + Display>(key: &str, v: T, min: T) -> Result<T, ConfigError> {
    if v < min {
        Err(invalid(key, format!("{v} must be at least {min}")))
    } else {
        Ok(v)
    }
}

/// `v` is at most `max`.
pub fn at_most<T: PartialOrd + Display>(key: &str, v: T, max: T) -> Result<T, ConfigError> {
    if v > max {
        Err(invalid(key, format!("{v} must be at most {max}")))
    } else {
        Ok(v)
    }
}

/// `lo <= v <= hi`.
pub fn between<T: PartialOrd + Display>(key: &str, v: T, lo: T, hi: T) -> Result<T, ConfigError> {
    if v < lo || v > hi {
        Err(invalid(key, format!("{v} must be between {lo} and {hi}")))
    } else {
        Ok(v)
    }
}

/// `v` (of `key`) is at least `other` (of `other_key`).
pub fn not_below<T: PartialOrd + Display>(
    key: &str,
    v: T,
    other_key: &str,
    other: T,
) -> Result<T, ConfigError> {
    if v < other {
        Err(invalid(
            key,
            format!("{v} must be at least {other_key} ({other})"),
        ))
    } else {
        Ok(v)
    }
}

/// `v` (of `key`) is greater than `other` (of `other_key`).
pub fn above<T: PartialOrd + Display>(
    key: &str,
    v: T,
    other_key: &str,
    other: T,
) -> Result<T, ConfigError> {
    if v > other {
        Ok(v)
    } else {
        Err(invalid(
            key,
            format!("{v} must be greater than {other_key} ({other})"),
        ))
    }
}

/// A duration written as seconds with a fraction: positive, finite and at
/// most [`MAX_SECONDS`].
pub fn seconds(key: &str, secs: f64) -> Result<Duration, ConfigError> {
    if !(secs.is_finite() && secs > 0.0 && secs <= MAX_SECONDS) {
        return Err(invalid(
            key,
            format!("{secs} is not a number of seconds in (0, {MAX_SECONDS}]"),
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The value `options` gives for the word `v`, e.g. a compression name.
pub fn one_of<T: Copy>(key: &str, v: &str, options: &[(&str, T)]) -> Result<T, ConfigError> {
    if let Some((_, t)) = options.iter().find(|(name, _)| *name == v) {
        return Ok(*t);
    }
    let names: Vec<String> = options.iter().map(|(n, _)| format!("{n:?}")).collect();
    let list = match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(invalid(key, format!("{v:?} must be {list}")))
}

/// `v` is a log level: error, warn, info, debug or trace.
pub fn log_level(key: &str, v: &str) -> Result<(), ConfigError> {
    if ["error", "warn", "info", "debug", "trace"].contains(&v) {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{v:?} must be error, warn, info, debug or trace"),
        ))
    }
}

/// `v` is a log format, `text` or `json`: whether logs are JSON.
pub fn log_json(key: &str, v: &str) -> Result<bool, ConfigError> {
    one_of(key, v, &[("text", false), ("json", true)])
}

/// `v` is an `IP:port` socket address.
pub fn socket_addr(key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse()
        .map_err(|_| invalid(key, format!("{v:?} is not an IP:port address")))
}

/// `v` starts with `http://` or `https://`.
pub fn http_url(key: &str, v: &str) -> Result<(), ConfigError> {
    if v.starts_with("http://") || v.starts_with("https://") {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{v:?} must start with http:// or https://"),
        ))
    }
}

/// `v` is not empty.
pub fn required<'a>(key: &str, v: &'a str, when: &str) -> Result<&'a str, ConfigError> {
    if v.is_empty() {
        Err(invalid(key, format!("must be set {when}")))
    } else {
        Ok(v)
    }
}
