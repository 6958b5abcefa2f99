//! The slot protocol, top to bottom: the work on one slot within one run (docs/src/protocol.md). Every state change is a compare-and-set write of the slot's
//! record *before* the provider call it prepares, so a crash anywhere leaves a record the next
//! run resumes from. The steps, in the order a rotation takes them, with their crash points:
//!
//! 0. `Engine::reconcile`: the slot's run, its panics caught (the slot fails, the run goes on).
//! 1. `load`, then `settle`: decide (`plan::decide`), claim the slot (`acquire`, fence.rs;
//!    `after-lease`), act, until nothing is left.
//! 2. `start`: record the operation (and, in place with a chosen secret, the pending secret)
//!    in the write that claims the slot (`after-op-recorded`).
//! 3. `advance`: carry the operation through its phases:
//!    - `creating`: issue the client (issue.rs; `before-provider-create`,
//!      `after-provider-create`, `after-pending-written`);
//!    - `rotating`: give it a new secret in place (issue.rs; `before-provider-rotate`,
//!      `after-provider-rotate`, `after-pending-written`);
//!    - `pending`: verify the new pair (verify.rs; `after-verify`), record `promoting` where
//!      promotion is more than one write (`after-promoting-recorded`), promote
//!      (`after-promote`).
//! 4. `delete_old` (drain.rs): delete previous generations whose grace is over, unless consumers
//!    still use them
//!    (`before-provider-delete`, `after-old-deleted`).
//! 5. mirrors (mirrors.rs; `after-mirror-write`), then `finish`: release the lease, report.
//!
//! Retiring (retire.rs) and rolling back (rollback.rs) are steps of their own. Every provider
//! mutation passes the fence first (fence.rs).

use super::lease_holder_alive;
use super::names::{managed_name, short_id};
use super::{Engine, OutcomeKind, ProviderEntry, SlotOutcome, Target, describe};
use crate::backend::Backend;
use crate::config::{SlotConfig, Strategy};
use crate::crash;
use crate::error::{Error, ErrorKind, Result};
use crate::plan::{self, Step};
use crate::record::{
    LastResult, Lease, OpKind, Operation, Phase, SlotRecord, StoredCredential, Versioned,
};
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use std::time::Duration;
use uuid::Uuid;

/// Length of secrets rekey chooses itself (in-place rotation with `in_place_secret = "caller"`).
const CHOSEN_SECRET_LEN: usize = 64;

/// Steps one slot may take in one run (resume, delete-old, rotate, ... ); a guard against loops.
const MAX_STEPS: usize = 8;

impl Engine {
    /// Moves one slot as far as it can go in this run. A panic in the slot's work fails this
    /// slot only: it is caught here, so `finish` still releases the lease and reports it.
    pub async fn reconcile(&self, target: Target) -> SlotOutcome {
        use futures_util::FutureExt;
        let mut run = SlotRun::new(self, &target);
        if self.stop.load(std::sync::atomic::Ordering::SeqCst) {
            // Shutting down: not started, so nothing to finish and no lease to release.
            run.skipped = true;
            run.detail = "not started: rekey is shutting down".into();
            return run.finish(Ok(())).await;
        }
        let result = match std::panic::AssertUnwindSafe(run.drive())
            .catch_unwind()
            .await
        {
            // Stopped at a fence: another run holds the slot, as when it was locked at start.
            Ok(Err(e)) if run.fenced_out => {
                run.skipped = true;
                run.detail = e.to_string();
                Ok(())
            }
            Ok(result) => result,
            Err(panic) => {
                let what = panic_message(panic.as_ref());
                tracing::error!(slot = %target.name, panic = %what, "the work on this slot panicked; the slot fails, the run goes on");
                Err(Error::internal(format!(
                    "rekey panicked while working on this slot ({what}); the record is as the last write left it, and the next run resumes from it"
                )))
            }
        };
        run.finish(result).await
    }
}

