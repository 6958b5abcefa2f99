//! The layer stack (src/layer/mod.rs) forwards every method of `Backend` and `Provider`, with
//! its arguments, to the implementation it wraps; and retries do not multiply.
//!
//! The inner backend and provider here are recording test doubles, not mocks of a server: what
//! is under test is the wrappers' forwarding, which only a double that writes down each call
//! it receives can prove (a real backend's `consumer_view` or `list(known)` looks the same
//! whether or not it was reached). The backends and providers themselves are tested against
//! real servers (tests/conformance_*.rs, tests/*_provider.rs).

use async_trait::async_trait;
use rekey::backend::{Backend, BackendCapabilities, ConsumerView};
use rekey::error::{Error, ErrorKind, Result};
use rekey::layer::{self, RetryPolicy};
use rekey::provider::{ClientInfo, ClientSpec, IssuedClient, Provider, ProviderCapabilities};
use rekey::record::{SlotRecord, Versioned};
use rekey::secret::{ClientPair, Secret};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Writes down every call it receives, with its arguments.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    /// When set, every async call fails with this kind (for the retry tests).
    fail_with: Option<ErrorKind>,
}

impl Recorder {
    fn failing(kind: ErrorKind) -> Self {
        Recorder {
            calls: Mutex::default(),
            fail_with: Some(kind),
        }
    }
    fn note(&self, call: String) -> Result<()> {
        self.calls.lock().unwrap().push(call);
        match self.fail_with {
            Some(kind) => Err(Error::new(kind, "injected")),
            None => Ok(()),
        }
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

struct RecordingBackend(Arc<Recorder>);

#[async_trait]
impl Backend for RecordingBackend {
    fn name(&self) -> &str {
        "recorded"
    }
    fn capabilities(&self) -> BackendCapabilities {
        BackendCapabilities {
            soft_delete: true,
            atomic_promotion: true,
        }
    }
    async fn read(&self, slot: &str) -> Result<Option<Versioned>> {
        self.0.note(format!("read {slot}"))?;
        Ok(Some(Versioned {
            record: SlotRecord::new(slot, "p", "t"),
            version: 7,
        }))
    }
    async fn write(&self, slot: &str, record: &SlotRecord, expected: Option<u64>) -> Result<u64> {
        self.0
            .note(format!("write {slot} {} {expected:?}", record.tenant))?;
        Ok(8)
    }
    async fn delete(&self, slot: &str, expected: u64) -> Result<()> {
        self.0.note(format!("delete {slot} {expected}"))
    }
    async fn list(&self, known: &BTreeSet<String>) -> Result<Vec<String>> {
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        self.0.note(format!("list known={}", known.join(",")))?;
        Ok(vec!["orphan".into()])
    }
    async fn check(&self) -> Result<()> {
        self.0.note("check".into())
    }
    async fn consumer_view(&self, slot: &str, record: &SlotRecord) -> Result<Option<ConsumerView>> {
        self.0
            .note(format!("consumer_view {slot} {}", record.tenant))?;
        Ok(Some(ConsumerView {
            generation: 42,
            pair: pair("consumer"),
        }))
    }
}

struct RecordingProvider(Arc<Recorder>);

fn pair(id: &str) -> ClientPair {
    ClientPair {
        client_id: id.into(),
        secret: Secret::new("not-a-real-secret"),
    }
}

fn issued(name: &str) -> IssuedClient {
    IssuedClient {
        client_id: format!("{name}-id"),
        object_id: format!("{name}-obj"),
        name: name.into(),
        secret: Secret::new("issued-secret"),
    }
}

#[async_trait]
impl Provider for RecordingProvider {
    fn kind(&self) -> &'static str {
        "recorded"
    }
    fn capabilities(&self) -> ProviderCapabilities {
        ProviderCapabilities {
            in_place_rotation: true,
            caller_chosen_secret: true,
        }
    }
    async fn create_client(&self, tenant: &str, spec: &ClientSpec) -> Result<IssuedClient> {
        self.0.note(format!(
            "create_client {tenant} {} {}",
            spec.name,
            spec.roles.join(",")
        ))?;
        Ok(issued(&spec.name))
    }
    async fn rotate_secret(
        &self,
        tenant: &str,
        client: &str,
        chosen: Option<&Secret>,
    ) -> Result<IssuedClient> {
        self.0.note(format!(
            "rotate_secret {tenant} {client} chosen={}",
            chosen.is_some()
        ))?;
        Ok(issued(client))
    }
    async fn delete_client(&self, tenant: &str, client: &str) -> Result<()> {
        self.0.note(format!("delete_client {tenant} {client}"))
    }
    async fn find_clients(&self, tenant: &str, name_prefix: &str) -> Result<Vec<ClientInfo>> {
        self.0
            .note(format!("find_clients {tenant} {name_prefix}"))?;
        Ok(Vec::new())
    }
    async fn verify(&self, tenant: &str, pair: &ClientPair) -> Result<()> {
        self.0.note(format!("verify {tenant} {}", pair.client_id))
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    }
}

#[tokio::test]
async fn every_backend_method_reaches_the_inner_backend_through_the_stack() {
    let rec = Arc::new(Recorder::default());
    let b = layer::stack_backend(Arc::new(RecordingBackend(Arc::clone(&rec))));
    assert_eq!(b.name(), "recorded");
    let caps = b.capabilities();
    assert!(caps.soft_delete && caps.atomic_promotion);

    let record = SlotRecord::new("siem", "p", "tenant-9");
    assert_eq!(b.read("siem").await.unwrap().unwrap().version, 7);
    assert_eq!(b.write("siem", &record, Some(7)).await.unwrap(), 8);
    b.delete("siem", 8).await.unwrap();
    let known: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
    assert_eq!(b.list(&known).await.unwrap(), vec!["orphan".to_string()]);
    b.check().await.unwrap();
    // The trait's default body would answer `None` here (the record has no current pair).
    let view = b.consumer_view("siem", &record).await.unwrap();
    assert_eq!(view.map(|v| v.generation), Some(42));

    assert_eq!(
        rec.calls(),
        [
            "read siem",
            "write siem tenant-9 Some(7)",
            "delete siem 8",
            "list known=a,b",
            "check",
            "consumer_view siem tenant-9",
        ]
    );
}

#[tokio::test]
async fn every_provider_method_reaches_the_inner_provider_through_the_stack() {
    let rec = Arc::new(Recorder::default());
    let p = layer::stack_provider(
        Arc::new(RecordingProvider(Arc::clone(&rec))),
        "prov",
        fast(),
    );
    assert_eq!(p.kind(), "recorded");
    let caps = p.capabilities();
    assert!(caps.in_place_rotation && caps.caller_chosen_secret);

    let spec = ClientSpec {
        name: "rekey-siem-g1-abcd".into(),
        roles: vec!["r1".into(), "r2".into()],
    };
    assert_eq!(
        p.create_client("t1", &spec).await.unwrap().name,
        "rekey-siem-g1-abcd"
    );
    let chosen = Secret::new("chosen-secret");
    p.rotate_secret("t1", "obj-1", Some(&chosen)).await.unwrap();
    p.rotate_secret("t1", "obj-2", None).await.unwrap();
    p.delete_client("t1", "obj-3").await.unwrap();
    assert!(p.find_clients("t1", "rekey-").await.unwrap().is_empty());
    p.verify("t1", &pair("client-4")).await.unwrap();

    assert_eq!(
        rec.calls(),
        [
            "create_client t1 rekey-siem-g1-abcd r1,r2",
            "rotate_secret t1 obj-1 chosen=true",
            "rotate_secret t1 obj-2 chosen=false",
            "delete_client t1 obj-3",
            "find_clients t1 rekey-",
            "verify t1 client-4",
        ]
    );
}

#[tokio::test]
async fn the_stack_gives_up_once_and_says_so() {
    let rec = Arc::new(Recorder::failing(ErrorKind::Unavailable));
    let p = layer::stack_provider(
        Arc::new(RecordingProvider(Arc::clone(&rec))),
        "prov",
        fast(),
    );
    let e = p.verify("t1", &pair("c")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.is_temporary(), "still temporary: a later run may succeed");
    assert!(e.is_exhausted() && !e.should_retry(), "{e:?}");
    assert_eq!(rec.calls().len(), 4, "max_attempts calls, no more");

    // A stack around a stack: the outer retry layer does not retry what the inner gave up on.
    let rec = Arc::new(Recorder::failing(ErrorKind::Unavailable));
    let inner = layer::stack_provider(
        Arc::new(RecordingProvider(Arc::clone(&rec))),
        "inner",
        fast(),
    );
    let outer = layer::stack_provider(inner, "outer", fast());
    assert!(outer.find_clients("t1", "x").await.is_err());
    assert_eq!(
        rec.calls().len(),
        4,
        "retries multiplied: {:?}",
        rec.calls()
    );
}

#[tokio::test]
async fn permanent_errors_and_maybe_applied_mutations_are_not_retried() {
    let rec = Arc::new(Recorder::failing(ErrorKind::Unauthorized));
    let p = layer::stack_provider(
        Arc::new(RecordingProvider(Arc::clone(&rec))),
        "prov",
        fast(),
    );
    let e = p.verify("t1", &pair("c")).await.unwrap_err();
    assert!(!e.is_exhausted());
    assert_eq!(rec.calls().len(), 1);

    // A 5xx on create may have created the client: returned at once, not exhausted, so the
    // engine looks the client up by its managed name.
    let rec = Arc::new(Recorder::failing(ErrorKind::Unavailable));
    let p = layer::stack_provider(
        Arc::new(RecordingProvider(Arc::clone(&rec))),
        "prov",
        fast(),
    );
    let spec = ClientSpec {
        name: "n".into(),
        roles: Vec::new(),
    };
    let e = p.create_client("t1", &spec).await.unwrap_err();
    assert!(e.maybe_applied() && !e.is_exhausted());
    assert_eq!(rec.calls().len(), 1);
}
