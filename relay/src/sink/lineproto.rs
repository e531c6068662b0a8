//! InfluxDB line protocol, with exact escaping.
//!
//! One point per line: `measurement,tag=value,... value=<float> <unix ns>`.
//! The measurement is the metric name, the tags are the labels plus `node`
//! (the certificate identity) in key order, the single field is `value`.
//!
//! Escaping follows the InfluxDB line-protocol reference: in the
//! measurement, commas and spaces are escaped; in tag keys and values,
//! commas, equals signs and spaces. Quotes need no escaping outside string
//! fields, and newlines and other control characters never get this far: the
//! relay rejects them as invalid.
//!
//! Backslashes are where servers differ. The v2 reference (InfluxDB 2.x,
//! 3.x, VictoriaMetrics) reads `\\` as one backslash, so [`Escaping::V2`]
//! doubles them. InfluxDB 1.x only unescapes `\,`, `\=` and `\ ` and keeps
//! any other backslash as written, so [`Escaping::V1`] writes backslashes
//! as they are; there, a name or value with a backslash directly before a
//! comma, equals sign or space cannot be represented exactly.
//!
//! A series is escaped once, not once per point: [`SeriesLine`] holds its
//! measurement and tags as they go on the wire, split where the node tag
//! goes, and the series dictionary keeps it with the series
//! (`SeriesEntry::line_protocol`). A point's line is then three copies, the
//! value (shortest round-trip form, `ryu`) and the timestamp (`itoa`).

use horizon_shared::model::NODE_LABEL;
use horizon_shared::proto::Label;

/// How backslashes are written (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escaping {
    /// InfluxDB 2.x / 3.x and the v2 write API: `\` is doubled.
    V2,
    /// InfluxDB 1.x: `\` is written as is.
    V1,
}

fn escape(out: &mut String, s: &str, specials: &[u8], esc: Escaping) {
    let special = |c: u8| specials.contains(&c) || (c == b'\\' && esc == Escaping::V2);
    // Every special character is ASCII, so a byte scan finds them all and
    // never splits a character.
    if !s.bytes().any(special) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if c.is_ascii() && special(c as u8) {
            out.push('\\');
        }
        out.push(c);
    }
}

const TAG_SPECIALS: &[u8] = b",= ";
const MEASUREMENT_SPECIALS: &[u8] = b", ";

fn tag(out: &mut String, key: &str, value: &str, esc: Escaping) {
    out.push(',');
    escape(out, key, TAG_SPECIALS, esc);
    out.push('=');
    escape(out, value, TAG_SPECIALS, esc);
}

/// A series' measurement and tags as written on the wire, escaped once.
#[derive(Debug, Clone)]
pub struct SeriesLine {
    escaping: Escaping,
    /// Measurement and every tag but the node's.
    text: Box<str>,
    /// Where the node tag goes in `text` (tags are in key order).
    node_at: usize,
}

impl SeriesLine {
    /// Escapes a series (labels in canonical order) for `esc`.
    pub fn new(esc: Escaping, metric: &str, labels: &[Label]) -> Self {
        let mut text = String::with_capacity(
            metric.len()
                + labels
                    .iter()
                    .map(|l| l.key.len() + l.value.len() + 2)
                    .sum::<usize>(),
        );
        escape(&mut text, metric, MEASUREMENT_SPECIALS, esc);
        let mut node_at = None;
        for l in labels {
            if node_at.is_none() && l.key.as_str() > NODE_LABEL {
                node_at = Some(text.len());
            }
            tag(&mut text, &l.key, &l.value, esc);
        }
        Self {
            escaping: esc,
            node_at: node_at.unwrap_or(text.len()),
            text: text.into_boxed_str(),
        }
    }

    /// The escaping it was made for.
    pub fn escaping(&self) -> Escaping {
        self.escaping
    }

    /// Bytes it holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.text.len()
    }
}

/// The node tag as it goes on the wire: `,node=<escaped node>`.
pub fn node_tag(esc: Escaping, node: &str) -> String {
    let mut out = String::with_capacity(node.len() + NODE_LABEL.len() + 2);
    tag(&mut out, NODE_LABEL, node, esc);
    out
}

/// Appends one point as a line (with its trailing newline): the series,
/// the node tag from [`node_tag`] (made with the same escaping), the value
/// and the timestamp.
pub fn write_line(
    out: &mut String,
    series: &SeriesLine,
    node_tag: &str,
    value: f64,
    time_unix_nano: i64,
) {
    let (before, after) = series.text.split_at(series.node_at);
    out.push_str(before);
    out.push_str(node_tag);
    out.push_str(after);
    out.push_str(" value=");
    write_float(out, value);
    out.push(' ');
    out.push_str(itoa::Buffer::new().format(time_unix_nano));
    out.push('\n');
}

/// Integral values below this are written as integers and `.0`: exact,
/// and a fifth of the work of the general case (telemetry is often whole
/// numbers: clocks, temperatures, counts, utilisation).
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0; // 2^53

