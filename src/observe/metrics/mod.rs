//! Prometheus metrics (text exposition 0.0.4): one process-wide registry, fed by the typed
//! events of [`super`] and by the call wrappers of the layer stack (src/layer/metrics.rs).
//! Exposed three ways: a file for the node exporter's textfile collector (`--metrics-file`), a
//! push to a Pushgateway (`--pushgateway`), and `/metrics` in `rekey run`.
//!
//! A one-shot run (`apply`, `rollback`, `run --once`) is a batch job: what it writes or pushes
//! holds gauges only (the Pushgateway's guidance for batch jobs), because a counter that lives
//! for one process means nothing to `rate()`. Its counters become `rekey_last_run_*` gauges
//! (this run's counts) and `rekey_runs_total` is left out; the run's own result, exit code,
//! time and duration are gauges a failed run sets too. `rekey run`, which lives on, keeps its
//! counters and histograms (docs/src/operating.md, "Metrics").
//!
//! Labels are bounded: slot names (the inventory), provider and backend names, tenants, a
//! closed set of operations, results, states and error kinds. Never an error message.

mod export;

use super::{Outcome, SlotFinished, StateChanged};
use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// Every state `rekey status` reports; each is always exported (zero when no slot has it).
/// The README's metrics table lists these (a test checks it).
pub const SLOT_STATES: &[&str] = &[
    "ok",
    "draining-in-use",
    "overdue",
    "missing",
    "in-progress",
    "interrupted",
    "failed",
    "retiring",
    "retired",
    "orphaned",
    "tampered",
];

/// The name of the per-provider/tenant last-success gauge; kept across runs (see `push`).
pub const LAST_SUCCESS: &str = "rekey_last_success_timestamp_seconds";

/// The families that describe the store's slots. A run that cannot read its backend keeps the
/// previous run's values of these (marked by [`STALE`]) instead of reporting nothing.
pub const SLOT_FAMILIES: &[&str] = &[
    "rekey_slots",
    "rekey_credential_age_seconds",
    "rekey_credential_max_age_seconds",
];

/// 1 when the [`SLOT_FAMILIES`] are the previous run's (this run could not read the backend).
pub const STALE: &str = "rekey_slot_metrics_stale";

/// The operations the layer stack times (src/layer/metrics.rs), for the error series that are
/// exported at zero.
pub const PROVIDER_OPERATIONS: &[&str] = &[
    "create_client",
    "rotate_secret",
    "delete_client",
    "find_clients",
    "verify",
];
pub const BACKEND_OPERATIONS: &[&str] = &["read", "write", "delete", "list", "check"];

/// The error kinds whose series exist from the start (zero until one happens): those an alert
/// or a dashboard watches. Other kinds appear when they first happen.
pub const WATCHED_ERROR_KINDS: &[&str] = &[
    "unauthorized",
    "forbidden",
    "rate_limited",
    "unavailable",
    "timeout",
];

