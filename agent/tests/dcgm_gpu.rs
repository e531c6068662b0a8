//! A dcgm-exporter exposition in NVIDIA's documented format, served by the
//! test, and GPU readings from a fake `GpuSource`, through an agent running
//! in the test into a real relay: labels arrive, placeholders are dropped
//! and counted, and with no GPU the agent says `gpu_up 0` and keeps going.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Metrics, Reply, Target};
use horizon_agent::Agent;
use horizon_agent::config::Config;
use horizon_agent::gpu::{GpuInfo, GpuReading, GpuSnapshot, GpuSource, NoGpu, XidEvent};
use horizon_e2e::TestRelay;

const UUIDS: [&str; 2] = [
    "GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52",
    "GPU-b8e6a1d3-4c1c-2f0a-91f5-3d2a7c0e9b11",
];

/// dcgm-exporter's output (the format of its README and default counters
/// file): per field a HELP and TYPE line, then one sample per GPU with
/// `gpu`, `UUID`, `device`, `modelName`, `Hostname` (and `pci_bus_id` in
/// newer releases). Fields without a value carry DCGM's blank placeholder.
/// Returns the body and how many placeholder samples it holds.
fn dcgm_body() -> (String, usize) {
    let fields: [(&str, &str, &str, [&str; 2]); 9] = [
        (
            "DCGM_FI_DEV_SM_CLOCK",
            "gauge",
            "SM clock frequency (in MHz).",
            ["1410", "1395"],
        ),
        (
            "DCGM_FI_DEV_MEM_CLOCK",
            "gauge",
            "Memory clock frequency (in MHz).",
            ["1215", "1215"],
        ),
        (
            "DCGM_FI_DEV_GPU_TEMP",
            "gauge",
            "GPU temperature (in C).",
            ["41", "44"],
        ),
        (
            "DCGM_FI_DEV_POWER_USAGE",
            "gauge",
            "Power draw (in W).",
            ["71.174000", "68.5"],
        ),
        (
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            "counter",
            "Total energy consumption since boot (in mJ).",
            ["1358290410", "1299831027"],
        ),
        (
            "DCGM_FI_DEV_GPU_UTIL",
            "gauge",
            "GPU utilization (in %).",
            ["97", "0"],
        ),
        (
            "DCGM_FI_DEV_FB_USED",
            "gauge",
            "Framebuffer memory used (in MiB).",
            ["30112", "0"],
        ),
        (
            "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
            "counter",
            "Total number of double-bit volatile ECC errors.",
            ["0", "9223372036854775794"],
        ),
        (
            "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
            "gauge",
            "Ratio of cycles the tensor (HMMA) pipe is active.",
            ["9223372036854775794", "9223372036854775807"],
        ),
    ];
    let mut out = String::new();
    let mut placeholders = 0;
    for (name, kind, help, values) in fields {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (gpu, v) in values.iter().enumerate() {
            if v.parse::<f64>().unwrap() >= 9.2e18 {
                placeholders += 1;
            }
            out.push_str(&format!(
                "{name}{{gpu=\"{gpu}\",UUID=\"{}\",pci_bus_id=\"00000000:0{gpu}:00.0\",device=\"nvidia{gpu}\",modelName=\"NVIDIA A100-SXM4-80GB\",Hostname=\"gpu-node-1\"}} {v}\n",
                UUIDS[gpu]
            ));
        }
    }
    (out, placeholders)
}

#[derive(Debug)]
struct FakeGpu {
    polls: u32,
}

impl GpuSource for FakeGpu {
    fn poll(&mut self) -> Result<GpuSnapshot, String> {
        self.polls += 1;
        let gpus = (0..2)
            .map(|i| GpuInfo {
                index: i,
                uuid: UUIDS[i as usize].into(),
                model: "NVIDIA A100-SXM4-80GB".into(),
            })
            .collect();
        let mut readings = Vec::new();
        for g in 0..2 {
            readings.push(GpuReading {
                gpu: g,
                metric: "gpu_temperature_celsius",
                labels: vec![],
                value: 40.0 + g as f64,
            });
            readings.push(GpuReading {
                gpu: g,
                metric: "gpu_memory_used_bytes",
                labels: vec![],
                value: 1e9,
            });
            readings.push(GpuReading {
                gpu: g,
                metric: "gpu_nvlink_errors_total",
                labels: vec![("link", "3".into()), ("counter", "dl_replay".into())],
                value: 2.0,
            });
        }
        Ok(GpuSnapshot {
            gpus,
            readings,
            xids: vec![XidEvent {
                gpu: 1,
                xid: 79,
                time_unix_nano: horizon_shared::clock::unix_nanos_now(),
            }],
            processes: vec![],
        })
    }
}

fn yaml(relay: &TestRelay, spool: &std::path::Path, target: &str) -> String {
    format!(
        "relay:\n  addr: {}\n  server_name: localhost\nspool:\n  dir: {}\nscrape:\n  targets:\n    - url: {target}\n      name: dcgm\n      interval_secs: 3600\n      drop_labels: [Hostname]\ngpu:\n  interval_secs: 3600\nobservability:\n  metrics_addr: \"\"\n",
        relay.addr,
        spool.display()
    )
}

