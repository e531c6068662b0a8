//! An HTTP/1.1 forwarder in front of a write API that answers the first
//! requests itself with `429 Too Many Requests` and a `Retry-After`, the way
//! a database that cannot keep up asks its writers for room, and forwards
//! the rest to the real server. It records when each request arrived and
//! when each refusal went out, so a test can check that writers waited.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the forwarder saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// When each request arrived, in order.
    pub requests: Vec<Instant>,
    /// When each refusal was sent.
    pub refusals: Vec<Instant>,
}

/// A running forwarder.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// Address writers use.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl Throttle {
    /// Refuses the first `refuse` requests with `429` and `Retry-After:
    /// retry_after_secs`, then forwards to `target`.
    pub async fn start(target: SocketAddr, refuse: usize, retry_after_secs: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, target, refuse, retry_after_secs, s.clone()));
            }
        });
        Self { addr, seen }
    }

    /// What it saw so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().expect("lock").clone()
    }

    /// The URL writers use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Serves one client connection, request after request (keep-alive).
async fn serve(
    mut conn: TcpStream,
    target: SocketAddr,
    refuse: usize,
    retry_after_secs: u64,
    seen: Arc<Mutex<Seen>>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(request) = read_message(&mut conn, &mut buf).await else {
            return;
        };
        let refused = {
            let mut s = seen.lock().expect("lock");
            s.requests.push(Instant::now());
            s.requests.len() <= refuse
        };
        let response = if refused {
            format!(
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {retry_after_secs}\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes()
        } else {
            let Ok(mut up) = TcpStream::connect(target).await else {
                return;
            };
            if up.write_all(&request).await.is_err() {
                return;
            }
            let mut upbuf = Vec::new();
            let Some(r) = read_message(&mut up, &mut upbuf).await else {
                return;
            };
            r
        };
        if conn.write_all(&response).await.is_err() {
            return;
        }
        if refused {
            seen.lock().expect("lock").refusals.push(Instant::now());
        }
    }
}

/// Reads one HTTP/1.1 message (headers and a `Content-Length` body) off
/// `conn`, keeping what follows in `buf`.
pub(crate) async fn read_message(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let body_len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let total = end + 4 + body_len;
            while buf.len() < total {
                let n = conn.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf.drain(..total).collect());
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
