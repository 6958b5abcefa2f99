//! Typed telemetry events (docs/src/architecture.md, "observe"): the engine emits one struct per event at each state
//! change and at the end of each slot; the sinks here turn the *same fields* into a log line, a
//! metric, an audit line and a notification, so they cannot drift. Nothing here ever holds a
//! secret: events carry client ids and fingerprints only.

pub mod actor;
pub mod audit;
pub mod metrics;
pub mod notify;
pub mod serve;

use crate::record::{OpKind, SlotRecord};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;
use uuid::Uuid;

/// A slot's coarse state, as audit lines and metrics name it. A closed set (bounded labels).
pub fn state_name(record: Option<&SlotRecord>) -> &'static str {
    let Some(r) = record else {
        return "absent";
    };
    if r.retiring.is_some() {
        return "retiring";
    }
    if let Some(op) = &r.op {
        return match op.phase {
            crate::record::Phase::Creating => "creating",
            crate::record::Phase::Rotating => "rotating",
            crate::record::Phase::Pending => "pending",
            crate::record::Phase::Promoting => "promoting",
        };
    }
    if r.draining.iter().any(|d| d.hold.is_some()) {
        // Its grace is over, and consumers still use it (docs/src/protocol.md, "Draining").
        return "draining-in-use";
    }
    if !r.draining.is_empty() {
        return "draining";
    }
    if r.current.is_some() {
        return "current";
    }
    "empty"
}

/// One slot changed state (a compare-and-set write, or the removal of its entry).
#[derive(Clone, Debug, Serialize)]
pub struct StateChanged {
    pub time: DateTime<Utc>,
    pub run_id: Uuid,
    pub slot: String,
    pub provider: String,
    pub tenant: String,
    /// The rotation operation in flight before or after the change, if any.
    pub operation_id: Option<Uuid>,
    pub operation: Option<OpKind>,
    pub from: &'static str,
    pub to: &'static str,
    /// Generation, client id and secret fingerprint of the current credential after the change.
    pub generation: Option<u64>,
    pub client_id: Option<String>,
    pub fingerprint: Option<String>,
    /// The pending credential after the change, if any.
    pub pending_client_id: Option<String>,
    pub pending_fingerprint: Option<String>,
    /// Client ids still draining (alive for their grace period) after the change.
    pub draining_client_ids: Vec<String>,
    /// Client ids deleted at the provider by this change (retire), each one the record proved
    /// rekey's (docs/src/protocol.md, "Ownership of clients").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted_client_ids: Vec<String>,
    /// The previous clients among `deleted_client_ids` whose drain or grace was done (or whose
    /// slot retired), each with its generation: one `retired` notice each. Not in audit lines,
    /// which name them in `deleted_client_ids` already.
    #[serde(skip)]
    pub retired: Vec<Retired>,
    /// Who made the change ([`actor::actor`]: the service account and pod in Kubernetes,
    /// `user@host` elsewhere) and process id.
    pub actor: String,
    /// Why, for humans (e.g. `rollback`); empty for ordinary reconcile steps.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl StateChanged {
    /// Builds the event from the record before and after a change. `None` when nothing that
    /// the audit trail tracks changed (e.g. only the lease was renewed).
    pub fn between(
        run_id: Uuid,
        time: DateTime<Utc>,
        slot: &str,
        before: Option<&SlotRecord>,
        after: Option<&SlotRecord>,
    ) -> Option<StateChanged> {
        let (from, to) = (state_name(before), state_name(after));
        let key = |r: Option<&SlotRecord>| {
            r.map(|r| {
                (
                    r.current.as_ref().map(|c| c.client_id.clone()),
                    r.pending.as_ref().map(|c| c.client_id.clone()),
                    r.draining.len(),
                    r.op.as_ref().map(|o| o.id),
                )
            })
        };
        if from == to && key(before) == key(after) {
            return None;
        }
        let basis = after.or(before)?;
        let op = after
            .and_then(|r| r.op.as_ref())
            .or_else(|| before.and_then(|r| r.op.as_ref()));
        let current = after.and_then(|r| r.current.as_ref());
        let pending = after.and_then(|r| r.pending.as_ref());
        Some(StateChanged {
            time,
            run_id,
            slot: slot.to_string(),
            provider: basis.provider.clone(),
            tenant: basis.tenant.clone(),
            operation_id: op.map(|o| o.id),
            operation: op.map(|o| o.kind),
            from,
            to,
            generation: current.map(|c| c.generation),
            client_id: current.map(|c| c.client_id.clone()),
            fingerprint: current.map(|c| c.secret.fingerprint()),
            pending_client_id: pending.map(|c| c.client_id.clone()),
            pending_fingerprint: pending.map(|c| c.secret.fingerprint()),
            draining_client_ids: after
                .map(|r| {
                    r.draining
                        .iter()
                        .map(|d| d.credential.client_id.clone())
                        .collect()
                })
                .unwrap_or_default(),
            deleted_client_ids: Vec::new(),
            retired: Vec::new(),
            actor: actor::actor(),
            reason: String::new(),
        })
    }
}

