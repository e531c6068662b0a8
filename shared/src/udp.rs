//! UDP sockets with a receive buffer of the caller's size, and the kernel's
//! count of datagrams dropped at a full one.
//!
//! A QUIC endpoint reads every datagram of every connection it serves from
//! one socket. When datagrams arrive faster than the endpoint drains them
//! (a connect storm on a relay, thousands of clients behind one endpoint),
//! the kernel drops what does not fit in the socket's receive buffer, and a
//! peer takes the silence for a dead endpoint. Linux's default buffer
//! (`net.core.rmem_default`, 208 KiB on most distributions) holds about 140
//! full-size datagrams. A socket may ask for more with `SO_RCVBUF`, up to
//! `net.core.rmem_max`; Linux then reserves twice the size asked for (half
//! of it for its own bookkeeping) and reports that doubled figure back.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// A bound UDP socket and what the kernel gave it.
#[derive(Debug)]
pub struct Bound {
    /// The socket, bound.
    pub socket: UdpSocket,
    /// The receive buffer asked for, bytes (0: the kernel's default).
    pub asked: usize,
    /// The receive buffer the kernel reports (`SO_RCVBUF` read back).
    pub receive_buffer: usize,
    /// The socket's inode, to find it in `/proc/net/udp*`.
    pub inode: Option<u64>,
}

impl Bound {
    /// Whether the kernel gave less than was asked: `net.core.rmem_max` is
    /// below the size asked for.
    pub fn capped(&self) -> bool {
        self.receive_buffer < self.asked
    }
}

/// Binds a UDP socket to `addr` with a receive buffer of `receive_buffer`
/// bytes (0: leave the kernel's default). A size above
/// `net.core.rmem_max` is not an error: the kernel caps it, and
/// [`Bound::capped`] says so.
pub fn bind(addr: SocketAddr, receive_buffer: usize) -> io::Result<Bound> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // As std's bind does on Linux: IPv4 too on `[::]`, where the host allows it.
        let _ = socket.set_only_v6(false);
    }
    if receive_buffer > 0 {
        socket.set_recv_buffer_size(receive_buffer)?;
    }
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    let receive_buffer_now = socket2::SockRef::from(&socket).recv_buffer_size()?;
    let inode = socket_inode(&socket);
    Ok(Bound {
        socket,
        asked: receive_buffer,
        receive_buffer: receive_buffer_now,
        inode,
    })
}

#[cfg(target_os = "linux")]
fn socket_inode(socket: &UdpSocket) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok()?;
    parse_socket_link(link.to_str()?)
}

#[cfg(not(target_os = "linux"))]
fn socket_inode(_: &UdpSocket) -> Option<u64> {
    None
}

/// `socket:[12345]` → 12345.
fn parse_socket_link(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Datagrams the kernel dropped at the socket with this inode since it was
/// opened (a full receive buffer, mostly), from `/proc/net/udp` and
/// `/proc/net/udp6`; `None` where those are not readable or the socket is
/// not in them.
pub fn receive_drops(inode: u64) -> Option<u64> {
    ["/proc/net/udp", "/proc/net/udp6"].iter().find_map(|path| {
        let table = std::fs::read_to_string(path).ok()?;
        drops_in(&table, inode)
    })
}

/// The `drops` column of the row of `inode` in a `/proc/net/udp` table.
fn drops_in(table: &str, inode: u64) -> Option<u64> {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt
    // uid timeout inode ref pointer drops
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        cols.last()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_gets_the_buffer_it_asks_for_or_says_it_was_capped() {
        let asked = 256 * 1024;
        let b = bind("127.0.0.1:0".parse().unwrap(), asked).unwrap();
        // Linux reports twice the size asked for, unless rmem_max caps it.
        let rmem_max: Option<usize> = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        match rmem_max {
            Some(max) if max >= asked => {
                assert_eq!(b.receive_buffer, 2 * asked);
                assert!(!b.capped());
            }
            Some(max) => assert_eq!(b.receive_buffer, 2 * max),
            None => assert!(b.receive_buffer > 0),
        }
        let default = bind("127.0.0.1:0".parse().unwrap(), 0).unwrap();
        assert_eq!(default.asked, 0);
        assert!(!default.capped());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn drops_at_a_full_buffer_are_counted_for_this_socket_only() {
        // The smallest buffer Linux allows, never read: most of a burst drops.
        let b = bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let other = bind("127.0.0.1:0".parse().unwrap(), 0).unwrap();
        let inode = b.inode.expect("a socket's inode on Linux");
        assert_eq!(receive_drops(inode), Some(0));
        let to = b.socket.local_addr().unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..200 {
            sender.send_to(&[0u8; 1200], to).unwrap();
        }
        let dropped = receive_drops(inode).unwrap();
        assert!(
            dropped > 100,
            "{dropped} of 200 datagrams dropped at a ~4 KiB buffer"
        );
        assert_eq!(receive_drops(other.inode.unwrap()), Some(0));
    }

    #[test]
    fn the_drops_column_of_the_socket_s_row() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
 1234: 0100007F:14B5 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
 1235: 0100007F:14B6 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 0\n";
        assert_eq!(drops_in(table, 4242), Some(17));
        assert_eq!(drops_in(table, 4243), Some(0));
        assert_eq!(drops_in(table, 9), None);
        assert_eq!(parse_socket_link("socket:[4242]"), Some(4242));
        assert_eq!(parse_socket_link("pipe:[4242]"), None);
    }
}
