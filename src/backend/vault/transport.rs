//! rekey's own HTTP layer under vaultrs's endpoint types, and the one endpoint vaultrs lacks.

use super::errors::{api_error, vault_transport_error};
use crate::error::Error;
use async_trait::async_trait;
use std::collections::HashMap;
use std::time::Duration;
use vaultrs::api::{AuthInfo, EndpointMiddleware, EndpointResult};
use vaultrs::error::ClientError;

/// vaultrs's endpoints (request and answer types) carried by rekey's own HTTP layer instead
/// of vaultrs's client: the same trust roots as the providers plus `ca_cert`, redirects
/// refused, no `Referer`, and answers capped at [`crate::http::MAX_BODY`] (vaultrs's client
/// follows redirects, trusts the system store and reads answers of any size). SECURITY.md,
/// *Transport*.
pub(super) struct VaultHttp {
    /// The address as vaultrs would give it (`https://host:port/`).
    pub(super) base: String,
    pub(super) http: reqwest::Client,
    pub(super) timeout: Duration,
}

/// A connection to Vault: the transport and vaultrs's middleware (API version, token,
/// namespace headers).
pub(super) struct VaultConn {
    pub(super) http: VaultHttp,
    pub(super) middle: EndpointMiddleware,
}

/// What the transport fails with: a rekey [`Error`] (kind and message decided here) inside
/// rustify's error, unpacked again by [`classify_vault_error`].
fn transport_error(e: Error) -> rustify::errors::ClientError {
    rustify::errors::ClientError::ResponseError {
        source: anyhow::Error::new(e),
    }
}

#[async_trait]
impl rustify::client::Client for VaultHttp {
    fn base(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> std::result::Result<http::Response<Vec<u8>>, rustify::errors::ClientError> {
        let mut req = reqwest::Request::try_from(req)
            .map_err(|_| transport_error(Error::internal("a Vault request could not be built")))?;
        *req.timeout_mut() = Some(self.timeout);
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| transport_error(vault_transport_error(e)))?;
        if resp.status().is_redirection() {
            // A standby node redirects to the active one, which is another host: following
            // would send the token (or an AppRole secret_id) wherever the answer points.
            return Err(transport_error(crate::http::redirect_error(
                &resp,
                "Vault",
                "set the backend's address to the active node or to a load balancer that forwards to it",
            )));
        }
        let status = resp.status();
        let body = crate::http::read_body(resp, "Vault's answer")
            .await
            .map_err(transport_error)?;
        http::Response::builder()
            .status(status)
            .body(body.to_vec())
            .map_err(|_| transport_error(Error::malformed("Vault's answer could not be decoded")))
    }
}

/// An endpoint's `data` (vaultrs's `exec_with_result`).
pub(super) async fn exec_result<E: rustify::endpoint::Endpoint>(
    c: &VaultConn,
    endpoint: E,
) -> std::result::Result<E::Response, ClientError> {
    use rustify::endpoint::Endpoint as _;
    endpoint
        .with_middleware(&c.middle)
        .exec(&c.http)
        .await
        .map_err(api_error)?
        .wrap::<EndpointResult<_>>()
        .map_err(|source| ClientError::RestClientError { source })?
        .data
        .ok_or(ClientError::ResponseDataEmptyError)
}

/// An endpoint whose answer is empty (vaultrs's `exec_with_empty`).
pub(super) async fn exec_empty<E: rustify::endpoint::Endpoint>(
    c: &VaultConn,
    endpoint: E,
) -> std::result::Result<(), ClientError> {
    use rustify::endpoint::Endpoint as _;
    endpoint
        .with_middleware(&c.middle)
        .exec(&c.http)
        .await
        .map(|_| ())
        .map_err(api_error)
}

/// A login or renewal: the answer's `auth` (vaultrs's `api::auth`).
pub(super) async fn exec_auth<E: rustify::endpoint::Endpoint<Response = ()>>(
    c: &VaultConn,
    endpoint: E,
) -> std::result::Result<AuthInfo, ClientError> {
    use rustify::endpoint::Endpoint as _;
    let r: EndpointResult<()> = endpoint
        .with_middleware(&c.middle)
        .exec(&c.http)
        .await
        .map_err(api_error)?
        .wrap::<EndpointResult<_>>()
        .map_err(|source| ClientError::RestClientError { source })?;
    r.auth.ok_or(ClientError::ResponseEmptyError)
}

/// `POST sys/capabilities-self` (allowed by Vault's default policy).
pub(super) async fn capabilities_self(
    client: &VaultConn,
    paths: &[&str],
) -> std::result::Result<HashMap<String, Vec<String>>, ClientError> {
    let req = CapabilitiesSelf {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    };
    let v: serde_json::Value = exec_result(client, req).await?;
    let mut out = HashMap::new();
    for p in paths {
        let caps = v
            .get(*p)
            .and_then(|c| c.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        out.insert(p.to_string(), caps);
    }
    Ok(out)
}

struct CapabilitiesSelf {
    paths: Vec<String>,
}

impl rustify::endpoint::Endpoint for CapabilitiesSelf {
    type Response = serde_json::Value;
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        "sys/capabilities-self".to_string()
    }
    fn method(&self) -> rustify::enums::RequestMethod {
        rustify::enums::RequestMethod::POST
    }
    fn body(&self) -> std::result::Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        serde_json::to_vec(&serde_json::json!({ "paths": self.paths }))
            .map(Some)
            .map_err(|e| rustify::errors::ClientError::DataParseError { source: e.into() })
    }
}
