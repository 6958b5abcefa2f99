//! The one layer stack (docs/src/architecture.md): the wrappers every provider and backend the
//! engine uses is called through, composed here and nowhere else.
//!
//! ```text
//! provider:  MetricsLayer -> RetryLayer -> the platform's provider
//! backend:   MetricsLayer -> the store's backend
//! ```
//!
//! - [`retry`]: temporary errors retried with backoff; an error it gives up on comes back
//!   exhausted, so no loop further out retries it again. Backends get no retry layer: the one
//!   backend call worth retrying, the engine's compare-and-set write of a slot record, goes
//!   through [`retry::run_with`] itself (mirror writes and listings are not retried).
//! - [`metrics`]: the duration of every call (retries included) and its errors by kind.
//! - Timeouts: there is no whole-call deadline. Each HTTP request has the provider's or
//!   backend's `timeout` (set on its HTTP client), so there is no timeout layer.
//! - Rate limiting stays per HTTP request, inside each provider's client-credentials session
//!   (src/provider/): it must meter the token calls a provider makes on its own too, which a
//!   layer around the trait's methods never sees.
//!
//! Each wrapper implements every method of the trait it wraps, including those the trait gives
//! a default body, so the wrapped implementation's own is the one that runs.

pub mod metrics;
pub mod retry;

use crate::backend::Backend;
use crate::provider::Provider;
use std::sync::Arc;

pub use metrics::MetricsLayer;
pub use retry::{RetryLayer, RetryPolicy};

/// A provider as the engine uses it: metrics around retries around `inner`.
pub fn stack_provider(
    inner: Arc<dyn Provider>,
    name: &str,
    retry: RetryPolicy,
) -> Arc<dyn Provider> {
    let retried: Arc<dyn Provider> = Arc::new(RetryLayer::new(inner, retry));
    Arc::new(MetricsLayer::provider(retried, name))
}

/// A backend as the engine uses it: metrics around `inner`.
pub fn stack_backend(inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
    Arc::new(MetricsLayer::backend(inner))
}
