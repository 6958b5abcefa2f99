//! The backend conformance suite: every [`Backend`] must pass every case here against a real
//! server (docs/src/testing.md). A backend's test file implements [`Harness`] and calls
//! [`run_all`].
//! Each call to `Harness::backend` gives a fresh namespace (random path prefix), so cases run
//! in parallel against one server.

use async_trait::async_trait;
use chrono::Utc;
use rekey::backend::Backend;
use rekey::error::ErrorKind;
use rekey::record::{Draining, OpKind, Operation, Phase, SlotRecord, StoredCredential};
use rekey::secret::Secret;
use std::sync::Arc;

#[async_trait]
pub trait Harness: Send + Sync {
    /// A backend over a fresh, empty namespace.
    async fn backend(&self) -> Arc<dyn Backend>;
    /// Puts an entry at `slot`'s place in `backend`'s namespace that rekey did not write
    /// (a human's secret): rekey must neither list it nor overwrite it.
    async fn write_foreign(&self, backend: &dyn Backend, slot: &str);
}

pub fn credential(generation: u64) -> StoredCredential {
    StoredCredential {
        generation,
        client_id: format!("client{generation}{}", rand_suffix()),
        object_id: format!("obj-{generation}"),
        name: format!("rekey-slot-g{generation}"),
        secret: Secret::generate(48),
        created_at: Utc::now(),
        verified_at: None,
        owned: true,
    }
}

fn rand_suffix() -> String {
    use rand::Rng;
    format!("{:08x}", rand::rng().random::<u32>())
}

pub fn record(slot: &str) -> SlotRecord {
    SlotRecord::new(slot, "p0", "11772")
}

type Case = fn(&dyn Harness) -> futures_box::BoxFut<'_>;

/// Every case, by name. `run_all` runs them all and returns how many passed (all, or it panics).
pub async fn run_all(h: &dyn Harness) -> usize {
    let cases: Vec<(&str, Case)> = vec![
        ("first write and read back", |h| Box::pin(first_write(h))),
        ("create over an existing entry conflicts", |h| {
            Box::pin(create_conflict(h))
        }),
        ("a stale version conflicts", |h| Box::pin(stale_conflict(h))),
        ("pending, promote, read current", |h| {
            Box::pin(pending_promote(h))
        }),
        ("a crash mid-promote leaves old or new, never a mix", |h| {
            Box::pin(crash_mid_promote(h))
        }),
        ("delete, and a stale delete conflicts", |h| {
            Box::pin(delete(h))
        }),
        ("list shows owned slots only", |h| Box::pin(list_owned(h))),
        ("a foreign entry is not overwritten", |h| {
            Box::pin(foreign_untouched(h))
        }),
        ("concurrent writers: exactly one wins", |h| {
            Box::pin(concurrent_writers(h))
        }),
        ("a missing slot reads as none", |h| Box::pin(missing(h))),
        ("check passes on a healthy backend", |h| Box::pin(check(h))),
    ];
    let mut passed = 0;
    for (name, case) in cases {
        eprintln!("conformance: {name}");
        case(h).await;
        passed += 1;
    }
    passed
}

pub mod futures_box {
    pub type BoxFut<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
}

async fn first_write(h: &dyn Harness) {
    let b = h.backend().await;
    let mut rec = record("alpha");
    rec.generation = 1;
    rec.current = Some(credential(1));
    let v = b.write("alpha", &rec, None).await.expect("first write");
    let got = b.read("alpha").await.unwrap().expect("entry exists");
    assert_eq!(got.version, v);
    assert_eq!(
        got.record, rec,
        "the record round-trips exactly, secret included"
    );
}

async fn create_conflict(h: &dyn Harness) {
    let b = h.backend().await;
    b.write("alpha", &record("alpha"), None).await.unwrap();
    let e = b
        .write("alpha", &record("alpha"), None)
        .await
        .expect_err("must not exist yet");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e:?}");
}

async fn stale_conflict(h: &dyn Harness) {
    let b = h.backend().await;
    let v1 = b.write("alpha", &record("alpha"), None).await.unwrap();
    let mut rec = record("alpha");
    rec.generation = 1;
    let v2 = b.write("alpha", &rec, Some(v1)).await.unwrap();
    assert_ne!(v1, v2);
    rec.generation = 2;
    let e = b
        .write("alpha", &rec, Some(v1))
        .await
        .expect_err("stale version");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e:?}");
    assert_eq!(
        b.read("alpha").await.unwrap().unwrap().record.generation,
        1,
        "the stale write changed nothing"
    );
}

