//! The Cisco XDR / Threat Response (IROH) endpoints (protocols/cisco.md): the client-credentials
//! token endpoint, `oauth2-clients` create/list/get/delete, and `profile/whoami`. The official
//! `threatresponse` module works against them unchanged.
//!
//! Where the real service is undocumented (list, get and delete of clients; paging; error
//! bodies), the emulator takes the most likely REST shape: `GET .../clients` is a JSON array
//! (optional `limit`/`offset`), `GET`/`DELETE .../clients/{id}` answer 404 for an unknown id,
//! and a delete answers 204. Tokens are HS256 JWTs with the IROH claim names (the module and
//! rekey read claims without checking signatures); the header says HS256, truthfully.
//!
//! Orgs share the emulator's tenant table, so `/_emulator/tenants/{org}/clients` lists them.

// Handlers answer early with a ready Response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use super::Shared;
use super::auth::{basic, sign, verify_signature};
use super::faults::{Operation, json_response};
use super::state::ClientRecord;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use rand::Rng;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TOKEN_PATH: &str = "/iroh/oauth2/token";
pub const CLIENTS_PATH: &str = "/iroh/oauth2-clients/clients";
pub const WHOAMI_PATH: &str = "/iroh/profile/whoami";
/// Lifetime of Cisco tokens, as on the real service.
pub const TOKEN_TTL_SECS: i64 = 600;
/// The real per-org limit, used when no `cisco_hourly_budget` fault is set.
pub const DEFAULT_HOURLY_BUDGET: u64 = 8000;

const CLAIM: &str = "https://schemas.cisco.com/iroh/identity/claims/";
const ISSUER: &str = "rekey-emulator/iroh";
const HOUR: Duration = Duration::from_secs(3600);

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(TOKEN_PATH, post(token))
        .route(CLIENTS_PATH, post(create_client).get(list_clients))
        .route(
            &format!("{CLIENTS_PATH}/{{id}}"),
            get(get_client).delete(delete_client),
        )
        .route(WHOAMI_PATH, get(whoami))
}

/// Names a Cisco request for faults and stats: `cisco.token`, `cisco.createClient`,
/// `cisco.clients`, `cisco.client`, `cisco.deleteClient`, `cisco.whoami`, `cisco.other`.
pub fn operation_of(method: &Method, path: &str) -> Operation {
    let one = path
        .strip_prefix(CLIENTS_PATH)
        .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'));
    let (name, is_mutation) = match (method, path) {
        (&Method::POST, TOKEN_PATH) => ("token", false),
        (&Method::POST, CLIENTS_PATH) => ("createClient", true),
        (&Method::GET, CLIENTS_PATH) => ("clients", false),
        (&Method::GET, _) if one => ("client", false),
        (&Method::DELETE, _) if one => ("deleteClient", true),
        (&Method::GET, WHOAMI_PATH) => ("whoami", false),
        _ => ("other", false),
    };
    Operation {
        name: format!("cisco.{name}"),
        is_mutation,
    }
}

fn budget(shared: &Shared) -> u64 {
    shared
        .faults()
        .faults()
        .cisco_hourly_budget
        .unwrap_or(DEFAULT_HOURLY_BUDGET)
}

/// Adds `X-Ratelimit-Org-Limit` to every Cisco answer.
pub async fn org_limit_header(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    let cisco = req.uri().path().starts_with("/iroh/");
    let mut resp = next.run(req).await;
    if cisco && let Ok(v) = HeaderValue::from_str(&budget(&shared).to_string()) {
        resp.headers_mut().insert("x-ratelimit-org-limit", v);
    }
    resp
}

/// Counts one request against the org's rolling hour; over the budget, a 429 with
/// `Retry-After` (seconds until the oldest counted request leaves the window).
fn charge(shared: &Shared, org: &str) -> Result<(), Response> {
    let limit = budget(shared);
    let now = Instant::now();
    let mut windows = shared
        .cisco_window
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let q = windows.entry(org.to_string()).or_default();
    while q.front().is_some_and(|t| now.duration_since(*t) >= HOUR) {
        q.pop_front();
    }
    if q.len() as u64 >= limit {
        let wait = q
            .front()
            .map(|t| HOUR.saturating_sub(now.duration_since(*t)))
            .unwrap_or(HOUR);
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        let mut resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "the organisation's hourly request limit is spent",
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Err(resp);
    }
    q.push_back(now);
    Ok(())
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    let mut resp = json_response(
        status,
        &json!({"error": code, "error_description": description}).to_string(),
    );
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"iroh\""),
        );
    }
    resp
}

/// A fresh password: 40 random bytes as URL-safe base64, 54 characters.
fn new_password() -> String {
    let bytes: [u8; 40] = rand::rng().random();
    let password = URL_SAFE_NO_PAD.encode(bytes);
    crate::secret::record_for_leak_scan(&password);
    password
}

/// Whether `held` scopes cover `want`: the same scope, or a parent of it (`enrich` covers
/// `enrich:read`).
fn covers(held: &[String], want: &str) -> bool {
    held.iter().any(|h| {
        h == want
            || want
                .strip_prefix(h.as_str())
                .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('/'))
    })
}

