//! The flush's sort: each row's [`SortKey`], a counting sort by hour,
//! metric and node with each run then sorted apart ([`sort_keys`]), and
//! the run starts of a counting sort, which the node groups' sort uses too
//! ([`run_starts`]).

use crate::layout::Hour;

/// Where a row goes in a flush, compared field by field in this order: the
/// event hour, then [`SORT_KEY`] with the metric and the node as their ranks
/// among the flush's distinct names (so comparing two rows compares
/// integers, not strings).
///
/// [`SORT_KEY`]: super::SORT_KEY
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct SortKey {
    pub(super) hour: Hour,
    pub(super) metric: u32,
    pub(super) node: u32,
    pub(super) series_id: i64,
    pub(super) time: i64,
}

/// Sorts keyed items: the keys in ascending order, and the items in the
/// same order (each key with the index of its item, which is its own
/// position). Equal keys keep their order of arrival.
///
/// A counting sort places the items by (hour, metric, node), whose ranks
/// are small and dense, in three passes over `keyed` in arrival order (the
/// hours, the count of each run, the placing), each item written once to
/// its place; each run (a node's scrape of a metric, a few hundred rows) is
/// then sorted by series and time alone, and its items put in that order,
/// in cache. Against one sort of the whole flush by the whole key, this
/// does a third of the sort's instructions, and the encoder then reads
/// each column's values in order, from memory the hardware prefetches. When
/// a flush spans more than 64 hours, or its runs would outnumber its items
/// more than four times over (many hours, metrics and nodes but few rows),
/// it is sorted whole and the items gathered in its order.
pub(super) fn sort_keys<T: Copy>(
    keyed: impl ExactSizeIterator<Item = (SortKey, T)> + Clone,
    metrics: usize,
    nodes: usize,
) -> (Vec<(SortKey, u32)>, Vec<T>) {
    // At most 64 distinct hours, ascending; None if more.
    let hours = (|| {
        let mut hours: Vec<Hour> = Vec::new();
        for (k, _) in keyed.clone() {
            if hours.last() != Some(&k.hour) && !hours.contains(&k.hour) {
                if hours.len() == 64 {
                    return None;
                }
                hours.push(k.hour);
            }
        }
        hours.sort_unstable();
        Some(hours)
    })();
    let len = keyed.len();
    let runs = hours.as_ref().map_or(u64::MAX, |h| {
        (h.len() as u64)
            .saturating_mul(metrics as u64)
            .saturating_mul(nodes as u64)
    });
    let Some(hours) = hours.filter(|_| len > 0 && runs <= (len as u64).max(1 << 16) * 4) else {
        let (mut keys, items): (Vec<(SortKey, u32)>, Vec<T>) = keyed
            .enumerate()
            .map(|(i, (k, t))| ((k, i as u32), t))
            .unzip();
        keys.sort_unstable();
        let items = keys.iter().map(|&(_, at)| items[at as usize]).collect();
        for (j, k) in keys.iter_mut().enumerate() {
            k.1 = j as u32;
        }
        return (keys, items);
    };
    let run = |k: &SortKey| -> usize {
        // `hours` is short: one or two hours in a flush, at most 64.
        let h = hours.iter().position(|h| *h == k.hour).unwrap_or(0);
        (h * metrics + k.metric as usize) * nodes + k.node as usize
    };
    let starts = run_starts(runs as usize, keyed.clone().map(|(k, _)| run(&k)));
    let mut next = starts.clone();
    let mut sorted = Vec::with_capacity(len);
    let mut placed = Vec::with_capacity(len);
    for (k, item) in keyed {
        let r = run(&k);
        let at = next[r] as usize;
        next[r] += 1;
        // Every slot is written once: fill on the first key, then place.
        if sorted.is_empty() {
            sorted.resize(len, (k, 0));
            placed.resize(len, item);
        }
        sorted[at] = (k, at as u32);
        placed[at] = item;
    }
    let mut run_items = Vec::new();
    for w in starts.windows(2) {
        let (a, b) = (w[0] as usize, w[1] as usize);
        if b - a > 1 {
            // Within a run, placement order is arrival order.
            sorted[a..b].sort_unstable_by_key(|&(k, at)| (k.series_id, k.time, at));
            // The run's items in its keys' order, while they are in cache.
            run_items.clear();
            run_items.extend(sorted[a..b].iter().map(|&(_, at)| placed[at as usize]));
            placed[a..b].copy_from_slice(&run_items);
            for (j, k) in sorted[a..b].iter_mut().enumerate() {
                k.1 = (a + j) as u32;
            }
        }
    }
    (sorted, placed)
}

/// Where each of `runs` runs begins in the order of a counting sort of
/// items by run (`run_of`, each below `runs`), and where the last ends:
/// `runs + 1` positions.
pub(super) fn run_starts(runs: usize, run_of: impl Iterator<Item = usize>) -> Vec<u32> {
    let mut starts = vec![0u32; runs + 1];
    for r in run_of {
        starts[r + 1] += 1;
    }
    for r in 1..starts.len() {
        starts[r] += starts[r - 1];
    }
    starts
}
