//! `rekey run`: the scheduler on a per-second schedule against the emulator. Two cycles, the
//! second rotates nothing; SIGTERM in the middle of a cycle leaves no operation in flight and
//! no lease held; `/metrics` is served while running.

mod common;
use common::World;
use rekey::emulator::Faults;
use std::time::{Duration, Instant};

fn slots(n: usize) -> String {
    (0..n)
        .map(|i| format!("[[slots]]\nname = \"s{i:02}\"\nprovider = \"p0\"\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn spawn_run(w: &World, extra: &[&str]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rekey"));
    cmd.args(["run", "-c", "inventory.toml", "--schedule", "* * * * * *"])
        .args(extra)
        .current_dir(w.path())
        .env("REKEY_LOG_FORMAT", "json")
        .env("RUST_LOG", "rekey=info")
        .env_remove("REKEY_CRASH_AT")
        .env_remove("REKEY_TEST_CLOCK_OFFSET")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().unwrap()
}

/// Polls `check` until it is true or `secs` pass.
async fn until(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("running") as libc::pid_t;
    // SAFETY: sends SIGTERM to the child we spawned, by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
}

async fn wait_exit(child: tokio::process::Child) -> common::Run {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("rekey run exits after SIGTERM")
        .unwrap();
    common::Run::from(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_cycles_the_second_rotates_nothing_and_metrics_are_served() {
    let w = World::new(1).await;
    w.inventory(&slots(3));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = spawn_run(
        &w,
        &[
            "--metrics-file",
            "rekey.prom",
            "--audit-log",
            "audit.jsonl",
            "--metrics-listen",
            &listen,
        ],
    );
    let prom = w.path().join("rekey.prom");
    until(60, "two cycles", || {
        let text = std::fs::read_to_string(&prom).unwrap_or_default();
        sample(&text, r#"rekey_runs_total{result="success"}"#).unwrap_or(0.0) >= 2.0
    })
    .await;
    let served = rekey::http::client()
        .get(format!("http://{listen}/metrics"))
        .send()
        .await
        .unwrap();
    assert!(served.status().is_success());
    let served = served.text().await.unwrap();
    sigterm(&child);
    let run = wait_exit(child).await;
    run.expect_code(0);

    let text = std::fs::read_to_string(&prom).unwrap();
    // Three rotations in all: the first cycle created the slots, the next ones did nothing.
    assert_eq!(
        sample(
            &text,
            r#"rekey_rotations_total{provider="p0",result="success"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert!(sample(&text, r#"rekey_runs_total{result="success"}"#).unwrap() >= 2.0);
    assert!(
        served.contains("rekey_rotations_total{provider=\"p0\",result=\"success\"} 3"),
        "{served}"
    );
    let audit = std::fs::read_to_string(w.path().join("audit.jsonl")).unwrap();
    assert_eq!(
        audit.lines().count(),
        9,
        "3 slots x (creating, pending, current):\n{audit}"
    );
    for r in w.records().await {
        assert_eq!(r.generation, 1, "{}", r.slot);
        assert!(r.lease.is_none(), "{} still leased", r.slot);
    }
    assert!(
        run.stderr.contains("next run") && run.stderr.contains("next_fire"),
        "{}",
        run.stderr
    );
    w.assert_consistent(&["s00", "s01", "s02"]).await;
    w.assert_no_secrets(&run.all());
    w.assert_no_secrets(&text);
    w.assert_no_secrets(&audit);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_cycle_leaves_nothing_stuck_or_locked() {
    let w = World::new(1).await;
    let names: Vec<String> = (0..12).map(|i| format!("s{i:02}")).collect();
    w.inventory(&slots(names.len()));
    // Slow platform: a cycle over 12 slots two at a time takes seconds.
    w.set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    })
    .await;
    let child = spawn_run(&w, &["--audit-log", "audit.jsonl", "--concurrency", "2"]);
    let audit = w.path().join("audit.jsonl");
    until(60, "the cycle to start changing slots", || {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
    })
    .await;
    sigterm(&child);
    let run = wait_exit(child).await;
    run.expect_code(0);
    assert!(run.stderr.contains("shutting down"), "{}", run.stderr);

    let records = w.records().await;
    assert!(
        !records.is_empty() && records.len() < names.len(),
        "SIGTERM landed mid-cycle: {} slots done",
        records.len()
    );
    for r in &records {
        assert!(
            r.op.is_none(),
            "slot {} left with an operation in flight: {:?}",
            r.slot,
            r.op
        );
        assert!(
            r.lease.is_none(),
            "slot {} still leased: {:?}",
            r.slot,
            r.lease
        );
        assert!(r.current.is_some(), "slot {} has no current pair", r.slot);
    }
    // The next run finishes the rest; nothing is lost or orphaned.
    w.set_faults(Faults::default()).await;
    w.apply(&[]).await.expect_code(0);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    w.assert_consistent(&refs).await;
    w.assert_no_secrets(&run.all());
}

/// `rekey run --force`: every cycle is a run of its own, so each one rotates what was issued
/// before it started, not only what was issued before the scheduler process started.
#[tokio::test(flavor = "multi_thread")]
async fn forced_cycles_each_rotate_what_the_cycle_before_issued() {
    let w = World::new(1).await;
    w.inventory(&slots(1));
    let child = spawn_run(&w, &["--force", "--metrics-file", "rekey.prom"]);
    let prom = w.path().join("rekey.prom");
    until(60, "three cycles", || {
        let text = std::fs::read_to_string(&prom).unwrap_or_default();
        sample(&text, r#"rekey_runs_total{result="success"}"#).unwrap_or(0.0) >= 3.0
    })
    .await;
    sigterm(&child);
    let run = wait_exit(child).await;
    run.expect_code(0);
    let records = w.records().await;
    assert_eq!(records.len(), 1);
    // The first cycle created g1; each later cycle rotated once more.
    assert!(
        records[0].generation >= 3,
        "g{} after three forced cycles",
        records[0].generation
    );
    w.assert_consistent(&["s00"]).await;
    w.assert_no_secrets(&run.all());
}

/// `rekey run`'s endpoints on a real HTTP server: `/metrics` for GET and HEAD, with or without
/// a query string (what promtool accepts), `/healthz`, `/readyz`; 405 for other methods, 404
/// elsewhere. At the default log level (no `-v`, no `RUST_LOG`) each cycle still logs one line.
#[tokio::test(flavor = "multi_thread")]
async fn endpoints_answer_get_and_head_and_each_cycle_logs_a_line() {
    let w = World::new(1).await;
    w.inventory(&slots(2));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rekey"))
        .args(["run", "-c", "inventory.toml", "--schedule", "* * * * * *"])
        .args(["--metrics-listen", &listen])
        .current_dir(w.path())
        .env("REKEY_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .env_remove("REKEY_CRASH_AT")
        .env_remove("REKEY_TEST_CLOCK_OFFSET")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = rekey::http::client();
    let base = format!("http://{listen}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        if let Ok(r) = client.get(format!("{base}/metrics?x=1")).send().await {
            let text = r.text().await.unwrap();
            if sample(&text, r#"rekey_runs_total{result="success"}"#).unwrap_or(0.0) >= 2.0 {
                break text;
            }
        }
        assert!(Instant::now() < deadline, "two cycles and /metrics");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let promtool = common::servers::tool("promtool");
    let mut check = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), metrics.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let head = client.head(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(
        head.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        head.headers()
    );
    assert!(head.text().await.unwrap().is_empty(), "HEAD has no body");
    for (path, status, body) in [
        ("/healthz", 200, "ok\n"),
        ("/readyz", 200, "ready\n"),
        ("/readyz?verbose", 200, "ready\n"),
    ] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(r.text().await.unwrap(), body, "{path}");
    }
    let r = client.post(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let r = client.get(format!("{base}/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    sigterm(&child);
    let run = wait_exit(child).await;
    run.expect_code(0);
    let cycles: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "cycle finished")
        .collect();
    assert!(cycles.len() >= 2, "one line per cycle:\n{}", run.stderr);
    assert_eq!(cycles[0]["level"], "INFO");
    assert_eq!(cycles[0]["exit_code"], 0);
    assert!(
        cycles[0]["summary"].as_str().unwrap().contains("2 slots"),
        "{}",
        cycles[0]
    );
    assert!(cycles[0]["duration_ms"].is_u64());
    assert!(
        !run.stderr.contains("\"DEBUG\""),
        "the default level stays quiet otherwise"
    );
    w.assert_no_secrets(&run.all());
    w.assert_no_secrets(&metrics);
}
