//! Routing the relays' late objects (`<raw>/_late/`, one per flush, rows of
//! many past hours) to their hours: a run reads them in groups, writes one
//! raw object per hour per group into the hour's partition, and only then
//! deletes the group's late objects. The hour objects are ordinary raw
//! objects from there on (docs/compaction.md, "Late data").
//!
//! A crash before the deletes leaves the late objects; the next run routes
//! them again. The same group gets the same object names (a hash of its
//! members), so create-only writes find them already there; a different
//! group writes copies of rows already routed, which the deduplication
//! removes like any other resend.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampNanosecondType;
use bytes::Bytes;
use futures::StreamExt;
use horizon_shared::layout::{Hour, LATE_DIR};
use horizon_shared::raw;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;
use tracing::{info, warn};

use crate::ctx::blocking;
use crate::error::{DecodeError, UnitError};
use crate::keys::Keys;
use crate::merge::{self, MergeError, Orderer};
use crate::settings::Settings;
use crate::store::{StoreError, create, get_bytes, list_all, store_err};

/// What routing did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Routed {
    /// Late objects routed (and deleted).
    pub late_objects: usize,
    /// Hour objects written.
    pub hour_objects: usize,
    /// Rows routed.
    pub rows: u64,
    /// Unreadable late objects moved to the quarantine prefix.
    pub quarantined: Vec<String>,
}

/// Routes every late object under `<raw>/_late/` to its hours.
pub(crate) async fn route_late(
    store: &Arc<dyn ObjectStore>,
    keys: &Keys,
    settings: &Settings,
) -> Result<Routed, UnitError> {
    let dir = Path::from(format!("{}/{LATE_DIR}", keys.raw_root()));
    let mut objects: Vec<ObjectMeta> = list_all(store, &dir)
        .await?
        .into_iter()
        .filter(|m| m.location.as_ref().ends_with(".parquet"))
        .collect();
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    let mut out = Routed::default();
    // Groups of a twelfth of the sort memory in compressed bytes (decoded rows are larger).
    let limit = (settings.sort_memory / 12).max(1);
    let mut group: Vec<ObjectMeta> = Vec::new();
    let mut bytes = 0;
    for meta in objects {
        bytes += meta.size;
        group.push(meta);
        if bytes >= limit {
            route_group(store, keys, settings, std::mem::take(&mut group), &mut out).await?;
            bytes = 0;
        }
    }
    if !group.is_empty() {
        route_group(store, keys, settings, group, &mut out).await?;
    }
    if out.late_objects > 0 {
        info!(
            late_objects = out.late_objects,
            hour_objects = out.hour_objects,
            rows = out.rows,
            "routed late objects to their hours"
        );
    }
    Ok(out)
}

async fn route_group(
    store: &Arc<dyn ObjectStore>,
    keys: &Keys,
    settings: &Settings,
    group: Vec<ObjectMeta>,
    out: &mut Routed,
) -> Result<(), UnitError> {
    let id = xxhash_rust::xxh3::xxh3_64(
        group
            .iter()
            .map(|m| m.location.as_ref())
            .collect::<Vec<_>>()
            .join("\n")
            .as_bytes(),
    );
    let mut fetched = futures::stream::iter(group.iter().cloned())
        .map(|meta| {
            let store = Arc::clone(store);
            async move {
                let bytes = get_bytes(&store, &meta.location).await?;
                let decoded = blocking(move || decode(bytes)).await?;
                Ok::<_, UnitError>((meta, decoded))
            }
        })
        .buffered(settings.read_concurrency as usize);
    let mut by_hour: BTreeMap<Hour, Vec<RecordBatch>> = BTreeMap::new();
    let mut done: Vec<Path> = Vec::new();
    while let Some(item) = fetched.next().await {
        let (meta, decoded) = item?;
        match decoded {
            Ok(batches) => {
                for b in batches {
                    split_by_hour(&b, &mut by_hour)?;
                }
                done.push(meta.location);
            }
            Err(reason) => {
                let to = keys.quarantine(&meta.location);
                warn!(object = %meta.location, quarantine = %to, %reason, "late object is unreadable; moving it aside");
                store
                    .copy(&meta.location, &to)
                    .await
                    .map_err(store_err("copy", &meta.location))?;
                delete(store, &meta.location).await?;
                out.quarantined.push(meta.location.to_string());
            }
        }
    }
    for (hour, batches) in by_hour {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let body = blocking(move || encode(&batches)).await??;
        let key = Path::from(format!("{}/late-{id:016x}.parquet", keys.raw_dir(hour)));
        // Already there: this same group was routed by a run that crashed.
        create(store, &key, body.to_vec()).await?;
        out.hour_objects += 1;
        out.rows += rows as u64;
    }
    for key in &done {
        delete(store, key).await?;
    }
    out.late_objects += done.len();
    Ok(())
}

async fn delete(store: &Arc<dyn ObjectStore>, key: &Path) -> Result<(), StoreError> {
    match store.delete(key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(store_err("delete", key)(e)),
    }
}

/// A late object's batches, in schema version 2 (a version-1 object's
/// rows read with `metric_type = "unknown"`).
fn decode(bytes: Bytes) -> Result<Vec<RecordBatch>, DecodeError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    raw::check_schema(reader.schema())?;
    Ok(reader
        .with_batch_size(64 * 1024)
        .build()?
        .map(|b| b.and_then(raw::upgrade_batch))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Appends each hour's rows of `batch` to `by_hour`.
fn split_by_hour(
    batch: &RecordBatch,
    by_hour: &mut BTreeMap<Hour, Vec<RecordBatch>>,
) -> Result<(), UnitError> {
    let idx = raw::raw_schema()
        .index_of("time")
        .map_err(MergeError::from)?;
    let time = batch.column(idx).as_primitive::<TimestampNanosecondType>();
    let mut hours: BTreeMap<Hour, Vec<u32>> = BTreeMap::new();
    for (i, t) in time.values().iter().enumerate() {
        hours.entry(Hour::of_nanos(*t)).or_default().push(i as u32);
    }
    for (hour, rows) in hours {
        let picked =
            arrow_select::take::take_record_batch(batch, &arrow_array::UInt32Array::from(rows))
                .map_err(MergeError::from)?;
        by_hour.entry(hour).or_default().push(picked);
    }
    Ok(())
}

/// One hour's rows as a raw object: sorted, deduplicated, raw properties.
fn encode(batches: &[RecordBatch]) -> Result<Bytes, MergeError> {
    let orderer = Orderer::new()?;
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(
        &mut buf,
        raw::raw_schema(),
        Some(raw::raw_writer_properties(false)),
    )
    .map_err(merge::pq(std::path::Path::new("late object")))?;
    merge::sort_dedup(&orderer, batches, |b| {
        w.write(&b)
            .map_err(merge::pq(std::path::Path::new("late object")))
    })?;
    w.close()
        .map_err(merge::pq(std::path::Path::new("late object")))?;
    Ok(Bytes::from(buf))
}
