//! `type = "taegis"`: Secureworks Taegis XDR (protocols/taegis.md).
//!
//! Token exchange at `/auth/api/v2/auth/token` (Basic + form), GraphQL at `/graphql` with
//! `X-Tenant-Context` on every call. Documents use inline, escaped literal arguments rather than
//! variables: the real server's argument scalar types (`ID!` vs `String!`) are not published, and
//! a literal fits either without an introspection round trip per run.

use crate::config::check::Checker;
use crate::config::check::{join, list};
use crate::config::tree::Table;
use crate::error::{Error, ErrorKind, Result};
use crate::http::{self, classify_transport, read_body, retry_after};
use crate::provider::token::{Token, TokenCache};
use crate::provider::{
    Bootstrap, ClientInfo, ClientSpec, IssuedClient, Provider, ProviderCapabilities,
};
use crate::scrub::Scrubber;
use crate::secret::{ClientPair, Secret};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use governor::DefaultDirectRateLimiter;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

const PER_PAGE: usize = 100;
const CLIENT_FIELDS: &str = "id clientID name createdAt tokenRequestTime";

/// The Taegis role every bootstrap client needs to manage other clients.
pub const TAEGIS_TENANT_ADMIN_ROLE: &str = "ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068";

#[derive(Clone, Debug)]
pub struct TaegisSettings {
    /// API base URL, from `environment` or `url`; no trailing slash.
    pub base_url: String,
    /// The environment name given, if any (for messages and rate-limit keys).
    pub environment: Option<String>,
    /// `in_place_secret = "caller"`: in-place rotation sends a secret rekey generated and stored
    /// first (only if the platform honours the `secret` argument). Default `"server"`.
    pub caller_chosen_secret: bool,
}

/// Known Taegis environments: (names, base URL). See protocols/taegis.md.
pub const TAEGIS_ENVIRONMENTS: &[(&[&str], &str)] = &[
    (
        &["charlie", "production", "us1"],
        "https://api.ctpx.secureworks.com",
    ),
    (
        &["delta", "us2"],
        "https://api.delta.taegis.secureworks.com",
    ),
    (&["echo", "eu"], "https://api.echo.taegis.secureworks.com"),
    (
        &["foxtrot", "us3"],
        "https://api.foxtrot.taegis.secureworks.com",
    ),
    (&["golf", "euw1"], "https://api.golf.taegis.secureworks.com"),
    (
        &["hotel", "apse2"],
        "https://api.hotel.taegis.secureworks.com",
    ),
    (
        &["india", "aps1"],
        "https://api.india.taegis.secureworks.com",
    ),
    (
        &["juliet", "apne1"],
        "https://api.juliet.taegis.secureworks.com",
    ),
    (&["kilo", "sae1"], "https://api.kilo.taegis.secureworks.com"),
    (
        &["quebec", "cac1"],
        "https://api.quebec.taegis.secureworks.com",
    ),
];

/// The base URL of a Taegis environment name (case-insensitive), if known.
pub fn taegis_environment_url(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    TAEGIS_ENVIRONMENTS
        .iter()
        .find(|(names, _)| names.contains(&lower.as_str()))
        .map(|(_, url)| *url)
}

/// How the inventory's checks treat a Taegis slot: numeric tenant ids, roles (none means the
/// platform default), in-place rotation, and Tenant Admin for a bootstrap client.
pub const SLOT_RULES: crate::provider::SlotRules = crate::provider::SlotRules {
    platform: "Taegis",
    tenant: crate::provider::TenantRule::Required {
        numeric: true,
        example: "11772",
    },
    grants_key: "roles",
    grants_alias: None,
    grants_required: false,
    grants_example: "[\"<role id>\", ...]",
    in_place_rotation: true,
    manager_grant: crate::provider::Grant {
        id: TAEGIS_TENANT_ADMIN_ROLE,
        name: Some("Tenant Admin"),
    },
};

/// Keys a `type = "taegis"` provider has beyond the common ones.
pub(crate) const SETTINGS_KEYS: &[&str] = &["environment", "url", "in_place_secret"];

