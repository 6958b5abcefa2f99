//! Usage-aware draining, end to end: the real binary against the emulator (Taegis and Cisco) and
//! the age file backend. A previous client outlives its grace while a consumer still gets tokens
//! with it, and is deleted by the first run after it has been quiet for `drain_quiet`; rekey's
//! own look never counts as a use (docs/src/protocol.md, "Draining").
//!
//! Time: rekey's clock is moved with the test hook (`apply_at`), and the emulator's clock for
//! recorded use is moved as far before a consumer gets a token (`consumer_at`), so "12 minutes
//! ago" means the same to both.

mod common;
use common::{World, actions, cisco_slot, slots};
use rekey::emulator::Faults;
use rekey::record::StoredCredential;
use std::time::Duration;

/// rekey's clock offset for `offset` ("32d 1h"), as the emulator takes it.
fn offset(offset: &str) -> chrono::Duration {
    chrono::Duration::from_std(humantime::parse_duration(offset).unwrap()).unwrap()
}

/// A consumer that never reloaded gets a token with `pair` at rekey's time `at`.
async fn consumer_at(w: &World, at: &str, pair: &StoredCredential) {
    w.emu.set_clock_offset(offset(at)).await;
    assert!(
        w.token_ok(&pair.client_id, pair.secret.expose()).await,
        "the consumer's pair g{} works at {at}",
        pair.generation
    );
    w.emu.set_clock_offset(chrono::Duration::zero()).await;
}

/// A Cisco consumer, as [`consumer_at`].
async fn cisco_consumer_at(w: &World, at: &str, pair: &StoredCredential) {
    w.emu.set_clock_offset(offset(at)).await;
    assert!(
        w.cisco_token_ok(&pair.client_id, pair.secret.expose())
            .await
    );
    w.emu.set_clock_offset(chrono::Duration::zero()).await;
}

/// Whether the platform still holds the client, read from the emulator's own listing (not a
/// token exchange, which would itself be a use).
async fn exists(w: &World, tenant: &str, client_id: &str) -> bool {
    w.platform_clients(tenant)
        .await
        .iter()
        .any(|(_, id, _)| id == client_id)
}

/// The token requests the emulator counted for a client.
async fn token_count(w: &World, tenant: &str, client_id: &str) -> u64 {
    w.platform_listing(tenant)
        .await
        .into_iter()
        .find(|c| c.client_id == client_id)
        .map(|c| c.token_request_count)
        .unwrap_or_else(|| panic!("{client_id} is not listed"))
}

async fn rekey_at(w: &World, at: &str, args: &[&str]) -> common::Run {
    w.rekey_env(args, &[("REKEY_TEST_CLOCK_OFFSET", at)]).await
}

