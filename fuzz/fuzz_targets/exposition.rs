//! The exposition parser never panics, and what it accepts converts to
//! points without panicking.
#![no_main]

use horizon_agent::expo::{Format, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for format in [Format::Prometheus, Format::OpenMetrics] {
            let e = parse(text, format);
            for s in &e.samples {
                assert!(!s.name.is_empty());
            }
        }
    }
});
