//! Carries plans out: per slot, a reconcile loop over the steps of `plan::decide`, following the
//! rotation protocol of DESIGN.md §4. Every state change is a compare-and-set write to the slot's
//! backend record *before* the provider call it prepares, so a crash anywhere leaves a record the
//! next run can resume from.

use crate::backend::Backend;
use crate::clock::Clock;
use crate::config::{BootstrapConfig, Inventory, SlotConfig, Strategy};
use crate::crash;
use crate::error::{Error, ErrorKind, Result};
use crate::plan::{self, Decision, Step};
use crate::provider::{self, Bootstrap, ClientSpec, IssuedClient, Provider};
use crate::record::{
    Draining, LastResult, Lease, OpKind, Operation, Phase, Retiring, SlotRecord, StoredCredential,
    Versioned,
};
use crate::secret::{ClientPair, Secret};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Length of secrets rekey chooses itself (in-place rotation with `in_place_secret = "caller"`).
const CHOSEN_SECRET_LEN: usize = 64;
/// Steps one slot may take in one run (resume, delete-old, rotate, ... ); a guard against loops.
const MAX_STEPS: usize = 8;
/// A provider mutation needs a proof of the lease younger than `lease_ttl / FENCE_FRACTION`;
/// an older one is renewed first (README, "Fencing").
const FENCE_FRACTION: u32 = 3;

pub struct ProviderEntry {
    pub provider: Arc<dyn Provider>,
    pub bootstrap: Bootstrap,
    /// The slot holding this provider's own credential, if rekey rotates it.
    pub bootstrap_slot: Option<String>,
}

/// A slot to look at: from the inventory, or only in a backend (removed from the inventory).
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub config: Option<SlotConfig>,
    pub backend: String,
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Rotate selected slots whatever their age.
    pub force: bool,
    /// Slot selectors (exact names or `*` globs); empty = all.
    pub only: Vec<String>,
    /// Overrides `settings.concurrency`.
    pub concurrency: Option<usize>,
    /// Only slots (and orphans) of this shard (`--shard`).
    pub shard: Option<crate::shard::Shard>,
    /// `--allow-mass-retire`: start retiring more slots than `max_retire` / `max_retire_percent`.
    pub allow_mass_retire: bool,
}

pub struct Engine {
    pub inventory: Arc<Inventory>,
    pub backends: BTreeMap<String, Arc<dyn Backend>>,
    pub providers: BTreeMap<String, ProviderEntry>,
    pub clock: Arc<dyn Clock>,
    pub run_id: Uuid,
    pub started: DateTime<Utc>,
    /// Where state changes and slot results go (log, metrics, audit, notifications).
    pub events: Arc<dyn crate::observe::EventSink>,
    /// Set on shutdown (`rekey run`, SIGTERM): slots not yet started are left for the next run.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    host: String,
    pid: u32,
    options: Options,
}

/// What happened to one slot in a run.
#[derive(Clone, Debug, Serialize)]
pub struct SlotOutcome {
    pub slot: String,
    pub provider: String,
    pub tenant: String,
    /// `ok`, `failed`, or `skipped` (another run holds the slot).
    pub result: OutcomeKind,
    /// What was done, in order (`created g1`, `promoted g2`, `deleted g1`...); empty = nothing.
    pub actions: Vec<String>,
    /// Why, or what went wrong (never a secret).
    pub detail: String,
    pub generation: Option<u64>,
    pub client_id: Option<String>,
    /// Fingerprint of the current secret (first 8 hex of SHA-256), for correlation.
    pub fingerprint: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Ok,
    Failed,
    Skipped,
}

/// A slot's plan line.
#[derive(Clone, Debug, Serialize)]
pub struct PlanRow {
    pub slot: String,
    pub provider: String,
    pub tenant: String,
    pub action: String,
    pub reason: String,
    #[serde(skip)]
    pub decision: Decision,
}

