//! The engine: wiring (backends and providers, each built once and wrapped in the layer stack,
//! src/layer/mod.rs), and the run: plan, preflight, apply. Per slot, a reconcile loop over the
//! steps of `plan::decide` carries the rotation protocol out (docs/src/protocol.md); its rooms:
//!
//! - targets.rs: which slots a run looks at (inventory, orphans), the mass-retire guard;
//! - slot.rs: the slot protocol top to bottom, its crash points beside each step; issue.rs,
//!   verify.rs and mirrors.rs hold its longer steps;
//! - fence.rs, lease.rs: claiming a slot, the fence before every provider mutation, and whether
//!   another run's lease is still in use;
//! - retire.rs, rollback.rs: the two steps outside a rotation;
//! - names.rs: managed client names, globs.

use crate::backend::Backend;
use crate::clock::Clock;
use crate::config::{BootstrapConfig, Inventory, SlotConfig, Strategy};
use crate::error::{Error, ErrorKind, Result};
use crate::plan::{self, Decision};
use crate::provider::{Bootstrap, Provider};
use crate::record::{Lease, SlotRecord};
use crate::secret::ClientPair;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use uuid::Uuid;

pub mod concurrency;
mod drain;
mod fence;
mod issue;
mod lease;
mod mirrors;
mod names;
mod retire;
mod rollback;
mod slot;
mod targets;
mod verify;

pub use lease::lease_holder_alive;
pub use names::{glob_match, legacy_managed_name, managed_name, op_tag};

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
    pub config: Option<Arc<SlotConfig>>,
    pub backend: String,
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Rotate selected slots whatever their age.
    pub force: bool,
    /// Slot selectors (exact names or `*` globs); empty = all.
    pub only: Vec<String>,
    /// Overrides `settings.concurrency` (a number, or auto).
    pub concurrency: Option<concurrency::Concurrency>,
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
    /// The protocol steps taken, in order, by their names in `plan` (`create`, `rotate`,
    /// `resume`, `delete-old`, `retire`); empty when nothing was due.
    pub steps: Vec<&'static str>,
    /// What was done, in order (`created g1`, `promoted g2`, `deleted g1`...); empty = nothing.
    pub actions: Vec<String>,
    /// Why, or what went wrong (never a secret).
    pub detail: String,
    /// The error's kind when the slot failed (`unauthorized`, `unavailable`, ...).
    pub error_kind: Option<String>,
    pub generation: Option<u64>,
    pub client_id: Option<String>,
    /// Fingerprint of the current secret (first 8 hex of SHA-256), for correlation.
    pub fingerprint: Option<String>,
}

/// `ok`, `failed`, or `skipped`: observe's own type, so the engine's results feed metrics and
/// notices without observe importing the engine.
pub use crate::observe::Outcome as OutcomeKind;

/// A slot's plan line. Small, since `plan` holds one per slot (100,000 of them in
/// docs/src/benchmarks.md): provider and tenant names are shared between the rows, and the
/// reason is the decision's own.
#[derive(Clone, Debug, Serialize)]
pub struct PlanRow {
    pub slot: String,
    pub provider: Arc<str>,
    pub tenant: Arc<str>,
    pub action: &'static str,
    #[serde(rename = "reason", serialize_with = "serialize_reason")]
    pub decision: Decision,
}

impl PlanRow {
    /// Why, in words for the operator.
    pub fn reason(&self) -> &str {
        &self.decision.reason
    }
}

