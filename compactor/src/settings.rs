//! Settings, from command-line flags or the environment (every flag has a
//! `HORIZON_*` variable; the Lambda function reads only the environment).

use std::path::PathBuf;
use std::time::Duration;

use horizon_shared::store::{LocationError, S3Options, StoreLocation};

/// Settings that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The store location is wrong; `flag` names the flag at fault.
    #[error("{flag}: {}", .source.message)]
    Location {
        /// The flag and its variable.
        flag: &'static str,
        /// What is wrong.
        source: LocationError,
    },
    /// No compacted prefix.
    #[error("--compacted-prefix (HORIZON_COMPACTED_PREFIX) must not be empty")]
    EmptyCompactedPrefix,
    /// The raw and compacted prefixes overlap (or the raw one is empty).
    #[error(
        "--raw-prefix {raw:?} and --compacted-prefix {compacted:?} must be separate, non-empty prefixes"
    )]
    OverlappingPrefixes {
        /// The raw prefix.
        raw: String,
        /// The compacted prefix.
        compacted: String,
    },
    /// The rollup prefix is empty or overlaps the raw or compacted one.
    #[error(
        "--rollup-prefix {rollups:?} must be a non-empty prefix separate from --raw-prefix {raw:?} and --compacted-prefix {compacted:?}"
    )]
    RollupPrefix {
        /// The rollup prefix.
        rollups: String,
        /// The raw prefix.
        raw: String,
        /// The compacted prefix.
        compacted: String,
    },
}

/// A size that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// The unit is not one of ours.
    #[error("unknown unit {unit:?} in {input:?} (use B, KiB, MiB or GiB)")]
    UnknownUnit {
        /// The unit given.
        unit: String,
        /// The whole text.
        input: String,
    },
    /// No number.
    #[error("{0:?} is not a size like 256MiB")]
    NotASize(String),
    /// Zero, or too large.
    #[error("{0:?} is out of range")]
    OutOfRange(String),
}

/// What to do with raw objects once their rows are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RawRetention {
    /// Delete them right after the commit.
    Delete,
    /// Leave them for a bucket lifecycle rule; manifests remember which
    /// were folded in so they are not merged twice.
    Keep,
}

