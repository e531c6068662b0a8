//! The series a client knows: [`SeriesRegistry`] numbers them densely,
//! and a number ([`SeriesId`]) is also the series' id on the wire.

use std::collections::HashMap;

use crate::model::{InvalidSeries, SeriesLimits, canonicalize, validate_series};
use crate::proto::{Label, MetricType};

/// A series registered with the client; its value is also its wire id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(pub u32);

/// A registered series: metric name, canonical labels and metric type.
///
/// The type is part of what the registry tells apart (the same name and
/// labels registered with two types get two ids, each defined on the wire
/// with its own type), though not of the series' identity in the lake.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesSpec {
    /// Metric name.
    pub metric: String,
    /// Labels sorted by key.
    pub labels: Vec<(String, String)>,
    /// Metric type (unspecified when not known).
    pub metric_type: MetricType,
}

/// The series a client knows, numbered densely from 0.
#[derive(Debug, Default)]
pub struct SeriesRegistry {
    series: Vec<SeriesSpec>,
    index: HashMap<SeriesSpec, SeriesId>,
    limits: SeriesLimits,
}

impl SeriesRegistry {
    /// Registers (or finds) a series of no stated type after validating
    /// it with the default limits, so a malformed series fails here rather
    /// than at the relay.
    pub fn register(
        &mut self,
        metric: &str,
        labels: &[(&str, &str)],
    ) -> Result<SeriesId, InvalidSeries> {
        self.register_typed(metric, labels, MetricType::Unspecified)
    }

    /// [`register`](Self::register), with the series' metric type.
    pub fn register_typed(
        &mut self,
        metric: &str,
        labels: &[(&str, &str)],
        metric_type: MetricType,
    ) -> Result<SeriesId, InvalidSeries> {
        let mut proto: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect();
        canonicalize(&mut proto);
        validate_series(metric, &proto, &self.limits)?;
        Ok(self.insert(SeriesSpec {
            metric: metric.to_owned(),
            labels: proto.into_iter().map(|l| (l.key, l.value)).collect(),
            metric_type,
        }))
    }

    /// Registers a series without validation (tests of the relay's checks).
    pub fn register_unchecked(&mut self, metric: &str, labels: Vec<(String, String)>) -> SeriesId {
        self.insert(SeriesSpec {
            metric: metric.to_owned(),
            labels,
            metric_type: MetricType::Unspecified,
        })
    }

    /// The id of `spec`, numbered now if it is new.
    fn insert(&mut self, spec: SeriesSpec) -> SeriesId {
        if let Some(id) = self.index.get(&spec) {
            return *id;
        }
        let id = SeriesId(u32::try_from(self.series.len()).unwrap_or(u32::MAX));
        self.series.push(spec.clone());
        self.index.insert(spec, id);
        id
    }

    /// The series behind an id.
    ///
    /// # Panics
    /// When `id` was not issued by this registry.
    pub fn get(&self, id: SeriesId) -> &SeriesSpec {
        &self.series[id.0 as usize]
    }

    /// Number of registered series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series is registered.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}
