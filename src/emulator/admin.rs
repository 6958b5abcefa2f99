//! `/_emulator/` endpoints for tests and demos: faults, stats, tenants, and an independent view
//! of a tenant's clients (never their secrets). No auth: the emulator listens on loopback only.

use super::faults::{Faults, Stats};
use super::layer::json_status;
use super::seed::SeedTenant;
use super::shared::Shared;
use super::state::ClientRecord;
use super::world::World;
use crate::error::ErrorKind;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One client as `GET /_emulator/tenants/{id}/clients` lists it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ClientSummary {
    pub id: String,
    #[serde(rename = "clientID")]
    pub client_id: String,
    pub name: String,
    #[serde(rename = "tenantID")]
    pub tenant_id: String,
    pub roles: Vec<String>,
    #[serde(rename = "tokenRequestCount")]
    pub token_request_count: u64,
}

pub async fn health() -> &'static str {
    "ok"
}

pub async fn get_faults(State(shared): State<Arc<Shared>>) -> Json<Faults> {
    Json(shared.faults().faults().clone())
}

pub async fn put_faults(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return json_status(StatusCode::BAD_REQUEST, &format!("invalid faults: {e}")),
    };
    if let Err(e) = faults.validate() {
        return json_status(StatusCode::BAD_REQUEST, &format!("invalid faults: {e}"));
    }
    shared.set_faults(faults.clone());
    Json(faults).into_response()
}

/// `PUT /_emulator/clock {"offset_seconds": N}`: moves the clock clients' use is recorded by
/// (`World::clock_offset`), for a rekey run whose own clock is moved as far.
pub async fn put_clock(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Clock {
        offset_seconds: i64,
    }
    let clock: Clock = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return json_status(StatusCode::BAD_REQUEST, &format!("invalid clock: {e}")),
    };
    let Some(offset) = chrono::Duration::try_seconds(clock.offset_seconds) else {
        return json_status(
            StatusCode::BAD_REQUEST,
            "invalid clock: offset out of range",
        );
    };
    shared.state.lock().await.clock_offset = offset;
    Json(serde_json::json!({ "offset_seconds": clock.offset_seconds })).into_response()
}

pub async fn get_stats(State(shared): State<Arc<Shared>>) -> Json<Stats> {
    Json(shared.stats().clone())
}

/// Adds a tenant (if new) and its seed clients. 409 when a client_id exists already.
pub async fn post_tenant(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let tenant: SeedTenant = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => return json_status(StatusCode::BAD_REQUEST, &format!("invalid tenant: {e}")),
    };
    let mut state = shared.state.lock().await;
    let result = state
        .add_tenant(&tenant.id, tenant.parent.as_deref())
        .and_then(|()| {
            // Checked first so a failing request adds no client at all.
            if let Some(c) = tenant
                .clients
                .iter()
                .find(|c| state.client_id_taken(&c.client_id))
            {
                return Err(crate::error::Error::conflict(format!(
                    "client {} already exists",
                    c.client_id
                )));
            }
            for c in &tenant.clients {
                state.add_seed_client(&tenant.id, c)?;
            }
            Ok(())
        })
        .and_then(|()| shared.save(&state));
    match result {
        Ok(()) => {
            let list = summaries(&state, &tenant.id);
            (StatusCode::CREATED, Json(list)).into_response()
        }
        Err(e) => {
            let status = match e.kind() {
                ErrorKind::Conflict => StatusCode::CONFLICT,
                ErrorKind::Invalid | ErrorKind::Config | ErrorKind::NotFound => {
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            json_status(status, e.message())
        }
    }
}

pub async fn tenant_clients(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let state = shared.state.lock().await;
    if state.tenant(&id).is_none() {
        return json_status(StatusCode::NOT_FOUND, "no such tenant");
    }
    Json(summaries(&state, &id)).into_response()
}

/// Every client of a tenant or org, whatever its platform.
fn summaries(state: &World, tenant: &str) -> Vec<ClientSummary> {
    let summary = |c: &ClientRecord, roles: Vec<String>| ClientSummary {
        id: c.id.clone(),
        client_id: c.client_id.clone(),
        name: c.name.clone(),
        tenant_id: c.tenant_id.clone(),
        roles,
        token_request_count: c.token_request_count,
    };
    let taegis = state
        .taegis
        .values()
        .filter(|c| c.tenant_id == tenant)
        .map(|c| summary(c, c.role_ids().map(str::to_string).collect()));
    // Cisco clients have scopes where Taegis clients have roles.
    let cisco = state
        .cisco
        .values()
        .filter(|c| c.tenant_id == tenant)
        .map(|c| summary(c, c.scopes.clone()));
    let mut list: Vec<ClientSummary> = taegis.chain(cisco).collect();
    list.sort_by(|a, b| a.name.cmp(&b.name).then(a.client_id.cmp(&b.client_id)));
    list
}
