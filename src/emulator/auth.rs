//! The OAuth2 client-credentials token endpoint and the bearer tokens it mints.
//!
//! Tokens are HS256 JWTs signed with a per-emulator random key (kept in the state file). They
//! carry the client's `secret_epoch`: a token is accepted only while the client exists and its
//! epoch is unchanged, so rotation and deletion revoke every earlier token at once, as rekey
//! must assume the real service does.

use super::Shared;
use super::faults::json_response;
use crate::secret::Secret;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::sync::Arc;

pub const TOKEN_PATH: &str = "/auth/api/v2/auth/token";

const ISSUER: &str = "rekey-emulator";

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

type HmacSha256 = Hmac<Sha256>;

pub fn sign<C: Serialize>(key: &[u8], claims: &C) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    // Claims are plain strings and numbers: serialising cannot fail.
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    // A bearer token is a secret too: the leak scan looks for its signature (test builds).
    crate::secret::record_for_leak_scan(&sig);
    format!("{signing_input}.{sig}")
}

/// Checks the signature (in constant time) and expiry. Says nothing about revocation: that
/// needs the client's current epoch, see [`authenticate`].
pub fn verify(key: &[u8], token: &str, now: i64) -> Option<Claims> {
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    mac.verify_slice(&sig).ok()?;
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()?;
    (claims.exp > now && claims.iss == ISSUER).then_some(claims)
}

/// Checks a token's signature (constant time) and returns its claims as JSON, whatever their
/// shape (the Cisco endpoints mint their own claims). Expiry is the caller's to check.
pub fn verify_signature(key: &[u8], token: &str) -> Option<serde_json::Value> {
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    mac.verify_slice(&sig).ok()?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
}

/// HTTP Basic credentials (for the Cisco token endpoint).
pub fn basic(headers: &HeaderMap) -> Option<(String, Secret)> {
    basic_credentials(headers)
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
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(unauthorized)?;
    let claims =
        verify(&shared.signing_key, token, Utc::now().timestamp()).ok_or_else(unauthorized)?;
    let state = shared.state.lock().await;
    let client = state
        .client_by_object_id(&claims.client_object_id)
        .filter(|c| c.secret_epoch == claims.secret_epoch && c.enabled)
        .ok_or_else(unauthorized)?;
    Ok(Caller {
        client_id: client.client_id.clone(),
        tenant_id: client.tenant_id.clone(),
        is_admin: client.is_tenant_admin(),
    })
}

#[derive(Deserialize, Default)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp = json_response(
        status,
        &serde_json::json!({"error": error, "error_description": description}).to_string(),
    );
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"taegis\""),
        );
    }
    resp
}

/// HTTP Basic credentials, split at the first colon.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, Secret)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = Secret::new(String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?);
    let (id, secret) = decoded.expose().split_once(':')?;
    Some((id.to_string(), Secret::new(secret)))
}

/// `POST /auth/api/v2/auth/token`: client credentials (HTTP Basic, or `client_id` and
/// `client_secret` in the body) for a bearer token. Form or JSON body.
pub async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
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
        );
    };
    match req.grant_type.as_deref() {
        Some("client_credentials") => {}
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
    }
    let creds = basic_credentials(&headers).or_else(|| {
        Some((
            req.client_id.clone()?,
            Secret::new(req.client_secret.clone()?),
        ))
    });
    let Some((client_id, secret)) = creds else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication is required",
        );
    };

    let now = Utc::now();
    let claims = {
        let mut state = shared.state.lock().await;
        let Some(client) = state
            .taegis_client(&client_id)
            .filter(|c| c.enabled && c.secret_matches(secret.expose()))
        else {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
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
        state.note_token_request(&object_id);
        claims
    };
    let expiry = Utc
        .timestamp_opt(claims.exp, 0)
        .single()
        .unwrap_or(now + shared.token_ttl);
    let body = serde_json::json!({
        "access_token": sign(&shared.signing_key, &claims),
        "token_type": "bearer",
        "expires_in": shared.token_ttl.as_secs(),
        "expiry": super::state::iso(expiry),
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        let mut h = HeaderMap::new();
        let v = format!("Basic {}", STANDARD.encode("id:se:cret"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
        let (id, s) = basic_credentials(&h).unwrap();
        assert_eq!(id, "id");
        assert_eq!(s.expose(), "se:cret");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic %%%"));
        assert!(basic_credentials(&h).is_none());
    }
}
