//! The `aws` backend (AWS Secrets Manager) against a real moto server: the shared conformance
//! suite, then what is specific to AWS: the consumer's view through boto3, ownership tags, a
//! server that is down, crashes between the steps of a write, and one rotation's write latency.

mod conformance;
mod moto;

use async_trait::async_trait;
use chrono::Utc;
use conformance::backend::{self, Harness, credential, record};
use moto::Moto;
use rekey::backend::Backend;
use rekey::backend::aws::{AwsBackend, AwsBackendConfig, RECORD_STAGE};
use rekey::error::ErrorKind;
use rekey::record::{Draining, Lease, OpKind, Operation, Phase};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rand_hex() -> String {
    use rand::Rng;
    format!("{:012x}", rand::rng().random::<u64>() & 0xffff_ffff_ffff)
}

struct AwsHarness {
    moto: Moto,
}

impl AwsHarness {
    fn config(&self) -> AwsBackendConfig {
        let prefix = format!("rekey-test-{}/", rand_hex());
        let mut c = AwsBackendConfig::new(&prefix);
        c.endpoint_url = Some(self.moto.url());
        c.prefix = prefix;
        c.timeout = Duration::from_secs(20);
        c
    }

    fn open(&self, c: &AwsBackendConfig) -> AwsBackend {
        AwsBackend::with_sdk_config(c, self.moto.sdk_config())
    }

    fn client(&self) -> aws_sdk_secretsmanager::Client {
        let conf = aws_sdk_secretsmanager::config::Builder::from(&self.moto.sdk_config())
            .endpoint_url(self.moto.url())
            .build();
        aws_sdk_secretsmanager::Client::from_conf(conf)
    }

    async fn stages(&self, name: &str) -> std::collections::HashMap<String, Vec<String>> {
        self.client()
            .describe_secret()
            .secret_id(name)
            .send()
            .await
            .unwrap()
            .version_ids_to_stages()
            .cloned()
            .unwrap_or_default()
    }
}

#[async_trait]
impl Harness for AwsHarness {
    async fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(self.open(&self.config()))
    }

    async fn write_foreign(&self, backend: &dyn Backend, slot: &str) {
        // The backend's name is its prefix (see `config`): a human's secret next to rekey's.
        self.client()
            .create_secret()
            .name(format!("{}{slot}", backend.name()))
            .secret_string(r#"{"password":"not rekey's"}"#)
            .send()
            .await
            .unwrap();
    }
}

