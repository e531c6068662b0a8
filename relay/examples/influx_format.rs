//! The InfluxDB sink's work per point without the network, as
//! `sink::influx` does it: line protocol for N points (400 series of
//! `gpu_util` with `gpu` and `model` labels, on 8 nodes, in batches of 1000
//! as streams hand them over) from each series' cached escaped text, cut in
//! requests of 5000 lines, gzip-compressed at level 1 (unless the second
//! argument is `plain`). Meant to be counted by callgrind:
//!
//! ```text
//! cargo build --release -p horizon-relay --example influx_format
//! valgrind --tool=callgrind target/release/examples/influx_format 1000000
//! valgrind --tool=callgrind target/release/examples/influx_format 1000000 plain
//! ```
//!
//! Prints the bytes of line protocol and of gzip per point.

use std::io::Write;
use std::sync::Arc;

use flate2::Compression;
use flate2::write::GzEncoder;
use horizon_relay::ingest::{AcceptedPoint, SeriesEntry};
use horizon_relay::sink::lineproto::{Escaping, SeriesLine, node_tag, write_line};
use horizon_shared::proto::Label;

fn main() {
    let total: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let gzip = std::env::args().nth(2).as_deref() != Some("plain");
    let nodes: Vec<(Arc<str>, Vec<Arc<SeriesEntry>>)> = (0..8)
        .map(|k| {
            let series = (0..400u64)
                .map(|g| {
                    Arc::new(SeriesEntry {
                        metric: "gpu_util".into(),
                        labels: vec![
                            Label {
                                key: "gpu".into(),
                                value: g.to_string(),
                            },
                            Label {
                                key: "model".into(),
                                value: "H100".into(),
                            },
                        ]
                        .into_boxed_slice(),
                        series_hash: g,
                        metric_hash: 0,
                        metric_type: Default::default(),
                        text_bytes: 20,
                        line_protocol: Default::default(),
                        label_slot: Default::default(),
                    })
                })
                .collect();
            (format!("node-{k}").into(), series)
        })
        .collect();
    let base = 1_700_000_000_000_000_000i64;
    let (mut text_bytes, mut gz_bytes) = (0usize, 0usize);
    let mut body = String::new();
    let mut in_body = 0;
    let mut done = 0usize;
    while done < total {
        let (node, series) = &nodes[(done / 1000) % nodes.len()];
        let points: Vec<AcceptedPoint> = (0..1000)
            .map(|i| AcceptedPoint {
                series: series[i % 400].clone(),
                time_unix_nano: base + (done + i) as i64,
                value: (i % 100) as f64,
            })
            .collect();
        let tag = node_tag(Escaping::V2, node);
        let mut lines = String::new();
        for (i, p) in points.iter().enumerate() {
            let series = p.series.line_protocol.get_or_init(|| {
                Box::new(SeriesLine::new(
                    Escaping::V2,
                    &p.series.metric,
                    &p.series.labels,
                ))
            });
            write_line(&mut lines, series, &tag, p.value, p.time_unix_nano);
            if i == 0 {
                lines.reserve((lines.len() + 8) * (points.len() - 1));
            }
        }
        body.push_str(&lines);
        in_body += points.len();
        done += points.len();
        if in_body >= 5000 || done >= total {
            let gz = if gzip {
                let mut e = GzEncoder::new(Vec::with_capacity(body.len() / 8), Compression::fast());
                let _ = e.write_all(body.as_bytes());
                e.finish().unwrap_or_default()
            } else {
                body.as_bytes().to_vec()
            };
            text_bytes += body.len();
            gz_bytes += gz.len();
            body = String::new();
            in_body = 0;
        }
    }
    println!(
        "{total} points: {:.1} bytes of line protocol and {:.1} bytes of gzip a point",
        text_bytes as f64 / total as f64,
        gz_bytes as f64 / total as f64
    );
}
