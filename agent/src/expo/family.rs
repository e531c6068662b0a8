//! The metric type of a sample, from the `# TYPE` line of its family
//! ([`metric_type`]).
//!
//! A family is declared under its name, and its samples carry that name or
//! the name plus a suffix the family's type allows: `_bucket`, `_sum`,
//! `_count` and `_created` for a histogram, `_sum`, `_count` and `_created`
//! for a summary (its quantiles have the bare name), `_total` and
//! `_created` for an OpenMetrics counter (whose family name has no
//! `_total`; Prometheus' text format declares `foo_total` itself). A sample
//! whose name is declared is of that family; else the family named by
//! taking off a suffix its declared type allows.
//!
//! The types map to the protocol's `MetricType` (docs/protocol.md §4):
//! `counter`, `gauge`, `histogram` and `summary` to themselves;
//! `gaugehistogram`, `info` and `stateset` to gauge (their samples go up
//! and down: a gauge histogram's buckets, an info's constant 1, a state's
//! 0 or 1); `unknown`, `untyped`, any other word, and a sample of no
//! declared family to unspecified.

use std::collections::BTreeMap;

use horizon_shared::proto::MetricType;

/// The protocol's type of a `# TYPE` word (lowercase).
pub fn type_of_word(word: &str) -> MetricType {
    match word {
        "counter" => MetricType::Counter,
        "gauge" | "gaugehistogram" | "info" | "stateset" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "summary" => MetricType::Summary,
        _ => MetricType::Unspecified,
    }
}

/// The suffixes a family of type `word` adds to its name.
fn suffixes(word: &str) -> &'static [&'static str] {
    match word {
        "counter" => &["_total", "_created"],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        "gaugehistogram" => &["_bucket", "_gsum", "_gcount"],
        "summary" => &["_sum", "_count", "_created"],
        "info" => &["_info"],
        _ => &[],
    }
}

/// The type of the sample `name`, given the exposition's declared family
/// types ([`Exposition::types`](super::Exposition::types)).
pub fn metric_type(types: &BTreeMap<String, String>, name: &str) -> MetricType {
    if let Some(word) = types.get(name) {
        return type_of_word(word);
    }
    for (i, _) in name.match_indices('_') {
        let (family, suffix) = name.split_at(i);
        if let Some(word) = types.get(family)
            && suffixes(word).contains(&suffix)
        {
            return type_of_word(word);
        }
    }
    MetricType::Unspecified
}

#[cfg(test)]
mod tests {
    use super::super::{Format, parse};
    use super::*;

    fn types_of(text: &str, format: Format) -> Vec<(String, MetricType)> {
        let e = parse(text, format);
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        e.samples
            .iter()
            .map(|s| (s.name.clone(), metric_type(&e.types, &s.name)))
            .collect()
    }

    #[test]
    fn every_sample_of_a_prometheus_family_has_its_type() {
        let text = "\
# TYPE http_requests_total counter
http_requests_total{code=\"200\"} 1027
# TYPE temp gauge
temp 21.5
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile=\"0.99\"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le=\"+Inf\"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
# TYPE legacy untyped
legacy 1
undeclared 2
temp_sum 3
";
        use MetricType::*;
        let want = [
            ("http_requests_total", Counter),
            ("temp", Gauge),
            ("rpc_duration_seconds", Summary),
            ("rpc_duration_seconds_sum", Summary),
            ("rpc_duration_seconds_count", Summary),
            ("http_request_duration_seconds_bucket", Histogram),
            ("http_request_duration_seconds_sum", Histogram),
            ("http_request_duration_seconds_count", Histogram),
            ("legacy", Unspecified),
            ("undeclared", Unspecified),
            // A gauge has no `_sum`: another metric, of no declared type.
            ("temp_sum", Unspecified),
        ];
        let got = types_of(text, Format::Prometheus);
        let got: Vec<(&str, MetricType)> = got.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn openmetrics_families_take_their_suffixes() {
        let text = "\
# TYPE foo counter
foo_total 17
foo_created 1520430000.123
# TYPE build info
build_info{version=\"1.2\"} 1
# TYPE queue gaugehistogram
queue_bucket{le=\"+Inf\"} 3
queue_gcount 3
queue_gsum 9
# TYPE door stateset
door{door=\"open\"} 1
# TYPE hist histogram
hist_bucket{le=\"1\"} 0
hist_created 1520430000
# TYPE mystery unknown
mystery 4
# EOF
";
        use MetricType::*;
        let got = types_of(text, Format::OpenMetrics);
        let got: Vec<(&str, MetricType)> = got.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        assert_eq!(
            got,
            [
                ("foo_total", Counter),
                ("foo_created", Counter),
                ("build_info", Gauge),
                ("queue_bucket", Gauge),
                ("queue_gcount", Gauge),
                ("queue_gsum", Gauge),
                ("door", Gauge),
                ("hist_bucket", Histogram),
                ("hist_created", Histogram),
                ("mystery", Unspecified),
            ]
        );
    }

    #[test]
    fn a_name_with_underscores_finds_its_family_at_the_right_cut() {
        let mut types = BTreeMap::new();
        types.insert("a_b".to_owned(), "histogram".to_owned());
        types.insert("a".to_owned(), "counter".to_owned());
        assert_eq!(metric_type(&types, "a_b_bucket"), MetricType::Histogram);
        assert_eq!(metric_type(&types, "a_total"), MetricType::Counter);
        // `a_b_total` is neither a's `_total` nor a_b's.
        assert_eq!(metric_type(&types, "a_b_total"), MetricType::Unspecified);
    }
}
