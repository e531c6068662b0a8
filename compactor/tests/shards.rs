//! Shards of an hour read only their share of the raw objects: an hour
//! compacted with `--shards 4` holds the same rows as with one unit, and
//! each shard reads under 40% of the raw bytes (counted by a store
//! wrapper around a local directory, `--read-gap 0`). Raw objects without the node-group
//! list (written before it, or with it stripped) are read whole and
//! compacted the same.

#![allow(clippy::unwrap_used)]

use std::fmt;
use std::future::Future;
use std::path::Path as FsPath;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType};
use bytes::Bytes;
use futures::stream::BoxStream;
use horizon_compactor::{Compactor, Outcome, Settings, Unit, UnitResult};
use horizon_shared::layout::{Hour, raw_object_key};
use horizon_shared::proto::{Label, MetricType};
use horizon_shared::raw::{self, RawPoint, encode_raw_objects};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use xxhash_rust::xxh3::xxh3_64 as xxh3;

type Fut<'a, T> = Pin<Box<dyn Future<Output = object_store::Result<T>> + Send + 'a>>;

/// A store that counts the bytes its GETs return, and can garble what it
/// returns for a range that ends before the object does.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ObjectStore>,
    read: AtomicU64,
    garble: bool,
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

impl ObjectStore for Counting {
    fn put_opts<'a, 'b, 'c>(
        &'a self,
        location: &'b Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Fut<'c, PutResult>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        self.inner.put_opts(location, payload, opts)
    }

    fn put_multipart_opts<'a, 'b, 'c>(
        &'a self,
        location: &'b Path,
        opts: PutMultipartOptions,
    ) -> Fut<'c, Box<dyn MultipartUpload>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        self.inner.put_multipart_opts(location, opts)
    }

    fn get_opts<'a, 'b, 'c>(&'a self, location: &'b Path, options: GetOptions) -> Fut<'c, GetResult>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        Box::pin(async move {
            let r = self.inner.get_opts(location, options).await?;
            self.read
                .fetch_add(r.range.end - r.range.start, Ordering::Relaxed);
            if !self.garble || r.range.end == r.meta.size {
                return Ok(r);
            }
            let (meta, range, attributes) = (r.meta.clone(), r.range.clone(), r.attributes.clone());
            let zeros = Bytes::from(vec![0u8; r.bytes().await?.len()]);
            Ok(GetResult {
                payload: GetResultPayload::Stream(Box::pin(futures::stream::once(async {
                    Ok(zeros)
                }))),
                meta,
                range,
                attributes,
                extensions: Default::default(),
            })
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_delimiter<'a, 'b, 'c>(&'a self, prefix: Option<&'b Path>) -> Fut<'c, ListResult>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        self.inner.list_with_delimiter(prefix)
    }

    fn copy_opts<'a, 'b, 'd, 'c>(
        &'a self,
        from: &'b Path,
        to: &'d Path,
        options: CopyOptions,
    ) -> Fut<'c, ()>
    where
        'a: 'c,
        'b: 'c,
        'd: 'c,
        Self: 'c,
    {
        self.inner.copy_opts(from, to, options)
    }
}

const HOUR: &str = "2025-06-01T10";

fn resent(node: &str) -> bool {
    ["000", "020", "040", "060"]
        .iter()
        .any(|n| node.ends_with(n))
}

/// Raw objects of one hour: 2 flushes by 2 relays of 64 nodes × 48 series
/// (18,432 rows an object: four node groups), each flush's points sent
/// again by the other relay 1 s later for nodes 000, 020, 040 and 060 (a
/// resend after a lost ack; the first copy stays).
fn points() -> Vec<(String, u64, Vec<RawPoint>)> {
    let hour = Hour::parse(HOUR).unwrap();
    let mut out = Vec::new();
    for flush in 0..2u64 {
        for relay in 0..2u64 {
            let mut pts = Vec::new();
            for n in (relay as usize..64).step_by(2) {
                for s in 0..48 {
                    for t in 0..12 {
                        let secs = (flush as i64 * 12 + t) * 30;
                        let time = (hour.start_unix_secs + secs) * 1_000_000_000 + n as i64;
                        pts.push(RawPoint {
                            node: format!("gpu-node-{n:03}"),
                            metric: format!("metric_{}", s % 5),
                            labels: vec![Label {
                                key: "gpu".into(),
                                value: (s / 5).to_string(),
                            }],
                            time,
                            // Values that do not compress away, as
                            // measurements do not.
                            value: (xxh3(&[n as u8, s as u8, t as u8, flush as u8]) % 1_000_000)
                                as f64
                                / 7.0,
                            received_at: time + 1_000_000,
                            metric_type: [MetricType::Gauge, MetricType::Counter][s % 2],
                        });
                    }
                }
            }
            let resend: Vec<RawPoint> = pts
                .iter()
                .filter(|p| resent(&p.node))
                .map(|p| RawPoint {
                    received_at: p.received_at + 1_000_000_000,
                    value: p.value + 0.5,
                    ..p.clone()
                })
                .collect();
            out.push((format!("relay-{relay}"), flush, pts));
            out.push((format!("relay-{}", 1 - relay), 100 + flush, resend));
        }
    }
    out
}

