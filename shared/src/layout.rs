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
//!
//! Points of hours older than the one before the flush's own (late points,
//! say an agent replaying its spool) go to one object per flush instead,
//! whatever hours they span; the compactor splits it by hour:
//!
//! ```text
//! <raw_prefix>/_late/<relay_id>-<boot_ms>-<seq>.parquet
//! ```

use time::OffsetDateTime;

/// Text that is not an hour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HourError {
    /// Not `YYYY-MM-DDTHH`.
    #[error("{0:?} is not an hour like 2026-11-23T10 (UTC)")]
    Text(String),
    /// Not a valid `dt=`/`hour=` pair.
    #[error("dt={dt}/hour={hour} is not a valid UTC hour")]
    Partition {
        /// The `dt=` value.
        dt: String,
        /// The `hour=` value.
        hour: String,
    },
}

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

    /// The hour starting at `start_unix_secs` rounded down to the hour.
    pub fn of_secs(unix_secs: i64) -> Self {
        Self {
            start_unix_secs: unix_secs - unix_secs.rem_euclid(3600),
        }
    }

    /// Unix seconds just past the hour's end.
    pub fn end_unix_secs(&self) -> i64 {
        self.start_unix_secs + 3600
    }

    /// The next hour.
    pub fn next(&self) -> Self {
        Self {
            start_unix_secs: self.start_unix_secs + 3600,
        }
    }

    /// Parses `YYYY-MM-DDTHH` (UTC), the form [`Hour`] displays as.
    pub fn parse(s: &str) -> Result<Self, HourError> {
        let err = || HourError::Text(s.to_owned());
        let (dt, hh) = s.split_once(['T', ' ']).ok_or_else(err)?;
        Self::from_parts(dt, hh).map_err(|_| err())
    }

    /// The hour of a `dt=` value (`YYYY-MM-DD`) and an `hour=` value (`HH`).
    pub fn from_parts(dt: &str, hh: &str) -> Result<Self, HourError> {
        let err = || HourError::Partition {
            dt: dt.to_owned(),
            hour: hh.to_owned(),
        };
        let mut it = dt.splitn(3, '-');
        let (y, m, d) = (it.next(), it.next(), it.next());
        let (Some(y), Some(m), Some(d)) = (y, m, d) else {
            return Err(err());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 || hh.len() != 2 {
            return Err(err());
        }
        let num = |v: &str| v.parse::<u32>().map_err(|_| err());
        let month = time::Month::try_from(num(m)? as u8).map_err(|_| err())?;
        let date = time::Date::from_calendar_date(num(y)? as i32, month, num(d)? as u8)
            .map_err(|_| err())?;
        let hour = num(hh)?;
        if hour > 23 {
            return Err(err());
        }
        let start = date.midnight().assume_utc().unix_timestamp() + i64::from(hour) * 3600;
        Ok(Self {
            start_unix_secs: start,
        })
    }

    /// Parses the `dt=YYYY-MM-DD/hour=HH` part of an object key, if present.
    pub fn from_key(key: &str) -> Option<Self> {
        let i = key.find("dt=")?;
        let rest = &key[i + 3..];
        let (dt, rest) = rest.split_once('/')?;
        let hh = rest.strip_prefix("hour=")?;
        let hh = hh.split('/').next()?;
        Self::from_parts(dt, hh).ok()
    }

    /// The hive-style partition path `dt=YYYY-MM-DD/hour=HH`.
    pub fn partition(&self) -> String {
        let (dt, hour) = self.parts();
        format!("dt={dt}/hour={hour}")
    }
}

impl std::fmt::Display for Hour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (dt, hour) = self.parts();
        write!(f, "{dt}T{hour}")
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

/// Folder (under the raw prefix) of the relays' late objects.
pub const LATE_DIR: &str = "_late";

/// Key of a late object: one flush's points of hours before the previous
/// one, all hours together.
pub fn late_object_key(raw_prefix: &str, relay_id: &str, boot_ms: i64, seq: u64) -> String {
    let prefix = raw_prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("{LATE_DIR}/{relay_id}-{boot_ms}-{seq:08}.parquet")
    } else {
        format!("{prefix}/{LATE_DIR}/{relay_id}-{boot_ms}-{seq:08}.parquet")
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
        assert_eq!(h.to_string(), "2023-11-14T22");
        assert_eq!(Hour::parse("2023-11-14T22"), Ok(h));
        assert_eq!(Hour::parse("2023-11-14 22"), Ok(h));
        assert_eq!(
            Hour::from_key("raw/dt=2023-11-14/hour=22/x.parquet"),
            Some(h)
        );
        assert_eq!(Hour::from_key("raw/dt=2023-11-14/hour=22/"), Some(h));
        assert_eq!(h.next(), Hour::parse("2023-11-14T23").unwrap());
        assert_eq!(h.end_unix_secs(), h.next().start_unix_secs);
        assert_eq!(Hour::of_secs(h.start_unix_secs + 3599), h);
        for bad in [
            "2023-11-14",
            "2023-11-14T24",
            "2023-13-01T00",
            "2023-02-30T00",
            "x",
            "2023-1-14T02",
        ] {
            assert!(Hour::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Hour::from_key("raw/dt=2023-11-14/x.parquet"), None);
        assert_eq!(
            raw_object_key("raw/", h, "relay-a", 1_700_000_000_123, 7),
            "raw/dt=2023-11-14/hour=22/relay-a-1700000000123-00000007.parquet"
        );
        assert_eq!(
            late_object_key("raw/", "relay-a", 1_700_000_000_123, 8),
            "raw/_late/relay-a-1700000000123-00000008.parquet"
        );
        assert_eq!(Hour::from_key(&late_object_key("raw", "r", 1, 1)), None);
    }
}