pub struct Metrics {
    pub registry: Registry,
    pub build_info: IntGaugeVec,
    pub rotations: IntCounterVec,
    pub state_changes: IntCounterVec,
    pub credential_age: GaugeVec,
    pub credential_max_age: GaugeVec,
    pub last_success: GaugeVec,
    pub slots: IntGaugeVec,
    pub stale: IntGauge,
    pub run_time: Gauge,
    pub run_duration: Gauge,
    pub run_failed: IntGauge,
    pub run_exit_code: IntGauge,
    pub run_slots: IntGaugeVec,
    pub runs: IntCounterVec,
    pub provider_calls: HistogramVec,
    pub provider_errors: IntCounterVec,
    pub backend_calls: HistogramVec,
    pub backend_errors: IntCounterVec,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

const CALL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How a run ended as a whole, for the run-level gauges.
#[derive(Clone, Copy, Debug)]
pub struct RunResult {
    pub now: chrono::DateTime<chrono::Utc>,
    /// Seconds since the run started.
    pub duration: f64,
    /// The run ended before or instead of working its slots (an error ended it).
    pub failed: bool,
    /// The documented exit code it ends with.
    pub exit_code: u8,
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
            r.register(Box::new(c.clone()))
                .expect("metric names are unique");
            c
        }
        let counter = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                GaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let single =
            |name: &str, help: &str| reg(&registry, Gauge::new(name, help).expect("valid metric"));
        let int_single = |name: &str, help: &str| {
            reg(&registry, IntGauge::new(name, help).expect("valid metric"))
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            reg(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(CALL_BUCKETS.to_vec()),
                    labels,
                )
                .expect("valid metric"),
            )
        };
        let m = Metrics {
            build_info: int_gauge(
                "rekey_build_info",
                "Always 1: the version and commit of the rekey binary.",
                &["version", "revision"],
            ),
            rotations: counter(
                "rekey_rotations_total",
                "Rotations attempted, by provider and result (success: a new credential was promoted; failure: the slot failed).",
                &["provider", "result"],
            ),
            state_changes: counter(
                "rekey_state_changes_total",
                "Slot state changes written to the backend, by the state entered.",
                &["to"],
            ),
            credential_age: gauge(
                "rekey_credential_age_seconds",
                "Age of each slot's current credential.",
                &["slot", "provider"],
            ),
            credential_max_age: gauge(
                "rekey_credential_max_age_seconds",
                "Configured max age of each slot's credential (rotated when older).",
                &["slot", "provider"],
            ),
            last_success: gauge(
                LAST_SUCCESS,
                "Last time every slot of a provider and tenant ended a run without failure (Unix time).",
                &["provider", "tenant"],
            ),
            slots: int_gauge(
                "rekey_slots",
                "Slots by state, as `rekey status` reports them.",
                &["state"],
            ),
            stale: int_single(
                STALE,
                "1 when rekey_slots and the credential ages are an earlier run's, because this run could not read the backend; else 0.",
            ),
            run_time: single(
                "rekey_last_run_timestamp_seconds",
                "When the last run ended (Unix time), whatever its result.",
            ),
            run_duration: single(
                "rekey_last_run_duration_seconds",
                "How long the last run took.",
            ),
            run_failed: int_single(
                "rekey_last_run_failed",
                "1 when the last run failed as a whole, before or instead of working its slots (bad inventory, provider or backend unreachable); else 0.",
            ),
            run_exit_code: int_single(
                "rekey_last_run_exit_code",
                "The exit code the last run ended with (0 ok, 1 attention, 2 configuration, 3 locked, 4 unreachable).",
            ),
            run_slots: int_gauge(
                "rekey_last_run_slots",
                "Slots by result in the last run (ok, failed, skipped: held by another run).",
                &["result"],
            ),
            runs: counter(
                "rekey_runs_total",
                "Runs (apply cycles) by result (success: no slot failed and the run did not fail as a whole).",
                &["result"],
            ),
            provider_calls: histogram(
                "rekey_provider_call_duration_seconds",
                "Duration of provider API calls (retries included), by provider and operation.",
                &["provider", "operation"],
            ),
            provider_errors: counter(
                "rekey_provider_call_errors_total",
                "Failed provider API calls (after retries), by provider, operation and error kind.",
                &["provider", "operation", "kind"],
            ),
            backend_calls: histogram(
                "rekey_backend_call_duration_seconds",
                "Duration of backend calls, by backend and operation.",
                &["backend", "operation"],
            ),
            backend_errors: counter(
                "rekey_backend_call_errors_total",
                "Failed backend calls, by backend, operation and error kind.",
                &["backend", "operation", "kind"],
            ),
            registry,
        };
        m.build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("REKEY_GIT_COMMIT").unwrap_or("unknown"),
            ])
            .set(1);
        for s in SLOT_STATES {
            m.slots.with_label_values(&[s]).set(0);
        }
        for s in super::RECORD_STATES {
            m.state_changes.with_label_values(&[s]);
        }
        for r in ["ok", "failed", "skipped"] {
            m.run_slots.with_label_values(&[r]).set(0);
        }
        m.stale.set(0);
        m
    }

    /// Series that must exist before anything happens, at zero, for the providers and backends
    /// of this run: rotations by result and call errors of the watched kinds.
    pub fn prepare<'a>(
        &self,
        providers: impl IntoIterator<Item = &'a str>,
        backends: impl IntoIterator<Item = &'a str>,
    ) {
        for p in providers {
            for r in ["success", "failure"] {
                self.rotations.with_label_values(&[p, r]);
            }
            for op in PROVIDER_OPERATIONS {
                for k in WATCHED_ERROR_KINDS {
                    self.provider_errors.with_label_values(&[p, op, k]);
                }
            }
        }
        for b in backends {
            for op in BACKEND_OPERATIONS {
                for k in WATCHED_ERROR_KINDS {
                    self.backend_errors.with_label_values(&[b, op, k]);
                }
            }
        }
    }

    pub fn state_changed(&self, e: &StateChanged) {
        self.state_changes.with_label_values(&[e.to]).inc();
    }

    pub fn slot_finished(&self, e: &SlotFinished) {
        match e.result {
            "failed" => self
                .rotations
                .with_label_values(&[&e.provider, "failure"])
                .inc(),
            _ if e.rotated => self
                .rotations
                .with_label_values(&[&e.provider, "success"])
                .inc(),
            _ => {}
        }
    }

    /// The gauges that describe the store: slots by state and credential ages, from `rows`
    /// (the store's status, read after the run). `None`: the backend could not be read, and
    /// the previous values stay, marked stale.
    pub fn observe_store(
        &self,
        rows: Option<&[super::StatusRow]>,
        max_ages: &BTreeMap<String, std::time::Duration>,
    ) {
        let Some(rows) = rows else {
            self.stale.set(1);
            return;
        };
        self.stale.set(0);
        for s in SLOT_STATES {
            let n = rows.iter().filter(|r| r.state == *s).count();
            self.slots.with_label_values(&[s]).set(n as i64);
        }
        self.credential_age.reset();
        self.credential_max_age.reset();
        for r in rows {
            if let Some(age) = r.age_seconds {
                self.credential_age
                    .with_label_values(&[&r.slot, &r.provider])
                    .set(age as f64);
            }
            if let Some(max) = max_ages.get(&r.slot) {
                self.credential_max_age
                    .with_label_values(&[&r.slot, &r.provider])
                    .set(max.as_secs_f64());
            }
        }
    }

    /// The slots' results of a run that worked its slots, and the last-success times of the
    /// providers and tenants all of whose slots ended ok.
    pub fn observe_slots(
        &self,
        outcomes: &[super::SlotResult<'_>],
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let ts = now.timestamp_millis() as f64 / 1000.0;
        for ((p, t), ok) in by_provider_tenant(outcomes) {
            if ok {
                self.last_success.with_label_values(&[p, t]).set(ts);
            }
        }
        for (k, name) in [
            (Outcome::Ok, "ok"),
            (Outcome::Failed, "failed"),
            (Outcome::Skipped, "skipped"),
        ] {
            let n = outcomes.iter().filter(|o| o.result == k).count();
            self.run_slots.with_label_values(&[name]).set(n as i64);
        }
    }

    /// The run-level gauges, set by every run whatever happened (and the run counter).
    pub fn observe_result(&self, r: RunResult) {
        self.run_time.set(r.now.timestamp_millis() as f64 / 1000.0);
        self.run_duration.set(r.duration);
        self.run_failed.set(i64::from(r.failed));
        self.run_exit_code.set(i64::from(r.exit_code));
        if r.failed {
            for name in ["ok", "failed", "skipped"] {
                self.run_slots.with_label_values(&[name]).set(0);
            }
        }
        let failed = r.failed || self.run_slots.with_label_values(&["failed"]).get() > 0;
        let result = if failed { "failure" } else { "success" };
        self.runs.with_label_values(&[result]).inc();
    }

    /// The text exposition of every metric, as a long-lived process serves it.
    pub fn encode(&self) -> String {
        export::encode(&self.registry.gather())
    }

    /// The exposition a one-shot run writes or pushes: gauges only (see the module's doc).
    pub fn encode_batch(&self) -> String {
        export::encode(&export::batch(self.registry.gather()))
    }
}

/// Per provider and tenant, whether every slot of theirs ended ok.
pub fn by_provider_tenant<'a>(
    outcomes: &[super::SlotResult<'a>],
) -> BTreeMap<(&'a str, &'a str), bool> {
    let mut by: BTreeMap<(&str, &str), bool> = BTreeMap::new();
    for o in outcomes.iter().filter(|o| !o.provider.is_empty()) {
        *by.entry((o.provider, o.tenant)).or_insert(true) &= o.result == Outcome::Ok;
    }
    by
}
