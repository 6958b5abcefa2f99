//! Webhook notifications, each kind selectable (`--webhook-events`): one message per slot whose
//! new credential became current (`rotated`: the event a consumer's reload hook needs), per
//! previous client deleted once its drain was done (`retired`), per failed slot, per slot
//! stuck with an operation in flight across runs, per slot whose previous client is held
//! because consumers still use it (`draining_in_use`), and per run that failed as a whole.
//! The formats are in [`payload`]: `generic` (the notice as JSON), `cloudevents` (CloudEvents
//! 1.0 structured mode) and `slack` (`{"text": ...}`). Each message is retried on network
//! errors and 5xx/429 with a per-attempt timeout, with the same body (and so the same event
//! id). Payloads carry ids and fingerprints, never secrets (docs/src/notifications.md).

mod payload;

use super::{SlotFinished, StateChanged};
use crate::error::{Error, Result};
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum WebhookFormat {
    /// The notice as a JSON object.
    #[default]
    Generic,
    /// A CloudEvents 1.0 event in structured mode, the notice as its `data`.
    Cloudevents,
    /// `{"text": ...}` (Slack incoming webhooks, Mattermost, most chat tools).
    Slack,
}

/// The kinds of notification a webhook can be sent (`--webhook-events`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum WebhookEvent {
    /// A new credential became current (`rotated`; the first one of a slot too).
    Rotated,
    /// A previous client was deleted at the provider, its drain or grace done, or its slot
    /// retired (`retired`).
    Retired,
    /// A slot failed (`slot_failed`; `slot_tampered` when its record fails authentication).
    Failed,
    /// A slot left with an operation in flight that no run holds (`slot_stuck`).
    Stuck,
    /// A run failed as a whole, before working its slots (`run_failed`).
    #[value(name = "run_failed")]
    RunFailed,
    /// A previous client is kept past its grace because consumers still use it
    /// (`draining_in_use`; docs/src/protocol.md, "Draining").
    #[value(name = "draining_in_use")]
    DrainingInUse,
}

impl WebhookEvent {
    /// What `--webhook-events` selects unless told otherwise: everything that needs a person
    /// (`rotated` and `retired` are news for consumers, asked for by name).
    pub const DEFAULT: &'static str = "failed,stuck,run_failed,draining_in_use";

    /// The kind of a notice's `event`.
    fn of(event: &str) -> WebhookEvent {
        match event {
            "rotated" => WebhookEvent::Rotated,
            "retired" => WebhookEvent::Retired,
            "slot_stuck" => WebhookEvent::Stuck,
            "run_failed" => WebhookEvent::RunFailed,
            "draining_in_use" => WebhookEvent::DrainingInUse,
            _ => WebhookEvent::Failed,
        }
    }
}

/// What a notification is about.
#[derive(Clone, Debug, Serialize)]
pub struct Notice {
    /// `rotated`, `retired`, `slot_failed`, `slot_tampered`, `slot_stuck`, `draining_in_use`,
    /// or `run_failed` (the run as a whole: slot, provider and tenant are empty).
    pub event: &'static str,
    /// Unique per event: `<run id>-<n>`, n counting this process's notices from 1. A retried
    /// delivery keeps it, so a receiver can drop duplicates.
    pub id: String,
    pub time: chrono::DateTime<chrono::Utc>,
    pub run_id: uuid::Uuid,
    pub slot: String,
    pub provider: String,
    pub tenant: String,
    pub error_kind: Option<String>,
    pub detail: String,
    /// What the on-call person should do.
    pub action: String,
    pub host: String,
    /// The credential the event is about (never its secret): `rotated`, the one now current;
    /// `retired`, the one deleted; the others, the slot's current one when it has one.
    /// `draining_client_ids`: the previous clients still alive for their grace period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub draining_client_ids: Vec<String>,
}