/// A previous client deleted at the provider, its drain or grace done (never its secret).
#[derive(Clone, Debug, Serialize)]
pub struct Retired {
    pub client_id: String,
    pub generation: u64,
    pub fingerprint: String,
}

impl Retired {
    pub fn of(c: &crate::record::StoredCredential) -> Retired {
        Retired {
            client_id: c.client_id.clone(),
            generation: c.generation,
            fingerprint: c.secret.fingerprint(),
        }
    }
}

/// One slot's work in one run ended.
#[derive(Clone, Debug, Serialize)]
pub struct SlotFinished {
    pub time: DateTime<Utc>,
    pub run_id: Uuid,
    pub slot: String,
    pub provider: String,
    pub tenant: String,
    /// `ok`, `failed` or `skipped`.
    pub result: &'static str,
    /// Whether a new credential was promoted in this run.
    pub rotated: bool,
    pub actions: Vec<String>,
    /// Why, or what went wrong (never a secret).
    pub detail: String,
    /// The error kind when failed (`unauthorized`, `unavailable`, ...).
    pub error_kind: Option<String>,
    /// Previous generations this run found still in use after their grace, and so kept
    /// (docs/src/protocol.md, "Draining"), in words.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
    /// The current credential's generation and secret fingerprint when the slot's work ended.
    pub generation: Option<u64>,
    pub fingerprint: Option<String>,
}

/// Where events go. Implementations must not block for long: they run inside slot tasks.
pub trait EventSink: Send + Sync {
    fn state_changed(&self, event: &StateChanged);
    fn slot_finished(&self, event: &SlotFinished);
    /// `plan` decided one slot (progress only; no log, metric or audit line).
    fn slot_planned(&self, _slot: &str) {}
}

/// The default sink: the log line only.
pub struct LogOnly;

impl EventSink for LogOnly {
    fn state_changed(&self, e: &StateChanged) {
        log_state_changed(e);
    }
    fn slot_finished(&self, e: &SlotFinished) {
        log_slot_finished(e);
    }
}

fn log_state_changed(e: &StateChanged) {
    tracing::debug!(
        slot = %e.slot,
        from = e.from,
        to = e.to,
        operation_id = e.operation_id.map(|id| id.to_string()),
        client_id = e.client_id.as_deref(),
        fingerprint = e.fingerprint.as_deref(),
        "state changed"
    );
}

fn log_slot_finished(e: &SlotFinished) {
    tracing::debug!(slot = %e.slot, result = e.result, rotated = e.rotated, "slot finished");
}

/// The sink a command uses: log line, metrics, and optionally the audit trail and the
/// notifier, all from the same event.
pub struct Observer {
    pub audit: Option<Arc<audit::AuditLog>>,
    pub notifier: Option<Arc<notify::Notifier>>,
    /// The terminal's progress bar, advanced once per finished slot.
    pub progress: std::sync::OnceLock<indicatif::ProgressBar>,
}

impl EventSink for Observer {
    fn slot_planned(&self, slot: &str) {
        if let Some(pb) = self.progress.get() {
            pb.inc(1);
            pb.set_message(slot.to_string());
        }
    }

