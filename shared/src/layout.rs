//! Object-key layout of the raw micro-batches.
//!
//! ```text
//! <raw_prefix>/dt=YYYY-MM-DD/hour=HH/<relay_id>-<boot_ms>-<seq>.parquet
//! ```
//!
//! `dt` and `hour` are the UTC event hour of every row in the object (a
//! flush touching two hours writes two objects). `relay_id` names the relay,
//! `boot_ms` the relay process's start (Unix milliseconds) and `seq` counts
//! the objects that process wrote, so names are unique across relays and
//! restarts; objects are written with create-only semantics, so a clash
//! would fail rather than overwrite.

use time::OffsetDateTime;

/// A UTC event hour, the unit of partitioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hour {
    /// Unix seconds of the hour's start.
    pub start_unix_secs: i64,
}

impl Hour {
    /// The hour containing `unix_nanos`.
    pub fn of_nanos(unix_nanos: i64) -> Self {
        let secs = unix_nanos.div_euclid(1_000_000_000);
        Self {
            start_unix_secs: secs - secs.rem_euclid(3600),
        }
    }

    /// `YYYY-MM-DD` and `HH` of the hour, in UTC.
    pub fn parts(&self) -> (String, String) {
        let t = OffsetDateTime::from_unix_timestamp(self.start_unix_secs)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        (
            format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
            format!("{:02}", t.hour()),
        )
    }

    /// The hive-style partition path `dt=YYYY-MM-DD/hour=HH`.
    pub fn partition(&self) -> String {
        let (dt, hour) = self.parts();
        format!("dt={dt}/hour={hour}")
    }
}

/// Key of a raw micro-batch object.
pub fn raw_object_key(
    raw_prefix: &str,
    hour: Hour,
    relay_id: &str,
    boot_ms: i64,
    seq: u64,
) -> String {
    let prefix = raw_prefix.trim_matches('/');
    let part = hour.partition();
    if prefix.is_empty() {
        format!("{part}/{relay_id}-{boot_ms}-{seq:08}.parquet")
    } else {
        format!("{prefix}/{part}/{relay_id}-{boot_ms}-{seq:08}.parquet")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_and_keys() {
        // 2023-11-14T22:13:20Z
        let h = Hour::of_nanos(1_700_000_000_000_000_000);
        assert_eq!(h.partition(), "dt=2023-11-14/hour=22");
        assert_eq!(h, Hour::of_nanos(1_699_999_200_000_000_000)); // 22:00:00 exactly
        assert_ne!(h, Hour::of_nanos(1_699_999_199_999_999_999));
        assert_eq!(Hour::of_nanos(-1).partition(), "dt=1969-12-31/hour=23");
        assert_eq!(
            raw_object_key("raw/", h, "relay-a", 1_700_000_000_123, 7),
            "raw/dt=2023-11-14/hour=22/relay-a-1700000000123-00000007.parquet"
        );
    }
}
