//! Batch processing, pure and I/O-free: applies a batch's series definitions
//! to the stream's dictionary, validates every point, runs the cardinality
//! admission, and produces the ack plus the accepted points.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::metrics::gauge::Gauge;

use horizon_shared::model::{
    SeriesLimits, TimeWindow, canonicalize, series_hash, validate_point, validate_series,
};
use horizon_shared::proto::{
    BatchAck, Durability, Label, MetricBatch, RejectReason, Rejection, SeriesDef,
};

use crate::budget::{Admission, Budgets, Limit, NodeBudget};

/// A series as defined on a stream, validated once at definition time.
#[derive(Debug)]
pub struct SeriesEntry {
    /// Metric name.
    pub metric: Arc<str>,
    /// Labels in canonical order.
    pub labels: Box<[Label]>,
    /// Stable series identity (see `horizon_shared::model::series_hash`).
    pub series_hash: u64,
    /// Hash of the metric name alone (per-metric caps).
    pub metric_hash: u64,
    /// Why the definition is invalid, if it is.
    pub invalid: Option<String>,
    /// Bytes of text in the series (metric, label keys and values), for
    /// estimating the size of buffered rows.
    pub text_bytes: usize,
}

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
    /// Heap bytes held by the binding (beyond its slot in the table).
    fn heap_bytes(&self) -> usize {
        match self {
            Self::Undefined | Self::Refused(_) => 0,
            Self::Invalid(why) => why.len(),
            Self::Series(e) => series_bytes(e),
        }
    }
}

/// Heap bytes of a stored series: the entry behind its `Arc` (with the two
/// reference counts), the metric name behind its own `Arc`, the label array
/// and the text of every key and value.
fn series_bytes(e: &SeriesEntry) -> usize {
    let arc_counts = 2 * std::mem::size_of::<usize>();
    std::mem::size_of::<SeriesEntry>()
        + arc_counts
        + arc_counts
        + e.metric.len()
        + e.labels.len() * std::mem::size_of::<Label>()
        + e.labels
            .iter()
            .map(|l| l.key.len() + l.value.len())
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
}

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
    fn define(&mut self, def: SeriesDef, limits: &SeriesLimits) -> Result<(), DefineError> {
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
                    metric: Arc::from(def.metric),
                    labels: labels.into_boxed_slice(),
                    invalid: None,
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

    /// Why points on `id` are rejected, or its series.
    fn lookup(&self, id: u32) -> Result<&Arc<SeriesEntry>, String> {
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

fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Limits applied to every batch.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// Points per batch.
    pub max_batch_size: usize,
    /// Series validation.
    pub series: SeriesLimits,
    /// Accepted timestamps.
    pub time_window: TimeWindow,
}

/// One accepted point, ready for the sinks.
#[derive(Debug, Clone)]
pub struct AcceptedPoint {
    /// Its series.
    pub series: Arc<SeriesEntry>,
    /// Unix nanoseconds.
    pub time_unix_nano: i64,
    /// Value (finite).
    pub value: f64,
}

/// Counts by reason, for the ack and the metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RejectCounts {
    /// Over a cardinality cap, by cap.
    pub cardinality_node: u32,
    /// Over the per-metric cap.
    pub cardinality_metric: u32,
    /// Over the relay-wide cap.
    pub cardinality_relay: u32,
    /// Invalid points or series.
    pub invalid: u32,
    /// Batch over the size limit.
    pub too_large: u32,
}

impl RejectCounts {
    /// All cardinality rejections.
    pub fn cardinality(&self) -> u32 {
        self.cardinality_node + self.cardinality_metric + self.cardinality_relay
    }
}

/// What processing one batch produced.
#[derive(Debug)]
pub struct BatchOutcome {
    /// The ack to send.
    pub ack: BatchAck,
    /// Accepted points, in batch order.
    pub accepted: Vec<AcceptedPoint>,
    /// Rejections by reason.
    pub rejects: RejectCounts,
    /// New series admitted to the budget by this batch.
    pub new_series: u32,
    /// Definitions in this batch that could not be stored (id out of range).
    pub bad_defs: u32,
    /// Definitions in this batch refused by a dictionary memory bound.
    pub refused_defs: u32,
    /// Example of a cardinality rejection, for the rate-limited warning.
    pub cardinality_example: Option<String>,
}

#[derive(Default)]
struct Examples {
    cardinality: Option<String>,
    invalid: Option<String>,
}

