//! An HTTP/1.1 forwarder in front of an S3 API (moto) that holds the first
//! PUT back until a later PUT has been answered by the server, and then for
//! a while longer, so that a later flush is stored before an earlier one.
//! It records when the server answered each PUT (the object is stored from
//! then on), so a test can compare the acks' arrival with the PUTs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::throttle::read_message;

/// One PUT the server answered.
#[derive(Debug, Clone)]
pub struct StoredPut {
    /// The request path (`/bucket/key`).
    pub path: String,
    /// When the forwarder got the server's answer.
    pub at: Instant,
    /// The server's status code.
    pub status: u16,
    /// Whether this was the held PUT.
    pub held: bool,
}

#[derive(Debug, Default)]
struct State {
    puts_seen: usize,
    stored: Vec<StoredPut>,
    held_started: Option<Instant>,
}

/// A running forwarder.
#[derive(Debug, Clone)]
pub struct PutHold {
    /// Address clients use.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// Notified whenever a PUT is answered or the held one arrives.
    changed: Arc<Notify>,
}

impl PutHold {
    /// Forwards to `target`, holding the first PUT until another PUT has
    /// been answered and `extra` more has passed (or `give_up` has passed
    /// since it arrived, so that a relay with one flush at a time still
    /// finishes and the test can report the order it saw).
    pub async fn start(target: SocketAddr, extra: Duration, give_up: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hold = Self {
            addr,
            state: Arc::default(),
            changed: Arc::default(),
        };
        let h = hold.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(h.clone().serve(conn, target, extra, give_up));
            }
        });
        hold
    }

    /// The URL clients use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The PUTs answered so far, in the order they were answered.
    pub fn stored(&self) -> Vec<StoredPut> {
        self.state.lock().expect("lock").stored.clone()
    }

    /// Waits until the held PUT has arrived (up to `timeout`); whether it did.
    pub async fn held_started(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if self.state.lock().expect("lock").held_started.is_some() {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                return false;
            }
        }
    }

    async fn serve(
        self,
        mut conn: TcpStream,
        target: SocketAddr,
        extra: Duration,
        give_up: Duration,
    ) {
        let mut buf = Vec::new();
        let mut up: Option<(TcpStream, Vec<u8>)> = None;
        loop {
            let Some(request) = read_message(&mut conn, &mut buf).await else {
                return;
            };
            let head = String::from_utf8_lossy(&request[..request.len().min(2048)]).into_owned();
            let mut words = head.split_whitespace();
            let (method, path) = (
                words.next().unwrap_or("").to_owned(),
                words.next().unwrap_or("").to_owned(),
            );
            let put = method == "PUT";
            let held = put && {
                let mut s = self.state.lock().expect("lock");
                s.puts_seen += 1;
                if s.puts_seen == 1 {
                    s.held_started = Some(Instant::now());
                    true
                } else {
                    false
                }
            };
            if held {
                self.changed.notify_waiters();
                self.wait_for_a_later_put(extra, give_up).await;
            }
            if up.is_none() {
                let Ok(s) = TcpStream::connect(target).await else {
                    return;
                };
                up = Some((s, Vec::new()));
            }
            let Some((upstream, upbuf)) = up.as_mut() else {
                return;
            };
            if upstream.write_all(&request).await.is_err() {
                return;
            }
            let Some(response) = read_message(upstream, upbuf).await else {
                return;
            };
            if put {
                let status = String::from_utf8_lossy(&response[..response.len().min(64)])
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                self.state.lock().expect("lock").stored.push(StoredPut {
                    path,
                    at: Instant::now(),
                    status,
                    held,
                });
                self.changed.notify_waiters();
            }
            if conn.write_all(&response).await.is_err() {
                return;
            }
        }
    }

    /// Until a PUT other than the held one is answered, then `extra`; or
    /// `give_up` in all.
    async fn wait_for_a_later_put(&self, extra: Duration, give_up: Duration) {
        let until = tokio::time::Instant::now() + give_up;
        loop {
            let notified = self.changed.notified();
            if self
                .state
                .lock()
                .expect("lock")
                .stored
                .iter()
                .any(|p| !p.held && p.status / 100 == 2)
            {
                break;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return;
            }
        }
        tokio::time::sleep_until(until.min(tokio::time::Instant::now() + extra)).await;
    }
}
