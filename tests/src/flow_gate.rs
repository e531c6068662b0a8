//! A UDP forwarder in front of one relay that can silence the flows it has
//! seen so far, the way a relay that died without a trace looks through a
//! cloud load balancer: nothing comes back, and no ICMP error either. Like a
//! 5-tuple balancer it forwards each client address and port from a socket
//! of its own, so a client that reconnects from a fresh port is a new flow,
//! and new flows are forwarded as usual.
//!
//! It can also hold back each new flow's client side once the relay has
//! answered it: the client receives the relay's whole first flight and
//! completes its side of the handshake, while the relay never hears the
//! client again, as when a relay's socket overflows in a connect storm. Or
//! drop every answer of the relay, so that a client never hears it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// A running forwarder; stops when dropped.
#[derive(Debug)]
pub struct FlowGate {
    /// Where clients send.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

#[derive(Debug, Default)]
struct State {
    /// Client address of every flow seen, in order.
    flows: Vec<SocketAddr>,
    /// Flows whose packets are dropped, both ways.
    silenced: HashSet<SocketAddr>,
    /// Whether a flow's client packets are dropped once the relay answered.
    hold_back: bool,
    /// Flows whose client packets are dropped (the relay's still pass).
    held_back: HashSet<SocketAddr>,
    /// Whether every answer of the relay is dropped (the clients' pass).
    drop_answers: bool,
}

impl Drop for FlowGate {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FlowGate {
    /// Starts forwarding from a fresh loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        let addr = front.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        tokio::spawn(forward(front, upstream, state.clone(), stop.clone()));
        Self { addr, state, stop }
    }

    /// Silences every flow seen so far: their packets are dropped both ways.
    pub fn silence_existing(&self) {
        let mut s = self.state.lock().expect("lock");
        let flows = s.flows.clone();
        s.silenced.extend(flows);
    }

    /// While `on`, the client's packets on a flow are dropped once the relay
    /// has answered it (the relay's answers still pass). Off: every flow is
    /// forwarded both ways again.
    pub fn hold_back_clients_after_answer(&self, on: bool) {
        let mut s = self.state.lock().expect("lock");
        s.hold_back = on;
        if !on {
            s.held_back.clear();
        }
    }

    /// While `on`, every packet of the relay is dropped; the clients'
    /// still reach it.
    pub fn drop_relay_answers(&self, on: bool) {
        self.state.lock().expect("lock").drop_answers = on;
    }

    /// Client addresses of the flows seen so far, in order.
    pub fn flows(&self) -> Vec<SocketAddr> {
        self.state.lock().expect("lock").flows.clone()
    }
}

async fn forward(
    front: Arc<UdpSocket>,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
) {
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, client) = tokio::select! {
            r = front.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(_) => continue,
            },
            () = stop.cancelled() => return,
        };
        {
            let s = state.lock().expect("lock");
            if s.silenced.contains(&client) || s.held_back.contains(&client) {
                continue;
            }
        }
        let up = match upstreams.get(&client) {
            Some(u) => u.clone(),
            None => {
                let Ok(sock) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                if sock.connect(upstream).await.is_err() {
                    continue;
                }
                let sock = Arc::new(sock);
                state.lock().expect("lock").flows.push(client);
                tokio::spawn(answer(
                    sock.clone(),
                    front.clone(),
                    client,
                    state.clone(),
                    stop.clone(),
                ));
                upstreams.insert(client, sock.clone());
                sock
            }
        };
        let _ = up.send(&buf[..n]).await;
    }
}

/// Sends the relay's answers on one flow back to its client.
async fn answer(
    up: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = tokio::select! {
            r = up.recv(&mut buf) => match r {
                Ok(n) => n,
                Err(_) => continue,
            },
            () = stop.cancelled() => return,
        };
        {
            let mut s = state.lock().expect("lock");
            if s.silenced.contains(&client) || s.drop_answers {
                continue;
            }
            if s.hold_back {
                s.held_back.insert(client);
            }
        }
        let _ = front.send_to(&buf[..n], client).await;
    }
}