/// Compactor settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Object store of the raw and compacted objects: s3://bucket/prefix,
    /// file:///dir, or a directory (the relay's default is data/objects).
    #[arg(long, env = "HORIZON_STORE_URL", default_value = "data/objects")]
    pub store_url: String,

    /// S3 region (default: AWS_REGION, else us-east-1).
    #[arg(long, env = "HORIZON_S3_REGION", default_value = "")]
    pub s3_region: String,

    /// S3 endpoint for S3-compatible stores, e.g. http://127.0.0.1:9000.
    #[arg(long, env = "HORIZON_S3_ENDPOINT", default_value = "")]
    pub s3_endpoint: String,

    /// Path-style S3 addressing (most S3-compatible stores need it).
    #[arg(long, env = "HORIZON_S3_PATH_STYLE")]
    pub s3_path_style: bool,

    /// Allow a plain-HTTP S3 endpoint.
    #[arg(long, env = "HORIZON_S3_ALLOW_HTTP")]
    pub s3_allow_http: bool,

    /// Key prefix of the relays' raw micro-batches.
    #[arg(long, env = "HORIZON_RAW_PREFIX", default_value = "raw")]
    pub raw_prefix: String,

    /// Key prefix of the compacted dataset.
    #[arg(long, env = "HORIZON_COMPACTED_PREFIX", default_value = "compacted")]
    pub compacted_prefix: String,

    /// Key prefix of the rollups (per-series aggregates by minute and by
    /// hour, beside the compacted dataset). Default: the compacted prefix
    /// with its last part `compacted` replaced by `rollups` (`compacted` ->
    /// `rollups`, `lake/compacted` -> `lake/rollups`), or with `-rollups`
    /// appended, so two compacted datasets never share rollups.
    #[arg(long, env = "HORIZON_ROLLUP_PREFIX")]
    pub rollup_prefix: Option<String>,

    /// An hour is closed, and compacted, once it ended this long ago (seconds).
    #[arg(long, env = "HORIZON_ALLOWED_LATENESS_SECS", default_value_t = 900)]
    pub allowed_lateness_secs: u64,

    /// Shards per hour for hours compacted for the first time (an hour keeps
    /// the shard count of its first compaction).
    #[arg(long, env = "HORIZON_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub shards: u32,

    /// Target size of a compacted file (e.g. 256MiB, 1GiB; plain numbers are bytes).
    #[arg(long, env = "HORIZON_TARGET_FILE_SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub target_file_size: u64,

    /// Rows per row group of the compacted files.
    #[arg(long, env = "HORIZON_ROW_GROUP_ROWS", default_value_t = 131_072, value_parser = clap::value_parser!(u64).range(1024..))]
    pub row_group_rows: u64,

    /// Memory for sorting (e.g. 512MiB): raw rows are sorted in chunks of
    /// about a third of this and spilled to the work directory.
    #[arg(long, env = "HORIZON_SORT_MEMORY", default_value = "512MiB", value_parser = parse_size)]
    pub sort_memory: u64,

    /// Raw objects fetched at once.
    #[arg(long, env = "HORIZON_READ_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub read_concurrency: u32,

    /// A shard of a power-of-two count fetches only the parts of a raw
    /// object it needs (footer, offset index, its pages): parts closer than
    /// this are fetched in one GET, and an object no larger than this is
    /// fetched whole (e.g. 1MiB, 0). A GET costs about what a mebibyte of
    /// in-region transfer does, in time and in money; 0 fetches exactly
    /// the parts.
    #[arg(long, env = "HORIZON_READ_GAP", default_value = "1MiB", value_parser = parse_size_or_zero)]
    pub read_gap: u64,

    /// What happens to raw objects after their rows are committed.
    #[arg(
        long,
        env = "HORIZON_RAW_RETENTION",
        value_enum,
        default_value = "delete"
    )]
    pub raw_retention: RawRetention,

    /// How long a unit's lease lasts without renewal (seconds); a crashed
    /// run's unit is taken over after this. Must exceed one unit's run time.
    #[arg(long, env = "HORIZON_LEASE_SECS", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(10..))]
    pub lease_secs: u64,

    /// Lambda only: start no unit when fewer than this many seconds of the
    /// invocation remain (units left over are taken by the next invocation).
    #[arg(long, env = "HORIZON_LAMBDA_STOP_MARGIN_SECS", default_value_t = 300)]
    pub lambda_stop_margin_secs: u64,

    /// Late data: an already compacted unit is rewritten whole (a major
    /// compaction) when its late files would hold more than this share of
    /// its rows; below it, late rows go to a late file beside the compacted
    /// ones (0 rewrites the unit for every late object, as before).
    #[arg(long, env = "HORIZON_LATE_MAJOR_SHARE", default_value_t = 0.25, value_parser = parse_share)]
    pub late_major_share: f64,
    /// Late data: a major compaction when a unit would have more late files
    /// than this (each run that folds late data adds at most one).
    #[arg(long, env = "HORIZON_LATE_MAX_FILES", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub late_max_files: u32,
    /// Late data: a major compaction when a unit's oldest late file was
    /// committed at least this long ago (seconds) and more late data arrives.
    #[arg(long, env = "HORIZON_LATE_MAX_AGE_SECS", default_value_t = 86_400)]
    pub late_max_age_secs: u64,
    /// Local directory for sort spills and files being written (default: the
    /// system temporary directory; on Lambda, /tmp).
    #[arg(long, env = "HORIZON_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
}

impl Settings {
    /// Settings from flags (and `HORIZON_*` variables for flags not given);
    /// `args` excludes the program name.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        let argv = std::iter::once(std::ffi::OsString::from("telemetry-compactor"))
            .chain(args.into_iter().map(Into::into));
        <Only as clap::Parser>::try_parse_from(argv).map(|o| o.settings)
    }

    /// The store location, or what is wrong with the settings.
    pub fn location(&self) -> Result<StoreLocation, SettingsError> {
        let s3 = S3Options {
            region: self.s3_region.clone(),
            endpoint: self.s3_endpoint.clone(),
            path_style: self.s3_path_style,
            allow_http: self.s3_allow_http,
            access_key_id: String::new(),
            secret_access_key: String::new(),
        };
        StoreLocation::parse(&self.store_url, &s3).map_err(|source| {
            let flag = match source.setting {
                "endpoint" => "--s3-endpoint (HORIZON_S3_ENDPOINT)",
                _ => "--store-url (HORIZON_STORE_URL)",
            };
            SettingsError::Location { flag, source }
        })
    }

    /// Checks settings that flags alone cannot.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.location()?;
        let raw = self.raw_prefix.trim_matches('/');
        let compacted = self.compacted_prefix.trim_matches('/');
        if compacted.is_empty() {
            return Err(SettingsError::EmptyCompactedPrefix);
        }
        if raw == compacted
            || raw.starts_with(&format!("{compacted}/"))
            || compacted.starts_with(&format!("{raw}/"))
            || raw.is_empty()
        {
            return Err(SettingsError::OverlappingPrefixes {
                raw: raw.to_owned(),
                compacted: compacted.to_owned(),
            });
        }
        let rollups = self.rollups();
        let rollups = rollups.as_str();
        let overlaps = |a: &str, b: &str| {
            a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
        };
        if rollups.is_empty() || overlaps(rollups, raw) || overlaps(rollups, compacted) {
            return Err(SettingsError::RollupPrefix {
                rollups: rollups.to_owned(),
                raw: raw.to_owned(),
                compacted: compacted.to_owned(),
            });
        }
        Ok(())
    }

    /// The rollup prefix (`--rollup-prefix`, or the one the compacted
    /// prefix implies), slashes trimmed.
    pub fn rollups(&self) -> String {
        if let Some(p) = &self.rollup_prefix {
            return p.trim_matches('/').to_owned();
        }
        let compacted = self.compacted_prefix.trim_matches('/');
        match compacted.rsplit_once('/') {
            Some((parent, "compacted")) => format!("{parent}/rollups"),
            None if compacted == "compacted" => "rollups".to_owned(),
            _ => format!("{compacted}-rollups"),
        }
    }

    /// Allowed lateness.
    pub fn lateness(&self) -> Duration {
        Duration::from_secs(self.allowed_lateness_secs)
    }

    /// Bytes of decoded rows, with the sort's index of them, sorted in
    /// memory at once: five eighths of `--sort-memory`.
    pub fn sort_chunk_bytes(&self) -> usize {
        usize::try_from(self.sort_memory / 8 * 5).unwrap_or(usize::MAX)
    }

    /// Bytes of decoded raw objects fetched ahead of the sort: an eighth of
    /// `--sort-memory` (fewer objects at once than `--read-concurrency`
    /// when they are large).
    pub fn read_ahead_bytes(&self) -> usize {
        usize::try_from(self.sort_memory / 8).unwrap_or(usize::MAX)
    }

    /// The work directory.
    pub fn work_dir(&self) -> PathBuf {
        self.work_dir.clone().unwrap_or_else(std::env::temp_dir)
    }
}

