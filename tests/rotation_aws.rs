//! End to end with AWS Secrets Manager (moto) as the primary backend: the real binary, the
//! emulator, and checks a user would make, including what a consumer reads with boto3.

mod common;
mod moto;
use common::providers::token_fault;
use common::{AwsTarget, World, actions, assert_each_promoted_once, crash_windows, slots};
use moto::Moto;

fn target(moto: &Moto) -> AwsTarget {
    AwsTarget {
        endpoint: moto.url(),
        prefix: format!("rekey-e2e-{}/", common::random_alnum(10).to_lowercase()),
    }
}

async fn apply(w: &World, offset: Option<&str>) -> common::Run {
    let mut env = Vec::new();
    if let Some(o) = offset {
        env.push(("REKEY_TEST_CLOCK_OFFSET", o));
    }
    w.rekey_aws(&["apply", "-c", "inventory.toml", "--output", "json"], &env)
        .await
}

/// The pair a consumer gets from boto3 asking for AWSCURRENT: (client_id, generation), and
/// whether its secret is the stored one.
fn consumer_current(moto: &Moto, t: &AwsTarget, w: &World, slot: &str) -> (String, u64, String) {
    let out = moto.python(&format!(
        r#"
import boto3, json, os
c = boto3.client("secretsmanager", endpoint_url=os.environ["MOTO_URL"])
v = json.loads(c.get_secret_value(SecretId="{}{slot}", VersionStage="AWSCURRENT")["SecretString"])
print(json.dumps(v))
"#,
        t.prefix
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    w.known_secrets.lock().unwrap().push(s("client_secret"));
    (
        s("client_id"),
        v["generation"].as_u64().unwrap(),
        s("client_secret"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn create_rotate_grace_and_the_consumer_view() {
    let moto = Moto::start();
    let t = target(&moto);
    let w = World::new(1).await;
    w.inventory_aws(&t, &slots(&[("alpha", "alternate"), ("beta", "in-place")]));
    let first = apply(&w, None).await;
    first.expect_code(0);
    for s in ["alpha", "beta"] {
        assert_eq!(actions(&first, s), vec!["created g1", "promoted g1"]);
    }
    w.assert_consistent_aws(&t, &["alpha", "beta"]).await;
    let g1 = w.record_aws(&t, "alpha").await.unwrap().current.unwrap();
    let (id, generation, secret) = consumer_current(&moto, &t, &w, "alpha");
    assert!(id == g1.client_id && generation == 1 && secret == g1.secret.expose());

    let second = apply(&w, None).await;
    second.expect_code(0);
    for s in ["alpha", "beta"] {
        assert!(actions(&second, s).is_empty(), "second apply acted");
    }

    // Due: alternate makes g2, in-place a new secret for the same client.
    let later = apply(&w, Some("31d")).await;
    later.expect_code(0);
    assert_eq!(actions(&later, "alpha"), vec!["created g2", "promoted g2"]);
    let rec = w.record_aws(&t, "alpha").await.unwrap();
    let g2 = rec.current.clone().unwrap();
    assert_eq!(g2.generation, 2);
    assert_eq!(rec.draining.len(), 1);
    assert!(
        w.token_ok(&g1.client_id, g1.secret.expose()).await,
        "g1 alive in grace"
    );
    let (id, generation, secret) = consumer_current(&moto, &t, &w, "alpha");
    assert!(id == g2.client_id && generation == 2 && secret == g2.secret.expose());
    let beta = w.record_aws(&t, "beta").await.unwrap();
    assert_eq!(beta.current.as_ref().unwrap().generation, 2);
    let (id, _, secret) = consumer_current(&moto, &t, &w, "beta");
    assert!(id == beta.current.as_ref().unwrap().client_id);
    assert!(secret == beta.current.as_ref().unwrap().secret.expose());

    // Grace over: g1 deleted at the provider; the consumer view is unchanged.
    let after = apply(&w, Some("32d 1h")).await;
    after.expect_code(0);
    assert_eq!(actions(&after, "alpha"), vec!["deleted g1"]);
    assert!(!w.token_ok(&g1.client_id, g1.secret.expose()).await);
    w.assert_consistent_aws(&t, &["alpha", "beta"]).await;
    for r in [&first, &second, &later, &after] {
        w.assert_no_secrets(&r.all());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retire_soft_deletes_the_secret() {
    let moto = Moto::start();
    let t = target(&moto);
    let w = World::new(1).await;
    w.inventory_aws(&t, &slots(&[("alpha", "alternate"), ("old", "alternate")]));
    apply(&w, None).await.expect_code(0);
    let old = w.record_aws(&t, "old").await.unwrap().current.unwrap();
    w.inventory_aws(
        &t,
        &format!(
            "{}\n[[slots]]\nname = \"old\"\nprovider = \"p0\"\nretired = true\ngrace = \"1h\"\n",
            slots(&[("alpha", "alternate")])
        ),
    );
    let r = apply(&w, None).await;
    r.expect_code(0);
    assert_eq!(actions(&r, "old"), vec!["retiring"]);
    let r = apply(&w, Some("2h")).await;
    r.expect_code(0);
    assert_eq!(
        actions(&r, "old"),
        vec![
            format!("deleted client {} (g1)", old.client_id),
            "retired (1 client deleted)".to_string()
        ]
    );
    assert!(w.record_aws(&t, "old").await.is_none(), "entry removed");
    assert!(!w.token_ok(&old.client_id, old.secret.expose()).await);
    let deleted = moto.python(&format!(
        r#"
import boto3, os
c = boto3.client("secretsmanager", endpoint_url=os.environ["MOTO_URL"])
print("DeletedDate" in c.describe_secret(SecretId="{}old"))
"#,
        t.prefix
    ));
    assert_eq!(deleted.trim(), "True", "soft-deleted (recoverable)");
    w.assert_consistent_aws(&t, &["alpha"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_windows_of_an_alternate_rotation() {
    let moto = Moto::start();
    // The lease is taken in the write that records the operation: no window between.
    let points = [
        "after-op-recorded",
        "after-provider-create",
        "aws-after-record-put",
        "after-pending-written",
        "after-verify",
        "aws-after-record-commit",
        // The promotion: `promoting` recorded, AWSCURRENT moved, then the record committed.
        "after-promoting-recorded",
        "aws-after-current-view",
        "after-promote",
    ];
    let covered = crash_windows(
        &points,
        async |_| {
            let t = target(&moto);
            let w = World::new(1).await;
            w.inventory_aws(&t, &slots(&[("alpha", "alternate")]));
            apply(&w, None).await.expect_code(0);
            (w, t)
        },
        async |(w, _), crash| {
            w.rekey_aws(&["apply", "-c", "inventory.toml", "--force"], crash)
                .await
        },
        async |(w, t), point| {
            // The record stays readable whatever the crash; the next run finishes the job.
            assert!(w.record_aws(t, "alpha").await.is_some(), "{point}");
            let healed = apply(w, None).await;
            healed.expect_code(0);
            let rec = w.record_aws(t, "alpha").await.unwrap();
            assert!(rec.current.as_ref().unwrap().generation >= 1, "{point}");
            let (id, _, secret) = consumer_current(&moto, t, w, "alpha");
            assert!(
                id == rec.current.as_ref().unwrap().client_id
                    && secret == rec.current.as_ref().unwrap().secret.expose(),
                "{point}: consumers read the current pair"
            );
            let after_grace = apply(w, Some("3d")).await;
            after_grace.expect_code(0);
            w.assert_consistent_aws(t, &["alpha"]).await;
            vec![healed, after_grace]
        },
    )
    .await;
    assert_eq!(covered, points.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_concurrent_applies_rotate_each_slot_exactly_once() {
    let moto = Moto::start();
    let t = target(&moto);
    let w = World::new(1).await;
    let names: Vec<String> = (0..6).map(|i| format!("s{i:02}")).collect();
    let list: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "alternate")).collect();
    w.inventory_aws(&t, &slots(&list));
    apply(&w, None).await.expect_code(0);
    let args = [
        "apply",
        "-c",
        "inventory.toml",
        "--output",
        "json",
        "--concurrency",
        "3",
    ];
    let env = [("REKEY_TEST_CLOCK_OFFSET", "31d")];
    let (a, b) = tokio::join!(w.rekey_aws(&args, &env), w.rekey_aws(&args, &env));
    assert_each_promoted_once(&a, &b, &names);
    for n in &names {
        let rec = w.record_aws(&t, n).await.unwrap();
        assert_eq!(rec.current.as_ref().unwrap().generation, 2, "slot {n}");
    }
    apply(&w, Some("33d")).await.expect_code(0);
    w.assert_consistent_aws(&t, &names.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
}

/// Found by the fault campaign (RELIABILITY.md): an in-place rotation killed right after the
/// commit of the write that promotes the new secret left `AWSCURRENT` on the old secret, which
/// the rotation had already killed, and the next run (finding the slot settled) wrote nothing,
/// so consumers read a dead pair until the next rotation. Every commit of the rotation is tried.
#[tokio::test(flavor = "multi_thread")]
async fn in_place_crash_after_any_commit_leaves_consumers_a_working_pair() {
    let moto = Moto::start();
    let t = target(&moto);
    let w = World::new(1).await;
    w.inventory_aws(&t, &slots(&[("alpha", "in-place")]));
    apply(&w, None).await.expect_code(0);
    let mut crashed_at = 0;
    for n in 1..=12 {
        let point = format!("aws-after-record-commit#{n}");
        let run = w
            .rekey_aws(
                &["apply", "-c", "inventory.toml", "--force"],
                &[("REKEY_CRASH_AT", point.as_str())],
            )
            .await;
        if !run.stderr.contains("test crash point") {
            run.expect_code(0); // the rotation passes fewer commits than n
            break;
        }
        crashed_at = n;
        apply(&w, None).await.expect_code(0);
        let rec = w.record_aws(&t, "alpha").await.unwrap();
        let cur = rec.current.unwrap();
        let (id, generation, secret) = consumer_current(&moto, &t, &w, "alpha");
        assert_eq!(
            (id.as_str(), generation),
            (cur.client_id.as_str(), cur.generation),
            "{point}: consumers read the current pair"
        );
        assert!(
            w.token_ok(&id, &secret).await,
            "{point}: the consumer's pair works"
        );
    }
    assert!(
        crashed_at >= 3,
        "the rotation passed only {crashed_at} commits"
    );
    w.assert_consistent_aws(&t, &["alpha"]).await;
}

/// Issue 13 finding 8, AWS: a run killed right after `AWSCURRENT` moved onto g2 (the record
/// still says pending g2), then three runs with the token endpoint answering 503: consumers'
/// pair still gets a token and `rekey verify` checks it.
#[tokio::test(flavor = "multi_thread")]
async fn a_pair_consumers_saw_is_never_discarded() {
    use rekey::emulator::{FaultAction, Faults};
    let moto = Moto::start();
    let t = target(&moto);
    let w = World::new(1).await;
    let inv = w.inventory_aws(&t, &slots(&[("alpha", "alternate")]));
    // One verification attempt per run: each 503 is retried with its Retry-After already.
    let text = std::fs::read_to_string(&inv).unwrap();
    std::fs::write(
        &inv,
        text.replace("verify_attempts = 3", "verify_attempts = 1"),
    )
    .unwrap();
    apply(&w, None).await.expect_code(0);
    let crashed = w
        .rekey_aws(
            &["apply", "-c", "inventory.toml"],
            &[
                ("REKEY_CRASH_AT", "aws-after-current-view"),
                ("REKEY_TEST_CLOCK_OFFSET", "31d"),
            ],
        )
        .await;
    assert!(
        crashed.stderr.contains("test crash point"),
        "did not crash: {}",
        crashed.stderr
    );
    let (seen_id, seen_gen, seen_secret) = consumer_current(&moto, &t, &w, "alpha");
    assert_eq!(seen_gen, 2, "consumers read g2 before the record says so");
    for run in 1..=3 {
        w.set_faults(token_fault(FaultAction::Status(503))).await;
        let r = apply(&w, Some("31d")).await;
        assert!(
            !actions(&r, "alpha")
                .iter()
                .any(|a| a.starts_with("discarded")),
            "run {run}: {}",
            r.stdout
        );
    }
    w.set_faults(Faults::default()).await;
    let (id, generation, secret) = consumer_current(&moto, &t, &w, "alpha");
    assert!(
        w.token_ok(&id, &secret).await,
        "the pair consumers read (g{generation}) no longer gets a token"
    );
    assert_eq!((id.as_str(), generation), (seen_id.as_str(), seen_gen));
    assert_eq!(secret, seen_secret);
    let r = w
        .rekey_aws(&["verify", "-c", "inventory.toml", "--output", "json"], &[])
        .await;
    r.expect_code(0);
    let row = r.row("alpha");
    assert_eq!(row["client_id"], id.as_str());
    assert_eq!(row["generation"], generation);
    assert_eq!(row["ok"], true);
    w.assert_no_secrets(&r.all());
}
