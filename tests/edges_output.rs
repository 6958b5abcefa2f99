//! What rekey prints, end to end on the real binary (issue 14): `rekey get`'s env output cannot
//! be injected, no raw control character from a server, a plugin or the inventory reaches a
//! terminal, secrets echoed back by a server or a plugin are scrubbed from every output, a hung
//! plugin's whole process group dies, and `--version` says what the build holds.

mod common;

use common::World;
use rekey::backend::Backend;
use rekey::emulator::{FaultAction, Faults, OneShot};
use std::path::Path;
use std::time::{Duration, Instant};

fn file_backend(w: &World) -> rekey::backend::file::FileBackend {
    let cfg = rekey::config::FileBackendConfig {
        name: "local".into(),
        path: w.path().join("store"),
        identity: rekey::config::ValueRef::File(w.path().join("rekey.key")),
        recipients: vec![],
    };
    rekey::backend::file::FileBackend::open(&cfg).unwrap()
}

/// Runs `script` with `bash` in an empty environment after `set -a; . FILE`, and returns the
/// variables the file added (bash's own PWD, SHLVL and `_` left out).
fn sourced_by_bash(file: &Path) -> Vec<(String, String)> {
    let out = std::process::Command::new("bash")
        .env_clear()
        .args([
            "--norc",
            "--noprofile",
            "-c",
            "set -a; . \"$1\"; env -0",
            "_",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "bash sourced the file");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut vars: Vec<(String, String)> = text
        .split('\0')
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            e.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .filter(|(k, _)| !["PWD", "SHLVL", "_", "OLDPWD"].contains(&k.as_str()))
        .collect();
    vars.sort();
    vars
}

/// `docker run --env-file` semantics (docker's `opts.ParseEnvFile`): each line is trimmed of
/// leading whitespace, empty lines and lines starting with `#` are skipped, the line is split at
/// the first `=`, and the value is taken as it is (no unquoting, no escapes). systemd's
/// `EnvironmentFile` reads plain `KEY=value` lines the same way.
fn parsed_like_docker(text: &str) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = text
        .lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect();
    vars.sort();
    vars
}

#[tokio::test(flavor = "multi_thread")]
async fn get_env_output_is_two_plain_variables_or_a_clear_refusal() {
    let w = World::new(1).await;
    w.inventory("[[slots]]\nname = \"app\"\nprovider = \"p0\"\n");
    w.apply(&[]).await.expect_code(0);
    let cur = w.record("app").await.unwrap().current.unwrap();

    // A normal pair: exactly CLIENT_ID and CLIENT_SECRET, the same for bash and docker.
    let get = w.rekey(&["get", "-c", "inventory.toml", "app"]).await;
    get.expect_code(0);
    let env_file = w.path().join("app.env");
    std::fs::write(&env_file, &get.stdout).unwrap();
    let want = vec![
        ("CLIENT_ID".to_string(), cur.client_id.clone()),
        ("CLIENT_SECRET".to_string(), cur.secret.expose().to_string()),
    ];
    assert_eq!(sourced_by_bash(&env_file), want);
    assert_eq!(parsed_like_docker(&get.stdout), want);

    // Hostile values planted in the record (a compromised backend, a broken provider answer):
    // each is refused, nothing is printed on stdout, the error names the slot and the field.
    let hostile = [
        ("CLIENT_SECRET", "s3cret\nLD_PRELOAD=/tmp/evil.so"),
        ("CLIENT_SECRET", "x$(touch pwned)"),
        ("CLIENT_SECRET", "a b'c\"d"),
        ("CLIENT_SECRET", "tab\there"),
        ("CLIENT_ID", "id\nCLIENT_ID=attacker"),
    ];
    let backend = file_backend(&w);
    for (field, value) in hostile {
        common::secrets::register(value);
        let v = backend.read("app").await.unwrap().unwrap();
        let mut rec = v.record.clone();
        let c = rec.current.as_mut().unwrap();
        c.client_id = cur.client_id.clone();
        c.secret = cur.secret.clone();
        if field == "CLIENT_ID" {
            c.client_id = value.to_string();
        } else {
            c.secret = rekey::secret::Secret::new(value);
        }
        backend.write("app", &rec, Some(v.version)).await.unwrap();

        let get = w.rekey(&["get", "-c", "inventory.toml", "app"]).await;
        get.expect_code(1);
        assert_eq!(get.stdout, "", "nothing printed for {field}");
        assert!(
            get.stderr.contains("slot app") && get.stderr.contains(field),
            "the refusal names the slot and the field: {}",
            get.stderr
        );
        assert!(get.stderr.contains("--format json"), "{}", get.stderr);
        assert!(!get.stderr.contains(value), "the value is not quoted");
        assert!(!std::path::Path::new(&w.path().join("pwned")).exists());

        // JSON output carries any value safely (serde escapes it).
        let json = w
            .rekey(&["get", "-c", "inventory.toml", "app", "--format", "json"])
            .await;
        json.expect_code(0);
        let v: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
        let key = if field == "CLIENT_ID" {
            "client_id"
        } else {
            "client_secret"
        };
        assert_eq!(v[key], value);
    }
}