/// Parses the Taegis-specific keys of `[providers.NAME]`, recording every problem in `c`.
pub(crate) fn parse_settings(c: &mut Checker, t: &Table, path: &str) -> TaegisSettings {
    let mut taegis = TaegisSettings {
        base_url: String::new(),
        environment: None,
        caller_chosen_secret: false,
    };
    let env = c.string(t, path, "environment");
    let url = c.string(t, path, "url");
    match (env, url) {
        (Some(_), Some((_, e))) => c.err(
            e.line,
            join(path, "url"),
            "give either environment or url, not both",
        ),
        (Some((env, e)), None) => match taegis_environment_url(env) {
            Some(u) => {
                taegis.base_url = u.to_string();
                taegis.environment = Some(env.to_ascii_lowercase());
            }
            None => {
                let names = TAEGIS_ENVIRONMENTS.iter().flat_map(|(n, _)| n.iter());
                c.err(
                    e.line,
                    join(path, "environment"),
                    format!(
                        "unknown Taegis environment \"{env}\"; valid names: {} (or give url = \"https://...\")",
                        list(names)
                    ),
                );
            }
        },
        (None, Some((u, e))) => {
            if let Some(base) = c.base_url(u, e, path) {
                taegis.base_url = base;
            }
        }
        (None, None) => {
            if t.get("environment").is_none() && t.get("url").is_none() {
                c.missing(
                    t,
                    path,
                    "environment",
                    " (a Taegis environment such as \"us1\", or url = \"https://...\")",
                );
            }
        }
    }
    if let Some((v, e)) = c.string(t, path, "in_place_secret") {
        match v {
            "server" => taegis.caller_chosen_secret = false,
            "caller" => taegis.caller_chosen_secret = true,
            _ => c.err(
                e.line,
                join(path, "in_place_secret"),
                format!("unknown value \"{v}\"; use \"server\" or \"caller\""),
            ),
        }
    }
    taegis
}

pub struct TaegisProvider {
    name: String,
    base_url: String,
    bootstrap: Bootstrap,
    http: reqwest::Client,
    timeout: Duration,
    limiter: Arc<DefaultDirectRateLimiter>,
    caller_chosen_secret: bool,
    tokens: TokenCache,
}

impl TaegisProvider {
    /// `name` is the inventory's name for this provider (used in messages only).
    pub fn new(
        name: &str,
        settings: &TaegisSettings,
        bootstrap: Bootstrap,
        rate_limit: f64,
        timeout: Duration,
    ) -> Result<Self> {
        let base_url = settings.base_url.trim_end_matches('/').to_string();
        http::check_url(&base_url)?;
        Ok(TaegisProvider {
            name: name.to_string(),
            limiter: http::limiter_for(&base_url, rate_limit),
            base_url,
            bootstrap,
            http: http::client(),
            timeout,
            caller_chosen_secret: settings.caller_chosen_secret,
            tokens: TokenCache::default(),
        })
    }

    /// Uses `http` instead of the process-wide client (a provider with its own `ca_cert`).
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// One token exchange. Used for the bootstrap token and to verify new pairs.
    async fn fetch_token(&self, pair: &ClientPair) -> Result<Token> {
        let what = "token request";
        self.limiter.until_ready().await;
        let (status, wait, body) = http::client_credentials(
            &self.http,
            &format!("{}/auth/api/v2/auth/token", self.base_url),
            pair,
            self.timeout,
            what,
        )
        .await?;
        decode_token(status, wait, &body, &pair.client_id)
    }

    /// Runs one GraphQL document in `tenant` with the bootstrap credential and returns
    /// `data.<field>`. A 401 (expired or revoked token) fetches a new token once. Text from the
    /// server is scrubbed of every secret in `scrub` before it can reach a message.
    async fn graphql(
        &self,
        tenant: &str,
        document: &str,
        field: &str,
        scrub: &[&Secret],
    ) -> Result<Value> {
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
            self.limiter.until_ready().await;
            let resp = self
                .http
                .post(format!("{}/graphql", self.base_url))
                .bearer_auth(token.expose())
                .header("X-Tenant-Context", tenant)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/json; charset=utf-8",
                )
                .header(reqwest::header::ACCEPT, "application/json")
                .body(serde_json::json!({ "query": document }).to_string())
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|e| classify_transport(e, field))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                // The gateway refused the token before running anything: safe to resend.
                tracing::debug!(provider = %self.name, "token refused; fetching a new one");
                self.tokens.invalidate(&boot, &token).await;
                refreshed = true;
                continue;
            }
            let wait = retry_after(&resp);
            let body = read_body(resp, field).await?;
            return decode_graphql(status, wait, &body, field, scrub);
        }
    }

    async fn search_page(
        &self,
        tenant: &str,
        name_prefix: &str,
        offset: usize,
    ) -> Result<(usize, Vec<ClientWire>)> {
        let doc = format!(
            "query {{ clientsSearch(filters: {{name: {}, pageOffset: {offset}, perPage: {PER_PAGE}, sortBy: NAME, sortOrder: ASC}}) {{ totalCount results {{ {CLIENT_FIELDS} }} }} }}",
            gql_string(&format!("{name_prefix}%"))
        );
        let v = self.graphql(tenant, &doc, "clientsSearch", &[]).await?;
        decode_page(v)
    }
}

