//! `terraform/` checked without a terraform binary (none can run here):
//! `tests/py/check_terraform.py` parses the HCL with python-hcl2, resolves
//! every reference, checks the templates and runs checkov; it renders the
//! templates as Terraform would, and this test holds the results against the
//! real programs: the relay's configuration loader, the compactor's
//! settings, and the compactor's Lambda handler driven the way the state
//! machine drives it. The Athena tables and saved queries over a real
//! compacted hour are checked here, over a real compacted day's rollups in
//! `rollups.rs`.

#![allow(clippy::unwrap_used)]

mod rollups;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use horizon_compactor::Compactor;
use horizon_compactor::Settings as CompactorSettings;
use horizon_e2e::rawdata::{points, put_raw};
use horizon_relay::config::{Config, TlsSource};
use horizon_shared::layout::Hour;
use horizon_shared::store::{S3Options, StoreLocation};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

fn checkov() -> String {
    std::env::var("HORIZON_CHECKOV").unwrap_or_else(|_| "/opt/horizon-checkov/bin/checkov".into())
}

/// Runs the static checks (checkov too, with `checkov`); returns the
/// directory of rendered files.
fn render(checkov: bool) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("tests/py/check_terraform.py"))
        .arg(repo().join("terraform"))
        .arg(out.path());
    if checkov {
        let path = self::checkov();
        assert!(
            Path::new(&path).exists(),
            "{path} is missing: `bash tests/run.sh` installs checkov in its own virtualenv"
        );
        cmd.args(["--checkov", &path]);
    }
    let run = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "terraform checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    if checkov {
        assert!(
            stdout.contains("checkov: ") && stdout.contains(" 0 failed"),
            "{stdout}"
        );
    }
    out
}

/// Runs `tests/py/check_lake.py` over `store` for `tables` (and `extra`
/// arguments); returns its JSON report.
fn check_lake(rendered: &Path, store: &Path, tables: &str, extra: &[String]) -> Value {
    let lake = Command::new("python3")
        .arg(repo().join("tests/py/check_lake.py"))
        .arg(rendered.join("glue-tables.json"))
        .arg(repo().join("docs/data.md"))
        .arg(store)
        .arg(repo().join("terraform/queries"))
        .args(["--tables", tables])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        lake.status.success(),
        "lake checks failed:\n{}",
        String::from_utf8_lossy(&lake.stderr)
    );
    serde_json::from_slice(&lake.stdout).unwrap()
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

