//! The source the agent reads GPUs through ([`GpuSource`]) and what one
//! poll of it returns.

/// Identity of one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// NVML index.
    pub index: u32,
    /// `GPU-...` UUID.
    pub uuid: String,
    /// Model name, e.g. `NVIDIA H100 80GB HBM3`.
    pub model: String,
}

/// One reading of one field of one GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuReading {
    /// Which GPU (index into [`GpuSnapshot::gpus`]).
    pub gpu: usize,
    /// Metric name.
    pub metric: &'static str,
    /// Labels beyond the GPU's own.
    pub labels: Vec<(&'static str, String)>,
    /// Value.
    pub value: f64,
}

/// An XID error event.
#[derive(Debug, Clone, PartialEq)]
pub struct XidEvent {
    /// Which GPU (index into [`GpuSnapshot::gpus`]).
    pub gpu: usize,
    /// The XID code.
    pub xid: u64,
    /// When it was seen, Unix ns.
    pub time_unix_nano: i64,
}

/// What one poll of the source returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuSnapshot {
    /// The GPUs.
    pub gpus: Vec<GpuInfo>,
    /// Their readings.
    pub readings: Vec<GpuReading>,
    /// XID events since the last poll.
    pub xids: Vec<XidEvent>,
}

/// A source of GPU readings.
pub trait GpuSource: Send {
    /// Reads every GPU. An error means the source is unusable right now
    /// (no driver, driver unloaded); the agent exports `gpu_up 0`.
    fn poll(&mut self) -> Result<GpuSnapshot, String>;
}
