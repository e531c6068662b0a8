//! A parser for the Prometheus text exposition format (0.0.4) and
//! OpenMetrics text (1.0), as exporters such as node_exporter and NVIDIA's
//! dcgm-exporter serve them.
//!
//! Every sample line becomes a [`Sample`] with the metric name and labels
//! exactly as the exporter wrote them: a histogram arrives as its
//! `_bucket` (with `le`), `_sum` and `_count` samples, a summary as its
//! quantile samples plus `_sum` and `_count`; counters, gauges and untyped
//! metrics as one sample each. `# HELP`, `# TYPE`, `# UNIT` and other
//! comments are read past (types are recorded in [`Exposition::types`]).
//!
//! - Label values may contain the escapes `\\`, `\"` and `\n`; any other
//!   backslash is kept as written (as Prometheus' own parsers do).
//! - Values are floats, including `NaN`, `+Inf`, `-Inf`.
//! - A timestamp, when present, is integer milliseconds in the Prometheus
//!   format and (fractional) seconds in OpenMetrics; both become Unix
//!   milliseconds in [`Sample::timestamp_ms`].
//! - OpenMetrics exemplars (`# {...} value [ts]` after a sample) are ignored.
//!
//! A malformed line is reported in [`Exposition::errors`] (line number and
//! why) and skipped; the other lines are kept. The parser never panics on
//! any input (property-tested and fuzzed, see `fuzz/`).
//!
//! A sample's metric type, from the `# TYPE` of its family:
//! [`family::metric_type`].

use std::collections::BTreeMap;

pub mod family;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name as written (with `_bucket`, `_sum`, ... suffixes).
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
    /// The exposition's own timestamp, Unix milliseconds.
    pub timestamp_ms: Option<i64>,
}

/// A line that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// A parsed exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// The samples, in order.
    pub samples: Vec<Sample>,
    /// Metric family types from `# TYPE` lines.
    pub types: BTreeMap<String, String>,
    /// Lines that were skipped, with the reason.
    pub errors: Vec<LineError>,
}

