//! Issuing the new secret: `creating` (a new client, under the name the operation recorded,
//! looked up rather than created twice) and `rotating` (a new secret for the current client).

use super::names::legacy_managed_name;
use super::slot::{SlotRun, ignore_not_found};
use crate::crash;
use crate::error::{Error, ErrorKind, Result};
use crate::provider::{ClientSpec, IssuedClient, Provider};
use crate::record::{Operation, Phase, StoredCredential};

impl<'a> SlotRun<'a> {
    /// `creating`: makes sure exactly one client with the name the operation recorded exists
    /// and we hold a secret for it, then stores it as pending.
    pub(super) async fn issue_new_client(&mut self, op: &Operation, fresh: bool) -> Result<()> {
        let cfg = self.config()?;
        let entry = self.provider()?;
        let provider = entry.provider.as_ref();
        let tenant = cfg.tenant.clone();
        let (name, named_now) = match &op.client_name {
            Some(name) => (name.clone(), false),
            None => (self.name_legacy_operation(op).await?, true),
        };
        let spec = ClientSpec {
            name: name.clone(),
            roles: cfg.roles.clone(),
        };
        // A fresh operation has made no provider call yet; a resumed one may have, under the
        // name it recorded (one named only now has made none under that name).
        let mut look_up = !fresh && !named_now;
        let mut attempts = 0;
        let issued: IssuedClient = loop {
            attempts += 1;
            self.fence("before-provider-create").await?;
            let result = if look_up {
                self.reclaim_or_create(provider, &tenant, &spec).await
            } else {
                provider.create_client(&tenant, &spec).await
            };
            match result {
                Ok(c) => break c,
                // The call may have created the client even though we got no usable answer.
                // Looking it up is not a resend; but an error the retry layer already gave up
                // on (a storm) is not tried again.
                Err(e)
                    if attempts < 3
                        && (e.maybe_applied()
                            && (e.should_retry() || e.kind() == ErrorKind::Malformed)) =>
                {
                    tracing::warn!(slot = self.slot(), error = %e, "create may have gone through; looking the client up");
                    look_up = true;
                }
                Err(e) => return Err(e.context(format!("creating client {name}"))),
            }
        };
        crash::point("after-provider-create");
        let mut rec = self.record()?.clone();
        rec.pending = Some(StoredCredential {
            generation: op.generation,
            client_id: issued.client_id,
            object_id: issued.object_id,
            name,
            secret: issued.secret,
            created_at: self.now(),
            verified_at: None,
            owned: true,
        });
        rec.op.as_mut().expect("op checked").phase = Phase::Pending;
        self.save(rec).await?;
        crash::point("after-pending-written");
        self.actions.push(format!("created g{}", op.generation));
        Ok(())
    }

    /// An operation recorded by a version of rekey before client names were recorded: its
    /// client, if the lost call made one, carries the legacy name `<prefix><slot>-g<gen>`, which
    /// proves nothing (another deployment's client may have it). Records a proper name for the
    /// operation before any call, and reports the legacy name as a possible orphan: never
    /// adopted, never deleted (docs/src/protocol.md, "Ownership of clients", upgrading).
    pub(super) async fn name_legacy_operation(&mut self, op: &Operation) -> Result<String> {
        let name = self.managed_name(op.generation, &op.id);
        let mut rec = self.record()?.clone();
        rec.op.as_mut().expect("op checked").client_name = Some(name.clone());
        self.save(rec).await?;
        let legacy = legacy_managed_name(&self.settings().name_prefix, self.slot(), op.generation);
        tracing::warn!(
            slot = self.slot(),
            legacy_name = %legacy,
            "an operation recorded by an earlier rekey version names no client; issuing a new one, and leaving any client named {legacy} alone (possible orphan)"
        );
        self.actions.push(format!(
            "possible orphan {legacy} left alone (an earlier rekey version may have made it; delete it by hand if no one uses it)"
        ));
        Ok(name)
    }

    /// Resume rule for `creating`: if a client with the exact name this operation recorded
    /// exists (an earlier run died, or the answer to createClient was lost), take it over with a
    /// fresh secret (Taegis) or delete and re-create it (no in-place rotation); duplicates of
    /// that exact name are deleted. Never orphaned, and never another deployment's client: no
    /// other operation records that name.
    pub(super) async fn reclaim_or_create(
        &self,
        provider: &dyn Provider,
        tenant: &str,
        spec: &ClientSpec,
    ) -> Result<IssuedClient> {
        let found: Vec<_> = provider
            .find_clients(tenant, &spec.name)
            .await?
            .into_iter()
            .filter(|c| c.name == spec.name)
            .collect();
        let Some((keep, extra)) = found.split_first() else {
            return provider.create_client(tenant, spec).await;
        };
        for dup in extra {
            ignore_not_found(provider.delete_client(tenant, &dup.object_id).await)?;
        }
        if provider.capabilities().in_place_rotation {
            provider.rotate_secret(tenant, &keep.object_id, None).await
        } else {
            ignore_not_found(provider.delete_client(tenant, &keep.object_id).await)?;
            provider.create_client(tenant, spec).await
        }
    }

    /// `rotating` (in-place): gives the current client a new secret and stores it as pending.
    pub(super) async fn rotate_in_place(&mut self, op: &Operation) -> Result<()> {
        let entry = self.provider()?;
        let provider = entry.provider.as_ref();
        let tenant = self.tenant()?;
        let rec = self.record()?.clone();
        let current = rec
            .current
            .clone()
            .ok_or_else(|| Error::internal("in-place rotation without a current credential"))?;
        let mut rec = rec;
        self.warn_in_place_use(&current, op.generation).await;
        if let Some(pending) = rec.pending.clone() {
            // Caller-chosen secret, stored before the call: maybe the call already went through.
            if provider.verify(&tenant, &pending.pair()).await.is_err() {
                self.fence("before-provider-rotate").await?;
                provider
                    .rotate_secret(&tenant, &current.object_id, Some(&pending.secret))
                    .await
                    .map_err(|e| e.context("rotating the secret in place"))?;
            }
        } else {
            let mut attempts = 0;
            let issued = loop {
                attempts += 1;
                self.fence("before-provider-rotate").await?;
                match provider
                    .rotate_secret(&tenant, &current.object_id, None)
                    .await
                {
                    Ok(c) => break c,
                    // A lost answer: the secret we never saw is useless; a new rotation heals it.
                    Err(e)
                        if attempts < 3
                            && e.maybe_applied()
                            && (e.should_retry() || e.kind() == ErrorKind::Malformed) =>
                    {
                        tracing::warn!(slot = self.slot(), error = %e, "rotation answer lost; rotating again");
                    }
                    Err(e) => return Err(e.context("rotating the secret in place")),
                }
            };
            rec.pending = Some(StoredCredential {
                generation: op.generation,
                secret: issued.secret,
                created_at: self.now(),
                verified_at: None,
                ..current
            });
            if let Some(slot) = &entry.bootstrap_slot
                && slot == self.slot()
            {
                // Our own credential's old secret is dead now; use the new one at once.
                entry
                    .bootstrap
                    .replace(rec.pending.as_ref().expect("just set").pair());
            }
        }
        crash::point("after-provider-rotate");
        rec.op.as_mut().expect("op checked").phase = Phase::Pending;
        self.save(rec).await?;
        crash::point("after-pending-written");
        self.actions
            .push(format!("rotated g{} in place", op.generation));
        Ok(())
    }
}
