//! The pages of an object's coded columns, one per node group, for
//! [`coded::write_chunk`]: a top-level column's codes ([`flat_pages`]), and
//! the `labels` map's codes and levels ([`LabelCodes`]).

use parquet::schema::types::ColumnDescPtr;

use super::coded;
use super::groups::NodeGroup;
use super::rows::{Rest, SortedRows};
use super::sort::SortKey;
use crate::proto::Label;

/// The pages of a top-level column of `codes`, a code per row: one per
/// group.
pub(super) fn flat_pages<'b>(
    codes: &'b [u32],
    groups: &'b [NodeGroup],
) -> impl Iterator<Item = coded::CodedPage<'b>> {
    let mut start = 0;
    groups.iter().map(move |g| {
        let page = coded::CodedPage {
            rows: g.rows,
            codes: &codes[start..start + g.rows],
            levels: None,
        };
        start += g.rows;
        page
    })
}

/// The `labels` map of an object's rows as codes and levels: each row's
/// (key, value) codes, coded once per series (rows of a series are
/// adjacent in an object, and share their labels' memory).
pub(super) struct LabelCodes {
    keys: Vec<u32>,
    values: Vec<u32>,
    key_def: Vec<i16>,
    value_def: Vec<i16>,
    rep: Vec<i16>,
    /// Per group: its rows, and where it ends in the levels and in the
    /// codes.
    ends: Vec<(usize, usize, usize)>,
}

impl LabelCodes {
    /// The codes of the rows `slice` names, in `groups`; `code` gives the
    /// codes of a row's labels (called once per series).
    pub(super) fn of<'a>(
        sorted: &SortedRows<'a>,
        slice: &[(SortKey, u32)],
        groups: &[NodeGroup],
        [key, value]: [&ColumnDescPtr; 2],
        mut code: impl FnMut(&Rest<'a>, &mut Vec<(u32, u32)>),
    ) -> Self {
        let entries: usize = slice
            .iter()
            .map(|(_, i)| sorted.rest[*i as usize].labels.len().max(1))
            .sum();
        let mut out = Self {
            keys: Vec::with_capacity(entries),
            values: Vec::with_capacity(entries),
            key_def: Vec::with_capacity(entries),
            value_def: Vec::with_capacity(entries),
            rep: Vec::with_capacity(entries),
            ends: Vec::with_capacity(groups.len()),
        };
        // An entry is present at the key's and the value's deepest level
        // (a value is never null); a row of no labels is one level at 0.
        let (key_def, value_def) = (key.max_def_level(), value.max_def_level());
        let mut last: Option<&[Label]> = None;
        let mut coded: Vec<(u32, u32)> = Vec::new();
        let mut rows = slice.iter();
        for g in groups {
            for (_, i) in rows.by_ref().take(g.rows) {
                let rest = &sorted.rest[*i as usize];
                if !last.is_some_and(|l| std::ptr::eq(l, rest.labels)) {
                    coded.clear();
                    code(rest, &mut coded);
                    last = Some(rest.labels);
                }
                if coded.is_empty() {
                    out.key_def.push(0);
                    out.value_def.push(0);
                    out.rep.push(0);
                }
                for (j, &(k, v)) in coded.iter().enumerate() {
                    out.keys.push(k);
                    out.values.push(v);
                    out.key_def.push(key_def);
                    out.value_def.push(value_def);
                    out.rep.push(i16::from(j > 0));
                }
            }
            out.ends.push((g.rows, out.rep.len(), out.keys.len()));
        }
        out
    }

    /// The pages of the keys' column (`keys`) or the values'.
    pub(super) fn pages(&self, keys: bool) -> impl Iterator<Item = coded::CodedPage<'_>> {
        let (codes, def) = if keys {
            (&self.keys, &self.key_def)
        } else {
            (&self.values, &self.value_def)
        };
        let (mut level, mut code) = (0, 0);
        self.ends.iter().map(move |&(rows, level_end, code_end)| {
            let page = coded::CodedPage {
                rows,
                codes: &codes[code..code_end],
                levels: Some((&def[level..level_end], &self.rep[level..level_end])),
            };
            (level, code) = (level_end, code_end);
            page
        })
    }
}
