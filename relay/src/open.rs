//! The authenticated connections being served, by node, each holding one of
//! the `server.max_connections` slots.
//!
//! A node holds at most `server.max_connections_per_node` of them. A new
//! connection beyond that replaces the node's oldest instead of being
//! refused: the agent whose network changed while its old connection is
//! still open (until the idle timeout) gets in at once, and a node that
//! leaks connections (a restart loop, a compromised certificate) churns
//! through its own few slots instead of taking the relay's. The replaced
//! connection's slot passes straight to the new one, so the replacement
//! needs no free slot, and the relay-wide limit is never taken by one node.
//!
//! Each node also has its share of the relay's frame buffer here
//! (`limits.max_frame_buffer_bytes_per_node`), which all its connections'
//! streams draw from (see `crate::connection`'s `frames.rs`).
//!
//! Revocation reads the same registry ([`crate::revocation`]) to cut the
//! connections of a node whose certificate a reloaded CRL revokes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The connections being served, by node, oldest first.
#[derive(Debug)]
pub(crate) struct OpenConnections {
    per_node: usize,
    frame_bytes_per_node: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Order of admission, so that a node's oldest connection comes first.
    next: u64,
    nodes: HashMap<String, Node>,
}

/// A node's connections, and the frame-buffer share they draw from.
#[derive(Debug)]
struct Node {
    conns: BTreeMap<u64, Entry>,
    /// The node's share of the relay's frame buffer, kept while it has a
    /// connection (a replaced connection's streams still draw from it).
    frame_bytes: Arc<Semaphore>,
}

#[derive(Debug)]
struct Entry {
    conn: quinn::Connection,
    /// Its `server.max_connections` slot (passed on if it is replaced).
    slot: OwnedSemaphorePermit,
}

/// How a connection was admitted.
#[derive(Debug)]
pub(crate) enum Admitted {
    /// It took a free slot.
    Free(Registered),
    /// Its node was at `server.max_connections_per_node`: it took the slot
    /// of the node's oldest connection, which the caller closes.
    Replacing(Registered, quinn::Connection),
}

/// Every slot of `server.max_connections` is taken (by other nodes).
#[derive(Debug)]
pub(crate) struct AtLimit;

/// Removes its connection from the registry (and frees its slot, unless it
/// passed to a newer connection) when dropped.
#[derive(Debug)]
pub(crate) struct Registered {
    registry: Arc<OpenConnections>,
    node: String,
    id: u64,
    /// The node's share of the relay's frame buffer.
    pub(crate) frame_bytes: Arc<Semaphore>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut s = self.registry.lock();
        if let Some(n) = s.nodes.get_mut(&self.node) {
            n.conns.remove(&self.id);
            if n.conns.is_empty() {
                s.nodes.remove(&self.node);
            }
        }
    }
}

impl OpenConnections {
    /// At most `per_node` connections per node, whose frames hold at most
    /// `frame_bytes_per_node` bytes together.
    pub(crate) fn new(per_node: usize, frame_bytes_per_node: usize) -> Arc<Self> {
        Arc::new(Self {
            per_node: per_node.max(1),
            frame_bytes_per_node,
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits `conn`, served for `node`, until the returned guard is
    /// dropped: into the slot of the node's oldest connection if the node
    /// is at its cap, else into a free slot of `slots`, if there is one.
    pub(crate) fn admit(
        self: &Arc<Self>,
        node: &str,
        conn: &quinn::Connection,
        slots: &Arc<Semaphore>,
    ) -> Result<Admitted, AtLimit> {
        let mut s = self.lock();
        let id = s.next;
        let n = s.nodes.entry(node.to_owned()).or_insert_with(|| Node {
            conns: BTreeMap::new(),
            frame_bytes: Arc::new(Semaphore::new(self.frame_bytes_per_node)),
        });
        let frame_bytes = n.frame_bytes.clone();
        let conns = &mut n.conns;
        let (slot, replaced) = if conns.len() >= self.per_node {
            let (_, oldest) = conns
                .pop_first()
                .expect("a node at its cap has connections");
            (oldest.slot, Some(oldest.conn))
        } else {
            match slots.clone().try_acquire_owned() {
                Ok(slot) => (slot, None),
                Err(_) => {
                    if conns.is_empty() {
                        s.nodes.remove(node);
                    }
                    return Err(AtLimit);
                }
            }
        };
        conns.insert(
            id,
            Entry {
                conn: conn.clone(),
                slot,
            },
        );
        s.next += 1;
        let registered = Registered {
            registry: self.clone(),
            node: node.to_owned(),
            id,
            frame_bytes,
        };
        Ok(match replaced {
            Some(old) => Admitted::Replacing(registered, old),
            None => Admitted::Free(registered),
        })
    }

    /// Every connection being served, with its node.
    pub(crate) fn all(&self) -> Vec<(String, quinn::Connection)> {
        self.lock()
            .nodes
            .iter()
            .flat_map(|(node, n)| n.conns.values().map(|e| (node.clone(), e.conn.clone())))
            .collect()
    }
}