/// A notice about a slot's end of run: the slot, its place and its current credential.
fn slot_notice(
    e: &SlotFinished,
    event: &'static str,
    error_kind: Option<String>,
    detail: String,
    action: String,
) -> Notice {
    Notice {
        event,
        time: e.time,
        run_id: e.run_id,
        slot: e.slot.clone(),
        provider: e.provider.clone(),
        tenant: e.tenant.clone(),
        error_kind,
        detail,
        action,
        host: host(),
        generation: e.generation,
        fingerprint: e.fingerprint.clone(),
        ..Notice::none()
    }
}

impl Notice {
    /// A notice with no event and nothing in it, for `..Notice::none()`.
    pub fn none() -> Notice {
        Notice {
            event: "",
            id: String::new(),
            time: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            run_id: uuid::Uuid::nil(),
            slot: String::new(),
            provider: String::new(),
            tenant: String::new(),
            error_kind: None,
            detail: String::new(),
            action: String::new(),
            host: String::new(),
            generation: None,
            client_id: None,
            fingerprint: None,
            draining_client_ids: Vec::new(),
        }
    }
}

pub struct Notifier {
    url: String,
    format: WebhookFormat,
    timeout: Duration,
    attempts: u32,
    events: std::collections::BTreeSet<WebhookEvent>,
    queued: Mutex<Vec<Notice>>,
    /// Notices queued so far (their ids' `n`).
    count: AtomicU64,
    /// The CloudEvents `source`: `rekey/<host>`, with `/<instance>` when one is set.
    source: String,
}

impl Notifier {
    pub fn new(
        url: String,
        format: WebhookFormat,
        timeout: Duration,
        attempts: u32,
        events: &[WebhookEvent],
        instance: &str,
    ) -> Self {
        let mut source = format!("rekey/{}", payload::uri_segment(&host()));
        if !instance.is_empty() {
            source = format!("{source}/{}", payload::uri_segment(instance));
        }
        Notifier {
            url,
            format,
            timeout,
            attempts: attempts.max(1),
            events: events.iter().copied().collect(),
            queued: Mutex::new(Vec::new()),
            count: AtomicU64::new(0),
            source,
        }
    }

    /// A slot's state changed: a promotion (the pending credential became current) is a
    /// `rotated` notice, with what consumers now read; each previous client deleted in the
    /// change is a `retired` notice.
    pub fn state_changed(&self, e: &StateChanged) {
        for r in &e.retired {
            self.queue(Notice {
                event: "retired",
                time: e.time,
                run_id: e.run_id,
                slot: e.slot.clone(),
                provider: e.provider.clone(),
                tenant: e.tenant.clone(),
                detail: format!(
                    "g{} deleted at the provider: client {}, secret {}",
                    r.generation, r.client_id, r.fingerprint
                ),
                action: format!(
                    "Nothing to do: slot {}'s previous client {} no longer works; a consumer still using it must read the slot's current pair.",
                    e.slot, r.client_id
                ),
                host: host(),
                generation: Some(r.generation),
                client_id: Some(r.client_id.clone()),
                fingerprint: Some(r.fingerprint.clone()).filter(|f| !f.is_empty()),
                draining_client_ids: e.draining_client_ids.clone(),
                ..Notice::none()
            });
        }
        let promoted = matches!(e.from, "pending" | "promoting")
            && matches!(e.to, "current" | "draining" | "draining-in-use")
            && e.reason.is_empty()
            && e.generation.is_some();
        if !promoted {
            return;
        }
        self.queue(Notice {
            event: "rotated",
            id: String::new(),
            time: e.time,
            run_id: e.run_id,
            slot: e.slot.clone(),
            provider: e.provider.clone(),
            tenant: e.tenant.clone(),
            error_kind: None,
            detail: format!(
                "g{} is current: client {}, secret {}",
                e.generation.unwrap_or_default(),
                e.client_id.as_deref().unwrap_or("-"),
                e.fingerprint.as_deref().unwrap_or("-")
            ),
            action: format!(
                "Consumers of slot {} should reload its pair now; the previous one stays valid for the slot's grace period.",
                e.slot
            ),
            host: host(),
            generation: e.generation,
            client_id: e.client_id.clone(),
            fingerprint: e.fingerprint.clone(),
            draining_client_ids: e.draining_client_ids.clone(),
        });
    }

