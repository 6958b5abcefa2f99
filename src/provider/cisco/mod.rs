//! `type = "cisco"`: Cisco XDR / Threat Response, the IROH API (docs/src/platforms/cisco.md).
//!
//! Token exchange at `/iroh/oauth2/token` (Basic + form, 10-minute tokens, no refresh token).
//! Clients are created with `POST /iroh/oauth2-clients/clients` (documented); list and delete
//! use the paths `paths.clients` and `paths.client` (inferred REST shapes, configurable). There
//! is no password reset, so Cisco slots rotate by `alternate` only: the engine deletes and
//! re-creates where Taegis would rotate a secret in place.
//!
//! Requests are paced twice: per second (`rate_limit`) and per hour against the organisation's
//! shared budget (`org_hourly_budget`, 8,000 by default, of which rekey leaves
//! `hourly_budget_reserve`, 10% by default, to the org's other integrations). The hourly budget
//! is kept in the state store when the engine gives one ([`CiscoProvider::share_budget_through`]),
//! so shards and successive runs share it (docs/src/scale.md).
//!
//! [`settings`] reads the inventory's keys, [`api`] reads the answers and keeps the hourly
//! budget, and the shared [`Session`] carries the token, the 401 refresh and the rate limit.

pub(crate) mod api;
pub(crate) mod settings;

pub use api::{CLIENT_ID_CLAIM, TOKEN_PATH};
pub(crate) use api::{classify, client_info, decode_created, decode_list, decode_token};
pub use settings::SLOT_RULES;
pub use settings::{
    CISCO_OAUTH_SCOPE, CISCO_REGIONS, CiscoSettings, DEFAULT_CLIENT_PATH, DEFAULT_CLIENTS_PATH,
    DEFAULT_ORG_HOURLY_BUDGET, DEFAULT_RESERVE_PERCENT, Reserve,
};
pub(crate) use settings::{SETTINGS_KEYS, parse_settings};

use crate::error::{Error, ErrorKind, Result};
use crate::provider::session::{Answer, Session};
use crate::provider::token::jwt_claims;
use crate::provider::{
    Bootstrap, ClientInfo, ClientSpec, IssuedClient, Provider, ProviderCapabilities,
};
use crate::secret::{ClientPair, Secret};
use api::{CiscoApi, PER_PAGE};
use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use zeroize::Zeroizing;

pub struct CiscoProvider {
    session: Session<CiscoApi>,
    clients_path: String,
    client_path: String,
    availability: String,
}

impl CiscoProvider {
    /// `name` is the inventory's name for this provider (used in messages only).
    pub fn new(
        name: &str,
        settings: &CiscoSettings,
        bootstrap: Bootstrap,
        rate_limit: f64,
        timeout: Duration,
    ) -> Result<Self> {
        Ok(CiscoProvider {
            session: Session::new(
                name,
                &settings.base_url,
                bootstrap,
                rate_limit,
                timeout,
                |base_url| CiscoApi::new(base_url, settings),
            )?,
            clients_path: settings.clients_path.clone(),
            client_path: settings.client_path.clone(),
            availability: settings.availability.clone(),
        })
    }

