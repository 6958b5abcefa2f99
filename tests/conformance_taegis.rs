//! The Taegis provider passes the provider conformance suite against the emulator, with the
//! secret chosen by the platform and with `in_place_secret = "caller"`.
//! Platform-specific behaviour (retries, rate limits, GraphQL errors): tests/taegis_provider.rs.

mod common;
mod conformance;

use async_trait::async_trait;
use common::{ADMIN_ROLE, World};
use conformance::provider::{self, Harness};
use rekey::provider::{ClientSpec, Provider};
use rekey::secret::{ClientPair, Secret};
use std::sync::Arc;

struct TaegisHarness {
    w: World,
    p: Arc<dyn Provider>,
}

impl TaegisHarness {
    /// The world's inventory, provider `p0` with `extra` settings, built as a run builds it.
    async fn new(extra: &str) -> TaegisHarness {
        let w = World::new(1).await;
        let header = w
            .header()
            .replace("[providers.p0]\n", &format!("[providers.p0]\n{extra}"));
        let p = common::provider_from_inventory(&w, &header, "p0");
        TaegisHarness { w, p }
    }
}

#[async_trait]
impl Harness for TaegisHarness {
    fn provider(&self) -> Arc<dyn Provider> {
        Arc::clone(&self.p)
    }
    fn kind(&self) -> &'static str {
        "taegis"
    }
    fn tenant(&self) -> String {
        self.w.tenants[0].id.clone()
    }
    fn spec(&self, name: &str) -> ClientSpec {
        ClientSpec {
            name: name.into(),
            roles: vec![ADMIN_ROLE.into()],
        }
    }
    fn seen(&self, secret: &Secret) {
        self.w
            .known_secrets
            .lock()
            .unwrap()
            .push(secret.expose().to_string());
    }
    async fn token_ok(&self, pair: &ClientPair) -> bool {
        self.w.token_ok(&pair.client_id, pair.secret.expose()).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn taegis_provider_conformance() {
    let h = TaegisHarness::new("").await;
    let caps = h.p.capabilities();
    assert!(
        caps.in_place_rotation && !caps.caller_chosen_secret,
        "{caps:?}"
    );
    assert_eq!(provider::run_all(&h).await, provider::CASES);
    common::logs::assert_logs_clean(&h.w, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn taegis_provider_conformance_with_caller_chosen_secrets() {
    let h = TaegisHarness::new("in_place_secret = \"caller\"\n").await;
    let caps = h.p.capabilities();
    assert!(
        caps.in_place_rotation && caps.caller_chosen_secret,
        "{caps:?}"
    );
    assert_eq!(provider::run_all(&h).await, provider::CASES);
    common::logs::assert_logs_clean(&h.w, &[]);
}
