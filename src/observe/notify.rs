//! Webhook notifications: one message per failed slot, per slot stuck with an operation in
//! flight across runs, and per run that failed as a whole. `generic` posts the event as JSON; `slack` posts `{"text": ...}` (Slack
//! incoming webhooks, Mattermost, and most chat tools accept it). Each message is retried on
//! network errors and 5xx/429 with a per-attempt timeout. Payloads carry ids, never secrets.

use super::SlotFinished;
use crate::error::{Error, Result};
use serde::Serialize;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum WebhookFormat {
    #[default]
    Generic,
    Slack,
}

/// What a notification is about.
#[derive(Clone, Debug, Serialize)]
pub struct Notice {
    /// `slot_failed`, `slot_tampered`, `slot_stuck`, or `run_failed` (the run as a whole:
    /// slot, provider and tenant are empty).
    pub event: &'static str,
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
}

pub struct Notifier {
    url: String,
    format: WebhookFormat,
    timeout: Duration,
    attempts: u32,
    queued: Mutex<Vec<Notice>>,
}

impl Notifier {
    pub fn new(url: String, format: WebhookFormat, timeout: Duration, attempts: u32) -> Self {
        Notifier {
            url,
            format,
            timeout,
            attempts: attempts.max(1),
            queued: Mutex::new(Vec::new()),
        }
    }

    pub fn slot_finished(&self, e: &SlotFinished) {
        if e.result != "failed" {
            return;
        }
        if e.error_kind.as_deref() == Some("tampered") {
            return self.queue(Notice {
                event: "slot_tampered",
                time: e.time,
                run_id: e.run_id,
                slot: e.slot.clone(),
                provider: e.provider.clone(),
                tenant: e.tenant.clone(),
                error_kind: e.error_kind.clone(),
                detail: e.detail.clone(),
                action: format!(
                    "The stored record of slot {} was not written by rekey's key (forged, altered, or from a version before records were authenticated); rekey will not act on it. Find out who can write the store directory, then restore the record from a backup, or review it with `rekey store upgrade -c INVENTORY` if it predates the upgrade.",
                    e.slot
                ),
                host: gethostname::gethostname().to_string_lossy().into_owned(),
            });
        }
        self.queue(Notice {
            event: "slot_failed",
            time: e.time,
            run_id: e.run_id,
            slot: e.slot.clone(),
            provider: e.provider.clone(),
            tenant: e.tenant.clone(),
            error_kind: e.error_kind.clone(),
            detail: e.detail.clone(),
            action: format!(
                "Run `rekey status -c INVENTORY --only {}` and read the detail; fix the cause (credentials, permissions, reachability) and run `rekey apply --only {}`. The slot resumes where it stopped; no credential is lost.",
                e.slot, e.slot
            ),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
        });
    }

    pub fn queue(&self, n: Notice) {
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

    fn payload(&self, n: &Notice) -> serde_json::Value {
        match self.format {
            WebhookFormat::Generic => serde_json::to_value(n).unwrap_or_default(),
            WebhookFormat::Slack => {
                let what = match n.event {
                    "slot_failed" => "rotation failed",
                    "slot_tampered" => "tampered record",
                    "run_failed" => "run failed",
                    _ => "slot stuck",
                };
                if n.slot.is_empty() {
                    return serde_json::json!({
                        "text": format!(
                            ":rotating_light: rekey: {what} on {}: {}\n{}",
                            n.host, n.detail, n.action
                        )
                    });
                }
                serde_json::json!({
                    "text": format!(
                        ":rotating_light: rekey: {what} for slot `{}` (provider {}, tenant {}) on {}: {}\n{}",
                        n.slot, n.provider, n.tenant, n.host, n.detail, n.action
                    )
                })
            }
        }
    }

    async fn send(&self, n: &Notice) -> Result<()> {
        // rekey's shared settings: no redirect followed, no Referer (src/http.rs).
        let client = crate::http::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| Error::internal(format!("http client: {e}")))?;
        let body = self.payload(n);
        let mut delay = Duration::from_millis(200);
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match client.post(&self.url).json(&body).send().await {
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
