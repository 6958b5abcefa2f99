//! The Cisco XDR / Threat Response (IROH) endpoints (docs/src/platforms/cisco.md): the
//! client-credentials token endpoint, `oauth2-clients` create/list/get/delete, and
//! `profile/whoami`, with the org's hourly budget; and how their requests are named for faults
//! and stats. The official `threatresponse` module works against them unchanged.
//!
//! - `auth`: the token endpoint, the bearer check and scopes.
//! - `api`: the client and whoami handlers.
//! - `state`: Cisco's client records.
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

pub mod api;
pub mod auth;
pub mod state;

use crate::emulator::faults::Operation;
use crate::emulator::shared::Shared;
use auth::TOKEN_PATH;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every Cisco path starts with this.
pub const PREFIX: &str = "/iroh/";
pub const CLIENTS_PATH: &str = "/iroh/oauth2-clients/clients";
pub const WHOAMI_PATH: &str = "/iroh/profile/whoami";
/// The real per-org limit, used when no `cisco_hourly_budget` fault is set.
pub const DEFAULT_HOURLY_BUDGET: u64 = 8000;

const HOUR: Duration = Duration::from_secs(3600);

/// What Cisco's handlers share: the emulator's state and each org's admitted requests in the
/// last hour (the org rate limit).
pub struct Api {
    pub shared: Arc<Shared>,
    windows: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// The token, client and whoami endpoints.
pub fn routes<S>(shared: Arc<Shared>) -> Router<S> {
    let api = Arc::new(Api {
        shared,
        windows: Mutex::default(),
    });
    Router::new()
        .route(TOKEN_PATH, post(auth::token))
        .route(
            CLIENTS_PATH,
            post(api::create_client).get(api::list_clients),
        )
        .route(
            &format!("{CLIENTS_PATH}/{{id}}"),
            get(api::get_client).delete(api::delete_client),
        )
        .route(WHOAMI_PATH, get(api::whoami))
        .with_state(api)
}

/// Names a Cisco request for faults and stats: `cisco.token`, `cisco.createClient`,
/// `cisco.clients`, `cisco.client`, `cisco.deleteClient`, `cisco.whoami`, `cisco.other`.
pub fn operation_of(method: &Method, path: &str, _body: &[u8]) -> Operation {
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
    Operation::new(format!("cisco.{name}"), is_mutation)
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
    let cisco = req.uri().path().starts_with(PREFIX);
    let mut resp = next.run(req).await;
    if cisco && let Ok(v) = HeaderValue::from_str(&budget(&shared).to_string()) {
        resp.headers_mut().insert("x-ratelimit-org-limit", v);
    }
    resp
}

/// Counts one request against the org's rolling hour; over the budget, a 429 with
/// `Retry-After` (seconds until the oldest counted request leaves the window).
fn charge(api: &Api, org: &str) -> Result<(), Response> {
    let limit = budget(&api.shared);
    let now = Instant::now();
    let mut windows = api.windows.lock().unwrap_or_else(|e| e.into_inner());
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
    drop(windows);
    *api.shared
        .stats()
        .cisco_org_requests
        .entry(org.to_string())
        .or_default() += 1;
    Ok(())
}

/// An OAuth2-style error answer (`error`, `error_description`).
fn error(status: StatusCode, code: &str, description: &str) -> Response {
    crate::emulator::auth::oauth_error(status, code, description, auth::CHALLENGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named() {
        let op = |m: &Method, p: &str| operation_of(m, p, b"");
        assert_eq!(op(&Method::POST, TOKEN_PATH).name, "cisco.token");
        let d = op(&Method::DELETE, &format!("{CLIENTS_PATH}/client-1"));
        assert_eq!(d.name, "cisco.deleteClient");
        assert!(d.is_mutation);
        assert_eq!(op(&Method::GET, CLIENTS_PATH).name, "cisco.clients");
    }
}
