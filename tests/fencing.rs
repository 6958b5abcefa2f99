//! Issue 13, findings 4 and 7, end to end on the real binary against the emulator and the age
//! file backend: a run that lost its lease never calls the provider (fencing), and only a
//! usable token proves that a new pair works; a temporary error is no verdict.

mod common;
use common::providers::token_fault;
use common::{World, actions, slots};
use rekey::emulator::{FaultAction, Faults};
use std::time::{Duration, Instant};

/// Whether process `pid` is stopped (state `T` in /proc/PID/stat).
fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some(after == 'T' || after == 't')
        })
        .unwrap_or(false)
}

async fn poll_until(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !ok() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Finding 4: a run paused (SIGSTOP) right before an in-place `rotateClientSecret`, past its
/// lease, while a second run takes the slot over and rotates and promotes it, must not call the
/// provider when it resumes: the stored current pair keeps working.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_paused_past_its_lease_never_calls_the_provider() {
    let w = World::new(1).await;
    let header = w
        .header()
        .replace("[settings]\n", "[settings]\nlease_ttl = \"3s\"\n");
    w.inventory_raw(&format!("{header}\n{}", slots(&[("alpha", "in-place")])));
    w.apply(&[]).await.expect_code(0);

    // The first run records its in-place operation (taking the lease), then stops itself at
    // the fence before rotateClientSecret.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rekey"));
    cmd.args([
        "apply",
        "-c",
        "inventory.toml",
        "--force",
        "--output",
        "json",
    ])
    .current_dir(w.path())
    .env("REKEY_LOG_FORMAT", "json")
    .env("RUST_LOG", common::secrets::rust_log())
    .env_remove("REKEY_CRASH_AT")
    .env_remove("REKEY_TEST_CLOCK_OFFSET")
    .env("REKEY_STOP_AT", "before-provider-rotate")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    let pid = child.id().unwrap();
    poll_until("the first run to stop", Duration::from_secs(60), || {
        is_stopped(pid)
    })
    .await;
    let stopped_at = Instant::now();

    // A second run, on a clock past the lease, resumes the operation and promotes g2.
    let second = w.apply_at("1h", &["--output", "json"]).await;
    second.expect_code(0);
    assert!(
        actions(&second, "alpha").contains(&"promoted g2".to_string()),
        "{}",
        second.stdout
    );
    let current = w.record("alpha").await.unwrap().current.unwrap();
    assert_eq!(current.generation, 2);
    assert!(
        w.token_ok(&current.client_id, current.secret.expose())
            .await
    );

    // The paused run has been away longer than a third of its lease by its own clocks.
    poll_until(
        "a third of the lease to pass",
        Duration::from_secs(30),
        || stopped_at.elapsed() > Duration::from_millis(1200),
    )
    .await;
    // SAFETY: sends SIGCONT to the child this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGCONT) }, 0);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the first run finished")
        .unwrap();
    common::secrets::keep_output(&["apply"], &out);
    let first = common::Run::from(out);

    // It stopped itself without calling the provider: the stored pair still works.
    let after = w.record("alpha").await.unwrap().current.unwrap();
    assert_eq!(after.secret.expose(), current.secret.expose());
    assert!(
        w.token_ok(&current.client_id, current.secret.expose())
            .await,
        "the stored current pair was killed by the paused run\n{}\n{}",
        first.stdout,
        first.stderr
    );
    let o = first
        .outcomes()
        .into_iter()
        .find(|o| o["slot"] == "alpha")
        .unwrap();
    assert_eq!(o["result"], "skipped", "{o}");
    assert!(
        o["detail"].as_str().unwrap().contains("lease"),
        "a clear reason: {o}"
    );
    assert_eq!(first.code, Some(3), "{}", first.stderr);

    // The next apply is ok and the pair works.
    w.apply_at("1h", &[]).await.expect_code(0);
    w.assert_consistent(&["alpha"]).await;
    w.assert_no_secrets(&first.all());
    w.assert_no_secrets(&second.all());
}

/// Finding 7: a token answer with an empty `access_token`, or an already expired token, proves
/// nothing: the new pair is not promoted.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_or_expired_token_is_no_proof() {
    for action in [FaultAction::EmptyToken, FaultAction::ExpiredToken] {
        let w = World::new(1).await;
        w.inventory(&slots(&[("alpha", "alternate")]));
        w.set_faults(token_fault(action)).await;
        let r = w.apply(&["--output", "json"]).await;
        r.expect_code(1);
        let rec = w.record("alpha").await.unwrap();
        assert!(
            rec.current.is_none(),
            "{action:?}: a pair was promoted on an unusable token"
        );
        assert_eq!(rec.op.as_ref().unwrap().verify_failures, 1, "{action:?}");
        assert!(rec.pending.is_some(), "{action:?}");
        assert!(
            r.stdout.contains("proves nothing"),
            "{action:?}: a clear reason\n{}",
            r.stdout
        );
        // With a working token endpoint the next run verifies and promotes it.
        w.set_faults(Faults::default()).await;
        w.apply(&[]).await.expect_code(0);
        w.assert_consistent(&["alpha"]).await;
        w.assert_no_secrets(&r.all());
    }
}

/// Finding 7: a temporary error (503) of the token endpoint is no verdict: it never counts
/// toward `max_verify_failures`, so a pending pair is never discarded because of an outage.
#[tokio::test(flavor = "multi_thread")]
async fn temporary_token_errors_never_discard_a_pending_pair() {
    let w = World::new(1).await;
    // One verification attempt per run: each 503 is retried with its Retry-After already.
    w.inventory_raw(
        &format!("{}\n{}", w.header(), slots(&[("alpha", "alternate")]))
            .replace("verify_attempts = 3", "verify_attempts = 1"),
    );
    w.apply(&[]).await.expect_code(0);
    let env = [("REKEY_TEST_CLOCK_OFFSET", "31d")];
    for run in 1..=3 {
        w.set_faults(token_fault(FaultAction::Status(503))).await;
        let r = w
            .rekey_env(&["apply", "-c", "inventory.toml", "--output", "json"], &env)
            .await;
        r.expect_code(1);
        assert!(
            !actions(&r, "alpha")
                .iter()
                .any(|a| a.starts_with("discarded")),
            "run {run}: {}",
            r.stdout
        );
        let rec = w.record("alpha").await.unwrap();
        let op = rec.op.as_ref().expect("still in flight");
        assert_eq!(op.verify_failures, 0, "run {run}: a 503 is not a failure");
        let pending = rec.pending.as_ref().unwrap();
        assert_eq!(pending.generation, 2);
        assert_eq!(
            w.managed_clients(&w.tenants[0].id, "alpha").await.len(),
            2,
            "run {run}: g2's client is alive"
        );
    }
    w.set_faults(Faults::default()).await;
    let r = w
        .rekey_env(&["apply", "-c", "inventory.toml", "--output", "json"], &env)
        .await;
    r.expect_code(0);
    assert!(actions(&r, "alpha").contains(&"promoted g2".to_string()));
    w.assert_consistent(&["alpha"]).await;
}
