//! The GPU fleet dashboard and alert rules of `infra/grafana/`, run against
//! a real influxd fed through the real path: agents scrape a served
//! dcgm-exporter exposition and read a fake `GpuSource`, a relay writes to
//! InfluxDB. Every panel query, with its variables substituted as Grafana
//! would, must return GPU series with values for its source and nothing for
//! the other; every alert rule fires on injected faults (XID 79, `gpu_up 0`,
//! 95 °C for the rule's duration, an uncorrected ECC increment, throttling,
//! NVLink replays, a silent node) and stays quiet on the healthy node.
//!
//! Nodes: `gpu-node-1` healthy, `gpu-node-2` faulty (GPU 0: hot, throttled,
//! ECC, NVLink replays, XID 13; GPU 1: XID 79), `gpu-node-3` without a GPU
//! driver, `gpu-node-4` silent for minutes. Histories older than the test
//! come with exposition timestamps (dcgm-exporter side) and through a relay
//! client (NVML side: the agent stamps readings with the poll time).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use common::grafana::{self, DB, Rule, Scope, Series};
use common::{Reply, Target};
use horizon_agent::Agent;
use horizon_agent::config::Config;
use horizon_agent::gpu::{GpuInfo, GpuReading, GpuSnapshot, GpuSource, NoGpu, XidEvent};
use horizon_e2e::TestRelay;
use horizon_e2e::servers::Influx1;
use horizon_shared::client::{Batch, Point};
use horizon_shared::clock::unix_nanos_now;
use serde_json::Value;

/// History: this many 30 s steps before now (12 minutes, longer than any `for`).
const STEPS: i64 = 24;
const STEP_MS: i64 = 30_000;
const MODEL: &str = "NVIDIA H100 80GB HBM3";

fn grafana_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/grafana")
}

fn uuid(node: usize, gpu: usize) -> String {
    format!("GPU-0000000{node}-0000-4000-8000-00000000000{gpu}")
}

/// dcgm-exporter's fields for one GPU at history step `k` (STEPS = now).
fn dcgm_fields(faulty: bool, gpu: usize, k: i64) -> Vec<(&'static str, f64)> {
    let hot = faulty && gpu == 0;
    vec![
        ("DCGM_FI_DEV_GPU_UTIL", [97.0, 3.0][gpu]),
        ("DCGM_FI_DEV_FB_USED", [30112.0, 512.0][gpu]),
        (
            "DCGM_FI_DEV_GPU_TEMP",
            if hot { 95.0 } else { 41.0 + gpu as f64 },
        ),
        ("DCGM_FI_DEV_POWER_USAGE", 250.5),
        (
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            1e9 + k as f64 * 7.5e6,
        ),
        ("DCGM_FI_DEV_SM_CLOCK", 1410.0),
        ("DCGM_FI_DEV_MAX_SM_CLOCK", 1980.0),
        (
            "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
            if hot { 36.0 } else { 0.0 },
        ),
        ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", 3.0),
        (
            "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
            if hot && k >= 20 { 1.0 } else { 0.0 },
        ),
        ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 2.0),
        (
            "DCGM_FI_DEV_XID_ERRORS",
            if faulty { [13.0, 79.0][gpu] } else { 0.0 },
        ),
        (
            "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
            if hot { k as f64 * 20.0 } else { 5.0 },
        ),
        ("DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", 0.0),
        ("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", 1.0),
        ("DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", 0.0),
    ]
}

/// The exposition of `node`: with `history`, every step of the last 12
/// minutes with its timestamp; otherwise the current values, untimed.
fn dcgm_body(node: usize, faulty: bool, history: bool) -> String {
    let now_ms = unix_nanos_now() / 1_000_000;
    let steps: Vec<i64> = if history {
        (0..=STEPS).collect()
    } else {
        vec![STEPS]
    };
    let names: Vec<&str> = dcgm_fields(faulty, 0, 0).iter().map(|f| f.0).collect();
    let mut out = String::new();
    for (i, name) in names.iter().enumerate() {
        out.push_str(&format!("# HELP {name} {name}\n# TYPE {name} gauge\n"));
        for gpu in 0..2 {
            for &k in &steps {
                let v = dcgm_fields(faulty, gpu, k)[i].1;
                let ts = if history {
                    format!(" {}", now_ms - (STEPS - k) * STEP_MS)
                } else {
                    String::new()
                };
                out.push_str(&format!(
                    "{name}{{gpu=\"{gpu}\",UUID=\"{}\",device=\"nvidia{gpu}\",modelName=\"{MODEL}\",Hostname=\"gpu-node-{node}\"}} {v}{ts}\n",
                    uuid(node, gpu)
                ));
            }
        }
    }
    out
}