impl Engine {
    /// Opens the backends and builds the providers. Bootstrap credentials that cannot be resolved
    /// are kept as errors and reported when first used, so `plan`, `status` and `verify` work
    /// without them.
    pub async fn build(
        inventory: Inventory,
        clock: Arc<dyn Clock>,
        options: Options,
    ) -> Result<Engine> {
        let mut backends: BTreeMap<String, Arc<dyn Backend>> = BTreeMap::new();
        for (name, cfg) in &inventory.backends {
            let backend = crate::layer::stack_backend(crate::backend::build(cfg)?);
            backends.insert(name.clone(), backend);
        }
        let mut providers = BTreeMap::new();
        for (name, cfg) in &inventory.providers {
            let (bootstrap, bootstrap_slot) = match &cfg.bootstrap {
                BootstrapConfig::Static(pair) => (resolve_pair(pair, name), None),
                BootstrapConfig::Slot { slot, seed } => {
                    let slot_cfg = inventory
                        .slots
                        .iter()
                        .find(|s| &s.name == slot)
                        .ok_or_else(|| {
                            Error::config(format!(
                                "provider {name}: bootstrap slot {slot} is not in the inventory"
                            ))
                        })?;
                    let caller_chosen = matches!(&cfg.kind, crate::config::ProviderKind::Taegis(t) if t.caller_chosen_secret);
                    if slot_cfg.strategy == Strategy::InPlace && !caller_chosen {
                        // The new secret could not be stored before the old one dies (rule 7).
                        return Err(Error::config(format!(
                            "slot {slot}: a bootstrap slot rotated in place needs in_place_secret = \"caller\" on provider {name} (or strategy = \"alternate\")"
                        )));
                    }
                    let backend = &backends[&slot_cfg.backend];
                    let stored = backend
                        .read(slot)
                        .await
                        .map_err(|e| e.context(format!("bootstrap slot {slot}")))?;
                    match (stored.and_then(|v| v.record.current), seed) {
                        (Some(current), _) => (Bootstrap::new(current.pair()), Some(slot.clone())),
                        (None, Some(seed)) => (resolve_pair(seed, name), Some(slot.clone())),
                        (None, None) => (
                            Bootstrap::unresolved(format!(
                                "provider {name}: bootstrap slot {slot} holds no credential yet and no seed is configured"
                            )),
                            Some(slot.clone()),
                        ),
                    }
                }
            };
            let provider = crate::layer::stack_provider(
                provider::build(cfg, bootstrap.clone())?,
                name,
                crate::layer::RetryPolicy::default(),
            );
            providers.insert(
                name.clone(),
                ProviderEntry {
                    provider,
                    bootstrap,
                    bootstrap_slot,
                },
            );
        }
        let now = clock.now();
        Ok(Engine {
            inventory: Arc::new(inventory),
            backends,
            providers,
            clock,
            run_id: Uuid::now_v7(),
            // The process's own start: see clock::process_age.
            started: now
                - chrono::Duration::from_std(crate::clock::process_age()).unwrap_or_default(),
            events: Arc::new(crate::observe::LogOnly),
            stop: Arc::default(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id(),
            options,
        })
    }

    /// The slots this run looks at: selected inventory slots, then entries rekey owns in a
    /// backend that the inventory no longer lists (sorted by name).
    pub async fn targets(&self) -> Result<Vec<Target>> {
        let mut targets: Vec<Target> = self
            .inventory
            .slots
            .iter()
            .filter(|s| self.selected(&s.name))
            .map(|s| Target {
                name: s.name.clone(),
                config: Some(s.clone()),
                backend: s.backend.clone(),
            })
            .collect();
        let known: BTreeSet<String> = self
            .inventory
            .slots
            .iter()
            .map(|s| s.name.clone())
            .collect();
        // Backends that only ever hold mirror copies have no orphans of their own.
        let primaries: BTreeSet<&str> = self
            .inventory
            .slots
            .iter()
            .map(|s| s.backend.as_str())
            .collect();
        let mirror_only: BTreeSet<&str> = self
            .inventory
            .slots
            .iter()
            .flat_map(|s| s.mirrors.iter().map(String::as_str))
            .filter(|m| !primaries.contains(m))
            .collect();
        for (bname, backend) in &self.backends {
            if mirror_only.contains(bname.as_str()) {
                continue;
            }
            let listed = backend
                .list(&known)
                .await
                .map_err(|e| e.context(format!("backend {bname}: listing slots")))?;
            for name in listed {
                if known.contains(&name) || !self.selected(&name) {
                    continue;
                }
                // A mirror's copy of a slot whose primary lives elsewhere is not an orphan.
                if let Ok(Some(v)) = backend.read(&name).await
                    && v.record.mirror_of.is_some()
                {
                    continue;
                }
                targets.push(Target {
                    name,
                    config: None,
                    backend: bname.clone(),
                });
            }
        }
        Ok(targets)
    }

    fn selected(&self, name: &str) -> bool {
        (self.options.only.is_empty() || self.options.only.iter().any(|sel| glob_match(sel, name)))
            && self.options.shard.is_none_or(|s| s.contains(name))
    }

    fn context<'a>(&self, alive: &'a dyn Fn(&Lease) -> bool) -> plan::Context<'a> {
        plan::Context {
            now: self.clock.now(),
            force_before: self.options.force.then_some(self.started),
            run_id: self.run_id,
            holder_alive: alive,
        }
    }

    /// The plan: one row per target, from backend records only. Changes nothing.
    pub async fn plan(&self) -> Result<Vec<PlanRow>> {
        let mut rows = Vec::new();
        let host = self.host.clone();
        let alive = move |l: &Lease| lease_holder_alive(l, &host);
        for t in self.targets().await? {
            let stored = self.backends[&t.backend]
                .read(&t.name)
                .await
                .map_err(|e| e.context(format!("slot {}", t.name)))?;
            let record = stored.as_ref().map(|v| &v.record);
            let decision = plan::decide(
                t.config.as_ref(),
                record,
                self.inventory.settings.prune,
                &self.context(&alive),
            );
            let (provider, tenant) = describe(&t, record);
            let action = if decision.locked {
                "locked".to_string()
            } else {
                decision
                    .step
                    .as_ref()
                    .map(|s| s.name().to_string())
                    .unwrap_or_else(|| "nothing".into())
            };
            self.events.slot_planned(&t.name);
            rows.push(PlanRow {
                slot: t.name,
                provider,
                tenant,
                action,
                reason: decision.reason.clone(),
                decision,
            });
        }
        Ok(rows)
    }

    /// Checks every backend, and every provider's bootstrap credential, that this run needs.
    /// Unreachable ones fail the run before any change (exit code 4).
    pub async fn preflight(&self, targets: &[Target]) -> Result<()> {
        let backends: BTreeSet<&str> = targets.iter().map(|t| t.backend.as_str()).collect();
        for name in backends {
            self.backends[name]
                .check()
                .await
                .map_err(|e| e.context(format!("backend {name}")))?;
        }
        let providers: BTreeSet<&str> = targets
            .iter()
            .filter_map(|t| t.config.as_ref())
            .map(|c| c.provider.as_str())
            .collect();
        // All providers at once (bounded), not one round trip after another: with one provider
        // per tenant this check was a serial section that grew with the tenants. The first
        // failure in name order is the one reported.
        let checks: Vec<Result<()>> = futures_util::stream::iter(providers)
            .map(|name| self.check_bootstrap(name))
            .buffered(self.concurrency())
            .collect()
            .await;
        checks.into_iter().collect()
    }

    /// One token exchange with a provider's bootstrap credential (the provider keeps the token).
    async fn check_bootstrap(&self, name: &str) -> Result<()> {
        let entry = &self.providers[name];
        let pair = entry.bootstrap.get()?;
        let tenant = self.inventory.providers[name]
            .tenant
            .clone()
            .unwrap_or_default();
        entry.provider.verify(&tenant, &pair).await.map_err(|e| {
            let kind = if e.is_temporary() {
                e.kind()
            } else {
                ErrorKind::Unauthorized
            };
            Error::new(
                kind,
                format!(
                    "provider {name}: the bootstrap credential {} cannot get a token: {e}",
                    pair.client_id
                ),
            )
        })
    }

    /// Slots worked on at once: `--concurrency`, else `settings.concurrency`.
    fn concurrency(&self) -> usize {
        self.options
            .concurrency
            .unwrap_or(self.inventory.settings.concurrency)
            .max(1)
    }

    /// Runs the plan: ordinary slots concurrently (bounded), then each provider's bootstrap slot,
    /// last and alone (DESIGN.md §4 rule 7).
    pub async fn apply(self: &Arc<Self>) -> Result<Vec<SlotOutcome>> {
        let targets = self.targets().await?;
        self.check_mass_retire(&targets).await?;
        self.preflight(&targets).await?;
        let bootstrap_slots: BTreeSet<String> = self
            .providers
            .values()
            .filter_map(|p| p.bootstrap_slot.clone())
            .collect();
        let (last, first): (Vec<Target>, Vec<Target>) = targets
            .into_iter()
            .partition(|t| bootstrap_slots.contains(&t.name));

        let permits = Arc::new(tokio::sync::Semaphore::new(self.concurrency()));
        let mut set = tokio::task::JoinSet::new();
        let mut tasks = std::collections::HashMap::new();
        for (i, target) in first.into_iter().enumerate() {
            let engine = Arc::clone(self);
            let permits = Arc::clone(&permits);
            let t = target.clone();
            let handle = set.spawn(async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .expect("semaphore never closed");
                (i, engine.reconcile(target).await)
            });
            tasks.insert(handle.id(), (i, t));
        }
        let mut outcomes = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(pair) => outcomes.push(pair),
                // `reconcile` catches panics of the slot's work; one that escapes it (from the
                // report itself) still fails only its slot, never the run.
                Err(e) => {
                    let Some((i, t)) = tasks.remove(&e.id()) else {
                        return Err(Error::internal(format!("a slot task failed: {e}")));
                    };
                    tracing::error!(slot = %t.name, error = %e, "the slot's task panicked");
                    let (provider, tenant) = describe(&t, None);
                    outcomes.push((
                        i,
                        SlotOutcome {
                            slot: t.name.clone(),
                            provider,
                            tenant,
                            result: OutcomeKind::Failed,
                            actions: Vec::new(),
                            detail: format!("the slot's task panicked: {e}"),
                            generation: None,
                            client_id: None,
                            fingerprint: None,
                        },
                    ));
                }
            }
        }
        outcomes.sort_by_key(|(i, _)| *i);
        let mut outcomes: Vec<SlotOutcome> = outcomes.into_iter().map(|(_, o)| o).collect();
        for target in last {
            outcomes.push(self.reconcile(target).await);
        }
        Ok(outcomes)
    }

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

    /// Refuses (exit 2, before any change) a run that would start retiring more of a backend's
    /// slots than `settings.max_retire` or `settings.max_retire_percent` allow, unless
    /// `--allow-mass-retire` was given. A mistaken inventory (a slot renamed, a file truncated)
    /// must not take many live clients with it, even after their grace.
    async fn check_mass_retire(&self, targets: &[Target]) -> Result<()> {
        if self.options.allow_mass_retire {
            return Ok(());
        }
        let settings = &self.inventory.settings;
        let host = self.host.clone();
        let alive = move |l: &Lease| lease_holder_alive(l, &host);
        let mut starting: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for t in targets {
            let candidate = match &t.config {
                None => settings.prune,
                Some(c) => c.retired,
            };
            if !candidate {
                continue;
            }
            let stored = self.backends[&t.backend]
                .read(&t.name)
                .await
                .map_err(|e| e.context(format!("slot {}", t.name)))?;
            let Some(v) = stored else { continue };
            let decision = plan::decide(
                t.config.as_ref(),
                Some(&v.record),
                settings.prune,
                &self.context(&alive),
            );
            if v.record.retiring.is_none() && decision.step == Some(Step::Retire) {
                starting.entry(&t.backend).or_default().push(&t.name);
            }
        }
        for (backend, slots) in starting {
            let held = self.backends[backend]
                .list(&BTreeSet::new())
                .await
                .map_err(|e| e.context(format!("backend {backend}: listing slots")))?
                .len()
                .max(slots.len());
            let n = slots.len();
            let over_count = n > settings.max_retire;
            let over_share = n > 1 && n * 100 > held * settings.max_retire_percent as usize;
            if over_count || over_share {
                let mut names = slots
                    .iter()
                    .take(20)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ");
                if n > 20 {
                    names.push_str(&format!(" and {} more", n - 20));
                }
                return Err(Error::config(format!(
                    "refusing to start retiring {n} of the {held} slots backend {backend} holds ({names}): more than max_retire = {} or max_retire_percent = {} allow. Nothing was changed. If the inventory is right, run again with --allow-mass-retire; if not (a slot renamed or left out by mistake), fix it",
                    settings.max_retire, settings.max_retire_percent
                )));
            }
        }
        Ok(())
    }
}

