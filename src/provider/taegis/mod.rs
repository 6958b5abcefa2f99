//! `type = "taegis"`: Secureworks Taegis XDR (docs/src/platforms/taegis.md).
//!
//! Token exchange at `/auth/api/v2/auth/token` (Basic + form), GraphQL at `/graphql` with
//! `X-Tenant-Context` on every call. Documents use inline, escaped literal arguments rather than
//! variables: the real server's argument scalar types (`ID!` vs `String!`) are not published, and
//! a literal fits either without an introspection round trip per run.
//!
//! [`settings`] reads the inventory's keys, [`api`] holds the documents and reads the answers,
//! and the shared [`Session`] carries the token, the 401 refresh and the rate limit.

pub(crate) mod api;
pub(crate) mod settings;

pub(crate) use api::{decode_graphql, decode_issued, decode_page, decode_token};
pub use settings::SLOT_RULES;
pub(crate) use settings::{SETTINGS_KEYS, parse_settings};
pub use settings::{
    TAEGIS_ENVIRONMENTS, TAEGIS_TENANT_ADMIN_ROLE, TaegisSettings, taegis_environment_url,
};

use crate::error::{Error, Result};
use crate::provider::session::Session;
use crate::provider::{
    Bootstrap, ClientInfo, ClientSpec, IssuedClient, Provider, ProviderCapabilities,
};
use crate::secret::{ClientPair, Secret};
use api::{ClientWire, PER_PAGE, TaegisApi};
use async_trait::async_trait;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

pub struct TaegisProvider {
    session: Session<TaegisApi>,
    caller_chosen_secret: bool,
}

impl TaegisProvider {
    /// `name` is the inventory's name for this provider (used in messages only).
    pub fn new(
        name: &str,
        settings: &TaegisSettings,
        bootstrap: Bootstrap,
        rate_limit: f64,
        timeout: Duration,
    ) -> Result<Self> {
        Ok(TaegisProvider {
            session: Session::new(
                name,
                &settings.base_url,
                bootstrap,
                rate_limit,
                timeout,
                |_| TaegisApi,
            )?,
            caller_chosen_secret: settings.caller_chosen_secret,
        })
    }

    /// Uses `http` instead of the process-wide client (a provider with its own `ca_cert`).
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.session = self.session.with_http_client(http);
        self
    }

    /// Runs one GraphQL document in `tenant` with the bootstrap credential and returns
    /// `data.<field>`. Text from the server is scrubbed of every secret in `scrub` before it can
    /// reach a message.
    async fn graphql(
        &self,
        tenant: &str,
        document: &str,
        field: &str,
        scrub: &[&Secret],
    ) -> Result<Value> {
        let url = format!("{}{}", self.session.base_url(), api::GRAPHQL_PATH);
        let (status, wait, body) = self
            .session
            .send(field, |http| {
                http.post(&url)
                    .header("X-Tenant-Context", tenant)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/json; charset=utf-8",
                    )
                    .body(serde_json::json!({ "query": document }).to_string())
            })
            .await?;
        decode_graphql(status, wait, &body, field, scrub)
    }

    async fn search_page(
        &self,
        tenant: &str,
        name_prefix: &str,
        offset: usize,
    ) -> Result<(usize, Vec<ClientWire>)> {
        let doc = api::search_document(name_prefix, offset);
        let v = self.graphql(tenant, &doc, "clientsSearch", &[]).await?;
        decode_page(v)
    }
}

#[async_trait]
impl Provider for TaegisProvider {
    fn kind(&self) -> &'static str {
        "taegis"
    }

    fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities {
            // One source for the platform fact the inventory checks read too.
            in_place_rotation: settings::SLOT_RULES.in_place_rotation,
            caller_chosen_secret: self.caller_chosen_secret,
        }
    }

    async fn create_client(&self, tenant: &str, spec: &ClientSpec) -> Result<IssuedClient> {
        let doc = api::create_document(spec);
        let v = self.graphql(tenant, &doc, "createClient", &[]).await?;
        decode_issued(v, "createClient", &[])
    }

    async fn rotate_secret(
        &self,
        tenant: &str,
        client: &str,
        chosen: Option<&Secret>,
    ) -> Result<IssuedClient> {
        let doc = api::rotate_document(client, chosen);
        let scrub: Vec<&Secret> = chosen.into_iter().collect();
        let v = self
            .graphql(tenant, &doc, "rotateClientSecret", &scrub)
            .await?;
        decode_issued(v, "rotateClientSecret", &scrub)
    }

    async fn delete_client(&self, tenant: &str, client: &str) -> Result<()> {
        let doc = api::delete_document(client);
        self.graphql(tenant, &doc, "deleteClient", &[])
            .await
            .map(|_| ())
    }

    async fn find_clients(&self, tenant: &str, name_prefix: &str) -> Result<Vec<ClientInfo>> {
        // Whether `pageOffset` counts items or pages is not documented. Ask by item offset; if the
        // second page repeats the first or comes back empty too early, switch to page numbers.
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut by_page_number = false;
        let mut page_no = 0usize;
        loop {
            let offset = if by_page_number { page_no } else { out.len() };
            let (total, results) = self.search_page(tenant, name_prefix, offset).await?;
            let before = out.len();
            let got = results.len();
            for c in results {
                if seen.insert(c.id.clone()) {
                    out.push(c);
                }
            }
            let progressed = out.len() > before;
            if out.len() >= total
                || got < PER_PAGE.min(total) && progressed
                || got == 0 && by_page_number
            {
                break;
            }
            if !progressed {
                if by_page_number || page_no > 0 {
                    break;
                }
                by_page_number = true;
                page_no = 1;
                continue;
            }
            page_no += 1;
            if page_no > 10_000 {
                return Err(Error::malformed("clientsSearch: paging does not end"));
            }
        }
        Ok(out
            .into_iter()
            .filter(|c| c.name.starts_with(name_prefix))
            .map(ClientWire::info)
            .collect())
    }

    async fn verify(&self, _tenant: &str, pair: &ClientPair) -> Result<()> {
        // A token exchange is the proof (docs/src/platforms/taegis.md). Taegis tokens are not
        // bound to a tenant (the tenant is chosen per request), so the tenant plays no part here.
        let token = self.session.fetch_token(pair).await?;
        self.session.adopt(pair, token).await;
        Ok(())
    }
}
