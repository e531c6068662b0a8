//! Decoding a spool payload (either format) never panics on arbitrary
//! bytes, and what decodes is written back in the compact format and reads
//! back as the same points.
#![no_main]

use horizon_agent::record::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(points) = decode(data) {
        let again = encode(&points);
        let back = decode(&again).expect("a written payload decodes");
        assert_eq!(encode(&back), again);
    }
});
