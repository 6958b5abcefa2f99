//! The fence: claiming the slot's lease, proving it before every provider mutation, and
//! keeping it through long steps (docs/src/protocol.md, "Leases and fencing"). Who may hold a lease: lease.rs.

use super::names::{later, short_id};
use super::slot::SlotRun;
use crate::crash;
use crate::error::{Error, ErrorKind, Result};
use crate::record::Lease;

/// A provider mutation needs a proof of the lease younger than `lease_ttl / FENCE_FRACTION`;
/// an older one is renewed first (docs/src/protocol.md, "Leases and fencing").
const FENCE_FRACTION: u32 = 3;

impl<'a> SlotRun<'a> {
    pub(super) fn my_lease(&self) -> Lease {
        Lease {
            run_id: self.engine.run_id,
            host: self.engine.host.clone(),
            pid: self.engine.pid,
            expires_at: later(self.now(), self.settings().lease_ttl),
        }
    }

    /// The fence before every provider mutation (create, rotate, delete): proves this run still
    /// holds the slot's lease, or stops the slot without calling the provider. A proof younger
    /// than a third of `lease_ttl` (by the larger of the monotonic and the wall-clock time since
    /// it, as the monotonic clock stops while the host is suspended) is enough; an older one is
    /// renewed with a compare-and-set write, which fails if another run took the slot.
    /// docs/src/protocol.md, "Leases and fencing", explains why this is safe across hosts whose clocks disagree.
    pub(super) async fn fence(&mut self, point: &'static str) -> Result<()> {
        crash::stop_point(point);
        self.keep_lease().await
    }

    /// Renews the lease if its last proof is older than a third of `lease_ttl` (long steps call
    /// it as they go, so a healthy slow run never loses the slot).
    pub(super) async fn keep_lease(&mut self) -> Result<()> {
        let ours = self
            .stored
            .as_ref()
            .and_then(|v| v.record.lease.as_ref())
            .is_some_and(|l| l.run_id == self.engine.run_id);
        if ours {
            if let Some((mono, wall)) = self.proven {
                let wall_elapsed = (self.now() - wall).to_std().unwrap_or_default();
                let elapsed = mono.elapsed().max(wall_elapsed);
                if elapsed < self.settings().lease_ttl / FENCE_FRACTION {
                    return Ok(());
                }
            }
            let rec = self.record()?.clone();
            match self.save(rec).await {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    // Another run wrote the record: see who holds it now (for the report).
                    if let Err(e) = self.load().await {
                        tracing::warn!(slot = self.slot(), error = %e, "could not re-read the record");
                    }
                }
                Err(e) => return Err(e.context("renewing the slot's lease")),
            }
        }
        self.fenced_out = true;
        let holder = self
            .stored
            .as_ref()
            .and_then(|v| v.record.lease.as_ref())
            .filter(|l| l.run_id != self.engine.run_id)
            .map(|l| format!(" (now held by run {} on {})", short_id(&l.run_id), l.host))
            .unwrap_or_default();
        Err(Error::new(
            ErrorKind::Locked,
            format!(
                "this run lost the slot's lease{holder}, as when it is paused longer than lease_ttl; stopped before calling the provider"
            ),
        ))
    }

    /// Claims the slot for this run. False when another run won the race (record re-read).
    pub(super) async fn acquire(&mut self) -> Result<bool> {
        let Some(v) = &self.stored else {
            // No entry yet: the write that creates it claims it (expected version "none").
            return Ok(true);
        };
        if v.record
            .lease
            .as_ref()
            .is_some_and(|l| l.run_id == self.engine.run_id)
        {
            return Ok(true);
        }
        let mut rec = v.record.clone();
        rec.lease = Some(self.my_lease());
        match self.save(rec).await {
            Ok(()) => {
                crash::point("after-lease");
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::Conflict => {
                self.load().await?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}