fn serialize_reason<S: serde::Serializer>(
    d: &Decision,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&d.reason)
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
            let backend = crate::layer::stack_backend(cfg.open()?);
            backends.insert(name.clone(), backend);
        }
        if let Some(s) = inventory
            .slots
            .iter()
            .find(|s| crate::provider::budget::is_budget_entry(&s.name))
        {
            return Err(Error::config(format!(
                "slot {}: names starting with {} are kept for the providers' hourly budgets (docs/src/scale.md); rename the slot",
                s.name,
                crate::provider::budget::ENTRY_PREFIX
            )));
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
            let cfg = match options.shard {
                Some(shard) => cfg.for_shard(shard),
                None => cfg.clone(),
            };
            let state = state_backend(&inventory, name, &backends).map(|backend| {
                crate::provider::budget::BudgetStore {
                    backend,
                    clock: Arc::clone(&clock),
                }
            });
            let provider = crate::layer::stack_provider(
                cfg.open(bootstrap.clone(), state)?,
                name,
                crate::layer::RetryPolicy::default(),
            );
            if let BootstrapConfig::Slot { slot, .. } = &cfg.bootstrap
                && inventory
                    .slots
                    .iter()
                    .any(|s| &s.name == slot && s.strategy == Strategy::InPlace)
                && !provider.capabilities().caller_chosen_secret
            {
                // The new secret could not be stored before the old one dies (rule 7).
                return Err(Error::config(format!(
                    "slot {slot}: a bootstrap slot rotated in place needs in_place_secret = \"caller\" on provider {name} (or strategy = \"alternate\")"
                )));
            }
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

    /// What observe needs to know of a run that ended (metrics, notices).
    pub fn run_end<'a>(&self, outcomes: &'a [SlotOutcome]) -> crate::observe::RunEnd<'a> {
        crate::observe::RunEnd {
            now: self.clock.now(),
            run_id: self.run_id,
            results: outcomes
                .iter()
                .map(|o| crate::observe::SlotResult {
                    slot: &o.slot,
                    provider: &o.provider,
                    tenant: &o.tenant,
                    result: o.result,
                })
                .collect(),
            max_ages: self
                .inventory
                .slots
                .iter()
                .map(|s| (s.name.clone(), s.max_age))
                .collect(),
        }
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
        let mut rows = Vec::with_capacity(self.inventory.slots.len());
        let host = self.host.clone();
        let alive = move |l: &Lease| lease_holder_alive(l, &host);
        // The records are read `concurrency` at a time, in order: the rows, their events and
        // the first error (in slot order) are those of reading one after another, without
        // waiting out each read's round trip (docs/src/benchmarks.md, "Scale (issue 19),
        // measured").
        let targets = self.targets().await?;
        let listed = self.listed_names(&targets).await?;
        // Provider and tenant names, one allocation each however many rows name them.
        let mut names: BTreeSet<Arc<str>> = BTreeSet::new();
        let mut shared = |name: &str| -> Arc<str> {
            if let Some(known) = names.get(name) {
                return Arc::clone(known);
            }
            let new: Arc<str> = Arc::from(name);
            names.insert(Arc::clone(&new));
            new
        };
        let reads = futures_util::stream::iter(targets)
            .map(|t| {
                // A name its backend's listing does not show has no record: nothing to read.
                let absent = listed
                    .get(&t.backend)
                    .and_then(Option::as_ref)
                    .is_some_and(|names| !names.contains(&t.name));
                async move {
                    let stored = if absent {
                        Ok(None)
                    } else {
                        self.backends[&t.backend].read(&t.name).await
                    };
                    (t, stored)
                }
            })
            .buffered(self.concurrency());
        futures_util::pin_mut!(reads);
        while let Some((t, stored)) = reads.next().await {
            let stored = stored.map_err(|e| e.context(format!("slot {}", t.name)))?;
            let record = stored.as_ref().map(|v| &v.record);
            let decision = plan::decide(
                t.config.as_deref(),
                record,
                self.inventory.settings.prune,
                &self.context(&alive),
            );
            let (provider, tenant) = describe(&t, record);
            let (provider, tenant) = (shared(provider), shared(tenant));
            let action = if decision.locked {
                "locked"
            } else {
                decision.step.as_ref().map_or("nothing", |s| s.name())
            };
            self.events.slot_planned(&t.name);
            rows.push(PlanRow {
                slot: t.name,
                provider,
                tenant,
                action,
                decision,
            });
        }
        Ok(rows)
    }

    /// For each backend the targets live in, the names it holds entries for, when one listing
    /// can tell (`Backend::names`); `None` for a backend that cannot list cheaply.
    async fn listed_names(
        &self,
        targets: &[Target],
    ) -> Result<BTreeMap<String, Option<BTreeSet<String>>>> {
        let mut listed = BTreeMap::new();
        for name in targets.iter().map(|t| &t.backend).collect::<BTreeSet<_>>() {
            let names = self.backends[name]
                .names()
                .await
                .map_err(|e| e.context(format!("backend {name}: listing slots")))?;
            listed.insert(name.clone(), names);
        }
        Ok(listed)
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
            .filter_map(|t| t.config.as_deref())
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
        let checked = entry.provider.verify(&tenant, &pair).await;
        if let Err(e) = &checked
            && slot::is_deferred(e)
        {
            // A spent hourly budget is no broken credential: the provider's slots are deferred
            // one by one, each without sending anything (slot.rs).
            tracing::warn!(provider = name, error = %e, "the bootstrap credential was not checked: its slots are deferred");
            return Ok(());
        }
        checked.map_err(|e| {
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

    /// Slots worked on at once: `--concurrency`, else `settings.concurrency`. In auto mode, the
    /// reads of `plan` and the preflight checks use the fixed `settings.concurrency`; only
    /// apply's slots are paced by the controller.
    fn concurrency(&self) -> usize {
        match self.options.concurrency {
            Some(concurrency::Concurrency::Fixed(n)) => n,
            _ => self.inventory.settings.concurrency,
        }
        .max(1)
    }

    /// The controller of apply's slots in flight, when the concurrency is auto.
    fn auto_concurrency(&self) -> Option<concurrency::Aimd> {
        let s = &self.inventory.settings;
        let auto = match self.options.concurrency {
            Some(c) => c == concurrency::Concurrency::Auto,
            None => s.concurrency_auto,
        };
        auto.then(|| {
            concurrency::Aimd::new(
                s.concurrency_min.unwrap_or(concurrency::DEFAULT_MIN),
                s.concurrency_max.unwrap_or(concurrency::DEFAULT_MAX),
            )
        })
    }

    /// Runs the plan: ordinary slots concurrently (bounded), then each provider's bootstrap slot,
    /// last and alone (docs/src/protocol.md, rule 7).
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

        // At most `concurrency` slot tasks exist at once, started in slot order as others end:
        // each task holds its whole slot future, so spawning every slot up front (waiting on a
        // semaphore) made apply's memory grow with the inventory (docs/src/benchmarks.md).
        // With `--concurrency auto` the limit moves with what the platforms answer
        // (src/engine/concurrency.rs); tasks above a lowered limit finish, none is cancelled.
        let mut auto = self.auto_concurrency();
        let mut limit = auto.as_ref().map_or(self.concurrency(), |a| a.current());
        let mut load = crate::provider::load::snapshot();
        let mut last_done = None;
        let mut set = tokio::task::JoinSet::new();
        let mut tasks = std::collections::HashMap::new();
        let mut outcomes = Vec::with_capacity(first.len());
        let mut waiting = first.into_iter().enumerate();
        loop {
            if let Some(a) = auto.as_mut()
                && let Some(started) = last_done.take()
            {
                let now = crate::provider::load::snapshot();
                if let Some(n) = a.completed(now - load, started, std::time::Instant::now()) {
                    tracing::debug!(
                        concurrency = n,
                        "auto concurrency: {limit} -> {n} slots at once"
                    );
                    limit = n;
                }
                load = now;
            }
            while set.len() < limit
                && let Some((i, target)) = waiting.next()
            {
                let engine = Arc::clone(self);
                let t = target.clone();
                let started = std::time::Instant::now();
                let handle = set.spawn(async move { (i, engine.reconcile(target).await) });
                tasks.insert(handle.id(), (i, t, started));
            }
            let Some(joined) = set.join_next_with_id().await else {
                break;
            };
            match joined {
                Ok((id, pair)) => {
                    last_done = tasks.remove(&id).map(|(_, _, started)| started);
                    outcomes.push(pair);
                }
                // `reconcile` catches panics of the slot's work; one that escapes it (from the
                // report itself) still fails only its slot, never the run.
                Err(e) => {
                    let Some((i, t, _)) = tasks.remove(&e.id()) else {
                        return Err(Error::internal(format!("a slot task failed: {e}")));
                    };
                    tracing::error!(slot = %t.name, error = %e, "the slot's task panicked");
                    let (provider, tenant) = describe(&t, None);
                    outcomes.push((
                        i,
                        SlotOutcome {
                            slot: t.name.clone(),
                            provider: provider.to_string(),
                            tenant: tenant.to_string(),
                            result: OutcomeKind::Failed,
                            steps: Vec::new(),
                            actions: Vec::new(),
                            detail: format!("the slot's task panicked: {e}"),
                            error_kind: Some(crate::error::ErrorKind::Internal.to_string()),
                            generation: None,
                            client_id: None,
                            fingerprint: None,
                        },
                    ));
                }
            }
        }
        if let Some(a) = &auto {
            tracing::info!(
                low = a.low,
                high = a.high,
                last = a.current(),
                "auto concurrency: {} to {} slots at once (ended at {})",
                a.low,
                a.high,
                a.current()
            );
        }
        outcomes.sort_by_key(|(i, _)| *i);
        let mut outcomes: Vec<SlotOutcome> = outcomes.into_iter().map(|(_, o)| o).collect();
        for target in last {
            outcomes.push(self.reconcile(target).await);
        }
        Ok(outcomes)
    }
}

/// The provider and tenant of a target: from the inventory, else from its stored record.
/// Borrowed: `plan` shares them between its rows rather than copying them per slot.
pub fn describe<'a>(t: &'a Target, record: Option<&'a SlotRecord>) -> (&'a str, &'a str) {
    match (t.config.as_deref(), record) {
        (Some(c), _) => (&c.provider, &c.tenant),
        (None, Some(r)) => (&r.provider, &r.tenant),
        (None, None) => ("", ""),
    }
}

