//! Retiring a slot: its proven clients deleted at the provider after its grace, then its entry.

use super::names::later;
use super::slot::{SlotRun, ignore_not_found};
use crate::crash;
use crate::error::{Error, Result};
use crate::record::{Retiring, StoredCredential};
use std::collections::BTreeSet;

impl<'a> SlotRun<'a> {
    /// Retires the slot: marks it (grace starts if it was in use), then deletes the clients it
    /// can prove are its own at the provider and finally its backend entry. A slot that left
    /// the inventory (prune) retires with `[defaults] grace`.
    pub(super) async fn retire(&mut self) -> Result<()> {
        let now = self.now();
        let mut rec = self.record()?.clone();
        if rec.retiring.is_none() {
            let grace = self
                .target
                .config
                .as_ref()
                .map(|c| c.grace)
                .unwrap_or(self.engine.inventory.default_grace);
            let in_use = rec.current.is_some() && !grace.is_zero();
            let delete_after = if in_use { later(now, grace) } else { now };
            rec.retiring = Some(Retiring {
                since: now,
                delete_after,
            });
            self.save(rec.clone()).await?;
            self.actions.push("retiring".into());
            if delete_after > now {
                return Ok(());
            }
        }
        let entry = self.provider()?;
        let tenant = rec.tenant.clone();
        let mut doomed: Vec<StoredCredential> = Vec::new();
        doomed.extend(rec.current.iter().cloned());
        doomed.extend(rec.pending.iter().cloned());
        doomed.extend(rec.draining.iter().map(|d| d.credential.clone()));
        // Only proven clients: those the record names (and rekey made), and the client the
        // operation in flight recorded by its exact name before calling the provider (a crash
        // or a lost answer between createClient and the write). Never a sweep by name prefix:
        // clients named like ours may belong to another deployment or to someone else.
        let mut proven: Vec<(String, String, u64)> = doomed
            .iter()
            .filter(|c| c.owned)
            .map(|c| (c.object_id.clone(), c.client_id.clone(), c.generation))
            .collect();
        if let Some(op) = &rec.op
            && let Some(name) = &op.client_name
        {
            for c in entry.provider.find_clients(&tenant, name).await? {
                if &c.name == name {
                    proven.push((c.object_id, c.client_id, op.generation));
                }
            }
        }
        let mut seen = BTreeSet::new();
        let mut deleted = Vec::new();
        let mut retired = Vec::new();
        for (object_id, client_id, generation) in proven {
            if !seen.insert(object_id.clone()) {
                continue;
            }
            self.fence("before-provider-delete").await?;
            ignore_not_found(entry.provider.delete_client(&tenant, &object_id).await)
                .map_err(|e| e.context(format!("deleting client {client_id} (g{generation})")))?;
            tracing::info!(slot = self.slot(), client_id = %client_id, generation, "deleted client");
            self.actions
                .push(format!("deleted client {client_id} (g{generation})"));
            // A `retired` notice carries the fingerprint when the record held the credential
            // (not for a client only the operation in flight named).
            let fingerprint = doomed
                .iter()
                .find(|c| c.client_id == client_id)
                .map(|c| c.secret.fingerprint())
                .unwrap_or_default();
            retired.push(crate::observe::Retired {
                client_id: client_id.clone(),
                generation,
                fingerprint,
            });
            deleted.push(client_id);
        }
        crash::point("after-retire-delete");
        let version = self
            .stored
            .as_ref()
            .map(|v| v.version)
            .ok_or_else(|| Error::internal("no record"))?;
        self.backend
            .delete(self.slot(), version)
            .await
            .map_err(|e| e.context("deleting the slot entry"))?;
        if let Some(mut e) = crate::observe::StateChanged::between(
            self.engine.run_id,
            self.now(),
            self.slot(),
            self.stored.as_ref().map(|v| &v.record),
            None,
        ) {
            e.deleted_client_ids = deleted.clone();
            e.retired = retired;
            self.engine.events.state_changed(&e);
        }
        self.stored = None;
        self.actions.push(format!(
            "retired ({} client{} deleted)",
            deleted.len(),
            if deleted.len() == 1 { "" } else { "s" }
        ));
        Ok(())
    }
}