/// Appends a float that InfluxDB reads back as the same float field: always
/// with a decimal point or an exponent (a bare integer would still be a
/// float in line protocol, but `.0` says so to every reader).
fn write_float(out: &mut String, value: f64) {
    if value.fract() == 0.0
        && value.abs() < EXACT_INTEGERS
        && !(value == 0.0 && value.is_sign_negative())
    {
        // Lossless: |value| < 2^53 is an integer an i64 holds exactly.
        out.push_str(itoa::Buffer::new().format(value as i64));
        out.push_str(".0");
    } else {
        // The shortest text that reads back as the same float. Values are
        // finite (the relay rejects others); `format` would write `NaN`
        // and `inf` rather than garbage regardless.
        out.push_str(ryu::Buffer::new().format(value));
    }
}

/// Appends one point as a line (with its trailing newline), escaping its
/// series on the way: [`SeriesLine`], [`node_tag`] and [`write_line`] in one.
pub fn write_point(
    out: &mut String,
    esc: Escaping,
    metric: &str,
    node: &str,
    labels: &[Label],
    value: f64,
    time_unix_nano: i64,
) {
    write_line(
        out,
        &SeriesLine::new(esc, metric, labels),
        &node_tag(esc, node),
        value,
        time_unix_nano,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(k: &str, v: &str) -> Label {
        Label {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn plain_point() {
        let mut s = String::new();
        write_point(
            &mut s,
            Escaping::V2,
            "gpu_util",
            "n1",
            &[l("gpu", "0"), l("uuid", "GPU-1")],
            97.0,
            1_700_000_000_000_000_000,
        );
        assert_eq!(
            s,
            "gpu_util,gpu=0,node=n1,uuid=GPU-1 value=97.0 1700000000000000000\n"
        );
    }

    #[test]
    fn node_tag_goes_in_key_order() {
        for (labels, want) in [
            (vec![], "m,node=n value=1.0 5\n"),
            (vec![l("a", "1")], "m,a=1,node=n value=1.0 5\n"),
            (vec![l("z", "1")], "m,node=n,z=1 value=1.0 5\n"),
            (
                vec![l("a", "1"), l("nod", "2"), l("nodf", "3"), l("z", "4")],
                "m,a=1,nod=2,node=n,nodf=3,z=4 value=1.0 5\n",
            ),
        ] {
            let mut s = String::new();
            write_point(&mut s, Escaping::V1, "m", "n", &labels, 1.0, 5);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn one_series_line_serves_every_node_and_point() {
        let series = SeriesLine::new(Escaping::V2, "m x", &[l("a", "1"), l("z", "2")]);
        let mut s = String::new();
        write_line(&mut s, &series, &node_tag(Escaping::V2, "n 1"), 0.5, -1);
        write_line(&mut s, &series, &node_tag(Escaping::V2, "n2"), 2.0, 7);
        assert_eq!(
            s,
            "m\\ x,a=1,node=n\\ 1,z=2 value=0.5 -1\nm\\ x,a=1,node=n2,z=2 value=2.0 7\n"
        );
    }

    #[test]
    fn escapes_every_special_character() {
        let mut s = String::new();
        write_point(
            &mut s,
            Escaping::V2,
            r#"m a,b="c"=d\"#,
            "n 1",
            &[l("k,=\\ x", r#"v "q",=\"#)],
            -1.5e-300,
            -5,
        );
        assert_eq!(
            s,
            "m\\ a\\,b=\"c\"=d\\\\,k\\,\\=\\\\\\ x=v\\ \"q\"\\,\\=\\\\,node=n\\ 1 value=-1.5e-300 -5\n"
        );
        let mut s = String::new();
        write_point(
            &mut s,
            Escaping::V1,
            r"m\x",
            "n",
            &[l(r"a\b", r"c\d e")],
            1.0,
            0,
        );
        assert_eq!(s, r"m\x,a\b=c\d\ e,node=n value=1.0 0".to_owned() + "\n");
    }

    #[test]
    fn escapes_next_to_multibyte_characters() {
        let mut s = String::new();
        write_point(
            &mut s,
            Escaping::V2,
            "é m",
            "ü,n",
            &[l("ключ=", "値 ✓")],
            3.0,
            1,
        );
        // "ключ" sorts after "node" (byte order), so the node tag comes first.
        assert_eq!(s, "é\\ m,node=ü\\,n,ключ\\==値\\ ✓ value=3.0 1\n");
    }

    #[test]
    fn values_round_trip_as_floats() {
        for v in [
            0.0,
            -0.0,
            1.0,
            -2.0,
            0.1,
            1e21,
            1e-7,
            9_007_199_254_740_991.0,
            9_007_199_254_740_992.0,
            -9_007_199_254_740_993.0,
            1e15 + 0.5,
            312.456,
            123_456_789.125,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            5e-324,
        ] {
            let mut s = String::new();
            write_point(&mut s, Escaping::V2, "m", "n", &[], v, 0);
            let field = s.split(' ').nth(1).unwrap().strip_prefix("value=").unwrap();
            assert!(
                field.contains('.') || field.contains('e'),
                "{field} must read as a float"
            );
            assert_eq!(
                field.parse::<f64>().unwrap().to_bits(),
                v.to_bits(),
                "{field}"
            );
            assert_eq!(field, ryu::Buffer::new().format(v), "the shortest form");
        }
    }

    #[test]
    fn timestamps_are_exact() {
        for t in [0, 1, -1, i64::MAX, i64::MIN, 1_700_000_000_123_456_789] {
            let mut s = String::new();
            write_point(&mut s, Escaping::V2, "m", "n", &[], 1.0, t);
            assert_eq!(s.trim_end().rsplit(' ').next().unwrap(), t.to_string());
        }
    }
}
