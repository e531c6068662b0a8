//! nginx as a UDP load balancer in front of relays, configured from
//! `infra/fleet/nginx-udp.conf.template` (the local fleet's): each client
//! flow, by source address and port, sticks to one relay, like a cloud UDP
//! load balancer's 5-tuple hash.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The stream module Debian's `libnginx-mod-stream` installs.
pub const NGINX_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// A running nginx; stopped with SIGTERM on drop (its master takes the
/// workers down with it; SIGKILL would leave them running).
#[derive(Debug)]
pub struct Nginx {
    /// Where clients send.
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx on a free loopback UDP port in front of `relays`.
    pub fn start(relays: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let listen = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free UDP port")
            .port();
        let child = spawn(dir.path(), listen, relays);
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], listen)),
            child,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Writes the configuration into `dir` and starts nginx in the foreground
/// on `listen`, in front of `relays`.
pub fn spawn(dir: &Path, listen: u16, relays: &[SocketAddr]) -> Child {
    assert!(
        Path::new(NGINX_MODULE).exists(),
        "nginx stream module missing: run `bash infra/dev/install-test-deps.sh` (installs nginx-light and libnginx-mod-stream)"
    );
    let template = include_str!("../../infra/fleet/nginx-udp.conf.template");
    let upstreams: String = relays
        .iter()
        .map(|a| format!("        server {a} max_fails=1 fail_timeout=30s;\n"))
        .collect();
    let conf = template
        .replace("@MODULE@", NGINX_MODULE)
        .replace("@DIR@", &dir.display().to_string())
        .replace("@LISTEN@", &listen.to_string())
        .replace("@UPSTREAMS@", &upstreams);
    std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
    Command::new("nginx")
        .args([
            "-p",
            &dir.display().to_string(),
            "-c",
            &dir.join("nginx.conf").display().to_string(),
            "-g",
            "daemon off;",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start nginx ({e}); run `bash infra/dev/install-test-deps.sh`")
        })
}
