//! The compactor's raw-object reader on arbitrary bytes: decoding (Parquet,
//! schema check, shard filter) either fails with an error, which moves the
//! object to quarantine, or yields batches that sort and deduplicate
//! without panicking.
//!
//! The parquet crate panics on some damaged pages; `decode_raw` catches
//! those and quarantines the object. libFuzzer's panic hook aborts on every
//! panic, caught or not, so here a panic raised inside the parquet crate is
//! let through to that catch; any other panic is still a crash.
#![no_main]

use std::sync::Once;

use bytes::Bytes;
use horizon_compactor::merge::{Orderer, sort_dedup};
use horizon_compactor::{Unit, decode_raw};
use horizon_shared::layout::Hour;
use libfuzzer_sys::fuzz_target;

static HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| {
        let aborting = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info
                .location()
                .is_some_and(|l| l.file().contains("/parquet-"))
            {
                aborting(info);
            }
        }));
    });
    let Some((&shards, bytes)) = data.split_first() else {
        return;
    };
    let shards = u32::from(shards % 4) + 1;
    let unit = Unit {
        hour: Hour::of_nanos(0),
        shard: 0,
        shards,
    };
    let Ok(batches) = decode_raw(Bytes::copy_from_slice(bytes), unit) else {
        return;
    };
    let Ok(orderer) = Orderer::new() else {
        return;
    };
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut out = 0;
    if sort_dedup(&orderer, &batches, |b| {
        out += b.num_rows();
        Ok(())
    })
    .is_ok()
    {
        assert!(out <= rows);
    }
});