#[tokio::test]
async fn terraform_is_consistent_with_the_programs_it_deploys() {
    let out = render(true);
    let dir = out.path();

    // The relay loads the configuration Terraform renders, with the
    // variables the boot script puts in relay.env.
    let env = |name: &str| match name {
        "RELAY_ID" => Some("i-0123456789abcdef0".to_owned()),
        "INFLUXDB_TOKEN" => Some("token-from-secrets-manager".to_owned()),
        // What the boot script derives from the instance ID in QUIC mode.
        "QUIC_LB_SERVER_ID" => Some("0x123456789abcdef0".to_owned()),
        _ => None,
    };
    for (file, influx) in [
        ("relay.yaml", true),
        ("relay-no-influxdb.yaml", false),
        ("relay-quic.yaml", true),
    ] {
        let s = Config::from_yaml_with_env(&read(dir, file), file, env)
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .validate()
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(s.server.relay_id, "i-0123456789abcdef0");
        assert_eq!(s.server.listen_addr.port(), 5001);
        assert_eq!(
            s.observability.metrics_addr.unwrap().port(),
            9091,
            "the health check's port"
        );
        assert!(s.durable_acks);
        assert_eq!(s.parquet.raw_prefix, "raw");
        assert_eq!(
            s.parquet.location.to_string(),
            "s3://example-gpu-telemetry/telemetry"
        );
        assert!(matches!(s.security.tls, TlsSource::Files { .. }));
        assert_eq!(s.influxdb.is_some(), influx, "{file}");
        assert_eq!(
            s.server.quic_lb.map(|(id, _)| id.to_string()),
            (file == "relay-quic.yaml").then(|| "0x123456789abcdef0".to_owned()),
            "{file}: the server ID only in QUIC mode"
        );
    }
    let quic_user_data = read(dir, "relay-user-data-quic.sh");
    assert!(
        quic_user_data.contains(r#"QUIC_LB_SERVER_ID="0x${INSTANCE_ID: -16}""#)
            && quic_user_data.contains("QuicServerId=$QUIC_LB_SERVER_ID"),
        "in QUIC mode the relay and its registration use the same server ID"
    );
    let user_data = read(dir, "relay-user-data.sh");
    assert!(
        user_data.contains("/usr/local/bin/telemetry-relay --check-config /etc/horizon/relay.yaml")
    );
    assert!(user_data.contains("SupplementaryGroups=horizon"));

    // Every variable of the function's environment is one the compactor
    // reads, and together they make valid settings for the bucket.
    let fn_env: BTreeMap<String, String> =
        serde_json::from_str(&read(dir, "compactor-env.json")).unwrap();
    let cmd = <CompactorSettings as clap::Args>::augment_args(clap::Command::new("compactor"));
    let mut args = Vec::new();
    for (k, v) in &fn_env {
        // Read by the binary itself, not the settings.
        if k == "HORIZON_LOG_FORMAT" {
            assert!(v == "json" || v == "text", "{k}={v}");
            continue;
        }
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == k.as_str()))
            .unwrap_or_else(|| panic!("the compactor reads no {k}"));
        args.push(format!("--{}", arg.get_long().unwrap()));
        args.push(v.clone());
    }
    let settings = CompactorSettings::from_args(&args).unwrap_or_else(|e| panic!("{e}"));
    settings.validate().unwrap();
    assert_eq!(
        settings.location().unwrap().to_string(),
        "s3://example-gpu-telemetry/telemetry",
        "the compactor reads the bucket and prefix the relays write"
    );
    assert_eq!(settings.shards, 4);
    // The Glue tables read the datasets the compactor writes.
    let glue: Value = serde_json::from_str(&read(dir, "glue-tables.json")).unwrap();
    assert_eq!(glue["compacted"]["dataset"], settings.compacted_prefix);
    for level in ["1m", "1h"] {
        assert_eq!(
            glue[format!("rollups_{level}")]["dataset"],
            format!("{}/{level}", settings.rollups()),
            "the rollup tables read the compactor's rollup prefix"
        );
    }

    // The state machine's plan and its map run through the real handler:
    // the fields it selects exist, and the units it fans out compact.
    let asl: Value = serde_json::from_str(&read(dir, "compactor-fanout.asl.json")).unwrap();
    let plan = &asl["States"]["Plan"];
    let map = &asl["States"]["Compact units"];
    let task = &map["ItemProcessor"]["States"]["Compact"];
    let store_dir = tempfile::tempdir().unwrap();
    let url = store_dir.path().display().to_string();
    let store = StoreLocation::parse(&url, &S3Options::default())
        .unwrap()
        .build()
        .unwrap();
    let hour = Hour::parse("2026-11-23T10").unwrap();
    put_raw(
        &store,
        "raw",
        "relay-a",
        1,
        &points(hour, 6, 3, 600, 1_000, 0.0),
    )
    .await;
    let dcgm = dcgm_points(hour);
    put_raw(&store, "raw", "relay-b", 1, &dcgm.points).await;
    let compactor = Compactor::with_store(
        CompactorSettings::from_args(["--store-url", url.as_str(), "--shards", "2"]).unwrap(),
        Arc::clone(&store),
    );
    let invoke = |payload: Value| {
        let c = &compactor;
        async move {
            let event =
                lambda_runtime::LambdaEvent::new(payload, lambda_runtime::Context::default());
            let body = horizon_compactor::lambda::handle(c, event).await.unwrap();
            // What the lambda:invoke integration hands the state machine.
            json!({ "Payload": body, "StatusCode": 200 })
        }
    };
    let planned = invoke(plan["Parameters"]["Payload"].clone()).await;
    let plan_out = select(&plan["ResultSelector"], &planned, &Value::Null);
    let units = plan_out[map["ItemsPath"].as_str().unwrap().trim_start_matches("$.")]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        units.len(),
        2,
        "one item per shard of the closed hour: {units:?}"
    );
    let mut rows = 0;
    for unit in &units {
        let item = select(&map["ItemSelector"], &Value::Null, unit);
        assert_eq!(item["hour"], "2026-11-23T10");
        assert_eq!(
            task["Parameters"]["Payload.$"], "$",
            "the item is the payload"
        );
        let result = invoke(item).await;
        let out = select(&task["ResultSelector"], &result, &Value::Null);
        assert_eq!(out["not_started"], json!([]));
        rows += out["rows_committed"].as_u64().unwrap();
    }
    assert_eq!(
        rows as usize,
        6 * 3 * 6 + dcgm.points.len(),
        "both shards compacted every point once"
    );
    // The last step makes the closed day's 1-hour rollups, once every unit
    // is done (the units' own runs leave them to it).
    assert_eq!(map["Next"], "Rollup days");
    let days_task = &asl["States"]["Rollup days"];
    let payload = select(&days_task["Parameters"]["Payload"], &plan_out, &Value::Null);
    let result = invoke(payload).await;
    let days = select(&days_task["ResultSelector"], &result, &Value::Null);
    let built: Vec<&Value> = days["days"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["outcome"] == "built")
        .collect();
    assert_eq!(built.len(), 1, "{days}");
    assert_eq!(built[0]["day"], "2026-11-23");
    assert!(store_dir.path().join("rollups/1h/dt=2026-11-23").is_dir());

    // Athena: the Glue tables' columns are docs/data.md's and what a real
    // compacted file holds, and the example queries saved in the workgroup
    // run over the compacted hour and give what was written.
    let q = check_lake(dir, store_dir.path(), "compacted", &[]);
    let q = &q["queries"];
    let names: Vec<&String> = q.as_object().unwrap().keys().collect();
    assert_eq!(
        names,
        [
            "node_gpu_temperature_over_a_day",
            "points_per_metric_per_hour",
            "top_nodes_by_power"
        ],
        "the queries over the compacted table, and only those"
    );
    let per_metric = q["points_per_metric_per_hour"].as_array().unwrap();
    let temp = per_metric
        .iter()
        .find(|r| r[2] == "DCGM_FI_DEV_GPU_TEMP")
        .unwrap();
    assert_eq!(
        temp,
        &json!([
            "2026-11-23",
            "10",
            "DCGM_FI_DEV_GPU_TEMP",
            dcgm.per_metric,
            DCGM_NODES
        ])
    );
    let temps = q["node_gpu_temperature_over_a_day"].as_array().unwrap();
    assert_eq!(
        temps.len(),
        dcgm.per_metric / DCGM_NODES,
        "one node's share"
    );
    assert!(temps.iter().all(|r| r[2].as_f64().unwrap() >= 40.0));
    let top: Vec<&str> = q["top_nodes_by_power"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    assert_eq!(
        top,
        dcgm.nodes_by_power[..10],
        "the ten hungriest nodes, in order"
    );
}