async fn pending_promote(h: &dyn Harness) {
    let b = h.backend().await;
    let mut rec = record("alpha");
    rec.generation = 1;
    rec.current = Some(credential(1));
    let mut v = b.write("alpha", &rec, None).await.unwrap();
    // Rotation: operation, then pending, then promote (old one draining).
    rec.generation = 2;
    rec.op = Some(Operation {
        id: uuid::Uuid::now_v7(),
        kind: OpKind::Rotate,
        phase: Phase::Creating,
        generation: 2,
        started_at: Utc::now(),
        verify_failures: 0,
        client_name: None,
    });
    v = b.write("alpha", &rec, Some(v)).await.unwrap();
    rec.pending = Some(credential(2));
    rec.op.as_mut().unwrap().phase = Phase::Pending;
    v = b.write("alpha", &rec, Some(v)).await.unwrap();
    let mid = b.read("alpha").await.unwrap().unwrap().record;
    assert_eq!(
        mid.current.as_ref().unwrap().generation,
        1,
        "current unchanged while pending"
    );
    assert_eq!(
        mid.pending.as_ref().unwrap().secret,
        rec.pending.as_ref().unwrap().secret
    );
    let old = rec.current.take().unwrap();
    rec.draining.push(Draining {
        credential: old,
        delete_after: Utc::now(),
        hold: None,
    });
    rec.current = rec.pending.take();
    rec.op = None;
    let v3 = b.write("alpha", &rec, Some(v)).await.unwrap();
    let got = b.read("alpha").await.unwrap().unwrap();
    assert_eq!(got.version, v3);
    assert_eq!(got.record, rec);
    assert_eq!(got.record.current.unwrap().generation, 2);
}

async fn crash_mid_promote(h: &dyn Harness) {
    // A writer that read version v and then "died" before writing: the entry is still the old
    // record, readable, and a later writer from v succeeds.
    let b = h.backend().await;
    let mut rec = record("alpha");
    rec.pending = Some(credential(1));
    let v = b.write("alpha", &rec, None).await.unwrap();
    let before = b.read("alpha").await.unwrap().unwrap();
    assert_eq!(before.version, v);
    assert_eq!(before.record, rec);
    rec.current = rec.pending.take();
    b.write("alpha", &rec, Some(v)).await.unwrap();
    assert_eq!(b.read("alpha").await.unwrap().unwrap().record, rec);
}

async fn delete(h: &dyn Harness) {
    let b = h.backend().await;
    let v1 = b.write("alpha", &record("alpha"), None).await.unwrap();
    let v2 = b.write("alpha", &record("alpha"), Some(v1)).await.unwrap();
    let e = b.delete("alpha", v1).await.expect_err("stale delete");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(b.read("alpha").await.unwrap().is_some());
    b.delete("alpha", v2).await.unwrap();
    assert!(
        b.read("alpha").await.unwrap().is_none(),
        "deleted entries read as none"
    );
    assert!(
        !b.list(&Default::default())
            .await
            .unwrap()
            .contains(&"alpha".to_string())
    );
    // The slot can be created again afterwards.
    b.write("alpha", &record("alpha"), None).await.unwrap();
}

async fn list_owned(h: &dyn Harness) {
    let b = h.backend().await;
    for s in ["a", "b", "c"] {
        b.write(s, &record(s), None).await.unwrap();
    }
    h.write_foreign(b.as_ref(), "human").await;
    let mut got = b.list(&Default::default()).await.unwrap();
    got.sort();
    assert_eq!(got, vec!["a", "b", "c"]);
    // The engine's listing leaves out the slots it reads anyway, and still never lists a
    // foreign entry.
    let known: std::collections::BTreeSet<String> =
        ["a", "c", "human"].iter().map(|s| s.to_string()).collect();
    let mut got = b.list(&known).await.unwrap();
    got.sort();
    assert_eq!(got, vec!["b"]);
}

async fn foreign_untouched(h: &dyn Harness) {
    let b = h.backend().await;
    h.write_foreign(b.as_ref(), "human").await;
    let e = b.read("human").await.expect_err("not rekey's");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e:?}");
    let e = b
        .write("human", &record("human"), None)
        .await
        .expect_err("never overwrite a foreign entry");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e:?}");
}

async fn concurrent_writers(h: &dyn Harness) {
    let b = h.backend().await;
    let v = b.write("alpha", &record("alpha"), None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..6u64 {
        let b = Arc::clone(&b);
        tasks.push(tokio::spawn(async move {
            let mut rec = record("alpha");
            rec.generation = i + 1;
            b.write("alpha", &rec, Some(v)).await.map(|_| i + 1)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(g) => winners.push(g),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    assert_eq!(
        b.read("alpha").await.unwrap().unwrap().record.generation,
        winners[0]
    );
}

async fn missing(h: &dyn Harness) {
    let b = h.backend().await;
    assert!(b.read("nobody").await.unwrap().is_none());
}

async fn check(h: &dyn Harness) {
    let b = h.backend().await;
    b.check().await.expect("check on a healthy backend");
}