    /// Uses `http` instead of the process-wide client (a provider with its own `ca_cert`).
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.session = self.session.with_http_client(http);
        self
    }

    /// Reserves the org's hourly budget in `store` (an entry beside the slot records) before
    /// every request, so every process with the same inventory shares one budget.
    pub fn share_budget_through(
        mut self,
        store: crate::provider::budget::BudgetStore,
        settings: &CiscoSettings,
    ) -> Self {
        let shared = crate::provider::budget::SharedBudget::new(
            store,
            self.session.name(),
            "Cisco",
            settings.rekey_hourly_budget(),
            settings.shards,
        );
        self.session.platform_mut().share_through(shared);
        self
    }

    /// One API call with the bootstrap credential. Returns the body of a 2xx answer; everything
    /// else goes through [`classify`].
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let (status, wait, bytes) = self.send(method, url, body, what).await?;
        classify(status, wait, &bytes, what)
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Answer> {
        self.session
            .send(what, |http| {
                let req = http.request(method.clone(), url);
                match body {
                    Some(b) => req
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(b.to_string()),
                    None => req,
                }
            })
            .await
    }

    fn client_url(&self, id: &str) -> String {
        format!(
            "{}{}",
            self.session.base_url(),
            api::client_path(&self.client_path, id)
        )
    }

    async fn list_page(&self, offset: usize) -> Result<Vec<Value>> {
        let what = "list clients";
        let url = format!(
            "{}{}?limit={PER_PAGE}&offset={offset}",
            self.session.base_url(),
            self.clients_path
        );
        let body = self.call(Method::GET, &url, None, what).await?;
        decode_list(&body)
    }

    async fn list_all(&self) -> Result<Vec<ClientInfo>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        loop {
            let page = self.list_page(out.len()).await?;
            let got = page.len();
            let before = out.len();
            for item in page {
                let info = client_info(&item)?;
                if seen.insert(info.client_id.clone()) {
                    out.push(info);
                }
            }
            // A short page ends the list; so does a page with nothing new (a server that
            // ignores limit/offset and sends everything every time).
            if got < PER_PAGE || out.len() == before {
                break;
            }
            if out.len() > 1_000_000 {
                return Err(Error::malformed("list clients: paging does not end"));
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Provider for CiscoProvider {
    fn kind(&self) -> &'static str {
        "cisco"
    }

    fn capabilities(&self) -> ProviderCapabilities {
        // No password reset exists: a new password means a new client.
        ProviderCapabilities {
            in_place_rotation: settings::SLOT_RULES.in_place_rotation,
            caller_chosen_secret: false,
        }
    }

    async fn create_client(&self, _tenant: &str, spec: &ClientSpec) -> Result<IssuedClient> {
        let what = "create client";
        let body = serde_json::json!({
            "name": spec.name,
            "description": "Managed by rekey; do not edit or delete by hand.",
            "scopes": spec.roles,
            "grants": ["client-creds"],
            "availability": self.availability,
        });
        let url = format!("{}{}", self.session.base_url(), self.clients_path);
        let bytes = self.call(Method::POST, &url, Some(&body), what).await?;
        decode_created(&bytes, &spec.name)
    }

    async fn rotate_secret(
        &self,
        _tenant: &str,
        client: &str,
        _chosen: Option<&Secret>,
    ) -> Result<IssuedClient> {
        Err(Error::invalid(format!(
            "provider {}: Cisco has no password reset; client {client} cannot be rotated in place (use strategy = \"alternate\")",
            self.session.name()
        )))
    }

    async fn delete_client(&self, _tenant: &str, client: &str) -> Result<()> {
        let what = "delete client";
        let url = self.client_url(client);
        let (status, wait, bytes) = self.send(Method::DELETE, &url, None, what).await?;
        if status != StatusCode::NOT_FOUND {
            return classify(status, wait, &bytes, what).map(|_| ());
        }
        // A 404 may be a wrong path as well as a missing client. Believe it only when the list
        // works and does not hold the client either.
        let listed = self.list_all().await.map_err(|e| {
            e.context(format!(
                "{what}: {client} answered 404 and the list cannot confirm it is gone"
            ))
        })?;
        if listed.iter().any(|c| c.client_id == client) {
            return Err(Error::invalid(format!(
                "{what}: the server answered 404 for client {client}, which it still lists: check paths.client of provider {}",
                self.session.name()
            )));
        }
        Err(Error::not_found(format!("{what}: client {client} is gone")))
    }

    async fn find_clients(&self, _tenant: &str, name_prefix: &str) -> Result<Vec<ClientInfo>> {
        Ok(self
            .list_all()
            .await?
            .into_iter()
            .filter(|c| c.name.starts_with(name_prefix))
            .collect())
    }

    async fn verify(&self, _tenant: &str, pair: &ClientPair) -> Result<()> {
        // Cisco tokens are bound to the org of the credential; the tenant plays no part.
        let token = self.session.fetch_token(pair).await?;
        let claimed = jwt_claims(token.value.expose()).and_then(|c| {
            c.get(CLIENT_ID_CLAIM)
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        match claimed {
            Some(id) if id == pair.client_id => {
                // The start-up check of the bootstrap credential: its token serves the calls
                // that follow (and the org's hourly budget is spared a second exchange).
                self.session.adopt(pair, token).await;
                Ok(())
            }
            Some(id) => Err(Error::new(
                ErrorKind::Unauthorized,
                format!(
                    "token request: the token for client {} names client {id}: refusing the pair",
                    pair.client_id
                ),
            )),
            None => Err(Error::new(
                ErrorKind::Unauthorized,
                format!(
                    "token request: the token for client {} carries no client-id claim, so it cannot prove the pair",
                    pair.client_id
                ),
            )),
        }
    }
}
