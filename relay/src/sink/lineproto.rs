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

use std::fmt::Write;

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

fn escape(out: &mut String, s: &str, specials: &[char], esc: Escaping) {
    let special = |c: char| specials.contains(&c) || (c == '\\' && esc == Escaping::V2);
    if !s.contains(special) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if special(c) {
            out.push('\\');
        }
        out.push(c);
    }
}

fn tag(out: &mut String, key: &str, value: &str, esc: Escaping) {
    out.push(',');
    escape(out, key, &[',', '=', ' '], esc);
    out.push('=');
    escape(out, value, &[',', '=', ' '], esc);
}

/// Appends one point as a line (with its trailing newline).
pub fn write_point(
    out: &mut String,
    esc: Escaping,
    metric: &str,
    node: &str,
    labels: &[Label],
    value: f64,
    time_unix_nano: i64,
) {
    escape(out, metric, &[',', ' '], esc);
    let mut node_written = false;
    for l in labels {
        if !node_written && l.key.as_str() > NODE_LABEL {
            tag(out, NODE_LABEL, node, esc);
            node_written = true;
        }
        tag(out, &l.key, &l.value, esc);
    }
    if !node_written {
        tag(out, NODE_LABEL, node, esc);
    }
    // `{:?}` prints a float with enough digits to round-trip and always with
    // a decimal point or exponent, so InfluxDB reads it as a float field.
    let _ = writeln!(out, " value={value:?} {time_unix_nano}");
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
    fn values_round_trip_as_floats() {
        for v in [
            0.0,
            1.0,
            -2.0,
            0.1,
            1e21,
            123_456_789.125,
            f64::MIN_POSITIVE,
            f64::MAX,
        ] {
            let mut s = String::new();
            write_point(&mut s, Escaping::V2, "m", "n", &[], v, 0);
            let field = s.split(' ').nth(1).unwrap().strip_prefix("value=").unwrap();
            assert!(
                field.contains('.') || field.contains('e'),
                "{field} must read as a float"
            );
            assert_eq!(field.parse::<f64>().unwrap(), v);
        }
    }
}