#[async_trait]
impl Provider for TaegisProvider {
    fn kind(&self) -> &'static str {
        "taegis"
    }

    fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities {
            in_place_rotation: true,
            caller_chosen_secret: self.caller_chosen_secret,
        }
    }

    async fn create_client(&self, tenant: &str, spec: &ClientSpec) -> Result<IssuedClient> {
        let roles = if spec.roles.is_empty() {
            String::new()
        } else {
            format!(
                ", roles: [{}]",
                spec.roles
                    .iter()
                    .map(|r| gql_string(r))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let doc = format!(
            "mutation {{ createClient(name: {}{roles}) {{ clientSecret client {{ {CLIENT_FIELDS} }} }} }}",
            gql_string(&spec.name)
        );
        let v = self.graphql(tenant, &doc, "createClient", &[]).await?;
        decode_issued(v, "createClient", &[])
    }

    async fn rotate_secret(
        &self,
        tenant: &str,
        client: &str,
        chosen: Option<&Secret>,
    ) -> Result<IssuedClient> {
        let secret_arg = chosen
            .map(|s| format!(", secret: {}", gql_string(s.expose())))
            .unwrap_or_default();
        let doc = format!(
            "mutation {{ rotateClientSecret(id: {}{secret_arg}) {{ clientSecret client {{ {CLIENT_FIELDS} }} }} }}",
            gql_string(client)
        );
        let scrub: Vec<&Secret> = chosen.into_iter().collect();
        let v = self
            .graphql(tenant, &doc, "rotateClientSecret", &scrub)
            .await?;
        decode_issued(v, "rotateClientSecret", &scrub)
    }

    async fn delete_client(&self, tenant: &str, client: &str) -> Result<()> {
        let doc = format!(
            "mutation {{ deleteClient(id: {}) {{ id clientID }} }}",
            gql_string(client)
        );
        self.graphql(tenant, &doc, "deleteClient", &[])
            .await
            .map(|_| ())
    }

    async fn find_clients(&self, tenant: &str, name_prefix: &str) -> Result<Vec<ClientInfo>> {
        // Whether `pageOffset` counts items or pages is not documented. Ask by item offset; if the
        // second page repeats the first or comes back empty too early, switch to page numbers.
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut by_page_number = false;
        let mut page_no = 0usize;
        loop {
            let offset = if by_page_number { page_no } else { out.len() };
            let (total, results) = self.search_page(tenant, name_prefix, offset).await?;
            let before = out.len();
            let got = results.len();
            for c in results {
                if seen.insert(c.id.clone()) {
                    out.push(c);
                }
            }
            let progressed = out.len() > before;
            if out.len() >= total
                || got < PER_PAGE.min(total) && progressed
                || got == 0 && by_page_number
            {
                break;
            }
            if !progressed {
                if by_page_number || page_no > 0 {
                    break;
                }
                by_page_number = true;
                page_no = 1;
                continue;
            }
            page_no += 1;
            if page_no > 10_000 {
                return Err(Error::malformed("clientsSearch: paging does not end"));
            }
        }
        Ok(out
            .into_iter()
            .filter(|c| c.name.starts_with(name_prefix))
            .map(ClientWire::info)
            .collect())
    }

    async fn verify(&self, _tenant: &str, pair: &ClientPair) -> Result<()> {
        // A token exchange is the proof (protocols/taegis.md). Taegis tokens are not bound to a
        // tenant (the tenant is chosen per request), so the tenant plays no part here.
        let token = self.fetch_token(pair).await?;
        if self.bootstrap.holds(pair) {
            // The start-up check of the bootstrap credential: its token serves the calls that
            // follow, instead of a second exchange right after this one.
            self.tokens.offer(pair, token).await;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClientWire {
    id: String,
    #[serde(rename = "clientID")]
    client_id: String,
    name: String,
    created_at: Option<String>,
    token_request_time: Option<String>,
}

impl ClientWire {
    pub(crate) fn info(self) -> ClientInfo {
        ClientInfo {
            client_id: self.client_id,
            object_id: self.id,
            name: self.name,
            created_at: parse_time(self.created_at.as_deref()),
            last_used: parse_time(self.token_request_time.as_deref()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewClientWire {
    client_secret: String,
    client: ClientWire,
}

impl NewClientWire {
    fn issued(self) -> Result<IssuedClient> {
        if self.client_secret.is_empty() || self.client.client_id.is_empty() {
            return Err(Error::malformed("the new client has an empty id or secret"));
        }
        Ok(IssuedClient {
            client_id: self.client.client_id,
            object_id: self.client.id,
            name: self.client.name,
            secret: Secret::new(self.client_secret),
        })
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
    if !status.is_success() {
        // OAuth error bodies carry a code (`invalid_client`) and no secret; keep the code only.
        let code = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .map(|c| scrub_text(&c, &Scrubber::known().answer_bytes(body)));
        let detail = code.map(|c| format!(" ({c})")).unwrap_or_default();
        return Err(match status {
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Error::new(
                    ErrorKind::Unauthorized,
                    format!(
                        "{what}: client {} was refused: HTTP {}{detail}",
                        client_id,
                        status.as_u16()
                    ),
                )
            }
            _ => classify_status(status, wait, what, &detail),
        });
    }
    #[derive(Deserialize)]
    struct TokenResponse {
        access_token: String,
        expires_in: Option<i64>,
    }
    let parsed: TokenResponse = serde_json::from_slice(body)
        .map_err(|_| Error::malformed(format!("{what}: the answer has no access_token")))?;
    Token::from_response(parsed.access_token, parsed.expires_in)
}

fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
}

fn decode<T: serde::de::DeserializeOwned>(v: Value, field: &str, scrub: &[&Secret]) -> Result<T> {
    // serde's message names the missing field, and quotes a string found where another type
    // belongs: that string may be the secret rekey chose, so it is scrubbed like server text.
    serde_json::from_value(v).map_err(|e| {
        Error::malformed(format!(
            "{field}: unexpected answer shape: {}",
            scrub_text(
                &e.to_string(),
                &Scrubber::known().secrets(scrub.iter().copied())
            )
        ))
    })
}

/// `data.createClient` / `data.rotateClientSecret` → the issued client.
pub(crate) fn decode_issued(v: Value, field: &str, scrub: &[&Secret]) -> Result<IssuedClient> {
    decode::<NewClientWire>(v, field, scrub)?.issued()
}

/// `data.clientsSearch` → (totalCount, this page's clients).
pub(crate) fn decode_page(v: Value) -> Result<(usize, Vec<ClientWire>)> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Page {
        total_count: Option<usize>,
        results: Vec<ClientWire>,
    }
    let page: Page = decode(v, "clientsSearch", &[])?;
    Ok((page.total_count.unwrap_or(0), page.results))
}

/// HTTP status → error kind, for statuses that are not the GraphQL 200.
fn classify_status(status: StatusCode, wait: Option<Duration>, what: &str, detail: &str) -> Error {
    let msg = format!("{what}: HTTP {}{detail}", status.as_u16());
    match status.as_u16() {
        401 => Error::new(ErrorKind::Unauthorized, msg),
        403 => Error::new(ErrorKind::Forbidden, msg),
        429 => Error::new(ErrorKind::RateLimited, msg).with_retry_after(wait),
        408 | 500..=599 => Error::new(ErrorKind::Unavailable, msg).with_retry_after(wait),
        // A 404 here is a wrong URL, not a missing client: never read it as "already deleted".
        _ => Error::new(ErrorKind::Invalid, msg),
    }
}

/// The one place Taegis answers become errors: HTTP status, then `errors[]`, then null data.
pub(crate) fn decode_graphql(
    status: StatusCode,
    wait: Option<Duration>,
    body: &[u8],
    field: &str,
    scrub: &[&Secret],
) -> Result<Value> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    // Server text loses every secret known here: this process's, the request's, and those the
    // answer itself carries (a create answer may hold the new secret and quote it in errors[]).
    // Built only when there is an error to quote.
    let scrubber = || {
        let s = Scrubber::known().secrets(scrub.iter().copied());
        match &parsed {
            Some(v) => s.answer(v),
            None => s,
        }
    };
    let first_error = parsed
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(|e| e.as_array())
        .and_then(|a| a.first())
        .map(|e| {
            let message = e
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("unknown error");
            let code = e
                .pointer("/extensions/code")
                .and_then(|c| c.as_str())
                .unwrap_or("");
            let scrubber = scrubber();
            (
                scrub_text(message, &scrubber),
                scrub_text(code, &scrubber)
                    .chars()
                    .take(50)
                    .collect::<String>(),
            )
        });
    if !status.is_success() {
        let detail = first_error
            .map(|(m, _)| format!(": {m}"))
            .unwrap_or_default();
        return Err(classify_status(status, wait, field, &detail));
    }
    let Some(v) = parsed else {
        return Err(Error::malformed(format!(
            "{field}: the answer is not JSON (truncated?)"
        )));
    };
    if let Some((message, code)) = first_error {
        let lower = message.to_ascii_lowercase();
        let kind = match code.as_str() {
            "NOT_FOUND" => ErrorKind::NotFound,
            "UNAUTHENTICATED" => ErrorKind::Unauthorized,
            "FORBIDDEN" | "PERMISSION_DENIED" => ErrorKind::Forbidden,
            _ if lower.contains("not found") || lower.contains("does not exist") => {
                ErrorKind::NotFound
            }
            _ if [
                "not authorized",
                "unauthorized",
                "forbidden",
                "permission",
                "access denied",
            ]
            .iter()
            .any(|w| lower.contains(w)) =>
            {
                ErrorKind::Forbidden
            }
            _ => ErrorKind::Invalid,
        };
        return Err(Error::new(kind, format!("{field}: {message}")));
    }
    match v.get("data").and_then(|d| d.get(field)) {
        Some(value) if !value.is_null() => Ok(value.clone()),
        _ => Err(Error::malformed(format!("{field}: the answer has no data"))),
    }
}

/// Removes every secret `scrubber` knows from server text, then shortens it. In that order:
/// cutting first could leave a secret's prefix behind.
fn scrub_text(text: &str, scrubber: &Scrubber) -> String {
    scrubber.scrub(text).chars().take(300).collect()
}

/// A GraphQL string literal: quotes, backslashes and control characters escaped.
pub(crate) fn gql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped() {
        assert_eq!(gql_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(gql_string("x\ny\u{1}"), "\"x\\ny\\u0001\"");
    }

    #[test]
    fn decoding_checks_status_then_errors_then_data() {
        let ok = br#"{"data":{"deleteClient":{"id":"1"}}}"#;
        assert!(decode_graphql(StatusCode::OK, None, ok, "deleteClient", &[]).is_ok());

        let e = decode_graphql(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(3)),
            b"",
            "x",
            &[],
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert!(!e.maybe_applied());

        let e = decode_graphql(StatusCode::BAD_GATEWAY, None, b"<html>", "x", &[]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.maybe_applied());

        let nf = br#"{"data":null,"errors":[{"message":"client not found"}]}"#;
        assert_eq!(
            decode_graphql(StatusCode::OK, None, nf, "deleteClient", &[])
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );

        let denied = br#"{"data":{"createClient":null},"errors":[{"message":"Not authorized to access tenant"}]}"#;
        assert_eq!(
            decode_graphql(StatusCode::OK, None, denied, "createClient", &[])
                .unwrap_err()
                .kind(),
            ErrorKind::Forbidden
        );

        let empty = br#"{"data":{"createClient":null}}"#;
        assert_eq!(
            decode_graphql(StatusCode::OK, None, empty, "createClient", &[])
                .unwrap_err()
                .kind(),
            ErrorKind::Malformed
        );
        assert_eq!(
            decode_graphql(StatusCode::OK, None, b"{}", "f", &[])
                .unwrap_err()
                .kind(),
            ErrorKind::Malformed
        );
        assert_eq!(
            decode_graphql(StatusCode::OK, None, br#"{"data":{"f""#, "f", &[])
                .unwrap_err()
                .kind(),
            ErrorKind::Malformed
        );

        let not_found_url =
            decode_graphql(StatusCode::NOT_FOUND, None, b"", "deleteClient", &[]).unwrap_err();
        assert_eq!(
            not_found_url.kind(),
            ErrorKind::Invalid,
            "a 404 page must never mean 'client already deleted'"
        );
    }

    #[test]
    fn a_secret_across_the_cut_is_still_scrubbed() {
        let secret = Secret::new("S".repeat(64));
        let text = format!("{}{}", "x".repeat(280), secret.expose());
        let out = scrub_text(&text, &Scrubber::new().secret(&secret));
        assert!(
            !out.contains("SSSSSSSSSS"),
            "no part of the secret survives: {out}"
        );
    }

    #[test]
    fn server_messages_are_scrubbed_of_secrets() {
        let s = Secret::new("TOPSECRETVALUE123");
        let body = br#"{"errors":[{"message":"Argument secret has invalid value \"TOPSECRETVALUE123\""}]}"#;
        let e =
            decode_graphql(StatusCode::OK, None, body, "rotateClientSecret", &[&s]).unwrap_err();
        assert!(!e.to_string().contains("TOPSECRETVALUE123"), "{e}");
        assert!(e.to_string().contains("[redacted]"));
    }
}