async fn wait_acked(agent: &Agent, at_least: f64) -> Metrics {
    for _ in 0..600 {
        let m = Metrics::parse(&agent.metrics.encode());
        let c = m.sum("horizon_agent_points_collected_total");
        if c >= at_least && m.get("horizon_agent_points_acked_total") == c {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = Metrics::parse(&agent.metrics.encode());
    panic!("points not acked (want {at_least}): {:?}", m.0);
}

fn rows(relay: &TestRelay, node: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    horizon_e2e::read_parquet(&["local", relay.objects.to_str().unwrap()])
        .rows
        .into_iter()
        .filter(|r| r["node"] == node)
        .map(|r| {
            (
                r["metric"].as_str().unwrap().to_owned(),
                serde_json::from_value(r["labels"].clone()).unwrap(),
                r["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcgm_exposition_and_nvml_readings_arrive_with_their_gpu_labels() {
    let relay = TestRelay::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let (body, placeholders) = dcgm_body();
    let target = Target::start(move |_| Reply::Ok("text/plain; version=0.0.4", body.clone())).await;
    let settings = Config::from_yaml(&yaml(&relay, dir.path(), &target.url()), "test")
        .unwrap()
        .validate()
        .unwrap();
    let agent = Agent::start(
        settings,
        relay.node_tls("gpu-node-1"),
        Some(Box::new(FakeGpu { polls: 0 })),
    )
    .await
    .unwrap();
    let scraped = 18 - placeholders;
    let gpu_points = 1 + 6 + 1;
    let m = wait_acked(&agent, (scraped + gpu_points) as f64).await;
    assert_eq!(placeholders, 3);
    assert_eq!(
        m.get("horizon_agent_points_dropped_total{reason=\"placeholder\"}") as usize,
        placeholders
    );
    assert_eq!(
        m.get("horizon_agent_points_collected_total{source=\"scrape\"}") as usize,
        scraped
    );
    assert_eq!(
        m.get("horizon_agent_points_collected_total{source=\"gpu\"}") as usize,
        gpu_points
    );
    assert_eq!(m.get("horizon_agent_gpu_up"), 1.0);
    agent.stop().await.unwrap();

    let rows = rows(&relay, "gpu-node-1");
    assert_eq!(rows.len(), scraped + gpu_points);
    // No placeholder reached the store.
    assert!(rows.iter().all(|r| r.2 < 9.2e18), "{rows:?}");
    // dcgm-exporter's labels, as it wrote them, minus the dropped Hostname.
    let temp: Vec<_> = rows
        .iter()
        .filter(|r| r.0 == "DCGM_FI_DEV_GPU_TEMP")
        .collect();
    assert_eq!(temp.len(), 2);
    for (metric, labels, value) in &temp {
        let gpu: usize = labels["gpu"].parse().unwrap();
        assert_eq!(labels["UUID"], UUIDS[gpu], "{metric}");
        assert_eq!(labels["modelName"], "NVIDIA A100-SXM4-80GB");
        assert_eq!(labels["device"], format!("nvidia{gpu}"));
        assert!(!labels.contains_key("Hostname"));
        assert_eq!(*value, [41.0, 44.0][gpu]);
    }
    assert!(
        rows.iter()
            .any(|r| r.0 == "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" && r.1["gpu"] == "0")
    );
    assert!(
        !rows
            .iter()
            .any(|r| r.0 == "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" && r.1["gpu"] == "1")
    );
    assert!(
        !rows
            .iter()
            .any(|r| r.0 == "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE")
    );
    // The NVML side: same label names, so both sources join.
    let nvml_temp: Vec<_> = rows
        .iter()
        .filter(|r| r.0 == "gpu_temperature_celsius")
        .collect();
    assert_eq!(nvml_temp.len(), 2);
    assert!(
        nvml_temp
            .iter()
            .all(|r| r.1["UUID"].starts_with("GPU-") && r.1.contains_key("modelName"))
    );
    let link = rows
        .iter()
        .find(|r| r.0 == "gpu_nvlink_errors_total")
        .unwrap();
    assert_eq!(
        (link.1["link"].as_str(), link.1["counter"].as_str()),
        ("3", "dl_replay")
    );
    let xid = rows.iter().find(|r| r.0 == "gpu_xid_error").unwrap();
    assert_eq!((xid.1["gpu"].as_str(), xid.2), ("1", 79.0));
    assert!(
        rows.iter()
            .any(|r| r.0 == "gpu_up" && r.2 == 1.0 && r.1.is_empty())
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_gpu_driver_gpu_up_is_zero_and_scraping_goes_on() {
    let relay = TestRelay::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let target = Target::start(|_| Reply::Ok("text/plain", "up_metric 1\n".into())).await;
    let settings = Config::from_yaml(&yaml(&relay, dir.path(), &target.url()), "test")
        .unwrap()
        .validate()
        .unwrap();
    let agent = Agent::start(
        settings,
        relay.node_tls("cpu-node-1"),
        Some(Box::new(NoGpu(
            "libnvidia-ml.so.1: cannot open shared object file".into(),
        ))),
    )
    .await
    .unwrap();
    let m = wait_acked(&agent, 2.0).await;
    assert_eq!(m.get("horizon_agent_gpu_up"), 0.0);
    agent.stop().await.unwrap();
    let mut rows = rows(&relay, "cpu-node-1");
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        rows,
        vec![
            ("gpu_up".to_owned(), BTreeMap::new(), 0.0),
            ("up_metric".to_owned(), BTreeMap::new(), 1.0)
        ]
    );
    relay.stop().await;
}