/// NVML readings of a healthy or faulty node.
#[derive(Debug)]
struct FakeGpu {
    node: usize,
    faulty: bool,
    polls: u32,
}

impl GpuSource for FakeGpu {
    fn poll(&mut self) -> Result<GpuSnapshot, String> {
        self.polls += 1;
        let gpus = (0..2)
            .map(|i| GpuInfo {
                index: i,
                uuid: uuid(self.node, i as usize),
                model: MODEL.into(),
            })
            .collect();
        let mut readings = Vec::new();
        for g in 0..2 {
            let hot = self.faulty && g == 0;
            let mut put = |metric, labels: Vec<(&'static str, String)>, value| {
                readings.push(GpuReading {
                    gpu: g,
                    metric,
                    labels,
                    value,
                });
            };
            put("gpu_utilization_percent", vec![], [97.0, 3.0][g]);
            put("gpu_memory_utilization_percent", vec![], 40.0);
            put("gpu_memory_used_bytes", vec![], [3.0e10, 5.0e8][g]);
            put("gpu_memory_total_bytes", vec![], 8.5e10);
            put(
                "gpu_temperature_celsius",
                vec![],
                if hot { 95.0 } else { 41.0 },
            );
            put("gpu_power_watts", vec![], 250.0);
            let energy = 1e6 + f64::from(self.polls) * 250.0;
            put("gpu_energy_joules_total", vec![], energy);
            put("gpu_sm_clock_hz", vec![], 1.41e9);
            put("gpu_sm_clock_max_hz", vec![], 1.98e9);
            put("gpu_memory_clock_hz", vec![], 1.215e9);
            put("gpu_throttle_reasons", vec![], if hot { 36.0 } else { 0.0 });
            put(
                "gpu_ecc_errors_total",
                vec![("type", "corrected".into())],
                3.0,
            );
            let uncorrected = if hot && self.polls > 1 { 1.0 } else { 0.0 };
            put(
                "gpu_ecc_errors_total",
                vec![("type", "uncorrected".into())],
                uncorrected,
            );
            put("gpu_pcie_replays_total", vec![], 2.0);
            for (counter, v) in [
                (
                    "dl_replay",
                    nvlink_replays(hot, STEPS) + f64::from(self.polls),
                ),
                ("dl_recovery", 0.0),
                ("dl_crc_flit", 1.0),
                ("dl_crc_data", 0.0),
            ] {
                let labels = vec![("link", "0".into()), ("counter", counter.into())];
                put("gpu_nvlink_errors_total", labels, v);
            }
        }
        let xids = if self.faulty && self.polls == 1 {
            let time_unix_nano = unix_nanos_now();
            vec![
                XidEvent {
                    gpu: 0,
                    xid: 13,
                    time_unix_nano,
                },
                XidEvent {
                    gpu: 1,
                    xid: 79,
                    time_unix_nano,
                },
            ]
        } else {
            vec![]
        };
        Ok(GpuSnapshot {
            gpus,
            readings,
            xids,
            processes: vec![],
        })
    }
}

fn nvlink_replays(hot: bool, k: i64) -> f64 {
    if hot { k as f64 * 20.0 } else { 5.0 }
}