/// The work on one slot within one run.
pub(super) struct SlotRun<'a> {
    pub(super) engine: &'a Engine,
    pub(super) target: &'a Target,
    pub(super) backend: &'a dyn Backend,
    pub(super) stored: Option<Versioned>,
    pub(super) actions: Vec<String>,
    pub(super) detail: String,
    pub(super) skipped: bool,
    /// Why, in audit lines (`rollback`); empty for ordinary reconcile steps.
    pub(super) reason: String,
    /// When this run last proved it holds the slot's lease: the moment before the last
    /// compare-and-set write that carried it succeeded (monotonic and wall clock).
    pub(super) proven: Option<(std::time::Instant, DateTime<Utc>)>,
    /// Set when a fence found the lease lost: the slot stops, no provider call is made.
    pub(super) fenced_out: bool,
    /// Client ids deleted at the provider since the last write: the audit event of the next
    /// write names them (`deleted_client_ids`).
    pub(super) deleted: Vec<String>,
    /// The previous generations among them whose drain was done: `retired` notices.
    pub(super) retired: Vec<crate::observe::Retired>,
    /// Previous generations found still in use after their grace and kept, in words.
    pub(super) held: Vec<String>,
    /// The protocol steps taken (`plan`'s names for them).
    pub(super) steps: Vec<&'static str>,
}

impl<'a> SlotRun<'a> {
    pub(super) fn new(engine: &'a Engine, target: &'a Target) -> Self {
        SlotRun {
            engine,
            target,
            backend: engine.backends[&target.backend].as_ref(),
            stored: None,
            actions: Vec::new(),
            detail: String::new(),
            skipped: false,
            reason: String::new(),
            proven: None,
            fenced_out: false,
            deleted: Vec::new(),
            retired: Vec::new(),
            held: Vec::new(),
            steps: Vec::new(),
        }
    }

    pub(super) fn slot(&self) -> &str {
        &self.target.name
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        self.engine.clock.now()
    }

    pub(super) fn settings(&self) -> &crate::config::Settings {
        &self.engine.inventory.settings
    }

    pub(super) fn record(&self) -> Result<&SlotRecord> {
        self.stored
            .as_ref()
            .map(|v| &v.record)
            .ok_or_else(|| Error::internal("no record loaded"))
    }

    pub(super) fn op(&self) -> Result<Operation> {
        self.record()?
            .op
            .clone()
            .ok_or_else(|| Error::internal("no operation in flight"))
    }

    pub(super) fn provider_name(&self) -> Result<String> {
        match (&self.target.config, &self.stored) {
            (Some(c), _) => Ok(c.provider.clone()),
            (None, Some(v)) => Ok(v.record.provider.clone()),
            (None, None) => Err(Error::internal("slot without config or record")),
        }
    }

    pub(super) fn tenant(&self) -> Result<String> {
        match (&self.target.config, &self.stored) {
            (Some(c), _) => Ok(c.tenant.clone()),
            (None, Some(v)) => Ok(v.record.tenant.clone()),
            (None, None) => Err(Error::internal("slot without config or record")),
        }
    }

