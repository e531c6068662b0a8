//! The series dictionary of one stream: ids bound to series, validated
//! once at definition time, bounded in ids and in bytes (of the stream, of
//! its connection, and of the whole relay).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use horizon_shared::model::{SeriesLimits, canonicalize, series_hash, validate_series};
use horizon_shared::proto::{Label, SeriesDef};
use prometheus_client::metrics::gauge::Gauge;

use super::series::{SeriesEntry, cut};

/// A byte budget shared by several series dictionaries: one connection's
/// streams, or every stream of the relay. Optionally mirrored in a gauge.
#[derive(Debug)]
pub struct ByteBudget {
    used: AtomicUsize,
    limit: usize,
    gauge: Option<Gauge>,
}

impl ByteBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit,
            gauge: None,
        }
    }

    /// The same, with its use shown in `gauge`.
    pub fn with_gauge(limit: usize, gauge: Gauge) -> Self {
        Self {
            gauge: Some(gauge),
            ..Self::new(limit)
        }
    }

    /// Bytes in use now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes `n` bytes if they fit.
    fn take(&self, n: usize) -> bool {
        let ok = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                u.checked_add(n).filter(|t| *t <= self.limit)
            })
            .is_ok();
        if ok && let Some(g) = &self.gauge {
            g.inc_by(i64::try_from(n).unwrap_or(i64::MAX));
        }
        ok
    }

    /// Gives back `n` bytes taken before.
    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
        if let Some(g) = &self.gauge {
            g.dec_by(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// Which bound refused a definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DictionaryBound {
    /// `limits.max_dictionary_bytes_per_stream`.
    Stream,
    /// `limits.max_dictionary_bytes_per_connection`.
    Connection,
    /// `limits.max_dictionary_bytes_total`.
    Relay,
}

impl DictionaryBound {
    fn key(self) -> &'static str {
        match self {
            Self::Stream => "limits.max_dictionary_bytes_per_stream",
            Self::Connection => "limits.max_dictionary_bytes_per_connection",
            Self::Relay => "limits.max_dictionary_bytes_total",
        }
    }
}

/// What a dictionary id is bound to.
#[derive(Debug, Clone)]
enum Binding {
    Undefined,
    Series(Arc<SeriesEntry>),
    /// An invalid definition keeps its reason, not its labels.
    Invalid(Box<str>),
    /// A definition refused by a memory bound.
    Refused(DictionaryBound),
}

impl Binding {
    /// Heap bytes held by the binding (beyond its slot in the table), as
    /// the allocator hands them out.
    fn heap_bytes(&self) -> usize {
        match self {
            Self::Undefined | Self::Refused(_) => 0,
            Self::Invalid(why) => allocated(why.len()),
            Self::Series(e) => series_bytes(e),
        }
    }
}

/// Bytes the allocator takes for an allocation of `n` bytes (none for 0):
/// glibc malloc's chunk, `n` plus an 8-byte header rounded up to 16, at
/// least 32. So a one-byte label value costs 32 bytes, not one; counting
/// only the text, the relay once counted less than half of what tiny
/// labels really took (docs/relay.md, memory).
pub(crate) fn allocated(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n + 8).next_multiple_of(16).max(32)
    }
}

/// Heap bytes of a stored series, each allocation as the allocator rounds
/// it: the entry behind its `Arc` (with the two reference counts, and its
/// fixed-size fields, the metric type among them), the
/// metric name behind its own `Arc` (counted even when shared), the label
/// array, and every key and value by its capacity.
fn series_bytes(e: &SeriesEntry) -> usize {
    let arc_counts = 2 * std::mem::size_of::<usize>();
    allocated(std::mem::size_of::<SeriesEntry>() + arc_counts)
        + allocated(arc_counts + e.metric.len())
        + allocated(e.labels.len() * std::mem::size_of::<Label>())
        + e.labels
            .iter()
            .map(|l| allocated(l.key.capacity()) + allocated(l.value.capacity()))
            .sum::<usize>()
}