/// What the agent could not have stamped in the past, sent through the
/// relay as the agent would: NVML temperature, throttle reasons and NVLink
/// counters of nodes 1 and 2 over 12 minutes, and `gpu_up` of the silent
/// node 4 until three and a half minutes ago.
async fn send_history(relay: &TestRelay) {
    let now = unix_nanos_now();
    for node in [1, 2] {
        let client = relay.client(&format!("gpu-node-{node}")).await;
        let mut points = Vec::new();
        for gpu in 0..2 {
            let hot = node == 2 && gpu == 0;
            let (u, g) = (uuid(node, gpu), gpu.to_string());
            let labels = [
                ("UUID", u.as_str()),
                ("gpu", g.as_str()),
                ("modelName", MODEL),
            ];
            let with = |extra: &[(&'static str, &'static str)]| {
                let mut l = labels.to_vec();
                l.extend_from_slice(extra);
                l
            };
            let temp = client.series("gpu_temperature_celsius", &labels).unwrap();
            let thr = client.series("gpu_throttle_reasons", &labels).unwrap();
            let replay = client
                .series(
                    "gpu_nvlink_errors_total",
                    &with(&[("link", "0"), ("counter", "dl_replay")]),
                )
                .unwrap();
            let recovery = client
                .series(
                    "gpu_nvlink_errors_total",
                    &with(&[("link", "0"), ("counter", "dl_recovery")]),
                )
                .unwrap();
            for k in 0..STEPS {
                let t = now - (STEPS - k) * STEP_MS * 1_000_000;
                points.push(Point::new(temp, t, if hot { 95.0 } else { 41.0 }));
                points.push(Point::new(thr, t, if hot { 36.0 } else { 0.0 }));
                points.push(Point::new(replay, t, nvlink_replays(hot, k)));
                points.push(Point::new(recovery, t, 0.0));
            }
        }
        client.send(Batch { points }).await.unwrap().await.unwrap();
        client.close().await;
    }
    let client = relay.client("gpu-node-4").await;
    let up = client.series("gpu_up", &[]).unwrap();
    let points = (0..14)
        .map(|k| Point::new(up, now - (210_000 + k * STEP_MS) * 1_000_000, 1.0))
        .collect();
    client.send(Batch { points }).await.unwrap().await.unwrap();
    client.close().await;
}

async fn start_agent(
    relay: &TestRelay,
    node: usize,
    spool: &std::path::Path,
    target: &str,
    gpu: Box<dyn GpuSource>,
) -> Agent {
    let yaml = format!(
        "relay:\n  addr: {}\n  server_name: localhost\nspool:\n  dir: {}\nscrape:\n  targets:\n    - url: {target}\n      name: dcgm\n      interval_secs: 1\n      drop_labels: [Hostname]\ngpu:\n  interval_secs: 1\nobservability:\n  metrics_addr: \"\"\n",
        relay.addr,
        spool.display()
    );
    let settings = Config::from_yaml(&yaml, "test")
        .unwrap()
        .validate()
        .unwrap();
    Agent::start(
        settings,
        relay.node_tls(&format!("gpu-node-{node}")),
        Some(gpu),
    )
    .await
    .unwrap()
}

/// Points per node in `measurement` over the last `mins` minutes.
async fn counts(influx: &Influx1, measurement: &str, mins: u32) -> BTreeMap<String, f64> {
    let q = format!(
        "SELECT count(\"value\") FROM \"{measurement}\" WHERE time > now() - {mins}m GROUP BY \"node\""
    );
    grafana::run(influx, &q)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.tags["node"].clone(), s.numbers()[0]))
        .collect()
}

/// Every value of `key` in a series: its tag, or its column in every row.
fn label_values(s: &Series, key: &str) -> Option<BTreeSet<String>> {
    if let Some(v) = s.tags.get(key) {
        return Some([v.clone()].into());
    }
    let i = s.columns.iter().position(|c| c == key)?;
    s.values
        .iter()
        .map(|r| r[i].as_str().map(str::to_owned))
        .collect()
}

