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

/// One process with a compute or graphics context on a GPU (a process in
/// both of NVML's lists is one process).
#[derive(Debug, Clone, PartialEq)]
pub struct GpuProcess {
    /// Process id, as NVML reports it (the host's PID namespace).
    pub pid: u32,
    /// GPU memory the process uses, bytes; `None` where NVML does not say.
    pub used_memory_bytes: Option<u64>,
    /// The process's share of the SM (3D/compute) time, percent, from its
    /// latest utilisation sample; `None` where the GPU keeps no samples.
    pub sm_utilization_percent: Option<f64>,
    /// The same for the memory controller (frame buffer), percent.
    pub memory_utilization_percent: Option<f64>,
}

/// The processes of one GPU, from a list that was read (an empty list is
/// an idle GPU; a GPU whose list cannot be read has no entry).
#[derive(Debug, Clone, PartialEq)]
pub struct GpuProcesses {
    /// Which GPU (index into [`GpuSnapshot::gpus`]).
    pub gpu: usize,
    /// Its processes.
    pub processes: Vec<GpuProcess>,
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
    /// Running processes, per GPU whose process list could be read.
    pub processes: Vec<GpuProcesses>,
}

/// A source of GPU readings.
pub trait GpuSource: Send {
    /// Reads every GPU. An error means the source is unusable right now
    /// (no driver, driver unloaded); the agent exports `gpu_up 0`.
    fn poll(&mut self) -> Result<GpuSnapshot, String>;
}
