//! An OpenBao dev server for tests (docs/src/testing.md): the real `bao` binary from the project
//! venv (`scripts/setup-python.sh`), on 127.0.0.1, killed by pid when the handle drops. Helpers set
//! up policies, tokens, AppRole and Kubernetes auth (with a loopback TokenReview stand-in).

#![allow(dead_code)]

use base64::Engine as _;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The least-privilege policy docs/src/backends/vault.md documents (and the tests use).
pub const EXAMPLE_POLICY: &str = include_str!("../../examples/vault-policy.hcl");

/// Any PEM certificate: Kubernetes auth requires one once `disable_local_ca_jwt` is set.
const K8S_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBjzCCATWgAwIBAgIUEYA1GWbEpjUubuWVhyaBJVdyR8IwCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRcmVrZXktdGVzdC1rOHMtY2EwIBcNMjYxMTIzMDE1MjMzWhgP
MjEyNjEwMzAwMTUyMzNaMBwxGjAYBgNVBAMMEXJla2V5LXRlc3QtazhzLWNhMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEDI0O3vv8fC1l8qadWlJbvn14WjkwZ1ue
mcfqQ4Au3veyGhGmyiglpVnykk/WjGEQABCiJk+vU0yEgAvViDG/B6NTMFEwHQYD
VR0OBBYEFFcscvs7Qb3JdQzODLTKe8yR1vYEMB8GA1UdIwQYMBaAFFcscvs7Qb3J
dQzODLTKe8yR1vYEMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIg
BTWlI86/zvPh+t49bZWEzvgjjnqphcCDoazNNVUV6PMCIQCmAyw37VbIIaElaMjN
MztazPENz4whC6fxNm4Aobmuqg==
-----END CERTIFICATE-----
";

pub fn random_hex(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap())
        .collect()
}

/// `<repo>/.venv/bin/bao`, or a failure telling how to get it.
pub fn bao_bin() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/bao");
    assert!(
        p.exists(),
        "OpenBao is not installed at {}: run scripts/setup-python.sh",
        p.display()
    );
    p
}

pub struct OpenBao {
    pub addr: String,
    /// The dev root token (random per server).
    pub root: String,
    child: Option<Child>,
}

