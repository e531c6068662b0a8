//! Wall-clock time as Unix timestamps, the form every stored time takes.

/// The current Unix time in nanoseconds.
pub fn unix_nanos_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The current Unix time in milliseconds.
pub fn unix_ms_now() -> i64 {
    unix_nanos_now() / 1_000_000
}