    fn state_changed(&self, e: &StateChanged) {
        log_state_changed(e);
        metrics::global().state_changed(e);
        if let Some(a) = &self.audit {
            a.write(e);
        }
        if let Some(n) = &self.notifier {
            n.state_changed(e);
        }
    }

    fn slot_finished(&self, e: &SlotFinished) {
        log_slot_finished(e);
        metrics::global().slot_finished(e);
        if let Some(pb) = self.progress.get() {
            pb.inc(1);
            pb.set_message(e.slot.clone());
        }
        if let Some(n) = &self.notifier {
            n.slot_finished(e);
        }
    }
}

/// A webhook or Pushgateway URL must be http(s) with a host; the error shows it redacted
/// ([`crate::http::redact_url`]: a webhook's path, a Pushgateway's `user:password@`).
fn check_output_url(flag: &str, url: &str, part: crate::http::UrlPart) -> crate::error::Result<()> {
    let shown = crate::http::redact_url(url, part);
    match reqwest::Url::parse(url.trim()) {
        Err(e) => Err(crate::error::Error::config(format!(
            "{flag}: \"{shown}\" is not a URL ({e})"
        ))),
        Ok(u) if !matches!(u.scheme(), "http" | "https") || !u.has_host() => Err(
            crate::error::Error::config(format!("{flag}: \"{shown}\" is not an http(s) URL")),
        ),
        Ok(_) => Ok(()),
    }
}

/// Where a command's metrics, audit trail and notifications go (from its flags: the command
/// line's `ObsArgs` fills it in).
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub metrics_file: Option<std::path::PathBuf>,
    pub pushgateway: Option<String>,
    pub audit_log: Option<std::path::PathBuf>,
    pub webhook: Option<String>,
    pub webhook_format: notify::WebhookFormat,
    pub webhook_timeout: std::time::Duration,
    /// Which notifications the webhook gets.
    pub webhook_events: Vec<notify::WebhookEvent>,
    /// The `instance` label of the Pushgateway group (`--metrics-instance`; "" by default).
    pub metrics_instance: String,
}

/// How one slot's run ended, as the engine reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
    /// Another run holds the slot, or rekey is shutting down.
    Skipped,
}

/// One slot's result in a run: what metrics and notices need of it.
#[derive(Clone, Copy, Debug)]
pub struct SlotResult<'a> {
    pub slot: &'a str,
    /// Empty when neither the inventory nor a record names it.
    pub provider: &'a str,
    pub tenant: &'a str,
    pub result: Outcome,
}

/// A run that ended: when, which, each slot's result, and each inventory slot's max age.
pub struct RunEnd<'a> {
    pub now: DateTime<Utc>,
    pub run_id: Uuid,
    pub results: Vec<SlotResult<'a>>,
    pub max_ages: std::collections::BTreeMap<String, std::time::Duration>,
}

/// One slot as `rekey status` shows it (and the store gauges count it).
#[derive(Serialize, Clone, Debug)]
pub struct StatusRow {
    pub slot: String,
    pub provider: String,
    pub tenant: String,
    /// ok, draining-in-use, overdue, missing, in-progress, interrupted, failed, retiring, retired, orphaned,
    /// tampered (the record fails its authentication: never acted on)
    pub state: String,
    pub generation: Option<u64>,
    pub age_seconds: Option<i64>,
    pub draining: usize,
    pub last_result: Option<String>,
    /// Overdue, missing, interrupted, failed or tampered: someone should look.
    pub attention: bool,
    /// Previous generations whose deletion is held because consumers still use them, in words
    /// ("g3 still in use: last token 12m ago, ...").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
}

/// A command's observability outputs, opened from its flags before the run.
pub struct Outputs {
    pub args: Options,
    pub observer: Arc<Observer>,
    /// Metrics are served (`rekey run --metrics-listen`): keep the store gauges current.
    pub serving: bool,
    /// A one-shot run (`apply`, `rollback`, `run --once`): what it writes and pushes holds
    /// gauges only ([`metrics`]'s module doc). `rekey run` sets it false.
    pub batch: bool,
    /// The shard this run works on, for the Pushgateway group (`shard="I/N"`, `0/1` unsharded).
    pub shard: Option<crate::shard::Shard>,
    started: std::time::Instant,
}

