//! Harness for the end-to-end tests: starts a relay on a free loopback port
//! with its own PKI in a temporary directory, makes clients for any node
//! name, and scrapes the relay's metrics.

pub mod bins;
pub mod crl;
pub mod flood;
pub mod flow_gate;
pub mod put_hold;
pub mod quiclb;
pub mod rawdata;
pub mod servers;
pub mod store_contract;
pub mod throttle;
pub mod udp_lb;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use horizon_relay::Relay;
use horizon_relay::budget::Budgets;
use std::path::PathBuf;

use horizon_relay::config::{Config, Settings, StoreLocation, TlsSource};
use horizon_shared::client::{Acked, Batch, Client, ClientConfig, PendingAck, Point, SeriesId};
use horizon_shared::devcerts::{DevCa, DevPki};
use horizon_shared::tls::TlsMaterial;
use object_store::ObjectStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A PKI in a temporary directory: the CA, the relay's certificate and
/// key. Outlives the relays started from it, so a test can restart a relay
/// on the same address with the same certificates.
#[derive(Debug)]
pub struct TestPki {
    /// The CA that issues node certificates (and the relay's).
    pub ca: DevCa,
    /// Paths of the files.
    pub paths: DevPki,
    _dir: tempfile::TempDir,
}

impl TestPki {
    /// A fresh PKI.
    pub fn new() -> Arc<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (paths, _) = DevPki::ensure(dir.path()).expect("dev pki");
        let ca = paths.ca().expect("ca loads");
        Arc::new(Self {
            ca,
            paths,
            _dir: dir,
        })
    }

    /// A PKI already in `dir` (e.g. made by `infra/dev/dev-certs.sh`).
    pub fn from_dir(dir: tempfile::TempDir) -> Arc<Self> {
        let (paths, created) = DevPki::ensure(dir.path()).expect("dev pki");
        assert!(
            !created,
            "expected an existing PKI in {}",
            dir.path().display()
        );
        let ca = paths.ca().expect("ca loads");
        Arc::new(Self {
            ca,
            paths,
            _dir: dir,
        })
    }

    /// The relay's own TLS material (for a stand-in server in tests).
    pub fn server_tls(&self) -> TlsMaterial {
        TlsMaterial::load(
            &self.paths.server_cert,
            &self.paths.server_key,
            &self.paths.ca_cert,
        )
        .expect("server tls")
    }

    /// TLS material for a node certificate issued by the CA.
    pub fn node_tls(&self, node: &str) -> TlsMaterial {
        let issued = self.ca.issue_client(node).expect("issue");
        TlsMaterial::from_pem(&issued.cert_pem, &issued.key_pem, self.ca.cert_pem())
            .expect("material")
    }
}

/// A relay running in this process.
#[derive(Debug)]
pub struct TestRelay {
    /// QUIC address.
    pub addr: SocketAddr,
    /// HTTP metrics address.
    pub metrics_addr: SocketAddr,
    /// The PKI it uses.
    pub pki: Arc<TestPki>,
    /// The relay's budgets.
    pub budgets: Arc<Budgets>,
    /// Where its Parquet objects go when the test did not configure a store.
    pub objects: PathBuf,
    /// Reloads its certificates from the PKI files.
    pub tls: horizon_relay::TlsReloader,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Settings for a test relay: loopback, port 0, the given YAML on top.
pub fn settings(yaml: &str, pki: &DevPki) -> Settings {
    let cfg = Config::from_yaml(yaml, "test config").expect("test config parses");
    let mut s = cfg.validate().expect("test config is valid");
    s.server.listen_addr = "127.0.0.1:0".parse().expect("addr");
    s.observability.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"));
    s.security.tls = TlsSource::Files {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        ca: pki.ca_cert.clone(),
    };
    // Objects go beside the PKI unless the test chose a store; flushes are
    // quick (unless the test chose an age) so durable acks do not slow the tests.
    if s.parquet.location == StoreLocation::Local(PathBuf::from("data/objects")) {
        s.parquet.location = StoreLocation::Local(pki.dir.join("objects"));
    }
    if !yaml.contains("rotation_interval_secs") {
        s.parquet.max_age = Duration::from_millis(200);
    }
    s
}

impl TestRelay {
    /// Starts a relay configured by `yaml` (an empty string for defaults)
    /// with a fresh PKI.
    pub async fn start(yaml: &str) -> Self {
        Self::start_at(TestPki::new(), yaml, None).await
    }

    /// Starts a relay with `pki`, on `addr` if given (retrying briefly while
    /// a previous user of the port lets go of it).
    pub async fn start_at(pki: Arc<TestPki>, yaml: &str, addr: Option<SocketAddr>) -> Self {
        Self::start_inner(pki, yaml, addr, None).await
    }

    /// Starts a relay configured by `yaml` whose Parquet sink writes to
    /// `store` instead of the configured location.
    pub async fn start_with_store(yaml: &str, store: Arc<dyn ObjectStore>) -> Self {
        Self::start_inner(TestPki::new(), yaml, None, Some(store)).await
    }