/// The work on one slot within one run.
struct SlotRun<'a> {
    engine: &'a Engine,
    target: &'a Target,
    backend: &'a dyn Backend,
    stored: Option<Versioned>,
    actions: Vec<String>,
    detail: String,
    skipped: bool,
    /// Why, in audit lines (`rollback`); empty for ordinary reconcile steps.
    reason: String,
    /// When this run last proved it holds the slot's lease: the moment before the last
    /// compare-and-set write that carried it succeeded (monotonic and wall clock).
    proven: Option<(std::time::Instant, DateTime<Utc>)>,
    /// Set when a fence found the lease lost: the slot stops, no provider call is made.
    fenced_out: bool,
    /// Client ids deleted at the provider since the last write: the audit event of the next
    /// write names them (`deleted_client_ids`).
    deleted: Vec<String>,
}

impl<'a> SlotRun<'a> {
    fn new(engine: &'a Engine, target: &'a Target) -> Self {
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
        }
    }

    fn slot(&self) -> &str {
        &self.target.name
    }

    fn now(&self) -> DateTime<Utc> {
        self.engine.clock.now()
    }

    fn settings(&self) -> &crate::config::Settings {
        &self.engine.inventory.settings
    }

    fn record(&self) -> Result<&SlotRecord> {
        self.stored
            .as_ref()
            .map(|v| &v.record)
            .ok_or_else(|| Error::internal("no record loaded"))
    }

    fn op(&self) -> Result<Operation> {
        self.record()?
            .op
            .clone()
            .ok_or_else(|| Error::internal("no operation in flight"))
    }

    fn my_lease(&self) -> Lease {
        Lease {
            run_id: self.engine.run_id,
            host: self.engine.host.clone(),
            pid: self.engine.pid,
            expires_at: later(self.now(), self.settings().lease_ttl),
        }
    }

    fn provider_name(&self) -> Result<String> {
        match (&self.target.config, &self.stored) {
            (Some(c), _) => Ok(c.provider.clone()),
            (None, Some(v)) => Ok(v.record.provider.clone()),
            (None, None) => Err(Error::internal("slot without config or record")),
        }
    }

    fn tenant(&self) -> Result<String> {
        match (&self.target.config, &self.stored) {
            (Some(c), _) => Ok(c.tenant.clone()),
            (None, Some(v)) => Ok(v.record.tenant.clone()),
            (None, None) => Err(Error::internal("slot without config or record")),
        }
    }

    fn provider(&self) -> Result<&'a ProviderEntry> {
        let name = self.provider_name()?;
        self.engine.providers.get(&name).ok_or_else(|| {
            Error::config(format!(
                "slot {}: provider {name} is not in the inventory any more",
                self.slot()
            ))
        })
    }

    fn config(&self) -> Result<&'a SlotConfig> {
        self.target
            .config
            .as_ref()
            .ok_or_else(|| Error::internal("slot not in the inventory"))
    }

    /// The name of the client operation `op` of this slot creates.
    fn managed_name(&self, generation: u64, op: &Uuid) -> String {
        let s = self.settings();
        managed_name(&s.name_prefix, &s.instance, self.slot(), generation, op)
    }

    async fn load(&mut self) -> Result<()> {
        self.stored = self.backend.read(self.slot()).await?;
        Ok(())
    }

    /// Compare-and-set write of `record` over the version we hold, renewing our lease. Temporary
    /// backend errors are retried for a while: the record may hold the only copy of a secret.
    async fn save(&mut self, mut record: SlotRecord) -> Result<()> {
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
            self.engine.events.state_changed(&e);
        }
        self.stored = Some(Versioned { record, version });
        self.proven = holds.then_some(sent);
        Ok(())
    }

    /// The fence before every provider mutation (create, rotate, delete): proves this run still
    /// holds the slot's lease, or stops the slot without calling the provider. A proof younger
    /// than a third of `lease_ttl` (by the larger of the monotonic and the wall-clock time since
    /// it, as the monotonic clock stops while the host is suspended) is enough; an older one is
    /// renewed with a compare-and-set write, which fails if another run took the slot.
    /// README, "Fencing", explains why this is safe across hosts whose clocks disagree.
    async fn fence(&mut self, point: &'static str) -> Result<()> {
        crash::stop_point(point);
        self.keep_lease().await
    }

    /// Renews the lease if its last proof is older than a third of `lease_ttl` (long steps call
    /// it as they go, so a healthy slow run never loses the slot).
    async fn keep_lease(&mut self) -> Result<()> {
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
    async fn acquire(&mut self) -> Result<bool> {
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

    /// Settles the slot on its primary backend, then brings its mirrors up to date.
    async fn drive(&mut self) -> Result<()> {
        self.settle().await?;
        if self.skipped {
            return Ok(());
        }
        self.sync_mirrors().await
    }

    /// Copies the primary's record (without the lease) to every mirror that differs, or removes
    /// the mirror's entry when the primary has none. The primary is the only source of truth:
    /// mirrors are written, never read for decisions. A failed mirror fails the slot (no silent
    /// split brain); the next run finds the difference and writes again.
    async fn sync_mirrors(&mut self) -> Result<()> {
        let Some(cfg) = self.target.config.as_ref() else {
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

    async fn sync_mirror(&self, mirror: &dyn Backend) -> Result<Option<String>> {
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

    /// The reconcile loop on the primary backend: decide, claim, act, until nothing is left.
    async fn settle(&mut self) -> Result<()> {
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
                self.target.config.as_ref(),
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
    async fn start(&mut self, kind: OpKind) -> Result<()> {
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
        // what proves later that a client of that name is this slot's (README "Ownership").
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
            // Store the secret we are about to set before setting it (DESIGN.md §4, in-place).
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

    async fn advance(&mut self) -> Result<()> {
        self.advance_fresh(false).await
    }

    /// Carries the operation in flight through its remaining phases.
    async fn advance_fresh(&mut self, fresh: bool) -> Result<()> {
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

    /// `creating`: makes sure exactly one client with the name the operation recorded exists
    /// and we hold a secret for it, then stores it as pending.
    async fn issue_new_client(&mut self, op: &Operation, fresh: bool) -> Result<()> {
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
    /// adopted, never deleted (README "Ownership of clients", upgrading).
    async fn name_legacy_operation(&mut self, op: &Operation) -> Result<String> {
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
    async fn reclaim_or_create(
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
    async fn rotate_in_place(&mut self, op: &Operation) -> Result<()> {
        let entry = self.provider()?;
        let provider = entry.provider.as_ref();
        let tenant = self.tenant()?;
        let rec = self.record()?.clone();
        let current = rec
            .current
            .clone()
            .ok_or_else(|| Error::internal("in-place rotation without a current credential"))?;
        let mut rec = rec;
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

    /// `pending`: a token exchange with the new pair (retried for propagation delay), then
    /// promotion: pending becomes current, the old current starts its grace. Where the backend's
    /// promotion is more than one write, the `promoting` phase is recorded first; resuming it
    /// promotes without verifying again (consumers may read the pair already).
    async fn verify_and_promote(&mut self) -> Result<()> {
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
    async fn record_promoting(&mut self, pending: &StoredCredential) -> Result<()> {
        let mut rec = self.record()?.clone();
        rec.op.as_mut().expect("op checked").phase = Phase::Promoting;
        rec.pending = Some(pending.clone());
        self.save(rec).await?;
        crash::point("after-promoting-recorded");
        Ok(())
    }

    /// The promotion write: `pending` (verified) becomes current.
    async fn promote(&mut self, op: Operation, pending: StoredCredential) -> Result<()> {
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
    async fn verification_failed(
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
            return self.save_failure(rec, now, err.kind(), msg).await;
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
    async fn consumers_read(
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

    /// Stores `rec` with `message` as the slot's last (failed) result, and returns it as the
    /// slot's error.
    async fn save_failure(
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

    /// Deletes previous generations whose grace is over (only clients rekey made).
    async fn delete_old(&mut self) -> Result<()> {
        let entry = self.provider()?;
        let tenant = self.tenant()?;
        let now = self.now();
        let rec = self.record()?.clone();
        let (due, keep): (Vec<Draining>, Vec<Draining>) = rec
            .draining
            .iter()
            .cloned()
            .partition(|d| d.delete_after <= now);
        for d in &due {
            if d.credential.owned {
                self.fence("before-provider-delete").await?;
                ignore_not_found(
                    entry
                        .provider
                        .delete_client(&tenant, &d.credential.object_id)
                        .await,
                )
                .map_err(|e| {
                    e.context(format!(
                        "deleting g{} ({})",
                        d.credential.generation, d.credential.client_id
                    ))
                })?;
                crash::point("after-old-deleted");
                self.deleted.push(d.credential.client_id.clone());
                self.actions
                    .push(format!("deleted g{}", d.credential.generation));
            } else {
                self.actions.push(format!(
                    "released g{} (not created by rekey; left at the provider)",
                    d.credential.generation
                ));
            }
        }
        let mut rec = rec;
        rec.draining = keep;
        self.release_if_done(&mut rec);
        self.save(rec).await
    }

    /// Hands the lease back in this write (instead of a separate write in `finish`) when the
    /// record it writes leaves nothing more for this run to do: the next decision on it is
    /// "nothing", and there are no mirrors to bring up to date after it.
    fn release_if_done(&self, rec: &mut SlotRecord) {
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
            self.target.config.as_ref(),
            Some(rec),
            self.settings().prune,
            &self.engine.context(&alive),
        );
        if next.step.is_some() || next.locked {
            rec.lease = held;
        }
    }

    /// Retires the slot: marks it (grace starts if it was in use), then deletes the clients it
    /// can prove are its own at the provider and finally its backend entry. A slot that left
    /// the inventory (prune) retires with `[defaults] grace`.
    async fn retire(&mut self) -> Result<()> {
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

    async fn rollback(&mut self, hold: Duration) -> Result<()> {
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

    /// Releases the lease and turns the run's result into the slot's outcome.
    async fn finish(mut self, result: Result<()>) -> SlotOutcome {
        if let Err(e) = &result {
            tracing::error!(slot = self.slot(), kind = %e.kind(), error = %crate::error::chain(e), "slot failed");
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
        let current = record.and_then(|r| r.current.as_ref());
        let (kind, detail) = match &result {
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
            });
        SlotOutcome {
            slot: self.target.name.clone(),
            provider,
            tenant,
            result: kind,
            actions: std::mem::take(&mut self.actions),
            detail,
            generation: current.map(|c| c.generation),
            client_id: current.map(|c| c.client_id.clone()),
            fingerprint: current.map(|c| c.secret.fingerprint()),
        }
    }
}

/// The provider and tenant of a target: from the inventory, else from its stored record.
pub fn describe(t: &Target, record: Option<&SlotRecord>) -> (String, String) {
    match (&t.config, record) {
        (Some(c), _) => (c.provider.clone(), c.tenant.clone()),
        (None, Some(r)) => (r.provider.clone(), r.tenant.clone()),
        (None, None) => (String::new(), String::new()),
    }
}

fn resolve_pair(pair: &crate::config::PairRef, provider: &str) -> Bootstrap {
    match (pair.client_id.resolve(), pair.client_secret.resolve()) {
        (Ok(id), Ok(secret)) => Bootstrap::new(ClientPair {
            client_id: id.expose().to_string(),
            secret,
        }),
        (Err(e), _) => Bootstrap::unresolved(format!(
            "provider {provider}: bootstrap client_id ({}): {e}",
            pair.client_id
        )),
        (_, Err(e)) => Bootstrap::unresolved(format!(
            "provider {provider}: bootstrap client_secret ({}): {e}",
            pair.client_secret
        )),
    }
}

fn ignore_not_found(r: Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// `<prefix>[<instance>-]<slot>-g<generation>-<op>`: the name of the client an operation
/// creates, recorded in the operation before the call (README "Ownership of clients"). `op` is
/// [`op_tag`] of the operation's id, so two deployments (or two operations) never share a name.
pub fn managed_name(
    prefix: &str,
    instance: &str,
    slot: &str,
    generation: u64,
    op: &Uuid,
) -> String {
    let instance = if instance.is_empty() {
        String::new()
    } else {
        format!("{instance}-")
    };
    format!("{prefix}{instance}{slot}-g{generation}-{}", op_tag(op))
}

/// The names versions of rekey before recorded names gave clients: `<prefix><slot>-g<gen>`.
/// Such a name proves nothing; it is only reported (a possible orphan), never acted on.
pub fn legacy_managed_name(prefix: &str, slot: &str, generation: u64) -> String {
    format!("{prefix}{slot}-g{generation}")
}

/// Eight hex digits of an operation's id, from its random bits (the last ones of a UUIDv7; its
/// first ones are a timestamp, the same for operations started in the same minute).
pub fn op_tag(id: &Uuid) -> String {
    let hex = id.simple().to_string();
    hex[hex.len() - 8..].to_string()
}

/// `t + d`, saturating at the latest representable time instead of panicking. Inventory
/// durations are bounded at validation (README "Limits"); this is the second line.
fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The message of a caught panic (`panic!` with a literal or a formatted string).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

fn short_id(id: &Uuid) -> String {
    id.to_string()[..8].to_string()
}

/// Whether the run holding `lease` may still be working. On this host we can tell for sure
/// (its process is gone after a crash); elsewhere only the lease's expiry tells.
pub fn lease_holder_alive(lease: &Lease, this_host: &str) -> bool {
    if lease.host != this_host {
        return true;
    }
    if lease.pid == std::process::id() {
        return true;
    }
    // SAFETY: kill with signal 0 sends nothing; it only asks whether the process exists.
    let rc = unsafe { libc::kill(lease.pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// `*` matches any run of characters; everything else is literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else {
                return false;
            };
            rest = &rest[pos + part.len()..];
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("siem-*", "siem-acme"));
        assert!(glob_match("*-acme", "siem-acme"));
        assert!(glob_match("s*m*e", "siem-acme"));
        assert!(!glob_match("siem-*", "edr-acme"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn managed_names() {
        let op = Uuid::parse_str("0190b6a0-1234-7abc-8def-0123456789ab").unwrap();
        assert_eq!(
            managed_name("rekey-", "", "siem", 3, &op),
            "rekey-siem-g3-456789ab"
        );
        assert_eq!(
            managed_name("rekey-", "eu-prod", "siem", 3, &op),
            "rekey-eu-prod-siem-g3-456789ab"
        );
        assert_eq!(legacy_managed_name("rekey-", "siem", 3), "rekey-siem-g3");
    }

    #[test]
    fn later_saturates() {
        let now = Utc::now();
        assert_eq!(
            later(now, Duration::from_secs(60)),
            now + chrono::Duration::seconds(60)
        );
        assert_eq!(later(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
    }
}
