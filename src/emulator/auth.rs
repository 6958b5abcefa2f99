//! What both platforms' token endpoints and bearer checks share: HS256 JWTs, HTTP Basic and
//! bearer credentials, the client-credentials request, and OAuth2's answers.
//!
//! Tokens are HS256 JWTs signed with a per-emulator random key (kept in the state file). Each
//! platform mints its own claims (`taegis/auth.rs`, `cisco/auth.rs`); both carry what makes
//! rotation and deletion revoke every earlier token at once, as rekey must assume the real
//! services do.

// Handlers answer early with a ready Response; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use super::layer::json_response;
use crate::secret::Secret;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

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

/// Checks a token's signature (constant time) and returns its claims. Expiry and revocation
/// are the caller's to check.
pub fn verify_signature<C: DeserializeOwned>(key: &[u8], token: &str) -> Option<C> {
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

/// The token of `Authorization: Bearer`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// HTTP Basic credentials, split at the first colon.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, Secret)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = Secret::new(String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?);
    let (id, secret) = decoded.expose().split_once(':')?;
    Some((id.to_string(), Secret::new(secret)))
}

/// A client-credentials token request's fields (form or JSON).
#[derive(Deserialize, Default)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// An OAuth2 error answer; a 401 carries `challenge` as `WWW-Authenticate`.
pub fn oauth_error(
    status: StatusCode,
    error: &str,
    description: &str,
    challenge: &'static str,
) -> Response {
    let mut resp = json_response(
        status,
        &serde_json::json!({"error": error, "error_description": description}).to_string(),
    );
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    resp
}

impl TokenRequest {
    /// Checks the grant type and returns the client's credentials: HTTP Basic, or
    /// `client_id` and `client_secret` in the body. Refusals are OAuth2 errors with
    /// `challenge`.
    pub fn credentials(
        &self,
        headers: &HeaderMap,
        challenge: &'static str,
    ) -> Result<(String, Secret), Response> {
        let error = |status, code, description| oauth_error(status, code, description, challenge);
        match self.grant_type.as_deref() {
            Some("client_credentials") => {}
            None => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "grant_type is required",
                ));
            }
            Some(_) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "only client_credentials is supported",
                ));
            }
        }
        basic_credentials(headers)
            .or_else(|| {
                Some((
                    self.client_id.clone()?,
                    Secret::new(self.client_secret.clone()?),
                ))
            })
            .ok_or_else(|| {
                error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "client authentication is required",
                )
            })
    }
}

/// A token endpoint's 200: the body, never cached.
pub fn token_response(body: &serde_json::Value) -> Response {
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
