//! A UDP load balancer that routes QUIC by connection ID, the way an AWS
//! network load balancer's QUIC listener does: a packet whose destination
//! connection ID carries a known server ID at octets 1 to 8 (the QUIC-LB
//! plaintext layout) goes to that server, whatever its source address; any
//! other long-header packet (a client's first Initials, whose connection ID
//! the client chose) goes to a server picked by a hash of that connection ID;
//! any other short-header packet is dropped. The layout is read here from
//! the bytes, independently of the relay's generator.
//!
//! Like a proxy, it forwards each client address's packets to a server from
//! a socket of its own for that (client, server) pair, and sends the server's
//! answers back from the front socket: a client that moves to a new address
//! or port shows up at the server on a new path, as it would behind the NLB.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// What the balancer did with the packets it received from clients.
#[derive(Debug, Default)]
pub struct RouteCounts {
    /// Routed by the server ID in the destination connection ID.
    pub by_server_id: AtomicU64,
    /// Long-header packets without a known server ID, routed by hash.
    pub by_hash: AtomicU64,
    /// Short-header packets without a known server ID, dropped.
    pub dropped: AtomicU64,
    /// Upstream sockets opened: one per (client address, server) pair, so
    /// a server sees one source address per upstream.
    pub upstreams: AtomicU64,
}

/// A running balancer; stops when dropped.
#[derive(Debug)]
pub struct CidBalancer {
    /// Where clients send.
    pub addr: SocketAddr,
    /// Counts by routing decision.
    pub counts: Arc<RouteCounts>,
    stop: CancellationToken,
}

impl Drop for CidBalancer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The server a packet goes to, or `None` to drop it.
pub fn route(packet: &[u8], servers: &[([u8; 8], SocketAddr)]) -> Option<(usize, bool)> {
    let first = *packet.first()?;
    let by_id = |dcid: &[u8]| {
        let sid = dcid.get(1..9)?;
        servers.iter().position(|(id, _)| id.as_slice() == sid)
    };
    if first & 0x80 == 0 {
        // Short header: the connection ID follows the first byte; its length
        // is the servers' (at least the 9 bytes read here).
        return by_id(packet.get(1..)?).map(|i| (i, true));
    }
    // Long header: version (4), DCID length (1), DCID.
    let len = usize::from(*packet.get(5)?);
    let dcid = packet.get(6..6 + len)?;
    if let Some(i) = by_id(dcid) {
        return Some((i, true));
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dcid.hash(&mut h);
    Some(((h.finish() % servers.len() as u64) as usize, false))
}

impl CidBalancer {
    /// Starts a balancer on a free loopback port in front of `servers`
    /// (server ID, address).
    pub async fn start(servers: Vec<([u8; 8], SocketAddr)>) -> Self {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind balancer"));
        let addr = front.local_addr().expect("balancer addr");
        let counts = Arc::new(RouteCounts::default());
        let stop = CancellationToken::new();
        tokio::spawn(run(front, servers, counts.clone(), stop.clone()));
        Self { addr, counts, stop }
    }
}

async fn run(
    front: Arc<UdpSocket>,
    servers: Vec<([u8; 8], SocketAddr)>,
    counts: Arc<RouteCounts>,
    stop: CancellationToken,
) {
    let mut upstreams: HashMap<(SocketAddr, usize), Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, client) = tokio::select! {
            r = front.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(_) => continue,
            },
            () = stop.cancelled() => return,
        };
        let Some((server, by_id)) = route(&buf[..n], &servers) else {
            counts.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let counter = if by_id {
            &counts.by_server_id
        } else {
            &counts.by_hash
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let up = match upstreams.get(&(client, server)) {
            Some(up) => up.clone(),
            None => {
                let up = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind upstream"));
                up.connect(servers[server].1)
                    .await
                    .expect("connect upstream");
                tokio::spawn(answer(up.clone(), front.clone(), client, stop.clone()));
                upstreams.insert((client, server), up.clone());
                counts.upstreams.fetch_add(1, Ordering::Relaxed);
                up
            }
        };
        let _ = up.send(&buf[..n]).await;
    }
}

/// Sends a server's answers on one upstream socket back to its client.
async fn answer(
    up: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        tokio::select! {
            r = up.recv(&mut buf) => match r {
                Ok(n) => { let _ = front.send_to(&buf[..n], client).await; }
                // An ICMP error from a server that went away: keep serving.
                Err(_) => continue,
            },
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::route;

    #[test]
    fn routes_by_server_id_then_by_hash() {
        let a: SocketAddrPair = (
            [1; 8],
            "127.0.0.1:1".parse().unwrap_or_else(|_| unreachable!()),
        );
        let b: SocketAddrPair = (
            [2; 8],
            "127.0.0.1:2".parse().unwrap_or_else(|_| unreachable!()),
        );
        let servers = [a, b];
        let mut short = vec![0x40, 0x0f];
        short.extend([2; 8]);
        short.extend([9; 7]);
        assert_eq!(route(&short, &servers), Some((1, true)));
        short[2] = 7;
        assert_eq!(route(&short, &servers), None, "unknown server ID: dropped");
        let mut long = vec![0xc0, 0, 0, 0, 1, 16, 0x0f];
        long.extend([1; 8]);
        long.extend([9; 7]);
        assert_eq!(route(&long, &servers), Some((0, true)));
        let initial = [0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let (i, by_id) = route(&initial, &servers).unwrap_or_else(|| unreachable!());
        assert!(!by_id && i < 2);
        assert_eq!(route(&initial, &servers), Some((i, false)), "deterministic");
    }

    type SocketAddrPair = ([u8; 8], std::net::SocketAddr);
}