const DCGM_NODES: usize = 12;
const DCGM_GPUS: usize = 8;

/// dcgm-exporter's temperature and power, every minute of `hour`, for
/// nodes gpu-node-0040.. whose power grows with a scrambled rank.
struct Dcgm {
    points: Vec<horizon_shared::raw::RawPoint>,
    per_metric: usize,
    nodes_by_power: Vec<&'static str>,
}

fn dcgm_points(hour: Hour) -> Dcgm {
    const NAMES: [&str; DCGM_NODES] = [
        "gpu-node-0040",
        "gpu-node-0041",
        "gpu-node-0042",
        "gpu-node-0043",
        "gpu-node-0044",
        "gpu-node-0045",
        "gpu-node-0046",
        "gpu-node-0047",
        "gpu-node-0048",
        "gpu-node-0049",
        "gpu-node-0050",
        "gpu-node-0051",
    ];
    let rank = |n: usize| (n * 7) % DCGM_NODES;
    let mut points = Vec::new();
    for (n, node) in NAMES.iter().enumerate() {
        for gpu in 0..DCGM_GPUS {
            let labels = horizon_e2e::rawdata::gpu_labels(n, gpu);
            for minute in 0..60 {
                let time = (hour.start_unix_secs + minute * 60) * 1_000_000_000;
                for (metric, value) in [
                    (
                        "DCGM_FI_DEV_GPU_TEMP",
                        40.0 + gpu as f64 + (minute % 5) as f64,
                    ),
                    (
                        "DCGM_FI_DEV_POWER_USAGE",
                        300.0 + 10.0 * rank(n) as f64 + gpu as f64,
                    ),
                ] {
                    points.push(horizon_shared::raw::RawPoint {
                        node: (*node).into(),
                        metric: metric.into(),
                        labels: labels.clone(),
                        time,
                        value,
                        received_at: time + 1_000,
                        metric_type: horizon_shared::proto::MetricType::Gauge,
                    });
                }
            }
        }
    }
    let mut nodes_by_power: Vec<usize> = (0..DCGM_NODES).collect();
    nodes_by_power.sort_by_key(|&n| std::cmp::Reverse(rank(n)));
    Dcgm {
        per_metric: points.len() / 2,
        nodes_by_power: nodes_by_power.into_iter().map(|n| NAMES[n]).collect(),
        points,
    }
}

/// Applies a Step Functions selector (`"key.$": "$.a.b"` from the state's
/// input, `"key.$": "$$.Map.Item.Value.x"` from the map item).
fn select(selector: &Value, input: &Value, item: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (k, path) in selector.as_object().unwrap() {
        let key = k
            .strip_suffix(".$")
            .unwrap_or_else(|| panic!("{k}: not a path"));
        let path = path.as_str().unwrap();
        let (root, rest) = if let Some(r) = path.strip_prefix("$$.Map.Item.Value") {
            (item, r)
        } else {
            (input, path.strip_prefix('$').unwrap())
        };
        let mut v = root;
        for part in rest.split('.').filter(|p| !p.is_empty()) {
            v = v
                .get(part)
                .unwrap_or_else(|| panic!("{path}: no {part} in {v}"));
        }
        out.insert(key.to_owned(), v.clone());
    }
    Value::Object(out)
}
