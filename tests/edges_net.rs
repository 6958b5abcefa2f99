//! The network edges (issue 14, points 1, 5, 7, 9), each on the real binary:
//! - no client of rekey follows a redirect (Vault with token and AppRole logins, webhooks, the
//!   Pushgateway), so the redirect's target never sees a token, a secret_id, a secret URL path
//!   or a `Referer`, and the user gets a clear error;
//! - URLs with credentials (or secret paths) are never shown: push errors, `--help` with the
//!   environment variable set, config errors for URLs that do not parse;
//! - oversized Vault and AWS answers are refused with a clear error and bounded memory (the
//!   peak RSS is printed);
//!
//! (Vault's CA roots are tested in tests/hardening.rs, `vault_tls_with_a_private_ca`.)
//!
//! The servers here are small loopback HTTP servers written in the test: no real server here
//! answers with a redirect, or with hundreds of MiB, on request.

mod common;

use common::{ADMIN_ROLE, World};
use rekey::emulator::{FaultAction, Faults, OneShot};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SLOT: &str = "[[slots]]\nname = \"s1\"\nprovider = \"p0\"\n";

fn slot() -> String {
    format!("{SLOT}roles = [\"{ADMIN_ROLE}\"]\n")
}

/// Requests a test server received, each as its raw text (head and body).
type Seen = Arc<Mutex<Vec<String>>>;

/// A loopback HTTP/1.1 server: records every request whole, answers with `answer(request)`
/// (a full response, head and body), and closes the connection.
async fn server(answer: impl Fn(&str) -> String + Send + Sync + 'static) -> (SocketAddr, Seen) {
    let seen: Seen = Default::default();
    let log = Arc::clone(&seen);
    let addr = common::servers::serve_raw(move |_, req| {
        req.complete().then(|| {
            let response = answer(&req.raw);
            log.lock().unwrap().push(req.raw.clone());
            response
        })
    })
    .await;
    (addr, seen)
}

/// A server that records requests and answers `200 {}`: the place a redirect points to.
async fn target() -> (SocketAddr, Seen) {
    server(|_| {
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
            .to_string()
    })
    .await
}

/// A server that answers every request `307` to the same path on `to` (another origin).
async fn redirector(to: SocketAddr) -> (SocketAddr, Seen) {
    server(move |req| {
        let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{to}{path}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
    })
    .await
}

fn seen(s: &Seen) -> Vec<String> {
    s.lock().unwrap().clone()
}