fn valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ":/-_.".contains(c))
}

/// `POST /iroh/oauth2/token`: client credentials (HTTP Basic, or `client_id` and
/// `client_secret` in the form) for a 10-minute bearer token.
async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let form: BTreeMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
    }
    let creds = basic(&headers).or_else(|| {
        Some((
            form.get("client_id")?.clone(),
            crate::secret::Secret::new(form.get("client_secret")?.clone()),
        ))
    });
    let Some((client_id, password)) = creds else {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication is required",
        );
    };
    let now = Utc::now();
    let claims = {
        let mut state = shared.state.lock().await;
        let Some(client) = state.cisco_client(&client_id).cloned() else {
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            );
        };
        if let Err(r) = charge(&shared, &client.tenant_id) {
            return r;
        }
        if !client.enabled || !client.secret_matches(password.expose()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            );
        }
        state.note_token_request(&client.id);
        claims_for(&client, now.timestamp())
    };
    let body = json!({
        "access_token": sign(&shared.signing_key, &claims),
        "token_type": "bearer",
        "expires_in": TOKEN_TTL_SECS,
        "scope": claims[format!("{CLAIM}oauth/scopes")]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        body.to_string(),
    )
        .into_response()
}

fn claims_for(c: &ClientRecord, now: i64) -> Value {
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(format!("{CLAIM}{k}"), v);
    };
    put("oauth/client/id", json!(c.client_id));
    put("oauth/client/name", json!(c.name));
    put("oauth/kind", json!("access-token"));
    put("oauth/grant", json!("client-creds"));
    put("oauth/scopes", json!(c.scopes));
    put("org/id", json!(c.tenant_id));
    put(
        "user/id",
        json!(c.created_by.clone().unwrap_or_else(|| c.client_id.clone())),
    );
    put("version", json!("v1.2.0"));
    m.insert("iss".into(), json!(ISSUER));
    m.insert("sub".into(), json!(c.client_id));
    m.insert("jti".into(), json!(format!("rt-{}", uuid::Uuid::new_v4())));
    m.insert("iat".into(), json!(now));
    m.insert("nbf".into(), json!(now));
    m.insert("exp".into(), json!(now + TOKEN_TTL_SECS));
    Value::Object(m)
}

/// The caller of a Cisco API call, from a valid bearer token of a client that still exists.
struct Caller {
    client_id: String,
    org: String,
    scopes: Vec<String>,
}

async fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Caller, Response> {
    let unauthorized = || {
        error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is missing, invalid, expired or revoked",
        )
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(unauthorized)?;
    let claims = verify_signature(&shared.signing_key, token).ok_or_else(unauthorized)?;
    let now = Utc::now().timestamp();
    let fresh = claims
        .get("exp")
        .and_then(Value::as_i64)
        .is_some_and(|e| e > now)
        && claims.get("iss").and_then(Value::as_str) == Some(ISSUER);
    let id = claims
        .get(format!("{CLAIM}oauth/client/id"))
        .and_then(Value::as_str)
        .filter(|_| fresh)
        .ok_or_else(unauthorized)?;
    let caller = {
        let state = shared.state.lock().await;
        let c = state
            .cisco_client(id)
            .filter(|c| c.enabled)
            .ok_or_else(unauthorized)?;
        Caller {
            client_id: c.client_id.clone(),
            org: c.tenant_id.clone(),
            scopes: c.scopes.clone(),
        }
    };
    charge(shared, &caller.org)?;
    Ok(caller)
}

fn need_scope(caller: &Caller, scope: &str) -> Result<(), Response> {
    if covers(&caller.scopes, scope) {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            &format!("this call needs the {scope} scope"),
        ))
    }
}

/// The client model; `password` only in the answer to a create.
fn model(c: &ClientRecord, password: Option<&str>) -> Value {
    let mut v = json!({
        "id": c.client_id,
        "name": c.name,
        "description": c.description,
        "scopes": c.scopes,
        "grants": ["client-creds"],
        "availability": c.availability,
        "client-type": "confidential",
        "redirects": [],
        "approved?": true,
        "enabled?": c.enabled,
        "org-id": c.tenant_id,
        "owner-id": c.created_by,
        "created-at": super::state::iso(c.created_at),
        "last-used-at": c.token_request_time.map(super::state::iso),
    });
    if let Some(p) = password {
        v["password"] = json!(p);
    }
    v
}

fn ok_json(status: StatusCode, v: &Value) -> Response {
    json_response(status, &v.to_string())
}

fn save(shared: &Shared, state: &super::state::State) -> Result<(), Response> {
    if let Some(path) = &shared.state_file {
        state.save(path).map_err(|e| {
            tracing::error!(error = %crate::error::chain(&e), "cannot save emulator state");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "cannot save state",
            )
        })?;
    }
    Ok(())
}

