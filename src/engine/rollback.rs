//! `rekey rollback`: the previous credential made current again while it is still alive.

use super::names::later;
use super::slot::SlotRun;
use super::{Engine, SlotOutcome};
use crate::config::Strategy;
use crate::error::{Error, ErrorKind, Result};
use crate::record::{Draining, LastResult};
use std::time::Duration;

impl Engine {
    /// `rekey rollback`: makes the slot's previous credential current again while it is still
    /// alive (inside its grace period) and takes it off the deletion list; the credential it
    /// replaces drains for the slot's grace period. Refused when there is no live previous
    /// credential, an operation is in flight, or the previous pair no longer gets a token.
    pub async fn rollback(&self, slot: &str, hold: Duration) -> Result<SlotOutcome> {
        let target = self
            .targets()
            .await?
            .into_iter()
            .find(|t| t.name == slot && t.config.is_some())
            .ok_or_else(|| Error::config(format!("slot {slot} is not in the inventory")))?;
        let mut run = SlotRun::new(self, &target);
        run.reason = "rollback".into();
        let result = run.rollback(hold).await;
        let holding = run
            .stored
            .as_ref()
            .and_then(|v| v.record.lease.as_ref())
            .is_some_and(|l| l.run_id == self.run_id);
        match result {
            // Refused before anything changed: the refusal is the command's error.
            Err(e) if run.actions.is_empty() && !holding => Err(e),
            other => Ok(run.finish(other).await),
        }
    }
}

impl<'a> SlotRun<'a> {
    pub(super) async fn rollback(&mut self, hold: Duration) -> Result<()> {
        self.load().await?;
        let now = self.now();
        let rec = self
            .stored
            .as_ref()
            .map(|v| v.record.clone())
            .ok_or_else(|| {
                Error::conflict(format!("slot {} has no credential yet", self.slot()))
            })?;
        if !rec.is_managed() || rec.slot != self.slot() {
            return Err(Error::conflict(
                "the backend entry is not managed by rekey for this slot; leaving it alone",
            ));
        }
        if let Some(op) = &rec.op {
            return Err(Error::conflict(format!(
                "slot {}: a {:?} operation for g{} is in flight; run `rekey apply --only {}` to finish it first",
                self.slot(),
                op.kind,
                op.generation,
                self.slot()
            )));
        }
        let current = rec.current.clone().ok_or_else(|| {
            Error::conflict(format!("slot {} has no current credential", self.slot()))
        })?;
        let previous = rec
            .draining
            .iter()
            .filter(|d| d.delete_after > now && d.credential.generation < current.generation)
            .max_by_key(|d| d.credential.generation)
            .cloned();
        let Some(previous) = previous else {
            let why = match self.config()?.strategy {
                Strategy::InPlace => "in-place rotation keeps no previous secret".to_string(),
                Strategy::Alternate if current.generation <= 1 => {
                    "it has had only one credential".to_string()
                }
                Strategy::Alternate => format!(
                    "the previous client (g{}) is gone: it was deleted when its grace period ended",
                    current.generation - 1
                ),
            };
            return Err(Error::conflict(format!(
                "slot {}: cannot roll back from g{}: {why}. Rotate instead: `rekey apply --only {} --force`",
                self.slot(),
                current.generation,
                self.slot()
            )));
        };
        let entry = self.provider()?;
        let tenant = self.tenant()?;
        entry
            .provider
            .verify(&tenant, &previous.credential.pair())
            .await
            .map_err(|e| {
                Error::conflict(format!(
                    "slot {}: the previous credential g{} ({}) no longer gets a token, so it cannot be made current: {e}",
                    self.slot(),
                    previous.credential.generation,
                    previous.credential.client_id
                ))
            })?;
        if !self.acquire().await? {
            return Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "slot {} is held by another run; try again later",
                    self.slot()
                ),
            ));
        }
        let mut rec = self.record()?.clone();
        let drains_until = later(now, self.config()?.grace);
        rec.draining
            .retain(|d| d.credential.generation != previous.credential.generation);
        rec.draining.push(Draining {
            credential: current.clone(),
            delete_after: drains_until,
            hold: None,
        });
        rec.current = Some(previous.credential.clone());
        rec.hold_until = Some(later(now, hold));
        rec.last = Some(LastResult {
            at: now,
            ok: true,
            message: format!(
                "rolled back to g{} (g{} drains until {})",
                previous.credential.generation,
                current.generation,
                drains_until.to_rfc3339()
            ),
        });
        self.save(rec).await?;
        if entry.bootstrap_slot.as_deref() == Some(self.slot()) {
            entry.bootstrap.replace(previous.credential.pair());
        }
        self.actions.push(format!(
            "rolled back to g{}",
            previous.credential.generation
        ));
        self.actions.push(format!(
            "g{} drains for its grace period",
            current.generation
        ));
        self.sync_mirrors().await
    }
}
