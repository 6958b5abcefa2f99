//! Logging in to Vault (token, AppRole, Kubernetes) and renewing or replacing the token near expiry.

use super::errors::classify_vault_error;
use super::transport::{VaultConn, VaultHttp, exec_auth, exec_result};
use super::{VaultAuth, VaultBackend};
use crate::check::values::ValueRef;
use crate::error::{Error, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vaultrs::api::EndpointMiddleware;

/// The logged-in client and when its token must be renewed or replaced.
pub(super) struct Session {
    pub(super) client: Arc<VaultConn>,
    /// `None`: the token does not expire (a root token).
    pub(super) refresh_at: Option<Instant>,
    pub(super) renewable: bool,
}

fn fresh_after(ttl: u64) -> Option<Instant> {
    // Renew or log in again when two thirds of the TTL have passed (at least 5s before expiry).
    if ttl == 0 {
        return None;
    }
    let ttl = Duration::from_secs(ttl);
    let early = (ttl / 3).max(Duration::from_secs(5)).min(ttl);
    Some(Instant::now() + ttl - early)
}

impl VaultBackend {
    fn new_client(&self, token: &str) -> Result<VaultConn> {
        let c = &self.config;
        // rekey's shared HTTP layer, as for the providers: the roots built into rekey plus
        // `ca_cert`, no redirects, no Referer, bounded answers (src/http.rs). No VAULT_*
        // environment variable changes what rekey does.
        let http = crate::http::client_with_ca(c.ca_cert.as_deref())
            .map_err(|e| e.context(format!("backend {}", c.name)))?;
        let base = reqwest::Url::parse(&c.address)
            .map_err(|e| Error::config(format!("backend {}: invalid address ({e})", c.name)))?;
        Ok(VaultConn {
            http: VaultHttp {
                base: base.to_string(),
                http,
                timeout: c.timeout,
            },
            middle: EndpointMiddleware {
                token: token.to_string(),
                version: "v1".to_string(),
                wrap: None,
                namespace: c.namespace.clone(),
            },
        })
    }

    /// The logged-in client, logging in or renewing first when needed.
    pub(super) async fn client(&self) -> Result<Arc<VaultConn>> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_mut() {
            match s.refresh_at {
                Some(at) if Instant::now() >= at => {
                    if s.renewable
                        && matches!(self.config.auth, VaultAuth::Token { .. })
                        && let Ok(info) = exec_auth(
                            s.client.as_ref(),
                            vaultrs::api::token::requests::RenewTokenSelfRequest::builder()
                                .build()
                                .map_err(|e| Error::internal(format!("renew request: {e}")))?,
                        )
                        .await
                    {
                        s.refresh_at = fresh_after(info.lease_duration);
                        tracing::debug!(backend = %self.config.name, "renewed the Vault token");
                        return Ok(Arc::clone(&s.client));
                    }
                    // Not renewable, or renewal refused: log in again below.
                }
                _ => return Ok(Arc::clone(&s.client)),
            }
        }
        let session = self.login().await?;
        let client = Arc::clone(&session.client);
        *guard = Some(session);
        Ok(client)
    }

    async fn login(&self) -> Result<Session> {
        let name = &self.config.name;
        let what = format!("backend {name}: {} login", self.config.auth.method());
        let ctx = |e: Error| e.context(format!("backend {name}"));
        match &self.config.auth {
            VaultAuth::Token { token } => {
                let token = token.resolve().map_err(ctx)?;
                let client = self.new_client(token.expose())?;
                let req = vaultrs::api::token::requests::LookupTokenSelfRequest::builder()
                    .build()
                    .map_err(|e| Error::internal(format!("lookup request: {e}")))?;
                let info = exec_result(&client, req)
                    .await
                    .map_err(|e| classify_vault_error(&e, &what))?;
                Ok(Session {
                    client: Arc::new(client),
                    refresh_at: fresh_after(info.ttl),
                    renewable: info.renewable.unwrap_or(false),
                })
            }
            VaultAuth::AppRole {
                role_id,
                secret_id,
                mount,
            } => {
                let role_id = role_id.resolve().map_err(ctx)?;
                let secret_id = secret_id.resolve().map_err(ctx)?;
                let client = self.new_client("")?;
                let req = vaultrs::api::auth::approle::requests::LoginWithApproleRequest::builder()
                    .mount(mount)
                    .role_id(role_id.expose())
                    .secret_id(secret_id.expose())
                    .build()
                    .map_err(|_| Error::internal("AppRole login request"))?;
                login_with(client, req, &what).await
            }
            VaultAuth::Kubernetes {
                role,
                jwt_file,
                mount,
            } => {
                // Kubelet mounts the token 0644 (0640 with fsGroup); its short life and audience
                // binding are what protect it, so its mode is not held against it.
                let jwt = ValueRef::File(jwt_file.clone())
                    .resolve_any_mode()
                    .map_err(|e| ctx(e.context("the service-account token (jwt_file)")))?;
                let client = self.new_client("")?;
                let req =
                    vaultrs::api::auth::kubernetes::requests::LoginWithKubernetesRequest::builder()
                        .mount(mount)
                        .role(role)
                        .jwt(jwt.expose())
                        .build()
                        .map_err(|_| Error::internal("Kubernetes login request"))?;
                login_with(client, req, &what).await
            }
        }
    }
}

/// A login with `req` (AppRole, Kubernetes) on a `client` without a token yet: the session uses
/// the token the login answers, and logs in again (never renews) near its expiry.
async fn login_with<E: rustify::endpoint::Endpoint<Response = ()>>(
    mut client: VaultConn,
    req: E,
    what: &str,
) -> Result<Session> {
    let info = exec_auth(&client, req)
        .await
        .map_err(|e| classify_vault_error(&e, what))?;
    client.middle.token = info.client_token.clone();
    Ok(Session {
        client: Arc::new(client),
        refresh_at: fresh_after(info.lease_duration),
        renewable: false,
    })
}