/// The series dictionary of one stream, bounded in ids and in bytes: its
/// own bytes, and (when given) the budgets of its connection and of the
/// relay, which it gives back when dropped.
#[derive(Debug)]
pub struct StreamDictionary {
    entries: Vec<Binding>,
    max_ids: u32,
    bytes: usize,
    max_bytes: usize,
    connection: Option<Arc<ByteBudget>>,
    relay: Option<Arc<ByteBudget>>,
    /// One `Arc` per distinct metric name of the stream's series (the
    /// first [`SHARED_METRIC_NAMES`] names), which its series share: the
    /// raw encoder codes a row's metric by the name's address, without
    /// reading its text, when rows share the name's memory. Charged to the
    /// byte bounds like the series.
    metric_names: HashSet<Arc<str>>,
}

/// At most this many metric names per stream are shared by its series
/// (a node exports a few hundred); past it, each series holds its own.
const SHARED_METRIC_NAMES: usize = 1024;

impl StreamDictionary {
    /// An empty dictionary accepting ids below `max_ids`, with no byte bound.
    pub fn new(max_ids: u32) -> Self {
        Self {
            entries: Vec::new(),
            max_ids,
            bytes: 0,
            max_bytes: usize::MAX,
            connection: None,
            relay: None,
            metric_names: HashSet::new(),
        }
    }

    /// An empty dictionary holding at most `max_bytes` itself, and drawing
    /// every byte from the connection's and the relay's budgets too.
    pub fn bounded(
        max_ids: u32,
        max_bytes: usize,
        connection: Arc<ByteBudget>,
        relay: Arc<ByteBudget>,
    ) -> Self {
        Self {
            entries: Vec::new(),
            max_ids,
            bytes: 0,
            max_bytes,
            connection: Some(connection),
            relay: Some(relay),
            metric_names: HashSet::new(),
        }
    }

    /// Bytes this dictionary holds (estimated heap use, table included).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes `n` more bytes from every bound, or none: the first bound
    /// that is full.
    fn take(&mut self, n: usize) -> Result<(), DictionaryBound> {
        if self.bytes.saturating_add(n) > self.max_bytes {
            return Err(DictionaryBound::Stream);
        }
        if let Some(c) = &self.connection
            && !c.take(n)
        {
            return Err(DictionaryBound::Connection);
        }
        if let Some(r) = &self.relay
            && !r.take(n)
        {
            if let Some(c) = &self.connection {
                c.give_back(n);
            }
            return Err(DictionaryBound::Relay);
        }
        self.bytes += n;
        Ok(())
    }

    fn give_back(&mut self, n: usize) {
        self.bytes -= n;
        for b in [&self.connection, &self.relay].into_iter().flatten() {
            b.give_back(n);
        }
    }

    /// The error for a definition refused by `bound`.
    fn full(&self, id: u32, bound: DictionaryBound) -> DefineError {
        let limit = match bound {
            DictionaryBound::Stream => self.max_bytes,
            DictionaryBound::Connection => self.connection.as_ref().map_or(0, |b| b.limit()),
            DictionaryBound::Relay => self.relay.as_ref().map_or(0, |b| b.limit()),
        };
        DefineError::Full { id, bound, limit }
    }

