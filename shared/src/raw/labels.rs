//! Label sets coded once per series, for as long as the series lives.
//!
//! A raw object's `labels` columns are written from codes ([`super::coded`]).
//! Coding a row's labels means reading its series' label text, which lies
//! in memory of its own for each series: a flush touches every live series
//! and misses the caches on each. [`LabelSets`] keeps the codes: each label
//! string gets an id, each series' labels a set of (key, value) ids, and
//! the series keeps its set's number in a [`LabelSlot`]. A series' text is
//! read when its set is first coded, and after that only the dictionary
//! page's names are.
//!
//! The sets are bounded ([`MAX_NAMES`], [`MAX_TEXT`], [`MAX_ENTRIES`],
//! [`MAX_SETS`]: about 50 MiB at the bounds, the names' text, their `Arc`s
//! and map, the labels' ids and the sets' bounds). The relay checks them
//! before each flush ([`LabelSets::renew_if_full`]), so one flush's new
//! series may go past them until the next (and the vectors may double
//! their capacity): past a bound, a new generation starts, empty, and
//! series are coded again as they come. The bounds hold 2^21 labels in
//! all: the relay's default `limits.max_cardinality` of 100,000 live
//! series with 20 labels each. A relay whose live series hold more labels
//! than that renews often, and codes more label text: correct, but slower. A slot holds the generation its
//! number belongs to, so a number of another generation (or of another
//! `LabelSets`: generations are unique in the process) is never taken for
//! one of this.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::codes::StrHasher;
use crate::proto::Label;

/// Generations handed out so far, in the whole process.
static GENERATIONS: AtomicU32 = AtomicU32::new(0);

/// At most this many distinct label strings in one generation.
pub const MAX_NAMES: usize = 1 << 18;
/// At most this many bytes of label text in one generation.
pub const MAX_TEXT: usize = 8 << 20;
/// At most this many labels, all sets together, in one generation.
pub const MAX_ENTRIES: usize = 1 << 21;
/// At most this many sets in one generation.
pub const MAX_SETS: usize = 1 << 21;

/// Where a series keeps the number of its label set, and the generation
/// the number belongs to. Starts empty.
#[derive(Debug, Default)]
pub struct LabelSlot(AtomicU64);

/// Label strings and series' label sets, coded (see the module's docs).
#[derive(Debug)]
pub struct LabelSets {
    generation: u32,
    ids: HashMap<Arc<str>, u32, BuildHasherDefault<StrHasher>>,
    names: Vec<Arc<str>>,
    text: usize,
    /// Set `s` is `entries[starts[s]..starts[s + 1]]`.
    starts: Vec<u32>,
    /// (key id, value id) per label.
    entries: Vec<(u32, u32)>,
}

impl Default for LabelSets {
    fn default() -> Self {
        Self::new()
    }
}

impl LabelSets {
    /// Empty, in a generation of its own.
    pub fn new() -> Self {
        Self {
            generation: next_generation(),
            ids: HashMap::default(),
            names: Vec::new(),
            text: 0,
            starts: vec![0],
            entries: Vec::new(),
        }
    }

    /// The generation set numbers belong to now.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Starts a new generation, empty, if a bound is reached. Numbers
    /// handed out before then no longer name sets of this.
    pub fn renew_if_full(&mut self) {
        if self.names.len() >= MAX_NAMES
            || self.text >= MAX_TEXT
            || self.entries.len() >= MAX_ENTRIES
            || self.starts.len() > MAX_SETS
        {
            *self = Self::new();
        }
    }

    /// The number of the set of `labels`, the labels of the series whose
    /// slot is `slot`: the one in the slot if it is of this generation,
    /// else a set coded now and put in the slot.
    pub fn set_of(&mut self, slot: &LabelSlot, labels: &[Label]) -> u32 {
        let held = slot.0.load(Ordering::Relaxed);
        if (held >> 32) as u32 == self.generation {
            return held as u32;
        }
        for l in labels {
            let entry = (self.id(&l.key), self.id(&l.value));
            self.entries.push(entry);
        }
        self.starts.push(self.entries.len() as u32);
        let set = (self.starts.len() - 2) as u32;
        slot.0.store(
            (u64::from(self.generation) << 32) | u64::from(set),
            Ordering::Relaxed,
        );
        set
    }