/// The backend that keeps `provider`'s shared state beside its slot records (Cisco's hourly
/// budget): the backend of its bootstrap slot, else of its first slot in the inventory. Chosen
/// from the whole inventory, not the shard's part, so every shard picks the same one.
impl Engine {
    /// The store that keeps provider `name`'s hourly budget across processes, if it has one: for
    /// a command that opens the provider anew (`check`), so its requests are charged too.
    pub fn budget_store(&self, name: &str) -> Option<crate::provider::budget::BudgetStore> {
        state_backend(&self.inventory, name, &self.backends).map(|backend| {
            crate::provider::budget::BudgetStore {
                backend,
                clock: Arc::clone(&self.clock),
            }
        })
    }
}

fn state_backend(
    inventory: &Inventory,
    provider: &str,
    backends: &BTreeMap<String, Arc<dyn Backend>>,
) -> Option<Arc<dyn Backend>> {
    let bootstrap = match &inventory.providers[provider].bootstrap {
        BootstrapConfig::Slot { slot, .. } => inventory.slots.iter().find(|s| &s.name == slot),
        BootstrapConfig::Static(_) => None,
    };
    bootstrap
        .or_else(|| inventory.slots.iter().find(|s| s.provider == provider))
        .and_then(|s| backends.get(&s.backend))
        .cloned()
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
