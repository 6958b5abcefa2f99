//! The vault backend against a real OpenBao dev server: the shared conformance suite through
//! each auth method (token bound to the example least-privilege policy, AppRole, Kubernetes),
//! then what only Vault has: a policy that forbids the path, the server going down, and what a
//! consumer sees with the standard CLI (`bao kv get`).

mod conformance;
mod openbao;

use async_trait::async_trait;
use conformance::backend::{self, Harness, credential, record};
use openbao::{EXAMPLE_POLICY, OpenBao, TokenReview, random_hex};
use rekey::backend::Backend;
use rekey::backend::vault::{VaultAuth, VaultBackend, VaultBackendConfig};
use rekey::config::ValueRef;
use rekey::error::ErrorKind;
use rekey::record::{OpKind, Operation, Phase};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct VaultHarness {
    bao: OpenBao,
    auth: VaultAuth,
    dir: tempfile::TempDir,
    /// Backend name -> its path prefix, for `write_foreign`.
    prefixes: Mutex<HashMap<String, String>>,
    _review: Option<TokenReview>,
}

fn config(bao: &OpenBao, name: &str, prefix: &str, auth: VaultAuth) -> VaultBackendConfig {
    VaultBackendConfig {
        name: name.to_string(),
        address: bao.addr.clone(),
        mount: "secret".into(),
        path_prefix: prefix.to_string(),
        namespace: None,
        ca_cert: None,
        auth,
        timeout: Duration::from_secs(10),
    }
}

fn private_file(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let p = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    p
}

impl VaultHarness {
    async fn new(method: &str) -> VaultHarness {
        let bao = OpenBao::start().await;
        bao.put_policy("rekey", EXAMPLE_POLICY).await;
        let dir = tempfile::tempdir().unwrap();
        let mut review = None;
        let auth = match method {
            "token" => {
                let token = bao.token(&["rekey"], "1h").await;
                VaultAuth::Token {
                    token: ValueRef::File(private_file(dir.path(), "token", &token)),
                }
            }
            "approle" => {
                let (role_id, secret_id) = bao.approle("rekey", &["rekey"]).await;
                VaultAuth::AppRole {
                    role_id: ValueRef::Literal(role_id),
                    secret_id: ValueRef::File(private_file(dir.path(), "secret-id", &secret_id)),
                    mount: "approle".into(),
                }
            }
            "kubernetes" => {
                let (jwt, r) = bao.kubernetes("rekey", &["rekey"]).await;
                review = Some(r);
                VaultAuth::Kubernetes {
                    role: "rekey".into(),
                    jwt_file: private_file(dir.path(), "sa-token", &jwt),
                    mount: "kubernetes".into(),
                }
            }
            other => panic!("{other}"),
        };
        VaultHarness {
            bao,
            auth,
            dir,
            prefixes: Mutex::new(HashMap::new()),
            _review: review,
        }
    }

    fn vault_backend(&self) -> (VaultBackend, String) {
        let name = format!("conf-{}", random_hex(8));
        // Under `rekey/`, where the example policy grants access.
        let prefix = format!("rekey/{name}/");
        self.prefixes
            .lock()
            .unwrap()
            .insert(name.clone(), prefix.clone());
        let cfg = config(&self.bao, &name, &prefix, self.auth.clone());
        (VaultBackend::open(&cfg).unwrap(), prefix)
    }
}

