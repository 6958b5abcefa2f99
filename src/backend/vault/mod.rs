//! `type = "vault"`: HashiCorp Vault / OpenBao KV v2.
//!
//! Layout, per slot, under the KV v2 mount `mount`:
//!
//! - `<path_prefix><slot>`, the **consumer entry**: its latest version is always the current,
//!   verified pair: `client_id`, `client_secret`, `tenant`, `generation`, `rotated_at`, `slot`,
//!   `managed_by = "rekey"`; its `custom_metadata` carries `managed_by = rekey` and `slot` (no
//!   secret ever goes into metadata, which broader policies often may read). A pending pair never
//!   appears here, so `vault kv get <mount>/<path_prefix><slot>` is unambiguous.
//! - `<path_prefix>.rekey/<slot>`, the **state entry**: the whole [`SlotRecord`] (pending pair,
//!   draining pairs, operation, lease) as the secret's data. Its KV version is this backend's
//!   compare-and-set version: every write sends `cas = <version read>` (`cas = 0` for "must not
//!   exist"), so a lost race is Vault's "check-and-set parameter did not match", `Conflict`.
//!
//! A sibling entry rather than `custom_metadata` for the state because the record holds
//! secrets (pending and draining pairs) and metadata is not versioned, so it cannot be
//! compare-and-set together with the data.
//!
//! When a write carries a `current` pair that the consumer entry does not show yet, the
//! consumer entry is written first (CAS on its own version), then the state entry. That order
//! is safe: only verified pairs are ever promoted, and if the state write then fails, the next
//! write re-syncs the same pair. A consumer entry is never moved back to a lower generation (a
//! stale writer about to lose its CAS race cannot roll consumers back), except by a record that
//! lists the pair consumers read among its draining ones: that writer demoted it on purpose
//! (`rekey rollback`), which a stale writer, never having seen that pair, cannot do.
//!
//! `delete` soft-deletes the latest version of both entries (consumer first), keeping their
//! metadata: `vault kv undelete` can recover them, the `managed_by` mark keeps proving that
//! rekey owns the path, and versions keep counting up, so a stale writer's version never comes
//! back. A path whose live data rekey did not write is never overwritten (`Conflict`).

use crate::backend::{Backend, BackendCapabilities};
use crate::config::check::join;
use crate::config::check::{Checker, is_valid_slot_name};
use crate::config::tree::Table;
use crate::config::values::ValueRef;
use crate::error::{Error, ErrorKind, Result};
use crate::record::{MANAGED_BY, SlotRecord, StoredCredential, Versioned};
use async_trait::async_trait;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vaultrs::api::kv2::requests::{
    DeleteSecretVersionsRequest, ReadSecretMetadataRequest, ReadSecretRequest,
    SetSecretMetadataRequest, SetSecretRequest, SetSecretRequestOptions,
};
use vaultrs::api::kv2::responses::ReadSecretMetadataResponse;
use vaultrs::api::{AuthInfo, EndpointMiddleware, EndpointResult};
use vaultrs::error::ClientError;

