//! The GPU source's task: polls it every `gpu.interval_secs` and spools
//! `gpu_up` and the readings.

use std::sync::Arc;
use std::time::Duration;

use horizon_shared::clock::unix_nanos_now;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::source::GpuSource;
use super::to_points;
use crate::metrics::Metrics;
use crate::sink::SpoolSink;

/// Polls a GPU source every `interval`, spooling `gpu_up` and the readings.
pub async fn run_gpu(
    mut source: Box<dyn GpuSource>,
    interval: Duration,
    sink: Arc<SpoolSink>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut said = None::<String>;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let snap = tokio::task::block_in_place(|| source.poll());
        match &snap {
            Ok(s) if !s.gpus.is_empty() => {
                metrics.gpu_up.set(1);
                said = None;
            }
            Ok(_) | Err(_) => {
                metrics.gpu_up.set(0);
                let why = snap
                    .as_ref()
                    .err()
                    .cloned()
                    .unwrap_or_else(|| "NVML sees no GPU".into());
                if said.as_deref() != Some(&why) {
                    warn!(reason = %why, "no GPU metrics (exporting gpu_up 0); other sources keep running");
                    said = Some(why);
                }
            }
        }
        let points = to_points(&snap, unix_nanos_now());
        sink.push("gpu", &points);
    }
}
