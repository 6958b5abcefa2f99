//! `rekey rollback SLOT`: inside the grace period the previous pair becomes current again, its
//! deletion is cancelled, the newer pair drains, and the audit trail records it; once the
//! previous client is gone the command refuses with a clear message and changes nothing.

mod common;
use common::World;

const SLOT: &str = "[[slots]]\nname = \"alpha\"\nprovider = \"p0\"\n";

async fn at(w: &World, offset: &str, args: &[&str]) -> common::Run {
    w.rekey_env(args, &[("REKEY_TEST_CLOCK_OFFSET", offset)])
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_inside_grace_restores_the_previous_pair() {
    let w = World::new(1).await;
    w.inventory(SLOT);
    w.apply(&[]).await.expect_code(0);
    let g1 = w.record("alpha").await.unwrap().current.unwrap();
    at(&w, "31d", &["apply", "-c", "inventory.toml"])
        .await
        .expect_code(0);
    let g2 = w.record("alpha").await.unwrap().current.unwrap();
    assert_eq!(g2.generation, 2);

    let r = at(
        &w,
        "31d 1h",
        &[
            "rollback",
            "-c",
            "inventory.toml",
            "alpha",
            "--audit-log",
            "audit.jsonl",
            "--output",
            "json",
        ],
    )
    .await;
    r.expect_code(0);
    let actions = r.outcomes()[0]["actions"].clone();
    assert_eq!(actions[0], "rolled back to g1", "{}", r.stdout);
    let rec = w.record("alpha").await.unwrap();
    assert_eq!(rec.current.as_ref().unwrap().client_id, g1.client_id);
    assert_eq!(rec.draining.len(), 1);
    assert_eq!(rec.draining[0].credential.client_id, g2.client_id);
    assert!(rec.lease.is_none() && rec.op.is_none());
    assert!(w.token_ok(&g1.client_id, g1.secret.expose()).await);
    assert!(w.token_ok(&g2.client_id, g2.secret.expose()).await);

    let audit = std::fs::read_to_string(w.path().join("audit.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{audit}");
    assert_eq!(lines[0]["reason"], "rollback");
    assert_eq!(lines[0]["client_id"], g1.client_id.as_str());
    assert_eq!(lines[0]["fingerprint"], g1.secret.fingerprint().as_str());
    assert_eq!(lines[0]["draining_client_ids"][0], g2.client_id.as_str());

    // The next run neither deletes g1 (no longer draining) nor rotates it (held), although
    // g1 is past its max age.
    let next = at(
        &w,
        "31d 2h",
        &["apply", "-c", "inventory.toml", "--output", "json"],
    )
    .await;
    next.expect_code(0);
    assert!(
        next.outcomes()[0]["actions"].as_array().unwrap().is_empty(),
        "{}",
        next.stdout
    );
    assert!(w.token_ok(&g1.client_id, g1.secret.expose()).await);
    w.assert_consistent(&["alpha"]).await;
    w.assert_no_secrets(&r.all());
    w.assert_no_secrets(&audit);
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_after_grace_is_refused() {
    let w = World::new(1).await;
    w.inventory(SLOT);
    w.apply(&[]).await.expect_code(0);
    at(&w, "31d", &["apply", "-c", "inventory.toml"])
        .await
        .expect_code(0);
    at(&w, "32d 1h", &["apply", "-c", "inventory.toml"])
        .await
        .expect_code(0);
    let before = w.record("alpha").await.unwrap();
    assert!(before.draining.is_empty(), "g1 deleted after grace");

    let r = at(&w, "32d 2h", &["rollback", "-c", "inventory.toml", "alpha"]).await;
    r.expect_code(1);
    assert!(
        r.stderr.contains("cannot roll back from g2")
            && r.stderr.contains("the previous client (g1) is gone"),
        "{}",
        r.stderr
    );
    assert_eq!(
        w.record("alpha").await.unwrap(),
        before,
        "a refused rollback changes nothing"
    );

    let unknown = w.rekey(&["rollback", "-c", "inventory.toml", "nope"]).await;
    unknown.expect_code(2);
    assert!(
        unknown.stderr.contains("slot nope is not in the inventory"),
        "{}",
        unknown.stderr
    );
}