/// Which text format the body is in (from the response's `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `text/plain; version=0.0.4`: timestamps in milliseconds.
    #[default]
    Prometheus,
    /// `application/openmetrics-text`: timestamps in seconds.
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` header names.
    pub fn from_content_type(ct: &str) -> Self {
        if ct
            .to_ascii_lowercase()
            .contains("application/openmetrics-text")
        {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }
}

/// Parses a whole exposition.
pub fn parse(text: &str, format: Format) -> Exposition {
    let mut out = Exposition::default();
    for (idx, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            read_comment(comment, &mut out.types);
            continue;
        }
        match parse_sample(trimmed, format) {
            Ok(s) => out.samples.push(s),
            Err(message) => out.errors.push(LineError {
                line: idx + 1,
                message,
            }),
        }
    }
    out
}

fn read_comment(comment: &str, types: &mut BTreeMap<String, String>) {
    let mut parts = comment.split_ascii_whitespace();
    if parts.next() == Some("TYPE")
        && let (Some(name), Some(kind)) = (parts.next(), parts.next())
    {
        types.insert(name.to_owned(), kind.to_ascii_lowercase());
    }
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

fn cut(s: &str) -> String {
    let mut t: String = s.chars().take(60).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    t
}

/// Parses one sample line (not blank, not a comment).
pub fn parse_sample(line: &str, format: Format) -> Result<Sample, String> {
    let b = line.as_bytes();
    if !b.first().is_some_and(|c| is_name_start(*c)) {
        return Err(format!("expected a metric name at {:?}", cut(line)));
    }
    let mut i = 1;
    while i < b.len() && is_name_char(b[i]) {
        i += 1;
    }
    let name = line[..i].to_owned();
    let mut labels = Vec::new();
    let mut rest = &line[i..];
    if rest.starts_with('{') {
        let (parsed, after) = parse_labels(&rest[1..])?;
        labels = parsed;
        rest = after;
    }
    // Value, optional timestamp, optional exemplar.
    let rest = match rest.find('#') {
        Some(p) if format == Format::OpenMetrics || rest[p..].starts_with("# {") => &rest[..p],
        _ => rest,
    };
    if !rest.starts_with([' ', '\t']) {
        return Err(format!(
            "expected a space and a value after {name}, found {:?}",
            cut(rest)
        ));
    }
    let mut fields = rest.split_ascii_whitespace();
    let value_text = fields
        .next()
        .ok_or_else(|| format!("{name}: missing value"))?;
    let value = parse_value(value_text)
        .ok_or_else(|| format!("{name}: value {:?} is not a number", cut(value_text)))?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(t) => Some(
            parse_timestamp(t, format)
                .ok_or_else(|| format!("{name}: timestamp {:?} is not valid", cut(t)))?,
        ),
    };
    if let Some(extra) = fields.next() {
        return Err(format!(
            "{name}: unexpected text {:?} after the timestamp",
            cut(extra)
        ));
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

/// Parses `name="value",...}` (the opening brace already consumed);
/// returns the labels and the text after the closing brace.
type Labels = Vec<(String, String)>;

fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels: Vec<(String, String)> = Vec::new();
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let b = s.as_bytes();
        if b.is_empty() {
            return Err("unterminated label set (no closing '}')".into());
        }
        if !is_name_start(b[0]) || b[0] == b':' {
            return Err(format!("expected a label name at {:?}", cut(s)));
        }
        let mut i = 1;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let key = &s[..i];
        s = s[i..].trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('=')
            .ok_or_else(|| format!("label {key}: expected '=' at {:?}", cut(s)))?;
        s = s.trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("label {key}: expected a quoted value at {:?}", cut(s)))?;
        let (value, after) =
            parse_quoted(s).ok_or_else(|| format!("label {key}: unterminated value"))?;
        if labels.iter().any(|(k, _)| k == key) {
            return Err(format!("label {key} appears twice"));
        }
        labels.push((key.to_owned(), value));
        s = after.trim_start_matches([' ', '\t']);
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err(format!("label {key}: expected ',' or '}}' at {:?}", cut(s)));
        }
    }
}

/// Reads a quoted string body up to the closing quote, resolving escapes.
fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => return None,
            },
            c => out.push(c),
        }
    }
    None
}

/// A sample value: a decimal float, `NaN`, `+Inf`, `-Inf` (any case).
pub fn parse_value(t: &str) -> Option<f64> {
    match t.to_ascii_lowercase().as_str() {
        "nan" => return Some(f64::NAN),
        "+inf" | "inf" => return Some(f64::INFINITY),
        "-inf" => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    // Only digits, sign, point and exponent: refuse Rust's "infinity" etc.
    if !t
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    t.parse::<f64>().ok()
}

fn parse_timestamp(t: &str, format: Format) -> Option<i64> {
    match format {
        Format::Prometheus => t.parse::<i64>().ok(),
        Format::OpenMetrics => {
            let secs = parse_value(t)?;
            let ms = (secs * 1000.0).round();
            (ms.is_finite() && ms.abs() < 9.0e15).then_some(ms as i64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Sample {
        parse_sample(line, Format::Prometheus).unwrap()
    }

    #[test]
    fn reads_every_metric_kind() {
        let text = "\
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000
http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000

# A normal comment.
# TYPE temp gauge
temp 21.5
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile=\"0.99\"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le=\"0.05\"} 24054
http_request_duration_seconds_bucket{le=\"+Inf\"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
metric_without_timestamp_and_labels 12.47
something_weird{problem=\"division by zero\"} +Inf -3982045
nan_metric NaN
";
        let e = parse(text, Format::Prometheus);
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        assert_eq!(e.samples.len(), 13);
        assert_eq!(e.types["rpc_duration_seconds"], "summary");
        assert_eq!(e.types["http_request_duration_seconds"], "histogram");
        let first = &e.samples[0];
        assert_eq!(first.name, "http_requests_total");
        assert_eq!(
            first.labels,
            vec![
                ("method".into(), "post".into()),
                ("code".into(), "200".into())
            ]
        );
        assert_eq!(first.value, 1027.0);
        assert_eq!(first.timestamp_ms, Some(1_395_066_363_000));
        assert_eq!(e.samples[4].value, 17_560_473.0);
        assert_eq!(e.samples[7].labels[0].1, "+Inf");
        assert_eq!(e.samples[11].value, f64::INFINITY);
        assert_eq!(e.samples[11].timestamp_ms, Some(-3_982_045));
        assert!(e.samples[12].value.is_nan());
    }

    #[test]
    fn resolves_escapes_in_label_values() {
        let s = one(
            r#"msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\"",odd="a\tb\q"} 1.458255915e9"#,
        );
        assert_eq!(s.labels[0].1, r"C:\DIR\FILE.TXT");
        assert_eq!(s.labels[1].1, "Cannot find file:\n\"FILE.TXT\"");
        assert_eq!(s.labels[2].1, r"a\tb\q");
        assert_eq!(s.value, 1_458_255_915.0);
    }

    #[test]
    fn tolerates_spacing_trailing_commas_and_crlf() {
        let e = parse(
            "a{ x = \"1\" , y=\"2\", } 5\r\nb{} 6\r\n",
            Format::Prometheus,
        );
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        assert_eq!(e.samples[0].labels.len(), 2);
        assert_eq!(e.samples[1].value, 6.0);
    }

    #[test]
    fn openmetrics_timestamps_are_seconds_and_exemplars_are_ignored() {
        let text = "# TYPE foo counter\nfoo_total{a=\"b\"} 17 1520879607.789 # {trace_id=\"x\"} 1 1520879607.7\n# EOF\n";
        let e = parse(text, Format::OpenMetrics);
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        assert_eq!(e.samples[0].timestamp_ms, Some(1_520_879_607_789));
        assert_eq!(e.samples[0].value, 17.0);
        assert_eq!(
            Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            Format::OpenMetrics
        );
    }

    #[test]
    fn bad_lines_are_reported_and_skipped_the_rest_kept() {
        let text = "good 1\n<html>\nbad{a=\"1\" 2\nbad2{a=\"1\",a=\"2\"} 3\nbad3 abc\nbad4 1 2 3\nbad5 infinity\ngood2 2\n";
        let e = parse(text, Format::Prometheus);
        assert_eq!(e.samples.len(), 2);
        assert_eq!(
            e.errors.iter().map(|x| x.line).collect::<Vec<_>>(),
            vec![2, 3, 4, 5, 6, 7]
        );
        assert!(
            e.errors[2].message.contains("appears twice"),
            "{}",
            e.errors[2]
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in "\\PC*") {
            let _ = parse(&s, Format::Prometheus);
            let _ = parse(&s, Format::OpenMetrics);
        }

        #[test]
        fn never_panics_on_near_valid_lines(
            s in "[a-z_:]{0,4}(\\{([a-z_]{0,3}=\"([^\"\\\\]|\\\\.){0,4}\"?,?){0,3}\\}?)? ?[-+0-9.eEnaNIf]{0,6} ?[-0-9.]{0,5}( #.*)?"
        ) {
            let _ = parse(&s, Format::Prometheus);
            let _ = parse(&s, Format::OpenMetrics);
        }

        #[test]
        fn written_samples_read_back(
            name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}",
            labels in proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", "\\PC{0,12}", 0..4),
            value in proptest::num::f64::NORMAL | proptest::num::f64::ZERO,
            ts in proptest::option::of(-1_000_000_000_000i64..4_000_000_000_000),
        ) {
            let mut line = name.clone();
            if !labels.is_empty() {
                let parts: Vec<String> = labels.iter().map(|(k, v)| {
                    format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
                }).collect();
                line.push_str(&format!("{{{}}}", parts.join(",")));
            }
            line.push_str(&format!(" {value:?}"));
            if let Some(t) = ts { line.push_str(&format!(" {t}")); }
            let s = parse_sample(&line, Format::Prometheus).unwrap();
            proptest::prop_assert_eq!(s.name, name);
            proptest::prop_assert_eq!(s.labels, labels.into_iter().collect::<Vec<_>>());
            proptest::prop_assert_eq!(s.value, value);
            proptest::prop_assert_eq!(s.timestamp_ms, ts);
        }
    }
}
