//! The exec backend, with the example plugin in examples/, passes the conformance suite; and a
//! plugin that crashes, hangs, answers garbage or echoes secrets gets a clear error that names
//! the cause and never carries a secret.

mod conformance;
use async_trait::async_trait;
use conformance::backend::{self, Harness};
use rekey::backend::Backend;
use rekey::backend::exec::{ExecBackend, ExecBackendConfig};
use rekey::error::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn plugin() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/exec-plugin/dir_store.py")
        .to_string_lossy()
        .into_owned()
}

fn backend_with(command: Vec<String>, timeout: Duration) -> Arc<dyn Backend> {
    let cfg = ExecBackendConfig {
        name: "corp".into(),
        command,
        timeout,
        pass_env: vec![],
    };
    Arc::new(ExecBackend::open(&cfg).unwrap())
}

struct ExecHarness {
    root: tempfile::TempDir,
    last_dir: Mutex<Option<PathBuf>>,
}

#[async_trait]
impl Harness for ExecHarness {
    async fn backend(&self) -> Arc<dyn Backend> {
        let dir = tempfile::tempdir_in(self.root.path()).unwrap().keep();
        *self.last_dir.lock().unwrap() = Some(dir.clone());
        backend_with(
            vec![plugin(), "--dir".into(), dir.to_string_lossy().into_owned()],
            Duration::from_secs(20),
        )
    }

    async fn write_foreign(&self, _backend: &dyn Backend, slot: &str) {
        let dir = self.last_dir.lock().unwrap().clone().unwrap();
        std::fs::write(
            dir.join(format!("{slot}.json")),
            r#"{"version": 1, "record": {"hello": "not rekey's"}}"#,
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_backend_with_the_example_plugin_conforms() {
    let h = ExecHarness {
        root: tempfile::tempdir().unwrap(),
        last_dir: Mutex::new(None),
    };
    assert_eq!(backend::run_all(&h).await, 11);
}

/// A plugin written as a shell script in a temp dir.
fn script(dir: &Path, name: &str, body: &str) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
    vec![p.to_string_lossy().into_owned()]
}

fn record_with_secret() -> (rekey::record::SlotRecord, String) {
    let mut rec = backend::record("alpha");
    let cred = backend::credential(1);
    let secret = cred.secret.expose().to_string();
    rec.current = Some(cred);
    (rec, secret)
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_plugins_get_clear_errors_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (rec, secret) = record_with_secret();

    // Crashes, after echoing its whole input (the secret included) to stderr.
    let crash = backend_with(
        script(d, "crash", "cat >&2; echo 'store exploded' >&2; exit 3"),
        Duration::from_secs(10),
    );
    let e = crash.write("alpha", &rec, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    let msg = rekey::error::chain(&e);
    assert!(
        msg.contains("exit status: 3") && msg.contains("store exploded"),
        "{msg}"
    );
    assert!(
        !msg.contains(&secret),
        "the plugin's stderr is scrubbed of the request's secrets"
    );
    assert!(!format!("{e:?}").contains(&secret));

    // Hangs: killed at the timeout, promptly.
    let hang = backend_with(script(d, "hang", "sleep 30"), Duration::from_millis(500));
    let started = std::time::Instant::now();
    let e = hang.read("alpha").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Answers garbage, or another protocol, or ok=false without saying why.
    let garbage = backend_with(
        script(d, "garbage", "cat >/dev/null; echo 'hello there'"),
        Duration::from_secs(10),
    );
    assert_eq!(
        garbage.list(&Default::default()).await.unwrap_err().kind(),
        ErrorKind::Malformed
    );
    let other = backend_with(
        script(
            d,
            "other",
            r#"cat >/dev/null; echo '{"protocol":"rekey-backend/9","ok":true}'"#,
        ),
        Duration::from_secs(10),
    );
    let e = other.check().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Malformed);
    assert!(e.to_string().contains("rekey-backend/9"), "{e}");
    let vague = backend_with(
        script(
            d,
            "vague",
            r#"cat >/dev/null; echo '{"protocol":"rekey-backend/1","ok":false}'"#,
        ),
        Duration::from_secs(10),
    );
    assert_eq!(
        vague.check().await.unwrap_err().kind(),
        ErrorKind::Malformed
    );

    // Reports a conflict in its own words, quoting the secret: kind kept, secret scrubbed.
    let body = format!(
        r#"cat >/dev/null; echo '{{"protocol":"rekey-backend/1","ok":false,"error":{{"kind":"conflict","message":"taken by {secret}"}}}}'"#
    );
    let blabber = backend_with(script(d, "blabber", &body), Duration::from_secs(10));
    let e = blabber.write("alpha", &rec, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(!e.to_string().contains(&secret), "{e}");

    // Not there at all.
    let missing = backend_with(
        vec![d.join("nope").to_string_lossy().into_owned()],
        Duration::from_secs(10),
    );
    let e = missing.check().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(!e.maybe_applied());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plugin_gets_a_clean_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env.txt");
    let body = format!(
        r#"cat >/dev/null; env > {}; echo '{{"protocol":"rekey-backend/1","ok":true}}'"#,
        out.display()
    );
    // SAFETY: set before the backend spawns anything; this test binary sets no other variable.
    unsafe { std::env::set_var("REKEY_TEST_BOOTSTRAP_SECRET", "do-not-leak") };
    let b = backend_with(script(dir.path(), "env", &body), Duration::from_secs(10));
    b.check().await.unwrap();
    let env = std::fs::read_to_string(out).unwrap();
    assert!(
        !env.contains("do-not-leak"),
        "rekey's environment is not passed on:\n{env}"
    );
    assert!(env.contains("PATH="));
}
