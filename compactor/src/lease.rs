//! A unit's lease (or a day's, for its 1-hour rollups): which run may work
//! on it. Epochs only grow, each a
//! create-only record (docs/compaction.md, "Leases").

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::commit::FORMAT;
use crate::keys::{Keys, lease_epoch};
use crate::store::{StoreError, create, get_json, list_all};

/// A lease record, `lease-EEEEEEEE.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Always [`FORMAT`].
    pub format: u32,
    /// Who holds it (host, process, run).
    pub owner: String,
    /// Epoch; the record's key names it too.
    pub epoch: u64,
    /// Unix ms after which another run may take the unit over.
    pub expires_at_ms: i64,
    /// Set by the holder when it is done.
    pub released: bool,
}

/// A held lease on a unit.
///
/// Epochs only grow: acquiring, renewing and releasing each create the
/// next epoch's record with a create-only write, so of two runs racing for
/// the same epoch exactly one wins, and a run that lost its lease finds out
/// the next time it renews (which it does before committing).
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    dir: Path,
    owner: String,
    lease_ms: i64,
    /// The epoch this run holds.
    pub epoch: u64,
}

/// Result of trying to take a unit.
#[derive(Debug)]
pub enum Acquired {
    /// This run holds the unit.
    Held(Lease),
    /// Another run holds it.
    Busy {
        /// The holder.
        owner: String,
        /// When its lease expires, Unix ms.
        expires_at_ms: i64,
    },
}

impl Lease {
    /// Takes what the lease folder `dir` guards (`Keys::lease_dir` of a
    /// unit, `Keys::day_lease_dir` of a day) unless another run holds an
    /// unexpired lease on it.
    pub async fn acquire(
        store: &Arc<dyn ObjectStore>,
        dir: Path,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Acquired, StoreError> {
        let mut epochs: Vec<(u64, Path)> = list_all(store, &dir)
            .await?
            .into_iter()
            .filter_map(|m| lease_epoch(&m.location).map(|e| (e, m.location)))
            .collect();
        epochs.sort();
        let current = match epochs.last() {
            None => 0,
            Some((e, key)) => {
                let rec: LeaseRecord = get_json(store, key, "lease record").await?;
                if !rec.released && rec.expires_at_ms > now_ms {
                    return Ok(Acquired::Busy {
                        owner: rec.owner,
                        expires_at_ms: rec.expires_at_ms,
                    });
                }
                *e
            }
        };
        let mut lease = Self {
            store: Arc::clone(store),
            dir,
            owner: owner.to_owned(),
            lease_ms,
            epoch: current,
        };
        if !lease.advance(now_ms + lease_ms, false).await? {
            return Ok(Acquired::Busy {
                owner: "another run (it took the lease just now)".into(),
                expires_at_ms: now_ms + lease_ms,
            });
        }
        // Housekeeping: records two or more epochs old decide nothing.
        for (e, key) in &epochs {
            if e + 1 < lease.epoch {
                let _ = store.delete(key).await;
            }
        }
        Ok(Acquired::Held(lease))
    }

    /// Creates the next epoch's record; `Ok(false)`: it exists already.
    async fn advance(&mut self, expires_at_ms: i64, released: bool) -> Result<bool, StoreError> {
        let next = self.epoch + 1;
        let rec = LeaseRecord {
            format: FORMAT,
            owner: self.owner.clone(),
            epoch: next,
            expires_at_ms,
            released,
        };
        let body = serde_json::to_vec(&rec).unwrap_or_default();
        let ok = create(&self.store, &Keys::lease(&self.dir, next), body).await?;
        if ok {
            self.epoch = next;
        }
        Ok(ok)
    }

    /// Extends the lease to `now + lease`. `Ok(false)`: it was lost (it
    /// expired and another run took the unit); the caller must not commit.
    pub async fn renew(&mut self, now_ms: i64) -> Result<bool, StoreError> {
        self.advance(now_ms + self.lease_ms, false).await
    }

    /// Gives the unit up.
    pub async fn release(mut self) -> Result<(), StoreError> {
        self.advance(0, true).await.map(|_| ())
    }
}
