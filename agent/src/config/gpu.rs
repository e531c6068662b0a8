//! `gpu`: GPU metrics through NVML.

use std::time::Duration;

use horizon_shared::config::ConfigError;
use horizon_shared::config::check::seconds;
use serde::Deserialize;

/// `gpu`: NVML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuConfig {
    /// Read GPUs through NVML (libnvidia-ml, loaded at run time).
    pub enabled: bool,
    /// Sampling interval, seconds.
    pub interval_secs: f64,
    /// Label the GPU process series with each process's `pid` (one series
    /// per process instead of one per owner).
    pub process_pid_label: bool,
}

impl Default for GpuConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 1.0,
            process_pid_label: false,
        }
    }
}

/// The `gpu` section after validation.
#[derive(Debug, Clone)]
pub struct GpuSettings {
    /// NVML on or off.
    pub enabled: bool,
    /// NVML interval.
    pub interval: Duration,
    /// A `pid` label on the process series.
    pub process_pid_label: bool,
}

impl GpuConfig {
    /// Checks the section: the sampling interval.
    pub fn validate(&self) -> Result<GpuSettings, ConfigError> {
        Ok(GpuSettings {
            enabled: self.enabled,
            interval: seconds("gpu.interval_secs", self.interval_secs)?,
            process_pid_label: self.process_pid_label,
        })
    }
}
