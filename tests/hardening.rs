//! Hardening (issue 6, part 4), each hole closed and proved on the real binary:
//! core dumps off in a running process, no root in the container unless told, secret files
//! others can read refused, inline secrets refused, TLS with a private CA (providers and Vault)
//! and without it a clear error, plain http only to loopback, response-size limits, and the
//! leak scan itself (SECURITY.md lists the guarantees).

mod common;
mod openbao;

use common::{ADMIN_ROLE, World};
use openbao::{EXAMPLE_POLICY, OpenBao, random_hex};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SLOT: &str = "[[slots]]\nname = \"s1\"\nprovider = \"p0\"\n";

fn slot() -> String {
    format!("{SLOT}roles = [\"{ADMIN_ROLE}\"]\n")
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// ---- process: core dumps, root -------------------------------------------------------------

/// A running `rekey` has RLIMIT_CORE 0 (/proc/PID/limits) and is not dumpable: its /proc files
/// belong to root although it runs as another user (/proc/PID/status `Uid:`). As root, the test
/// runs it as `nobody` so that the two can be told apart.
#[tokio::test]
async fn a_running_rekey_cannot_dump_core() {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rekey"));
    cmd.args(["emulator", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "rekey=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    if root {
        cmd.uid(65534).gid(65534);
    }
    let mut child = cmd.spawn().expect("rekey starts");
    let pid = child.id().unwrap();
    let proc_dir = format!("/proc/{pid}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (limits, status, owner) = loop {
        let limits = std::fs::read_to_string(format!("{proc_dir}/limits")).unwrap();
        let status = std::fs::read_to_string(format!("{proc_dir}/status")).unwrap();
        let owner = std::fs::metadata(format!("{proc_dir}/status"))
            .unwrap()
            .uid();
        let core_zero = limits.lines().any(|l| {
            l.starts_with("Max core file size")
                && l.split_whitespace().nth(4) == Some("0")
                && l.split_whitespace().nth(5) == Some("0")
        });
        if (core_zero && owner == 0) || Instant::now() > deadline {
            break (limits, status, owner);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.kill().await.unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("a core limit line");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(
        &fields[4..6],
        ["0", "0"],
        "soft and hard core limits: {core}"
    );
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let real_uid: u32 = uid_line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_ne!(
        real_uid, 0,
        "the process runs as a user, not root: {uid_line}"
    );
    assert_eq!(
        owner, 0,
        "a non-dumpable process's /proc files belong to root (uid {real_uid} owns them: dumpable)"
    );
}

/// `REKEY_IN_CONTAINER=1` (the image's) and root: refused, exit 2, a clear message, nothing
/// read or changed; `--allow-root` or `REKEY_ALLOW_ROOT=1` lets it run. `REKEY_TEST_EUID` (a
/// test-hooks stand-in for geteuid) makes this hold without root; as root, the real check too.
#[tokio::test]
async fn root_is_refused_in_the_container_unless_told() {
    let w = World::new(1).await;
    w.inventory(&slot());
    let apply = ["apply", "-c", "inventory.toml"];
    let root = [("REKEY_IN_CONTAINER", "1"), ("REKEY_TEST_EUID", "0")];
    let r = w.rekey_env(&apply, &root).await;
    r.expect_code(2);
    assert!(
        r.stderr.contains("refusing to run as root in a container")
            && r.stderr.contains("--allow-root")
            && r.stderr.contains("REKEY_ALLOW_ROOT"),
        "{}",
        r.stderr
    );
    assert!(!w.path().join("store").exists(), "not even the store made");
    assert!(w.records().await.is_empty(), "nothing stored");
    assert_eq!(
        w.platform_clients(&w.tenants[0].id).await.len(),
        1,
        "no client made"
    );

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let r = w
            .rekey_env(
                &["plan", "-c", "inventory.toml"],
                &[("REKEY_IN_CONTAINER", "1")],
            )
            .await;
        r.expect_code(2);
        assert!(r.stderr.contains("refusing to run as root"), "{}", r.stderr);
    }
    // Not root, or not in the container: no refusal.
    for env in [
        vec![("REKEY_IN_CONTAINER", "1"), ("REKEY_TEST_EUID", "65532")],
        vec![("REKEY_IN_CONTAINER", "0"), ("REKEY_TEST_EUID", "0")],
    ] {
        w.rekey_env(&["plan", "-c", "inventory.toml"], &env)
            .await
            .expect_code(0);
    }
    let mut told = root.to_vec();
    told.push(("REKEY_ALLOW_ROOT", "1"));
    w.rekey_env(&["plan", "-c", "inventory.toml"], &told)
        .await
        .expect_code(0);
    w.rekey_env(&["apply", "-c", "inventory.toml", "--allow-root"], &root)
        .await
        .expect_code(0);
    w.assert_consistent(&["s1"]).await;
}

// ---- files ----------------------------------------------------------------------------------

/// A bootstrap secret file others can read: exit 2 naming the file, its mode and the fix,
/// nothing changed, the secret not printed. Tightened to 0600, the same run works.
#[tokio::test]
async fn secret_files_others_can_read_are_refused() {
    let w = World::new(1).await;
    w.inventory(&slot());
    let secret_file = w.path().join("boot-0.secret");
    for mode in [0o640, 0o604, 0o620] {
        chmod(&secret_file, mode);
        let r = w.apply(&[]).await;
        r.expect_code(2);
        let all = r.all();
        assert!(
            all.contains("boot-0.secret")
                && all.contains(&format!("mode {mode:03o}"))
                && all.contains("chmod 600"),
            "{all}"
        );
        w.assert_no_secrets(&all);
        assert!(w.records().await.is_empty());
        assert_eq!(w.platform_clients(&w.tenants[0].id).await.len(), 1);
    }
    chmod(&secret_file, 0o600);
    w.apply(&[]).await.expect_code(0);
    w.assert_consistent(&["s1"]).await;

    // An existing audit log others can read is refused too (it names every client).
    let audit = w.path().join("audit.jsonl");
    std::fs::write(&audit, "").unwrap();
    chmod(&audit, 0o644);
    let r = w.apply(&["--force", "--audit-log", "audit.jsonl"]).await;
    r.expect_code(2);
    assert!(
        r.stderr.contains("audit log") && r.stderr.contains("mode 644"),
        "{}",
        r.stderr
    );
}

/// The emulator's seed (plaintext secrets) and state file: refused when others can read them.
#[tokio::test]
async fn emulator_seed_and_state_files_others_can_read_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    std::fs::write(&seed, r#"{"tenants": []}"#).unwrap();
    let state = dir.path().join("state.json");
    for (file, flag) in [(&seed, "--seed"), (&state, "--state-file")] {
        if !file.exists() {
            std::fs::write(file, "{}").unwrap();
        }
        chmod(file, 0o644);
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rekey"))
            .args(["emulator", "--listen", "127.0.0.1:0", flag])
            .arg(file)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), out)
            .await
            .expect("refused at once")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains("mode 644") && stderr.contains("chmod 600"),
            "{stderr}"
        );
        chmod(file, 0o600);
    }
}

