//! A fleet of three `telemetry-relay` processes behind nginx's UDP load
//! balancer. Agents stream through the balancer; one relay is killed with
//! SIGKILL mid-run; the agents notice within their liveness timeout,
//! reconnect through the balancer from a fresh port and resend what was not
//! acked, and each acks again within a bound derived from the configured
//! timeouts. Afterwards every point acked durably is in the store, and after
//! a compaction the hourly dataset holds exactly the points sent, each once.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use horizon_e2e::read_parquet;
use horizon_e2e::udp_lb::Nginx;
use horizon_shared::client::{Batch, Client, ClientConfig, Point};
use horizon_shared::clock::unix_nanos_now;
use horizon_shared::devcerts::DevPki;
use horizon_shared::proto::Durability;
use horizon_shared::tls::TlsMaterial;

/// A relay process, killed with SIGKILL on drop (a crash: nothing it holds
/// is flushed).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of `horizon_relay_connections_active` from a relay's /metrics.
fn active_connections(metrics_port: u16) -> f64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix("horizon_relay_connections_active "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn start_relay(bin: &Path, dir: &Path, i: usize, port: u16, metrics: u16) -> Killed {
    let cfg = dir.join(format!("relay-{i}.yaml"));
    std::fs::write(
        &cfg,
        format!(
            "server:\n  listen_addr: \"127.0.0.1:{port}\"\n  relay_id: relay-{i}\n  keep_alive_secs: 1\n  connection_timeout_secs: 5\n\
             security:\n  dev_certs_dir: \"{certs}\"\nparquet:\n  output_dir: \"{objects}\"\n  rotation_interval_secs: 1\n\
             observability:\n  metrics_port: {metrics}\n  metrics_bind: 127.0.0.1\n",
            certs = dir.join("certs").display(),
            objects = dir.join("objects").display(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join(format!("relay-{i}.log"))).unwrap();
    Killed(
        Command::new(bin)
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    )
}

/// The agents' liveness timeout: a relay silent this long is taken for gone.
const LIVENESS: Duration = Duration::from_secs(2);
/// The agents' handshake timeout (a failed attempt is not in the bound).
const CONNECT: Duration = Duration::from_secs(2);
/// The relays' flush age (`parquet.rotation_interval_secs`): a durable ack
/// comes at most this long after its batch arrives.
const FLUSH: Duration = Duration::from_secs(1);

/// The longest from the kill to a moved agent's first ack on another
/// relay: the silence that makes it give up on the dead one, plus the
/// quarter second between its checks and the random pause (under 250 ms)
/// before it reconnects; the handshake and the resend; and the new relay's
/// flush. The reconnect cannot land on the dead relay: nginx marked it
/// failed (`max_fails=1`, for 30 s) on the ICMP error that the agent's own
/// unanswered pings drew. 2 s cover the handshake, the resend and a loaded
/// test machine.
fn failover_bound() -> Duration {
    LIVENESS + Duration::from_millis(500) + FLUSH + Duration::from_secs(2)
}

/// What pyarrow reads under a directory.
struct Stored {
    rows: usize,
    /// (node, series_id, time) of every row.
    keys: BTreeSet<(String, i64, i64)>,
    /// Values stored per node (the test's values are unique per node).
    values: BTreeMap<String, BTreeSet<i64>>,
}

fn read_stored(dir: &Path) -> Stored {
    let data = read_parquet(&["local", dir.to_str().unwrap()]);
    let rows = &data.rows;
    let mut stored = Stored {
        rows: rows.len(),
        keys: BTreeSet::new(),
        values: BTreeMap::new(),
    };
    for r in rows {
        let node = r["node"].as_str().unwrap().to_owned();
        stored.keys.insert((
            node.clone(),
            r["series_id"].as_i64().unwrap(),
            r["time"].as_i64().unwrap(),
        ));
        stored
            .values
            .entry(node)
            .or_default()
            .insert(r["value"].as_f64().unwrap() as i64);
    }
    stored
}

/// Asserts every acked value is stored.
fn assert_acked_stored(acked: &BTreeMap<String, Vec<i64>>, stored: &Stored, what: &str) {
    for (node, values) in acked {
        let have = stored.values.get(node).cloned().unwrap_or_default();
        let missing: Vec<_> = values.iter().filter(|v| !have.contains(v)).collect();
        assert!(
            missing.is_empty(),
            "{node}: acked durably but not in the {what}: {missing:?}"
        );
    }
}

#[tokio::test]
async fn agents_survive_a_relay_killed_behind_the_udp_balancer_and_nothing_acked_is_lost() {
    let bin = horizon_e2e::bins::workspace_binary("telemetry-relay");
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_udp()).collect();
    // The first relay creates the development PKI; the others share it.
    let metrics: Vec<u16> = (0..3).map(|_| free_tcp()).collect();
    let mut relays = vec![start_relay(&bin, dir.path(), 0, ports[0], metrics[0])];
    let pki = DevPki::at(&dir.path().join("certs"));
    for _ in 0..100 {
        if pki.server_key.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, p) in ports.iter().enumerate().skip(1) {
        relays.push(start_relay(&bin, dir.path(), i, *p, metrics[i]));
    }
    // Every relay answers directly before the balancer starts, so that
    // nginx does not mark a relay that is still starting as failed.
    let (cert, key) = pki.client("probe").unwrap();
    let probe = TlsMaterial::load(&cert, &key, &pki.ca_cert).unwrap();
    for p in &ports {
        let mut up = false;
        for _ in 0..100 {
            if let Ok(c) = Client::connect(ClientConfig::new(
                format!("127.0.0.1:{p}"),
                "localhost",
                probe.clone(),
            ))
            .await
            {
                c.close().await;
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "relay on port {p} came up");
    }
    let relay_addrs: Vec<_> = ports
        .iter()
        .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let nginx = Nginx::start(&relay_addrs);
    let lb = nginx.addr;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Twelve agents, each its own connection (and so its own flow through the balancer).
    let mut clients = Vec::new();
    for n in 0..12 {
        let node = format!("fleet-node-{n}");
        let (cert, key) = pki.client(&node).unwrap();
        let mut cfg = ClientConfig::new(
            lb.to_string(),
            "localhost",
            TlsMaterial::load(&cert, &key, &pki.ca_cert).unwrap(),
        );
        // The defaults but for the liveness and connect timeouts, so that
        // only the transport-level detection can move an agent in time
        // (the idle timeout stays at 60 s and the ack timeout at 30 s).
        cfg.liveness_timeout = LIVENESS;
        cfg.connect_timeout = CONNECT;
        cfg.max_backoff = Duration::from_millis(500);
        let mut client = None;
        for _ in 0..50 {
            if let Ok(c) = Client::connect(cfg.clone()).await {
                client = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        clients.push((node, client.expect("agent connects through the balancer")));
    }

    // Each agent sends one point per batch, values 0.. in order, every 20 ms;
    // a companion task takes the acks as they come (in order) and keeps the
    // agent's longest time between two acks.
    let mut tasks = Vec::new();
    for (node, client) in clients {
        tasks.push(tokio::spawn(async move {
            let s = client.series("gpu_util", &[("gpu", "0")]).unwrap();
            let (tx, mut rx) =
                tokio::sync::mpsc::unbounded_channel::<(i64, horizon_shared::client::PendingAck)>();
            let acker = tokio::spawn(async move {
                let mut durable = Vec::new();
                let mut acked_at = Vec::new();
                while let Some((i, p)) = rx.recv().await {
                    let acked = tokio::time::timeout(Duration::from_secs(60), p)
                        .await
                        .expect("every batch acked in the end")
                        .unwrap();
                    acked_at.push(Instant::now());
                    assert_eq!(acked.ack.accepted, 1);
                    if acked.ack.durability == Durability::Durable as i32 {
                        durable.push(i);
                    }
                }
                (durable, acked_at)
            });
            let t0 = unix_nanos_now();
            for i in 0..250i64 {
                let p = Point::new(s, t0 + i * 1_000_000, i as f64);
                tx.send((i, client.send(Batch { points: vec![p] }).await.unwrap()))
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drop(tx);
            let (durable, acked_at) = acker.await.unwrap();
            let stats = client.stats();
            client.close().await;
            (node, durable, stats, acked_at)
        }));
    }

    // Mid-run, SIGKILL the relay holding the most agents: nothing it held is flushed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busiest = (0..3)
        .max_by(|a, b| active_connections(metrics[*a]).total_cmp(&active_connections(metrics[*b])))
        .unwrap();
    assert!(active_connections(metrics[busiest]) >= 1.0);
    let victim = relays.remove(busiest);
    drop(victim);
    let killed = Instant::now();

    let mut acked: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut reconnected = 0;
    for t in tasks {
        let (node, durable, stats, acked_at) = t.await.unwrap();
        let longest_gap = acked_at
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        let first_after_kill = acked_at
            .iter()
            .find(|t| **t > killed)
            .map(|t| *t - killed)
            .unwrap();
        assert_eq!(durable.len(), 250, "{node}: every batch acked durably");
        eprintln!(
            "{node}: {} connections, longest time without an ack {longest_gap:?}, first ack {first_after_kill:?} after the kill",
            stats.connects
        );
        if stats.connects > 1 {
            reconnected += 1;
            // Its relay was killed: the agent took it for silent, and
            // counted that as what ended the connection.
            assert!(
                stats.silences >= 1 && stats.silences <= stats.connections_lost,
                "{node}: {stats:?}"
            );
        }
        // Whether it was moved or not, every agent was acked again within
        // the time it takes to notice a dead relay and get acked by another,
        // and never went longer than that plus one flush without an ack.
        assert!(
            first_after_kill <= failover_bound(),
            "{node}: first ack {first_after_kill:?} after the kill (connects {}), over the bound of {:?}",
            stats.connects,
            failover_bound()
        );
        assert!(
            longest_gap <= failover_bound() + FLUSH,
            "{node}: {longest_gap:?} without an ack (connects {})",
            stats.connects
        );
        acked.insert(node, durable);
    }
    assert!(
        reconnected > 0,
        "some agents were on the killed relay and moved"
    );

    // Let the survivors flush, then stop them.
    for r in &relays {
        Command::new("kill")
            .args(["-TERM", &r.0.id().to_string()])
            .status()
            .unwrap();
    }
    for mut r in relays {
        let _ = r.0.wait();
    }

    let raw = read_stored(&dir.path().join("objects"));
    assert_acked_stored(&acked, &raw, "raw objects");
    assert_eq!(
        raw.keys.len(),
        12 * 250,
        "every point sent is in the raw objects"
    );
    assert!(raw.rows >= raw.keys.len());

    // Compact every hour the fleet wrote (the current one too), then read
    // the hourly dataset: each point sent, exactly once.
    let objects = dir.path().join("objects");
    let settings =
        horizon_compactor::Settings::from_args(["--store-url", objects.to_str().unwrap()]).unwrap();
    let compactor = horizon_compactor::Compactor::new(settings).unwrap();
    let hours = compactor.raw_hours().await.unwrap();
    let report = compactor
        .run(
            &horizon_compactor::Selection::Hours(hours),
            &horizon_compactor::RunOptions::default(),
            &(),
        )
        .await
        .unwrap();
    assert_eq!(report.failures(), 0, "{report:#?}");
    let compacted = read_stored(&objects.join("compacted"));
    assert_eq!(
        compacted.rows,
        12 * 250,
        "after compaction: exactly the points sent, each once"
    );
    assert_eq!(compacted.keys, raw.keys);
    assert_acked_stored(&acked, &compacted, "compacted dataset");
}
