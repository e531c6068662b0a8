//! Decoding a spool payload never panics on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(points) = horizon_agent::record::decode(data) {
        assert_eq!(horizon_agent::record::encode(&points), data);
    }
});
