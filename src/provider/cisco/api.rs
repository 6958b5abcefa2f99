//! Cisco on the wire (docs/src/platforms/cisco.md): the token endpoint and its claims, the org's
//! hourly budget, the answers' shapes, and the one place answers become errors. The parsers use
//! no network, so the fuzz targets can feed them any answer.

use crate::error::{Error, ErrorKind, Result};
use crate::provider::budget::SharedBudget;
use crate::provider::cisco::CiscoSettings;
use crate::provider::session::{DecodeToken, Platform, status_error};
use crate::provider::token::Token;
use crate::provider::{ClientInfo, IssuedClient, Usage};
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use zeroize::Zeroizing;

/// The JWT claim that names the client a token was issued to.
pub const CLIENT_ID_CLAIM: &str = "https://schemas.cisco.com/iroh/identity/claims/oauth/client/id";
pub const TOKEN_PATH: &str = "/iroh/oauth2/token";
/// Longest rekey waits for its own hourly budget before reporting the slot as rate limited.
const MAX_BUDGET_WAIT: Duration = Duration::from_secs(30);
pub(super) const PER_PAGE: usize = 100;

/// Hourly limiters shared by every provider instance talking to one API base, like
/// [`crate::http::limiter_for`] for the per-second rate.
fn hourly_limiter_for(base_url: &str, allowed: u32) -> Arc<DefaultDirectRateLimiter> {
    static LIMITERS: OnceLock<Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>> =
        OnceLock::new();
    let map = LIMITERS.get_or_init(Default::default);
    let mut map = map.lock().expect("limiter map poisoned");
    map.entry(format!("{base_url}#{allowed}"))
        .or_insert_with(|| {
            let quota = Quota::per_hour(NonZeroU32::new(allowed).unwrap_or(NonZeroU32::MIN));
            Arc::new(RateLimiter::direct(quota))
        })
        .clone()
}

/// What Cisco adds to the shared session: its token endpoint, how to read its answer, and the
/// org's hourly request budget, paced beside the per-second rate: in this process at this
/// shard's part of rekey's budget, and across processes by the [`SharedBudget`] in the state
/// store when the engine gave one.
pub(crate) struct CiscoApi {
    org_budget: Arc<DefaultDirectRateLimiter>,
    /// This process's part: (budget − reserve) / shards.
    own_part: u32,
    org_budget_size: u32,
    shared: Option<SharedBudget>,
}

impl CiscoApi {
    pub(super) fn new(base_url: &str, settings: &CiscoSettings) -> Self {
        let own_part = settings.shard_hourly_budget();
        CiscoApi {
            org_budget: hourly_limiter_for(base_url, own_part),
            own_part,
            org_budget_size: settings.org_hourly_budget,
            shared: None,
        }
    }

    pub(super) fn share_through(&mut self, shared: SharedBudget) {
        self.shared = Some(shared);
    }
}

impl Platform for CiscoApi {
    const TOKEN_PATH: &'static str = TOKEN_PATH;
    const DECODE_TOKEN: DecodeToken = decode_token;

    /// Takes one request from the hourly org budget. When that budget is spent for longer than
    /// [`MAX_BUDGET_WAIT`], the call fails as rate limited (nothing was sent) instead of holding
    /// the run for up to an hour.
    async fn pace(&self, what: &str) -> Result<()> {
        // Kept in the state store: the shared ledger holds both the whole and this shard's part
        // (its rolling hour, like Cisco's; the in-memory limiter below refills evenly instead).
        if let Some(shared) = &self.shared {
            return shared.take(what).await;
        }
        if let Err(not_until) = self.org_budget.check() {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            if wait > MAX_BUDGET_WAIT {
                return Err(Error::new(
                    ErrorKind::RateLimited,
                    format!(
                        "{what}: Cisco hourly budget spent in this process: its part ({} of the org's {}) is used; next request in {}s",
                        self.own_part,
                        self.org_budget_size,
                        wait.as_secs()
                    ),
                )
                .with_retry_after(Some(wait))
                .not_applied());
            }
            self.org_budget.until_ready().await;
        }
        Ok(())
    }
}

/// `template` (`paths.client`) with `{id}` replaced by the percent-encoded client id.
pub(super) fn client_path(template: &str, id: &str) -> String {
    let encoded: String = id
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    template.replace("{id}", &encoded)
}

/// What a token answer means: a refusal, a temporary failure, or a token. No network, so the
/// fuzz targets can feed it any answer.
pub(crate) fn decode_token(
    status: StatusCode,
    wait: Option<Duration>,
    body: &[u8],
    client_id: &str,
) -> Result<Token> {
    let what = "token request";
    let body = classify(status, wait, body, what).map_err(|e| {
        if matches!(e.kind(), ErrorKind::Unauthorized | ErrorKind::Forbidden)
            || status == StatusCode::BAD_REQUEST
        {
            Error::new(
                ErrorKind::Unauthorized,
                format!("{what}: client {} was refused: {}", client_id, e.message()),
            )
        } else {
            e
        }
    })?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|_| Error::malformed(format!("{what}: the answer is not JSON")))?;
    let Some(access) = v.get("access_token").and_then(Value::as_str) else {
        return Err(Error::malformed(format!(
            "{what}: the answer has no access_token"
        )));
    };
    Token::from_response(
        access.to_string(),
        v.get("expires_in").and_then(Value::as_i64),
    )
}

