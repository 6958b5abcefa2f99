//! `type = "cisco"`: Cisco XDR / Threat Response, the IROH API (protocols/cisco.md).
//!
//! Token exchange at `/iroh/oauth2/token` (Basic + form, 10-minute tokens, no refresh token).
//! Clients are created with `POST /iroh/oauth2-clients/clients` (documented); list and delete
//! use the paths `paths.clients` and `paths.client` (inferred REST shapes, configurable). There
//! is no password reset, so Cisco slots rotate by `alternate` only: the engine deletes and
//! re-creates where Taegis would rotate a secret in place.
//!
//! Requests are paced twice: per second (`rate_limit`) and per hour against the organisation's
//! shared budget (`org_hourly_budget`, 8,000 by default, of which rekey uses 90%).

use crate::config::check::Checker;
use crate::config::check::join;
use crate::config::tree::Table;
use crate::error::{Error, ErrorKind, Result};
use crate::http::{self, classify_transport, read_body, retry_after};
use crate::provider::token::{Token, TokenCache, jwt_claims};
use crate::provider::{
    Bootstrap, ClientInfo, ClientSpec, IssuedClient, Provider, ProviderCapabilities,
};
use crate::secret::{ClientPair, Secret};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use zeroize::Zeroizing;

/// The JWT claim that names the client a token was issued to.
pub const CLIENT_ID_CLAIM: &str = "https://schemas.cisco.com/iroh/identity/claims/oauth/client/id";
/// The scope a bootstrap client needs to manage other clients.
pub const CISCO_OAUTH_SCOPE: &str = "oauth";
pub const TOKEN_PATH: &str = "/iroh/oauth2/token";
pub const DEFAULT_CLIENTS_PATH: &str = "/iroh/oauth2-clients/clients";
pub const DEFAULT_CLIENT_PATH: &str = "/iroh/oauth2-clients/clients/{id}";
/// Cisco's documented limit: requests per rolling hour per organisation.
pub const DEFAULT_ORG_HOURLY_BUDGET: u32 = 8000;
/// Share of the org budget rekey allows itself; the rest is left to the org's other clients.
const BUDGET_SHARE: f64 = 0.9;
/// Longest rekey waits for its own hourly budget before reporting the slot as rate limited.
const MAX_BUDGET_WAIT: Duration = Duration::from_secs(30);
const PER_PAGE: usize = 100;

/// Cisco regions: (name, API base). See protocols/cisco.md.
pub const CISCO_REGIONS: &[(&str, &str)] = &[
    ("us", "https://visibility.amp.cisco.com"),
    ("eu", "https://visibility.eu.amp.cisco.com"),
    ("apjc", "https://visibility.apjc.amp.cisco.com"),
];

#[derive(Clone, Debug)]
pub struct CiscoSettings {
    /// API base URL, from `region` or `url`; no trailing slash.
    pub base_url: String,
    pub region: Option<String>,
    /// List (GET) path of clients. Inferred, not documented.
    pub clients_path: String,
    /// Path of one client (DELETE); `{id}` is replaced by the client id. Inferred.
    pub client_path: String,
    /// `availability` of created clients (default `org`).
    pub availability: String,
    /// The org's hourly request budget (default 8000); rekey uses 90% of it.
    pub org_hourly_budget: u32,
}

impl CiscoSettings {
    /// Settings for `base_url` with every default.
    pub fn with_url(base_url: impl Into<String>) -> Self {
        CiscoSettings {
            base_url: base_url.into(),
            region: None,
            clients_path: DEFAULT_CLIENTS_PATH.into(),
            client_path: DEFAULT_CLIENT_PATH.into(),
            availability: "org".into(),
            org_hourly_budget: DEFAULT_ORG_HOURLY_BUDGET,
        }
    }
}

/// How the inventory's checks treat a Cisco slot: the org comes with the credential (a slot
/// that names no tenant records "org"), scopes (alias roles) are required, no password reset,
/// and the "oauth" scope for a bootstrap client.
pub const SLOT_RULES: crate::provider::SlotRules = crate::provider::SlotRules {
    platform: "Cisco",
    tenant: crate::provider::TenantRule::Optional { fallback: "org" },
    grants_key: "scopes",
    grants_alias: Some("roles"),
    grants_required: true,
    grants_example: "[\"enrich:read\", \"inspect:read\"]",
    in_place_rotation: false,
    manager_grant: crate::provider::Grant {
        id: CISCO_OAUTH_SCOPE,
        name: None,
    },
};