    pub(super) fn provider(&self) -> Result<&'a ProviderEntry> {
        let name = self.provider_name()?;
        self.engine.providers.get(&name).ok_or_else(|| {
            Error::config(format!(
                "slot {}: provider {name} is not in the inventory any more",
                self.slot()
            ))
        })
    }

    pub(super) fn config(&self) -> Result<&'a SlotConfig> {
        self.target
            .config
            .as_deref()
            .ok_or_else(|| Error::internal("slot not in the inventory"))
    }

    /// The name of the client operation `op` of this slot creates.
    pub(super) fn managed_name(&self, generation: u64, op: &Uuid) -> String {
        let s = self.settings();
        managed_name(&s.name_prefix, &s.instance, self.slot(), generation, op)
    }

    pub(super) async fn load(&mut self) -> Result<()> {
        self.stored = self.backend.read(self.slot()).await?;
        Ok(())
    }

    /// Compare-and-set write of `record` over the version we hold, renewing our lease. Temporary
    /// backend errors are retried for a while: the record may hold the only copy of a secret.
    pub(super) async fn save(&mut self, mut record: SlotRecord) -> Result<()> {
        // Taken before the lease's expiry is computed: the proof never looks younger than it is.
        let sent = (std::time::Instant::now(), self.now());
        let holds = record
            .lease
            .as_ref()
            .is_some_and(|l| l.run_id == self.engine.run_id);
        if holds {
            record.lease = Some(self.my_lease());
        }
        let expected = self.stored.as_ref().map(|v| v.version);
        let slot = self.slot();
        let backend = self.backend;
        let warn = |e: &Error, _: u32, _: Duration| {
            tracing::warn!(slot, error = %e, "backend write failed; retrying");
        };
        let written = crate::layer::retry::run_with(
            &crate::layer::RetryPolicy::RECORD_WRITE,
            true,
            warn,
            || backend.write(slot, &record, expected),
        )
        .await;
        let version = written.map_err(|e| e.context("writing the slot record"))?;
        let before = self.stored.as_ref().map(|v| &v.record);
        if let Some(e) = crate::observe::StateChanged::between(
            self.engine.run_id,
            self.now(),
            self.slot(),
            before,
            Some(&record),
        ) {
            let mut e = e;
            e.reason = self.reason.clone();
            e.deleted_client_ids = std::mem::take(&mut self.deleted);
            e.retired = std::mem::take(&mut self.retired);
            self.engine.events.state_changed(&e);
        }
        self.stored = Some(Versioned { record, version });
        self.proven = holds.then_some(sent);
        Ok(())
    }

    /// Settles the slot on its primary backend, then brings its mirrors up to date.
    pub(super) async fn drive(&mut self) -> Result<()> {
        self.settle().await?;
        if self.skipped {
            return Ok(());
        }
        self.sync_mirrors().await
    }

    /// The reconcile loop on the primary backend: decide, claim, act, until nothing is left.
    pub(super) async fn settle(&mut self) -> Result<()> {
        self.load().await?;
        if let Some(v) = &self.stored
            && (!v.record.is_managed() || v.record.slot != self.slot())
        {
            return Err(Error::conflict(
                "the backend entry is not managed by rekey for this slot; leaving it alone",
            ));
        }
        let host = self.engine.host.clone();
        let alive = move |l: &Lease| lease_holder_alive(l, &host);
        for _ in 0..MAX_STEPS {
            let decision = plan::decide(
                self.target.config.as_deref(),
                self.stored.as_ref().map(|v| &v.record),
                self.settings().prune,
                &self.engine.context(&alive),
            );
            self.detail = decision.reason.clone();
            if decision.locked {
                self.skipped = true;
                return Ok(());
            }
            let Some(step) = decision.step else {
                return Ok(());
            };
            // A new operation claims the slot in the write that records it (`start`), so it
            // costs no separate lease write; every other step claims the slot first.
            let claims_itself = matches!(step, Step::Create | Step::Rotate { .. });
            if !claims_itself && !self.acquire().await? {
                continue;
            }
            tracing::info!(slot = self.slot(), step = step.name(), reason = %decision.reason, "step");
            self.steps.push(step.name());
            match step {
                Step::Create => self.start(OpKind::Create).await?,
                Step::Rotate {
                    strategy: Strategy::Alternate,
                } => self.start(OpKind::Rotate).await?,
                Step::Rotate {
                    strategy: Strategy::InPlace,
                } => self.start(OpKind::RotateInPlace).await?,
                Step::Resume { .. } => {
                    self.actions
                        .push(format!("resumed op {}", short_id(&self.op()?.id)));
                    self.advance().await?
                }
                Step::DeleteOld { .. } => self.delete_old().await?,
                Step::Retire => self.retire().await?,
            }
        }
        Err(Error::internal("the slot did not settle within one run"))
    }

    /// Records a new operation (before any provider call), then carries it out. The same
    /// compare-and-set write takes the slot's lease, if this run does not hold it yet: it either
    /// claims the slot and records the operation together, or changes nothing.
    pub(super) async fn start(&mut self, kind: OpKind) -> Result<()> {
        let cfg = self.config()?;
        let mut rec = match &self.stored {
            Some(v) => v.record.clone(),
            None => SlotRecord::new(self.slot(), &cfg.provider, &cfg.tenant),
        };
        let claiming = rec
            .lease
            .as_ref()
            .is_none_or(|l| l.run_id != self.engine.run_id);
        rec.lease = Some(self.my_lease());
        let generation = rec.generation + 1;
        let phase = if kind == OpKind::RotateInPlace {
            if !self.provider()?.provider.capabilities().in_place_rotation {
                return Err(Error::config(format!(
                    "strategy in-place: provider {} cannot rotate a secret in place",
                    cfg.provider
                )));
            }
            Phase::Rotating
        } else {
            Phase::Creating
        };
        rec.generation = generation;
        let id = Uuid::now_v7();
        // The exact name of the client this operation will create, recorded before the call:
        // what proves later that a client of that name is this slot's (docs/src/protocol.md, "Ownership of clients").
        let client_name =
            (kind != OpKind::RotateInPlace).then(|| self.managed_name(generation, &id));
        rec.op = Some(Operation {
            id,
            kind,
            phase,
            generation,
            started_at: self.now(),
            verify_failures: 0,
            client_name,
        });
        if kind == OpKind::RotateInPlace
            && self
                .provider()?
                .provider
                .capabilities()
                .caller_chosen_secret
        {
            // Store the secret we are about to set before setting it (docs/src/protocol.md, in place).
            let current = rec
                .current
                .clone()
                .ok_or_else(|| Error::internal("in-place rotation without a current credential"))?;
            rec.pending = Some(StoredCredential {
                generation,
                secret: Secret::generate(CHOSEN_SECRET_LEN),
                created_at: self.now(),
                verified_at: None,
                ..current
            });
        }
        match self.save(rec).await {
            Ok(()) => {}
            // This write is the run's claim on the slot. Losing it means another run wrote the
            // record first (created the entry, or took the lease): re-read, and the loop decides
            // again (and finds the slot held, or already done).
            Err(e) if claiming && e.kind() == ErrorKind::Conflict => {
                self.load().await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        crash::point("after-op-recorded");
        crash::panic_point(self.slot());
        self.advance_fresh(true).await
    }

    pub(super) async fn advance(&mut self) -> Result<()> {
        self.advance_fresh(false).await
    }

    /// Carries the operation in flight through its remaining phases.
    pub(super) async fn advance_fresh(&mut self, fresh: bool) -> Result<()> {
        let op = self.op()?;
        match op.phase {
            Phase::Creating => {
                self.issue_new_client(&op, fresh).await?;
                self.verify_and_promote().await
            }
            Phase::Rotating => {
                self.rotate_in_place(&op).await?;
                self.verify_and_promote().await
            }
            Phase::Pending => self.verify_and_promote().await,
            Phase::Promoting => self.verify_and_promote().await,
        }
    }

    /// Hands the lease back in this write (instead of a separate write in `finish`) when the
    /// record it writes leaves nothing more for this run to do: the next decision on it is
    /// "nothing", and there are no mirrors to bring up to date after it.
    pub(super) fn release_if_done(&self, rec: &mut SlotRecord) {
        if self
            .target
            .config
            .as_ref()
            .is_none_or(|c| !c.mirrors.is_empty())
        {
            return;
        }
        let held = rec.lease.take();
        let host = self.engine.host.clone();
        let alive = move |l: &Lease| lease_holder_alive(l, &host);
        let next = plan::decide(
            self.target.config.as_deref(),
            Some(rec),
            self.settings().prune,
            &self.engine.context(&alive),
        );
        if next.step.is_some() || next.locked {
            rec.lease = held;
        }
    }

    /// Stores `rec` with `message` as the slot's last (failed) result, and returns it as the
    /// slot's error.
    pub(super) async fn save_failure(
        &mut self,
        mut rec: SlotRecord,
        at: DateTime<Utc>,
        kind: ErrorKind,
        message: String,
    ) -> Result<()> {
        rec.last = Some(LastResult {
            at,
            ok: false,
            message: message.clone(),
        });
        self.save(rec).await?;
        Err(Error::new(kind, message))
    }

    /// Releases the lease and turns the run's result into the slot's outcome.
    pub(super) async fn finish(mut self, result: Result<()>) -> SlotOutcome {
        let deferred = result.as_ref().err().is_some_and(is_deferred);
        match &result {
            Err(e) if deferred => {
                tracing::warn!(slot = self.slot(), error = %crate::error::chain(e), "slot deferred to the next run")
            }
            Err(e) => {
                tracing::error!(slot = self.slot(), kind = %e.kind(), error = %crate::error::chain(e), "slot failed")
            }
            Ok(()) => {}
        }
        if let Some(v) = &self.stored
            && v.record
                .lease
                .as_ref()
                .is_some_and(|l| l.run_id == self.engine.run_id)
        {
            let mut rec = v.record.clone();
            rec.lease = None;
            if let Err(e) = &result
                && !deferred
                && rec.last.as_ref().is_none_or(|l| l.ok)
            {
                rec.last = Some(LastResult {
                    at: self.now(),
                    ok: false,
                    message: e.to_string(),
                });
            }
            if let Err(e) = self.save(rec).await {
                tracing::warn!(slot = self.slot(), error = %e, "could not release the lease; it expires by itself");
            }
        }
        let record = self.stored.as_ref().map(|v| &v.record);
        let (provider, tenant) = describe(self.target, record);
        let (provider, tenant) = (provider.to_string(), tenant.to_string());
        let current = record.and_then(|r| r.current.as_ref());
        let (kind, detail) = match &result {
            Err(e) if deferred => (
                OutcomeKind::Skipped,
                format!("deferred to the next run: {}", crate::error::chain(e)),
            ),
            Err(e) => (OutcomeKind::Failed, crate::error::chain(e)),
            Ok(()) if self.skipped => (OutcomeKind::Skipped, self.detail.clone()),
            Ok(()) => (OutcomeKind::Ok, self.detail.clone()),
        };
        self.engine
            .events
            .slot_finished(&crate::observe::SlotFinished {
                time: self.now(),
                run_id: self.engine.run_id,
                slot: self.target.name.clone(),
                provider: provider.clone(),
                tenant: tenant.clone(),
                result: match kind {
                    OutcomeKind::Ok => "ok",
                    OutcomeKind::Failed => "failed",
                    OutcomeKind::Skipped => "skipped",
                },
                rotated: self.actions.iter().any(|a| a.starts_with("promoted")),
                actions: self.actions.clone(),
                detail: detail.clone(),
                error_kind: result.as_ref().err().map(|e| e.kind().to_string()),
                held: self.held.clone(),
                generation: current.map(|c| c.generation),
                fingerprint: current.map(|c| c.secret.fingerprint()),
            });
        SlotOutcome {
            slot: self.target.name.clone(),
            provider,
            tenant,
            result: kind,
            steps: std::mem::take(&mut self.steps),
            actions: std::mem::take(&mut self.actions),
            detail,
            error_kind: result.as_ref().err().map(|e| e.kind().to_string()),
            generation: current.map(|c| c.generation),
            client_id: current.map(|c| c.client_id.clone()),
            fingerprint: current.map(|c| c.secret.fingerprint()),
        }
    }
}

/// An error that defers the slot to the next run instead of failing it: a rate limit that
/// sent nothing and frees up only after [`DEFER_AFTER`] (an hourly budget spent, yours or the
/// platform's), which waiting in this run would not fix and no one should be paged for. Whatever
/// the slot had done stays recorded, and the next run resumes it.
pub(super) fn is_deferred(e: &crate::error::Error) -> bool {
    e.kind() == ErrorKind::RateLimited
        && !e.maybe_applied()
        && e.retry_after().is_some_and(|w| w >= DEFER_AFTER)
}

/// How long a rate limit must last before the slot is deferred rather than failed.
const DEFER_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

pub(super) fn ignore_not_found(r: Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The message of a caught panic (`panic!` with a literal or a formatted string).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