#[async_trait]
impl Harness for VaultHarness {
    async fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(self.vault_backend().0)
    }

    async fn write_foreign(&self, backend: &dyn Backend, slot: &str) {
        let prefix = self.prefixes.lock().unwrap()[backend.name()].clone();
        // A human's secret at the consumer path, and junk in rekey's state folder.
        for path in [format!("{prefix}{slot}"), format!("{prefix}.rekey/{slot}")] {
            let (s, b) = self
                .bao
                .api(
                    "POST",
                    &format!("secret/data/{path}"),
                    Some(json!({ "data": { "password": "not rekey's" } })),
                )
                .await;
            assert_eq!(s, 200, "{b}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_with_a_token_bound_to_the_example_policy() {
    let h = VaultHarness::new("token").await;
    assert_eq!(backend::run_all(&h).await, 11);
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_with_approle() {
    let h = VaultHarness::new("approle").await;
    assert_eq!(backend::run_all(&h).await, 11);
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_with_kubernetes_auth() {
    let h = VaultHarness::new("kubernetes").await;
    assert_eq!(backend::run_all(&h).await, 11);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_kubernetes_jwt_is_refused_clearly() {
    let h = VaultHarness::new("kubernetes").await;
    let jwt = private_file(h.dir.path(), "other-token", "aaaa.bbbb.cccc");
    let cfg = config(
        &h.bao,
        "k8s-wrong",
        "rekey/x/",
        VaultAuth::Kubernetes {
            role: "rekey".into(),
            jwt_file: jwt,
            mount: "kubernetes".into(),
        },
    );
    let b = VaultBackend::open(&cfg).unwrap();
    let e = b.check().await.expect_err("login must fail");
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Forbidden | ErrorKind::Unauthorized | ErrorKind::Invalid
        ),
        "{e:?}"
    );
    assert!(e.message().contains("kubernetes login"), "{e}");
    assert!(!e.message().contains("aaaa"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_that_forbids_the_path_is_forbidden_with_a_clear_message() {
    let bao = OpenBao::start().await;
    bao.put_policy(
        "elsewhere",
        r#"path "secret/data/elsewhere/*" { capabilities = ["create", "read", "update"] }"#,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = bao.token(&["elsewhere"], "1h").await;
    let auth = VaultAuth::Token {
        token: ValueRef::File(private_file(dir.path(), "token", &token)),
    };
    let b = VaultBackend::open(&config(&bao, "denied", "rekey/denied/", auth)).unwrap();
    let mut rec = record("alpha");
    rec.current = Some(credential(1));
    rec.generation = 1;
    let e = b.write("alpha", &rec, None).await.expect_err("forbidden");
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e:?}");
    assert!(
        e.message().contains("403") && e.message().contains("secret/rekey/denied/alpha"),
        "{e}"
    );
    let e = b.read("alpha").await.expect_err("forbidden");
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e:?}");
    let e = b.check().await.expect_err("check sees the policy");
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e:?}");
    assert!(e.message().contains("vault-policy.hcl"), "{e}");
    for m in [e.message(), &format!("{e:?}")] {
        assert!(!m.contains(&token), "the token leaked: {m}");
    }
    // Nothing was written.
    let (s, _) = bao.api("GET", "secret/data/rekey/denied/alpha", None).await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_down_is_a_clear_unavailable_and_check_reports_it() {
    let mut h = VaultHarness::new("token").await;
    let (b, _) = h.vault_backend();
    let mut rec = record("alpha");
    rec.generation = 1;
    rec.current = Some(credential(1));
    let v = b.write("alpha", &rec, None).await.unwrap();
    b.check().await.unwrap();
    h.bao.kill();
    // The shared client still pools the connections the server just closed; until their
    // tasks have read the close, a request may go out on one and be cut mid-way, which is
    // rightly "maybe applied". Letting them read it makes this the case under test: a new
    // connection, refused, so nothing was sent.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    rec.pending = Some(credential(2));
    let e = b.write("alpha", &rec, Some(v)).await.expect_err("down");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e:?}");
    assert!(!e.maybe_applied(), "connection refused: nothing was sent");
    assert!(e.message().contains("cannot connect to Vault"), "{e}");
    let e = b.read("alpha").await.expect_err("down");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e:?}");
    let e = b.check().await.expect_err("down");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e:?}");
    assert!(
        e.message().contains(&format!("backend {}", b.name())),
        "{e}"
    );
}

/// `bao kv get -format=json` of the consumer entry: (client_id, client_secret, generation,
/// custom_metadata.managed_by).
async fn consumer_view(bao: &OpenBao, token: &str, path: &str) -> (String, String, u64, String) {
    let (code, out, err) = bao
        .cli(token, &["kv", "get", "-format=json", "-mount=secret", path])
        .await;
    assert_eq!(code, Some(0), "bao kv get failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let d = &v["data"]["data"];
    (
        d["client_id"].as_str().unwrap().to_string(),
        d["client_secret"].as_str().unwrap().to_string(),
        d["generation"].as_u64().unwrap(),
        v["data"]["metadata"]["custom_metadata"]["managed_by"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn bao_kv_get_shows_the_current_pair_and_never_the_pending_one() {
    let h = VaultHarness::new("token").await;
    let (b, prefix) = h.vault_backend();
    // Consumers read consumer entries only: `+` is one path segment, so `.rekey/<slot>` (rekey's
    // state, pending secrets included) is out of reach.
    h.bao
        .put_policy(
            "consumer",
            &format!(r#"path "secret/data/{prefix}+" {{ capabilities = ["read"] }}"#),
        )
        .await;
    let reader = h.bao.token(&["consumer"], "1h").await;
    let path = format!("{prefix}alpha");

    let mut rec = record("alpha");
    rec.generation = 1;
    rec.current = Some(credential(1));
    let mut v = b.write("alpha", &rec, None).await.unwrap();
    let g1 = rec.current.clone().unwrap();
    let seen = consumer_view(&h.bao, &reader, &path).await;
    assert_eq!(
        seen,
        (
            g1.client_id.clone(),
            g1.secret.expose().to_string(),
            1,
            "rekey".into()
        )
    );

    // A rotation in flight: the pending pair is stored, consumers still see g1.
    rec.generation = 2;
    rec.pending = Some(credential(2));
    rec.op = Some(Operation {
        id: uuid::Uuid::now_v7(),
        kind: OpKind::Rotate,
        phase: Phase::Pending,
        generation: 2,
        started_at: chrono::Utc::now(),
        verify_failures: 0,
        client_name: None,
    });
    v = b.write("alpha", &rec, Some(v)).await.unwrap();
    let seen = consumer_view(&h.bao, &reader, &path).await;
    assert_eq!(seen.0, g1.client_id, "pending is never shown to consumers");
    assert_eq!(seen.2, 1);
    let (code, _, _) = h
        .bao
        .cli(
            &reader,
            &[
                "kv",
                "get",
                "-mount=secret",
                &format!("{prefix}.rekey/alpha"),
            ],
        )
        .await;
    assert_ne!(code, Some(0), "consumers cannot read rekey's state");

    // Promote: consumers see g2.
    rec.current = rec.pending.take();
    rec.op = None;
    b.write("alpha", &rec, Some(v)).await.unwrap();
    let g2 = rec.current.clone().unwrap();
    let seen = consumer_view(&h.bao, &reader, &path).await;
    assert_eq!(
        (seen.0, seen.1, seen.2),
        (g2.client_id.clone(), g2.secret.expose().to_string(), 2)
    );

    // Retire: both entries soft-deleted, metadata (and the managed_by mark) kept.
    let v = b.read("alpha").await.unwrap().unwrap().version;
    b.delete("alpha", v).await.unwrap();
    let (_, out, _) = h
        .bao
        .cli(
            &reader,
            &["kv", "get", "-format=json", "-mount=secret", &path],
        )
        .await;
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    assert!(
        shown["data"]["data"].is_null(),
        "a retired slot shows no pair: {}",
        shown["data"]["metadata"]
    );
    let (s, m) = h
        .bao
        .api("GET", &format!("secret/metadata/{path}"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(m["data"]["custom_metadata"]["managed_by"], "rekey");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_writer_never_rolls_the_consumer_entry_back() {
    let h = VaultHarness::new("token").await;
    let (b, prefix) = h.vault_backend();
    let mut rec = record("alpha");
    rec.generation = 1;
    rec.current = Some(credential(1));
    let v1 = b.write("alpha", &rec, None).await.unwrap();
    let mut newer = rec.clone();
    newer.generation = 2;
    newer.current = Some(credential(2));
    b.write("alpha", &newer, Some(v1)).await.unwrap();
    // A writer still holding v1 and g1 loses, and consumers keep g2.
    rec.last = None;
    let e = b.write("alpha", &rec, Some(v1)).await.expect_err("stale");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let (s, d) = h
        .bao
        .api("GET", &format!("secret/data/{prefix}alpha"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(d["data"]["data"]["generation"], 2);
}

/// Not an assertion: prints how long one rotation's writes take (three CAS writes, as the
/// engine does them: the operation with the lease, the pending pair, the promotion that hands
/// the lease back; the old pair's removal after its grace is a later run's). Run with --nocapture.
#[tokio::test(flavor = "multi_thread")]
async fn rotation_write_latency() {
    let h = VaultHarness::new("token").await;
    let (b, _) = h.vault_backend();
    let file_dir = tempfile::tempdir().unwrap();
    let key = file_dir.path().join("id.key");
    rekey::backend::file::generate_identity(&key).unwrap();
    let file = rekey::backend::file::FileBackend::open(&rekey::config::FileBackendConfig {
        name: "file".into(),
        path: file_dir.path().join("store"),
        identity: ValueRef::File(key),
        recipients: vec![],
    })
    .unwrap();
    for (label, backend) in [
        ("vault", &b as &dyn Backend),
        ("file", &file as &dyn Backend),
    ] {
        const ROTATIONS: usize = 20;
        let mut total = Duration::ZERO;
        for i in 0..ROTATIONS {
            let slot = format!("lat{i}");
            let mut rec = record(&slot);
            rec.generation = 1;
            rec.current = Some(credential(1));
            let mut v = backend.write(&slot, &rec, None).await.unwrap();
            let start = Instant::now();
            rec.generation = 2;
            rec.op = Some(Operation {
                id: uuid::Uuid::now_v7(),
                kind: OpKind::Rotate,
                phase: Phase::Creating,
                generation: 2,
                started_at: chrono::Utc::now(),
                verify_failures: 0,
                client_name: None,
            });
            v = backend.write(&slot, &rec, Some(v)).await.unwrap();
            rec.pending = Some(credential(2));
            rec.op.as_mut().unwrap().phase = Phase::Pending;
            v = backend.write(&slot, &rec, Some(v)).await.unwrap();
            let old = rec.current.take().unwrap();
            rec.current = rec.pending.take();
            rec.draining.push(rekey::record::Draining {
                credential: old,
                delete_after: chrono::Utc::now(),
                hold: None,
            });
            rec.op = None;
            backend.write(&slot, &rec, Some(v)).await.unwrap();
            total += start.elapsed();
        }
        eprintln!(
            "latency: {label}: one rotation's 3 CAS writes take {:.1} ms on average ({ROTATIONS} rotations)",
            total.as_secs_f64() * 1000.0 / ROTATIONS as f64
        );
    }
}