/// The folder, under `path_prefix`, holding rekey's state entries.
const STATE_DIR: &str = ".rekey/";
/// State entries read at once while listing.
const LIST_READS: usize = 16;
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
    if let Some((m, e)) = c.string(t, path, "mount") {
        if is_kv_path(m) {
            cfg.mount = m.to_string();
        } else {
            c.err(
                e.line,
                join(path, "mount"),
                format!("\"{m}\" is not a KV v2 mount path (e.g. \"secret\" or \"kv/team\")"),
            );
        }
    }
    if let Some((p, e)) = c.string(t, path, "path_prefix") {
        let ok = p.is_empty() || (p.ends_with('/') && is_kv_path(&p[..p.len() - 1]));
        if ok {
            cfg.path_prefix = p.to_string();
        } else {
            c.err(
                e.line,
                join(path, "path_prefix"),
                format!(
                    "\"{p}\" is not a folder: use \"\" or path segments ending in '/' (e.g. \"rekey/\")"
                ),
            );
        }
    }
    if let Some((ns, e)) = c.string(t, path, "namespace") {
        if is_kv_path(ns.trim_end_matches('/')) {
            cfg.namespace = Some(ns.trim_end_matches('/').to_string());
        } else {
            c.err(
                e.line,
                join(path, "namespace"),
                format!("\"{ns}\" is not a Vault namespace path"),
            );
        }
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

/// Maps vaultrs errors to kinds: the one place this backend decides what a failure means.
/// Messages are built from status codes and Vault's own error strings, never from bodies (a KV
/// read's body is the secret) and never with the token.
fn classify_vault_error(e: &ClientError, what: &str) -> Error {
    use rustify::errors::ClientError as Rest;
    match e {
        ClientError::APIError { code, errors } => {
            let detail = if errors.is_empty() {
                String::new()
            } else {
                format!(": {}", errors.join("; "))
            };
            let msg = format!("{what}: Vault answered {code}{detail}");
            let cas = errors.iter().any(|m| m.contains("check-and-set"));
            let kind = match code {
                404 => ErrorKind::NotFound,
                400 if cas => ErrorKind::Conflict,
                401 => ErrorKind::Unauthorized,
                403 => ErrorKind::Forbidden,
                412 => ErrorKind::Conflict,
                429 => ErrorKind::RateLimited,
                400 | 405 | 422 => ErrorKind::Invalid,
                503 if errors.iter().any(|m| m.contains("sealed")) => ErrorKind::Unavailable,
                500..=599 => ErrorKind::Unavailable,
                _ => ErrorKind::Invalid,
            };
            Error::new(kind, msg)
        }
        ClientError::RestClientError { source } => match source {
            // A soft-deleted or destroyed KV v2 version: 404 with `data.metadata`, no `errors`.
            Rest::ServerResponseError { code: 404, .. } => {
                Error::not_found(format!("{what}: deleted"))
            }
            Rest::ServerResponseError { code, .. } => {
                let kind = match code {
                    401 => ErrorKind::Unauthorized,
                    403 => ErrorKind::Forbidden,
                    429 => ErrorKind::RateLimited,
                    500..=599 => ErrorKind::Unavailable,
                    _ => ErrorKind::Invalid,
                };
                Error::new(kind, format!("{what}: Vault answered {code}"))
            }
            // What rekey's own transport (`VaultHttp`) refused or could not reach: its error
            // already says what happened, in this backend's words.
            Rest::RequestError { source, .. } | Rest::ResponseError { source } => {
                match source.downcast_ref::<Error>() {
                    Some(inner) => {
                        let e = Error::new(inner.kind(), format!("{what}: {}", inner.message()));
                        if inner.maybe_applied() {
                            e
                        } else {
                            e.not_applied()
                        }
                    }
                    None => Error::unavailable(format!("{what}: the request to Vault failed")),
                }
            }
            Rest::ResponseParseError { .. } | Rest::ResponseConversionError { .. } => {
                Error::malformed(format!("{what}: Vault's answer could not be decoded"))
            }
            _ => Error::unavailable(format!("{what}: the request to Vault failed")),
        },
        ClientError::JsonParseError { .. }
        | ClientError::ResponseEmptyError
        | ClientError::ResponseDataEmptyError => {
            Error::malformed(format!("{what}: Vault's answer could not be decoded"))
        }
        ClientError::ParseCertificateError { path, .. } => {
            Error::config(format!("{what}: ca_cert {path} is not a PEM certificate"))
        }
        ClientError::FileNotFoundError { path } | ClientError::FileReadError { path, .. } => {
            Error::config(format!("{what}: cannot read {path}"))
        }
        _ => Error::internal(format!("{what}: Vault client error ({e})")),
    }
}

/// vaultrs's endpoints (request and answer types) carried by rekey's own HTTP layer instead
/// of vaultrs's client: the same trust roots as the providers plus `ca_cert`, redirects
/// refused, no `Referer`, and answers capped at [`crate::http::MAX_BODY`] (vaultrs's client
/// follows redirects, trusts the system store and reads answers of any size). SECURITY.md,
/// *Transport*.
struct VaultHttp {
    /// The address as vaultrs would give it (`https://host:port/`).
    base: String,
    http: reqwest::Client,
    timeout: Duration,
}

/// A connection to Vault: the transport and vaultrs's middleware (API version, token,
/// namespace headers).
struct VaultConn {
    http: VaultHttp,
    middle: EndpointMiddleware,
}

/// What the transport fails with: a rekey [`Error`] (kind and message decided here) inside
/// rustify's error, unpacked again by [`classify_vault_error`].
fn transport_error(e: Error) -> rustify::errors::ClientError {
    rustify::errors::ClientError::ResponseError {
        source: anyhow::Error::new(e),
    }
}

#[async_trait]
impl rustify::client::Client for VaultHttp {
    fn base(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> std::result::Result<http::Response<Vec<u8>>, rustify::errors::ClientError> {
        let mut req = reqwest::Request::try_from(req)
            .map_err(|_| transport_error(Error::internal("a Vault request could not be built")))?;
        *req.timeout_mut() = Some(self.timeout);
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| transport_error(vault_transport_error(e)))?;
        if resp.status().is_redirection() {
            // A standby node redirects to the active one, which is another host: following
            // would send the token (or an AppRole secret_id) wherever the answer points.
            return Err(transport_error(crate::http::redirect_error(
                &resp,
                "Vault",
                "set the backend's address to the active node or to a load balancer that forwards to it",
            )));
        }
        let status = resp.status();
        let body = crate::http::read_body(resp, "Vault's answer")
            .await
            .map_err(transport_error)?;
        http::Response::builder()
            .status(status)
            .body(body.to_vec())
            .map_err(|_| transport_error(Error::malformed("Vault's answer could not be decoded")))
    }
}

/// A transport failure in this backend's words (the certificate case is a configuration
/// problem, as for the providers).
fn vault_transport_error(e: reqwest::Error) -> Error {
    let e = e.without_url();
    if crate::http::is_certificate_error(&e) {
        Error::config(
            "cannot connect to Vault: its TLS certificate is not trusted (for a private CA, set ca_cert)",
        )
        .not_applied()
    } else if e.is_timeout() {
        Error::new(ErrorKind::Timeout, "no answer from Vault in time")
    } else if e.is_connect() {
        Error::unavailable("cannot connect to Vault (server down or unreachable)").not_applied()
    } else {
        Error::unavailable("the request to Vault failed")
    }
}

/// Vault's `{"errors": [...]}` of a non-2xx answer, as vaultrs reads it.
fn api_error(e: rustify::errors::ClientError) -> ClientError {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<String>,
    }
    if let rustify::errors::ClientError::ServerResponseError {
        code,
        content: Some(c),
    } = &e
        && let Ok(parsed) = serde_json::from_str::<Errors>(c)
    {
        return ClientError::APIError {
            code: *code,
            errors: parsed.errors,
        };
    }
    ClientError::RestClientError { source: e }
}

