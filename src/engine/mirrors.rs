//! Mirrors: copies of the primary's record in other backends, written after the primary
//! settles, never read for decisions.

use super::slot::SlotRun;
use crate::backend::Backend;
use crate::crash;
use crate::error::{Error, Result};

impl<'a> SlotRun<'a> {
    /// Copies the primary's record (without the lease) to every mirror that differs, or removes
    /// the mirror's entry when the primary has none. The primary is the only source of truth:
    /// mirrors are written, never read for decisions. A failed mirror fails the slot (no silent
    /// split brain); the next run finds the difference and writes again.
    pub(super) async fn sync_mirrors(&mut self) -> Result<()> {
        let Some(cfg) = self.target.config.as_deref() else {
            return Ok(());
        };
        let mut failures = Vec::new();
        for name in &cfg.mirrors {
            let mirror = self.engine.backends[name].as_ref();
            match self.sync_mirror(mirror).await {
                Ok(Some(done)) => self.actions.push(done),
                Ok(None) => {}
                Err(e) => failures.push(format!("mirror {name}: {}", crate::error::chain(&e))),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::unavailable(failures.join("; ")))
        }
    }

    pub(super) async fn sync_mirror(&self, mirror: &dyn Backend) -> Result<Option<String>> {
        let existing = mirror.read(self.slot()).await?;
        let primary = self.stored.as_ref().map(|v| {
            let mut copy = v.record.clone();
            copy.lease = None;
            copy.mirror_of = Some(self.target.backend.clone());
            copy
        });
        match (primary, existing) {
            (None, None) => Ok(None),
            (None, Some(old)) => {
                mirror.delete(self.slot(), old.version).await?;
                Ok(Some(format!("removed from mirror {}", mirror.name())))
            }
            (Some(copy), Some(old)) if old.record == copy => Ok(None),
            (Some(copy), old) => {
                mirror
                    .write(self.slot(), &copy, old.map(|v| v.version))
                    .await?;
                // Consumers of this mirror read the new record; later mirrors do not yet.
                crash::point("after-mirror-write");
                Ok(Some(format!("mirrored to {}", mirror.name())))
            }
        }
    }
}