/// A port whose successor is free too (the dev server's cluster listener takes port + 1).
fn free_port_pair() -> u16 {
    loop {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < 65535 && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

impl OpenBao {
    pub async fn start() -> OpenBao {
        let bin = bao_bin();
        for _ in 0..3 {
            let port = free_port_pair();
            let root = format!("root-{}", random_hex(24));
            // The leak scan (tests/common/secrets.rs) checks test output for these tokens too.
            rekey::secret::record_for_leak_scan(&root);
            let mut cmd = Command::new(&bin);
            cmd.args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={root}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
                "-dev-no-store-token",
            ])
            .env_remove("VAULT_ADDR")
            .env_remove("BAO_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
            // The server dies with the test process even if it is killed.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd.spawn().expect("start bao");
            let mut bao = OpenBao {
                addr: format!("http://127.0.0.1:{port}"),
                root,
                child: Some(child),
            };
            if bao.wait_ready(Duration::from_secs(20)).await {
                return bao;
            }
            bao.kill();
        }
        panic!("the OpenBao dev server did not become ready");
    }

    async fn wait_ready(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let http = rekey::http::client();
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false; // exited (port taken?)
            }
            if let Ok(r) = http
                .get(format!("{}/v1/sys/health", self.addr))
                .send()
                .await
                && r.status().is_success()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Kills the server by pid (its in-memory data is gone with it).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A root-token API call; returns the status and the JSON body (Null when empty).
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api_as(&self.root, method, path, body).await
    }

    pub async fn api_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = rekey::http::client()
            .request(m, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    #[track_caller]
    fn ok(status: u16, body: &Value, what: &str) {
        assert!((200..300).contains(&status), "{what}: {status} {body}");
    }

    pub async fn put_policy(&self, name: &str, hcl: &str) {
        let (s, b) = self
            .api(
                "PUT",
                &format!("sys/policies/acl/{name}"),
                Some(json!({ "policy": hcl })),
            )
            .await;
        Self::ok(s, &b, "write policy");
    }

    /// A fresh token with `policies` (plus `default`).
    pub async fn token(&self, policies: &[&str], ttl: &str) -> String {
        let (s, b) = self
            .api(
                "POST",
                "auth/token/create",
                Some(json!({ "policies": policies, "ttl": ttl, "renewable": true })),
            )
            .await;
        Self::ok(s, &b, "create token");
        let token = b["auth"]["client_token"].as_str().unwrap().to_string();
        rekey::secret::record_for_leak_scan(&token);
        token
    }

    /// Enables AppRole (once) and makes role `role` with `policies`; returns (role_id, secret_id).
    pub async fn approle(&self, role: &str, policies: &[&str]) -> (String, String) {
        let _ = self
            .api(
                "POST",
                "sys/auth/approle",
                Some(json!({ "type": "approle" })),
            )
            .await;
        let (s, b) = self
            .api(
                "POST",
                &format!("auth/approle/role/{role}"),
                Some(json!({ "token_policies": policies, "token_ttl": "10m" })),
            )
            .await;
        Self::ok(s, &b, "approle role");
        let (s, b) = self
            .api("GET", &format!("auth/approle/role/{role}/role-id"), None)
            .await;
        Self::ok(s, &b, "role id");
        let role_id = b["data"]["role_id"].as_str().unwrap().to_string();
        let (s, b) = self
            .api("POST", &format!("auth/approle/role/{role}/secret-id"), None)
            .await;
        Self::ok(s, &b, "secret id");
        let secret_id = b["data"]["secret_id"].as_str().unwrap().to_string();
        rekey::secret::record_for_leak_scan(&secret_id);
        (role_id, secret_id)
    }

    /// Enables Kubernetes auth against a loopback TokenReview stand-in that accepts one JWT;
    /// makes role `role` with `policies`. Returns the JWT (as a pod would have it) and the
    /// stand-in (keep it alive while logging in).
    pub async fn kubernetes(&self, role: &str, policies: &[&str]) -> (String, TokenReview) {
        let (ns, sa, uid) = ("rekey-ns", "rekey", uuid::Uuid::now_v7().to_string());
        let jwt = service_account_jwt(ns, sa, &uid);
        rekey::secret::record_for_leak_scan(&jwt);
        let review =
            TokenReview::start(jwt.clone(), format!("system:serviceaccount:{ns}:{sa}"), uid).await;
        let _ = self
            .api(
                "POST",
                "sys/auth/kubernetes",
                Some(json!({ "type": "kubernetes" })),
            )
            .await;
        let (s, b) = self
            .api(
                "POST",
                "auth/kubernetes/config",
                Some(json!({
                    "kubernetes_host": review.url,
                    "kubernetes_ca_cert": K8S_CA_PEM,
                    "disable_local_ca_jwt": true,
                })),
            )
            .await;
        Self::ok(s, &b, "kubernetes config");
        let (s, b) = self
            .api(
                "POST",
                &format!("auth/kubernetes/role/{role}"),
                Some(json!({
                    "bound_service_account_names": [sa],
                    "bound_service_account_namespaces": [ns],
                    "token_policies": policies,
                    "token_ttl": "10m",
                })),
            )
            .await;
        Self::ok(s, &b, "kubernetes role");
        (jwt, review)
    }

    /// `bao <args>` against this server with `token`; returns (exit code, stdout, stderr).
    pub async fn cli(&self, token: &str, args: &[&str]) -> (Option<i32>, String, String) {
        let out = tokio::process::Command::new(bao_bin())
            .args(args)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", token)
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .output()
            .await
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A legacy service-account JWT: Vault does not check the signature (the TokenReview does),
/// only that the claims parse.
fn service_account_jwt(ns: &str, sa: &str, uid: &str) -> String {
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let header = json!({ "alg": "RS256", "kid": "test" });
    let claims = json!({
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": ns,
        "kubernetes.io/serviceaccount/secret.name": format!("{sa}-token"),
        "kubernetes.io/serviceaccount/service-account.name": sa,
        "kubernetes.io/serviceaccount/service-account.uid": uid,
        "sub": format!("system:serviceaccount:{ns}:{sa}"),
    });
    format!(
        "{}.{}.{}",
        b64(&header),
        b64(&claims),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_hex(32))
    )
}

/// The Kubernetes API's TokenReview, on loopback: authenticates exactly one JWT.
pub struct TokenReview {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl TokenReview {
    async fn start(jwt: String, username: String, uid: String) -> TokenReview {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (jwt, username, uid) = (jwt.clone(), username.clone(), uid.clone());
                tokio::spawn(async move {
                    // One request per connection (we answer Connection: close).
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let body = loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let len = text[..end]
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                break buf[end + 4..end + 4 + len].to_vec();
                            }
                        }
                    };
                    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let ok = req["spec"]["token"].as_str() == Some(jwt.as_str());
                    let status = if ok {
                        json!({ "authenticated": true, "user": { "username": username, "uid": uid } })
                    } else {
                        json!({ "authenticated": false })
                    };
                    let out = json!({
                        "apiVersion": "authentication.k8s.io/v1",
                        "kind": "TokenReview",
                        "status": status,
                    })
                    .to_string();
                    let resp = format!(
                        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}",
                        out.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        TokenReview { url, task }
    }
}

impl Drop for TokenReview {
    fn drop(&mut self) {
        self.task.abort();
    }
}