fn write_600(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A Vault that answers `307` to another host: with token auth and with AppRole, rekey stops
/// with an error that says to point at the active node; the other host receives nothing (no
/// token, no secret_id, no Referer), and nothing changed on the platform.
#[tokio::test(flavor = "multi_thread")]
async fn vault_redirects_are_refused_with_token_and_approle() {
    let w = World::new(1).await;
    let token = format!("s.{}", common::random_alnum(24));
    let secret_id = format!("sid-{}", common::random_alnum(24));
    common::secrets::register(&token);
    common::secrets::register(&secret_id);
    write_600(&w.path().join("vault-token"), &token);
    write_600(&w.path().join("secret-id"), &secret_id);
    for (auth, credential) in [
        (
            "auth = { method = \"token\", token = { file = \"vault-token\" } }",
            &token,
        ),
        (
            "auth = { method = \"approle\", role_id = \"role-1\", secret_id = { file = \"secret-id\" } }",
            &secret_id,
        ),
    ] {
        let (elsewhere, at_target) = target().await;
        let (vault, at_vault) = redirector(elsewhere).await;
        w.inventory_raw(&format!(
            "{}\n{}",
            w.header_with_backend(
                "vault",
                &format!(
                    "[backends.vault]\ntype = \"vault\"\naddress = \"http://{vault}\"\n{auth}\ntimeout = \"10s\"\n"
                ),
            ),
            slot()
        ));
        let mut outputs = Vec::new();
        for args in [
            &["check", "-c", "inventory.toml"][..],
            &["apply", "-c", "inventory.toml"][..],
        ] {
            let r = w.rekey(args).await;
            assert_ne!(r.code, Some(0), "{}", r.all());
            outputs.push(r.all());
        }
        let asked = seen(&at_vault);
        assert!(
            asked.iter().any(|q| q.contains(credential.as_str())),
            "the fake Vault was asked with the credential: {asked:?}"
        );
        let reached = seen(&at_target);
        for q in &reached {
            assert!(!q.contains(credential.as_str()), "{auth}: leaked: {q}");
            assert!(!q.to_ascii_lowercase().contains("referer"), "{q}");
        }
        assert!(reached.is_empty(), "{auth}: the other host got {reached:?}");
        for all in outputs {
            assert!(
                all.contains("answered HTTP 307")
                    && all.contains("never follows redirects")
                    && all.contains("active node"),
                "{auth}: {all}"
            );
            w.assert_no_secrets(&all);
        }
        assert_eq!(
            w.platform_clients(&w.tenants[0].id).await.len(),
            1,
            "no client made"
        );
    }
}

/// Webhook and Pushgateway answering `307` to another host: the target gets neither the
/// webhook's secret path nor a Referer (it gets nothing), and the log says why.
#[tokio::test(flavor = "multi_thread")]
async fn webhook_and_pushgateway_redirects_are_refused() {
    let w = World::new(1).await;
    w.inventory(&format!(
        "{}\n[[slots]]\nname = \"s2\"\nprovider = \"p0\"\nroles = [\"{ADMIN_ROLE}\"]\n",
        slot()
    ));
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
    let (hook_target, at_hook_target) = target().await;
    let (hook, at_hook) = redirector(hook_target).await;
    let (gw_target, at_gw_target) = target().await;
    let (gw, at_gw) = redirector(gw_target).await;
    let webhook = format!("http://{hook}/services/T000/B000/HOOKSECRETPATH");
    let r = w
        .apply(&[
            "--webhook",
            &webhook,
            "--pushgateway",
            &format!("http://{gw}"),
        ])
        .await;
    r.expect_code(1);
    assert!(
        seen(&at_hook)
            .iter()
            .any(|q| q.starts_with("POST /services/T000/B000/HOOKSECRETPATH")),
        "the webhook was called: {:?}",
        seen(&at_hook)
    );
    assert!(
        seen(&at_gw)
            .iter()
            .any(|q| q.starts_with("PUT /metrics/job/rekey")),
        "the Pushgateway was called"
    );
    for q in seen(&at_hook).iter().chain(seen(&at_gw).iter()) {
        assert!(!q.to_ascii_lowercase().contains("referer:"), "{q}");
    }
    let (to_hook, to_gw) = (seen(&at_hook_target), seen(&at_gw_target));
    assert!(
        to_hook.is_empty(),
        "the webhook's redirect was followed: {to_hook:?}"
    );
    assert!(
        to_gw.is_empty(),
        "the Pushgateway's redirect was followed: {to_gw:?}"
    );
    let all = r.all();
    assert!(
        all.contains("webhook: answered HTTP 307") && all.contains("never follows redirects"),
        "{all}"
    );
    assert!(
        all.contains("pushgateway") && all.contains("answered HTTP 307"),
        "{all}"
    );
    assert!(
        !all.contains("HOOKSECRETPATH"),
        "the webhook path is never shown"
    );
}

/// `user:password@` in a Pushgateway URL is not in the push error's log line, nor in
/// `--help` when `REKEY_PUSHGATEWAY` holds it; URLs that do not parse (provider `url`, Vault
/// `address`, AWS `endpoint_url`, `--pushgateway`, `--webhook`) are refused (exit 2) without
/// their password in the message.
#[tokio::test(flavor = "multi_thread")]
async fn urls_with_credentials_are_never_shown() {
    let w = World::new(1).await;
    let pass = format!("PW{}", common::random_alnum(16));
    common::secrets::register(&pass);
    w.inventory(&slot());

    // A push that fails: a port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = format!("http://rekey:{pass}@{closed}");
    // Given through the environment, as a secret should be (arguments show in `ps`).
    let r = w
        .rekey_env(
            &["apply", "-c", "inventory.toml"],
            &[("REKEY_PUSHGATEWAY", &gw)],
        )
        .await;
    r.expect_code(0);
    let all = r.all();
    assert!(all.contains("metrics not pushed"), "{all}");
    assert!(
        all.contains(&format!("http://***@{closed}/metrics/job/rekey")),
        "{all}"
    );
    assert!(!all.contains(&pass), "{all}");

    // --help shows the environment's values of flags only where they cannot be secret.
    let r = w
        .rekey_env(&["apply", "--help"], &[("REKEY_PUSHGATEWAY", &gw)])
        .await;
    r.expect_code(0);
    assert!(r.stdout.contains("REKEY_PUSHGATEWAY"), "{}", r.stdout);
    assert!(!r.all().contains(&pass), "{}", r.all());

    // URLs that do not parse (a port out of range), credentials and all.
    let bad = format!("https://rekey:{pass}@host.example:99999");
    let base = format!("{}\n{}", w.header(), slot());
    let vault = format!(
        "backend = \"v\"\n\n[backends.v]\ntype = \"vault\"\naddress = \"{bad}\"\n\
         auth = {{ method = \"token\", token = {{ env = \"NO_SUCH_TOKEN\" }} }}"
    );
    let aws = format!(
        "backend = \"a\"\n\n[backends.a]\ntype = \"aws\"\nregion = \"us-east-1\"\nendpoint_url = \"{bad}\""
    );
    for (text, key) in [
        (
            base.replacen(
                &format!("url = \"{}\"", w.emu.url()),
                &format!("url = \"{bad}\""),
                1,
            ),
            "providers.p0.url",
        ),
        (
            base.replacen("backend = \"local\"", &vault, 1),
            "backends.v.address",
        ),
        (
            base.replacen("backend = \"local\"", &aws, 1),
            "backends.a.endpoint_url",
        ),
    ] {
        w.inventory_raw(&text);
        let r = w.rekey(&["plan", "-c", "inventory.toml"]).await;
        r.expect_code(2);
        assert!(
            r.stderr.contains(key) && r.stderr.contains("not a URL"),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("***@host.example"), "{}", r.stderr);
        assert!(!r.all().contains(&pass), "{}", r.all());
    }
    w.inventory(&slot());
    let before = w.platform_clients(&w.tenants[0].id).await.len();
    for (flag, var) in [
        ("--pushgateway", "REKEY_PUSHGATEWAY"),
        ("--webhook", "REKEY_WEBHOOK_URL"),
    ] {
        let r = w
            .rekey_env(
                &["apply", "-c", "inventory.toml", "--force"],
                &[(var, &bad)],
            )
            .await;
        r.expect_code(2);
        assert!(
            r.stderr.contains(flag) && r.stderr.contains("not a URL"),
            "{}",
            r.stderr
        );
        assert!(!r.all().contains(&pass), "{}", r.all());
    }
    let after = w.platform_clients(&w.tenants[0].id).await.len();
    assert_eq!(after, before, "nothing changed");
}

/// A server that answers every request `200` with a JSON body of `size` bytes, written in
/// 64 KiB pieces as the client reads (never held whole in the test's memory). With `announce`
/// the size is in `Content-Length`; without, the body simply runs until the connection closes.
async fn huge_answer_server(
    size: u64,
    content_type: &'static str,
    announce: bool,
) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Default::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).to_string());
                let open = b"{\"data\": {\"x\": \"";
                let length = if announce {
                    format!("content-length: {size}")
                } else {
                    "connection: close".to_string()
                };
                let head =
                    format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n{length}\r\n\r\n");
                if sock.write_all(head.as_bytes()).await.is_err()
                    || sock.write_all(open).await.is_err()
                {
                    return;
                }
                let piece = vec![b'a'; 64 * 1024];
                let mut sent = open.len() as u64;
                while sent < size {
                    let k = piece.len().min((size - sent) as usize);
                    if sock.write_all(&piece[..k]).await.is_err() {
                        return; // the client stopped reading
                    }
                    sent += k as u64;
                }
            });
        }
    });
    (addr, seen)
}