/// Keys a `type = "cisco"` provider has beyond the common ones.
pub(crate) const SETTINGS_KEYS: &[&str] = &[
    "region",
    "url",
    "paths",
    "availability",
    "org_hourly_budget",
];

/// Parses the Cisco-specific keys of `[providers.NAME]`, recording every problem in `c`.
pub(crate) fn parse_settings(c: &mut Checker, t: &Table, path: &str) -> CiscoSettings {
    let mut s = CiscoSettings::with_url(String::new());
    let region = c.string(t, path, "region");
    let url = c.string(t, path, "url");
    match (region, url) {
        (Some(_), Some((_, e))) => c.err(
            e.line,
            join(path, "url"),
            "give either region or url, not both",
        ),
        (Some((r, e)), None) => {
            let lower = r.to_ascii_lowercase();
            match CISCO_REGIONS.iter().find(|(n, _)| *n == lower) {
                Some((n, u)) => {
                    s.base_url = u.to_string();
                    s.region = Some(n.to_string());
                }
                None => c.err(
                    e.line,
                    join(path, "region"),
                    format!(
                        "unknown Cisco region \"{r}\"; valid regions: us, eu, apjc (or give url = \"https://...\")"
                    ),
                ),
            }
        }
        (None, Some((u, e))) => {
            if let Some(base) = c.base_url(u, e, path) {
                s.base_url = base;
            }
        }
        (None, None) => {
            if t.get("region").is_none() && t.get("url").is_none() {
                c.missing(
                    t,
                    path,
                    "region",
                    " (a Cisco region: \"us\", \"eu\" or \"apjc\", or url = \"https://...\")",
                );
            }
        }
    }
    if let Some(paths) = c.table(t, path, "paths") {
        let pp = join(path, "paths");
        c.known_keys(paths, &pp, &["clients", "client"]);
        if let Some((v, e)) = c.string(paths, &pp, "clients") {
            if v.starts_with('/') && !v.contains(['?', '#']) {
                s.clients_path = v.trim_end_matches('/').to_string();
            } else {
                c.err(
                    e.line,
                    join(&pp, "clients"),
                    format!("\"{v}\" must be a path starting with '/', without '?' or '#'"),
                );
            }
        }
        if let Some((v, e)) = c.string(paths, &pp, "client") {
            if v.starts_with('/') && v.contains("{id}") && !v.contains(['?', '#']) {
                s.client_path = v.to_string();
            } else {
                c.err(
                    e.line,
                    join(&pp, "client"),
                    format!(
                        "\"{v}\" must be a path starting with '/' that contains {{id}} (where the client id goes)"
                    ),
                );
            }
        }
    }
    if let Some((v, e)) = c.string(t, path, "availability") {
        if v.trim().is_empty() {
            c.err(
                e.line,
                join(path, "availability"),
                "must not be empty (Cisco documents \"org\")",
            );
        } else {
            s.availability = v.to_string();
        }
    }
    if let Some(n) = c.integer(t, path, "org_hourly_budget", 10, 10_000_000) {
        s.org_hourly_budget = n as u32;
    }
    s
}

/// Hourly limiters shared by every provider instance talking to one API base, like
/// [`http::limiter_for`] for the per-second rate.
fn hourly_limiter_for(base_url: &str, budget: u32) -> Arc<DefaultDirectRateLimiter> {
    static LIMITERS: OnceLock<Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>> =
        OnceLock::new();
    let map = LIMITERS.get_or_init(Default::default);
    let mut map = map.lock().expect("limiter map poisoned");
    map.entry(format!("{base_url}#{budget}"))
        .or_insert_with(|| {
            let allowed = ((budget as f64 * BUDGET_SHARE) as u32).max(1);
            let quota = Quota::per_hour(NonZeroU32::new(allowed).unwrap_or(NonZeroU32::MIN));
            Arc::new(RateLimiter::direct(quota))
        })
        .clone()
}

pub struct CiscoProvider {
    name: String,
    base_url: String,
    clients_path: String,
    client_path: String,
    availability: String,
    bootstrap: Bootstrap,
    http: reqwest::Client,
    timeout: Duration,
    limiter: Arc<DefaultDirectRateLimiter>,
    org_budget: Arc<DefaultDirectRateLimiter>,
    org_budget_size: u32,
    tokens: TokenCache,
}