/// Parses a share: a number from 0 to 1 (0.25), or a percentage (25%).
pub fn parse_share(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v: f64 = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse(),
    }
    .map_err(|_| format!("{s:?} is not a share like 0.25 or 25%"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{s:?} is not between 0 and 1 (0% and 100%)"));
    }
    Ok(v)
}

/// [`parse_size`], or 0.
pub fn parse_size_or_zero(s: &str) -> Result<u64, SizeError> {
    match s.trim() {
        "0" => Ok(0),
        _ => parse_size(s),
    }
}

/// Parses a size: a number of bytes with an optional unit (B, KiB, MiB,
/// GiB, or KB/MB/GB as powers of 1000).
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(SizeError::UnknownUnit {
                unit: other.to_owned(),
                input: s.to_owned(),
            });
        }
    };
    let n: f64 = num.parse().map_err(|_| SizeError::NotASize(s.to_owned()))?;
    let bytes = (n * mult as f64).round();
    if !(1.0..=1e18).contains(&bytes) {
        return Err(SizeError::OutOfRange(s.to_owned()));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("0").is_err());
        assert!(
            parse_size("12 parsecs")
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn defaults_and_validation() {
        let s = Settings::from_args(Vec::<String>::new()).unwrap();
        assert_eq!(s.store_url, "data/objects");
        assert_eq!(s.target_file_size, 256 << 20);
        assert!(s.validate().is_ok());
        let same = Settings::from_args(["--raw-prefix", "x", "--compacted-prefix", "x/"]).unwrap();
        assert!(
            same.validate()
                .unwrap_err()
                .to_string()
                .contains("separate")
        );
        let nested = Settings::from_args([
            "--raw-prefix",
            "data",
            "--compacted-prefix",
            "data/compacted",
        ])
        .unwrap();
        assert!(nested.validate().is_err());
        // Rollups sit beside the compacted dataset, never inside another.
        assert_eq!(s.rollups(), "rollups");
        let lake = Settings::from_args(["--compacted-prefix", "/lake/compacted/"]).unwrap();
        assert_eq!(lake.rollups(), "lake/rollups");
        let other = Settings::from_args(["--compacted-prefix", "scratch"]).unwrap();
        assert_eq!(other.rollups(), "scratch-rollups");
        let inside = Settings::from_args(["--rollup-prefix", "compacted/r"]).unwrap();
        assert!(
            inside
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--rollup-prefix")
        );
        let bad = Settings::from_args(["--store-url", "gs://bucket"]).unwrap();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("--store-url")
        );
        assert!(Settings::from_args(["--shards", "0"]).is_err());
    }

    #[test]
    fn shares() {
        assert_eq!(parse_share("0.25"), Ok(0.25));
        assert_eq!(parse_share("10%"), Ok(0.1));
        assert_eq!(parse_share("0"), Ok(0.0));
        assert!(parse_share("1.5").is_err());
        assert!(parse_share("-1%").is_err());
        assert!(parse_share("a lot").is_err());
        let s = Settings::from_args(["--late-major-share", "5%"]).unwrap();
        assert_eq!(s.late_major_share, 0.05);
        assert_eq!(s.late_max_files, 16);
    }
}
