//! `[backends.NAME]` with `type = "vault"`: the settings and their parser.

use crate::backend::common::valid_string;
use crate::check::Checker;
use crate::check::join;
use crate::check::tree::Table;
use crate::check::values::ValueRef;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

const DEFAULT_JWT_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// `type = "vault"`: HashiCorp Vault or OpenBao, KV v2.
#[derive(Clone)]
pub struct VaultBackendConfig {
    pub name: String,
    /// `https://vault.example:8200` (plain http to loopback only).
    pub address: String,
    /// KV v2 mount (default `secret`).
    pub mount: String,
    /// Prefix of the consumer entries: empty or ending in `/` (default `rekey/`).
    pub path_prefix: String,
    /// Vault Enterprise namespace (`X-Vault-Namespace`).
    pub namespace: Option<String>,
    /// PEM file of the CA that signed the server's certificate (added to the system roots).
    pub ca_cert: Option<PathBuf>,
    pub auth: VaultAuth,
    /// Timeout of each request (default 30s).
    pub timeout: Duration,
}

/// How rekey logs in to Vault.
#[derive(Clone, PartialEq, Eq)]
pub enum VaultAuth {
    /// `{ method = "token", token = { env = ... } | { file = ... } }`; renewed when near expiry.
    Token { token: ValueRef },
    /// `{ method = "approle", role_id = ..., secret_id = { ... }, mount = "approle" }`.
    AppRole {
        role_id: ValueRef,
        secret_id: ValueRef,
        mount: String,
    },
    /// `{ method = "kubernetes", role = "rekey", jwt_file = ..., mount = "kubernetes" }`.
    Kubernetes {
        role: String,
        jwt_file: PathBuf,
        mount: String,
    },
}

impl VaultAuth {
    pub fn method(&self) -> &'static str {
        match self {
            VaultAuth::Token { .. } => "token",
            VaultAuth::AppRole { .. } => "approle",
            VaultAuth::Kubernetes { .. } => "kubernetes",
        }
    }
}

// Hand-written: references print as `env NAME` / `file PATH`, literals never print.
impl fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultAuth::Token { token } => f
                .debug_struct("Token")
                .field("token", &token.to_string())
                .finish(),
            VaultAuth::AppRole {
                role_id,
                secret_id,
                mount,
            } => f
                .debug_struct("AppRole")
                .field("role_id", &role_id.to_string())
                .field("secret_id", &secret_id.to_string())
                .field("mount", mount)
                .finish(),
            VaultAuth::Kubernetes {
                role,
                jwt_file,
                mount,
            } => f
                .debug_struct("Kubernetes")
                .field("role", role)
                .field("jwt_file", jwt_file)
                .field("mount", mount)
                .finish(),
        }
    }
}

impl fmt::Debug for VaultBackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultBackendConfig")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("mount", &self.mount)
            .field("path_prefix", &self.path_prefix)
            .field("namespace", &self.namespace)
            .field("ca_cert", &self.ca_cert)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl VaultBackendConfig {
    /// What an unusable `[backends.NAME]` stands in as while the rest is checked.
    pub(crate) fn placeholder(name: &str) -> Self {
        VaultBackendConfig {
            name: name.to_string(),
            address: String::new(),
            mount: "secret".into(),
            path_prefix: "rekey/".into(),
            namespace: None,
            ca_cert: None,
            auth: VaultAuth::Token {
                token: ValueRef::Env(String::new()),
            },
            timeout: Duration::from_secs(30),
        }
    }
}

/// A KV path segment list: non-empty segments of letters, digits, `-`, `_`, `.`; no `..`.
fn is_kv_path(p: &str) -> bool {
    p.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    })
}

/// Parses `[backends.NAME]` with `type = "vault"`, recording every problem in `c`.
pub(crate) fn parse_config(
    c: &mut Checker,
    name: &str,
    t: &Table,
    path: &str,
) -> VaultBackendConfig {
    let mut cfg = VaultBackendConfig::placeholder(name);
    c.known_keys(
        t,
        path,
        &[
            "type",
            "address",
            "mount",
            "path_prefix",
            "namespace",
            "ca_cert",
            "auth",
            "timeout",
        ],
    );
    match c.string(t, path, "address") {
        Some((a, e)) => match address(a) {
            Ok(a) => cfg.address = a,
            Err(msg) => c.err(e.line, join(path, "address"), msg),
        },
        None if t.get("address").is_none() => c.missing(
            t,
            path,
            "address",
            " (the Vault server, e.g. address = \"https://vault.example:8200\")",
        ),
        None => {}
    }
    if let Some(m) = valid_string(c, t, path, "mount", is_kv_path, |m| {
        format!("\"{m}\" is not a KV v2 mount path (e.g. \"secret\" or \"kv/team\")")
    }) {
        cfg.mount = m.to_string();
    }
    let is_folder = |p: &str| p.is_empty() || (p.ends_with('/') && is_kv_path(&p[..p.len() - 1]));
    if let Some(p) = valid_string(c, t, path, "path_prefix", is_folder, |p| {
        format!(
            "\"{p}\" is not a folder: use \"\" or path segments ending in '/' (e.g. \"rekey/\")"
        )
    }) {
        cfg.path_prefix = p.to_string();
    }
    if let Some(ns) = valid_string(
        c,
        t,
        path,
        "namespace",
        |ns| is_kv_path(ns.trim_end_matches('/')),
        |ns| format!("\"{ns}\" is not a Vault namespace path"),
    ) {
        cfg.namespace = Some(ns.trim_end_matches('/').to_string());
    }
    match c.string(t, path, "ca_cert") {
        Some((p, e)) if p.trim().is_empty() => {
            c.err(e.line, join(path, "ca_cert"), "must not be empty")
        }
        Some((p, _)) => cfg.ca_cert = Some(c.base_dir.join(p)),
        None => {}
    }
    if let Some((d, _)) = c.duration(t, path, "timeout", false) {
        cfg.timeout = d;
    }
    let auth_path = join(path, "auth");
    match c.table(t, path, "auth") {
        Some(a) => {
            if let Some(auth) = parse_auth(c, a, &auth_path) {
                cfg.auth = auth;
            }
        }
        None if t.get("auth").is_none() => c.missing(
            t,
            path,
            "auth",
            " (auth = { method = \"token\", token = { env = \"VAULT_TOKEN\" } }, or method = \"approle\" / \"kubernetes\")",
        ),
        None => {}
    }
    cfg
}

