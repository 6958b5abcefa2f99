//! `pending` to current: verifying the new pair, promoting it, or (after repeated failures)
//! discarding it.

use super::names::later;
use super::slot::{SlotRun, ignore_not_found};
use crate::crash;
use crate::error::{Error, ErrorKind, Result};
use crate::record::{Draining, LastResult, OpKind, Operation, Phase, SlotRecord, StoredCredential};

impl<'a> SlotRun<'a> {
    /// `pending`: a token exchange with the new pair (retried for propagation delay), then
    /// promotion: pending becomes current, the old current starts its grace. Where the backend's
    /// promotion is more than one write, the `promoting` phase is recorded first; resuming it
    /// promotes without verifying again (consumers may read the pair already).
    pub(super) async fn verify_and_promote(&mut self) -> Result<()> {
        let entry = self.provider()?;
        let tenant = self.tenant()?;
        let op = self.op()?;
        let mut pending = self
            .record()?
            .pending
            .clone()
            .ok_or_else(|| Error::internal("pending phase without a pending credential"))?;
        if op.phase == Phase::Promoting {
            self.actions.push(format!(
                "g{} was verified; finishing its promotion",
                op.generation
            ));
            return self.promote(op, pending).await;
        }
        // `verify_attempts` token exchanges `verify_delay` apart: a new pair may take a while
        // to work on the platform (Unauthorized at first). A temporary error the retry layer
        // gave up on (a 5xx storm) ends the wait: its retries are spent already.
        let attempts = self.settings().verify_attempts.max(1);
        let mut last_err = None;
        for attempt in 1..=attempts {
            match entry.provider.verify(&tenant, &pending.pair()).await {
                Ok(()) => {
                    last_err = None;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Unauthorized || e.should_retry() => {
                    last_err = Some(e);
                    if attempt < attempts {
                        tokio::time::sleep(self.settings().verify_delay).await;
                        self.keep_lease().await?;
                    }
                }
                Err(e) => {
                    last_err = Some(e);
                    break;
                }
            }
        }
        if let Some(err) = last_err {
            return self.verification_failed(op, pending, err).await;
        }
        crash::point("after-verify");
        pending.verified_at = Some(self.now());
        if !self.backend.capabilities().atomic_promotion {
            self.record_promoting(&pending).await?;
        }
        self.promote(op, pending).await
    }

    /// Records that `pending` is verified and its promotion begins, before the promotion's first
    /// consumer-visible write (backends whose promotion is not one atomic write).
    pub(super) async fn record_promoting(&mut self, pending: &StoredCredential) -> Result<()> {
        let mut rec = self.record()?.clone();
        rec.op.as_mut().expect("op checked").phase = Phase::Promoting;
        rec.pending = Some(pending.clone());
        self.save(rec).await?;
        crash::point("after-promoting-recorded");
        Ok(())
    }

    /// The promotion write: `pending` (verified) becomes current.
    pub(super) async fn promote(&mut self, op: Operation, pending: StoredCredential) -> Result<()> {
        let entry = self.provider()?;
        let now = self.now();
        let mut rec = self.record()?.clone();
        let mut promoted = pending;
        promoted.verified_at.get_or_insert(now);
        if let Some(old) = rec.current.take()
            && op.kind != OpKind::RotateInPlace
        {
            let grace = self
                .target
                .config
                .as_ref()
                .map(|c| c.grace)
                .unwrap_or_default();
            rec.draining.push(Draining {
                credential: old,
                delete_after: later(now, grace),
                hold: None,
            });
        }
        let fingerprint = promoted.secret.fingerprint();
        let pair = promoted.pair();
        rec.current = Some(promoted);
        rec.pending = None;
        rec.op = None;
        rec.last = Some(LastResult {
            at: now,
            ok: true,
            message: format!("g{} verified and promoted", op.generation),
        });
        self.release_if_done(&mut rec);
        self.save(rec).await?;
        crash::point("after-promote");
        if entry.bootstrap_slot.as_deref() == Some(self.slot()) {
            entry.bootstrap.replace(pair);
            self.actions.push("switched bootstrap".into());
        }
        tracing::info!(
            slot = self.slot(),
            generation = op.generation,
            fingerprint,
            "promoted"
        );
        self.actions.push(format!("promoted g{}", op.generation));
        Ok(())
    }

    /// A pending pair that does not work: counted across runs, and after `max_verify_failures`
    /// runs discarded (its client deleted; the next run issues a new generation). In-place
    /// pendings are never discarded: the old secret is already dead, the pending one is all we have.
    pub(super) async fn verification_failed(
        &mut self,
        op: Operation,
        pending: StoredCredential,
        err: Error,
    ) -> Result<()> {
        let mut rec = self.record()?.clone();
        let now = self.now();
        if err.is_temporary() {
            // No verdict at all (5xx, 429, timeout, refused connection): not counted.
            let msg = format!(
                "g{} could not be verified (a temporary error, not counted as a failure): {err}",
                op.generation
            );
            // Its wait stays with it: a spent hourly budget defers the slot (slot.rs).
            let wait = err.retry_after();
            return self
                .save_failure(rec, now, err.kind(), msg)
                .await
                .map_err(|e| e.with_retry_after(wait));
        }
        let failures = op.verify_failures + 1;
        let max = self.settings().max_verify_failures;
        if failures >= max && op.kind != OpKind::RotateInPlace {
            match self.consumers_read(&rec, &pending).await {
                Ok(None) => {}
                Ok(Some(backend)) => {
                    // A promotion cut short (by a rekey before the `promoting` phase, or a
                    // store that refused the state write): consumers read this pair, so it
                    // only goes forward.
                    self.actions.push(format!(
                        "g{} is what consumers of backend {backend} read: promoting it, not discarding it",
                        op.generation
                    ));
                    tracing::warn!(slot = self.slot(), generation = op.generation, backend, error = %err, "consumers read a pair that failed verification; promoting it, never discarding it");
                    if !self.backend.capabilities().atomic_promotion {
                        self.record_promoting(&pending).await?;
                    }
                    return self.promote(op, pending).await;
                }
                Err(e) => {
                    rec.op.as_mut().expect("op checked").verify_failures = failures;
                    let msg = format!(
                        "g{} failed verification in {failures} runs but is not discarded: cannot tell whether consumers read it ({e}): {err}",
                        op.generation
                    );
                    return self.save_failure(rec, now, err.kind(), msg).await;
                }
            }
            let entry = self.provider()?;
            self.fence("before-provider-delete").await?;
            ignore_not_found(
                entry
                    .provider
                    .delete_client(&rec.tenant, &pending.object_id)
                    .await,
            )?;
            self.deleted.push(pending.client_id.clone());
            rec.pending = None;
            rec.op = None;
            self.actions.push(format!("discarded g{}", op.generation));
            let msg = format!(
                "g{} failed verification in {failures} runs and was discarded: {err}",
                op.generation
            );
            return self.save_failure(rec, now, err.kind(), msg).await;
        }
        rec.op.as_mut().expect("op checked").verify_failures = failures;
        let msg = format!(
            "g{} does not work yet ({failures}/{max}): {err}",
            op.generation
        );
        self.save_failure(rec, now, err.kind(), msg).await
    }

    /// Whether consumers of the primary or of a mirror read `pair` now: `Ok(Some(backend))`
    /// when one shows it, `Err` when a backend cannot be asked (then nobody can tell).
    pub(super) async fn consumers_read(
        &self,
        rec: &SlotRecord,
        pair: &StoredCredential,
    ) -> Result<Option<String>> {
        let pair = pair.pair();
        let shows =
            |view: Option<crate::backend::ConsumerView>| view.is_some_and(|v| v.pair == pair);
        if shows(self.backend.consumer_view(self.slot(), rec).await?) {
            return Ok(Some(self.target.backend.clone()));
        }
        for name in self.target.config.iter().flat_map(|c| c.mirrors.iter()) {
            let mirror = self.engine.backends[name].as_ref();
            let Some(copy) = mirror.read(self.slot()).await? else {
                continue;
            };
            if shows(mirror.consumer_view(self.slot(), &copy.record).await?) {
                return Ok(Some(name.clone()));
            }
        }
        Ok(None)
    }
}
