//! Cisco's `oauth2-clients` create/list/get/delete and `profile/whoami` handlers.

// Handlers answer early with a ready Response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use super::auth::{Caller, authorize, covers};
use super::state::Client;
use super::{Api, error};
use crate::emulator::layer::json_response;
use crate::emulator::shared::Shared;
use crate::emulator::state::iso;
use crate::emulator::world::World;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A fresh password: 40 random bytes as URL-safe base64, 54 characters.
fn new_password() -> String {
    let bytes: [u8; 40] = rand::rng().random();
    let password = URL_SAFE_NO_PAD.encode(bytes);
    crate::secret::record_for_leak_scan(&password);
    password
}

fn valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ":/-_.".contains(c))
}

/// The client model; `password` only in the answer to a create.
fn model(c: &Client, password: Option<&str>) -> Value {
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
        "created-at": iso(c.created_at),
        "last-used-at": c.token_request_time.map(iso),
    });
    if let Some(p) = password {
        v["password"] = json!(p);
    }
    v
}

fn ok_json(status: StatusCode, v: &Value) -> Response {
    json_response(status, &v.to_string())
}

fn save(shared: &Shared, state: &World) -> Result<(), Response> {
    shared.save(state).map_err(|e| {
        tracing::error!(error = %crate::error::chain(&e), "cannot save emulator state");
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "cannot save state",
        )
    })
}

/// `POST /iroh/oauth2-clients/clients`: needs `oauth`; the new client's scopes must all be
/// covered by the caller's (no escalation); only the `client-creds` grant.
pub async fn create_client(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match authorize(&api, &headers, "oauth").await {
        Ok(c) => c,
        Err(r) => return r,
    };
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
    let mut state = api.shared.state.lock().await;
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
    if let Err(r) = save(&api.shared, &state) {
        return r;
    }
    ok_json(StatusCode::CREATED, &model(&created, Some(&password)))
}

/// `GET /iroh/oauth2-clients/clients[?limit=N&offset=M]`: the org's clients, by name.
pub async fn list_clients(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let caller = match authorize(&api, &headers, "oauth").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<usize>().ok());
    let offset = num("offset").unwrap_or(0);
    let limit = num("limit").unwrap_or(1000).clamp(1, 1000);
    let omit_last_used = api.shared.faults().faults().omit_last_used;
    let state = api.shared.state.lock().await;
    let list: Vec<Value> = state
        .cisco
        .clients_of(&caller.org)
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|c| {
            let mut m = model(c, None);
            if omit_last_used && let Some(o) = m.as_object_mut() {
                o.remove("last-used-at");
            }
            m
        })
        .collect();
    ok_json(StatusCode::OK, &Value::Array(list))
}

fn find<'a>(state: &'a World, caller: &Caller, id: &str) -> Result<&'a Client, Response> {
    state
        .cisco
        .by_client_id(id)
        .filter(|c| c.tenant_id == caller.org)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "not_found", "no such client"))
}

pub async fn get_client(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let caller = match authorize(&api, &headers, "oauth").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let state = api.shared.state.lock().await;
    match find(&state, &caller, &id) {
        Ok(c) => ok_json(StatusCode::OK, &model(c, None)),
        Err(r) => r,
    }
}

/// `DELETE /iroh/oauth2-clients/clients/{id}`: the client's password and every token it got
/// stop working at once.
pub async fn delete_client(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let caller = match authorize(&api, &headers, "oauth").await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut state = api.shared.state.lock().await;
    let object_id = match find(&state, &caller, &id) {
        Ok(c) => c.id.clone(),
        Err(r) => return r,
    };
    if let Err(e) = state.cisco.remove(&object_id) {
        return error(StatusCode::NOT_FOUND, "not_found", e.message());
    }
    if let Err(r) = save(&api.shared, &state) {
        return r;
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /iroh/profile/whoami`: who the token belongs to. Needs the `profile` scope.
pub async fn whoami(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    let caller = match authorize(&api, &headers, "profile").await {
        Ok(c) => c,
        Err(r) => return r,
    };
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
    fn passwords_look_like_ciscos() {
        let p = new_password();
        assert_eq!(p.len(), 54);
        assert!(
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