/// An endpoint's `data` (vaultrs's `exec_with_result`).
async fn exec_result<E: rustify::endpoint::Endpoint>(
    c: &VaultConn,
    endpoint: E,
) -> std::result::Result<E::Response, ClientError> {
    use rustify::endpoint::Endpoint as _;
    endpoint
        .with_middleware(&c.middle)
        .exec(&c.http)
        .await
        .map_err(api_error)?
        .wrap::<EndpointResult<_>>()
        .map_err(|source| ClientError::RestClientError { source })?
        .data
        .ok_or(ClientError::ResponseDataEmptyError)
}

/// An endpoint whose answer is empty (vaultrs's `exec_with_empty`).
async fn exec_empty<E: rustify::endpoint::Endpoint>(
    c: &VaultConn,
    endpoint: E,
) -> std::result::Result<(), ClientError> {
    use rustify::endpoint::Endpoint as _;
    endpoint
        .with_middleware(&c.middle)
        .exec(&c.http)
        .await
        .map(|_| ())
        .map_err(api_error)
}

/// A login or renewal: the answer's `auth` (vaultrs's `api::auth`).
async fn exec_auth<E: rustify::endpoint::Endpoint<Response = ()>>(
    c: &VaultConn,
    endpoint: E,
) -> std::result::Result<AuthInfo, ClientError> {
    use rustify::endpoint::Endpoint as _;
    let r: EndpointResult<()> = endpoint
        .with_middleware(&c.middle)
        .exec(&c.http)
        .await
        .map_err(api_error)?
        .wrap::<EndpointResult<_>>()
        .map_err(|source| ClientError::RestClientError { source })?;
    r.auth.ok_or(ClientError::ResponseEmptyError)
}

/// The logged-in client and when its token must be renewed or replaced.
struct Session {
    client: Arc<VaultConn>,
    /// `None`: the token does not expire (a root token).
    refresh_at: Option<Instant>,
    renewable: bool,
}

/// Vault KV v2, one consumer entry and one state entry per slot.
pub struct VaultBackend {
    config: VaultBackendConfig,
    session: tokio::sync::Mutex<Option<Session>>,
    /// Per slot, a state version this process read or wrote and the current pair it holds
    /// ([`shown_key`]). A state version holding current pair C means the consumer entry shows C
    /// (or a later generation): writes put the consumer entry first. So a write over that
    /// version that keeps C needs no re-read of the consumer entry (two of a rotation's three
    /// writes).
    shown: std::sync::Mutex<HashMap<String, (u64, String)>>,
}

/// Identifies a current pair without holding its secret (generation, client id, fingerprint).
fn shown_key(c: &StoredCredential) -> String {
    format!(
        "{}:{}:{}",
        c.generation,
        c.client_id,
        c.secret.fingerprint()
    )
}

impl fmt::Debug for VaultBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultBackend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What consumers read at `<path_prefix><slot>`.
#[derive(Serialize, Deserialize)]
struct ConsumerEntry {
    client_id: String,
    client_secret: String,
    tenant: String,
    generation: u64,
    rotated_at: String,
    slot: String,
    managed_by: String,
}

/// A live consumer entry as read: its version and what it shows.
struct ConsumerState {
    version: u64,
    /// `None` when the latest version is deleted (the path exists, metadata kept).
    shown: Option<ConsumerEntry>,
}

fn fresh_after(ttl: u64) -> Option<Instant> {
    // Renew or log in again when two thirds of the TTL have passed (at least 5s before expiry).
    if ttl == 0 {
        return None;
    }
    let ttl = Duration::from_secs(ttl);
    let early = (ttl / 3).max(Duration::from_secs(5)).min(ttl);
    Some(Instant::now() + ttl - early)
}

impl VaultBackend {
    /// Prepares the backend; the login happens on first use (and again near token expiry).
    pub fn open(config: &VaultBackendConfig) -> Result<Self> {
        if let Some(ca) = &config.ca_cert
            && !ca.is_file()
        {
            return Err(Error::config(format!(
                "backend {}: ca_cert {} does not exist",
                config.name,
                ca.display()
            )));
        }
        Ok(VaultBackend {
            config: config.clone(),
            session: tokio::sync::Mutex::new(None),
            shown: Default::default(),
        })
    }

    /// Remembers what state `version` of `slot` holds as its current pair (see `shown`).
    fn note_shown(&self, slot: &str, version: u64, current: Option<&StoredCredential>) {
        let mut shown = self.shown.lock().expect("shown map poisoned");
        match current {
            Some(c) => shown.insert(slot.to_string(), (version, shown_key(c))),
            None => shown.remove(slot),
        };
    }

    /// Whether a write over `expected` that keeps `current` finds the consumer entry showing it.
    fn known_shown(&self, slot: &str, expected: Option<u64>, current: &StoredCredential) -> bool {
        let shown = self.shown.lock().expect("shown map poisoned");
        expected.is_some_and(|v| shown.get(slot) == Some(&(v, shown_key(current))))
    }

