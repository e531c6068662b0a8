//! One object's bytes, from the rows a slice of the sort names: written
//! by the Arrow writer from a record batch ([`encode_rows`]), or, cut into
//! node groups, a group at a time with the string columns written from
//! codes ([`encode_coded`]).

use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::coded;
use super::codes::Codes;
use super::columns::{build_sorted_batch, metric_type_codes, numeric_columns};
use super::format::EncodeError;
use super::groups::{NODE_GROUPS_KEY, NodeGroup, format_node_groups, grouped_properties};
use super::labels::lock_sets;
use super::pages::{LabelCodes, flat_pages};
use super::rows::SortedRows;
use super::schema::{METRIC_TYPES, raw_schema};
use super::sort::SortKey;

/// Encodes the rows `slice` names (in its order) as one Parquet object.
pub(super) fn encode_rows(
    sorted: &SortedRows<'_>,
    slice: &[(SortKey, u32)],
    relay: &str,
    props: &WriterProperties,
) -> Result<Bytes, EncodeError> {
    encode_rows_grouped(sorted, slice, relay, props, &[])
}

/// [`encode_rows`], cutting a data page in every column at the end of each
/// of `groups` (in row order) and listing them under [`NODE_GROUPS_KEY`];
/// fewer than two groups: as [`encode_rows`] writes, no list.
pub(super) fn encode_rows_grouped(
    sorted: &SortedRows<'_>,
    slice: &[(SortKey, u32)],
    relay: &str,
    props: &WriterProperties,
    groups: &[NodeGroup],
) -> Result<Bytes, EncodeError> {
    if groups.len() >= 2 {
        return encode_coded(sorted, slice, relay, &grouped_properties(props), groups);
    }
    let batch = build_sorted_batch(sorted, slice, relay).map_err(EncodeError::Batch)?;
    let mut buf = Vec::with_capacity(slice.len() * 8);
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props.clone()))
        .map_err(EncodeError::Start)?;
    w.write(&batch).map_err(EncodeError::Write)?;
    w.close().map_err(EncodeError::Finish)?;
    Ok(Bytes::from(buf))
}

/// The leaf columns of [`raw_schema`], in order, as [`encode_coded`]
/// writes them: from codes, or (`false`) through the Arrow writer.
const LEAVES: [(&str, bool); 10] = [
    ("node", true),
    ("metric", true),
    ("labels.key_value.key", true),
    ("labels.key_value.value", true),
    ("series_id", false),
    ("time", false),
    ("value", false),
    ("received_at", false),
    ("relay", true),
    ("metric_type", true),
];

