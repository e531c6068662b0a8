//! Decoding a spool payload never panics on arbitrary bytes, and what
//! decodes is written back as it was: byte for byte for a payload of typed
//! points (the count's top bit set), with a type byte more per point for
//! one written before metric types.
#![no_main]

use horizon_agent::record::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(points) = decode(data) {
        let again = encode(&points);
        if data[3] & 0x80 != 0 {
            assert_eq!(again, data);
        } else {
            assert_eq!(again.len(), data.len() + points.len());
            let back = decode(&again).expect("a written payload decodes");
            assert_eq!(encode(&back), again);
        }
    }
});