impl CiscoProvider {
    /// `name` is the inventory's name for this provider (used in messages only).
    pub fn new(
        name: &str,
        settings: &CiscoSettings,
        bootstrap: Bootstrap,
        rate_limit: f64,
        timeout: Duration,
    ) -> Result<Self> {
        let base_url = settings.base_url.trim_end_matches('/').to_string();
        http::check_url(&base_url)?;
        Ok(CiscoProvider {
            name: name.to_string(),
            limiter: http::limiter_for(&base_url, rate_limit),
            org_budget: hourly_limiter_for(&base_url, settings.org_hourly_budget),
            org_budget_size: settings.org_hourly_budget,
            base_url,
            clients_path: settings.clients_path.clone(),
            client_path: settings.client_path.clone(),
            availability: settings.availability.clone(),
            bootstrap,
            http: http::client(),
            timeout,
            tokens: TokenCache::default(),
        })
    }

    /// Uses `http` instead of the process-wide client (a provider with its own `ca_cert`).
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// Waits for the per-second limiter and takes one request from the hourly org budget.
    /// When that budget is spent for longer than [`MAX_BUDGET_WAIT`], the call fails as rate
    /// limited (nothing was sent) instead of holding the run for up to an hour.
    async fn pace(&self, what: &str) -> Result<()> {
        self.limiter.until_ready().await;
        if let Err(not_until) = self.org_budget.check() {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            if wait > MAX_BUDGET_WAIT {
                return Err(Error::new(
                    ErrorKind::RateLimited,
                    format!(
                        "{what}: rekey's share of the org's hourly request budget ({}% of {}) is spent; next request in {}s",
                        (BUDGET_SHARE * 100.0) as u32,
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

    /// One token exchange. Used for the bootstrap token and to verify new pairs.
    async fn fetch_token(&self, pair: &ClientPair) -> Result<Token> {
        let what = "token request";
        self.pace(what).await?;
        let (status, wait, body) = http::client_credentials(
            &self.http,
            &format!("{}{TOKEN_PATH}", self.base_url),
            pair,
            self.timeout,
            what,
        )
        .await?;
        decode_token(status, wait, &body, &pair.client_id)
    }

    /// One API call with the bootstrap credential. A 401 (expired or revoked token) fetches a
    /// new token once and sends the request again: the gateway refused it before running it.
    /// Returns the body of a 2xx answer; everything else goes through [`classify`].
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let (status, wait, bytes) = self.send(method, url, body, what).await?;
        classify(status, wait, &bytes, what)
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<(StatusCode, Option<Duration>, Zeroizing<Vec<u8>>)> {
        let boot = self
            .bootstrap
            .get()
            .map_err(|e| e.context(format!("provider {}: bootstrap credential", self.name)))?;
        let mut refreshed = false;
        loop {
            let token = self
                .tokens
                .get(&boot, || self.fetch_token(&boot))
                .await
                .map_err(|e| e.context(format!("provider {}: bootstrap credential", self.name)))?;
            self.pace(what).await?;
            let mut req = self
                .http
                .request(method.clone(), url)
                .bearer_auth(token.expose())
                .header(reqwest::header::ACCEPT, "application/json")
                .timeout(self.timeout);
            if let Some(b) = body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.to_string());
            }
            let resp = req.send().await.map_err(|e| classify_transport(e, what))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                tracing::debug!(provider = %self.name, "token refused; fetching a new one");
                self.tokens.invalidate(&boot, &token).await;
                refreshed = true;
                continue;
            }
            let wait = retry_after(&resp);
            let bytes = read_body(resp, what).await?;
            return Ok((status, wait, bytes));
        }
    }

    fn client_url(&self, id: &str) -> String {
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
        format!(
            "{}{}",
            self.base_url,
            self.client_path.replace("{id}", &encoded)
        )
    }

    async fn list_page(&self, offset: usize) -> Result<Vec<Value>> {
        let what = "list clients";
        let url = format!(
            "{}{}?limit={PER_PAGE}&offset={offset}",
            self.base_url, self.clients_path
        );
        let body = self.call(Method::GET, &url, None, what).await?;
        decode_list(&body)
    }

    async fn list_all(&self) -> Result<Vec<ClientInfo>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        loop {
            let page = self.list_page(out.len()).await?;
            let got = page.len();
            let before = out.len();
            for item in page {
                let info = client_info(&item)?;
                if seen.insert(info.client_id.clone()) {
                    out.push(info);
                }
            }
            // A short page ends the list; so does a page with nothing new (a server that
            // ignores limit/offset and sends everything every time).
            if got < PER_PAGE || out.len() == before {
                break;
            }
            if out.len() > 1_000_000 {
                return Err(Error::malformed("list clients: paging does not end"));
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Provider for CiscoProvider {
    fn kind(&self) -> &'static str {
        "cisco"
    }

    fn capabilities(&self) -> ProviderCapabilities {
        // No password reset exists: a new password means a new client.
        ProviderCapabilities {
            in_place_rotation: false,
            caller_chosen_secret: false,
        }
    }

    async fn create_client(&self, _tenant: &str, spec: &ClientSpec) -> Result<IssuedClient> {
        let what = "create client";
        let body = serde_json::json!({
            "name": spec.name,
            "description": "Managed by rekey; do not edit or delete by hand.",
            "scopes": spec.roles,
            "grants": ["client-creds"],
            "availability": self.availability,
        });
        let url = format!("{}{}", self.base_url, self.clients_path);
        let bytes = self.call(Method::POST, &url, Some(&body), what).await?;
        decode_created(&bytes, &spec.name)
    }

    async fn rotate_secret(
        &self,
        _tenant: &str,
        client: &str,
        _chosen: Option<&Secret>,
    ) -> Result<IssuedClient> {
        Err(Error::invalid(format!(
            "provider {}: Cisco has no password reset; client {client} cannot be rotated in place (use strategy = \"alternate\")",
            self.name
        )))
    }

    async fn delete_client(&self, _tenant: &str, client: &str) -> Result<()> {
        let what = "delete client";
        let url = self.client_url(client);
        let (status, wait, bytes) = self.send(Method::DELETE, &url, None, what).await?;
        if status != StatusCode::NOT_FOUND {
            return classify(status, wait, &bytes, what).map(|_| ());
        }
        // A 404 may be a wrong path as well as a missing client. Believe it only when the list
        // works and does not hold the client either.
        let listed = self.list_all().await.map_err(|e| {
            e.context(format!(
                "{what}: {client} answered 404 and the list cannot confirm it is gone"
            ))
        })?;
        if listed.iter().any(|c| c.client_id == client) {
            return Err(Error::invalid(format!(
                "{what}: the server answered 404 for client {client}, which it still lists: check paths.client of provider {}",
                self.name
            )));
        }
        Err(Error::not_found(format!("{what}: client {client} is gone")))
    }

    async fn find_clients(&self, _tenant: &str, name_prefix: &str) -> Result<Vec<ClientInfo>> {
        Ok(self
            .list_all()
            .await?
            .into_iter()
            .filter(|c| c.name.starts_with(name_prefix))
            .collect())
    }

    async fn verify(&self, _tenant: &str, pair: &ClientPair) -> Result<()> {
        // Cisco tokens are bound to the org of the credential; the tenant plays no part.
        let token = self.fetch_token(pair).await?;
        let claimed = jwt_claims(token.value.expose()).and_then(|c| {
            c.get(CLIENT_ID_CLAIM)
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        match claimed {
            Some(id) if id == pair.client_id => {
                if self.bootstrap.holds(pair) {
                    // The start-up check of the bootstrap credential: its token serves the calls
                    // that follow (and the org's hourly budget is spared a second exchange).
                    self.tokens.offer(pair, token).await;
                }
                Ok(())
            }
            Some(id) => Err(Error::new(
                ErrorKind::Unauthorized,
                format!(
                    "token request: the token for client {} names client {id}: refusing the pair",
                    pair.client_id
                ),
            )),
            None => Err(Error::new(
                ErrorKind::Unauthorized,
                format!(
                    "token request: the token for client {} carries no client-id claim, so it cannot prove the pair",
                    pair.client_id
                ),
            )),
        }
    }
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
        last_used: time(&["last-used-at", "last_used_at", "lastUsedAt"]),
    })
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
    let msg = format!("{what}: HTTP {}{detail}", status.as_u16());
    Err(match status.as_u16() {
        401 => Error::new(ErrorKind::Unauthorized, msg),
        403 => Error::new(ErrorKind::Forbidden, msg),
        409 => Error::new(ErrorKind::Conflict, msg),
        429 => Error::new(ErrorKind::RateLimited, msg).with_retry_after(wait),
        408 | 500..=599 => Error::new(ErrorKind::Unavailable, msg).with_retry_after(wait),
        // 404 included: only delete_client may read it as "gone", after checking.
        _ => Error::new(ErrorKind::Invalid, msg),
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
