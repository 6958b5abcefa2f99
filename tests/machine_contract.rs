//! The machine contract for CI and GitOps (docs/src/operating.md, "Machine-readable output"):
//! `--output json` is one JSON document on one line, valid against docs/schema/report.schema.json
//! (checked with Python's `jsonschema`, not rekey's code); `plan --detailed-exitcode` says
//! "changes pending" by exit code; a selector that matches nothing and a flag the command does
//! not use are refused (exit 2) before anything changes.

mod common;
use common::python::venv_python;
use common::{Run, World, slots};
use rekey::emulator::{FaultAction, Faults, OneShot};
use std::path::Path;
use tokio::io::AsyncWriteExt;

/// Validates every document with the JSON Schema; returns the validator's report.
async fn validate(docs: &[&Run]) -> (bool, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = tokio::process::Command::new(venv_python())
        .arg(root.join("tests/python/validate_report.py"))
        .arg(root.join("docs/schema/report.schema.json"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = String::new();
    for d in docs {
        input.push_str(d.stdout.trim_end());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_json_report_is_one_versioned_line_that_the_schema_accepts() {
    let w = World::new(1).await;
    w.inventory(&slots(&[
        ("alpha", "alternate"),
        ("beta", "in-place"),
        ("gamma", "alternate"),
    ]));
    let plan = w
        .rekey(&["plan", "-c", "inventory.toml", "-o", "json"])
        .await;
    plan.expect_code(0);
    // The third create is refused once: a failed row with its error kind.
    w.set_faults(Faults {
        fail_next: vec![OneShot {
            operation: Some("createClient".into()),
            count: 1,
            action: FaultAction::Status(403),
            skip: 2,
        }],
        ..Faults::default()
    })
    .await;
    let apply = w.apply(&["--output", "json"]).await;
    apply.expect_code(1);
    w.set_faults(Faults::default()).await;
    let healed = w.apply(&["-o", "json"]).await;
    healed.expect_code(0);
    let forced = w.apply(&["-o", "json", "--force", "--only", "alpha"]).await;
    forced.expect_code(0);
    let status = w
        .rekey(&["status", "-c", "inventory.toml", "-o", "json"])
        .await;
    status.expect_code(0);
    let verify = w
        .rekey(&["verify", "-c", "inventory.toml", "-o", "json"])
        .await;
    verify.expect_code(0);
    let check = w
        .rekey(&["check", "-c", "inventory.toml", "-o", "json"])
        .await;
    check.expect_code(0);
    let rollback = w
        .rekey(&["rollback", "-c", "inventory.toml", "alpha", "-o", "json"])
        .await;
    rollback.expect_code(0);

    let all = [
        &plan, &apply, &healed, &forced, &status, &verify, &check, &rollback,
    ];
    let (ok, report) = validate(&all).await;
    assert!(ok, "{report}");
    assert!(report.contains("8 valid"), "{report}");

    // What a pipeline reads, typed.
    let doc = apply.document();
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["command"], "apply");
    assert_eq!(doc["summary"]["total"], 3);
    assert_eq!(doc["summary"]["failed"], 1);
    // Slots run concurrently: one of them got the refused create.
    let rows = apply.outcomes();
    let failed: Vec<_> = rows.iter().filter(|o| o["result"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{rows:?}");
    assert_eq!(failed[0]["error_kind"], "forbidden");
    let ok = rows.iter().find(|o| o["result"] == "ok").unwrap();
    assert_eq!(ok["steps"], serde_json::json!(["create"]));
    assert_eq!(ok["error_kind"], serde_json::Value::Null);
    let f = forced.outcome("alpha");
    assert_eq!(f["steps"], serde_json::json!(["rotate"]));
    assert_eq!(f["generation"], 2);
    let fp = f["fingerprint"].as_str().unwrap();
    assert!(
        fp.len() == 8 && fp.bytes().all(|b| b.is_ascii_hexdigit()),
        "{f}"
    );
    assert_ne!(
        apply.document()["run_id"],
        healed.document()["run_id"],
        "each run has its own id"
    );
    assert_eq!(plan.row("alpha")["action"], "create");
    assert_eq!(plan.document()["summary"]["changed"], 3);

    // The validator has teeth: a document with an unknown result is refused.
    let mut broken = apply.document();
    broken["rows"][0]["result"] = "maybe".into();
    let fake = Run {
        code: Some(0),
        signal: None,
        stdout: broken.to_string(),
        stderr: String::new(),
    };
    let (ok, report) = validate(&[&fake]).await;
    assert!(!ok && report.contains("maybe"), "{report}");
    for r in all {
        w.assert_no_secrets(&r.all());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_says_changes_are_pending_by_exit_code_when_asked() {
    let w = World::new(1).await;
    w.inventory(&slots(&[("alpha", "alternate")]));
    let args = ["plan", "-c", "inventory.toml", "--detailed-exitcode"];
    w.rekey(&args).await.expect_code(5);
    // Without the flag, plan's exit code says only whether it could plan.
    w.rekey(&["plan", "-c", "inventory.toml"])
        .await
        .expect_code(0);
    w.apply(&[]).await.expect_code(0);
    w.rekey(&args).await.expect_code(0);
    // Due again 31 days later.
    w.rekey_env(&args, &[("REKEY_TEST_CLOCK_OFFSET", "31d")])
        .await
        .expect_code(5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_selector_that_matches_no_slot_is_refused_and_nothing_changes() {
    let w = World::new(1).await;
    w.inventory(&slots(&[("alpha", "alternate")]));
    for cmd in ["apply", "plan", "status", "verify"] {
        let r = w
            .rekey(&[
                cmd,
                "-c",
                "inventory.toml",
                "--only",
                "alpha",
                "--only",
                "zzz*",
            ])
            .await;
        r.expect_code(2);
        assert!(
            r.stderr.contains("--only \"zzz*\" matches no slot"),
            "{cmd}: {}",
            r.stderr
        );
    }
    assert!(
        w.records().await.is_empty(),
        "a refused run changed something"
    );
    assert!(
        w.managed_clients(&w.tenants[0].id, "alpha")
            .await
            .is_empty()
    );
    // A selector that matches is fine, a glob included.
    w.apply(&["--only", "al*"]).await.expect_code(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn flags_a_command_does_not_use_are_refused_unless_they_come_from_the_environment() {
    let w = World::new(1).await;
    w.inventory(&slots(&[("alpha", "alternate")]));
    w.apply(&[]).await.expect_code(0);
    for (args, flag) in [
        (
            &[
                "status",
                "-c",
                "inventory.toml",
                "--webhook",
                "http://127.0.0.1:9/hook",
            ][..],
            "--webhook",
        ),
        (&["status", "-c", "inventory.toml", "--force"], "--force"),
        (
            &["verify", "-c", "inventory.toml", "--concurrency", "4"],
            "--concurrency",
        ),
        (
            &["verify", "-c", "inventory.toml", "--metrics-file", "m.prom"],
            "--metrics-file",
        ),
        (
            &[
                "plan",
                "-c",
                "inventory.toml",
                "--pushgateway",
                "http://127.0.0.1:9",
            ],
            "--pushgateway",
        ),
        (
            &["plan", "-c", "inventory.toml", "--allow-mass-retire"],
            "--allow-mass-retire",
        ),
        (
            &["apply", "-c", "inventory.toml", "--detailed-exitcode"],
            "--detailed-exitcode",
        ),
    ] {
        let r = w.rekey(args).await;
        r.expect_code(2);
        assert!(
            r.stderr
                .contains(&format!("{flag} does nothing for `rekey {}`", args[0])),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert!(!w.path().join("m.prom").exists());
    // The same setting from the environment (a CronJob sets it for every command) is fine.
    let r = w
        .rekey_env(
            &["status", "-c", "inventory.toml"],
            &[("REKEY_WEBHOOK_URL", "http://127.0.0.1:9/hook")],
        )
        .await;
    r.expect_code(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_takes_output_like_every_command_and_keeps_format() {
    let w = World::new(1).await;
    w.inventory(&slots(&[("alpha", "alternate")]));
    w.apply(&[]).await.expect_code(0);
    let cur = w.record("alpha").await.unwrap().current.unwrap();
    for flag in ["-o", "--output", "--format"] {
        let r = w
            .rekey(&["get", "-c", "inventory.toml", "alpha", flag, "json"])
            .await;
        r.expect_code(0);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["client_id"], cur.client_id.as_str(), "{flag}");
    }
}