/// Bytes a terminal would act on: ESC and every other C0 control but the line feed, and DEL
/// and the C1 controls (U+0080..U+009F, which some terminals take as CSI/OSC).
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| (c.is_control() && c != '\n') || ('\u{80}'..='\u{9f}').contains(&c))
        .collect()
}

const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[31mFAKE OK\rline2\nline3\u{9b}x";

fn hostile_plugin(dir: &Path) -> String {
    let p = dir.join("hostile-plugin.sh");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\ncat > /dev/null\nprintf '%s' '{}' >&2\nexit 3\n",
            HOSTILE.replace('\'', "")
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_raw_control_character_reaches_human_output() {
    let w = World::new(1).await;
    let human = [("REKEY_LOG_FORMAT", "human"), ("NO_COLOR", "1")];

    // 1. A server error message full of escapes (the emulator echoes one into errors[]).
    w.inventory("[[slots]]\nname = \"app\"\nprovider = \"p0\"\n");
    w.set_faults(Faults {
        fail_next: vec![OneShot {
            operation: Some("createClient".into()),
            count: 1,
            action: FaultAction::EchoSecret,
            skip: 0,
        }],
        ..Faults::default()
    })
    .await;
    let apply = w
        .rekey_env(&["apply", "-c", "inventory.toml", "-v"], &human)
        .await;
    assert_eq!(apply.code, Some(1), "{}", apply.all());
    assert!(
        apply.all().contains("FAKE OK"),
        "the message is shown, escaped"
    );
    assert_eq!(
        raw_controls(&apply.all()),
        Vec::<char>::new(),
        "{:?}",
        apply.all()
    );
    let status = w
        .rekey_env(&["status", "-c", "inventory.toml"], &human)
        .await;
    assert_eq!(
        raw_controls(&status.all()),
        Vec::<char>::new(),
        "{:?}",
        status.all()
    );

    // 2. A plugin whose stderr is full of escapes, quoted in the error paragraph.
    let plugin = hostile_plugin(w.path());
    let section =
        format!("[backends.corp]\ntype = \"exec\"\ncommand = [\"{plugin}\"]\ntimeout = \"5s\"\n");
    w.inventory_raw(&format!(
        "{}\n[[slots]]\nname = \"app\"\nprovider = \"p0\"\n",
        w.header_with_backend("corp", &section)
    ));
    for args in [
        &["apply", "-c", "inventory.toml"][..],
        &["check", "-c", "inventory.toml"][..],
        &["get", "-c", "inventory.toml", "app"][..],
    ] {
        let run = w.rekey_env(args, &human).await;
        assert_ne!(run.code, Some(0), "{args:?}: {}", run.all());
        assert!(run.all().contains("FAKE OK"), "{args:?}: {:?}", run.all());
        assert_eq!(
            raw_controls(&run.all()),
            Vec::<char>::new(),
            "{args:?}: {:?}",
            run.all()
        );
        // The plugin's `line3` never starts a line at column 0, where it would pass for
        // rekey's own (the exec backend joins stderr's lines; main's error paragraph indents
        // any line break left: an_inventory_with_several_problems_shows_one_per_line).
        assert!(
            !run.stderr.lines().any(|l| l.starts_with("line3")),
            "{args:?}: forged line in {:?}",
            run.stderr
        );
    }

    // 3. An inventory value with escapes (a slot name), quoted in the config error.
    w.inventory("[[slots]]\nname = \"a\\u001b]0;pwned\\u0007\\u001b[2J\"\nprovider = \"p0\"\n");
    let plan = w.rekey_env(&["plan", "-c", "inventory.toml"], &human).await;
    plan.expect_code(2);
    assert!(
        plan.all().contains("not a valid slot name"),
        "{}",
        plan.all()
    );
    assert_eq!(
        raw_controls(&plan.all()),
        Vec::<char>::new(),
        "{:?}",
        plan.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inventory_with_several_problems_shows_one_per_line() {
    let w = World::new(1).await;
    // The third problem quotes a slot name holding a line break and a line of its own.
    w.inventory(
        "[[slots]]\nname = \"ok-slot\"\nprovider = \"p0\"\nmax_age = \"soon\"\n\n\
         [[slots]]\nname = \"other\"\nprovider = \"nope\"\n\n\
         [[slots]]\nname = \"Bad\\nrekey: all good\\r\"\nprovider = \"p0\"\n",
    );
    let plan = w
        .rekey_env(
            &["plan", "-c", "inventory.toml"],
            &[("REKEY_LOG_FORMAT", "human"), ("NO_COLOR", "1")],
        )
        .await;
    plan.expect_code(2);
    assert_eq!(
        raw_controls(&plan.stderr),
        Vec::<char>::new(),
        "{:?}",
        plan.stderr
    );
    let lines: Vec<&str> = plan.stderr.lines().collect();
    let head = lines
        .iter()
        .position(|l| *l == "rekey: the inventory has 3 problems:")
        .unwrap_or_else(|| panic!("the list's first line on its own: {:?}", plan.stderr));
    let rest = &lines[head + 1..];
    // Nothing after the first line starts at column 0: the quoted `rekey: all good` is indented.
    for line in rest {
        assert!(line.starts_with("  "), "{line:?} in {:?}", plan.stderr);
    }
    let problems: Vec<&&str> = rest
        .iter()
        .filter(|l| l.starts_with("  inventory.toml:"))
        .collect();
    assert_eq!(problems.len(), 3, "one line per problem: {:?}", plan.stderr);
    for (line, key) in problems.iter().zip(["max_age", "provider", "name"]) {
        assert!(line.contains(key), "{line:?} names {key}");
        assert!(!line.contains("\\u{a}"), "no escaped line break: {line:?}");
    }
}

/// A loopback webhook receiver answering 200 to everything: rekey's webhook only has to be
/// received here, there is no real service to post to.
async fn webhook_sink() -> (String, std::sync::Arc<std::sync::Mutex<String>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let keep = seen.clone();
    let addr = common::servers::serve_raw(move |_, req| {
        // Whatever arrived, whole or not, is checked.
        keep.lock().unwrap().push_str(&req.raw);
        Some(common::servers::empty_response("200 OK"))
    })
    .await;
    (format!("http://{addr}/hook"), seen)
}

/// Every text an echo run left behind: its output, the audit trail, the webhook posts, and the
/// record's non-secret fields (`status` prints `last`).
async fn everything(w: &World, runs: &[&common::Run], hooks: &str) -> String {
    let mut all = String::new();
    for r in runs {
        all.push_str(&r.all());
    }
    all.push_str(hooks);
    all.push_str(&std::fs::read_to_string(w.path().join("audit.log")).unwrap_or_default());
    for rec in w.records().await {
        all.push_str(&format!("{:?}", rec.last));
        all.push_str(&format!("{:?}", rec.op));
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_echoed_by_a_server_are_scrubbed_everywhere() {
    let w = World::new(1).await;
    let (hook, posts) = webhook_sink().await;
    w.inventory("[[slots]]\nname = \"app\"\nprovider = \"p0\"\n");
    // The create succeeds at the platform, and its answer carries the new secret both in
    // data.createClient.clientSecret and quoted in an errors[] message.
    w.set_faults(Faults {
        fail_next: vec![OneShot {
            operation: Some("createClient".into()),
            count: 1,
            action: FaultAction::EchoSecret,
            skip: 0,
        }],
        ..Faults::default()
    })
    .await;
    let obs = [
        "--audit-log",
        "audit.log",
        "--webhook",
        hook.as_str(),
        "--webhook-format",
        "generic",
    ];
    let mut args = vec!["apply", "-c", "inventory.toml"];
    args.extend_from_slice(&obs);
    let table = w
        .rekey_env(&args, &[("REKEY_LOG_FORMAT", "human"), ("NO_COLOR", "1")])
        .await;
    assert_eq!(table.code, Some(1), "{}", table.all());
    let echoed = w.emu.echoed_secrets();
    assert_eq!(
        echoed.len(),
        1,
        "the emulator echoed the issued secret once"
    );
    assert!(table.all().contains("[redacted]"), "{}", table.all());

    // Again with JSON output, on a second slot's create, and `status` (which shows the stored
    // last result).
    w.inventory("[[slots]]\nname = \"app\"\nprovider = \"p0\"\n\n[[slots]]\nname = \"app2\"\nprovider = \"p0\"\n");
    w.set_faults(Faults {
        fail_next: vec![OneShot {
            operation: Some("createClient".into()),
            count: 1,
            action: FaultAction::EchoSecret,
            skip: 0,
        }],
        ..Faults::default()
    })
    .await;
    args.extend_from_slice(&["--output", "json"]);
    let json = w.rekey(&args).await;
    let status = w.rekey(&["status", "-c", "inventory.toml"]).await;
    let status_json = w
        .rekey(&["status", "-c", "inventory.toml", "--output", "json"])
        .await;
    let echoed = w.emu.echoed_secrets();
    assert_eq!(echoed.len(), 2);
    let hooks = posts.lock().unwrap().clone();
    assert!(!hooks.is_empty(), "the webhook was posted");
    let text = everything(&w, &[&table, &json, &status, &status_json], &hooks).await;
    for s in &echoed {
        assert!(
            !text.contains(s.as_str()),
            "an echoed secret appeared:\n{text}"
        );
    }
    w.assert_no_secrets(&text);
    // No lasting harm: the next run converges and the stored pair works.
    w.apply(&[]).await.expect_code(0);
    w.assert_consistent(&["app", "app2"]).await;
}

/// A wrapper around the example plugin: passes every call through, but while armed (a file
/// `fail-reads` in the store directory) it spoils every read's answer with a field rekey does
/// not know and logs the record's secret on stderr, as a careless plugin of a newer protocol
/// revision might. rekey must refuse the answer and quote the stderr without the secret.
fn echoing_plugin(dir: &Path) -> String {
    let p = dir.join("echo-plugin.py");
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/exec-plugin/dir_store.py");
    std::fs::write(
        &p,
        format!(
            r#"#!/usr/bin/env python3
import json, os, subprocess, sys
store = os.path.join(os.getcwd(), "plugin-store")
req = sys.stdin.read()
out = subprocess.run([sys.executable, "{real}", "--dir", store], input=req, capture_output=True, text=True)
arm = os.path.join(store, "fail-reads")
r = json.loads(req)
if r.get("op") == "read" and os.path.exists(arm):
    a = json.loads(out.stdout)
    rec = a.get("record") or {{}}
    s = (rec.get("current") or {{}}).get("secret", "")
    sys.stderr.write("debug: read record with secret " + s + "\n")
    a["debug"] = "record holds " + s
    sys.stdout.write(json.dumps(a))
    sys.exit(0)
sys.stdout.write(out.stdout)
sys.stderr.write(out.stderr)
sys.exit(out.returncode)
"#,
            real = real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_echoed_by_a_plugin_on_read_are_scrubbed_everywhere() {
    let w = World::new(1).await;
    let (hook, posts) = webhook_sink().await;
    let plugin = echoing_plugin(w.path());
    let section =
        format!("[backends.corp]\ntype = \"exec\"\ncommand = [\"{plugin}\"]\ntimeout = \"20s\"\n");
    w.inventory_raw(&format!(
        "{}\n[[slots]]\nname = \"app\"\nprovider = \"p0\"\n",
        w.header_with_backend("corp", &section)
    ));
    w.apply(&[]).await.expect_code(0);
    let stored: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(w.path().join("plugin-store/app.json")).unwrap(),
    )
    .unwrap();
    let secret = stored["record"]["current"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!secret.is_empty());

    std::fs::write(w.path().join("plugin-store/fail-reads"), "0").unwrap();
    let run = w
        .rekey(&[
            "apply",
            "-c",
            "inventory.toml",
            "--force",
            "--output",
            "json",
            "--audit-log",
            "audit.log",
            "--webhook",
            &hook,
            "--webhook-format",
            "generic",
        ])
        .await;
    assert_ne!(run.code, Some(0), "the later read failed: {}", run.all());
    assert!(
        run.all()
            .contains("its stderr ends: debug: read record with secret [redacted]"),
        "the plugin's stderr is quoted, scrubbed: {}",
        run.all()
    );
    let hooks = posts.lock().unwrap().clone();
    let text = everything(&w, &[&run], &hooks).await;
    assert!(
        !text.contains(&secret),
        "the stored secret appeared:\n{text}"
    );
    assert!(text.contains("[redacted]"), "{text}");
    std::fs::remove_file(w.path().join("plugin-store/fail-reads")).unwrap();
}

fn alive(pid: i32) -> bool {
    // A zombie (state Z) is dead: only its parent's wait is missing.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_plugins_children_die_with_it() {
    let w = World::new(1).await;
    let pidfile = w.path().join("grandchild.pid");
    let plugin = w.path().join("hang-plugin.sh");
    // Starts a grandchild that would outlive it, and hangs in a foreground child of its own.
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\nsleep 300 &\necho $! > '{}'\nsleep 300\n",
            pidfile.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let section = format!(
        "[backends.corp]\ntype = \"exec\"\ncommand = [\"{}\"]\ntimeout = \"1s\"\n",
        plugin.display()
    );
    w.inventory_raw(&format!(
        "{}\n[[slots]]\nname = \"app\"\nprovider = \"p0\"\n",
        w.header_with_backend("corp", &section)
    ));
    let run = w.rekey(&["check", "-c", "inventory.toml"]).await;
    assert_ne!(run.code, Some(0));
    assert!(run.all().contains("no answer within 1s"), "{}", run.all());
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let survived = alive(pid);
    if survived {
        // SAFETY: kill only sends a signal to the test's own leftover process.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(
        !survived,
        "the plugin's grandchild {pid} outlived the timeout"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn version_names_the_commit_and_the_features_and_warns_about_test_hooks() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rekey"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("rekey {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("commit: "), "{text}");
    let features = text
        .lines()
        .find_map(|l| l.strip_prefix("features: "))
        .unwrap_or_else(|| panic!("a features line: {text}"));
    let want: Vec<&str> = [
        ("emulator", cfg!(feature = "emulator")),
        ("test-hooks", cfg!(feature = "test-hooks")),
        ("aws", cfg!(feature = "aws")),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(n, _)| *n)
    .collect();
    let want = if want.is_empty() {
        "none".to_string()
    } else {
        want.join(", ")
    };
    assert_eq!(features, want, "{text}");
    assert_eq!(
        text.contains("WARNING: test hooks"),
        cfg!(feature = "test-hooks"),
        "{text}"
    );
}