/// The run-level facts of a run that ended: see [`Outputs::after_run`].
pub struct RunFailure<'a> {
    pub now: DateTime<Utc>,
    pub run_id: Uuid,
    /// The exit code the run ends with (documented: 2 configuration, 4 unreachable, ...).
    pub exit_code: u8,
    /// The error kind and its message (never a secret: errors carry none).
    pub error_kind: &'a str,
    pub detail: String,
    /// Every inventory slot's max age, when the inventory was read.
    pub max_ages: std::collections::BTreeMap<String, std::time::Duration>,
}

impl Outputs {
    pub fn open(args: &Options) -> crate::error::Result<Outputs> {
        for (flag, url, part) in [
            (
                "--pushgateway",
                &args.pushgateway,
                crate::http::UrlPart::Path,
            ),
            ("--webhook", &args.webhook, crate::http::UrlPart::Origin),
        ] {
            if let Some(url) = url {
                check_output_url(flag, url, part)?;
            }
        }
        let audit = match &args.audit_log {
            Some(p) => Some(Arc::new(audit::AuditLog::open(p)?)),
            None => None,
        };
        let notifier = args.webhook.as_ref().map(|url| {
            Arc::new(notify::Notifier::new(
                url.clone(),
                args.webhook_format,
                args.webhook_timeout,
                3,
                &args.webhook_events,
                &args.metrics_instance,
            ))
        });
        if let Some(p) = &args.metrics_file {
            metrics::global().load_previous(p);
        }
        Ok(Outputs {
            args: args.clone(),
            observer: Arc::new(Observer {
                audit,
                notifier,
                progress: Default::default(),
            }),
            serving: false,
            batch: true,
            shard: None,
            started: std::time::Instant::now(),
        })
    }

