//! Rotation events as a consumer receives them, end to end: the real binary posts to a loopback
//! receiver in the `generic` and `cloudevents` formats (the CloudEvents ones parsed by the
//! official CloudEvents SDK, tests/python/validate_cloudevents.py); the consumer-reload example
//! (examples/reload-on-rotate) restarts a Deployment on `rotated`; the audit trail names the
//! Kubernetes service account and pod (docs/src/notifications.md; docs/src/operating.md, "Audit trail").

mod common;
use common::World;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// One message a receiver got: its `Content-Type` and body.
#[derive(Clone, Debug)]
struct Message {
    content_type: String,
    body: String,
}

/// A loopback webhook receiver (a stand-in for a consumer's endpoint: any HTTP server would
/// do) that keeps every whole request and answers 200.
async fn receiver() -> (String, Arc<Mutex<Vec<Message>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&got);
    let addr = common::servers::serve_raw(move |_, req| {
        let body = req.body.clone()?;
        let content_type = req
            .raw
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        keep.lock().unwrap().push(Message { content_type, body });
        Some(common::servers::empty_response("200 OK"))
    })
    .await;
    (format!("http://{addr}/hook"), got)
}

fn take(got: &Arc<Mutex<Vec<Message>>>) -> Vec<Message> {
    std::mem::take(&mut *got.lock().unwrap())
}