/// One Taegis slot rotated once: g1 draining (grace 1d, ends at 32d), g2 current.
async fn rotated_once(w: &World, slot_extra: &str) -> (StoredCredential, StoredCredential) {
    w.inventory(&format!("{}{slot_extra}", slots(&[("alpha", "alternate")])));
    w.apply(&[]).await.expect_code(0);
    let g1 = w.record("alpha").await.unwrap().current.unwrap();
    let r = w.apply_at("31d", &["--output", "json"]).await;
    r.expect_code(0);
    assert_eq!(actions(&r, "alpha"), vec!["created g2", "promoted g2"]);
    let g2 = w.record("alpha").await.unwrap().current.unwrap();
    (g1, g2)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_used_after_promotion_outlives_its_grace_and_goes_once_quiet() {
    let w = World::new(1).await;
    let tenant = w.tenants[0].id.clone();
    let (g1, g2) = rotated_once(&w, "").await;

    // An hour after the grace ended, a consumer that never reloaded still uses g1.
    consumer_at(&w, "32d 1h", &g1).await;
    let held = w.apply_at("32d 1h 12m", &["--output", "json"]).await;
    held.expect_code(0);
    let a = actions(&held, "alpha");
    assert_eq!(a.len(), 1, "{a:?}");
    assert!(
        a[0].starts_with("held g1 still in use: last token 12m"),
        "{a:?}"
    );
    assert!(exists(&w, &tenant, &g1.client_id).await, "g1 was deleted");
    let rec = w.record("alpha").await.unwrap();
    let hold = rec.draining[0].hold.clone().expect("the record says why");
    assert_eq!(rec.draining[0].credential.client_id, g1.client_id);
    assert!(hold.token_requests.is_some_and(|n| n >= 2), "{hold:?}");

    // `status` and `plan` say why, and the slot's state says it.
    let st = rekey_at(&w, "32d 1h 12m", &["status", "-c", "inventory.toml"]).await;
    st.expect_code(0);
    assert!(st.stdout.contains("draining-in-use"), "{}", st.stdout);
    assert!(
        st.stdout.contains("alpha: g1 still in use: last token 12m"),
        "{}",
        st.stdout
    );
    let plan = rekey_at(&w, "32d 1h 30m", &["plan", "-c", "inventory.toml"]).await;
    plan.expect_code(0);
    assert!(
        plan.stdout.contains("g1 still in use: last token 30m"),
        "{}",
        plan.stdout
    );

    // Runs before the quiet window can have passed do not ask again, and change nothing.
    let again = w.apply_at("32d 2h", &["--output", "json"]).await;
    again.expect_code(0);
    assert!(actions(&again, "alpha").is_empty(), "{}", again.stdout);

    // The consumer moved to g2 at 32d 1h; two hours later g1 is deleted by the next run.
    let gone = w.apply_at("32d 3h 5m", &["--output", "json"]).await;
    gone.expect_code(0);
    assert_eq!(actions(&gone, "alpha"), vec!["deleted g1"]);
    assert!(!exists(&w, &tenant, &g1.client_id).await);
    assert!(w.token_ok(&g2.client_id, g2.secret.expose()).await);
    assert!(w.record("alpha").await.unwrap().draining.is_empty());
    w.assert_consistent(&["alpha"]).await;
    w.assert_no_secrets(&held.all());
    w.assert_no_secrets(&st.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn rekey_never_uses_a_draining_pair_and_its_own_verification_does_not_hold_it() {
    let w = World::new(1).await;
    let tenant = w.tenants[0].id.clone();
    // Hourly rotation with a 10-minute grace: g1's last token is rekey's own verification,
    // well inside the 2h quiet window when its grace ends.
    w.inventory(&format!(
        "{}max_age = \"1h\"\ngrace = \"10m\"\n",
        slots(&[("alpha", "alternate")])
    ));
    w.apply(&[]).await.expect_code(0);
    let g1 = w.record("alpha").await.unwrap().current.unwrap();
    let before = token_count(&w, &tenant, &g1.client_id).await;
    assert!(before >= 1, "rekey verified g1 before promoting it");

    let r = w.apply_at("61m", &["--output", "json"]).await;
    r.expect_code(0);
    assert_eq!(actions(&r, "alpha"), vec!["created g2", "promoted g2"]);
    let g2 = w.record("alpha").await.unwrap().current.unwrap();
    assert!(
        token_count(&w, &tenant, &g2.client_id).await >= 1,
        "the new pair was verified"
    );
    // Every command a user runs while g1 drains: none of them uses g1.
    for args in [
        &["apply", "-c", "inventory.toml"][..],
        &["status", "-c", "inventory.toml"],
        &["plan", "-c", "inventory.toml"],
        &["verify", "-c", "inventory.toml"],
        &["check", "-c", "inventory.toml"],
    ] {
        rekey_at(&w, "65m", args).await;
    }
    assert_eq!(
        token_count(&w, &tenant, &g1.client_id).await,
        before,
        "rekey used the draining pair"
    );

    let after = w.apply_at("72m", &["--output", "json"]).await;
    after.expect_code(0);
    assert_eq!(actions(&after, "alpha"), vec!["deleted g1"]);
    assert!(!exists(&w, &tenant, &g1.client_id).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drain_timeout_keeps_holding_by_default_and_deletes_when_the_policy_says() {
    let w = World::new(1).await;
    let tenant = w.tenants[0].id.clone();
    let (g1, _) = rotated_once(&w, "drain_timeout = \"1d\"\n").await;
    // Grace over at 32d, timeout at 33d: the consumer is still there after both.
    consumer_at(&w, "33d 2h", &g1).await;
    let kept = w.apply_at("33d 2h 5m", &["--output", "json"]).await;
    kept.expect_code(0);
    assert!(
        actions(&kept, "alpha")[0].contains("drain_timeout passed, kept"),
        "{}",
        kept.stdout
    );
    assert!(exists(&w, &tenant, &g1.client_id).await);
    assert!(
        w.record("alpha").await.unwrap().draining[0]
            .hold
            .as_ref()
            .unwrap()
            .overdue
    );
    // Overdue holds need someone: status asks for attention (exit 1).
    let st = rekey_at(&w, "33d 2h 5m", &["status", "-c", "inventory.toml"]).await;
    st.expect_code(1);
    assert!(st.stdout.contains("DRAINING-IN-USE"), "{}", st.stdout);

    // The operator decides the old client must go: the changed policy applies at once.
    w.inventory(&format!(
        "{}drain_timeout = \"1d\"\non_drain_timeout = \"delete\"\n",
        slots(&[("alpha", "alternate")])
    ));
    let deleted = w.apply_at("33d 2h 6m", &["--output", "json"]).await;
    deleted.expect_code(0);
    let a = actions(&deleted, "alpha");
    assert!(
        a.len() == 1 && a[0].starts_with("deleted g1 though still in use"),
        "{a:?}"
    );
    assert!(!exists(&w, &tenant, &g1.client_id).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn grace_only_deletes_at_the_end_of_the_grace_whatever_the_use() {
    let w = World::new(1).await;
    let tenant = w.tenants[0].id.clone();
    let (g1, _) = rotated_once(&w, "drain = \"grace-only\"\n").await;
    consumer_at(&w, "32d", &g1).await;
    let r = w.apply_at("32d 1m", &["--output", "json"]).await;
    r.expect_code(0);
    assert_eq!(actions(&r, "alpha"), vec!["deleted g1"]);
    assert!(!exists(&w, &tenant, &g1.client_id).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn cisco_holds_on_its_last_used_field_and_falls_back_to_the_grace_without_it() {
    let cw = World::new_with(0, 1).await;
    let org = cw.orgs[0].id.clone();
    cw.inventory(&format!(
        "{}\n{}",
        cisco_slot("alpha", "c0"),
        cisco_slot("beta", "c0")
    ));
    cw.apply(&[]).await.expect_code(0);
    let a1 = cw.record("alpha").await.unwrap().current.unwrap();
    let b1 = cw.record("beta").await.unwrap().current.unwrap();
    cw.apply_at("31d", &[]).await.expect_code(0);

    // Both old pairs are still used after their grace ended (32d).
    cisco_consumer_at(&cw, "32d 1h", &a1).await;
    cisco_consumer_at(&cw, "32d 1h", &b1).await;
    let held = cw
        .apply_at("32d 1h 5m", &["--output", "json", "--only", "alpha"])
        .await;
    held.expect_code(0);
    assert!(
        actions(&held, "alpha")[0].starts_with("held g1 still in use: last token 5m"),
        "{}",
        held.stdout
    );
    assert!(exists(&cw, &org, &a1.client_id).await);

    // A platform whose listing carries no last-used field: rekey cannot tell, says so, and
    // deletes at the end of the grace as it always did (never "unknown means unused" silently).
    cw.set_faults(Faults {
        omit_last_used: true,
        ..Faults::default()
    })
    .await;
    let fallback = cw
        .apply_at("32d 1h 6m", &["--output", "json", "--only", "beta"])
        .await;
    fallback.expect_code(0);
    assert_eq!(
        actions(&fallback, "beta"),
        vec!["deleted g1 (the platform reports no usage for it: drained by its grace alone)"]
    );
    assert!(!exists(&cw, &org, &b1.client_id).await);
    cw.set_faults(Faults::default()).await;

    // alpha's consumer moved: quiet for two hours, deleted.
    let gone = cw.apply_at("32d 3h 2m", &["--output", "json"]).await;
    gone.expect_code(0);
    assert_eq!(actions(&gone, "alpha"), vec!["deleted g1"]);
    assert!(!exists(&cw, &org, &a1.client_id).await);
    cw.assert_consistent(&["alpha", "beta"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn in_place_has_no_old_client_to_hold_plan_says_so_and_apply_names_the_recent_use() {
    let w = World::new(1).await;
    w.inventory(&slots(&[("beta", "in-place")]));
    w.apply(&[]).await.expect_code(0);
    let g1 = w.record("beta").await.unwrap().current.unwrap();
    let plan = rekey_at(&w, "31d", &["plan", "-c", "inventory.toml"]).await;
    assert!(
        plan.stdout
            .contains("in place: the old secret dies at once, so there is no old client to drain"),
        "{}",
        plan.stdout
    );
    consumer_at(&w, "30d 23h 50m", &g1).await;
    let r = w.apply_at("31d", &["--output", "json"]).await;
    r.expect_code(0);
    let a = actions(&r, "beta");
    assert!(
        a.iter()
            .any(|x| x.starts_with("warning: consumers used g1's secret 10m")
                && x.contains("they fail until they read g2")),
        "{a:?}"
    );
    assert!(a.contains(&"promoted g2".to_string()), "{a:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_client_is_posted_to_the_webhook() {
    let (url, mut rx) =
        common::servers::webhook_receiver("/hook/T000/SECRETPATH", |_| "200 OK").await;
    let w = World::new(1).await;
    let (g1, _) = rotated_once(&w, "").await;
    consumer_at(&w, "32d 1h", &g1).await;
    let run = w
        .apply_at("32d 1h 1m", &["--webhook", &url, "--output", "json"])
        .await;
    run.expect_code(0);
    let body = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["event"], "draining_in_use");
    assert_eq!(v["slot"], "alpha");
    assert!(
        v["detail"].as_str().unwrap().starts_with("g1 still in use"),
        "{v}"
    );
    assert!(v["action"].as_str().unwrap().contains("restart"), "{v}");
    w.assert_no_secrets(&body);
}