    /// Before a run: the series that exist at zero for its providers and backends, and the
    /// run's start (for its duration).
    pub fn begin<'a>(
        &mut self,
        providers: impl IntoIterator<Item = &'a str>,
        backends: impl IntoIterator<Item = &'a str>,
    ) {
        self.started = std::time::Instant::now();
        metrics::global().prepare(providers, backends);
    }

    fn wanted(&self) -> bool {
        self.serving
            || self.args.metrics_file.is_some()
            || self.args.pushgateway.is_some()
            || self.observer.notifier.is_some()
    }

    /// The Pushgateway group of this run: `job="rekey"`, its instance and shard.
    fn group(&self) -> Vec<(&'static str, String)> {
        let shard = self
            .shard
            .unwrap_or(crate::shard::Shard { index: 0, count: 1 });
        vec![
            ("job", "rekey".to_string()),
            ("instance", self.args.metrics_instance.clone()),
            ("shard", shard.to_string()),
        ]
    }

    /// After a run that worked its slots: the store's gauges (from `rows`, the store's
    /// status, awaited only when something reads them), stuck-slot notices, then metrics out
    /// and notices sent. Failures here are logged: the run's own result stands.
    pub async fn after_run<F>(&self, run: &RunEnd<'_>, exit_code: u8, rows: F)
    where
        F: std::future::Future<Output = crate::error::Result<Vec<StatusRow>>>,
    {
        let outcomes = &run.results;
        if !self.wanted() {
            // Nobody reads the store gauges: spare the backends a second pass over every slot.
            return;
        }
        let rows = match rows.await {
            Ok(rows) => Some(rows),
            Err(e) => {
                tracing::error!(error = %crate::error::chain(&e), "cannot read slot states for metrics");
                None
            }
        };
        let m = metrics::global();
        m.observe_store(rows.as_deref(), &run.max_ages);
        m.observe_slots(outcomes, run.now);
        m.observe_result(metrics::RunResult {
            now: run.now,
            duration: self.started.elapsed().as_secs_f64(),
            failed: false,
            exit_code,
        });
        if let Some(n) = &self.observer.notifier {
            let failed: std::collections::BTreeSet<&str> = outcomes
                .iter()
                .filter(|o| o.result == Outcome::Failed)
                .map(|o| o.slot)
                .collect();
            for r in rows.iter().flatten().filter(|r| r.state == "interrupted") {
                if failed.contains(r.slot.as_str()) {
                    continue; // already notified as failed
                }
                n.queue(notify::Notice {
                    event: "slot_stuck",
                    time: run.now,
                    run_id: run.run_id,
                    slot: r.slot.clone(),
                    provider: r.provider.clone(),
                    tenant: r.tenant.clone(),
                    error_kind: None,
                    detail: r.last_result.clone().unwrap_or_else(|| "an operation is still in flight and no run holds it".into()),
                    action: format!("Run `rekey apply --only {}`: it resumes the operation. If it stays stuck, read `rekey status` and the audit log for this slot.", r.slot),
                    host: notify::host(),
                    generation: r.generation,
                    ..notify::Notice::none()
                });
            }
        }
        let successes: Vec<(String, String)> = metrics::by_provider_tenant(outcomes)
            .into_iter()
            .filter(|(_, ok)| *ok)
            .map(|((p, t), _)| (p.to_string(), t.to_string()))
            .collect();
        self.export(&successes).await;
        if let Some(n) = &self.observer.notifier {
            n.flush().await;
        }
    }

    /// After a run that failed as a whole, before or instead of working its slots (bad
    /// inventory, a provider or backend unreachable): the run-level gauges say so, and the
    /// store's gauges come from `rows` (the backend's status, which needs no provider) when
    /// the backend can be read, else they stay as the last run left them, marked stale.
    pub async fn after_failed_run<F>(&self, run: &RunFailure<'_>, rows: Option<F>)
    where
        F: std::future::Future<Output = crate::error::Result<Vec<StatusRow>>>,
    {
        if !self.wanted() {
            return;
        }
        let rows = match rows {
            Some(rows) => match rows.await {
                Ok(rows) => Some(rows),
                Err(e) => {
                    tracing::error!(error = %crate::error::chain(&e), "cannot read slot states for metrics; keeping the last ones, marked stale");
                    None
                }
            },
            None => None,
        };
        let m = metrics::global();
        m.observe_store(rows.as_deref(), &run.max_ages);
        m.observe_result(metrics::RunResult {
            now: run.now,
            duration: self.started.elapsed().as_secs_f64(),
            failed: true,
            exit_code: run.exit_code,
        });
        if let Some(n) = &self.observer.notifier {
            n.queue(notify::Notice {
                event: "run_failed",
                time: run.now,
                run_id: run.run_id,
                slot: String::new(),
                provider: String::new(),
                tenant: String::new(),
                error_kind: Some(run.error_kind.to_string()),
                detail: run.detail.clone(),
                action: "The run ended before working its slots; no credential changed. Read the detail, run `rekey check -c INVENTORY` (bootstrap credentials, backends), fix the cause; the next run does the work (docs/src/runbook.md).".into(),
                host: notify::host(),
                ..notify::Notice::none()
            });
        }
        self.export(&[]).await;
        if let Some(n) = &self.observer.notifier {
            n.flush().await;
        }
    }

    async fn export(&self, successes: &[(String, String)]) {
        if let Some(p) = &self.args.metrics_file
            && let Err(e) = metrics::global().write_file(p, self.batch)
        {
            tracing::error!(error = %e, "metrics file not written");
        }
        if let Some(url) = &self.args.pushgateway
            && let Err(e) = metrics::global()
                .push(url, &self.group(), successes, self.batch)
                .await
        {
            tracing::error!(error = %e, "metrics not pushed");
        }
    }
}

/// Every state [`state_name`] can name (the audit trail's `from`/`to`, the `to` label of the
/// state-change series, each exported at zero). `draining-in-use`: a draining client whose
/// deletion is held because a consumer still uses it.
pub const RECORD_STATES: &[&str] = &[
    "absent",
    "creating",
    "rotating",
    "pending",
    "promoting",
    "current",
    "draining",
    "draining-in-use",
    "retiring",
    "empty",
];
