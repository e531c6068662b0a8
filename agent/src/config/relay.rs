//! `relay`: the relay (or load balancer) to stream to, the client window
//! and the failover timeouts.

use std::time::Duration;

use horizon_shared::config::ConfigError;
use horizon_shared::config::check::{above, between, positive};
use horizon_shared::config::host::host_port;
use serde::Deserialize;

/// `relay`: the relay (or load balancer) to stream to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// `host:port` of the relay or its load balancer.
    pub addr: String,
    /// Name the relay's certificate must carry; empty: the host part of `addr`.
    pub server_name: String,
    /// Batches sent and not yet acked: the window's start, which grows
    /// during catch-up up to [`MAX_WINDOW`](crate::sender::MAX_WINDOW).
    pub window: usize,
    /// Points per batch, at most (the relay's `limits.max_batch_size`).
    pub max_batch_points: usize,
    /// Longest pause between connection attempts, seconds. Each pause is
    /// drawn at random from 0 to min(this, 250 ms × 2^failures), so once
    /// the relay is back the agent reconnects within this many seconds (and
    /// a fleet spreads its reconnects over them: docs/agent.md, Delivery).
    pub max_backoff_secs: u64,
    /// The relay is taken for gone, and the agent reconnects through the
    /// balancer from a fresh UDP port, when nothing at all (not even the
    /// QUIC acknowledgement of a ping) has come from it for this long.
    pub liveness_timeout_secs: u64,
    /// A batch unacked this long while the relay still answers pings makes
    /// the agent reconnect (a relay alive but stuck); above the relay's
    /// flush age, which durable acks wait for.
    pub ack_timeout_secs: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:5001".into(),
            server_name: String::new(),
            window: 64,
            max_batch_points: 1000,
            max_backoff_secs: 5,
            liveness_timeout_secs: 3,
            ack_timeout_secs: 30,
        }
    }
}

/// The `relay` section after validation.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Relay address, `HOST:PORT`.
    pub addr: String,
    /// Name on the relay's certificate.
    pub server_name: String,
    /// The sender's starting window.
    pub window: usize,
    /// Points per batch.
    pub max_batch_points: usize,
    /// Reconnect backoff cap.
    pub max_backoff: Duration,
    /// Silence after which the relay is taken for gone.
    pub liveness_timeout: Duration,
    /// Unacked time after which a relay that answers is taken for stuck.
    pub ack_timeout: Duration,
}

impl RelayConfig {
    /// Checks the section; the server name defaults to the host of `addr`
    /// (the development relay certificate names localhost and 127.0.0.1).
    pub fn validate(&self) -> Result<RelaySettings, ConfigError> {
        let (host, _) = host_port("relay.addr", &self.addr)?;
        let server_name = if self.server_name.is_empty() {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        } else {
            self.server_name.clone()
        };
        positive("relay.window", self.window)?;
        positive("relay.max_batch_points", self.max_batch_points)?;
        positive("relay.max_backoff_secs", self.max_backoff_secs)?;
        between(
            "relay.liveness_timeout_secs",
            self.liveness_timeout_secs,
            1,
            60,
        )?;
        above(
            "relay.ack_timeout_secs",
            self.ack_timeout_secs,
            "relay.liveness_timeout_secs",
            self.liveness_timeout_secs,
        )?;
        Ok(RelaySettings {
            addr: self.addr.clone(),
            server_name,
            window: self.window,
            max_batch_points: self.max_batch_points,
            max_backoff: Duration::from_secs(self.max_backoff_secs),
            liveness_timeout: Duration::from_secs(self.liveness_timeout_secs),
            ack_timeout: Duration::from_secs(self.ack_timeout_secs),
        })
    }
}
