//! Platforms that issue API clients. One small trait, one module per platform; retries and
//! rate limits live in wrappers and in the shared HTTP layer, not in each call.

use crate::error::Result;
use crate::secret::{ClientPair, Secret};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::{Arc, RwLock};

pub mod cisco;
pub mod taegis;
pub mod token;

#[derive(Clone, Copy, Debug, Default)]
pub struct ProviderCapabilities {
    /// The platform can give an existing client a new secret (Taegis yes, Cisco no).
    pub in_place_rotation: bool,
    /// `rotate_secret` accepts a secret chosen by rekey, so it can be stored before the call.
    pub caller_chosen_secret: bool,
}

/// What to create.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    /// The managed name, `<prefix><slot>-g<generation>`.
    pub name: String,
    /// Role ids (Taegis) or scopes (Cisco).
    pub roles: Vec<String>,
}

/// A client as issued by the platform, with its secret (shown exactly once).
#[derive(Clone, Debug)]
pub struct IssuedClient {
    pub client_id: String,
    pub object_id: String,
    pub name: String,
    pub secret: Secret,
}

/// A client as listed by the platform (no secret).
#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub client_id: String,
    pub object_id: String,
    pub name: String,
    pub created_at: Option<DateTime<Utc>>,
    /// When the client last got a token, if the platform says (used before deleting).
    pub last_used: Option<DateTime<Utc>>,
}

/// The privileged credential a provider acts with. Shared, so that after rekey rotates its own
/// bootstrap credential the engine can swap in the new pair for the rest of the run. It may be
/// unresolved (an unset environment variable): commands that never use it (`verify`) still work,
/// and the first use reports why it is missing.
#[derive(Clone)]
pub struct Bootstrap(Arc<RwLock<std::result::Result<ClientPair, String>>>);

impl Bootstrap {
    pub fn new(pair: ClientPair) -> Self {
        Bootstrap(Arc::new(RwLock::new(Ok(pair))))
    }
    pub fn unresolved(reason: impl Into<String>) -> Self {
        Bootstrap(Arc::new(RwLock::new(Err(reason.into()))))
    }
    pub fn get(&self) -> Result<ClientPair> {
        self.0
            .read()
            .expect("bootstrap lock poisoned")
            .clone()
            .map_err(crate::error::Error::config)
    }
    /// Whether `pair` is the credential this bootstrap holds now.
    pub fn holds(&self, pair: &ClientPair) -> bool {
        self.get().is_ok_and(|b| b == *pair)
    }
    pub fn replace(&self, pair: ClientPair) {
        *self.0.write().expect("bootstrap lock poisoned") = Ok(pair);
    }
}

/// A platform that issues API clients. All calls act in one `tenant`, with the bootstrap
/// credential the provider was built with.
///
/// Mutations are not retried blindly by callers: a failed `create_client` may still have
/// created the client (see `Error::maybe_applied`), which is why clients carry managed names
/// and `find_clients` exists.
#[async_trait]
pub trait Provider: Send + Sync {
    /// `taegis` or `cisco`.
    fn kind(&self) -> &'static str;

    fn capabilities(&self) -> ProviderCapabilities;

    /// Creates a client; the returned secret is the only copy that will ever exist.
    async fn create_client(&self, tenant: &str, spec: &ClientSpec) -> Result<IssuedClient>;

    /// Gives an existing client (by client id or object id) a new secret; the old one is assumed
    /// dead at once. With `chosen`, asks the platform to use that secret
    /// (only when `capabilities().caller_chosen_secret`).
    async fn rotate_secret(
        &self,
        tenant: &str,
        client: &str,
        chosen: Option<&Secret>,
    ) -> Result<IssuedClient>;

    /// Deletes a client (by client id or object id). `ErrorKind::NotFound` when it is gone.
    async fn delete_client(&self, tenant: &str, client: &str) -> Result<()>;

    /// Every client in the tenant whose name starts with `name_prefix` (all pages).
    async fn find_clients(&self, tenant: &str, name_prefix: &str) -> Result<Vec<ClientInfo>>;

    /// Proves a pair works: a token exchange with it succeeds. `Unauthorized` when it does not.
    async fn verify(&self, tenant: &str, pair: &ClientPair) -> Result<()>;
}

/// Builds the provider an inventory entry describes (bare: the engine wraps it in the layer
/// stack, src/layer/mod.rs).
pub fn build(
    config: &crate::config::ProviderConfig,
    bootstrap: Bootstrap,
) -> Result<Arc<dyn Provider>> {
    let http = crate::http::client_with_ca(config.ca_cert.as_deref())
        .map_err(|e| e.context(format!("provider {}", config.name)))?;
    let inner: Arc<dyn Provider> = match &config.kind {
        crate::config::ProviderKind::Taegis(t) => Arc::new(
            taegis::TaegisProvider::new(
                &config.name,
                t,
                bootstrap,
                config.rate_limit,
                config.timeout,
            )?
            .with_http_client(http),
        ),
        crate::config::ProviderKind::Cisco(c) => Arc::new(
            cisco::CiscoProvider::new(
                &config.name,
                c,
                bootstrap,
                config.rate_limit,
                config.timeout,
            )?
            .with_http_client(http),
        ),
    };
    Ok(inner)
}