/// A create answer → the issued client.
pub(crate) fn decode_created(bytes: &[u8], spec_name: &str) -> Result<IssuedClient> {
    let what = "create client";
    // The body IS the secret: parse by hand so no serde message can quote it.
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|_| Error::malformed(format!("{what}: the answer is not JSON (truncated?)")))?;
    let id = v.get("id").and_then(Value::as_str).unwrap_or_default();
    let password = v
        .get("password")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if id.is_empty() || password.is_empty() {
        return Err(Error::malformed(format!(
            "{what}: the answer has no client id or password"
        )));
    }
    Ok(IssuedClient {
        client_id: id.to_string(),
        object_id: id.to_string(),
        name: v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(spec_name)
            .to_string(),
        secret: Secret::new(password),
    })
}

/// A list answer → its entries (each read by [`client_info`]).
pub(crate) fn decode_list(body: &[u8]) -> Result<Vec<Value>> {
    let what = "list clients";
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| Error::malformed(format!("{what}: the answer is not JSON (truncated?)")))?;
    // Inferred endpoint: accept a bare array or the usual envelopes.
    let list = match v {
        Value::Array(a) => a,
        Value::Object(mut o) => ["data", "items", "clients", "results"]
            .iter()
            .find_map(|k| match o.remove(*k) {
                Some(Value::Array(a)) => Some(a),
                _ => None,
            })
            .ok_or_else(|| Error::malformed(format!("{what}: the answer holds no list")))?,
        _ => {
            return Err(Error::malformed(format!(
                "{what}: the answer holds no list"
            )));
        }
    };
    Ok(list)
}

pub(crate) fn client_info(v: &Value) -> Result<ClientInfo> {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let id = s("id")
        .or_else(|| s("client-id"))
        .or_else(|| s("client_id"))
        .ok_or_else(|| Error::malformed("list clients: an entry has no id"))?;
    let time = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| s(k))
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|d| d.with_timezone(&Utc))
    };
    Ok(ClientInfo {
        client_id: id.to_string(),
        object_id: id.to_string(),
        name: s("name").unwrap_or_default().to_string(),
        created_at: time(&["created-at", "created_at", "createdAt"]),
        // The last-used field is inferred, not documented (docs/src/platforms/cisco.md): an
        // answer without it reports no usage, and draining falls back to the grace alone.
        usage: last_used(v),
    })
}

/// A client's use from its last-used field: a time, `null` (never used), or absent (the
/// platform reports nothing). A value that is not a time reports nothing either: it is never
/// taken for "never used".
fn last_used(v: &Value) -> Usage {
    const KEYS: [&str; 3] = ["last-used-at", "last_used_at", "lastUsedAt"];
    match KEYS.iter().find_map(|k| v.get(k)) {
        None => Usage::Unreported,
        Some(Value::Null) => Usage::Never,
        Some(t) => t
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or(Usage::Unreported, |at| Usage::LastToken {
                at: at.with_timezone(&Utc),
                count: None,
            }),
    }
}

/// The one place Cisco answers become errors. Error bodies (`{"error", "error_description"}`)
/// contribute their code and a short description; a success body is returned untouched and is
/// never put into a message (for a create it is the secret).
pub(crate) fn classify(
    status: StatusCode,
    wait: Option<Duration>,
    body: &[u8],
    what: &str,
) -> Result<Zeroizing<Vec<u8>>> {
    if status.is_success() {
        return Ok(Zeroizing::new(body.to_vec()));
    }
    let detail = serde_json::from_slice::<Value>(body)
        .ok()
        .map(|v| {
            // Server text loses every secret known here, and those the answer carries.
            let scrubber = crate::scrub::Scrubber::known().answer(&v);
            let field = |k: &str| {
                v.get(k)
                    .and_then(Value::as_str)
                    .map(|s| scrubber.scrub(s).chars().take(200).collect::<String>())
            };
            match (
                field("error"),
                field("error_description").or_else(|| field("message")),
            ) {
                (Some(c), Some(d)) => format!(" ({c}: {d})"),
                (Some(c), None) | (None, Some(c)) => format!(" ({c})"),
                (None, None) => String::new(),
            }
        })
        .unwrap_or_default();
    Err(match status {
        StatusCode::CONFLICT => Error::new(
            ErrorKind::Conflict,
            format!("{what}: HTTP {}{detail}", status.as_u16()),
        ),
        // 404 included (Invalid): only delete_client may read it as "gone", after checking.
        _ => status_error(status, wait, what, &detail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        assert!(classify(StatusCode::OK, None, b"{}", "x").is_ok());
        let e = classify(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(7)),
            b"",
            "x",
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(!e.maybe_applied());
        let e = classify(StatusCode::BAD_GATEWAY, None, b"<html>", "x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.maybe_applied());
        let e = classify(
            StatusCode::FORBIDDEN,
            None,
            br#"{"error":"invalid_scope","error_description":"missing scope oauth"}"#,
            "create client",
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Forbidden);
        assert!(e.to_string().contains("invalid_scope"), "{e}");
        assert_eq!(
            classify(StatusCode::NOT_FOUND, None, b"", "x")
                .unwrap_err()
                .kind(),
            ErrorKind::Invalid,
            "a 404 page must never mean 'client already deleted'"
        );
    }

    #[test]
    fn list_entries_accept_several_spellings() {
        let v = serde_json::json!({"id": "client-1", "name": "rekey-a-g1", "created-at": "2024-01-02T03:04:05Z"});
        let c = client_info(&v).unwrap();
        assert_eq!(c.client_id, "client-1");
        assert!(c.created_at.is_some());
        assert!(client_info(&serde_json::json!({"name": "x"})).is_err());
    }
}
