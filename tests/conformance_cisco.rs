//! The Cisco provider passes the provider conformance suite against the emulator's IROH
//! endpoints (no in-place rotation: the suite checks it is refused clearly).
//! Platform-specific behaviour (token lifetime, hourly budget, delete paths): tests/cisco_provider.rs.

mod common;
mod conformance;

use async_trait::async_trait;
use common::CiscoWorld;
use conformance::provider::{self, Harness};
use rekey::provider::{ClientSpec, Provider};
use rekey::secret::{ClientPair, Secret};
use std::sync::Arc;

struct CiscoHarness {
    w: CiscoWorld,
    p: Arc<dyn Provider>,
}

#[async_trait]
impl Harness for CiscoHarness {
    fn provider(&self) -> Arc<dyn Provider> {
        Arc::clone(&self.p)
    }
    fn kind(&self) -> &'static str {
        "cisco"
    }
    fn tenant(&self) -> String {
        rekey::config::CISCO_DEFAULT_TENANT.into()
    }
    fn spec(&self, name: &str) -> ClientSpec {
        ClientSpec {
            name: name.into(),
            roles: vec!["enrich:read".into()],
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
        self.w
            .cisco_token_ok(&pair.client_id, pair.secret.expose())
            .await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cisco_provider_conformance() {
    let w = common::World::new_with(0, 1).await;
    let p = common::provider_from_inventory(&w, &w.header(), "c0");
    let caps = p.capabilities();
    assert!(
        !caps.in_place_rotation && !caps.caller_chosen_secret,
        "{caps:?}"
    );
    let h = CiscoHarness { w, p };
    assert_eq!(provider::run_all(&h).await, provider::CASES);
    common::logs::assert_logs_clean(&h.w, &[]);
}