/// `POST /iroh/oauth2-clients/clients`: needs `oauth`; the new client's scopes must all be
/// covered by the caller's (no escalation); only the `client-creds` grant.
async fn create_client(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match authenticate(&shared, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = need_scope(&caller, "oauth") {
        return r;
    }
    let bad = |d: &str| error(StatusCode::BAD_REQUEST, "invalid_request", d);
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad("the body must be a JSON object");
    };
    let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.trim().is_empty() || name.len() > 256 {
        return bad("name is required (1-256 characters)");
    }
    let description = v
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(scopes) = v.get("scopes").and_then(Value::as_array).and_then(|a| {
        a.iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<Vec<String>>>()
    }) else {
        return bad("scopes must be an array of strings");
    };
    if scopes.is_empty() {
        return bad("scopes must not be empty");
    }
    if let Some(s) = scopes.iter().find(|s| !valid_scope(s)) {
        return bad(&format!("invalid scope {s:?}"));
    }
    if let Some(s) = scopes.iter().find(|s| !covers(&caller.scopes, s)) {
        return error(
            StatusCode::FORBIDDEN,
            "invalid_scope",
            &format!("cannot grant scope {s}: the caller does not hold it"),
        );
    }
    let grants: Vec<&str> = v
        .get("grants")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if grants != ["client-creds"] {
        return bad("grants must be [\"client-creds\"] (the only grant the emulator supports)");
    }
    let availability = v
        .get("availability")
        .and_then(Value::as_str)
        .unwrap_or("org");
    if !["org", "user"].contains(&availability) {
        return bad("availability must be \"org\" or \"user\"");
    }
    let password = new_password();
    let mut state = shared.state.lock().await;
    let created = match state.insert_cisco_client(
        &caller.org,
        name,
        description,
        &scopes,
        availability,
        None,
        &password,
        Some(&caller.client_id),
    ) {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                e.message(),
            );
        }
    };
    if let Err(r) = save(&shared, &state) {
        return r;
    }
    ok_json(StatusCode::CREATED, &model(&created, Some(&password)))
}

/// `GET /iroh/oauth2-clients/clients[?limit=N&offset=M]`: the org's clients, by name.
async fn list_clients(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let caller = match authenticate(&shared, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = need_scope(&caller, "oauth") {
        return r;
    }
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<usize>().ok());
    let offset = num("offset").unwrap_or(0);
    let limit = num("limit").unwrap_or(1000).clamp(1, 1000);
    let state = shared.state.lock().await;
    let list: Vec<Value> = state
        .cisco_clients_of(&caller.org)
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|c| model(c, None))
        .collect();
    ok_json(StatusCode::OK, &Value::Array(list))
}

async fn find<'a>(
    state: &'a super::state::State,
    caller: &Caller,
    id: &str,
) -> Result<&'a ClientRecord, Response> {
    state
        .cisco_client(id)
        .filter(|c| c.tenant_id == caller.org)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "not_found", "no such client"))
}

async fn get_client(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let caller = match authenticate(&shared, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = need_scope(&caller, "oauth") {
        return r;
    }
    let state = shared.state.lock().await;
    match find(&state, &caller, &id).await {
        Ok(c) => ok_json(StatusCode::OK, &model(c, None)),
        Err(r) => r,
    }
}

/// `DELETE /iroh/oauth2-clients/clients/{id}`: the client's password and every token it got
/// stop working at once.
async fn delete_client(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let caller = match authenticate(&shared, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = need_scope(&caller, "oauth") {
        return r;
    }
    let mut state = shared.state.lock().await;
    let object_id = match find(&state, &caller, &id).await {
        Ok(c) => c.id.clone(),
        Err(r) => return r,
    };
    if let Err(e) = state.delete(&object_id) {
        return error(StatusCode::NOT_FOUND, "not_found", e.message());
    }
    if let Err(r) = save(&shared, &state) {
        return r;
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /iroh/profile/whoami`: who the token belongs to. Needs the `profile` scope.
async fn whoami(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let caller = match authenticate(&shared, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = need_scope(&caller, "profile") {
        return r;
    }
    ok_json(
        StatusCode::OK,
        &json!({
            "user": {
                "user-id": caller.client_id,
                "org-id": caller.org,
                "client-id": caller.client_id,
                "scopes": caller.scopes,
                "role": "api-client",
            },
            "org": {"id": caller.org, "name": format!("Emulated org {}", caller.org)},
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_cover_themselves_and_their_children_only() {
        let held = vec!["enrich".to_string(), "oauth".to_string()];
        assert!(covers(&held, "enrich"));
        assert!(covers(&held, "enrich:read"));
        assert!(!covers(&held, "enrichment"));
        assert!(!covers(&held, "admin"));
        assert!(!covers(&["enrich:read".to_string()], "enrich"));
    }

    #[test]
    fn passwords_look_like_ciscos() {
        let p = new_password();
        assert_eq!(p.len(), 54);
        assert!(
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn operations_are_named() {
        assert_eq!(operation_of(&Method::POST, TOKEN_PATH).name, "cisco.token");
        let d = operation_of(&Method::DELETE, &format!("{CLIENTS_PATH}/client-1"));
        assert_eq!(d.name, "cisco.deleteClient");
        assert!(d.is_mutation);
        assert_eq!(
            operation_of(&Method::GET, CLIENTS_PATH).name,
            "cisco.clients"
        );
    }
}