    /// The (key id, value id) of each label of set `set`.
    pub(super) fn entries(&self, set: u32) -> &[(u32, u32)] {
        let s = set as usize;
        &self.entries[self.starts[s] as usize..self.starts[s + 1] as usize]
    }

    /// The label strings, by id.
    pub(super) fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        let name: Arc<str> = Arc::from(name);
        self.text += name.len();
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }
}

fn next_generation() -> u32 {
    // Generation 0 is an empty slot's; after 2^32 - 1 generations the
    // numbers wrap, long after any series coded in the first is gone.
    loop {
        let g = GENERATIONS.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if g != 0 {
            return g;
        }
    }
}

/// Locks `sets`. A panic while it was held may have left it half
/// updated: it then starts a new generation.
pub fn lock_sets(sets: &Mutex<LabelSets>) -> MutexGuard<'_, LabelSets> {
    sets.lock().unwrap_or_else(|poisoned| {
        sets.clear_poison();
        let mut guard = poisoned.into_inner();
        *guard = LabelSets::new();
        guard
    })
}

/// The label sets of a flush's rows: the sets, the generation they were
/// coded in, and each row's set number, in the order of the rows.
#[derive(Debug)]
pub struct RowSets<'s> {
    /// Where the sets are.
    pub sets: &'s Mutex<LabelSets>,
    /// The generation the numbers belong to.
    pub generation: u32,
    /// One set number per row.
    pub of_row: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(k: &str, v: &str) -> Label {
        Label {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn a_series_is_coded_once_per_generation() {
        let mut sets = LabelSets::new();
        let (a, b) = (LabelSlot::default(), LabelSlot::default());
        let la = [label("gpu", "0"), label("model", "H100")];
        let lb = [label("gpu", "1"), label("model", "H100")];
        let sa = sets.set_of(&a, &la);
        let sb = sets.set_of(&b, &lb);
        assert_ne!(sa, sb);
        // Found by the slot: the labels given are not read again.
        assert_eq!(sets.set_of(&a, &[]), sa);
        let name = |id: u32| sets.names()[id as usize].to_string();
        let text: Vec<(String, String)> = sets
            .entries(sb)
            .iter()
            .map(|&(k, v)| (name(k), name(v)))
            .collect();
        assert_eq!(
            text,
            [("gpu".into(), "1".into()), ("model".into(), "H100".into())]
        );
        // "gpu", "0", "model", "H100", "1": each string once.
        assert_eq!(sets.names().len(), 5);

        // Another LabelSets (another generation) codes the series anew.
        let mut other = LabelSets::new();
        assert_ne!(other.generation(), sets.generation());
        let again = other.set_of(&a, &lb);
        assert_eq!(other.entries(again).len(), 2);
        // And this one, finding a slot of another generation, again.
        let back = sets.set_of(&a, &la);
        assert_ne!(back, sa, "coded anew: a new number");
        assert_eq!(sets.entries(back), sets.entries(sa));
    }

    #[test]
    fn a_full_generation_is_renewed() {
        let mut sets = LabelSets::new();
        let slot = LabelSlot::default();
        let first = sets.generation();
        sets.set_of(&slot, &[label("k", &"x".repeat(MAX_TEXT))]);
        sets.renew_if_full();
        assert_ne!(sets.generation(), first);
        assert!(sets.names().is_empty());
        // The slot's number is of the old generation: coded again.
        let set = sets.set_of(&slot, &[label("k", "v")]);
        assert_eq!(set, 0);
        assert_eq!(sets.names().len(), 2);
    }

    #[test]
    fn a_poisoned_lock_starts_afresh() {
        let sets = Arc::new(Mutex::new(LabelSets::new()));
        let first = lock_sets(&sets).generation();
        let s = sets.clone();
        let _ = std::thread::spawn(move || {
            let _g = s.lock().unwrap();
            panic!("while coding");
        })
        .join();
        assert!(sets.is_poisoned());
        assert_ne!(lock_sets(&sets).generation(), first);
        assert!(!sets.is_poisoned());
    }
}