    /// Applies one definition. An invalid series keeps its id and reason
    /// (its points are rejected with the reason); a definition past a
    /// memory bound leaves its id refused (its points are rejected naming
    /// the bound). Either way a replaced binding gives its bytes back first.
    pub(super) fn define(
        &mut self,
        def: SeriesDef,
        limits: &SeriesLimits,
    ) -> Result<(), DefineError> {
        if def.id >= self.max_ids {
            return Err(DefineError::IdBeyondLimit {
                id: def.id,
                max: self.max_ids,
            });
        }
        let idx = def.id as usize;
        // Room in the table, grown by doubling (never past max_ids) and
        // counted by capacity.
        if idx >= self.entries.len() {
            let cap = self.entries.capacity();
            if idx >= cap {
                let want = (idx + 1)
                    .max(cap * 2)
                    .min(self.max_ids as usize)
                    .max(idx + 1);
                let grow = (want - cap) * std::mem::size_of::<Binding>();
                if let Err(bound) = self.take(grow) {
                    return Err(self.full(def.id, bound));
                }
                self.entries.reserve_exact(want - self.entries.len());
            }
            self.entries.resize(idx + 1, Binding::Undefined);
        }
        let old = std::mem::replace(&mut self.entries[idx], Binding::Undefined);
        self.give_back(old.heap_bytes());
        drop(old);

        // A type this relay does not know reads as unspecified.
        let metric_type = def.metric_type();
        let mut labels = def.labels;
        canonicalize(&mut labels);
        let binding = match validate_series(&def.metric, &labels, limits) {
            Err(e) => Binding::Invalid(
                format!("series {} ({:?}): {e}", def.id, cut(&def.metric)).into_boxed_str(),
            ),
            Ok(()) => {
                let text_bytes = def.metric.len()
                    + labels
                        .iter()
                        .map(|l| l.key.len() + l.value.len())
                        .sum::<usize>();
                Binding::Series(Arc::new(SeriesEntry {
                    text_bytes,
                    series_hash: series_hash(&def.metric, &labels),
                    metric_hash: xxhash_metric(&def.metric),
                    metric_type,
                    metric: self.metric_name(def.metric),
                    labels: labels.into_boxed_slice(),
                    line_protocol: std::sync::OnceLock::new(),
                    label_slot: Default::default(),
                }))
            }
        };
        match self.take(binding.heap_bytes()) {
            Ok(()) => {
                self.entries[idx] = binding;
                Ok(())
            }
            Err(bound) => {
                self.entries[idx] = Binding::Refused(bound);
                Err(self.full(def.id, bound))
            }
        }
    }

    /// The stream's shared `Arc` of the metric `name`, made and kept if it
    /// is new and fits (in number and in the byte bounds), else an `Arc` of
    /// its own.
    fn metric_name(&mut self, name: String) -> Arc<str> {
        if let Some(shared) = self.metric_names.get(name.as_str()) {
            return shared.clone();
        }
        let name: Arc<str> = Arc::from(name);
        // The text with the reference counts, and the set's slot (a fat
        // pointer and its control byte, at the table's lowest load).
        let bytes = allocated(name.len() + 2 * std::mem::size_of::<usize>())
            + 4 * std::mem::size_of::<usize>();
        if self.metric_names.len() < SHARED_METRIC_NAMES && self.take(bytes).is_ok() {
            self.metric_names.insert(name.clone());
        }
        name
    }

    /// Why points on `id` are rejected, or its series.
    pub(super) fn lookup(&self, id: u32) -> Result<&Arc<SeriesEntry>, String> {
        match self.entries.get(id as usize) {
            Some(Binding::Series(e)) => Ok(e),
            Some(Binding::Invalid(why)) => Err(why.to_string()),
            Some(Binding::Refused(bound)) => Err(self.full(id, *bound).to_string()),
            Some(Binding::Undefined) | None => Err(format!("undefined series id {id}")),
        }
    }
}

impl Drop for StreamDictionary {
    fn drop(&mut self) {
        let n = self.bytes;
        self.give_back(n);
    }
}

/// A series definition that could not be stored in the dictionary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefineError {
    /// The id is at or above `limits.max_series_per_stream`.
    #[error("series id {id} is beyond the stream dictionary limit of {max}")]
    IdBeyondLimit {
        /// The id defined.
        id: u32,
        /// The dictionary's limit.
        max: u32,
    },
    /// A memory bound (of the stream, the connection or the relay) is full.
    #[error(
        "series id {id} refused: series dictionaries are full ({} = {limit} bytes); define fewer or smaller series, or reuse ids",
        .bound.key()
    )]
    Full {
        /// The id defined.
        id: u32,
        /// The bound that is full.
        bound: DictionaryBound,
        /// Its size in bytes.
        limit: usize,
    },
}

fn xxhash_metric(metric: &str) -> u64 {
    series_hash(metric, &[])
}