/// The object as the encoder before node groups wrote it: one row group,
/// no group list (rows in the new object's order; readers never relied
/// on more than each row group's order).
fn without_group_list(bytes: Bytes) -> Bytes {
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(
        &mut buf,
        batches[0].schema(),
        Some(raw::raw_writer_properties(false)),
    )
    .unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    Bytes::from(buf)
}

fn write_hour(dir: &FsPath, old_format: bool) -> u64 {
    let mut total = 0;
    for (relay, seq, pts) in points() {
        for (hour, _, bytes) in encode_raw_objects(&pts, &relay).unwrap() {
            let bytes = if old_format {
                without_group_list(bytes)
            } else {
                bytes
            };
            let key = raw_object_key("raw", hour, &relay, 1_700_000_000_000, seq);
            let path = dir.join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            total += bytes.len() as u64;
            std::fs::write(path, bytes).unwrap();
        }
    }
    total
}

/// Every committed row of the hour, sorted (metric, node, series, time,
/// received_at, relay, value).
type Row = (String, String, i64, i64, i64, String, u64);

fn committed_rows(dir: &FsPath) -> Vec<Row> {
    let mut rows = Vec::new();
    let part = dir.join("compacted/dt=2025-06-01/hour=10");
    for e in std::fs::read_dir(part).unwrap() {
        let file = std::fs::File::open(e.unwrap().path()).unwrap();
        for b in ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            let b = b.unwrap();
            let s = |name: &str, i: usize| {
                let d = b.column_by_name(name).unwrap().as_dictionary::<Int32Type>();
                let k = d.keys().value(i) as usize;
                d.values().as_string::<i32>().value(k).to_owned()
            };
            let i64s = |name: &str| {
                b.column_by_name(name)
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .clone()
            };
            let ts = |name: &str| {
                b.column_by_name(name)
                    .unwrap()
                    .as_primitive::<TimestampNanosecondType>()
                    .clone()
            };
            let (series, time, recv) = (i64s("series_id"), ts("time"), ts("received_at"));
            let value = b
                .column_by_name("value")
                .unwrap()
                .as_primitive::<Float64Type>()
                .clone();
            for i in 0..b.num_rows() {
                rows.push((
                    s("metric", i),
                    s("node", i),
                    series.value(i),
                    time.value(i),
                    recv.value(i),
                    s("relay", i),
                    value.value(i).to_bits(),
                ));
            }
        }
    }
    rows.sort();
    rows
}

/// Compacts the hour in `shards` units; returns each unit's bytes read
/// from the store (counted) and as the unit reports them.
async fn compact(dir: &FsPath, shards: u32, read_gap: &str) -> Vec<(u64, u64)> {
    compact_on(dir, shards, read_gap, false).await
}

/// [`compact`], the store garbling ranges that end before the object if
/// `garble`.
async fn compact_on(dir: &FsPath, shards: u32, read_gap: &str, garble: bool) -> Vec<(u64, u64)> {
    let counting = Arc::new(Counting {
        inner: Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap()),
        read: AtomicU64::new(0),
        garble,
    });
    let store: Arc<dyn ObjectStore> = counting.clone();
    let settings = Settings::from_args([
        "--shards",
        &shards.to_string(),
        "--read-gap",
        read_gap,
        "--work-dir",
        dir.to_str().unwrap(),
    ])
    .unwrap();
    let compactor = Compactor::with_store(settings, store);
    let hour = Hour::parse(HOUR).unwrap();
    let mut out = Vec::new();
    for shard in 0..shards {
        let before = counting.read.load(Ordering::Relaxed);
        let r = compactor
            .run_unit(
                Unit {
                    hour,
                    shard,
                    shards,
                },
                false,
            )
            .await;
        let UnitResult::Ok(Outcome::Compacted(c)) = r.result else {
            panic!("shard {shard}: {:?}", r.result);
        };
        assert!(c.quarantined.is_empty());
        let counted = counting.read.load(Ordering::Relaxed) - before;
        out.push((counted, c.bytes_read));
    }
    out
}

