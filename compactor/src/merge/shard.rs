//! Sharding: which node's rows a shard of an hour holds.

use arrow_array::{Array, RecordBatch};
use arrow_schema::ArrowError;
use horizon_shared::raw::raw_schema;

/// Keeps the rows whose node falls in `shard` of `shards` (by the XXH3 hash
/// of the node name).
pub fn filter_shard(
    batch: &RecordBatch,
    shard: u32,
    shards: u32,
) -> Result<RecordBatch, ArrowError> {
    if shards <= 1 {
        return Ok(batch.clone());
    }
    let node = batch.column(raw_schema().index_of("node")?);
    let node =
        arrow_array::cast::AsArray::as_dictionary::<arrow_array::types::Int32Type>(node.as_ref());
    let values = arrow_array::cast::AsArray::as_string::<i32>(node.values().as_ref());
    let in_shard: Vec<bool> = (0..values.len())
        .map(|i| shard_of(values.value(i), shards) == shard)
        .collect();
    let mask: arrow_array::BooleanArray = node
        .keys()
        .iter()
        .map(|k| Some(k.is_some_and(|k| in_shard[k as usize])))
        .collect();
    arrow_select::filter::filter_record_batch(batch, &mask)
}

/// The shard of a node: XXH3-64 of its name modulo the shard count.
pub fn shard_of(node: &str, shards: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(node.as_bytes()) % u64::from(shards.max(1))) as u32
}

/// The node buckets (`horizon_shared::raw::node_bucket`) of a shard's
/// nodes, end exclusive, when `shards` is a power of two (up to 65,536):
/// the shard is the low bits of the hash, which are the top bits of the
/// bucket, reversed. `None` for other counts: a shard's nodes are spread
/// over every bucket.
pub fn shard_buckets(shard: u32, shards: u32) -> Option<std::ops::Range<u32>> {
    if !shards.is_power_of_two() || shards > 1 << 16 || shard >= shards {
        return None;
    }
    let bits = shards.trailing_zeros();
    if bits == 0 {
        return Some(0..1 << 16);
    }
    let top = u32::from((shard as u16).reverse_bits() >> (16 - bits));
    let width = 1u32 << (16 - bits);
    Some(top * width..(top + 1) * width)
}
