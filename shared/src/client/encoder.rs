//! Turns batches into wire frames for one stream: series are defined the
//! first time the stream uses them, timestamps are delta-encoded.

use bytes::BytesMut;

use crate::codec;
use crate::proto::{AgentFrame, Label, MetricBatch, SeriesDef, agent_frame};

use super::batch::Batch;
use super::series::SeriesRegistry;

/// Encoder state of one stream: which series ids it has defined.
#[derive(Debug, Default)]
pub struct StreamEncoder {
    defined: Vec<bool>,
}

impl StreamEncoder {
    /// A fresh stream: nothing defined yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the `MetricBatch` for `batch` with sequence `sequence`,
    /// defining every series this stream has not seen yet.
    pub fn build(
        &mut self,
        sequence: u64,
        batch: &Batch,
        registry: &SeriesRegistry,
    ) -> MetricBatch {
        let n = batch.points.len();
        let mut msg = MetricBatch {
            sequence,
            series_defs: Vec::new(),
            series_ids: Vec::with_capacity(n),
            base_time_unix_nano: batch.points.first().map_or(0, |p| p.time_unix_nano),
            time_deltas: Vec::with_capacity(n),
            values: Vec::with_capacity(n),
        };
        let mut prev = msg.base_time_unix_nano;
        for p in &batch.points {
            let id = p.series.0;
            let idx = id as usize;
            if idx >= self.defined.len() {
                self.defined.resize(idx + 1, false);
            }
            if !self.defined[idx] {
                self.defined[idx] = true;
                let s = registry.get(p.series);
                msg.series_defs.push(SeriesDef {
                    id,
                    metric: s.metric.clone(),
                    labels: s
                        .labels
                        .iter()
                        .map(|(k, v)| Label {
                            key: k.clone(),
                            value: v.clone(),
                        })
                        .collect(),
                    metric_type: s.metric_type.into(),
                });
            }
            msg.series_ids.push(id);
            msg.time_deltas.push(p.time_unix_nano.wrapping_sub(prev));
            prev = p.time_unix_nano;
            msg.values.push(p.value);
        }
        msg
    }

    /// Appends the frame for `batch` to `dst`.
    pub fn encode(
        &mut self,
        sequence: u64,
        batch: &Batch,
        registry: &SeriesRegistry,
        dst: &mut BytesMut,
    ) {
        let msg = self.build(sequence, batch, registry);
        codec::encode(
            &AgentFrame {
                kind: Some(agent_frame::Kind::Batch(msg)),
            },
            dst,
        );
    }
}

/// Decodes the point times of a batch back to absolute Unix nanoseconds.
pub fn absolute_times(batch: &MetricBatch) -> impl Iterator<Item = i64> + '_ {
    batch
        .time_deltas
        .iter()
        .scan(batch.base_time_unix_nano, |t, d| {
            *t = t.wrapping_add(*d);
            Some(*t)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Point;

    #[test]
    fn defines_each_series_once_per_stream_and_repeats_cost_a_few_bytes() {
        let mut reg = SeriesRegistry::default();
        let a = reg
            .register(
                "gpu_utilization_percent",
                &[
                    ("gpu", "0"),
                    ("uuid", "GPU-8f1c2d3e-aaaa-bbbb-cccc-000000000000"),
                ],
            )
            .unwrap();
        let b = reg
            .register(
                "gpu_memory_used_bytes",
                &[
                    ("gpu", "0"),
                    ("uuid", "GPU-8f1c2d3e-aaaa-bbbb-cccc-000000000000"),
                ],
            )
            .unwrap();
        let t0 = 1_700_000_000_000_000_000;
        let batch = |t: i64| Batch {
            points: vec![Point::new(a, t, 97.0), Point::new(b, t, 3.2e10)],
        };
        let mut enc = StreamEncoder::new();
        let first = enc.build(1, &batch(t0), &reg);
        assert_eq!(first.series_defs.len(), 2);
        let second = enc.build(2, &batch(t0 + 5_000_000_000), &reg);
        assert!(
            second.series_defs.is_empty(),
            "a stream defines a series once"
        );
        assert_eq!(
            absolute_times(&second).collect::<Vec<_>>(),
            vec![t0 + 5_000_000_000; 2]
        );
        // Repeated points of 100 series: id (1-2 B) + delta (1 B) + value (8 B).
        let many: Vec<_> = (0..100)
            .map(|i| {
                reg.register("gpu_temperature_celsius", &[("gpu", &i.to_string())])
                    .unwrap()
            })
            .collect();
        let big = |t: i64| Batch {
            points: many.iter().map(|s| Point::new(*s, t, 61.0)).collect(),
        };
        let mut enc2 = StreamEncoder::new();
        enc2.build(1, &big(t0), &reg);
        let again = enc2.build(2, &big(t0 + 5_000_000_000), &reg);
        let bytes = crate::codec::encode_to_vec(&AgentFrame {
            kind: Some(agent_frame::Kind::Batch(again)),
        })
        .len();
        assert!(
            bytes <= 100 * 11 + 40,
            "100 repeated points cost {bytes} bytes"
        );
        // A typed series is defined with its type; an untyped one without.
        let energy = reg
            .register_typed(
                "gpu_energy_joules_total",
                &[("gpu", "0")],
                crate::proto::MetricType::Counter,
            )
            .unwrap();
        let typed = StreamEncoder::new().build(
            4,
            &Batch {
                points: vec![Point::new(energy, t0, 1.0), Point::new(a, t0, 2.0)],
            },
            &reg,
        );
        assert_eq!(
            typed
                .series_defs
                .iter()
                .map(SeriesDef::metric_type)
                .collect::<Vec<_>>(),
            [
                crate::proto::MetricType::Counter,
                crate::proto::MetricType::Unspecified
            ]
        );
        // A new stream defines them again.
        assert_eq!(
            StreamEncoder::new()
                .build(3, &batch(t0), &reg)
                .series_defs
                .len(),
            2
        );
    }
}