/// Processes one batch from `node` at `now_ns` (Unix ns) / `now_secs`
/// (budget clock).
pub fn process_batch(
    batch: MetricBatch,
    dict: &mut StreamDictionary,
    budgets: &Budgets,
    node: &NodeBudget,
    limits: &IngestLimits,
    now_ns: i64,
    now_secs: u32,
) -> BatchOutcome {
    let mut rejects = RejectCounts::default();
    let mut examples = Examples::default();
    let mut bad_defs = 0;
    let mut refused_defs = 0;
    for def in batch.series_defs {
        match dict.define(def, &limits.series) {
            Ok(()) => {}
            Err(e @ DefineError::IdBeyondLimit { .. }) => {
                bad_defs += 1;
                examples.invalid.get_or_insert_with(|| e.to_string());
            }
            Err(e @ DefineError::Full { .. }) => {
                refused_defs += 1;
                examples.invalid.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let n = batch
        .series_ids
        .len()
        .max(batch.time_deltas.len())
        .max(batch.values.len());
    let total = u32::try_from(n).unwrap_or(u32::MAX);
    let whole = |reason: RejectReason, message: String| BatchOutcome {
        ack: BatchAck {
            sequence: batch.sequence,
            accepted: 0,
            rejected: total,
            rejections: vec![Rejection {
                reason: reason as i32,
                count: total,
                message,
            }],
            durability: Durability::Received as i32,
            ..BatchAck::default()
        },
        accepted: Vec::new(),
        rejects: RejectCounts {
            invalid: if reason == RejectReason::Invalid {
                total
            } else {
                0
            },
            too_large: if reason == RejectReason::TooLarge {
                total
            } else {
                0
            },
            ..RejectCounts::default()
        },
        new_series: 0,
        bad_defs,
        refused_defs,
        cardinality_example: None,
    };
    if n > limits.max_batch_size {
        return whole(
            RejectReason::TooLarge,
            format!(
                "batch of {n} points exceeds limits.max_batch_size = {}",
                limits.max_batch_size
            ),
        );
    }
    if batch.series_ids.len() != n || batch.time_deltas.len() != n || batch.values.len() != n {
        return whole(
            RejectReason::Invalid,
            format!(
                "point columns differ in length: {} series_ids, {} time_deltas, {} values",
                batch.series_ids.len(),
                batch.time_deltas.len(),
                batch.values.len()
            ),
        );
    }

    let bounds = limits.time_window.bounds(now_ns);
    let mut accepted = Vec::with_capacity(n);
    let mut new_series = 0;
    let mut t = batch.base_time_unix_nano;
    let mut time_ok = true;
    let mut guard = budgets.lock(node);
    for i in 0..n {
        match t.checked_add(batch.time_deltas[i]) {
            Some(v) if time_ok => t = v,
            _ => time_ok = false,
        }
        let id = batch.series_ids[i];
        let value = batch.values[i];
        let entry = match dict.lookup(id) {
            Ok(e) => e,
            Err(why) => {
                rejects.invalid += 1;
                examples
                    .invalid
                    .get_or_insert_with(|| format!("point {i}: {why}"));
                continue;
            }
        };
        if !time_ok {
            rejects.invalid += 1;
            examples
                .invalid
                .get_or_insert_with(|| format!("point {i}: timestamp overflows 64 bits"));
            continue;
        }
        if let Err(e) = validate_point(t, value, bounds) {
            rejects.invalid += 1;
            examples
                .invalid
                .get_or_insert_with(|| format!("point {i} of {:?}: {e}", cut(&entry.metric)));
            continue;
        }
        match guard.admit(entry.series_hash, entry.metric_hash, now_secs) {
            Admission::Existing => {}
            Admission::New => new_series += 1,
            Admission::Rejected(limit) => {
                match limit {
                    Limit::Node => rejects.cardinality_node += 1,
                    Limit::Metric => rejects.cardinality_metric += 1,
                    Limit::Relay => rejects.cardinality_relay += 1,
                }
                examples.cardinality.get_or_insert_with(|| {
                    cardinality_message(&node.usage(), limit, &entry.metric, budgets)
                });
                continue;
            }
        }
        accepted.push(AcceptedPoint {
            series: entry.clone(),
            time_unix_nano: t,
            value,
        });
    }
    drop(guard);

    let mut rejections = Vec::new();
    if rejects.cardinality() > 0 {
        rejections.push(Rejection {
            reason: RejectReason::Cardinality as i32,
            count: rejects.cardinality(),
            message: examples.cardinality.clone().unwrap_or_default(),
        });
    }
    if rejects.invalid > 0 {
        rejections.push(Rejection {
            reason: RejectReason::Invalid as i32,
            count: rejects.invalid,
            message: examples.invalid.unwrap_or_default(),
        });
    }
    let accepted_n = u32::try_from(accepted.len()).unwrap_or(u32::MAX);
    BatchOutcome {
        ack: BatchAck {
            sequence: batch.sequence,
            accepted: accepted_n,
            rejected: total - accepted_n,
            rejections,
            durability: Durability::Received as i32,
            ..BatchAck::default()
        },
        accepted,
        rejects,
        new_series,
        bad_defs,
        refused_defs,
        cardinality_example: examples.cardinality,
    }
}

fn cardinality_message(
    u: &crate::budget::NodeUsage,
    limit: Limit,
    metric: &str,
    budgets: &Budgets,
) -> String {
    match limit {
        Limit::Node => format!(
            "node {} is at its series budget ({}/{} live series); new series of {:?} refused",
            u.node,
            u.live,
            u.limit,
            cut(metric)
        ),
        Limit::Metric => format!(
            "node {} is at its per-metric series cap for {:?}; new series refused",
            u.node,
            cut(metric)
        ),
        Limit::Relay => format!(
            "relay is at its series cap ({} live series); new series of {:?} refused",
            budgets.total(),
            cut(metric)
        ),
    }
}

#[cfg(test)]
mod tests;
