//! Operating rekey: metrics (file, checked by promtool; pushed to a real Pushgateway and read
//! back), the alert rules (promtool check + unit tests), the audit trail, and webhooks received
//! on a loopback server. promtool and prometheus-pushgateway come from scripts/setup-system.sh;
//! these tests fail, never skip, when they are missing.

mod common;
use common::{World, plain_slots};
use rekey::emulator::{FaultAction, Faults, OneShot};
use std::path::Path;
use std::time::Duration;

use common::servers::tool;

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

/// What a one-shot run writes or pushes: gauges only (the Pushgateway's guidance for batch
/// jobs), the build's identity, the run-level result.
fn assert_batch_exposition(text: &str) {
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        assert!(
            line.ends_with(" gauge"),
            "a batch run exports gauges only: {line}"
        );
    }
    assert!(!text.contains("rekey_runs_total"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("rekey_build_info{")
            && l.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && l.ends_with(" 1")),
        "{text}"
    );
    assert!(
        sample(text, "rekey_last_run_timestamp_seconds").is_some(),
        "{text}"
    );
}

/// Every family of an exposition is in the README's metrics table, and the `rekey_slots` row
/// names every state rekey exports.
fn assert_documented(text: &str) {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let table: Vec<&str> = readme
        .split("## Metrics")
        .nth(1)
        .expect("the README has a Metrics section")
        .lines()
        .filter(|l| l.starts_with("| `rekey_"))
        .collect();
    for name in text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
    {
        assert!(
            table.iter().any(|row| row.contains(&format!("`{name}`"))),
            "{name} is not in the README's metrics table"
        );
    }
    let slots = table
        .iter()
        .find(|r| r.starts_with("| `rekey_slots`"))
        .unwrap();
    for s in rekey::observe::metrics::SLOT_STATES {
        assert!(
            slots.contains(&format!("`{s}`")),
            "state {s} is not in the README's rekey_slots row"
        );
    }
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
            r#"rekey_last_run_rotations{provider="p0",result="success"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_batch_exposition(&text);
    assert_eq!(sample(&text, r#"rekey_slots{state="ok"}"#), Some(3.0));
    assert_eq!(sample(&text, "rekey_last_run_failed"), Some(0.0));
    assert_eq!(sample(&text, "rekey_last_run_exit_code"), Some(0.0));
    assert_eq!(sample(&text, "rekey_slot_metrics_stale"), Some(0.0));
    // Error series exist before any error, at zero.
    assert_eq!(
        sample(
            &text,
            r#"rekey_last_run_provider_call_errors{kind="unavailable",operation="create_client",provider="p0"}"#
        ),
        Some(0.0),
        "{text}"
    );
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
    assert!(
        text.contains(
            r#"rekey_last_run_provider_calls{operation="create_client",provider="p0"} 3"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"rekey_last_run_backend_calls{backend="local",operation="write"}"#));

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
            r#"rekey_last_run_rotations{provider="p0",result="failure"}"#
        ),
        Some(1.0),
        "{text2}"
    );
    assert_batch_exposition(&text2);
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
    assert!(text2.contains(r#"rekey_last_run_provider_call_errors{kind="forbidden",operation="create_client",provider="p0"} 1"#), "{text2}");
    for t in [&text, &text2] {
        w.assert_no_secrets(t);
        assert_documented(t);
    }
    w.assert_no_secrets(&std::fs::read_to_string(w.path().join("audit.jsonl")).unwrap());
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let (ok, out) = promtool(&["check", "rules", "prometheus-rules.yaml"], None, &deploy);
    assert!(ok, "{out}");
    assert!(out.contains("8 rules found"), "{out}");
    let (ok, out) = promtool(
        &["test", "rules", "prometheus-rules.test.yaml"],
        None,
        &deploy,
    );
    assert!(ok, "{out}");
}

/// The samples of `name` in an exposition whose labels include every `want` pair, as
/// (labels, value).
fn samples(text: &str, name: &str, want: &[(&str, &str)]) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.rsplit_once("} ")?;
            want.iter()
                .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")))
                .then(|| (labels.to_string(), value.parse().ok()))?
                .1
                .map(|v| (labels.to_string(), v))
        })
        .collect()
}

/// N shards, one Pushgateway: each shard pushes into its own group (job, instance, shard), so
/// after all of them ran the Pushgateway holds every slot's age and state; a shard that then
/// fails before any slot (its provider unreachable, exit 4) still reports its slots, from the
/// backend, and says it failed.
#[tokio::test(flavor = "multi_thread")]
async fn shards_push_their_own_groups_and_a_failed_shard_still_reports_its_slots() {
    let gw = common::servers::pushgateway().await;
    let w = World::new(1).await;
    let names: Vec<String> = (0..9).map(|i| format!("s{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    w.inventory(&plain_slots(&refs));
    const N: u64 = 3;
    let shard_of = |s: &str| rekey::shard::shard_of(s, N);
    let (wr, gwr) = (&w, &gw);
    let runs = (0..N).map(|i| async move {
        let shard = format!("{i}/{N}");
        wr.apply(&[
            "--pushgateway",
            &gwr.url,
            "--metrics-instance",
            "prod",
            "--shard",
            &shard,
        ])
        .await
    });
    for r in futures_util::future::join_all(runs).await {
        r.expect_code(0);
    }
    let text = gw.get("/metrics").await;
    let (ok, out) = promtool(&["check", "metrics"], Some(&text), w.path());
    assert!(ok, "promtool check metrics:\n{out}");
    // The value of `name` in shard i's group (job="rekey", instance="prod"), with `extra` labels.
    let one = |text: &str, name: &str, i: u64, extra: &[(&str, &str)]| -> Vec<f64> {
        let shard = format!("{i}/{N}");
        let mut want = vec![
            ("job", "rekey"),
            ("instance", "prod"),
            ("shard", shard.as_str()),
        ];
        want.extend_from_slice(extra);
        samples(text, name, &want)
            .into_iter()
            .map(|s| s.1)
            .collect()
    };
    for s in &names {
        let ages = one(
            &text,
            "rekey_credential_age_seconds",
            shard_of(s),
            &[("slot", s)],
        );
        assert_eq!(ages.len(), 1, "{s}: one age, in its shard's group:\n{text}");
        assert!(ages[0] < 120.0, "{s}: {ages:?}");
    }
    for i in 0..N {
        let mine = names.iter().filter(|s| shard_of(s) == i).count() as f64;
        assert_eq!(
            one(&text, "rekey_slots", i, &[("state", "ok")]),
            vec![mine],
            "shard {i}:\n{text}"
        );
        assert_eq!(one(&text, "rekey_last_run_failed", i, &[]), vec![0.0]);
        assert_eq!(
            one(
                &text,
                "rekey_last_success_timestamp_seconds",
                i,
                &[("provider", "p0")]
            )
            .len(),
            1,
            "shard {i}'s last success, in its own group:\n{text}"
        );
    }
    let before = one(&text, "rekey_last_success_timestamp_seconds", 1, &[]);

    // Shard 1 cannot reach its provider (down for maintenance): exit 4 before any slot.
    let down = common::servers::down_platform().await;
    w.inventory_raw(&format!(
        "{}{}",
        w.header().replace(&w.emu.url(), &down),
        plain_slots(&refs)
    ));
    w.apply(&[
        "--pushgateway",
        &gw.url,
        "--metrics-instance",
        "prod",
        "--shard",
        "1/3",
    ])
    .await
    .expect_code(4);
    let text = gw.get("/metrics").await;
    let (ok, out) = promtool(&["check", "metrics"], Some(&text), w.path());
    assert!(ok, "promtool check metrics:\n{out}");
    assert_eq!(
        one(&text, "rekey_last_run_failed", 1, &[]),
        vec![1.0],
        "{text}"
    );
    assert_eq!(one(&text, "rekey_last_run_exit_code", 1, &[]), vec![4.0]);
    assert_eq!(
        one(&text, "rekey_slot_metrics_stale", 1, &[]),
        vec![0.0],
        "the backend was reachable: the slot states are this run's"
    );
    let mine: Vec<&String> = names.iter().filter(|s| shard_of(s) == 1).collect();
    assert_eq!(
        one(&text, "rekey_slots", 1, &[("state", "ok")]),
        vec![mine.len() as f64],
        "{text}"
    );
    for s in mine {
        assert_eq!(
            one(&text, "rekey_credential_age_seconds", 1, &[("slot", s)]).len(),
            1,
            "{s}:\n{text}"
        );
    }
    assert_eq!(
        one(&text, "rekey_last_success_timestamp_seconds", 1, &[]),
        before,
        "a failed run keeps the shard's last success"
    );
    for i in [0, 2] {
        assert_eq!(
            one(&text, "rekey_last_run_failed", i, &[]),
            vec![0.0],
            "shard {i} is untouched"
        );
    }
    w.assert_no_secrets(&text);
}

/// A YAML file as JSON, read by the venv's PyYAML (the Rust side has no YAML parser).
fn yaml_file(path: &Path) -> serde_json::Value {
    let out = std::process::Command::new(common::python::venv_python())
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every rule links to its own section of the runbook, which exists; the chart's per-rule
/// values name exactly the file's rules, with the file's `for` and severity as defaults; the
/// chart ships the same file.
#[test]
fn every_rule_has_a_runbook_section_and_chart_values() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = yaml_file(&root.join("deploy/prometheus-rules.yaml"));
    let values = yaml_file(&root.join("helm/rekey/values.yaml"));
    let cfg = &values["metrics"]["prometheusRule"];
    let base = cfg["runbookBaseUrl"].as_str().unwrap();
    let runbook = std::fs::read_to_string(root.join("docs/src/runbook.md")).unwrap();
    let mut names = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let alert = rule["alert"].as_str().unwrap();
            names.push(alert.to_string());
            assert_eq!(
                rule["annotations"]["runbook_url"],
                format!("{base}#{}", alert.to_lowercase()).as_str(),
                "{alert}"
            );
            assert!(
                runbook.lines().any(|l| l == format!("## {alert}")),
                "docs/src/runbook.md has no section {alert}"
            );
            let v = &cfg["rules"][alert];
            assert_eq!(v["enabled"], true, "{alert}");
            assert_eq!(v["for"], rule["for"], "{alert}");
            assert_eq!(v["severity"], rule["labels"]["severity"], "{alert}");
        }
    }
    let mut chart: Vec<String> = cfg["rules"].as_object().unwrap().keys().cloned().collect();
    chart.sort();
    names.sort();
    assert_eq!(
        chart, names,
        "the chart's per-rule values name the file's rules"
    );
    assert_eq!(
        std::fs::read(root.join("deploy/prometheus-rules.yaml")).unwrap(),
        std::fs::read(root.join("helm/rekey/files/prometheus-rules.yaml")).unwrap(),
        "the chart ships deploy/prometheus-rules.yaml unchanged"
    );
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

/// A run that cannot read its backend either keeps the last slot states and ages in the
/// metrics file, marked stale, and says it failed; the webhook gets one `run_failed` event for
/// a run whose provider is down, with no secret in it.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_reaches_nothing_keeps_the_last_slot_metrics_marked_stale_and_is_posted() {
    let w = World::new(1).await;
    w.inventory(&plain_slots(&["alpha", "beta"]));
    w.apply(&["--metrics-file", "rekey.prom"])
        .await
        .expect_code(0);
    let good = std::fs::read_to_string(w.path().join("rekey.prom")).unwrap();
    let age = |t: &str| {
        sample(
            t,
            r#"rekey_credential_age_seconds{provider="p0",slot="alpha"}"#,
        )
    };
    assert!(age(&good).is_some(), "{good}");

    // The store's directory is gone and a file stands in its place: nothing can be read.
    std::fs::rename(w.path().join("store"), w.path().join("store.away")).unwrap();
    std::fs::write(w.path().join("store"), "not a directory").unwrap();
    let run = w.apply(&["--metrics-file", "rekey.prom"]).await;
    assert!(matches!(run.code, Some(1 | 2 | 4)), "{}", run.all());
    let text = std::fs::read_to_string(w.path().join("rekey.prom")).unwrap();
    let (ok, out) = promtool(&["check", "metrics"], Some(&text), w.path());
    assert!(ok, "promtool check metrics:\n{out}");
    assert_eq!(
        sample(&text, "rekey_last_run_failed"),
        Some(1.0),
        "{}\n{text}",
        run.all()
    );
    assert_eq!(
        sample(&text, "rekey_last_run_exit_code"),
        run.code.map(f64::from)
    );
    assert_eq!(
        sample(&text, "rekey_slot_metrics_stale"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"rekey_slots{state="ok"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(age(&text), age(&good), "the last good run's ages, kept");
    std::fs::remove_file(w.path().join("store")).unwrap();
    std::fs::rename(w.path().join("store.away"), w.path().join("store")).unwrap();

    // The provider is down: exit 4, one run_failed event, and the slots still described.
    let (url, mut rx) = webhook_receiver().await;
    let down = common::servers::down_platform().await;
    w.inventory_raw(&format!(
        "{}{}",
        w.header().replace(&w.emu.url(), &down),
        plain_slots(&["alpha", "beta"])
    ));
    let run = w
        .apply(&["--metrics-file", "rekey.prom", "--webhook", &url])
        .await;
    run.expect_code(4);
    let body = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["event"], "run_failed", "{v}");
    assert_eq!(v["error_kind"], "unavailable", "{v}");
    assert!(v["action"].as_str().unwrap().contains("rekey check"), "{v}");
    assert!(rx.try_recv().is_err(), "one event for the run");
    let text = std::fs::read_to_string(w.path().join("rekey.prom")).unwrap();
    assert_eq!(
        sample(&text, "rekey_slot_metrics_stale"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"rekey_slots{state="ok"}"#),
        Some(2.0),
        "{text}"
    );
    w.assert_no_secrets(&body);
    w.assert_no_secrets(&text);
    w.assert_no_secrets(&run.all());
}