    pub fn slot_finished(&self, e: &SlotFinished) {
        if !e.held.is_empty() {
            self.queue(slot_notice(
                e,
                "draining_in_use",
                None,
                e.held.join("; "),
                format!(
                    "A consumer still uses slot {}'s previous client after its grace, so rekey keeps it. Find the consumers that have not reloaded (pods that read the pair once, CI jobs, cron hosts) and restart them so they read the current pair; the next run deletes the old client once the platform shows it quiet for drain_quiet. See the runbook, RekeyDrainingInUse (docs/src/runbook.md).",
                    e.slot
                ),
            ));
        }
        if e.result != "failed" {
            return;
        }
        if e.error_kind.as_deref() == Some("tampered") {
            return self.queue(slot_notice(
                e,
                "slot_tampered",
                e.error_kind.clone(),
                e.detail.clone(),
                format!(
                    "The stored record of slot {} was not written by rekey's key (forged, altered, or from a version before records were authenticated); rekey will not act on it. Find out who can write the store directory, then restore the record from a backup, or review it with `rekey store upgrade -c INVENTORY` if it predates the upgrade.",
                    e.slot
                ),
            ));
        }
        self.queue(slot_notice(
            e,
            "slot_failed",
            e.error_kind.clone(),
            e.detail.clone(),
            format!(
                "Run `rekey status -c INVENTORY --only {}` and read the detail; fix the cause (credentials, permissions, reachability) and run `rekey apply --only {}`. The slot resumes where it stopped; no credential is lost.",
                e.slot, e.slot
            ),
        ));
    }

    /// Queues `n` if its kind is among this webhook's events, with its id.
    pub fn queue(&self, mut n: Notice) {
        if !self.events.contains(&WebhookEvent::of(n.event)) {
            return;
        }
        let seq = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        n.id = format!("{}-{seq}", n.run_id);
        self.queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(n);
    }

    /// Sends everything queued. Returns how many could not be delivered.
    pub async fn flush(&self) -> usize {
        let notices = std::mem::take(&mut *self.queued.lock().unwrap_or_else(|p| p.into_inner()));
        let mut failed = 0;
        for n in &notices {
            if let Err(e) = self.send(n).await {
                tracing::error!(slot = %n.slot, error = %e, "webhook notification not delivered");
                failed += 1;
            }
        }
        failed
    }

    async fn send(&self, n: &Notice) -> Result<()> {
        // rekey's shared settings: no redirect followed, no Referer (src/http.rs).
        let client = crate::http::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| Error::internal(format!("http client: {e}")))?;
        let (content_type, body) = payload::body(self.format, &self.source, n);
        let mut delay = Duration::from_millis(200);
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.clone())
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().is_redirection() => {
                    return Err(crate::http::redirect_error(
                        &r,
                        "webhook",
                        "configure the webhook's final URL",
                    ));
                }
                Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                    last = format!("HTTP {}", r.status());
                }
                Ok(r) => {
                    return Err(Error::invalid(format!(
                        "webhook refused: HTTP {}",
                        r.status()
                    )));
                }
                // Without the URL: a Slack webhook URL is itself a secret.
                Err(e) => last = e.without_url().to_string(),
            }
            if attempt < self.attempts {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
        Err(Error::unavailable(format!(
            "webhook: {} attempts failed, last: {last}",
            self.attempts
        )))
    }
}

/// This machine's name (a pod's name in Kubernetes), for `host` and the CloudEvents `source`.
pub(crate) fn host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}