// ---- config ---------------------------------------------------------------------------------

/// A literal secret in the inventory: exit 2, located (file, line, key), never echoed.
#[tokio::test]
async fn inline_secrets_are_refused_with_their_location() {
    let w = World::new(1).await;
    let literal = format!("literal-{}", common::random_alnum(40));
    common::secrets::register(&literal);
    let text = format!("{}\n{}", w.header(), slot()).replacen(
        "client_secret = { file = \"boot-0.secret\" }",
        &format!("client_secret = \"{literal}\""),
        1,
    );
    w.inventory_raw(&text);
    let line = text
        .lines()
        .position(|l| l.contains("client_secret ="))
        .unwrap()
        + 1;
    let r = w.apply(&[]).await;
    r.expect_code(2);
    let all = r.all();
    assert!(
        all.contains(&format!("inventory.toml:{line}:"))
            && all.contains("providers.p0.bootstrap.client_secret"),
        "{all}"
    );
    assert!(!all.contains(&literal), "the literal is echoed");
    assert!(w.records().await.is_empty());
}

// ---- transport ------------------------------------------------------------------------------

/// A CA and a server certificate for 127.0.0.1, made for this test.
struct TestPki {
    ca_pem: String,
    server: rustls::ServerConfig,
}

fn pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "rekey hardening test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der());
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf_cert.der().clone()], key.into())
    .unwrap();
    TestPki {
        ca_pem: ca_cert.pem(),
        server,
    }
}

/// A TLS front for a plain loopback server (the emulator, OpenBao), with the test CA's
/// certificate; it lives as long as the test's runtime.
async fn tls_front(target: SocketAddr, server: rustls::ServerConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut up) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });
    addr
}

