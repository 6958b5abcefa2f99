//! Cisco's client-credentials token endpoint (10-minute tokens with the IROH claim names), the
//! bearer check, and scopes.

// Handlers answer early with a ready Response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use super::state::Client;
use super::{Api, charge, error};
use crate::emulator::auth::{TokenRequest, bearer, sign, token_response, verify_signature};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const TOKEN_PATH: &str = "/iroh/oauth2/token";
/// Lifetime of Cisco tokens, as on the real service.
pub const TOKEN_TTL_SECS: i64 = 600;

const CLAIM: &str = "https://schemas.cisco.com/iroh/identity/claims/";
const ISSUER: &str = "rekey-emulator/iroh";

/// `WWW-Authenticate` of the 401s.
pub(super) const CHALLENGE: &str = "Bearer realm=\"iroh\"";

/// `POST /iroh/oauth2/token`: client credentials (HTTP Basic, or `client_id` and
/// `client_secret` in the form) for a 10-minute bearer token.
pub async fn token(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let shared = &api.shared;
    let mut form: BTreeMap<String, String> =
        serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let req = TokenRequest {
        grant_type: form.remove("grant_type"),
        client_id: form.remove("client_id"),
        client_secret: form.remove("client_secret"),
    };
    let (client_id, password) = match req.credentials(&headers, CHALLENGE) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let now = Utc::now();
    let claims = {
        let mut state = shared.state.lock().await;
        let Some(client) = state.cisco.by_client_id(&client_id).cloned() else {
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            );
        };
        if let Err(r) = charge(&api, &client.tenant_id) {
            return r;
        }
        if !client.enabled || !client.secret_matches(password.expose()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            );
        }
        let at = state.now();
        state.cisco.note_token_request(&client.id, at);
        claims_for(&client, now.timestamp())
    };
    token_response(&json!({
        "access_token": sign(&shared.signing_key, &claims),
        "token_type": "bearer",
        "expires_in": TOKEN_TTL_SECS,
        "scope": claims[format!("{CLAIM}oauth/scopes")]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
    }))
}

fn claims_for(c: &Client, now: i64) -> Value {
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
pub struct Caller {
    pub client_id: String,
    pub org: String,
    pub scopes: Vec<String>,
}

/// Checks the bearer token (signature, expiry, a client that still exists), counts the call
/// against the org's hour, and checks that the caller holds `scope`.
pub async fn authorize(api: &Api, headers: &HeaderMap, scope: &str) -> Result<Caller, Response> {
    let caller = authenticate(api, headers).await?;
    need_scope(&caller, scope)?;
    Ok(caller)
}

async fn authenticate(api: &Api, headers: &HeaderMap) -> Result<Caller, Response> {
    let unauthorized = || {
        error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the access token is missing, invalid, expired or revoked",
        )
    };
    let token = bearer(headers).ok_or_else(unauthorized)?;
    let claims: Value =
        verify_signature(&api.shared.signing_key, token).ok_or_else(unauthorized)?;
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
        let state = api.shared.state.lock().await;
        let c = state
            .cisco
            .by_client_id(id)
            .filter(|c| c.enabled)
            .ok_or_else(unauthorized)?;
        Caller {
            client_id: c.client_id.clone(),
            org: c.tenant_id.clone(),
            scopes: c.scopes.clone(),
        }
    };
    charge(api, &caller.org)?;
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

/// Whether `held` scopes cover `want`: the same scope, or a parent of it (`enrich` covers
/// `enrich:read`).
pub fn covers(held: &[String], want: &str) -> bool {
    held.iter().any(|h| {
        h == want
            || want
                .strip_prefix(h.as_str())
                .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('/'))
    })
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
}
