//! Operating rekey: metrics (file, checked by promtool; pushed to a real Pushgateway and read
//! back), the alert rules (promtool check + unit tests), the audit trail, and webhooks received
//! on a loopback server. promtool and prometheus-pushgateway come from scripts/setup-system.sh;
//! these tests fail, never skip, when they are missing.

mod common;
use common::{World, plain_slots};
use rekey::emulator::{FaultAction, Faults, OneShot};
use std::path::Path;
use std::time::{Duration, Instant};

/// A system tool the tests need; a clear failure (not a skip) when it is missing.
fn tool(name: &str) -> String {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    match found {
        Some(p) => p.to_string_lossy().into_owned(),
        None => panic!(
            "{name} is not installed: run scripts/setup-system.sh (Debian packages prometheus, prometheus-pushgateway)"
        ),
    }
}

fn promtool(args: &[&str], stdin: Option<&str>, dir: &Path) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(tool("promtool"))
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The value of the sample `name{labels}` (labels as written, in order) in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line not JSON ({e}): {l}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_file_passes_promtool_and_audit_has_every_state_change() {
    let w = World::new(1).await;
    w.inventory(&plain_slots(&["alpha", "beta", "gamma"]));
    w.apply(&["--metrics-file", "rekey.prom", "--audit-log", "audit.jsonl"])
        .await
        .expect_code(0);
    let text = std::fs::read_to_string(w.path().join("rekey.prom")).unwrap();
    let (ok, out) = promtool(&["check", "metrics"], Some(&text), w.path());
    assert!(ok, "promtool check metrics:\n{out}\n{text}");
    assert_eq!(
        sample(
            &text,
            r#"rekey_rotations_total{provider="p0",result="success"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(sample(&text, r#"rekey_slots{state="ok"}"#), Some(3.0));
    assert_eq!(
        sample(&text, r#"rekey_last_run_slots{result="failed"}"#),
        Some(0.0)
    );
    for s in ["alpha", "beta", "gamma"] {
        let age = sample(
            &text,
            &format!(r#"rekey_credential_age_seconds{{provider="p0",slot="{s}"}}"#),
        );
        assert!(age.is_some_and(|a| a < 60.0), "{s}: {age:?}");
        assert_eq!(
            sample(
                &text,
                &format!(r#"rekey_credential_max_age_seconds{{provider="p0",slot="{s}"}}"#)
            ),
            Some(30.0 * 86400.0)
        );
    }
    let tenant = &w.tenants[0].id;
    let last = sample(
        &text,
        &format!(r#"rekey_last_success_timestamp_seconds{{provider="p0",tenant="{tenant}"}}"#),
    )
    .expect("last success per provider and tenant");
    assert!((chrono::Utc::now().timestamp() as f64 - last).abs() < 120.0);
    assert!(text.contains(r#"rekey_provider_call_duration_seconds_count{operation="create_client",provider="p0"} 3"#), "{text}");
    assert!(text.contains(
        r#"rekey_backend_call_duration_seconds_count{backend="local",operation="write"}"#
    ));

    // The audit trail: absent → creating → pending → current for each slot, ids and fingerprints.
    let lines = audit_lines(&w.path().join("audit.jsonl"));
    for s in ["alpha", "beta", "gamma"] {
        let path: Vec<(String, String)> = lines
            .iter()
            .filter(|l| l["slot"] == s)
            .map(|l| {
                (
                    l["from"].as_str().unwrap().into(),
                    l["to"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(
            path,
            vec![
                ("absent".into(), "creating".into()),
                ("creating".into(), "pending".into()),
                ("pending".into(), "current".into())
            ],
            "{s}: {lines:?}"
        );
        let rec = w.record(s).await.unwrap();
        let cur = rec.current.unwrap();
        let last = lines.iter().rfind(|l| l["slot"] == s).unwrap();
        assert_eq!(last["client_id"], cur.client_id.as_str());
        assert_eq!(last["fingerprint"], cur.secret.fingerprint().as_str());
        assert_eq!(last["generation"], 1);
        assert_eq!(last["provider"], "p0");
        assert_eq!(last["tenant"], tenant.as_str());
        assert!(
            last["operation_id"].is_string()
                && last["run_id"].is_string()
                && last["time"].is_string()
        );
    }

    // A failed slot later: the metrics say so, and the previous success time is kept.
    w.set_faults(Faults {
        fail_next: vec![OneShot {
            operation: Some("createClient".into()),
            count: 5,
            action: FaultAction::Status(403),
            skip: 0,
        }],
        ..Faults::default()
    })
    .await;
    w.apply(&[
        "--only",
        "alpha",
        "--force",
        "--metrics-file",
        "rekey.prom",
        "--audit-log",
        "audit.jsonl",
    ])
    .await
    .expect_code(1);
    let text2 = std::fs::read_to_string(w.path().join("rekey.prom")).unwrap();
    let (ok, out) = promtool(&["check", "metrics"], Some(&text2), w.path());
    assert!(ok, "promtool check metrics:\n{out}");
    assert_eq!(
        sample(
            &text2,
            r#"rekey_rotations_total{provider="p0",result="failure"}"#
        ),
        Some(1.0),
        "{text2}"
    );
    assert_eq!(
        sample(&text2, r#"rekey_last_run_slots{result="failed"}"#),
        Some(1.0),
        "{text2}"
    );
    assert_eq!(
        sample(
            &text2,
            &format!(r#"rekey_last_success_timestamp_seconds{{provider="p0",tenant="{tenant}"}}"#)
        ),
        Some(last),
        "a failed run keeps the previous success time"
    );
    assert!(text2.contains(r#"rekey_provider_call_errors_total{kind="forbidden",operation="create_client",provider="p0"}"#), "{text2}");
    for t in [&text, &text2] {
        w.assert_no_secrets(t);
    }
    w.assert_no_secrets(&std::fs::read_to_string(w.path().join("audit.jsonl")).unwrap());
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let (ok, out) = promtool(&["check", "rules", "prometheus-rules.yaml"], None, &deploy);
    assert!(ok, "{out}");
    assert!(out.contains("5 rules found"), "{out}");
    let (ok, out) = promtool(
        &["test", "rules", "prometheus-rules.test.yaml"],
        None,
        &deploy,
    );
    assert!(ok, "{out}");
}

/// A Pushgateway on a free loopback port, killed (by pid) when dropped.
struct Pushgateway {
    child: std::process::Child,
    url: String,
}

impl Pushgateway {
    async fn start() -> Pushgateway {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(tool("prometheus-pushgateway"))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let gw = Pushgateway { child, url };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = rekey::http::client()
                .get(format!("{}/-/ready", gw.url))
                .send()
                .await
                && r.status().is_success()
            {
                return gw;
            }
            assert!(
                Instant::now() < deadline,
                "pushgateway did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_to_a_real_pushgateway() {
    let gw = Pushgateway::start().await;
    let w = World::new(1).await;
    w.inventory(&plain_slots(&["alpha", "beta"]));
    w.apply(&["--pushgateway", &gw.url]).await.expect_code(0);
    let text = rekey::http::client()
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let tenant = &w.tenants[0].id;
    assert_eq!(
        sample(
            &text,
            r#"rekey_rotations_total{instance="",job="rekey",provider="p0",result="success"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"rekey_slots{instance="",job="rekey",state="ok"}"#),
        Some(2.0)
    );
    let first = sample(
        &text,
        &format!(r#"rekey_last_success_timestamp_seconds{{instance="",job="rekey",provider="p0",tenant="{tenant}"}}"#),
    )
    .expect("last success pushed in its own group");

    // A failing run replaces the run's metrics but keeps the provider's last success.
    w.set_faults(Faults {
        fail_next: vec![OneShot {
            operation: Some("createClient".into()),
            count: 5,
            action: FaultAction::Status(403),
            skip: 0,
        }],
        ..Faults::default()
    })
    .await;
    w.apply(&["--pushgateway", &gw.url, "--only", "alpha", "--force"])
        .await
        .expect_code(1);
    let text = rekey::http::client()
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(
            &text,
            r#"rekey_rotations_total{instance="",job="rekey",provider="p0",result="failure"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"rekey_last_run_slots{instance="",job="rekey",result="failed"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                r#"rekey_last_success_timestamp_seconds{{instance="",job="rekey",provider="p0",tenant="{tenant}"}}"#
            )
        ),
        Some(first)
    );
    w.assert_no_secrets(&text);
}

/// A loopback HTTP server that records request bodies; answers 503 to the first request, then
/// 200 (so the sender's retry is exercised).
async fn webhook_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    common::servers::webhook_receiver("/hook/T000/SECRETPATH", |n| {
        if n == 1 {
            "503 Service Unavailable"
        } else {
            "200 OK"
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_slot_is_posted_to_the_webhook() {
    for format in ["generic", "slack"] {
        let (url, mut rx) = webhook_receiver().await;
        let w = World::new(1).await;
        w.inventory(&plain_slots(&["alpha", "beta"]));
        w.set_faults(Faults {
            fail_next: vec![OneShot {
                operation: Some("createClient".into()),
                count: 1,
                action: FaultAction::Status(403),
                skip: 0,
            }],
            ..Faults::default()
        })
        .await;
        let run = w
            .apply(&[
                "--webhook",
                &url,
                "--webhook-format",
                format,
                "--output",
                "json",
            ])
            .await;
        run.expect_code(1);
        let body = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let failed: Vec<String> = run
            .outcomes()
            .iter()
            .filter(|o| o["result"] == "failed")
            .map(|o| o["slot"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(failed.len(), 1, "{}", run.stdout);
        let slot = failed[0].as_str();
        if format == "generic" {
            assert_eq!(v["event"], "slot_failed");
            assert_eq!(v["slot"], slot);
            assert_eq!(v["provider"], "p0");
            assert_eq!(v["tenant"], w.tenants[0].id.as_str());
            assert_eq!(v["error_kind"], "forbidden");
            assert!(v["action"].as_str().unwrap().contains("rekey apply"), "{v}");
        } else {
            let text = v["text"].as_str().unwrap();
            assert!(
                text.contains(&format!("rotation failed for slot `{slot}`")),
                "{text}"
            );
        }
        // Only the failed slot is reported.
        assert!(rx.try_recv().is_err());
        w.record("beta").await;
        w.assert_no_secrets(&body);
        assert!(
            !run.all().contains("SECRETPATH"),
            "the webhook URL is never logged"
        );
        assert!(
            !run.all().contains('\u{1b}'),
            "no colours or bars when not a terminal"
        );
    }
}