/// Each CloudEvents message through the official SDK's `from_http`; the parsed events
/// (`{"attributes", "data"}`), or the test fails with what the validator found wrong.
async fn parse_cloudevents(messages: &[Message]) -> Vec<serde_json::Value> {
    let mut child = common::python::python_script("validate_cloudevents.py")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for m in messages {
        let line = serde_json::json!({"content_type": m.content_type, "body": m.body});
        input.push_str(&format!("{line}\n"));
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the CloudEvents SDK refused rekey's events:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The events of a run in one shape whatever the format: the notice (generic's body,
/// CloudEvents' `data`) and, for CloudEvents, the context attributes.
async fn notices(
    format: &str,
    messages: &[Message],
) -> Vec<(serde_json::Value, Option<serde_json::Value>)> {
    if format == "cloudevents" {
        return parse_cloudevents(messages)
            .await
            .into_iter()
            .map(|e| (e["data"].clone(), Some(e["attributes"].clone())))
            .collect();
    }
    messages
        .iter()
        .map(|m| {
            assert_eq!(m.content_type, "application/json");
            (serde_json::from_str(&m.body).unwrap(), None)
        })
        .collect()
}

/// No secret in any payload: none the world has seen in a record (current, pending, draining:
/// read before each run, so retired ones too), nor its bootstrap secrets, nor a bearer token
/// (the emulator's tokens are JWTs, `eyJ...`); and under the leak scan (scripts/test.sh sets
/// `REKEY_SECRET_REGISTRY`), none of every secret and token signature made in the test.
async fn assert_no_secret(w: &World, messages: &[Message]) {
    w.records().await;
    let registry = std::env::var_os("REKEY_SECRET_REGISTRY")
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    for m in messages {
        w.assert_no_secrets(&m.body);
        assert!(!m.body.contains("eyJ"), "a bearer token in {}", m.body);
        for s in registry.lines().filter(|s| s.len() >= 8) {
            assert!(!m.body.contains(s), "a registered secret in a payload");
        }
    }
}

/// Two alternate slots whose old clients go at the end of a 1-day grace.
fn two_slots() -> String {
    ["alpha", "beta"]
        .map(|n| {
            format!("[[slots]]\nname = \"{n}\"\nprovider = \"p0\"\nstrategy = \"alternate\"\ndrain = \"grace-only\"\n")
        })
        .join("\n")
}

fn inventory(w: &World) {
    w.inventory(&two_slots());
}

/// The must-show: a `rotated` event for each rotated slot (creation and rotation), a
/// `retired` event for each previous client deleted after its grace, and one `run_failed` for
/// a run whose provider is down, in `generic` and in `cloudevents`; each with the slot,
/// provider, tenant, generation and fingerprint, and no secret.
#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_gets_rotated_retired_and_run_failed_events_in_both_formats() {
    for format in ["generic", "cloudevents"] {
        let (url, got) = receiver().await;
        let w = World::new(1).await;
        inventory(&w);
        let tenant = w.tenants[0].id.clone();
        let hook = [
            "--webhook",
            url.as_str(),
            "--webhook-format",
            format,
            "--webhook-events",
            "rotated,retired,failed,run_failed",
            "--metrics-instance",
            "eu west",
        ];
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let mut all = Vec::new();
        let mut ids = std::collections::BTreeSet::new();
        // (clock offset, the event each slot should send, its generation)
        for (at, event, generation) in [
            ("", "rotated", 1),
            ("31d", "rotated", 2),
            ("32d 1m", "retired", 1),
        ] {
            let before: Vec<_> = w.records().await;
            w.apply_at(at, &hook).await.expect_code(0);
            let messages = take(&got);
            let mut events = notices(format, &messages).await;
            events.sort_by_key(|(n, _)| n["slot"].as_str().unwrap_or_default().to_string());
            assert_eq!(events.len(), 2, "{format} at {at:?}: {events:?}");
            for ((n, ce), slot) in events.iter().zip(["alpha", "beta"]) {
                assert_eq!(n["event"], event, "{n}");
                assert_eq!(n["slot"], slot);
                assert_eq!(n["provider"], "p0");
                assert_eq!(n["tenant"], tenant.as_str());
                assert_eq!(n["generation"], generation, "{n}");
                // The credential the event is about: the one now current, or the one deleted.
                let rec = w.record(slot).await.unwrap();
                let about = if event == "rotated" {
                    rec.current.clone().unwrap()
                } else {
                    let old = before.iter().find(|r| r.slot == slot).unwrap();
                    old.draining[0].credential.clone()
                };
                assert_eq!(n["client_id"], about.client_id.as_str(), "{n}");
                assert_eq!(n["fingerprint"], about.secret.fingerprint().as_str(), "{n}");
                if event == "retired" {
                    assert!(
                        !w.platform_clients(&tenant)
                            .await
                            .iter()
                            .any(|(_, id, _)| id == &about.client_id),
                        "a retired client is gone"
                    );
                }
                assert!(ids.insert(n["id"].as_str().unwrap().to_string()), "{n}");
                if let Some(ce) = ce {
                    assert_eq!(ce["specversion"], "1.0");
                    assert_eq!(ce["type"], format!("io.rekey.credential.{event}"));
                    assert_eq!(ce["subject"], slot);
                    assert_eq!(ce["id"], n["id"]);
                    assert_eq!(ce["datacontenttype"], "application/json");
                    assert_eq!(ce["source"], format!("rekey/{host}/eu%20west"), "{ce}");
                }
            }
            all.extend(messages);
        }

        // The provider is down: one run_failed event, about the run (no subject).
        let down = common::servers::down_platform().await;
        w.inventory_raw(&format!(
            "{}{}",
            w.header().replace(&w.emu.url(), &down),
            two_slots()
        ));
        w.apply(&hook).await.expect_code(4);
        let messages = take(&got);
        let events = notices(format, &messages).await;
        assert_eq!(events.len(), 1, "one event for the run: {events:?}");
        let (n, ce) = &events[0];
        assert_eq!(n["event"], "run_failed", "{n}");
        assert_eq!(n["error_kind"], "unavailable", "{n}");
        assert_eq!(n["slot"], "");
        if let Some(ce) = ce {
            assert_eq!(ce["type"], "io.rekey.credential.run_failed");
            assert!(ce.get("subject").is_none(), "{ce}");
        }
        all.extend(messages);
        assert_no_secret(&w, &all).await;
    }
}

/// `--webhook-events rotated`: one `rotated` event per slot whose new credential became
/// current (creation and rotation, both strategies), carrying the generation, client id and
/// fingerprint consumers now read, never the secret; slots that did not change send nothing.
#[tokio::test(flavor = "multi_thread")]
async fn each_rotated_slot_is_posted_when_asked_for() {
    let (url, mut rx) = common::servers::webhook_receiver("/hook", |_| "200 OK").await;
    let w = World::new(1).await;
    w.inventory(&common::slots(&[("alt", "alternate"), ("inp", "in-place")]));
    let recv = |rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>| {
        let mut got = Vec::new();
        while let Ok(b) = rx.try_recv() {
            got.push(serde_json::from_str::<serde_json::Value>(&b).unwrap());
        }
        got.sort_by_key(|v| v["slot"].as_str().unwrap_or_default().to_string());
        got
    };
    for (run, generation) in [(vec![], 1), (vec!["--force"], 2)] {
        let mut args = vec![
            "--webhook",
            url.as_str(),
            "--webhook-events",
            "rotated,failed",
        ];
        args.extend(run.iter().copied());
        w.apply(&args).await.expect_code(0);
        let got = recv(&mut rx);
        assert_eq!(got.len(), 2, "one event per rotated slot: {got:?}");
        for (v, slot) in got.iter().zip(["alt", "inp"]) {
            let rec = w.record(slot).await.unwrap();
            let cur = rec.current.as_ref().unwrap();
            assert_eq!(v["event"], "rotated", "{v}");
            assert_eq!(v["slot"], slot);
            assert_eq!(v["provider"], "p0");
            assert_eq!(v["tenant"], w.tenants[0].id.as_str());
            assert_eq!(v["generation"], generation, "{v}");
            assert_eq!(v["client_id"], cur.client_id.as_str());
            assert_eq!(v["fingerprint"], cur.secret.fingerprint().as_str());
            w.assert_no_secrets(&v.to_string());
        }
        if generation == 2 {
            assert_eq!(
                got[0]["draining_client_ids"].as_array().map(Vec::len),
                Some(1),
                "the alternate slot's previous client drains: {}",
                got[0]
            );
        }
    }
    // Nothing rotated: nothing sent.
    w.apply(&["--webhook", &url, "--webhook-events", "rotated"])
        .await
        .expect_code(0);
    assert!(recv(&mut rx).is_empty());
    // Not asked for: the default events (those that need a person) leave rotations and
    // retirements out. At 40d both slots rotate and the alternate slot's g1, quiet since
    // its grace ended, is deleted.
    let run = w
        .apply_at("40d", &["--webhook", &url, "--output", "json"])
        .await;
    run.expect_code(0);
    assert!(
        common::actions(&run, "alt")
            .iter()
            .any(|a| a == "deleted g1"),
        "{:?}",
        common::actions(&run, "alt")
    );
    assert!(recv(&mut rx).is_empty());
}

/// A slot taken out of service (`retired = true`) sends one `retired` event per client it
/// deletes at the provider, with the generation, client id and fingerprint.
#[tokio::test(flavor = "multi_thread")]
async fn a_retired_slot_sends_a_retired_event_per_client_deleted() {
    let (url, got) = receiver().await;
    let w = World::new(1).await;
    w.inventory(&common::plain_slots(&["keep", "old"]));
    w.apply(&[]).await.expect_code(0);
    let g1 = w.record("old").await.unwrap().current.unwrap();
    w.inventory(&format!(
        "{}\nretired = true\ngrace = \"0s\"\n",
        common::plain_slots(&["keep", "old"])
    ));
    w.apply(&["--webhook", &url, "--webhook-events", "rotated,retired"])
        .await
        .expect_code(0);
    let messages = take(&got);
    let events = notices("generic", &messages).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let n = &events[0].0;
    assert_eq!(n["event"], "retired", "{n}");
    assert_eq!(n["slot"], "old");
    assert_eq!(n["generation"], 1);
    assert_eq!(n["client_id"], g1.client_id.as_str());
    assert_eq!(n["fingerprint"], g1.secret.fingerprint().as_str());
    assert!(w.record("old").await.is_none(), "the entry is gone");
    assert_no_secret(&w, &messages).await;
}

/// In a pod, the audit line's actor is the service account, the pod and the namespace, from
/// the token's claims (a fake token in a temp dir stands in for the one Kubernetes mounts);
/// with a malformed token, from the downward-API variables, the token never printed.
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_actor_is_the_service_account_and_pod_in_kubernetes() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let w = World::new(1).await;
    w.inventory(&common::plain_slots(&["alpha"]));
    let token = w.path().join("sa-token");
    let claims = r#"{"aud":["https://kubernetes.default.svc"],"sub":"system:serviceaccount:rekey:rekey","kubernetes.io":{"namespace":"rekey","pod":{"name":"rekey-abc","uid":"8d1c"},"serviceaccount":{"name":"rekey","uid":"77aa"}}}"#;
    let signature = common::random_alnum(43);
    common::secrets::register(&signature);
    std::fs::write(
        &token,
        format!("{}.{}.{signature}", b64(r#"{"alg":"RS256"}"#), b64(claims)),
    )
    .unwrap();
    let token_env = token.to_str().unwrap();
    let audit = |run: usize| w.path().join(format!("audit-{run}.jsonl"));
    let actors = |run: usize| -> Vec<String> {
        std::fs::read_to_string(audit(run))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["actor"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let run = apply(
        &w,
        &audit(1),
        vec![("REKEY_SERVICE_ACCOUNT_TOKEN", token_env.into())],
    )
    .await;
    run.expect_code(0);
    let got = actors(1);
    assert!(!got.is_empty());
    for a in &got {
        assert!(
            a.starts_with(
                "system:serviceaccount:rekey:rekey (pod rekey-abc, namespace rekey) pid "
            ),
            "{a}"
        );
    }

    // A token that is not a JWT: ignored (a debug line), the downward-API variables used.
    std::fs::write(&token, format!("not-a-jwt-{signature}")).unwrap();
    let run = apply(
        &w,
        &audit(2),
        vec![
            ("REKEY_SERVICE_ACCOUNT_TOKEN", token_env.into()),
            ("POD_NAME", "rekey-29001-xk2p".into()),
            ("POD_NAMESPACE", "creds".into()),
            ("POD_SERVICE_ACCOUNT", "rotator".into()),
        ],
    )
    .await;
    run.expect_code(0);
    for a in actors(2) {
        assert!(
            a.starts_with(
                "system:serviceaccount:creds:rotator (pod rekey-29001-xk2p, namespace creds) pid "
            ),
            "{a}"
        );
    }
    assert!(
        run.all()
            .contains("the service-account token is ignored for the audit actor"),
        "{}",
        run.all()
    );
    assert!(
        !run.all().contains(&signature),
        "the token is never printed"
    );

    // Outside a pod: the user at the host.
    let run = apply(
        &w,
        &audit(3),
        vec![(
            "REKEY_SERVICE_ACCOUNT_TOKEN",
            w.path().join("none").to_string_lossy().into_owned(),
        )],
    )
    .await;
    run.expect_code(0);
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    for a in actors(3) {
        assert!(
            a.contains(&format!("@{host} pid ")) && !a.starts_with("unknown@"),
            "{a}"
        );
    }
}

/// `apply --force` with the audit trail in `audit` and `env` set.
async fn apply(w: &World, audit: &std::path::Path, env: Vec<(&str, String)>) -> common::Run {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = audit.to_string_lossy().into_owned();
    w.rekey_env(
        &[
            "apply",
            "-c",
            "inventory.toml",
            "--force",
            "--audit-log",
            &p,
        ],
        &env,
    )
    .await
}

/// The consumer-reload example: on `rotated` for the slot it watches, in either format, it
/// runs `kubectl rollout restart` for that slot's Deployment, once per event; other slots,
/// other events and a wrong path restart nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_reload_example_restarts_the_deployment_of_a_rotated_slot() {
    let w = World::new(1).await;
    w.inventory(&common::plain_slots(&["alpha", "other"]));
    // A stand-in for kubectl (no API server here): it records its arguments, one call a line.
    let bin = w.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = w.path().join("kubectl-calls");
    std::fs::write(
        bin.join("kubectl"),
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", calls.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("kubectl"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The secret in the hook's path: rekey never logs it (the leak scan checks its trace logs).
    let path_secret = common::random_alnum(24);
    common::secrets::register(&path_secret);
    std::fs::write(w.path().join("hook-path"), &path_secret).unwrap();

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/reload-on-rotate/receiver.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(&script)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--namespace",
            "apps",
            "--path-secret-file",
        ])
        .arg(w.path().join("hook-path"))
        .arg("alpha=web")
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    use tokio::io::AsyncBufReadExt;
    tokio::time::timeout(Duration::from_secs(10), stdout.read_line(&mut line))
        .await
        .expect("the receiver starts")
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let url = format!("http://{addr}/hooks/{path_secret}");
    let calls_now = || std::fs::read_to_string(&calls).unwrap_or_default();

    let restart = "rollout restart deployment/web --namespace apps\n";
    for (format, want) in [
        ("generic", restart.to_string()),
        ("cloudevents", restart.repeat(2)),
        // Chat text is not for machines: nothing restarts (and REKEY_WEBHOOK_FORMAT is read).
        ("slack", restart.repeat(2)),
    ] {
        // As a CronJob sets them: from the environment.
        let run = w
            .rekey_env(
                &["apply", "-c", "inventory.toml", "--force"],
                &[
                    ("REKEY_WEBHOOK_URL", url.as_str()),
                    ("REKEY_WEBHOOK_FORMAT", format),
                    ("REKEY_WEBHOOK_EVENTS", "rotated,failed"),
                ],
            )
            .await;
        run.expect_code(0);
        assert!(!run.all().contains(&path_secret), "{}", run.all());
        assert_eq!(
            calls_now(),
            want,
            "{format}: the restarts so far, for alpha only"
        );
    }
    // A wrong path is refused and restarts nothing.
    let wrong = format!("http://{addr}/hooks/guess");
    let body = r#"{"event":"rotated","slot":"alpha","id":"x-1"}"#;
    let r = rekey::http::client()
        .post(&wrong)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A retried delivery (same id) restarts once.
    for _ in 0..2 {
        let r = rekey::http::client()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(calls_now(), restart.repeat(3));
    child.kill().await.unwrap();
    let mut err = String::new();
    use tokio::io::AsyncReadExt;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert!(
        !err.contains(&path_secret),
        "the receiver never prints its path: {err}"
    );
}