/// An object cut into node `groups` (at least two), written with `props`
/// (from [`grouped_properties`]): the file the Arrow writer makes of
/// [`build_sorted_batch`] written a group at a time, byte for byte, with
/// the string columns written from the sort's codes ([`coded`]) and the
/// numeric ones by the Arrow writer's column writers.
fn encode_coded(
    sorted: &SortedRows<'_>,
    slice: &[(SortKey, u32)],
    relay: &str,
    props: &WriterProperties,
    groups: &[NodeGroup],
) -> Result<Bytes, EncodeError> {
    let schema = raw_schema();
    let mut buf = Vec::with_capacity(slice.len() * 8);
    // The Arrow writer's file writer: the Parquet schema and the Arrow
    // schema in the metadata, as it writes them.
    let (mut file, factory) = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props.clone()))
        .and_then(ArrowWriter::into_serialized_writer)
        .map_err(EncodeError::Start)?;
    let leaves: Vec<_> = file.schema_descr().columns().to_vec();
    let writers = factory
        .create_column_writers(0)
        .map_err(EncodeError::Start)?;
    let paths: Vec<String> = leaves.iter().map(|l| l.path().string()).collect();
    if writers.len() != LEAVES.len() || !paths.iter().eq(LEAVES.iter().map(|(p, _)| p)) {
        return Err(EncodeError::Start(ParquetError::General(format!(
            "the raw schema's leaf columns are {paths:?}, not those the encoder writes"
        ))));
    }

    // The numeric columns, a write per group: the writer ends a page after
    // each write.
    let mut writers: Vec<_> = writers.into_iter().map(Some).collect();
    for (j, array) in numeric_columns(sorted, slice).iter().enumerate() {
        // Leaves 4 to 7 are the top-level fields 3 to 6.
        let field = schema.field(3 + j);
        let w = writers[4 + j].as_mut().expect("each leaf written once");
        let mut offset = 0;
        for g in groups {
            for column in
                compute_leaves(field, &array.slice(offset, g.rows)).map_err(EncodeError::Write)?
            {
                w.write(&column).map_err(EncodeError::Write)?;
            }
            offset += g.rows;
        }
    }

    // The string columns' codes, and each group's end in them. The
    // labels' come from the flush's label sets when it has them and they
    // are still of the generation its rows were coded in; else from the
    // text, coded over the object's distinct strings.
    let sets = sorted
        .sets
        .map(|(sets, generation)| (lock_sets(sets), generation))
        .filter(|(sets, generation)| sets.generation() == *generation)
        .map(|(sets, _)| sets);
    let label_leaves = [&leaves[2], &leaves[3]];
    // The labels' two chunks, written while the sets are locked (they hold
    // the names), and only those.
    let mut label_chunks = match sets {
        Some(sets) => {
            let labels = LabelCodes::of(sorted, slice, groups, label_leaves, |rest, coded| {
                coded.extend_from_slice(sets.entries(rest.set));
            });
            [true, false].map(|keys| {
                let descr = label_leaves[usize::from(!keys)];
                coded::write_chunk(descr, props, sets.names(), labels.pages(keys))
            })
        }
        None => {
            let mut text = Codes::default();
            let labels = LabelCodes::of(sorted, slice, groups, label_leaves, |rest, coded| {
                for l in rest.labels {
                    coded.push((text.code(&l.key), text.code(&l.value)));
                }
            });
            [true, false].map(|keys| {
                let descr = label_leaves[usize::from(!keys)];
                coded::write_chunk(descr, props, &text.names, labels.pages(keys))
            })
        }
    }
    .map(Some);
    let node: Vec<u32> = slice.iter().map(|(k, _)| k.node).collect();
    let metric: Vec<u32> = slice.iter().map(|(k, _)| k.metric).collect();
    let relay_codes = vec![0u32; slice.len()];
    let type_codes = metric_type_codes(sorted, slice);
    let flat = |codes| flat_pages(codes, groups);
    let relays = [relay];

    let mut rg = file.next_row_group().map_err(EncodeError::Write)?;
    for (leaf, descr) in leaves.iter().enumerate() {
        let writer = writers[leaf].take().expect("each leaf written once");
        if !LEAVES[leaf].1 {
            let chunk = writer.close().map_err(EncodeError::Write)?;
            chunk
                .append_to_row_group(&mut rg)
                .map_err(EncodeError::Write)?;
            continue;
        }
        let (bytes, close) = match leaf {
            0 => coded::write_chunk(descr, props, &sorted.nodes, flat(&node)),
            1 => coded::write_chunk(descr, props, &sorted.metrics, flat(&metric)),
            2 | 3 => label_chunks[leaf - 2]
                .take()
                .expect("each label chunk appended once"),
            8 => coded::write_chunk(descr, props, &relays, flat(&relay_codes)),
            _ => coded::write_chunk(descr, props, &METRIC_TYPES, flat(&type_codes)),
        }
        .map_err(EncodeError::Write)?;
        rg.append_column(&bytes, close)
            .map_err(EncodeError::Write)?;
    }
    rg.close().map_err(EncodeError::Write)?;
    file.append_key_value_metadata(KeyValue::new(
        NODE_GROUPS_KEY.into(),
        format_node_groups(groups),
    ));
    file.close().map_err(EncodeError::Finish)?;
    Ok(Bytes::from(buf))
}