/// Runs every panel query and template-variable query of `dash` for both
/// sources. Errors name the panel, target, source and query.
async fn check_dashboard(influx: &Influx1, dash: &Value, now_ms: i64) -> Result<usize, String> {
    let mut checked = 0;
    for (source, own) in [("gpu", "A"), ("DCGM_FI_DEV", "B")] {
        let scope = Scope {
            from_ms: now_ms - 15 * 60_000,
            to_ms: now_ms,
            interval: "1s".into(),
            vars: [("source", source), ("node", ".*"), ("gpu", ".*")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
        };
        for var in dash["templating"]["list"].as_array().unwrap() {
            if var["type"] == "query" {
                let q = scope.substitute(var["query"].as_str().unwrap());
                let got = grafana::run(influx, &q).await?;
                let values: BTreeSet<String> = got
                    .iter()
                    .flat_map(|s| {
                        s.values
                            .iter()
                            .filter_map(|r| r[1].as_str().map(str::to_owned))
                    })
                    .collect();
                let want: BTreeSet<String> = if var["name"] == "node" {
                    (1..=4).map(|n| format!("gpu-node-{n}")).collect()
                } else {
                    ["0", "1"].map(str::to_owned).into()
                };
                if values != want {
                    return Err(format!(
                        "variable {} ({source}): {values:?} from {q}",
                        var["name"]
                    ));
                }
                checked += 1;
            }
        }
        for panel in dash["panels"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap();
            for t in panel["targets"].as_array().unwrap() {
                let raw = t["query"].as_str().unwrap();
                let refid = t["refId"].as_str().unwrap();
                let q = scope.substitute(raw);
                let got = grafana::run(influx, &q).await?;
                let what = format!("panel {title:?} target {refid} (source {source}): {q}");
                if raw.contains("${source}") && !refid.starts_with(own) {
                    if !got.is_empty() {
                        return Err(format!("{what}: the other source's target returned data"));
                    }
                    continue;
                }
                if got.is_empty() {
                    return Err(format!("{what}: no series"));
                }
                let per_gpu = raw.contains("\"UUID\"");
                let mut nodes = BTreeSet::new();
                for s in &got {
                    if s.numbers().is_empty() {
                        return Err(format!("{what}: series {:?} has no values", s.tags));
                    }
                    let keys: &[&str] = if per_gpu {
                        &["node", "gpu", "UUID"]
                    } else {
                        &["node"]
                    };
                    for k in keys {
                        let Some(v) = label_values(s, k) else {
                            return Err(format!("{what}: no {k} label in {:?}", s.tags));
                        };
                        if *k == "node" {
                            nodes.extend(v);
                        }
                    }
                }
                let want = if raw.to_lowercase().contains("xid") {
                    "gpu-node-2"
                } else {
                    "gpu-node-1"
                };
                if !nodes.contains(want) {
                    return Err(format!("{what}: {want} missing from {nodes:?}"));
                }
                if raw.contains("moving_average") {
                    let last = |node: &str| {
                        got.iter()
                            .find(|s| s.tags["node"] == node)
                            .and_then(|s| s.numbers().last().copied())
                    };
                    if last("gpu-node-4") != Some(0.0) || last("gpu-node-1").unwrap_or(0.0) <= 0.0 {
                        return Err(format!("{what}: silent node 4 not told from live node 1"));
                    }
                }
                checked += 1;
            }
        }
        let mut annotated = 0;
        for a in dash["annotations"]["list"].as_array().unwrap() {
            let q = scope.substitute(a["query"].as_str().unwrap());
            let got = grafana::run(influx, &q).await?;
            if !got.is_empty() {
                annotated += 1;
                let s = &got[0];
                if label_values(s, "UUID").is_none() || s.numbers().is_empty() {
                    return Err(format!("annotation {} ({source}): {s:?}", a["name"]));
                }
            }
            checked += 1;
        }
        if annotated != 1 {
            return Err(format!(
                "{annotated} XID annotation queries returned events for {source}"
            ));
        }
    }
    Ok(checked)
}

/// (node, gpu) of every instance, "" for rules without a GPU.
fn instances(firing: &BTreeSet<grafana::Labels>) -> BTreeSet<(String, String)> {
    firing
        .iter()
        .map(|l| (l["node"].clone(), l.get("gpu").cloned().unwrap_or_default()))
        .collect()
}

/// Which instances each rule must fire for; every other series stays quiet.
fn expected_firing(uid: &str) -> BTreeSet<(String, String)> {
    let n2 = |gpu: &str| ("gpu-node-2".to_owned(), gpu.to_owned());
    let kind = uid.split_once('-').map_or(uid, |(_, k)| k);
    match kind {
        "xid-drain" => [n2("1")].into(),
        "xid" | "temperature" | "thermal-throttle" | "power-throttle" | "ecc-uncorrected"
        | "nvlink-replay" => [n2("0")].into(),
        "nvlink-recovery" => BTreeSet::new(),
        "gpu-down" => [("gpu-node-3".to_owned(), String::new())].into(),
        "silent" => [("gpu-node-4".to_owned(), String::new())].into(),
        _ => panic!("no expectation for rule {uid}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_dashboard_and_alert_rules_run_against_influxdb() {
    let influx = Influx1::start(DB).await;
    let relay = TestRelay::start(&format!(
        "influxdb:\n  url: http://{}\n  api: v1\n  database: {DB}\n  flush_interval_ms: 100\n",
        influx.addr
    ))
    .await;
    send_history(&relay).await;
    let dir = tempfile::tempdir().unwrap();
    let mut agents = Vec::new();
    let mut targets = Vec::new();
    for (node, faulty) in [(1, false), (2, true)] {
        let target = Target::start(move |n| {
            Reply::Ok("text/plain; version=0.0.4", dcgm_body(node, faulty, n == 0))
        })
        .await;
        let gpu = Box::new(FakeGpu {
            node,
            faulty,
            polls: 0,
        });
        let spool = dir.path().join(node.to_string());
        agents.push(start_agent(&relay, node, &spool, &target.url(), gpu).await);
        targets.push(target);
    }
    let plain = Target::start(|_| Reply::Ok("text/plain", "up_metric 1\n".into())).await;
    let no_gpu = Box::new(NoGpu(
        "libnvidia-ml.so.1: cannot open shared object file".into(),
    ));
    agents.push(start_agent(&relay, 3, &dir.path().join("3"), &plain.url(), no_gpu).await);

    // Until every node's points are in: 4 polls and scrapes of each agent,
    // node 2's exposition history.
    let mut ready = false;
    for _ in 0..300 {
        let up = counts(&influx, "gpu_up", 1).await;
        let temp = counts(&influx, "DCGM_FI_DEV_GPU_TEMP", 15).await;
        let ok =
            |m: &BTreeMap<String, f64>, node: &str, n: f64| m.get(node).is_some_and(|c| *c >= n);
        if (1..=3).all(|n| ok(&up, &format!("gpu-node-{n}"), 4.0))
            && ok(&temp, "gpu-node-1", 2.0 * (STEPS + 4) as f64)
            && ok(&temp, "gpu-node-2", 2.0 * (STEPS + 4) as f64)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for a in agents {
        a.stop().await.unwrap();
    }
    assert!(ready, "points did not reach influxd");
    let now_ms = unix_nanos_now() / 1_000_000;

    // The dashboard, as written and with a misspelt measurement and field.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(grafana_dir().join("gpu-fleet-dashboard.json")).unwrap(),
    )
    .unwrap();
    let checked = check_dashboard(&influx, &dash, now_ms).await.unwrap();
    assert_eq!(checked, 42, "dashboard queries checked");
    for (right, wrong) in [
        ("_GPU_TEMP\"", "_GPU_TMP\""),
        (
            "mean(\"value\") FROM \"${source}_power",
            "mean(\"valu\") FROM \"${source}_power",
        ),
    ] {
        let mut broken = dash.clone();
        let query = broken["panels"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .flat_map(|p| p["targets"].as_array_mut().unwrap().iter_mut())
            .map(|t| &mut t["query"])
            .find(|q| q.as_str().unwrap().contains(right))
            .unwrap_or_else(|| panic!("no query holds {right}"));
        *query = query.as_str().unwrap().replacen(right, wrong, 1).into();
        let err = check_dashboard(&influx, &broken, now_ms).await.unwrap_err();
        assert!(err.contains("no series"), "{err}");
    }

    // The alert rules: each fires exactly on its fault.
    let mut rules = 0;
    for file in ["gpu-nvml.yaml", "gpu-dcgm.yaml", "nodes.yaml"] {
        let doc = grafana::yaml_file(&grafana_dir().join("alerts").join(file));
        for rule in Rule::all_influx(&doc) {
            let firing = rule.firing(&influx, now_ms).await.unwrap();
            assert_eq!(
                instances(&firing),
                expected_firing(&rule.uid),
                "rule {}",
                rule.uid
            );
            for l in &firing {
                if l.contains_key("gpu") {
                    let gpu: usize = l["gpu"].parse().unwrap();
                    assert_eq!(l["UUID"], uuid(2, gpu), "rule {}: {l:?}", rule.uid);
                }
            }
            // The healthy node is in the query's answer, and quiet.
            if !rule.uid.contains("xid") {
                let now = rule.evaluate(&influx, now_ms).await.unwrap();
                let healthy: Vec<_> = now
                    .iter()
                    .filter(|(l, _)| l["node"] == "gpu-node-1")
                    .collect();
                assert!(
                    !healthy.is_empty(),
                    "rule {}: no series for gpu-node-1",
                    rule.uid
                );
                assert!(
                    healthy.iter().all(|(_, (_, holds))| !holds),
                    "rule {}: {healthy:?}",
                    rule.uid
                );
            }
            rules += 1;
        }
    }
    assert_eq!(rules, 18);

    // The pipeline rules query metrics the relay exports.
    let (_, body) = relay.http_get("/metrics").await;
    let doc = grafana::yaml_file(&grafana_dir().join("alerts/pipeline.yaml"));
    let mut names = 0;
    for r in doc["groups"][0]["rules"].as_array().unwrap() {
        let expr = r["data"][0]["model"]["expr"].as_str().unwrap();
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("horizon_relay_"))
        {
            assert!(
                body.lines().any(|l| l.starts_with(name)),
                "{name} is not exported"
            );
            names += 1;
        }
    }
    assert!(names >= 5, "{names}");
    drop(targets);
    relay.stop().await;
}

#[test]
fn dashboard_is_a_grafana_dashboard_model() {
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(grafana_dir().join("gpu-fleet-dashboard.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(dash["uid"], "horizon-gpu-fleet");
    assert!(
        dash["schemaVersion"].as_u64().unwrap() >= 36,
        "schema version"
    );
    assert!(dash["description"].as_str().unwrap().contains("source"));
    let vars: BTreeMap<&str, &Value> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    assert_eq!(vars["datasource"]["type"], "datasource");
    assert_eq!(vars["datasource"]["query"], "influxdb");
    let sources: Vec<&str> = vars["source"]["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["gpu", "DCGM_FI_DEV"]);
    for v in ["node", "gpu"] {
        assert_eq!(vars[v]["type"], "query");
        assert_eq!(vars[v]["datasource"]["uid"], "${datasource}");
    }
    let ds = serde_json::json!({"type": "influxdb", "uid": "${datasource}"});
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        assert_eq!(p["datasource"], ds, "panel {}", p["title"]);
        assert!(!p["description"].as_str().unwrap().is_empty());
        let g = &p["gridPos"];
        let (x, y, w, h) = ["x", "y", "w", "h"].map(|k| g[k].as_u64().unwrap()).into();
        assert!(x + w <= 24 && w > 0 && h > 0, "panel {id} grid {g}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "panel {id} overlaps another");
            }
        }
        let mut refs = BTreeSet::new();
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"], ds);
            assert_eq!(t["rawQuery"], true);
            assert!(refs.insert(t["refId"].as_str().unwrap()));
        }
    }
    assert!(ids.len() >= 16);
    for a in dash["annotations"]["list"].as_array().unwrap() {
        assert_eq!(a["datasource"], ds);
    }
}

#[test]
fn alert_files_are_grafana_provisioning_with_actionable_rules() {
    let dir = grafana_dir().join("alerts");
    let mut uids = BTreeSet::new();
    for file in [
        "gpu-nvml.yaml",
        "gpu-dcgm.yaml",
        "nodes.yaml",
        "pipeline.yaml",
        "agents.yaml",
    ] {
        let doc = grafana::yaml_file(&dir.join(file));
        assert_eq!(doc["apiVersion"], 1, "{file}");
        for g in doc["groups"].as_array().unwrap() {
            assert!(
                g["folder"].is_string() && g["interval"].is_string(),
                "{file}"
            );
            for r in g["rules"].as_array().unwrap() {
                let uid = r["uid"].as_str().unwrap();
                assert!(uids.insert(uid.to_owned()) && uid.len() <= 40, "{uid}");
                grafana::duration_secs(r["for"].as_str().unwrap());
                assert!(r["labels"]["severity"].is_string(), "{uid}");
                let summary = r["annotations"]["summary"].as_str().unwrap();
                assert!(
                    summary.contains("$labels.node") || summary.contains("$labels.instance"),
                    "{uid}"
                );
                assert!(!r["annotations"]["description"].as_str().unwrap().is_empty());
                for d in r["data"].as_array().unwrap() {
                    let ds = d["datasourceUid"].as_str().unwrap();
                    assert!(
                        ["horizon-influxdb", "horizon-prometheus", "__expr__"].contains(&ds),
                        "{uid}: {ds}"
                    );
                }
            }
        }
    }
    assert_eq!(uids.len(), 25);
    // The provisioning example defines the datasources the rules name, and
    // the compose file mounts what the dashboard provider reads.
    let prov = grafana_dir().join("provisioning");
    let ds = grafana::yaml_file(&prov.join("datasources/horizon.yaml"));
    let ds: BTreeMap<&str, &str> = ds["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["uid"].as_str().unwrap(), d["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ds,
        [
            ("horizon-influxdb", "influxdb"),
            ("horizon-prometheus", "prometheus")
        ]
        .into()
    );
    let boards = grafana::yaml_file(&prov.join("dashboards/horizon.yaml"));
    let path = boards["providers"][0]["options"]["path"].as_str().unwrap();
    let compose = grafana::yaml_file(&grafana_dir().join("docker-compose.example.yaml"));
    let volumes: Vec<&str> = compose["services"]["grafana"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for file in ["gpu-fleet-dashboard.json", "relay-dashboard.json"] {
        let mount = format!("./{file}:{path}/{file}:ro");
        assert!(volumes.contains(&mount.as_str()), "{mount}");
    }
    assert!(volumes.contains(&"./alerts:/etc/grafana/provisioning/alerting:ro"));
}
