//! Taegis's OAuth2 client-credentials token endpoint and the bearer check of `/graphql`.
//!
//! Tokens carry the client's `secret_epoch`: a token is accepted only while the client exists
//! and its epoch is unchanged, so rotation and deletion revoke every earlier token at once.

use super::Api;
use crate::emulator::auth::{TokenRequest, bearer, oauth_error, sign, token_response};
use crate::emulator::layer::json_response;
use crate::emulator::shared::Shared;
use crate::emulator::state::iso;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub const TOKEN_PATH: &str = "/auth/api/v2/auth/token";

const ISSUER: &str = "rekey-emulator";

/// `WWW-Authenticate` of the token endpoint's 401s.
const CHALLENGE: &str = "Basic realm=\"taegis\"";

/// The claims of an emulator token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Claims {
    pub iss: String,
    /// The CLIENT_ID.
    pub sub: String,
    /// The client's object id (UUID).
    pub client_object_id: String,
    /// The client's home tenant.
    pub tenant: String,
    /// The claim the SDK's `get_token_tenant_id` reads.
    #[serde(rename = "https://missione/octolabs/io/tenantIds")]
    pub tenant_ids: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    /// The client's secret epoch when the token was minted.
    pub secret_epoch: u64,
}

/// Checks the signature (in constant time) and expiry. Says nothing about revocation: that
/// needs the client's current epoch, see [`authenticate`].
pub fn verify(key: &[u8], token: &str, now: i64) -> Option<Claims> {
    crate::emulator::auth::verify_signature::<Claims>(key, token)
        .filter(|claims| claims.exp > now && claims.iss == ISSUER)
}

/// Who is calling, established from a valid bearer token and the current state.
#[derive(Clone, Debug)]
pub struct Caller {
    pub client_id: String,
    pub tenant_id: String,
    pub is_admin: bool,
}

/// Checks `Authorization: Bearer`: signature, expiry, and that the client still exists with the
/// same secret epoch. Any failure is the gateway's bare 401.
pub async fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Caller, Response> {
    let unauthorized = || {
        json_response(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"message": "Unauthorized"}).to_string(),
        )
    };
    let token = bearer(headers).ok_or_else(unauthorized)?;
    let claims =
        verify(&shared.signing_key, token, Utc::now().timestamp()).ok_or_else(unauthorized)?;
    let state = shared.state.lock().await;
    let client = state
        .taegis
        .get(&claims.client_object_id)
        .filter(|c| c.secret_epoch == claims.secret_epoch && c.enabled)
        .ok_or_else(unauthorized)?;
    Ok(Caller {
        client_id: client.client_id.clone(),
        tenant_id: client.tenant_id.clone(),
        is_admin: client.is_tenant_admin(),
    })
}

/// `POST /auth/api/v2/auth/token`: client credentials (HTTP Basic, or `client_id` and
/// `client_secret` in the body) for a bearer token. Form or JSON body.
pub async fn token(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let shared = &api.shared;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let parsed: Result<TokenRequest, ()> = if body.is_empty() {
        Ok(TokenRequest::default())
    } else if is_json {
        serde_json::from_slice(&body).map_err(|_| ())
    } else {
        serde_urlencoded::from_bytes(&body).map_err(|_| ())
    };
    let Ok(req) = parsed else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request body is not a valid form or JSON object",
            CHALLENGE,
        );
    };
    let (client_id, secret) = match req.credentials(&headers, CHALLENGE) {
        Ok(c) => c,
        Err(resp) => return resp,
    };

    let now = Utc::now();
    let claims = {
        let mut state = shared.state.lock().await;
        let Some(client) = state
            .taegis
            .by_client_id(&client_id)
            .filter(|c| c.enabled && c.secret_matches(secret.expose()))
        else {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
                CHALLENGE,
            );
        };
        let claims = Claims {
            iss: ISSUER.into(),
            sub: client.client_id.clone(),
            client_object_id: client.id.clone(),
            tenant: client.tenant_id.clone(),
            tenant_ids: client.tenant_id.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now.timestamp(),
            exp: now.timestamp() + shared.token_ttl.as_secs() as i64,
            secret_epoch: client.secret_epoch,
        };
        let object_id = client.id.clone();
        let at = state.now();
        state.taegis.note_token_request(&object_id, at);
        claims
    };
    let expiry = Utc
        .timestamp_opt(claims.exp, 0)
        .single()
        .unwrap_or(now + shared.token_ttl);
    token_response(&serde_json::json!({
        "access_token": sign(&shared.signing_key, &claims),
        "token_type": "bearer",
        "expires_in": shared.token_ttl.as_secs(),
        "expiry": iso(expiry),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            sub: "abc".into(),
            client_object_id: "obj".into(),
            tenant: "1".into(),
            tenant_ids: "1".into(),
            jti: "j".into(),
            iat: 0,
            exp,
            secret_epoch: 3,
        }
    }

    #[test]
    fn tokens_verify_with_their_key_only_and_expire() {
        let key = b"0123456789abcdef0123456789abcdef";
        let t = sign(key, &claims(100));
        assert_eq!(verify(key, &t, 99), Some(claims(100)));
        assert_eq!(verify(key, &t, 100), None);
        assert_eq!(verify(b"another key", &t, 0), None);
        let mut forged = t.clone();
        forged.push('x');
        assert_eq!(verify(key, &forged, 0), None);
        assert_eq!(verify(key, "a.b", 0), None);
        assert_eq!(verify(key, "", 0), None);
    }

    #[test]
    fn the_payload_is_plain_base64url_json_with_exp() {
        let t = sign(b"k", &claims(42));
        let payload = t.split('.').nth(1).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(v["exp"], 42);
        assert_eq!(v["sub"], "abc");
    }
}