/// A provider behind TLS with a private CA: with `ca_cert` rekey checks and rotates through it;
/// without, it stops before any change with an error that says the certificate is not trusted.
#[tokio::test]
async fn provider_tls_with_a_private_ca() {
    let w = World::new(1).await;
    let pki = pki();
    std::fs::write(w.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let front = tls_front(w.emu.addr(), pki.server).await;
    let https = format!("https://127.0.0.1:{}", front.port());
    let without = format!("{}\n{}", w.header(), slot()).replacen(
        &format!("url = \"{}\"", w.emu.url()),
        &format!("url = \"{https}\""),
        1,
    );
    let with = without.replacen(
        &format!("url = \"{https}\"\n"),
        &format!("url = \"{https}\"\nca_cert = \"ca.pem\"\n"),
        1,
    );
    assert_ne!(with, without);

    w.inventory_raw(&without);
    let r = w.apply(&[]).await;
    assert_ne!(r.code, Some(0), "{}", r.all());
    assert!(
        r.all().contains("TLS certificate is not trusted") && r.all().contains("ca_cert"),
        "{}",
        r.all()
    );
    assert!(w.records().await.is_empty());
    assert_eq!(w.platform_clients(&w.tenants[0].id).await.len(), 1);

    w.inventory_raw(&with);
    w.rekey(&["check", "-c", "inventory.toml"])
        .await
        .expect_code(0);
    w.apply(&[]).await.expect_code(0);
    w.assert_consistent(&["s1"]).await;
}

/// Vault behind TLS with a private CA: the same; and the system's CA store (`SSL_CERT_FILE`)
/// is not trusted in its place.
#[tokio::test]
async fn vault_tls_with_a_private_ca() {
    let w = World::new(1).await;
    let bao = OpenBao::start().await;
    bao.put_policy("rekey", EXAMPLE_POLICY).await;
    let token = bao.token(&["rekey"], "1h").await;
    let token_file = w.path().join("vault-token");
    std::fs::write(&token_file, &token).unwrap();
    chmod(&token_file, 0o600);
    let pki = pki();
    std::fs::write(w.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let bao_addr: SocketAddr = bao.addr.trim_start_matches("http://").parse().unwrap();
    let front = tls_front(bao_addr, pki.server).await;
    let prefix = format!("rekey/tls-{}/", random_hex(8));
    let section = |ca: &str| {
        format!(
            "[backends.vault]\ntype = \"vault\"\naddress = \"https://127.0.0.1:{}\"\n{ca}path_prefix = \"{prefix}\"\n\
             auth = {{ method = \"token\", token = {{ file = \"vault-token\" }} }}\ntimeout = \"10s\"\n",
            front.port()
        )
    };
    w.inventory_raw(&format!(
        "{}\n{}",
        w.header_with_backend("vault", &section("")),
        slot()
    ));
    let r = w.rekey(&["check", "-c", "inventory.toml"]).await;
    assert_ne!(r.code, Some(0), "{}", r.all());
    assert!(
        r.all().contains("TLS certificate is not trusted") && r.all().contains("ca_cert"),
        "{}",
        r.all()
    );
    w.apply(&[]).await;
    assert_eq!(
        w.platform_clients(&w.tenants[0].id).await.len(),
        1,
        "no client made"
    );
    // Vault trusts the roots built into rekey (as the providers do) and `ca_cert`, never the
    // system store: a CA in the OpenSSL-style store variables does not make it trusted.
    let empty = w.path().join("no-certs");
    std::fs::create_dir_all(&empty).unwrap();
    let ca = w.path().join("ca.pem");
    let r = w
        .rekey_env(
            &["check", "-c", "inventory.toml"],
            &[
                ("SSL_CERT_FILE", ca.to_str().unwrap()),
                ("SSL_CERT_DIR", empty.to_str().unwrap()),
            ],
        )
        .await;
    assert_ne!(r.code, Some(0), "{}", r.all());
    assert!(
        r.all().contains("TLS certificate is not trusted"),
        "{}",
        r.all()
    );

    w.inventory_raw(&format!(
        "{}\n{}",
        w.header_with_backend("vault", &section("ca_cert = \"ca.pem\"\n")),
        slot()
    ));
    w.rekey(&["check", "-c", "inventory.toml"])
        .await
        .expect_code(0);
    w.apply(&[]).await.expect_code(0);
    // What a consumer reads, through OpenBao's own API.
    let (status, body) = bao
        .api("GET", &format!("secret/data/{prefix}s1"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"]["data"];
    let (id, secret) = (
        data["client_id"].as_str().unwrap(),
        data["client_secret"].as_str().unwrap(),
    );
    assert!(w.token_ok(id, secret).await, "the stored pair works");
}

/// Plain http:// is refused to anything but loopback, for providers and Vault: exit 2 before
/// any network call.
#[tokio::test]
async fn plain_http_only_to_loopback() {
    let w = World::new(1).await;
    let base = format!("{}\n{}", w.header(), slot());
    for (from, to, key) in [
        (
            format!("url = \"{}\"", w.emu.url()),
            "url = \"http://10.11.12.13:8080\"".to_string(),
            "providers.p0.url",
        ),
        (
            "backend = \"local\"".to_string(),
            "backend = \"v\"\n\n[backends.v]\ntype = \"vault\"\naddress = \"http://vault.example:8200\"\n\
             auth = { method = \"token\", token = { env = \"NO_SUCH_TOKEN\" } }"
                .to_string(),
            "backends.v.address",
        ),
    ] {
        w.inventory_raw(&base.replacen(&from, &to, 1));
        let r = w.rekey(&["plan", "-c", "inventory.toml"]).await;
        r.expect_code(2);
        assert!(
            r.stderr.contains(key) && r.stderr.contains("only to loopback"),
            "{}",
            r.stderr
        );
    }
}

/// A server that answers every request with a body of `size` bytes of JSON.
async fn big_answer_server(size: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = tcp.read(&mut buf).await;
                let body = format!("{{\"access_token\": \"{}\"}}", "a".repeat(size));
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.write_all(body.as_bytes()).await;
            });
        }
    });
    addr
}