/// Raw bytes read by a unit: what it got from the store, less its own
/// bookkeeping (manifests and leases are a few hundred bytes each).
fn raw_read((counted, reported): (u64, u64)) -> u64 {
    assert!(
        counted >= reported,
        "the report counts no more than was read"
    );
    assert!(
        counted - reported < 16 * 1024,
        "bookkeeping reads are small"
    );
    reported
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_read_their_share_and_give_the_same_rows() {
    let one = tempfile::tempdir().unwrap();
    let four = tempfile::tempdir().unwrap();
    let raw_bytes = write_hour(one.path(), false);
    write_hour(four.path(), false);

    let whole = compact(one.path(), 1, "0").await;
    let rows = committed_rows(one.path());
    assert_eq!(rows.len(), 2 * 12 * 64 * 48, "every point once");
    for r in &rows {
        // Relay-1 serves the odd nodes; relay-0's copies of the even ones
        // were received first, so relay-1's resends of 000, 020, … lose.
        let odd = r.1.ends_with(['1', '3', '5', '7', '9']);
        let relay = if odd { "relay-1" } else { "relay-0" };
        assert_eq!(r.5, relay, "{r:?}");
        assert_eq!(r.4 - r.3, 1_000_000, "{r:?}");
    }
    assert_eq!(
        raw_read(whole[0]),
        raw_bytes,
        "one unit reads every object whole"
    );

    let shards = compact(four.path(), 4, "0").await;
    assert_eq!(committed_rows(four.path()), rows, "the same dataset");
    for (s, r) in shards.iter().enumerate() {
        let read = raw_read(*r);
        eprintln!("shard {s} read {read} of {raw_bytes} raw bytes");
        // A quarter of the pages, plus each object's footer, offset index
        // and dictionary pages: before node groups, every shard read every
        // object whole.
        assert!(
            read * 100 < raw_bytes * 40,
            "shard {s} read {read} of {raw_bytes} raw bytes"
        );
    }
}

/// The hour (in the format before node groups if `old_format`) compacted
/// in `shards` units, the store garbling ranged reads if `garble`, beside
/// the same hour compacted in one unit: checks that both hold the same
/// rows, and returns the hour's raw bytes and each shard's raw bytes read.
async fn against_one_unit(
    shards: u32,
    read_gap: &str,
    old_format: bool,
    garble: bool,
) -> (u64, Vec<u64>) {
    let one = tempfile::tempdir().unwrap();
    let many = tempfile::tempdir().unwrap();
    write_hour(one.path(), false);
    let raw_bytes = write_hour(many.path(), old_format);
    compact(one.path(), 1, "0").await;
    let reads = compact_on(many.path(), shards, read_gap, garble).await;
    assert_eq!(committed_rows(many.path()), committed_rows(one.path()));
    (raw_bytes, reads.into_iter().map(raw_read).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_within_the_read_gap_are_fetched_whole_in_one_get() {
    // Every object is under 1 MiB, the default gap.
    let (raw_bytes, reads) = against_one_unit(4, "1MiB", false, false).await;
    for read in reads {
        assert_eq!(read, raw_bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_without_the_group_list_are_read_whole() {
    let (raw_bytes, reads) = against_one_unit(4, "0", true, false).await;
    for (s, read) in reads.into_iter().enumerate() {
        // Every row group (all but the leading magic number and the page
        // indexes, which the reader does not need).
        assert!(
            read * 100 > raw_bytes * 90,
            "shard {s} read {read} of {raw_bytes}: whole objects"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_count_not_a_power_of_two_reads_whole_objects() {
    let (raw_bytes, reads) = against_one_unit(3, "0", false, false).await;
    for read in reads {
        assert_eq!(read, raw_bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_whose_parts_do_not_decode_are_fetched_whole_not_moved_aside() {
    // The store garbles every ranged read but the tail: the footer parses,
    // the offset index or the pages do not. Each object is then fetched
    // whole, and, being sound, compacted; none is quarantined (the unit
    // checks that).
    let (raw_bytes, reads) = against_one_unit(4, "0", false, true).await;
    for read in reads {
        assert!(read > raw_bytes, "parts, then every object whole");
    }
}
