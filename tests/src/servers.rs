//! Real servers for the sink tests, each started on a free loopback port in
//! its own temporary directory and killed when dropped:
//! - [`Moto`]: the S3 API (`moto_server` from PyPI `moto[server]`);
//! - [`Influx1`]: InfluxDB 1.x (Debian's `influxd`);
//! - [`Victoria`]: the InfluxDB v2 write API (Debian's `victoria-metrics`);
//! - [`Gate`]: a TCP forwarder that can cut a server off and let it back,
//!   for outage tests (the server keeps its data, unlike a restart).
//!
//! A missing server fails the test with the command that installs it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::{http_get, http_request, try_http};

const INSTALL: &str =
    "run `bash infra/dev/install-test-deps.sh` (as root) or README's test command";

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn spawn(program: &str, args: &[&str], dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join("server.log")).expect("log file");
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}; {INSTALL}"))
}

async fn wait_http(addr: SocketAddr, path: &str, what: &str, child: &mut Child, dir: &Path) {
    for _ in 0..300 {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            panic!("{what} exited ({status}) before it was ready:\n{log}");
        }
        if let Ok((code, _)) =
            tokio::time::timeout(Duration::from_secs(2), try_get(addr, path)).await
            && (200..500).contains(&code)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not become ready on {addr}");
}

/// A GET where a refused connection is an answer of 0, not a panic.
async fn try_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http(addr, "GET", path, "")
        .await
        .unwrap_or((0, String::new()))
}

/// A running child process with its directory; killed on drop.
#[derive(Debug)]
struct Proc {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `moto_server`: an S3 API on loopback.
#[derive(Debug)]
pub struct Moto {
    /// Its address.
    pub addr: SocketAddr,
    _proc: Proc,
}

impl Moto {
    /// Starts moto and creates `bucket`.
    pub async fn start(bucket: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let p = port.to_string();
        let mut child = spawn("moto_server", &["-H", "127.0.0.1", "-p", &p], dir.path());
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        wait_http(addr, "/moto-api/", "moto_server", &mut child, dir.path()).await;
        let (code, body) = http_request(addr, "PUT", &format!("/{bucket}"), "").await;
        assert!(code == 200, "creating bucket {bucket}: {code} {body}");
        Self {
            addr,
            _proc: Proc { child, _dir: dir },
        }
    }

    /// The endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// InfluxDB 1.x (`influxd`) with one database.
#[derive(Debug)]
pub struct Influx1 {
    /// HTTP address.
    pub addr: SocketAddr,
    _proc: Proc,
}

impl Influx1 {
    /// Starts influxd and creates `database`.
    pub async fn start(database: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (http, rpc) = (free_port(), free_port());
        let d = dir.path().display().to_string();
        let conf = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n"
        );
        std::fs::write(dir.path().join("influxdb.conf"), conf).expect("config");
        let mut child = spawn("influxd", &["-config", "influxdb.conf"], dir.path());
        let addr: SocketAddr = format!("127.0.0.1:{http}").parse().expect("addr");
        wait_http(addr, "/ping", "influxd", &mut child, dir.path()).await;
        let q = format!("/query?q=CREATE+DATABASE+%22{database}%22");
        let (code, body) = http_request(addr, "POST", &q, "").await;
        assert_eq!(code, 200, "CREATE DATABASE: {body}");
        Self {
            addr,
            _proc: Proc { child, _dir: dir },
        }
    }

    /// The server's process id (for its CPU time in benchmarks).
    pub fn pid(&self) -> u32 {
        self._proc.child.id()
    }

    /// Runs an InfluxQL query (URL-encoded `q`), returns the JSON body.
    pub async fn query(&self, database: &str, q: &str) -> serde_json::Value {
        let path = format!("/query?db={database}&epoch=ns&q={}", urlencode(q));
        let (code, body) = http_get(self.addr, &path).await;
        assert_eq!(code, 200, "query {q}: {body}");
        serde_json::from_str(&body).expect("query JSON")
    }
}

/// VictoriaMetrics, accepting the InfluxDB v2 write API.
#[derive(Debug)]
pub struct Victoria {
    /// HTTP address.
    pub addr: SocketAddr,
    _proc: Proc,
}

impl Victoria {
    /// Starts victoria-metrics.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let listen = format!("-httpListenAddr=127.0.0.1:{port}");
        let mut child = spawn(
            "victoria-metrics",
            &[
                "-storageDataPath=data",
                &listen,
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",
            ],
            dir.path(),
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        wait_http(addr, "/health", "victoria-metrics", &mut child, dir.path()).await;
        Self {
            addr,
            _proc: Proc { child, _dir: dir },
        }
    }

    /// The server's process id (for its CPU time in benchmarks).
    pub fn pid(&self) -> u32 {
        self._proc.child.id()
    }

    /// Every stored sample as (labels with `__name__`, value, ms timestamp).
    pub async fn export(&self) -> Vec<(serde_json::Map<String, serde_json::Value>, f64, i64)> {
        let _ = http_get(self.addr, "/internal/force_flush").await;
        let (code, body) = http_get(
            self.addr,
            "/api/v1/export?match%5B%5D=%7B__name__%21%3D%22%22%7D",
        )
        .await;
        assert_eq!(code, 200, "export: {body}");
        let mut out = Vec::new();
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("export line");
            let labels = v["metric"].as_object().expect("metric").clone();
            let values = v["values"].as_array().expect("values");
            let ts = v["timestamps"].as_array().expect("timestamps");
            for (val, t) in values.iter().zip(ts) {
                out.push((
                    labels.clone(),
                    val.as_f64().expect("value"),
                    t.as_i64().expect("ts"),
                ));
            }
        }
        out
    }
}

/// Percent-encodes a query-string value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A TCP forwarder in front of a server. `close` refuses new connections
/// and cuts open ones (the server looks down); `open` lets traffic through
/// again. The server itself keeps running with its data.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Address clients use.
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    cut: Arc<std::sync::Mutex<CancellationToken>>,
}

impl Gate {
    /// Starts forwarding `addr`'s traffic to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gate");
        let addr = listener.local_addr().expect("addr");
        let gate = Self {
            addr,
            open: Arc::new(AtomicBool::new(true)),
            cut: Arc::default(),
        };
        let g = gate.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !g.open.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut = g.cut.lock().expect("lock").clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cut.cancelled() => {}
                    }
                });
            }
        });
        gate
    }

    /// The server looks down: new connections are dropped, open ones cut.
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
        let mut cut = self.cut.lock().expect("lock");
        cut.cancel();
        *cut = CancellationToken::new();
    }

    /// Traffic flows again.
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// The URL of the gate.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
