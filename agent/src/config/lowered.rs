//! Settings lowered to fit another. A flag or key that lowers a setting
//! the operator did not write (`--interval 1` and the 5 s default scrape
//! timeout) says so at start, naming both and their values: the agent logs
//! each as a warning, and `--check-config` prints it.

/// One setting lowered to fit another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lowered {
    /// The setting lowered, by its key (`scrape.timeout_secs`).
    pub setting: String,
    /// Its value before, as written or by default, with where it came from
    /// when that is another key.
    pub from: String,
    /// Its value now.
    pub to: String,
    /// What lowered it: a flag or a key, with its value.
    pub by: String,
}

impl std::fmt::Display for Lowered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} lowered from {} to {} by {}",
            self.setting, self.from, self.to, self.by
        )
    }
}

/// Seconds as the notes write them: `5 s`, `0.5 s`.
pub(super) fn secs(v: f64) -> String {
    format!("{v} s")
}
