//! Node groups: pages a compactor shard can read alone.
//!
//! An hour's object is ordered by node group first (the top bits of
//! [`node_bucket`]), then by `SORT_KEY`, in one row group with a data page
//! per group in every column, so that a compactor shard (`xxh3_64(node) %
//! N`) of a power-of-two N reads only its groups' pages, by the offset
//! index (docs/data.md, "Pages by node bucket"). The writer properties of
//! such an object are [`grouped_properties`].

use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::schema::RawRow;
use super::sort::run_starts;

/// Key-value metadata key listing an object's node groups, in row order:
/// `start-end:rows` per group (buckets `start..end`, end exclusive, in
/// `0..=65536`), comma-separated. Objects without it are read whole.
pub const NODE_GROUPS_KEY: &str = "horizon.node_groups";

/// At most `1 << MAX_GROUP_BITS` node groups per object.
pub const MAX_GROUP_BITS: u32 = 4;

/// An object is cut into fewer groups when its groups would hold fewer
/// rows than this on average: each group is a page in each of the nine
/// leaf columns, about 30 bytes of page header and offset index each,
/// and compresses a little worse the smaller it is (128 rather than 1,024:
/// on the synthetic hour, 2% more bytes, and a compactor shard of 16
/// reads a quarter less).
pub const MIN_GROUP_ROWS: usize = 128;

/// A node's bucket: the low 16 bits of XXH3-64 of its name, bit-reversed.
/// The compactor's shard of a node is `xxh3_64 % N`; for N a power of two
/// that is the low bits of the hash, so the top bits of the bucket: the
/// nodes of one shard have one contiguous range of buckets.
pub fn node_bucket(node: &str) -> u16 {
    (xxhash_rust::xxh3::xxh3_64(node.as_bytes()) as u16).reverse_bits()
}

/// One node group of an object: its bucket range and its row count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGroup {
    /// Buckets of the group, end exclusive (`0..65536` is every bucket).
    pub buckets: std::ops::Range<u32>,
    /// Rows in it.
    pub rows: usize,
}

/// Reorders `rows` (sorted by [`SORT_KEY`]) by node group, stably (each
/// group stays in key order), and returns the non-empty groups in order.
/// Small slices get fewer groups ([`MIN_GROUP_ROWS`]).
///
/// [`SORT_KEY`]: super::SORT_KEY
pub fn group_by_node(rows: &mut [RawRow<'_>]) -> Vec<NodeGroup> {
    group_stably(rows, |r| node_bucket(r.node))
}

/// [`group_by_node`] for any items, given each one's node bucket: a
/// counting sort by group, one pass to count and one to place.
pub(super) fn group_stably<T: Copy>(items: &mut [T], bucket: impl Fn(&T) -> u16) -> Vec<NodeGroup> {
    let bits = (0..=MAX_GROUP_BITS)
        .rev()
        .find(|&b| items.len() >> b >= MIN_GROUP_ROWS)
        .unwrap_or(0);
    let width = 1u32 << (16 - bits);
    if bits == 0 {
        return vec![NodeGroup {
            buckets: 0..1 << 16,
            rows: items.len(),
        }];
    }
    let group: Vec<u8> = items
        .iter()
        .map(|i| (u32::from(bucket(i)) / width) as u8)
        .collect();
    let starts = run_starts(1 << bits, group.iter().map(|&g| usize::from(g)));
    let mut at = starts.clone();
    let mut placed = items.to_vec();
    for (item, &g) in items.iter().zip(&group) {
        placed[at[usize::from(g)] as usize] = *item;
        at[usize::from(g)] += 1;
    }
    items.copy_from_slice(&placed);
    starts
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1] > w[0])
        .map(|(g, w)| NodeGroup {
            buckets: g as u32 * width..(g as u32 + 1) * width,
            rows: (w[1] - w[0]) as usize,
        })
        .collect()
}

pub(super) fn format_node_groups(groups: &[NodeGroup]) -> String {
    let parts: Vec<String> = groups
        .iter()
        .map(|g| format!("{}-{}:{}", g.buckets.start, g.buckets.end, g.rows))
        .collect();
    parts.join(",")
}

/// The node groups of an object of `rows` rows (its key-value metadata
/// [`NODE_GROUPS_KEY`]), or `None` when not well formed: ranges in
/// ascending order, not overlapping, within `0..=65536`, and row counts
/// adding up to `rows` (the object is then read whole).
pub fn parse_node_groups(value: &str, rows: u64) -> Option<Vec<NodeGroup>> {
    let groups = value
        .split(',')
        .map(|p| {
            let (range, n) = p.split_once(':')?;
            let (a, b) = range.split_once('-')?;
            let (a, b) = (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?);
            let n = n.parse::<usize>().ok()?;
            (a < b && b <= 1 << 16).then_some(NodeGroup {
                buckets: a..b,
                rows: n,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let ordered = groups
        .windows(2)
        .all(|w| w[0].buckets.end <= w[1].buckets.start);
    let total = groups
        .iter()
        .try_fold(0u64, |t, g| t.checked_add(g.rows as u64));
    (ordered && total == Some(rows)).then_some(groups)
}

/// Writer properties of an object cut into node groups: `props`, with one
/// row group whatever its size, and a data page ended after each write and
/// only then, so that each write (a node group) is one page in every
/// column.
///
/// The writer checks its page limits after each mini-batch, and ends the
/// page if it holds at least `data_page_row_count_limit` rows or
/// `data_page_size_limit` bytes. A mini-batch is `write_batch_size`
/// levels, or, for a nested column whose levels are all alike (the
/// `labels` map when every row of a write has no entry, or one), that row
/// limit. So: the batch size and the dictionary page limit are out of
/// reach (a mini-batch is a whole write), and the page is ended after it by
/// a row limit of 1, except in the `labels` columns, where a row limit of
/// 1 would make a page per row: there the row limit is out of reach and
/// the byte limit 1 byte. The test
/// `an_hours_object_has_a_page_per_node_group_in_every_column` checks the
/// pages with rows of no label, of one, and of several.
///
/// A page cut elsewhere (another version of the writer) costs a shard some
/// bytes, not rows: the compactor reads the pages that overlap its rows,
/// by the offset index. The declared sort order holds within each group
/// only, so none is declared.
pub(super) fn grouped_properties(props: &WriterProperties) -> WriterProperties {
    // Page sizes are i32 in the format; no page of a raw object nears it.
    const OUT_OF_REACH: usize = i32::MAX as usize;
    let mut b = props.clone().into_builder();
    for leaf in ["key", "value"] {
        let path = || ColumnPath::new(vec!["labels".into(), "key_value".into(), leaf.into()]);
        b = b
            .set_column_data_page_row_count_limit(path(), OUT_OF_REACH)
            .set_column_data_page_size_limit(path(), 1);
    }
    b.set_sorting_columns(None)
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(None)
        .set_write_batch_size(OUT_OF_REACH)
        .set_data_page_row_count_limit(1)
        .set_data_page_size_limit(OUT_OF_REACH)
        .set_dictionary_page_size_limit(OUT_OF_REACH)
        .build()
}