    async fn start_inner(
        pki: Arc<TestPki>,
        yaml: &str,
        addr: Option<SocketAddr>,
        store: Option<Arc<dyn ObjectStore>>,
    ) -> Self {
        init_logs();
        let mut tries = 0;
        let relay = loop {
            let mut s = settings(yaml, &pki.paths);
            if let Some(a) = addr {
                s.server.listen_addr = a;
            }
            let bound = match &store {
                Some(store) => Relay::bind_with_store(s, store.clone()).await,
                None => Relay::bind(s).await,
            };
            match bound {
                Ok(r) => break r,
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing::debug!(error = %e, "bind failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("relay does not bind: {e}"),
            }
        };
        let objects = pki.paths.dir.join("objects");
        let addr = relay.local_addr();
        let metrics_addr = relay.metrics_addr().expect("metrics enabled");
        let budgets = relay.budgets();
        let tls = relay.tls_reloader();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            relay
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("relay runs");
        });
        Self {
            addr,
            metrics_addr,
            pki,
            budgets,
            objects,
            tls,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// TLS material for a node certificate issued by the relay's CA.
    pub fn node_tls(&self, node: &str) -> TlsMaterial {
        self.pki.node_tls(node)
    }

    /// Client settings for `node`, pointed at this relay.
    pub fn client_config(&self, node: &str) -> ClientConfig {
        let mut c = ClientConfig::new(self.addr.to_string(), "localhost", self.node_tls(node));
        c.max_backoff = Duration::from_millis(200);
        c
    }

    /// A connected client for `node`.
    pub async fn client(&self, node: &str) -> Client {
        Client::connect(self.client_config(node))
            .await
            .expect("client connects")
    }

    /// GETs a path of the metrics endpoint: (status code, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics_addr, path).await
    }

    /// Scrapes and parses `/metrics`.
    pub async fn scrape(&self) -> Metrics {
        let (status, body) = self.http_get("/metrics").await;
        assert_eq!(status, 200, "GET /metrics");
        Metrics::parse(&body)
    }

    /// Starts a graceful shutdown without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Shuts the relay down gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("relay task");
        }
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// One HTTP/1.1 request over a fresh TCP connection: (status, body), the
/// body decoded if it was sent chunked. Errors only on I/O; a response
/// without a parsable head is status 0.
pub async fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

/// [`try_http`], panicking on I/O errors.
pub async fn http_request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    try_http(addr, method, path, body)
        .await
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

/// A GET with [`http_request`].
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, "").await
}

/// Decodes an HTTP/1.1 chunked body.
pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Parsed Prometheus text exposition: `name{labels}` to value.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Every sample, keyed by its name and label set as written.
    pub samples: BTreeMap<String, f64>,
}

impl Metrics {
    /// Parses the text format, panicking on any line that is not a comment,
    /// blank, or `name[{labels}] value`.
    pub fn parse(text: &str) -> Self {
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad metrics line {line:?}"));
            let name_end = key.find('{').unwrap_or(key.len());
            let name = &key[..name_end];
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {line:?}"
            );
            if name_end < key.len() {
                assert!(key.ends_with('}'), "unterminated labels in {line:?}");
            }
            let v: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            samples.insert(key.to_owned(), v);
        }
        Self { samples }
    }

    /// A sample's value, or 0 when absent.
    pub fn get(&self, key: &str) -> f64 {
        self.samples.get(key).copied().unwrap_or(0.0)
    }
}

/// What the independent reader (pyarrow, `tests/py/read_parquet.py`) found.
#[derive(Debug, Clone)]
pub struct ParquetDataset {
    /// Per file: path, rows, codecs, sorted, hours_ok, schema_version.
    pub files: Vec<serde_json::Value>,
    /// Every row: node, metric, labels, series_id, time, value.
    pub rows: Vec<serde_json::Value>,
}

/// Reads the relay's Parquet objects with pyarrow. `args` are the script's
/// (`["local", DIR]` or `["s3", HOST:PORT, BUCKET, PREFIX]`).
pub fn read_parquet(args: &[&str]) -> ParquetDataset {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/read_parquet.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs (install: bash infra/dev/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "pyarrow reader failed (is pyarrow installed? bash infra/dev/install-test-deps.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("reader JSON");
    ParquetDataset {
        files: v["files"].as_array().cloned().unwrap_or_default(),
        rows: v["rows"].as_array().cloned().unwrap_or_default(),
    }
}

/// Sends one point per value of `series`, each in its own batch, without
/// waiting for the acks.
pub async fn queue_values(
    client: &Client,
    series: SeriesId,
    values: std::ops::Range<i32>,
) -> Vec<PendingAck> {
    let mut pending = Vec::new();
    for i in values {
        let batch = Batch {
            points: vec![Point::now(series, f64::from(i))],
        };
        pending.push(client.send(batch).await.expect("batch queued"));
    }
    pending
}

/// Sends one point per value, each in its own batch, all before waiting,
/// then returns the acks in order.
pub async fn send_values(
    client: &Client,
    series: SeriesId,
    values: std::ops::Range<i32>,
) -> Vec<Acked> {
    let mut acks = Vec::new();
    for p in queue_values(client, series, values).await {
        acks.push(p.await.expect("batch acked"));
    }
    acks
}
