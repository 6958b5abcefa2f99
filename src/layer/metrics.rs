//! Metrics as a wrapper around any [`Provider`] or [`Backend`]: times every call and counts its
//! errors by kind in the process-wide registry ([`crate::observe::metrics::global`]). One
//! `Instant` per call, nothing else.
//!
//! Every method of both traits is written out here, those with a default body in the trait
//! too (`Backend::consumer_view`): a wrapper that left one to its default would silently
//! replace the wrapped implementation's own (tests/layers.rs proves each one arrives).

use crate::backend::{Backend, BackendCapabilities, ConsumerView};
use crate::error::Result;
use crate::observe::metrics::global;
use crate::provider::{ClientInfo, ClientSpec, IssuedClient, Provider, ProviderCapabilities};
use crate::record::{SlotRecord, Versioned};
use crate::secret::{ClientPair, Secret};
use async_trait::async_trait;
use prometheus::{HistogramVec, IntCounterVec};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

/// Times every call of `inner` and counts its errors by kind, labelled with `name` (the
/// provider's or backend's inventory name) and the operation.
pub struct MetricsLayer<T: ?Sized> {
    inner: Arc<T>,
    name: String,
}

impl MetricsLayer<dyn Provider> {
    pub fn provider(inner: Arc<dyn Provider>, name: &str) -> Self {
        MetricsLayer {
            inner,
            name: name.to_string(),
        }
    }

    fn done<T>(&self, op: &str, started: Instant, r: Result<T>) -> Result<T> {
        let m = global();
        observe(
            &m.provider_calls,
            &m.provider_errors,
            [&self.name, op],
            started,
            &r,
        );
        r
    }
}

impl MetricsLayer<dyn Backend> {
    pub fn backend(inner: Arc<dyn Backend>) -> Self {
        let name = inner.name().to_string();
        MetricsLayer { inner, name }
    }

    fn done<T>(&self, op: &str, started: Instant, r: Result<T>) -> Result<T> {
        let m = global();
        observe(
            &m.backend_calls,
            &m.backend_errors,
            [&self.name, op],
            started,
            &r,
        );
        r
    }
}

fn observe<T>(
    hist: &HistogramVec,
    errors: &IntCounterVec,
    labels: [&str; 2],
    started: Instant,
    r: &Result<T>,
) {
    hist.with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    if let Err(e) = r {
        errors
            .with_label_values(&[labels[0], labels[1], &e.kind().to_string()])
            .inc();
    }
}

#[async_trait]
impl Provider for MetricsLayer<dyn Provider> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn capabilities(&self) -> ProviderCapabilities {
        self.inner.capabilities()
    }
    async fn create_client(&self, tenant: &str, spec: &ClientSpec) -> Result<IssuedClient> {
        let t = Instant::now();
        let r = self.inner.create_client(tenant, spec).await;
        self.done("create_client", t, r)
    }
    async fn rotate_secret(
        &self,
        tenant: &str,
        client: &str,
        chosen: Option<&Secret>,
    ) -> Result<IssuedClient> {
        let t = Instant::now();
        let r = self.inner.rotate_secret(tenant, client, chosen).await;
        self.done("rotate_secret", t, r)
    }
    async fn delete_client(&self, tenant: &str, client: &str) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.delete_client(tenant, client).await;
        self.done("delete_client", t, r)
    }
    async fn find_clients(&self, tenant: &str, name_prefix: &str) -> Result<Vec<ClientInfo>> {
        let t = Instant::now();
        let r = self.inner.find_clients(tenant, name_prefix).await;
        self.done("find_clients", t, r)
    }
    async fn verify(&self, tenant: &str, pair: &ClientPair) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.verify(tenant, pair).await;
        self.done("verify", t, r)
    }
}

#[async_trait]
impl Backend for MetricsLayer<dyn Backend> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> BackendCapabilities {
        self.inner.capabilities()
    }
    async fn read(&self, slot: &str) -> Result<Option<Versioned>> {
        let t = Instant::now();
        let r = self.inner.read(slot).await;
        self.done("read", t, r)
    }
    async fn write(&self, slot: &str, record: &SlotRecord, expected: Option<u64>) -> Result<u64> {
        let t = Instant::now();
        let r = self.inner.write(slot, record, expected).await;
        self.done("write", t, r)
    }
    async fn delete(&self, slot: &str, expected: u64) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.delete(slot, expected).await;
        self.done("delete", t, r)
    }
    async fn list(&self, known: &BTreeSet<String>) -> Result<Vec<String>> {
        let t = Instant::now();
        let r = self.inner.list(known).await;
        self.done("list", t, r)
    }
    async fn names(&self) -> Result<Option<BTreeSet<String>>> {
        let t = Instant::now();
        let r = self.inner.names().await;
        self.done("list", t, r)
    }
    async fn check(&self) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.check().await;
        self.done("check", t, r)
    }
    /// Not timed (as before the layer stack: no `consumer_view` series), but forwarded.
    async fn consumer_view(&self, slot: &str, record: &SlotRecord) -> Result<Option<ConsumerView>> {
        self.inner.consumer_view(slot, record).await
    }
}
