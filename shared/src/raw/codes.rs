//! Small integer codes for strings: a flush's or an object's distinct
//! strings numbered in order of first sight ([`Codes`]), and the hasher of
//! short strings it and the label sets use ([`StrHasher`]).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Small integer codes for distinct strings, in order of first sight.
pub(super) struct Codes<'a> {
    by_name: HashMap<&'a str, u32, BuildHasherDefault<StrHasher>>,
    pub(super) names: Vec<&'a str>,
    /// Strings looked up lately, by address, with their codes: rows share
    /// the memory of their node's name (one connection's) and of their
    /// metric's (one per name in a stream, in the relay), and a string at
    /// the same address and of the same length is the same string for as
    /// long as `'a` holds. Finding it here reads neither its text nor the
    /// map.
    recent: Box<[(*const u8, usize, u32); RECENT]>,
}

/// Slots of [`Codes::recent`] (a power of two).
const RECENT: usize = 1024;

impl Default for Codes<'_> {
    fn default() -> Self {
        Self {
            by_name: HashMap::default(),
            names: Vec::new(),
            recent: Box::new([(std::ptr::null(), 0, 0); RECENT]),
        }
    }
}

impl<'a> Codes<'a> {
    pub(super) fn code(&mut self, name: &'a str) -> u32 {
        let at = name.as_ptr();
        let addr = at as usize;
        let slot = &mut self.recent[((addr >> 4) ^ (addr >> 14)) & (RECENT - 1)];
        if slot.0 == at && slot.1 == name.len() {
            return slot.2;
        }
        let next = self.names.len() as u32;
        let code = *self.by_name.entry(name).or_insert(next);
        if code == next {
            self.names.push(name);
        }
        *slot = (at, name.len(), code);
        code
    }

    /// The names in ascending order, and each code's rank in it.
    pub(super) fn ranked(self) -> (Vec<&'a str>, Vec<u32>) {
        let mut by_rank: Vec<u32> = (0..self.names.len() as u32).collect();
        by_rank.sort_unstable_by_key(|&c| self.names[c as usize]);
        let mut rank = vec![0; by_rank.len()];
        for (r, &c) in by_rank.iter().enumerate() {
            rank[c as usize] = r as u32;
        }
        let names = by_rank.iter().map(|&c| self.names[c as usize]).collect();
        (names, rank)
    }
}

/// xxh3 for the short strings of [`Codes`] (the default SipHash costs
/// more than the rest of a row's coding).
#[derive(Default)]
pub(super) struct StrHasher(u64);

impl Hasher for StrHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }

    fn write_u8(&mut self, b: u8) {
        self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
