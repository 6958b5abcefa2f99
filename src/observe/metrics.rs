//! Prometheus metrics (text exposition 0.0.4): one process-wide registry, fed by the typed
//! events of [`super`] and by the call wrappers of the layer stack (src/layer/metrics.rs).
//! Exposed three ways: a file for the node exporter's textfile collector (`--metrics-file`), a
//! push to a Pushgateway (`--pushgateway`), and `/metrics` in `rekey run`.
//!
//! Labels are bounded: slot names (the inventory), provider and backend names, tenants, a
//! closed set of operations, results, states and error kinds. Never an error message.

use super::{Outcome, SlotFinished, StateChanged};
use crate::error::{Error, Result};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::path::Path;
use std::sync::LazyLock;

/// Every state `rekey status` reports; each is always exported (zero when no slot has it).
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

pub struct Metrics {
    pub registry: Registry,
    pub rotations: IntCounterVec,
    pub state_changes: IntCounterVec,
    pub credential_age: GaugeVec,
    pub credential_max_age: GaugeVec,
    pub last_success: GaugeVec,
    pub slots: IntGaugeVec,
    pub run: GaugeVec,
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
            slots: reg(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "rekey_slots",
                        "Slots by state, as `rekey status` reports them.",
                    ),
                    &["state"],
                )
                .expect("valid metric"),
            ),
            run: gauge(
                "rekey_last_run_timestamp_seconds",
                "When the last run ended (Unix time), by result (success: no slot failed).",
                &["result"],
            ),
            run_slots: reg(
                &registry,
                IntGaugeVec::new(
                    Opts::new("rekey_last_run_slots", "Slots by result in the last run (ok, failed, skipped: held by another run)."),
                    &["result"],
                )
                .expect("valid metric"),
            ),
            runs: counter(
                "rekey_runs_total",
                "Runs (apply cycles) by result (success: no slot failed).",
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
        for s in SLOT_STATES {
            m.slots.with_label_values(&[s]).set(0);
        }
        m
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

    /// The gauges that describe the store after a run: slots by state, credential ages, and
    /// the run's own result and time.
    pub fn observe_run(
        &self,
        rows: &[super::StatusRow],
        max_ages: &std::collections::BTreeMap<String, std::time::Duration>,
        outcomes: &[super::SlotResult<'_>],
        now: chrono::DateTime<chrono::Utc>,
    ) {
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
        let ts = now.timestamp_millis() as f64 / 1000.0;
        let mut by_pt: std::collections::BTreeMap<(&str, &str), bool> = Default::default();
        for o in outcomes {
            if o.provider.is_empty() {
                continue;
            }
            let ok = by_pt.entry((o.provider, o.tenant)).or_insert(true);
            *ok &= o.result == Outcome::Ok;
        }
        for ((p, t), ok) in by_pt {
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
        let failed = outcomes.iter().any(|o| o.result == Outcome::Failed);
        let result = if failed { "failure" } else { "success" };
        self.run.with_label_values(&[result]).set(ts);
        self.runs.with_label_values(&[result]).inc();
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        encode(&self.registry.gather())
    }

    /// Seeds the last-success gauge from a previous metrics file, so a run in which a provider
    /// fails keeps reporting that provider's previous success time instead of dropping it.
    pub fn load_previous(&self, path: &Path) {
        let Ok(text) = std::fs::read_to_string(path) else {
            return;
        };
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(LAST_SUCCESS) else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once(' ') else {
                continue;
            };
            let (Some(p), Some(t), Ok(v)) = (
                label(labels, "provider"),
                label(labels, "tenant"),
                value.parse::<f64>(),
            ) else {
                continue;
            };
            self.last_success.with_label_values(&[&p, &t]).set(v);
        }
    }

    /// Writes the exposition to `path` atomically (temp file + rename in the same directory),
    /// as the textfile collector requires.
    pub fn write_file(&self, path: &Path) -> Result<()> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let io = |e: std::io::Error| {
            Error::unavailable(format!("writing metrics to {}: {e}", path.display()))
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut tmp, self.encode().as_bytes()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Pushes to a Pushgateway. Everything but the last-success gauge replaces the group
    /// `job="rekey"` (PUT). Each provider/tenant that succeeded in this run gets its own group
    /// (`job`, `provider`, `tenant`), so a run that fails leaves the previous success time
    /// in place for the alert to see.
    pub async fn push(&self, base: &str, successes: &[(String, String)]) -> Result<()> {
        let base = base.trim_end_matches('/');
        let families: Vec<_> = self
            .registry
            .gather()
            .into_iter()
            .filter(|f| f.name() != LAST_SUCCESS)
            .collect();
        // rekey's shared settings: no redirect followed, no Referer (src/http.rs).
        let client = crate::http::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| Error::internal(format!("http client: {e}")))?;
        put(
            &client,
            &format!("{base}/metrics/job/rekey"),
            encode(&families),
        )
        .await?;
        for (p, t) in successes {
            let v = self
                .last_success
                .get_metric_with_label_values(&[p, t])
                .map(|g| g.get())
                .unwrap_or_default();
            let body = format!(
                "# HELP {LAST_SUCCESS} Last time every slot of a provider and tenant ended a run without failure (Unix time).\n# TYPE {LAST_SUCCESS} gauge\n{LAST_SUCCESS} {v}\n"
            );
            let url = format!(
                "{base}/metrics/job/rekey/provider@base64/{}/tenant@base64/{}",
                b64(p),
                b64(t)
            );
            put(&client, &url, body).await?;
        }
        Ok(())
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    if s.is_empty() {
        "=".into()
    } else {
        base64::engine::general_purpose::URL_SAFE.encode(s)
    }
}

/// One PUT. Messages show the URL without its user name and password
/// ([`crate::http::redact_url`]); the transport error is shown without its URL.
async fn put(client: &reqwest::Client, url: &str, body: String) -> Result<()> {
    let shown = crate::http::redact_url(url, crate::http::UrlPart::Path);
    let resp = client
        .put(url)
        .header("content-type", "text/plain; version=0.0.4")
        .body(body)
        .send()
        .await
        .map_err(|e| Error::unavailable(format!("pushgateway {shown}: {}", e.without_url())))?;
    if resp.status().is_redirection() {
        return Err(crate::http::redirect_error(
            &resp,
            &format!("pushgateway {shown}"),
            "configure the Pushgateway's own URL",
        ));
    }
    if !resp.status().is_success() {
        let status = resp.status();
        let text = crate::http::read_body(resp, "pushgateway")
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        return Err(Error::unavailable(format!(
            "pushgateway {shown}: HTTP {status}: {}",
            text.chars().take(300).collect::<String>()
        )));
    }
    Ok(())
}

fn encode(families: &[prometheus::proto::MetricFamily]) -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(families, &mut buf)
        .expect("text encoding of gathered metrics");
    String::from_utf8(buf).expect("text exposition is UTF-8")
}

/// The value of `name="..."` in an exposition label set (no escapes in our label values).
fn label(labels: &str, name: &str) -> Option<String> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let end = labels[start..].find('"')? + start;
    Some(labels[start..end].to_string())
}