    fn new_client(&self, token: &str) -> Result<VaultConn> {
        let c = &self.config;
        // rekey's shared HTTP layer, as for the providers: the roots built into rekey plus
        // `ca_cert`, no redirects, no Referer, bounded answers (src/http.rs). No VAULT_*
        // environment variable changes what rekey does.
        let http = crate::http::client_with_ca(c.ca_cert.as_deref())
            .map_err(|e| e.context(format!("backend {}", c.name)))?;
        let base = reqwest::Url::parse(&c.address)
            .map_err(|e| Error::config(format!("backend {}: invalid address ({e})", c.name)))?;
        Ok(VaultConn {
            http: VaultHttp {
                base: base.to_string(),
                http,
                timeout: c.timeout,
            },
            middle: EndpointMiddleware {
                token: token.to_string(),
                version: "v1".to_string(),
                wrap: None,
                namespace: c.namespace.clone(),
            },
        })
    }

    /// The logged-in client, logging in or renewing first when needed.
    async fn client(&self) -> Result<Arc<VaultConn>> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_mut() {
            match s.refresh_at {
                Some(at) if Instant::now() >= at => {
                    if s.renewable
                        && matches!(self.config.auth, VaultAuth::Token { .. })
                        && let Ok(info) = exec_auth(
                            s.client.as_ref(),
                            vaultrs::api::token::requests::RenewTokenSelfRequest::builder()
                                .build()
                                .map_err(|e| Error::internal(format!("renew request: {e}")))?,
                        )
                        .await
                    {
                        s.refresh_at = fresh_after(info.lease_duration);
                        tracing::debug!(backend = %self.config.name, "renewed the Vault token");
                        return Ok(Arc::clone(&s.client));
                    }
                    // Not renewable, or renewal refused: log in again below.
                }
                _ => return Ok(Arc::clone(&s.client)),
            }
        }
        let session = self.login().await?;
        let client = Arc::clone(&session.client);
        *guard = Some(session);
        Ok(client)
    }

    async fn login(&self) -> Result<Session> {
        let name = &self.config.name;
        let what = format!("backend {name}: {} login", self.config.auth.method());
        let ctx = |e: Error| e.context(format!("backend {name}"));
        match &self.config.auth {
            VaultAuth::Token { token } => {
                let token = token.resolve().map_err(ctx)?;
                let client = self.new_client(token.expose())?;
                let req = vaultrs::api::token::requests::LookupTokenSelfRequest::builder()
                    .build()
                    .map_err(|e| Error::internal(format!("lookup request: {e}")))?;
                let info = exec_result(&client, req)
                    .await
                    .map_err(|e| classify_vault_error(&e, &what))?;
                Ok(Session {
                    client: Arc::new(client),
                    refresh_at: fresh_after(info.ttl),
                    renewable: info.renewable.unwrap_or(false),
                })
            }
            VaultAuth::AppRole {
                role_id,
                secret_id,
                mount,
            } => {
                let role_id = role_id.resolve().map_err(ctx)?;
                let secret_id = secret_id.resolve().map_err(ctx)?;
                let mut client = self.new_client("")?;
                let req = vaultrs::api::auth::approle::requests::LoginWithApproleRequest::builder()
                    .mount(mount)
                    .role_id(role_id.expose())
                    .secret_id(secret_id.expose())
                    .build()
                    .map_err(|_| Error::internal("AppRole login request"))?;
                let info = exec_auth(&client, req)
                    .await
                    .map_err(|e| classify_vault_error(&e, &what))?;
                client.middle.token = info.client_token.clone();
                Ok(Session {
                    client: Arc::new(client),
                    refresh_at: fresh_after(info.lease_duration),
                    renewable: false,
                })
            }
            VaultAuth::Kubernetes {
                role,
                jwt_file,
                mount,
            } => {
                // Kubelet mounts the token 0644 (0640 with fsGroup); its short life and audience
                // binding are what protect it, so its mode is not held against it.
                let jwt = ValueRef::File(jwt_file.clone())
                    .resolve_any_mode()
                    .map_err(|e| ctx(e.context("the service-account token (jwt_file)")))?;
                let mut client = self.new_client("")?;
                let req =
                    vaultrs::api::auth::kubernetes::requests::LoginWithKubernetesRequest::builder()
                        .mount(mount)
                        .role(role)
                        .jwt(jwt.expose())
                        .build()
                        .map_err(|_| Error::internal("Kubernetes login request"))?;
                let info = exec_auth(&client, req)
                    .await
                    .map_err(|e| classify_vault_error(&e, &what))?;
                client.middle.token = info.client_token.clone();
                Ok(Session {
                    client: Arc::new(client),
                    refresh_at: fresh_after(info.lease_duration),
                    renewable: false,
                })
            }
        }
    }

    fn consumer_path(&self, slot: &str) -> String {
        format!("{}{slot}", self.config.path_prefix)
    }

    fn state_path(&self, slot: &str) -> String {
        format!("{}{STATE_DIR}{slot}", self.config.path_prefix)
    }

    /// `<mount>/<path>` for messages.
    fn shown(&self, path: &str) -> String {
        format!("{}/{path}", self.config.mount)
    }

    fn check_slot(&self, slot: &str) -> Result<()> {
        if is_valid_slot_name(slot) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "backend {}: \"{slot}\" is not a valid slot name",
                self.config.name
            )))
        }
    }

    /// The latest live version of `path`: its data and version, or `None` (missing or deleted).
    async fn read_data(
        &self,
        client: &VaultConn,
        path: &str,
    ) -> Result<Option<(serde_json::Value, u64)>> {
        let req = ReadSecretRequest::builder()
            .mount(&self.config.mount)
            .path(path)
            .build()
            .map_err(|e| Error::internal(format!("KV read request: {e}")))?;
        match exec_result(client, req).await {
            Ok(r) => Ok(Some((r.data, r.metadata.version))),
            Err(e) => {
                let e = classify_vault_error(&e, &format!("read {}", self.shown(path)));
                if e.kind() == ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn read_metadata(
        &self,
        client: &VaultConn,
        path: &str,
    ) -> Result<Option<ReadSecretMetadataResponse>> {
        let req = ReadSecretMetadataRequest::builder()
            .mount(&self.config.mount)
            .path(path)
            .build()
            .map_err(|e| Error::internal(format!("KV metadata request: {e}")))?;
        match exec_result(client, req).await {
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                let e = classify_vault_error(&e, &format!("read metadata of {}", self.shown(path)));
                if e.kind() == ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Writes `data` at `path` if its current version is still `cas` (0: no version yet).
    async fn put(
        &self,
        client: &VaultConn,
        path: &str,
        data: serde_json::Value,
        cas: u64,
    ) -> Result<u64> {
        let cas32 = u32::try_from(cas)
            .map_err(|_| Error::internal(format!("{}: version {cas} too large", path)))?;
        let req = SetSecretRequest::builder()
            .mount(&self.config.mount)
            .path(path)
            .data(data)
            .options(SetSecretRequestOptions { cas: cas32 })
            .build()
            .map_err(|e| Error::internal(format!("KV write request: {e}")))?;
        match exec_result(client, req).await {
            Ok(m) => Ok(m.version),
            Err(e) => {
                let e = classify_vault_error(&e, &format!("write {}", self.shown(path)));
                Err(if e.kind() == ErrorKind::Conflict {
                    Error::conflict(format!(
                        "{} changed under us: expected version {cas} (another run wrote first)",
                        self.shown(path)
                    ))
                } else {
                    e
                })
            }
        }
    }

    /// The consumer entry as it is: `None` when the path has never been written. A live entry
    /// rekey did not write, or a deleted one not marked as rekey's, is `Conflict`.
    async fn consumer(&self, client: &VaultConn, slot: &str) -> Result<Option<ConsumerState>> {
        let path = self.consumer_path(slot);
        let foreign = || {
            Error::conflict(format!(
                "{} is not managed by rekey (no managed_by = \"rekey\" in it); refusing to touch it",
                self.shown(&path)
            ))
        };
        match self.read_data(client, &path).await? {
            Some((data, version)) => {
                let managed = data.get("managed_by").and_then(|m| m.as_str()) == Some(MANAGED_BY);
                if !managed {
                    return Err(foreign());
                }
                let shown = serde_json::from_value::<ConsumerEntry>(data).ok();
                Ok(Some(ConsumerState { version, shown }))
            }
            None => match self.read_metadata(client, &path).await? {
                None => Ok(None),
                Some(m) => {
                    let managed = m
                        .custom_metadata
                        .as_ref()
                        .and_then(|c| c.get("managed_by"))
                        .map(String::as_str)
                        == Some(MANAGED_BY);
                    if !managed && m.current_version > 0 {
                        return Err(foreign());
                    }
                    Ok(Some(ConsumerState {
                        version: m.current_version,
                        shown: None,
                    }))
                }
            },
        }
    }

    /// Makes the consumer entry show `current`, unless it already does or shows a later
    /// generation.
    async fn sync_consumer(
        &self,
        client: &VaultConn,
        record: &SlotRecord,
        current: &StoredCredential,
        existing: Option<ConsumerState>,
    ) -> Result<()> {
        let path = self.consumer_path(&record.slot);
        let (cas, fresh) = match &existing {
            None => (0, true),
            Some(ConsumerState {
                version,
                shown: Some(e),
            }) => {
                // A later pair is out already: never roll consumers back, unless this record
                // demotes exactly that pair to draining (`rekey rollback`). A stale writer never
                // knew of the later pair, so it cannot name it there.
                let demoted = record.draining.iter().any(|d| {
                    d.credential.generation == e.generation && d.credential.client_id == e.client_id
                });
                if e.generation > current.generation && !demoted {
                    return Ok(());
                }
                if e.generation == current.generation
                    && e.client_id == current.client_id
                    && e.client_secret == current.secret.expose()
                    && e.tenant == record.tenant
                {
                    return Ok(());
                }
                (*version, false)
            }
            Some(ConsumerState {
                version,
                shown: None,
            }) => (*version, false),
        };
        let rotated_at = current
            .verified_at
            .unwrap_or(current.created_at)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let entry = ConsumerEntry {
            client_id: current.client_id.clone(),
            client_secret: current.secret.expose().to_string(),
            tenant: record.tenant.clone(),
            generation: current.generation,
            rotated_at,
            slot: record.slot.clone(),
            managed_by: MANAGED_BY.to_string(),
        };
        let data = serde_json::to_value(&entry)
            .map_err(|_| Error::internal("cannot encode the consumer entry"))?;
        self.put(client, &path, data, cas).await?;
        // Consumers read the new pair now; the state entry does not say so yet.
        crate::crash::point("vault-after-consumer-write");
        if fresh {
            // Marks the path as rekey's for people and policies (no secret in metadata).
            let mut meta = HashMap::new();
            meta.insert("managed_by".to_string(), MANAGED_BY.to_string());
            meta.insert("slot".to_string(), record.slot.clone());
            let req = SetSecretMetadataRequest::builder()
                .mount(&self.config.mount)
                .path(&path)
                .custom_metadata(meta)
                .build()
                .map_err(|e| Error::internal(format!("KV metadata request: {e}")))?;
            exec_empty(client, req).await.map_err(|e| {
                classify_vault_error(&e, &format!("write metadata of {}", self.shown(&path)))
            })?;
        }
        Ok(())
    }

    fn decode(&self, slot: &str, path: &str, data: serde_json::Value) -> Result<SlotRecord> {
        let managed = data.get("managed_by").and_then(|m| m.as_str()) == Some(MANAGED_BY);
        let rec: SlotRecord = match serde_json::from_value(data) {
            Ok(r) => r,
            Err(_) if managed => {
                return Err(Error::malformed(format!(
                    "{} holds a rekey record this version cannot read (newer schema?)",
                    self.shown(path)
                )));
            }
            Err(_) => {
                return Err(Error::conflict(format!(
                    "{} is not a rekey record; refusing to touch it",
                    self.shown(path)
                )));
            }
        };
        if !rec.is_managed() || rec.slot != slot {
            return Err(Error::conflict(format!(
                "{} does not hold rekey's record of slot \"{slot}\"; refusing to touch it",
                self.shown(path)
            )));
        }
        Ok(rec)
    }

    async fn read_state(&self, client: &VaultConn, slot: &str) -> Result<Option<Versioned>> {
        let path = self.state_path(slot);
        match self.read_data(client, &path).await? {
            Some((data, version)) => Ok(Some(Versioned {
                record: self.decode(slot, &path, data)?,
                version,
            })),
            None => Ok(None),
        }
    }

    fn named(&self, e: Error) -> Error {
        e.context(format!("backend {}", self.config.name))
    }

    async fn do_read(&self, slot: &str) -> Result<Option<Versioned>> {
        self.check_slot(slot)?;
        let client = self.client().await?;
        match self.read_state(&client, slot).await? {
            Some(v) => {
                self.note_shown(slot, v.version, v.record.current.as_ref());
                Ok(Some(v))
            }
            None => {
                // No record: make sure the consumer path is not someone else's secret.
                self.consumer(&client, slot).await?;
                Ok(None)
            }
        }
    }

    async fn do_write(
        &self,
        slot: &str,
        record: &SlotRecord,
        expected: Option<u64>,
    ) -> Result<u64> {
        self.check_slot(slot)?;
        if record.slot != slot || !record.is_managed() {
            return Err(Error::invalid(format!(
                "refusing to store a record for slot \"{}\" (managed by \"{}\") as slot \"{slot}\"",
                record.slot, record.managed_by
            )));
        }
        let client = self.client().await?;
        // The consumer path is checked on creation (never adopt someone else's secret) and
        // whenever there is a current pair to show, unless the version written over is known to
        // hold the same pair (its consumer entry shows it already).
        let known = record
            .current
            .as_ref()
            .is_some_and(|c| self.known_shown(slot, expected, c));
        if expected.is_none() || (record.current.is_some() && !known) {
            let existing = self.consumer(&client, slot).await?;
            if let Some(current) = &record.current {
                self.sync_consumer(&client, record, current, existing)
                    .await?;
            }
        }
        let path = self.state_path(slot);
        let data = serde_json::to_value(record)
            .map_err(|_| Error::internal(format!("slot {slot}: cannot encode the record")))?;
        let written = self.put_state(&client, &path, data, expected).await?;
        self.note_shown(slot, written, record.current.as_ref());
        Ok(written)
    }

    /// The state entry's compare-and-set write (see `do_write`).
    async fn put_state(
        &self,
        client: &VaultConn,
        path: &str,
        data: serde_json::Value,
        expected: Option<u64>,
    ) -> Result<u64> {
        match expected {
            Some(v) => self.put(client, path, data, v).await,
            None => match self.put(client, path, data.clone(), 0).await {
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    // A deleted entry keeps its metadata: "must not exist" then means "its latest
                    // version is deleted", and the CAS is against that version.
                    let meta = self.read_metadata(client, path).await?;
                    let deleted_at = meta.and_then(|m| {
                        let latest = m.versions.get(&m.current_version.to_string())?;
                        (!latest.deletion_time.is_empty() || latest.destroyed)
                            .then_some(m.current_version)
                    });
                    match deleted_at {
                        Some(v) => self.put(client, path, data, v).await,
                        None => Err(Error::conflict(format!(
                            "{} already exists (another run created it first)",
                            self.shown(path)
                        ))),
                    }
                }
                other => other,
            },
        }
    }

    async fn do_delete(&self, slot: &str, expected: u64) -> Result<()> {
        self.check_slot(slot)?;
        self.note_shown(slot, 0, None);
        let client = self.client().await?;
        let path = self.state_path(slot);
        let stale = |found: String| {
            Error::conflict(format!(
                "{} changed under us: expected version {expected}, found {found} (another run wrote first)",
                self.shown(&path)
            ))
        };
        let meta = self.read_metadata(&client, &path).await?;
        let live = |m: &ReadSecretMetadataResponse| {
            m.versions
                .get(&m.current_version.to_string())
                .is_some_and(|v| v.deletion_time.is_empty() && !v.destroyed)
        };
        match &meta {
            Some(m) if m.current_version == expected && live(m) => {}
            Some(m) if live(m) => return Err(stale(format!("version {}", m.current_version))),
            _ => return Err(stale("no entry".into())),
        }
        // Consumer first: if the state delete then fails, the record survives and the next
        // write shows its pair again.
        if let Some(ConsumerState {
            version,
            shown: Some(_),
        }) = self.consumer(&client, slot).await?
        {
            self.delete_version(&client, &self.consumer_path(slot), version)
                .await?;
        }
        // Deleting exactly `expected` never touches a version written after our check.
        self.delete_version(&client, &path, expected).await?;
        match self.read_metadata(&client, &path).await? {
            Some(m) if m.current_version != expected => {
                Err(stale(format!("version {}", m.current_version)))
            }
            _ => Ok(()),
        }
    }

    async fn delete_version(&self, client: &VaultConn, path: &str, version: u64) -> Result<()> {
        let req = DeleteSecretVersionsRequest::builder()
            .mount(&self.config.mount)
            .path(path)
            .versions(vec![version])
            .build()
            .map_err(|e| Error::internal(format!("KV delete request: {e}")))?;
        exec_empty(client, req)
            .await
            .map_err(|e| classify_vault_error(&e, &format!("delete {}", self.shown(path))))
    }

    /// Owned slot names, leaving out `known` ones unread (see `Backend::list`).
    async fn do_list(&self, known: &BTreeSet<String>) -> Result<Vec<String>> {
        let client = self.client().await?;
        let dir = format!("{}{STATE_DIR}", self.config.path_prefix);
        let req = vaultrs::api::kv2::requests::ListSecretsRequest::builder()
            .mount(&self.config.mount)
            .path(&dir)
            .build()
            .map_err(|e| Error::internal(format!("KV list request: {e}")))?;
        let keys = match exec_result(client.as_ref(), req).await {
            Ok(r) => r.keys,
            Err(e) => {
                let e = classify_vault_error(&e, &format!("list {}", self.shown(&dir)));
                if e.kind() == ErrorKind::NotFound {
                    return Ok(Vec::new());
                }
                return Err(e);
            }
        };
        // Sub-folders ("x/") and names rekey never writes are skipped. The entries are read
        // a few at a time, not one round trip after another: a listing is part of every apply
        // and plan, and one by one it took as long as the reads of all the slots.
        let reads: Vec<(String, Result<Option<Versioned>>)> = futures_util::stream::iter(
            keys.into_iter()
                .filter(|k| is_valid_slot_name(k) && !known.contains(k)),
        )
        .map(|key| {
            let client = &client;
            async move {
                let read = self.read_state(client, &key).await;
                (key, read)
            }
        })
        .buffered(LIST_READS)
        .collect()
        .await;
        let mut slots = Vec::new();
        for (key, read) in reads {
            match read {
                Ok(Some(_)) => slots.push(key),
                Ok(None) => {}
                Err(e) if e.kind() == ErrorKind::Conflict || e.kind() == ErrorKind::Malformed => {
                    tracing::warn!(
                        backend = %self.config.name,
                        slot = %key,
                        kind = %e.kind(),
                        "skipping an entry that is not a readable rekey record: {e}"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        slots.sort();
        Ok(slots)
    }

    async fn do_check(&self) -> Result<()> {
        let client = self.client().await?;
        // Capabilities on a probe path under the prefix: proves the policy lets us write, and
        // writes nothing.
        let probe_state = format!("{}/data/{}", self.config.mount, self.state_path("probe"));
        let probe_consumer = format!("{}/data/{}", self.config.mount, self.consumer_path("probe"));
        let caps = capabilities_self(&client, &[&probe_state, &probe_consumer])
            .await
            .map_err(|e| classify_vault_error(&e, "check token capabilities"))?;
        for p in [&probe_state, &probe_consumer] {
            let have = caps.get(p.as_str()).cloned().unwrap_or_default();
            let ok = |c: &str| have.iter().any(|h| h == c || h == "root");
            if !(ok("create") && ok("update") && ok("read")) {
                return Err(Error::new(
                    ErrorKind::Forbidden,
                    format!(
                        "the Vault token may not create, update and read {p} (it has: {}); see examples/vault-policy.hcl",
                        if have.is_empty() {
                            "nothing".to_string()
                        } else {
                            have.join(", ")
                        }
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `POST sys/capabilities-self` (allowed by Vault's default policy).
async fn capabilities_self(
    client: &VaultConn,
    paths: &[&str],
) -> std::result::Result<HashMap<String, Vec<String>>, ClientError> {
    let req = CapabilitiesSelf {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    };
    let v: serde_json::Value = exec_result(client, req).await?;
    let mut out = HashMap::new();
    for p in paths {
        let caps = v
            .get(*p)
            .and_then(|c| c.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        out.insert(p.to_string(), caps);
    }
    Ok(out)
}

struct CapabilitiesSelf {
    paths: Vec<String>,
}

impl rustify::endpoint::Endpoint for CapabilitiesSelf {
    type Response = serde_json::Value;
    const REQUEST_BODY_TYPE: rustify::enums::RequestType = rustify::enums::RequestType::JSON;
    const RESPONSE_BODY_TYPE: rustify::enums::ResponseType = rustify::enums::ResponseType::JSON;

    fn path(&self) -> String {
        "sys/capabilities-self".to_string()
    }
    fn method(&self) -> rustify::enums::RequestMethod {
        rustify::enums::RequestMethod::POST
    }
    fn body(&self) -> std::result::Result<Option<Vec<u8>>, rustify::errors::ClientError> {
        serde_json::to_vec(&serde_json::json!({ "paths": self.paths }))
            .map(Some)
            .map_err(|e| rustify::errors::ClientError::DataParseError { source: e.into() })
    }
}

#[async_trait]
impl Backend for VaultBackend {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn capabilities(&self) -> BackendCapabilities {
        BackendCapabilities {
            soft_delete: true,
            // Consumer entry first, state entry second: two writes.
            atomic_promotion: false,
        }
    }

    async fn read(&self, slot: &str) -> Result<Option<Versioned>> {
        self.do_read(slot).await.map_err(|e| self.named(e))
    }

    /// Consumers read the consumer entry, which may be ahead of the state entry (a promotion
    /// cut between its two writes).
    async fn consumer_view(
        &self,
        slot: &str,
        _record: &SlotRecord,
    ) -> Result<Option<crate::backend::ConsumerView>> {
        self.check_slot(slot)?;
        let client = self.client().await.map_err(|e| self.named(e))?;
        let state = self
            .consumer(&client, slot)
            .await
            .map_err(|e| self.named(e))?;
        Ok(state
            .and_then(|s| s.shown)
            .map(|e| crate::backend::ConsumerView {
                generation: e.generation,
                pair: crate::secret::ClientPair {
                    client_id: e.client_id,
                    secret: crate::secret::Secret::new(e.client_secret),
                },
            }))
    }

    async fn write(&self, slot: &str, record: &SlotRecord, expected: Option<u64>) -> Result<u64> {
        self.do_write(slot, record, expected)
            .await
            .map_err(|e| self.named(e))
    }

    async fn delete(&self, slot: &str, expected: u64) -> Result<()> {
        self.do_delete(slot, expected)
            .await
            .map_err(|e| self.named(e))
    }

    async fn list(&self, known: &BTreeSet<String>) -> Result<Vec<String>> {
        self.do_list(known).await.map_err(|e| self.named(e))
    }

    async fn check(&self) -> Result<()> {
        self.do_check().await.map_err(|e| self.named(e))
    }
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
    fn cas_mismatch_is_conflict_and_403_forbidden() {
        let cas = ClientError::APIError {
            code: 400,
            errors: vec!["check-and-set parameter did not match the current version".to_string()],
        };
        assert_eq!(classify_vault_error(&cas, "w").kind(), ErrorKind::Conflict);
        let denied = ClientError::APIError {
            code: 403,
            errors: vec!["1 error occurred:\n\t* permission denied\n\n".to_string()],
        };
        assert_eq!(
            classify_vault_error(&denied, "w").kind(),
            ErrorKind::Forbidden
        );
        let deleted = ClientError::RestClientError {
            source: rustify::errors::ClientError::ServerResponseError {
                code: 404,
                content: Some("{\"data\":{\"metadata\":{}}}".into()),
            },
        };
        let e = classify_vault_error(&deleted, "r");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(!e.message().contains("metadata"));
    }

    fn parse(backend: &str) -> std::result::Result<crate::config::Inventory, String> {
        let text = format!(
            "[providers.p]\ntype = \"taegis\"\nenvironment = \"us1\"\n\
             bootstrap = {{ client_id = {{ env = \"ID\" }}, client_secret = {{ env = \"S\" }} }}\n\n\
             [backends.v]\ntype = \"vault\"\n{backend}\n[[slots]]\nname = \"s\"\nprovider = \"p\"\ntenant = \"1\"\n"
        );
        crate::config::parse(&text, std::path::Path::new("/etc/rekey/inv.toml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn config_defaults_and_every_auth_method() {
        let inv = parse(
            "address = \"https://vault.example:8200\"\nauth = { method = \"kubernetes\", role = \"rekey\" }\n",
        )
        .unwrap();
        let crate::config::BackendConfig::Vault(v) = &inv.backends["v"] else {
            panic!("vault")
        };
        assert_eq!(
            (v.mount.as_str(), v.path_prefix.as_str()),
            ("secret", "rekey/")
        );
        assert_eq!(
            v.auth,
            VaultAuth::Kubernetes {
                role: "rekey".into(),
                jwt_file: DEFAULT_JWT_FILE.into(),
                mount: "kubernetes".into()
            }
        );
        let inv = parse(
            "address = \"http://127.0.0.1:8200\"\nmount = \"kv\"\npath_prefix = \"\"\nnamespace = \"team/a\"\n\
             ca_cert = \"ca.pem\"\ntimeout = \"5s\"\n\
             auth = { method = \"approle\", role_id = \"r-1\", secret_id = { file = \"sid\" } }\n",
        )
        .unwrap();
        let crate::config::BackendConfig::Vault(v) = &inv.backends["v"] else {
            panic!("vault")
        };
        assert_eq!(
            v.ca_cert.as_deref(),
            Some(std::path::Path::new("/etc/rekey/ca.pem"))
        );
        assert_eq!(v.namespace.as_deref(), Some("team/a"));
        assert!(matches!(&v.auth, VaultAuth::AppRole { mount, .. } if mount == "approle"));
        parse("address = \"https://v:8200\"\nauth = { method = \"token\", token = { env = \"VAULT_TOKEN\" } }\n")
            .unwrap();
    }

    #[test]
    fn config_errors_are_located_and_never_echo_secrets() {
        let e = parse(
            "address = \"http://vault.example:8200\"\nauth = { method = \"token\", token = \"s.hunter2\" }\n",
        )
        .unwrap_err();
        assert!(e.contains("backends.v.address"), "{e}");
        assert!(e.contains("backends.v.auth.token"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = parse(
            "address = \"https://v\"\npath_prefix = \"rekey\"\nauth = { method = \"ldap\" }\n",
        )
        .unwrap_err();
        assert!(
            e.contains("path_prefix") && e.contains("unknown auth method"),
            "{e}"
        );
        let e = parse("address = \"https://v\"\n").unwrap_err();
        assert!(e.contains("auth"), "{e}");
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
