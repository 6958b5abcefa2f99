//! Retries (docs/src/architecture.md): only temporary errors are retried, with capped,
//! jittered exponential backoff or the server's `Retry-After`; a mutation that may already have
//! taken effect is never resent blindly (the engine resumes it by looking the client up by its
//! managed name instead); and an error this layer gave up on leaves it marked exhausted
//! ([`Error::exhausted`]), so no loop further out retries it again: retries never multiply.
//!
//! [`run`] is the one retry loop: the provider layer [`RetryLayer`] wraps every call in it, and
//! the engine's compare-and-set write of a slot record uses it directly.

use crate::error::{Error, Result};
use crate::provider::{ClientInfo, ClientSpec, IssuedClient, Provider, ProviderCapabilities};
use crate::secret::{ClientPair, Secret};
use async_trait::async_trait;
use rand::Rng;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The engine's compare-and-set write of a slot record: the record may hold the only copy
    /// of a secret, so temporary store errors are retried for a while (about 20 s in all).
    pub const RECORD_WRITE: RetryPolicy = RetryPolicy {
        max_attempts: 8,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(10),
    };

    /// Full-jitter backoff for attempt `n` (1-based), or the server's wish plus a little jitter.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let mut rng = rand::rng();
        match retry_after {
            Some(wait) => {
                (wait + wait.mul_f64(rng.random_range(0.0..0.1))).min(self.max_delay.max(wait))
            }
            None => {
                let ceiling = self
                    .base_delay
                    .saturating_mul(1u32 << attempt.min(16))
                    .min(self.max_delay);
                ceiling.mul_f64(rng.random_range(0.5..1.0))
            }
        }
    }
}

/// Runs `call` until it succeeds, fails permanently, or attempts run out. `idempotent` calls
/// are retried on any temporary error; others only when the request never landed. An error
/// this loop could have retried but gave up on (attempts spent, or a `Retry-After` longer than
/// it ever waits) comes back [`Error::exhausted`]; one a loop further in already gave up on is
/// not tried again.
pub async fn run<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    idempotent: bool,
    call: F,
) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let log = |e: &Error, attempt: u32, delay: Duration| {
        tracing::debug!(call = what, attempt, kind = %e.kind(), delay_ms = delay.as_millis() as u64, "retrying");
    };
    run_with(policy, idempotent, log, call).await
}

/// [`run`], telling `on_retry` about each error it retries (and the pause before the next try).
pub async fn run_with<T, F, Fut, L>(
    policy: &RetryPolicy,
    idempotent: bool,
    on_retry: L,
    call: F,
) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>>,
    L: Fn(&Error, u32, Duration),
{
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let retryable = e.should_retry() && (idempotent || !e.maybe_applied());
                if !retryable {
                    return Err(e);
                }
                // A server that asks for a longer pause than we would ever back off (an
                // hourly budget spent) is honoured by stopping: the next run resumes.
                let too_long = e.retry_after().is_some_and(|w| w > policy.max_delay);
                if too_long || attempt >= policy.max_attempts {
                    return Err(e.exhausted());
                }
                let delay = policy.delay(attempt, e.retry_after());
                on_retry(&e, attempt, delay);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

/// Retries as a wrapper around any [`Provider`]: every call goes through [`run`].
pub struct RetryLayer {
    inner: Arc<dyn Provider>,
    policy: RetryPolicy,
}

impl RetryLayer {
    pub fn new(inner: Arc<dyn Provider>, policy: RetryPolicy) -> Self {
        RetryLayer { inner, policy }
    }

    async fn run<T, F, Fut>(&self, what: &str, idempotent: bool, call: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        run(&self.policy, what, idempotent, call).await
    }
}

#[async_trait]
impl Provider for RetryLayer {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn capabilities(&self) -> ProviderCapabilities {
        self.inner.capabilities()
    }
    async fn create_client(&self, tenant: &str, spec: &ClientSpec) -> Result<IssuedClient> {
        self.run("createClient", false, || {
            self.inner.create_client(tenant, spec)
        })
        .await
    }
    async fn rotate_secret(
        &self,
        tenant: &str,
        client: &str,
        chosen: Option<&Secret>,
    ) -> Result<IssuedClient> {
        // With a caller-chosen secret, sending the same request twice ends in the same state.
        self.run("rotateClientSecret", chosen.is_some(), || {
            self.inner.rotate_secret(tenant, client, chosen)
        })
        .await
    }
    async fn delete_client(&self, tenant: &str, client: &str) -> Result<()> {
        self.run("deleteClient", true, || {
            self.inner.delete_client(tenant, client)
        })
        .await
    }
    async fn find_clients(&self, tenant: &str, name_prefix: &str) -> Result<Vec<ClientInfo>> {
        self.run("clientsSearch", true, || {
            self.inner.find_clients(tenant, name_prefix)
        })
        .await
    }
    async fn verify(&self, tenant: &str, pair: &ClientPair) -> Result<()> {
        self.run("token", true, || self.inner.verify(tenant, pair))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_honours_retry_after() {
        let p = RetryPolicy::default();
        for n in 1..20 {
            assert!(p.delay(n, None) <= p.max_delay);
        }
        let d = p.delay(1, Some(Duration::from_secs(3)));
        assert!(
            d >= Duration::from_secs(3) && d <= Duration::from_millis(3300),
            "{d:?}"
        );
    }
}