/// Oversized answers are refused with a clear error: a provider's (token endpoint) and an exec
/// plugin's stdout.
#[tokio::test]
async fn oversized_answers_are_refused() {
    let w = World::new(1).await;
    let big = big_answer_server(5 * 1024 * 1024).await;
    let text = format!("{}\n{}", w.header(), slot()).replacen(
        &format!("url = \"{}\"", w.emu.url()),
        &format!("url = \"http://{big}\""),
        1,
    );
    w.inventory_raw(&text);
    let r = w.rekey(&["check", "-c", "inventory.toml"]).await;
    assert_ne!(r.code, Some(0));
    assert!(r.all().contains("larger than 4194304 bytes"), "{}", r.all());

    let plugin = w.path().join("big.sh");
    std::fs::write(
        &plugin,
        "#!/bin/sh\ncat > /dev/null\nhead -c 5000000 /dev/zero | tr '\\0' 'a'\n",
    )
    .unwrap();
    chmod(&plugin, 0o700);
    w.inventory_raw(&w.header_with_backend(
        "big",
        "[backends.big]\ntype = \"exec\"\ncommand = [\"./big.sh\"]\ntimeout = \"20s\"\n",
    ));
    let r = w.rekey(&["check", "-c", "inventory.toml"]).await;
    assert_ne!(r.code, Some(0));
    assert!(r.all().contains("larger than 4194304 bytes"), "{}", r.all());
}

// ---- the leak scan --------------------------------------------------------------------------

fn scan(registry: &Path, files: &[&Path]) -> std::process::Output {
    std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/scan-secrets.sh"
    ))
    .arg(registry)
    .args(files)
    .output()
    .unwrap()
}

/// `rekey demo` at trace level (every crate) records every secret it makes in the registry
/// (emulator seeds, created and rotated clients); the scan finds none of them in its output,
/// and finds a planted one without printing it.
#[tokio::test]
async fn the_leak_scan_finds_planted_secrets_and_none_in_a_trace_level_demo() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("secrets");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rekey"))
        .args(["demo", "--dir"])
        .arg(dir.path().join("demo"))
        .env("RUST_LOG", "trace")
        .env("REKEY_LOG_FORMAT", "json")
        .env("REKEY_SECRET_REGISTRY", &registry)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), out)
        .await
        .expect("the demo finishes")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&registry).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the registry is private");
    let recorded = std::fs::read_to_string(&registry).unwrap();
    assert!(
        recorded.lines().count() >= 13,
        "the demo's secrets were recorded"
    );
    let log = dir.path().join("demo.log");
    std::fs::write(&log, [out.stdout, out.stderr].concat()).unwrap();
    assert!(
        std::fs::metadata(&log).unwrap().len() > 10_000,
        "trace output"
    );

    let clean = scan(&registry, &[&log]);
    let text = String::from_utf8_lossy(&clean.stdout);
    assert!(
        clean.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    assert!(text.contains("secrets checked in 1 files"), "{text}");

    let planted = recorded.lines().next().unwrap().to_string();
    let leaky = dir.path().join("leaky.log");
    std::fs::write(&leaky, format!("a log line with {planted} in it\n")).unwrap();
    let hit = scan(&registry, &[&log, &leaky]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&hit.stdout),
        String::from_utf8_lossy(&hit.stderr)
    );
    assert_eq!(hit.status.code(), Some(1), "{all}");
    let fp = rekey::secret::fingerprint(planted.as_bytes());
    assert!(
        all.contains(&format!("sha256:{fp}")) && all.contains("leaky.log"),
        "{all}"
    );
    assert!(!all.contains(&planted), "the scan printed the secret");
}
