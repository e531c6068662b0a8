//! Helpers of the agent's integration tests: a scrape target served by the
//! test, the agent binary as a child process, the compactor CLI, and an
//! independent exposition parser (Python's `prometheus_client`).

#![allow(dead_code, clippy::unwrap_used)]

pub mod grafana;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use horizon_e2e::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the test target answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with this content type and body.
    Ok(&'static str, String),
    /// This status, empty body.
    Status(u16),
    /// Never answers (holds the connection).
    Hang,
}

/// A scrape target served by the test; `handler` gets the request count
/// (0-based) and returns the reply.
#[derive(Clone)]
pub struct Target {
    /// Its address.
    pub addr: SocketAddr,
    /// Requests answered so far.
    pub requests: Arc<Mutex<u64>>,
    /// Bodies served with 200, in order.
    pub served: Arc<Mutex<Vec<String>>>,
}

impl Target {
    pub async fn start(handler: impl Fn(u64) -> Reply + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(0u64));
        let served = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let (req2, served2) = (requests.clone(), served.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (handler, requests, served) = (handler.clone(), req2.clone(), served2.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let n = {
                        let mut r = requests.lock().unwrap();
                        *r += 1;
                        *r - 1
                    };
                    let reply = handler(n);
                    let resp = match reply {
                        Reply::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                        Reply::Status(code) => format!(
                            "HTTP/1.1 {code} Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        ),
                        Reply::Ok(ct, body) => {
                            let r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            served.lock().unwrap().push(body);
                            r
                        }
                    };
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self {
            addr,
            requests,
            served,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    pub fn requests(&self) -> u64 {
        *self.requests.lock().unwrap()
    }
}

/// Writes a node certificate issued by the test CA into `dir`
/// (`node.pem`, `node-key.pem`, `ca.pem`).
pub fn node_certs(pki: &TestPki, node: &str, dir: &Path) -> PathBuf {
    let issued = pki.ca.issue_client(node).expect("issue");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("node.pem"), issued.cert_pem).unwrap();
    std::fs::write(dir.join("node-key.pem"), issued.key_pem).unwrap();
    std::fs::write(dir.join("ca.pem"), pki.ca.cert_pem()).unwrap();
    dir.to_owned()
}

/// The agent binary as a child process.
pub struct AgentProc {
    pub child: Child,
    pub metrics_addr: SocketAddr,
    pub log: PathBuf,
}

impl AgentProc {
    /// Starts `telemetry-agent CONFIG` in `dir` (its log goes to `dir/agent-N.log`).
    pub fn start(dir: &Path, config: &str, metrics_port: u16) -> Self {
        let cfg = dir.join("agent.yaml");
        std::fs::write(&cfg, config).unwrap();
        let n = std::fs::read_dir(dir).unwrap().count();
        let log = dir.join(format!("agent-{n}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_telemetry-agent"))
            .arg(&cfg)
            .current_dir(dir)
            .env("RUST_LOG", "info,quinn=warn,quinn_proto=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::from(f))
            .spawn()
            .expect("agent starts");
        Self {
            child,
            metrics_addr: format!("127.0.0.1:{metrics_port}").parse().unwrap(),
            log,
        }
    }

    /// Its metrics; `None` while the endpoint is not up yet.
    pub async fn metrics(&self) -> Option<Metrics> {
        let (code, body) = horizon_e2e::try_http(self.metrics_addr, "GET", "/metrics", "")
            .await
            .ok()?;
        (code == 200).then(|| Metrics::parse(&body))
    }

    /// Waits (up to `secs`, then fails the test with the log) until `cond` holds.
    pub async fn wait_for(
        &self,
        what: &str,
        secs: u64,
        cond: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        for _ in 0..secs * 10 {
            if let Some(m) = self.metrics().await
                && cond(&m)
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "agent: {what} did not happen within {secs} s; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An agent metrics page: samples by `name{labels}` as written.
#[derive(Debug, Default, Clone)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let mut m = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            if let Some((k, v)) = line.rsplit_once(' ')
                && let Ok(v) = v.parse::<f64>()
            {
                m.insert(k.to_owned(), v);
            }
        }
        Self(m)
    }

    /// A sample's value, 0 when absent.
    pub fn get(&self, key: &str) -> f64 {
        self.0.get(key).copied().unwrap_or(0.0)
    }

    /// The sum of every sample whose key starts with `prefix`.
    pub fn sum(&self, prefix: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }
}

/// A sample as Python's `prometheus_client` parser reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct PySample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// The type of the sample's family, as the parser names it
    /// (`counter`, `gauge`, `histogram`, `summary`, `unknown`, ...).
    pub family_type: String,
}

/// Parses an exposition with `prometheus_client.parser.text_string_to_metric_families`.
pub fn python_parse(text: &str) -> Vec<PySample> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([s.name, s.labels, repr(float(s.value)), fam.type])
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "prometheus_client parser failed");
    let v: Vec<(String, BTreeMap<String, String>, String, String)> =
        serde_json::from_slice(&out.stdout).expect("parser output");
    v.into_iter()
        .map(|(name, labels, value, family_type)| PySample {
            name,
            labels,
            value: value.parse().expect("float repr"),
            family_type,
        })
        .collect()
}

/// Runs the `telemetry-compactor` CLI on a local object directory,
/// compacting every hour that has ended.
pub fn compact(objects: &Path) {
    let bin = horizon_e2e::bins::workspace_binary("telemetry-compactor");
    let out = Command::new(&bin)
        .arg("--store-url")
        .arg(objects)
        .args(["--allowed-lateness-secs", "0"])
        .output()
        .expect("compactor runs");
    assert!(
        out.status.success(),
        "compactor failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