fn parse_auth(c: &mut Checker, a: &Table, p: &str) -> Option<VaultAuth> {
    const METHODS: &[&str] = &["token", "approle", "kubernetes"];
    let Some((method, e)) = c.string(a, p, "method") else {
        if a.get("method").is_none() {
            c.missing(a, p, "method", " (one of: token, approle, kubernetes)");
        }
        return None;
    };
    let mount = |c: &mut Checker, default: &str| match c.string(a, p, "mount") {
        Some((m, e)) if !is_kv_path(m) => {
            c.err(
                e.line,
                join(p, "mount"),
                format!("\"{m}\" is not an auth mount path"),
            );
            default.to_string()
        }
        Some((m, _)) => m.to_string(),
        None => default.to_string(),
    };
    let reference = |c: &mut Checker, key: &str, secret: bool, hint: &str| match a.get(key) {
        Some(e) => c.value_ref(e, p, secret),
        None => {
            c.missing(a, p, key, hint);
            ValueRef::Env(String::new())
        }
    };
    match method {
        "token" => {
            c.known_keys(a, p, &["method", "token"]);
            let token = reference(
                c,
                "token",
                true,
                " ({ env = \"VAULT_TOKEN\" } or { file = \"PATH\" })",
            );
            Some(VaultAuth::Token { token })
        }
        "approle" => {
            c.known_keys(a, p, &["method", "role_id", "secret_id", "mount"]);
            let role_id = reference(
                c,
                "role_id",
                false,
                " (the AppRole's role id, or { env = ... } / { file = ... })",
            );
            let secret_id = reference(
                c,
                "secret_id",
                true,
                " ({ env = \"NAME\" } or { file = \"PATH\" })",
            );
            let mount = mount(c, "approle");
            Some(VaultAuth::AppRole {
                role_id,
                secret_id,
                mount,
            })
        }
        "kubernetes" => {
            c.known_keys(a, p, &["method", "role", "jwt_file", "mount"]);
            let role = match c.string(a, p, "role") {
                Some((r, e)) if r.trim().is_empty() => {
                    c.err(e.line, join(p, "role"), "must not be empty");
                    String::new()
                }
                Some((r, _)) => r.to_string(),
                None => {
                    if a.get("role").is_none() {
                        c.missing(
                            a,
                            p,
                            "role",
                            " (the Vault role bound to the service account)",
                        );
                    }
                    String::new()
                }
            };
            let jwt_file = match c.string(a, p, "jwt_file") {
                Some((f, _)) => c.base_dir.join(f),
                None => PathBuf::from(DEFAULT_JWT_FILE),
            };
            let mount = mount(c, "kubernetes");
            Some(VaultAuth::Kubernetes {
                role,
                jwt_file,
                mount,
            })
        }
        other => {
            c.err(
                e.line,
                join(p, "method"),
                format!(
                    "unknown auth method \"{other}\"; known: {}",
                    METHODS.join(", ")
                ),
            );
            None
        }
    }
}

/// `https://...`, or `http://` to a loopback host; no credentials, query or path.
fn address(a: &str) -> std::result::Result<String, String> {
    // Messages show the address without credentials, query or fragment (src/http.rs).
    let shown = crate::http::redact_url(a, crate::http::UrlPart::Path);
    let url = crate::http::endpoint(a)?;
    if url.query().is_some() || url.fragment().is_some() || url.path() != "/" {
        return Err(format!(
            "\"{shown}\" must be the server's base address (no path, query or fragment)"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_rules() {
        assert_eq!(
            address("https://vault.example:8200/").unwrap(),
            "https://vault.example:8200"
        );
        assert!(address("http://127.0.0.1:8200").is_ok());
        assert!(address("http://vault.example:8200").is_err());
        assert!(address("https://vault.example/v1").is_err());
        let e = address("https://u:pw123@vault.example").unwrap_err();
        assert!(!e.contains("pw123"));
    }

    #[test]
    fn kv_paths() {
        assert!(is_kv_path("secret"));
        assert!(is_kv_path("kv/team-a"));
        assert!(!is_kv_path("kv//a"));
        assert!(!is_kv_path("../x"));
        assert!(!is_kv_path(""));
    }

    #[test]
    fn debug_never_shows_literals() {
        let auth = VaultAuth::AppRole {
            role_id: ValueRef::Literal("role-1234".into()),
            secret_id: ValueRef::Env("SID".into()),
            mount: "approle".into(),
        };
        let s = format!("{auth:?}");
        assert!(!s.contains("role-1234"), "{s}");
        assert!(s.contains("env SID"), "{s}");
    }
}