/// Runs `rekey` in the world's directory and returns its result and its peak RSS in KiB
/// (`ru_maxrss` from `wait4`, which outlives the process, unlike /proc/PID/status).
async fn rekey_with_peak_rss(w: &World, args: &[&str], env: &[(&str, &str)]) -> (common::Run, u64) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rekey"));
    cmd.args(args)
        .current_dir(w.path())
        .env("REKEY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut child = child;
        let (mut out, mut err) = (String::new(), String::new());
        // Small outputs: read them to the end, then reap the process with its usage.
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = child.id() as libc::pid_t;
        let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(got, pid, "wait4");
        let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        let run = common::Run {
            code,
            signal: None,
            stdout: out,
            stderr: err,
        };
        (run, usage.ru_maxrss as u64)
    })
    .await
    .unwrap()
}

const HUGE: u64 = 256 * 1024 * 1024;
const RSS_BOUND_KIB: u64 = 100 * 1024;

/// A Vault answering 256 MiB: refused at 4 MiB with a clear error, and rekey's peak memory
/// stays under 100 MiB.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_vault_answer_is_refused_with_bounded_memory() {
    let w = World::new(1).await;
    let token = format!("s.{}", common::random_alnum(24));
    common::secrets::register(&token);
    write_600(&w.path().join("vault-token"), &token);
    let (vault, asked) = huge_answer_server(HUGE, "application/json", true).await;
    w.inventory_raw(&format!(
        "{}\n{}",
        w.header_with_backend(
            "vault",
            &format!(
                "[backends.vault]\ntype = \"vault\"\naddress = \"http://{vault}\"\n\
                 auth = {{ method = \"token\", token = {{ file = \"vault-token\" }} }}\ntimeout = \"60s\"\n"
            ),
        ),
        slot()
    ));
    let (r, peak) = rekey_with_peak_rss(&w, &["check", "-c", "inventory.toml"], &[]).await;
    println!(
        "rekey check against a {HUGE}-byte Vault answer: peak RSS {} KiB",
        peak
    );
    assert!(!seen(&asked).is_empty(), "the fake Vault was asked");
    assert_ne!(r.code, Some(0), "{}", r.all());
    assert!(
        r.all().contains("larger than 4194304 bytes"),
        "{}",
        r.all().chars().take(2000).collect::<String>()
    );
    assert!(!r.all().contains(&token));
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB");
}

/// The same for AWS Secrets Manager (through the SDK), with an answer of no announced length.
#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_aws_answer_is_refused_with_bounded_memory() {
    let w = World::new(1).await;
    let (aws, asked) = huge_answer_server(HUGE, "application/x-amz-json-1.1", false).await;
    let target = common::AwsTarget {
        endpoint: format!("http://{aws}"),
        prefix: "rekey/".into(),
    };
    w.inventory_aws(&target, &slot());
    let (r, peak) =
        rekey_with_peak_rss(&w, &["check", "-c", "inventory.toml"], common::AWS_TEST_ENV).await;
    println!(
        "rekey check against a {HUGE}-byte AWS answer: peak RSS {} KiB",
        peak
    );
    assert!(!seen(&asked).is_empty(), "the fake AWS was asked");
    assert_ne!(r.code, Some(0), "{}", r.all());
    assert!(
        r.all().contains("larger than 4194304 bytes"),
        "{}",
        r.all().chars().take(2000).collect::<String>()
    );
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB");
}