fn harness() -> AwsHarness {
    AwsHarness {
        moto: Moto::start(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_backend_conformance() {
    let h = harness();
    assert_eq!(backend::run_all(&h).await, 11);
}

/// What a consumer reads with boto3: `AWSCURRENT` explicitly, and the default (no stage).
fn consumer_reads(h: &AwsHarness, name: &str) -> serde_json::Value {
    let out = h.moto.python(&format!(
        r#"
import boto3, json, os
c = boto3.client("secretsmanager", endpoint_url=os.environ["MOTO_URL"])
def get(**kw):
    try:
        return json.loads(c.get_secret_value(SecretId="{name}", **kw)["SecretString"])
    except c.exceptions.ResourceNotFoundException:
        return None
print(json.dumps({{"current": get(VersionStage="AWSCURRENT"), "default": get(),
                  "pending": get(VersionStage="AWSPENDING"), "previous": get(VersionStage="AWSPREVIOUS")}}))
"#
    ));
    serde_json::from_str(&out).unwrap()
}

fn pair_is(v: &serde_json::Value, c: &rekey::record::StoredCredential) -> bool {
    v.get("client_id").and_then(|x| x.as_str()) == Some(c.client_id.as_str())
        && v.get("client_secret").and_then(|x| x.as_str()) == Some(c.secret.expose())
        && v.get("generation").and_then(|x| x.as_u64()) == Some(c.generation)
        && v.get("managed_by").and_then(|x| x.as_str()) == Some("rekey")
}

fn op(generation: u64) -> Operation {
    Operation {
        id: uuid::Uuid::now_v7(),
        kind: OpKind::Rotate,
        phase: Phase::Pending,
        generation,
        started_at: Utc::now(),
        verify_failures: 0,
        client_name: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn consumers_read_awscurrent_through_a_rotation() {
    let h = harness();
    let cfg = h.config();
    let b = h.open(&cfg);
    let name = b.secret_name("svc");
    let mut rec = record("svc");
    rec.generation = 1;
    rec.current = Some(credential(1));
    let mut v = b.write("svc", &rec, None).await.unwrap();
    let g1 = rec.current.clone().unwrap();
    let seen = consumer_reads(&h, &name);
    assert!(pair_is(&seen["current"], &g1), "AWSCURRENT holds g1");
    assert!(pair_is(&seen["default"], &g1), "the default read holds g1");
    assert!(seen["pending"].is_null());

    // Pending g2: consumers still read g1; AWSPENDING holds g2.
    rec.generation = 2;
    rec.pending = Some(credential(2));
    rec.op = Some(op(2));
    v = b.write("svc", &rec, Some(v)).await.unwrap();
    let g2 = rec.pending.clone().unwrap();
    let seen = consumer_reads(&h, &name);
    assert!(
        pair_is(&seen["current"], &g1),
        "still g1 while g2 is pending"
    );
    assert!(pair_is(&seen["default"], &g1));
    assert!(pair_is(&seen["pending"], &g2), "AWSPENDING holds g2");

    // Promote: AWSCURRENT moves onto the pending version, AWS sets AWSPREVIOUS.
    let pending_version = h
        .stages(&name)
        .await
        .into_iter()
        .find(|(_, s)| s.iter().any(|l| l == "AWSPENDING"))
        .unwrap()
        .0;
    rec.draining.push(Draining {
        credential: rec.current.take().unwrap(),
        delete_after: Utc::now(),
        hold: None,
    });
    rec.current = rec.pending.take();
    rec.op = None;
    b.write("svc", &rec, Some(v)).await.unwrap();
    let seen = consumer_reads(&h, &name);
    assert!(pair_is(&seen["current"], &g2), "AWSCURRENT holds g2");
    assert!(pair_is(&seen["default"], &g2));
    assert!(pair_is(&seen["previous"], &g1), "AWSPREVIOUS holds g1");
    assert!(seen["pending"].is_null(), "nothing pending any more");
    let stages = h.stages(&name).await;
    assert!(
        stages[&pending_version].contains(&"AWSCURRENT".to_string()),
        "promotion moved AWSCURRENT onto the pending version: {stages:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_mark_ownership_and_nothing_secret_is_outside_values() {
    let h = harness();
    let b = h.open(&h.config());
    let mut rec = record("svc");
    rec.current = Some(credential(1));
    rec.pending = Some(credential(2));
    b.write("svc", &rec, None).await.unwrap();
    let d = h
        .client()
        .describe_secret()
        .secret_id(b.secret_name("svc"))
        .send()
        .await
        .unwrap();
    let tags: Vec<(String, String)> = d
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().into(), t.value().unwrap().into()))
        .collect();
    assert!(tags.contains(&("rekey:managed-by".into(), "rekey".into())));
    assert!(tags.contains(&("rekey:slot".into(), "svc".into())));
    let meta = format!("{tags:?} {:?}", d.description());
    for c in [rec.current.as_ref().unwrap(), rec.pending.as_ref().unwrap()] {
        assert!(
            !meta.contains(c.secret.expose()),
            "a secret in tags or description"
        );
    }
    // The record is never what a consumer reads.
    let stages = d.version_ids_to_stages().unwrap();
    let record_version = stages
        .iter()
        .find(|(_, s)| s.iter().any(|l| l == RECORD_STAGE))
        .unwrap();
    assert!(
        record_version.1.iter().all(|l| l.starts_with("REKEY_")),
        "the record version carries no consumer label: {:?}",
        record_version.1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_secret_is_never_overwritten() {
    let h = harness();
    let cfg = h.config();
    let b = h.open(&cfg);
    // Tagged as rekey's, but for another slot: still not ours.
    h.client()
        .create_secret()
        .name(b.secret_name("human"))
        .secret_string("hands off")
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("rekey:managed-by")
                .value("rekey")
                .build(),
        )
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("rekey:slot")
                .value("other")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let before = h.stages(&b.secret_name("human")).await;
    assert_eq!(
        b.read("human").await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    for expected in [None, Some(1u64)] {
        let e = b
            .write("human", &record("human"), expected)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    }
    assert_eq!(
        b.delete("human", 1).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    assert!(b.list(&Default::default()).await.unwrap().is_empty());
    assert_eq!(h.stages(&b.secret_name("human")).await, before, "untouched");
    let value = h
        .client()
        .get_secret_value()
        .secret_id(b.secret_name("human"))
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    assert_eq!(value.secret_string(), Some("hands off"));
}

#[tokio::test(flavor = "multi_thread")]
async fn crashes_between_the_steps_of_a_write() {
    let h = harness();
    let b = h.open(&h.config());
    let name = b.secret_name("svc");
    let mut rec = record("svc");
    rec.current = Some(credential(1));
    let v = b.write("svc", &rec, None).await.unwrap();

    // A writer died after putting its record version (step 2), before the compare-and-set:
    // the old record is still what reads return, and the next writer from v wins.
    h.client()
        .put_secret_value()
        .secret_id(&name)
        .secret_string(r#"{"rekey_record":1,"record":"half"}"#)
        .version_stages("REKEY_NEXT")
        .send()
        .await
        .unwrap();
    let got = b.read("svc").await.unwrap().unwrap();
    assert_eq!((got.version, &got.record), (v, &rec));
    let mut next = rec.clone();
    next.generation = 7;
    let v2 = b.write("svc", &next, Some(v)).await.unwrap();

    // A writer died after its compare-and-set (step 3), before moving AWSCURRENT: the record is
    // the new one, consumers still read the previous (still valid) pair, and the next write
    // brings the consumer view up to date.
    let mut promoted = next.clone();
    promoted.current = Some(credential(2));
    let v3 = b.write("svc", &promoted, Some(v2)).await.unwrap();
    let stages = h.stages(&name).await;
    let cur = |s: &std::collections::HashMap<String, Vec<String>>, l: &str| {
        s.iter()
            .find(|(_, st)| st.iter().any(|x| x == l))
            .map(|(id, _)| id.clone())
    };
    let (now, prev) = (
        cur(&stages, "AWSCURRENT").unwrap(),
        cur(&stages, "AWSPREVIOUS").unwrap(),
    );
    h.client()
        .update_secret_version_stage()
        .secret_id(&name)
        .version_stage("AWSCURRENT")
        .move_to_version_id(&prev)
        .remove_from_version_id(&now)
        .send()
        .await
        .unwrap();
    assert!(pair_is(
        &consumer_reads(&h, &name)["current"],
        rec.current.as_ref().unwrap()
    ));
    assert_eq!(b.read("svc").await.unwrap().unwrap().record, promoted);
    let mut later = promoted.clone();
    later.generation = 8;
    b.write("svc", &later, Some(v3)).await.unwrap();
    assert!(pair_is(
        &consumer_reads(&h, &name)["current"],
        promoted.current.as_ref().unwrap()
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_write_is_idempotent() {
    // The same write sent twice (an answer lost on the way back): the second is a replay.
    let h = harness();
    let b = h.open(&h.config());
    let v = b.write("svc", &record("svc"), None).await.unwrap();
    let mut rec = record("svc");
    rec.current = Some(credential(1));
    let v2 = b.write("svc", &rec, Some(v)).await.unwrap();
    let again = b.write("svc", &rec, Some(v)).await.unwrap();
    assert_eq!(v2, again, "the replay reports the same version");
    let mut other = rec.clone();
    other.generation = 3;
    let e = b.write("svc", &other, Some(v)).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Conflict,
        "a different write from v still loses"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_is_soft_and_the_slot_can_come_back() {
    let h = harness();
    let b = h.open(&h.config());
    let mut rec = record("svc");
    rec.current = Some(credential(1));
    let v = b.write("svc", &rec, None).await.unwrap();
    b.delete("svc", v).await.unwrap();
    let d = h
        .client()
        .describe_secret()
        .secret_id(b.secret_name("svc"))
        .send()
        .await
        .unwrap();
    assert!(
        d.deleted_date().is_some(),
        "scheduled for deletion, recoverable"
    );
    assert!(b.read("svc").await.unwrap().is_none());
    assert!(b.capabilities().soft_delete);
    let v2 = b.write("svc", &rec, None).await.unwrap();
    assert_ne!(v, v2, "a re-created entry never repeats an old version");
    assert_eq!(b.read("svc").await.unwrap().unwrap().record, rec);
    assert_eq!(b.list(&Default::default()).await.unwrap(), vec!["svc"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_down_is_a_clear_unavailable_error() {
    let mut h = harness();
    let cfg = h.config();
    let b = h.open(&cfg);
    let mut rec = record("svc");
    rec.current = Some(credential(1));
    let v = b.write("svc", &rec, None).await.unwrap();
    h.moto.stop();
    let start = Instant::now();
    let e = b.read("svc").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_temporary());
    let mut next = rec.clone();
    next.pending = Some(credential(2));
    let e = b.write("svc", &next, Some(v)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let text = format!("{e} {e:?}");
    assert!(text.contains("unreachable"), "{text}");
    for c in [
        rec.current.as_ref().unwrap(),
        next.pending.as_ref().unwrap(),
    ] {
        assert!(!text.contains(c.secret.expose()), "a secret in the error");
    }
    assert_eq!(b.check().await.unwrap_err().kind(), ErrorKind::Unavailable);
    assert!(start.elapsed() < Duration::from_secs(60));
}

/// One alternate rotation's writes, as the engine makes them: the operation (which takes the
/// lease), the pending pair, the promotion (which hands the lease back). Prints the latency (not asserted). Run:
/// `cargo test --test conformance_aws rotation_write_latency -- --nocapture`
#[tokio::test(flavor = "multi_thread")]
async fn rotation_write_latency() {
    let h = harness();
    let b = h.open(&h.config());
    let mut rec = record("svc");
    rec.generation = 1;
    rec.current = Some(credential(1));
    let mut v = b.write("svc", &rec, None).await.unwrap();
    // The records of each step, built first, then written and timed one after another.
    let mut plan = Vec::new();
    rec.lease = Some(Lease {
        run_id: uuid::Uuid::now_v7(),
        host: "bench".into(),
        pid: 1,
        expires_at: Utc::now(),
    });
    rec.generation = 2;
    let mut o = op(2);
    o.phase = Phase::Creating;
    rec.op = Some(o);
    plan.push(("op + lease", rec.clone()));
    rec.pending = Some(credential(2));
    rec.op.as_mut().unwrap().phase = Phase::Pending;
    plan.push(("pending", rec.clone()));
    rec.draining.push(Draining {
        credential: rec.current.take().unwrap(),
        delete_after: Utc::now(),
        hold: None,
    });
    rec.current = rec.pending.take();
    rec.op = None;
    rec.lease = None;
    plan.push(("promote+release", rec.clone()));
    let total = Instant::now();
    let mut steps = Vec::new();
    for (label, r) in plan {
        let t = Instant::now();
        v = b.write("svc", &r, Some(v)).await.unwrap();
        steps.push((label, t.elapsed()));
    }
    let total = total.elapsed();
    for (l, d) in &steps {
        println!(
            "aws write latency: {l:<14} {:>7.1} ms",
            d.as_secs_f64() * 1000.0
        );
    }
    println!(
        "aws write latency: one rotation = {} writes, {:.1} ms total (moto on 127.0.0.1)",
        steps.len(),
        total.as_secs_f64() * 1000.0
    );
}
