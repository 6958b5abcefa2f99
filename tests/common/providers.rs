//! Providers built in the test process (the provider tests and the provider conformance
//! suite), and the emulator's faults and counters they are checked with.

use super::World;
use rekey::config::BootstrapConfig;
use rekey::emulator::{FaultAction, Faults, OneShot};
use rekey::layer::retry::{RetryLayer, RetryPolicy};
use rekey::provider::{Bootstrap, Provider};
use rekey::secret::ClientPair;
use std::sync::Arc;
use std::time::Duration;

/// Provider `name` of the inventory `text` (written to the world's `inventory.toml`), built by
/// `ProviderConfig::open` with its static bootstrap pair resolved, as a run builds it.
pub fn provider_from_inventory(w: &World, text: &str, name: &str) -> Arc<dyn Provider> {
    super::logs::log_buffer();
    let path = w.inventory_raw(text);
    let inventory = rekey::config::load(&path).unwrap_or_else(|e| panic!("inventory: {e}"));
    let cfg = &inventory.providers[name];
    let BootstrapConfig::Static(pair) = &cfg.bootstrap else {
        panic!("provider {name}: a static bootstrap pair");
    };
    let bootstrap = Bootstrap::new(ClientPair {
        client_id: pair.client_id.resolve().unwrap().expose().to_string(),
        secret: pair.client_secret.resolve().unwrap(),
    });
    cfg.open(bootstrap, None).unwrap()
}

/// `inner` wrapped in retries that give up within seconds (the tests inject their faults).
pub fn with_fast_retries(inner: Arc<dyn Provider>) -> Arc<dyn Provider> {
    let fast = RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(3),
    };
    Arc::new(RetryLayer::new(inner, fast))
}

/// Faults that make the next `count` requests of `op` get `action`.
pub fn once(op: &str, action: FaultAction, count: u32) -> Faults {
    Faults {
        fail_next: vec![OneShot {
            skip: 0,
            operation: Some(op.into()),
            count,
            action,
        }],
        ..Faults::default()
    }
}

/// How many requests of `op` the emulator has served.
pub async fn stat(w: &World, op: &str) -> u64 {
    w.emu.stats().await.requests.get(op).copied().unwrap_or(0)
}

/// The first token request of a run passes (the preflight's: its token serves the run's
/// GraphQL calls); every later one, the verification of a new pair, gets `action`.
pub fn token_fault(action: FaultAction) -> Faults {
    Faults {
        fail_next: vec![OneShot {
            operation: Some("token".into()),
            skip: 1,
            count: 1000,
            action,
        }],
        ..Faults::default()
    }
}
