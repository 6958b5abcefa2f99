//! The emulator's world: tenants, API clients, roles, and their persistence.
//!
//! Secrets are never kept: a client stores a salted SHA-256 of its secret and a `secret_epoch`
//! that every token carries, so rotating or deleting a client kills its old secret and every
//! token minted before, at once. The state file (JSON, mode 0600, replaced atomically) holds
//! those hashes and the token-signing key, so a restarted emulator keeps its clients and still
//! honours the tokens it handed out.

use super::{Seed, SeedClient, SeedTenant};
use crate::error::{Error, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Role id of Tenant Admin: the only role allowed to manage API clients.
pub const TENANT_ADMIN_ROLE: &str = "ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068";
/// Role id the emulator uses for Tenant Analyst, the default of `createClient` (invented: the
/// real id is not public).
pub const TENANT_ANALYST_ROLE: &str = "a4903f9a-2d5a-4c1e-9b7e-3f6c1d2e8a40";

/// Roles the emulator knows, `(id, name)`. Other role ids are refused like an unknown role
/// would be. Only Tenant Admin's id is the real one.
pub const ROLES: &[(&str, &str)] = &[
    (TENANT_ADMIN_ROLE, "Tenant Admin"),
    (TENANT_ANALYST_ROLE, "Tenant Analyst"),
    ("e1b1a8f2-6f0b-4d55-9c3a-7a2f1c9b5d61", "Tenant Responder"),
    ("c7d2e3f4-8a9b-4c0d-8e1f-2a3b4c5d6e7f", "Tenant Auditor"),
];

/// The internal Secureworks tenant: clients there are refused, as on the real service.
pub const INTERNAL_TENANT: &str = "5000";

/// Value of the `environment` field of every client.
pub const ENVIRONMENT: &str = "emulator";

const STATE_VERSION: u32 = 1;

pub fn role_name(id: &str) -> Option<&'static str> {
    ROLES.iter().find(|(rid, _)| *rid == id).map(|(_, n)| *n)
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Tenant {
    pub id: String,
    pub parent: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct RoleAssignment {
    pub id: String,
    pub tenant_id: String,
    pub role_id: String,
}

/// Which API a client belongs to: each platform's endpoints see only their own clients.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    #[default]
    Taegis,
    Cisco,
}

/// One API client. Holds no secret: only `secret_hash` (hex SHA-256 of salt and secret).
#[derive(Serialize, Deserialize, Clone)]
pub struct ClientRecord {
    #[serde(default)]
    pub platform: Platform,
    /// Cisco: the client's scopes (Taegis clients have role assignments instead).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Cisco: `availability` as created (`org`).
    #[serde(default)]
    pub availability: String,
    #[serde(default)]
    pub description: String,
    /// Object id (UUID v4).
    pub id: String,
    /// The CLIENT_ID: 32 alphanumeric characters for clients the emulator makes.
    pub client_id: String,
    pub name: String,
    pub tenant_id: String,
    pub owner_tenant_id: String,
    pub role_assignments: Vec<RoleAssignment>,
    salt: String,
    secret_hash: String,
    /// Bumped on every rotation; tokens carry it, so older tokens stop working at once.
    pub secret_epoch: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub updated_by: Option<String>,
    pub token_request_time: Option<DateTime<Utc>>,
    pub token_request_count: u64,
    pub enabled: bool,
}

impl std::fmt::Debug for ClientRecord {
    // Hand-written so the hash and salt never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRecord")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field("tenant_id", &self.tenant_id)
            .field("secret_epoch", &self.secret_epoch)
            .finish_non_exhaustive()
    }
}

impl ClientRecord {
    pub fn role_ids(&self) -> impl Iterator<Item = &str> {
        self.role_assignments.iter().map(|r| r.role_id.as_str())
    }

    pub fn is_tenant_admin(&self) -> bool {
        self.role_ids().any(|r| r == TENANT_ADMIN_ROLE)
    }

    fn set_secret(&mut self, secret: &str) {
        self.salt = random_alnum(16);
        self.secret_hash = hash_secret(&self.salt, secret);
    }

    /// Constant-time comparison of the presented secret with the stored hash.
    pub fn secret_matches(&self, secret: &str) -> bool {
        let presented = hash_secret(&self.salt, secret);
        constant_time_eq(presented.as_bytes(), self.secret_hash.as_bytes())
    }
}

fn hash_secret(salt: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn random_alnum(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A fresh client secret: 64 URL-safe characters (~384 bits).
pub fn random_secret() -> String {
    crate::secret::Secret::generate(64).expose().to_string()
}

pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Search filters shared by `clientsSearch` and the deprecated `clients`.
#[derive(Default, Debug, Clone)]
pub struct SearchFilter {
    pub name: Option<String>,
    pub client_ids: Option<Vec<String>>,
    pub role_ids: Option<Vec<String>>,
    pub tenant_ids: Option<Vec<String>>,
    pub sort_by: SortBy,
    pub descending: bool,
    /// Number of matching results to skip.
    pub offset: usize,
    pub limit: usize,
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    #[default]
    Name,
    ClientId,
    RoleAssignmentName,
    TokenRequestCount,
    TokenRequestTime,
}

pub struct SearchResult {
    pub total_count: usize,
    pub total_unfiltered_count: usize,
    pub results: Vec<ClientRecord>,
}

/// SQL `LIKE` with `%` only: `%` matches any run of characters, everything else (including
/// `_`, which is common in client names) matches itself, case-sensitively.
pub fn like(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('%').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    // Checked before slicing, so both cut points are char boundaries.
    if value.len() < first.len() + last.len() || !value.starts_with(first) || !value.ends_with(last)
    {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(pos) => rest = &rest[pos + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Everything the emulator remembers. Serialised whole to the state file.
#[derive(Serialize, Deserialize)]
pub struct State {
    version: u32,
    /// HS256 key for tokens, base64. Persisted so tokens survive a restart like secrets do.
    signing_key: String,
    tenants: BTreeMap<String, Tenant>,
    /// By object id.
    clients: BTreeMap<String, ClientRecord>,
    /// client_id -> object id. Rebuilt on load.
    #[serde(skip)]
    by_client_id: HashMap<String, String>,
}

impl State {
    pub fn new() -> Self {
        use base64::Engine;
        let key: [u8; 32] = rand::rng().random();
        State {
            version: STATE_VERSION,
            signing_key: base64::engine::general_purpose::STANDARD.encode(key),
            tenants: BTreeMap::new(),
            clients: BTreeMap::new(),
            by_client_id: HashMap::new(),
        }
    }

    pub fn signing_key(&self) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&self.signing_key)
            .unwrap_or_default()
    }

    /// Loads a state file, or None when it does not exist yet.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        // The state holds only salted secret hashes, but a hash is still guessing material.
        if path.exists() {
            crate::harden::check_private_file(path, "emulator state file")?;
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::config(format!(
                    "cannot read emulator state file {}",
                    path.display()
                ))
                .with_source(e));
            }
        };
        let mut state: State = serde_json::from_slice(&bytes).map_err(|e| {
            Error::config(format!(
                "emulator state file {} is not valid",
                path.display()
            ))
            .with_source(e)
        })?;
        if state.version != STATE_VERSION {
            return Err(Error::config(format!(
                "emulator state file {} has version {}, expected {STATE_VERSION}",
                path.display(),
                state.version
            )));
        }
        if state.signing_key().len() < 32 {
            return Err(Error::config(format!(
                "emulator state file {} has no usable signing key",
                path.display()
            )));
        }
        state.by_client_id = state
            .clients
            .values()
            .map(|c| (c.client_id.clone(), c.id.clone()))
            .collect();
        Ok(Some(state))
    }

    /// Writes the state to `path` atomically (temp file in the same directory, then rename)
    /// with mode 0600: it holds the signing key and secret hashes. No fsync: the rename is
    /// atomic against the emulator dying, which is what a restart test needs; surviving power
    /// loss is not worth a disk flush on every mutation under the state lock (it cut the
    /// token+rotate throughput by a factor of four).
    ///
    /// Synchronous on purpose: callers hold the state lock and must not reach an `.await`
    /// between changing memory and writing the file, or a dropped connection could cancel the
    /// request after one and before the other.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let err = |what: &str, e: std::io::Error| {
            Error::unavailable(format!(
                "cannot {what} emulator state file {}",
                path.display()
            ))
            .with_source(e)
        };
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::internal("cannot serialise emulator state").with_source(e))?;
        // tempfile creates the file with mode 0600.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| err("create", e))?;
        tmp.write_all(&json).map_err(|e| err("write", e))?;
        tmp.persist(path).map_err(|e| err("replace", e.error))?;
        Ok(())
    }

    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.tenants.get(id)
    }

    pub fn add_tenant(&mut self, id: &str, parent: Option<&str>) -> Result<()> {
        if id.is_empty() {
            return Err(Error::invalid("tenant id must not be empty"));
        }
        if let Some(p) = parent {
            if !self.tenants.contains_key(p) {
                return Err(Error::invalid(format!(
                    "tenant {id}: parent tenant {p} does not exist"
                )));
            }
            if p == id {
                return Err(Error::invalid(format!(
                    "tenant {id} cannot be its own parent"
                )));
            }
        }
        match self.tenants.get(id) {
            Some(t) if t.parent.as_deref() != parent && parent.is_some() => Err(Error::conflict(
                format!("tenant {id} already exists with another parent"),
            )),
            Some(_) => Ok(()),
            None => {
                self.tenants.insert(
                    id.to_string(),
                    Tenant {
                        id: id.to_string(),
                        parent: parent.map(str::to_string),
                    },
                );
                Ok(())
            }
        }
    }

    /// Whether a client of tenant `actor` may act in tenant `target`: its own tenant, and any
    /// tenant below it through `parent` links.
    pub fn may_act_in(&self, actor: &str, target: &str) -> bool {
        let mut cur = Some(target);
        // The parent chain is acyclic by construction (parents must exist first); the bound
        // only guards against a hand-edited state file.
        for _ in 0..=self.tenants.len() {
            match cur {
                Some(t) if t == actor => return true,
                Some(t) => cur = self.tenants.get(t).and_then(|t| t.parent.as_deref()),
                None => return false,
            }
        }
        false
    }

    /// Adds the seed's tenants (parents first, whatever their order in the seed) and clients.
    /// A client whose client_id already exists is kept as it is: after a restart the state
    /// file, where the secret may have been rotated since, wins over the seed.
    /// Returns the client_ids that were skipped that way.
    pub fn apply_seed(&mut self, seed: &Seed) -> Result<Vec<String>> {
        let mut pending: Vec<&SeedTenant> = seed.tenants.iter().collect();
        while !pending.is_empty() {
            let before = pending.len();
            let mut rest = Vec::new();
            for t in pending {
                match t.parent.as_deref() {
                    Some(p) if !self.tenants.contains_key(p) => rest.push(t),
                    parent => self.add_tenant(&t.id, parent)?,
                }
            }
            if rest.len() == before {
                let ids: Vec<&str> = rest.iter().map(|t| t.id.as_str()).collect();
                return Err(Error::config(format!(
                    "seed tenants {} name a parent that does not exist (or a cycle)",
                    ids.join(", ")
                )));
            }
            pending = rest;
        }
        for o in &seed.orgs {
            self.add_tenant(&o.id, None)?;
        }
        let mut skipped = Vec::new();
        for o in &seed.orgs {
            for c in &o.clients {
                if self.by_client_id.contains_key(&c.client_id) {
                    skipped.push(c.client_id.clone());
                    continue;
                }
                self.add_seed_cisco_client(&o.id, c)?;
            }
        }
        for t in &seed.tenants {
            for c in &t.clients {
                if self.by_client_id.contains_key(&c.client_id) {
                    skipped.push(c.client_id.clone());
                    continue;
                }
                self.add_seed_client(&t.id, c)?;
            }
        }
        Ok(skipped)
    }

    pub fn add_seed_cisco_client(
        &mut self,
        org: &str,
        c: &super::SeedCiscoClient,
    ) -> Result<ClientRecord> {
        if c.client_id.is_empty() || c.password.is_empty() {
            return Err(Error::config(format!(
                "seed Cisco client in org {org}: client_id and password must not be empty"
            )));
        }
        let name = if c.name.is_empty() {
            c.client_id.clone()
        } else {
            c.name.clone()
        };
        self.insert_cisco_client(
            org,
            &name,
            "",
            &c.scopes,
            "org",
            Some(c.client_id.clone()),
            &c.password,
            None,
        )
    }

    pub fn add_seed_client(&mut self, tenant: &str, c: &SeedClient) -> Result<ClientRecord> {
        if c.client_id.is_empty() || c.secret.is_empty() {
            return Err(Error::config(format!(
                "seed client in tenant {tenant}: client_id and secret must not be empty"
            )));
        }
        if self.by_client_id.contains_key(&c.client_id) {
            return Err(Error::conflict(format!(
                "client {} already exists",
                c.client_id
            )));
        }
        let name = if c.name.is_empty() {
            c.client_id.clone()
        } else {
            c.name.clone()
        };
        self.insert_client(
            tenant,
            tenant,
            &name,
            &c.roles,
            Some(c.client_id.clone()),
            &c.secret,
            None,
        )
    }

    /// Creates a client. `roles` empty means Tenant Analyst. Every role must be known.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_client(
        &mut self,
        tenant: &str,
        owner_tenant: &str,
        name: &str,
        roles: &[String],
        client_id: Option<String>,
        secret: &str,
        created_by: Option<&str>,
    ) -> Result<ClientRecord> {
        if !self.tenants.contains_key(tenant) {
            return Err(Error::not_found(format!("tenant {tenant} does not exist")));
        }
        let mut role_ids: Vec<String> = Vec::new();
        for r in roles {
            if role_name(r).is_none() {
                return Err(Error::invalid(format!("unknown role {r}")));
            }
            if !role_ids.contains(r) {
                role_ids.push(r.clone());
            }
        }
        if role_ids.is_empty() {
            role_ids.push(TENANT_ANALYST_ROLE.to_string());
        }
        let client_id = client_id.unwrap_or_else(|| {
            loop {
                let id = random_alnum(32);
                if !self.by_client_id.contains_key(&id) {
                    break id;
                }
            }
        });
        let now = Utc::now();
        let mut rec = ClientRecord {
            platform: Platform::Taegis,
            scopes: Vec::new(),
            availability: String::new(),
            description: String::new(),
            id: uuid::Uuid::new_v4().to_string(),
            client_id,
            name: name.to_string(),
            tenant_id: tenant.to_string(),
            owner_tenant_id: owner_tenant.to_string(),
            role_assignments: role_ids
                .into_iter()
                .map(|role_id| RoleAssignment {
                    id: uuid::Uuid::new_v4().to_string(),
                    tenant_id: tenant.to_string(),
                    role_id,
                })
                .collect(),
            salt: String::new(),
            secret_hash: String::new(),
            secret_epoch: 1,
            created_at: now,
            updated_at: now,
            created_by: created_by.map(str::to_string),
            updated_by: created_by.map(str::to_string),
            token_request_time: None,
            token_request_count: 0,
            enabled: true,
        };
        rec.set_secret(secret);
        self.by_client_id
            .insert(rec.client_id.clone(), rec.id.clone());
        self.clients.insert(rec.id.clone(), rec.clone());
        Ok(rec)
    }

    pub fn client_by_object_id(&self, id: &str) -> Option<&ClientRecord> {
        self.clients.get(id)
    }

    pub fn client_by_client_id(&self, client_id: &str) -> Option<&ClientRecord> {
        self.by_client_id
            .get(client_id)
            .and_then(|id| self.clients.get(id))
    }

    /// A Taegis client by client_id (the Taegis token endpoint sees no Cisco client).
    pub fn taegis_client(&self, client_id: &str) -> Option<&ClientRecord> {
        self.client_by_client_id(client_id)
            .filter(|c| c.platform == Platform::Taegis)
    }

    /// A Cisco client by id (its id is its client id).
    pub fn cisco_client(&self, id: &str) -> Option<&ClientRecord> {
        self.client_by_client_id(id)
            .filter(|c| c.platform == Platform::Cisco)
    }

    /// The Cisco clients of an org, sorted by name then id.
    pub fn cisco_clients_of(&self, org: &str) -> Vec<&ClientRecord> {
        let mut v: Vec<&ClientRecord> = self
            .clients
            .values()
            .filter(|c| c.platform == Platform::Cisco && c.tenant_id == org)
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        v
    }

    /// Every client of a tenant or org, whatever its platform (the admin listing).
    pub fn all_clients_of(&self, tenant: &str) -> impl Iterator<Item = &ClientRecord> {
        self.clients.values().filter(move |c| c.tenant_id == tenant)
    }

    /// Creates a Cisco client in `org`: id `client-<uuid>` unless given, the client id too.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_cisco_client(
        &mut self,
        org: &str,
        name: &str,
        description: &str,
        scopes: &[String],
        availability: &str,
        client_id: Option<String>,
        password: &str,
        created_by: Option<&str>,
    ) -> Result<ClientRecord> {
        if !self.tenants.contains_key(org) {
            return Err(Error::not_found(format!("org {org} does not exist")));
        }
        let id = client_id.unwrap_or_else(|| format!("client-{}", uuid::Uuid::new_v4()));
        if self.by_client_id.contains_key(&id) {
            return Err(Error::conflict(format!("client {id} already exists")));
        }
        let mut unique: Vec<String> = Vec::new();
        for s in scopes {
            if !unique.contains(s) {
                unique.push(s.clone());
            }
        }
        let now = Utc::now();
        let mut rec = ClientRecord {
            platform: Platform::Cisco,
            scopes: unique,
            availability: availability.to_string(),
            description: description.to_string(),
            id: id.clone(),
            client_id: id,
            name: name.to_string(),
            tenant_id: org.to_string(),
            owner_tenant_id: org.to_string(),
            role_assignments: Vec::new(),
            salt: String::new(),
            secret_hash: String::new(),
            secret_epoch: 1,
            created_at: now,
            updated_at: now,
            created_by: created_by.map(str::to_string),
            updated_by: created_by.map(str::to_string),
            token_request_time: None,
            token_request_count: 0,
            enabled: true,
        };
        rec.set_secret(password);
        self.by_client_id
            .insert(rec.client_id.clone(), rec.id.clone());
        self.clients.insert(rec.id.clone(), rec.clone());
        Ok(rec)
    }

    /// Finds a client of `tenant` by object id or client_id. A client of another tenant is
    /// "not found", so nothing leaks across tenants.
    pub fn find_in_tenant(&self, tenant: &str, id: &str) -> Option<&ClientRecord> {
        self.client_by_object_id(id)
            .or_else(|| self.client_by_client_id(id))
            .filter(|c| c.tenant_id == tenant && c.platform == Platform::Taegis)
    }

    /// Records a successful token request.
    pub fn note_token_request(&mut self, object_id: &str) {
        if let Some(c) = self.clients.get_mut(object_id) {
            c.token_request_time = Some(Utc::now());
            c.token_request_count += 1;
        }
    }

    /// Sets a new secret and bumps the epoch, killing the old secret and all older tokens.
    pub fn rotate(&mut self, object_id: &str, secret: &str, by: &str) -> Result<ClientRecord> {
        let c = self
            .clients
            .get_mut(object_id)
            .ok_or_else(|| Error::not_found("client not found"))?;
        c.set_secret(secret);
        c.secret_epoch += 1;
        c.updated_at = Utc::now();
        c.updated_by = Some(by.to_string());
        Ok(c.clone())
    }

    pub fn delete(&mut self, object_id: &str) -> Result<ClientRecord> {
        let c = self
            .clients
            .remove(object_id)
            .ok_or_else(|| Error::not_found("client not found"))?;
        self.by_client_id.remove(&c.client_id);
        Ok(c)
    }

    /// The Taegis clients of a tenant.
    pub fn clients_of(&self, tenant: &str) -> impl Iterator<Item = &ClientRecord> {
        self.clients
            .values()
            .filter(move |c| c.tenant_id == tenant && c.platform == Platform::Taegis)
    }

    /// Filters, sorts and pages the clients of `tenant`.
    pub fn search(&self, tenant: &str, f: &SearchFilter) -> SearchResult {
        let scope: Vec<&ClientRecord> = self.clients_of(tenant).collect();
        let total_unfiltered_count = scope.len();
        let mut hits: Vec<&ClientRecord> = scope
            .into_iter()
            .filter(|c| f.name.as_deref().is_none_or(|p| like(p, &c.name)))
            .filter(|c| {
                f.client_ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&c.client_id))
            })
            .filter(|c| {
                f.role_ids
                    .as_ref()
                    .is_none_or(|ids| c.role_ids().any(|r| ids.iter().any(|i| i == r)))
            })
            .filter(|c| {
                f.tenant_ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&c.tenant_id))
            })
            .collect();
        let first_role_name = |c: &ClientRecord| {
            c.role_ids()
                .filter_map(role_name)
                .min()
                .unwrap_or_default()
                .to_string()
        };
        hits.sort_by(|a, b| {
            let primary = match f.sort_by {
                SortBy::Name => a.name.cmp(&b.name),
                SortBy::ClientId => a.client_id.cmp(&b.client_id),
                SortBy::RoleAssignmentName => first_role_name(a).cmp(&first_role_name(b)),
                SortBy::TokenRequestCount => a.token_request_count.cmp(&b.token_request_count),
                SortBy::TokenRequestTime => a.token_request_time.cmp(&b.token_request_time),
            };
            let primary = if f.descending {
                primary.reverse()
            } else {
                primary
            };
            // Ties broken by client_id so paging is stable.
            primary.then_with(|| a.client_id.cmp(&b.client_id))
        });
        let total_count = hits.len();
        let results = hits
            .into_iter()
            .skip(f.offset)
            .take(f.limit)
            .cloned()
            .collect();
        SearchResult {
            total_count,
            total_unfiltered_count,
            results,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_percent_runs_only() {
        assert!(like("abc", "abc"));
        assert!(!like("abc", "abcd"));
        assert!(like("rekey-%", "rekey-slot-g1"));
        assert!(like("%-g1", "rekey-slot-g1"));
        assert!(like("%slot%", "rekey-slot-g1"));
        assert!(like("r%s%1", "rekey-slot-g1"));
        assert!(like("%", ""));
        assert!(!like("a%a", "a"));
        assert!(like("a_b", "a_b"));
        assert!(!like("a_b", "axb"));
        assert!(!like("Rekey-%", "rekey-x"));
    }

    fn world() -> State {
        let mut s = State::new();
        s.add_tenant("1", None).unwrap();
        s.add_tenant("2", Some("1")).unwrap();
        s.add_tenant("3", Some("2")).unwrap();
        s.add_tenant("9", None).unwrap();
        s
    }

    #[test]
    fn tenants_act_in_themselves_and_descendants_only() {
        let s = world();
        assert!(s.may_act_in("1", "1"));
        assert!(s.may_act_in("1", "3"));
        assert!(!s.may_act_in("3", "1"));
        assert!(!s.may_act_in("1", "9"));
        assert!(!s.may_act_in("1", "nope"));
    }

    #[test]
    fn rotation_kills_the_old_secret_and_bumps_the_epoch() {
        let mut s = world();
        let c = s
            .insert_client("1", "1", "a", &[], None, "old-secret", None)
            .unwrap();
        assert_eq!(c.client_id.len(), 32);
        assert_eq!(c.role_assignments[0].role_id, TENANT_ANALYST_ROLE);
        assert!(c.secret_matches("old-secret"));
        let r = s.rotate(&c.id, "new-secret", "me").unwrap();
        assert!(!r.secret_matches("old-secret"));
        assert!(r.secret_matches("new-secret"));
        assert_eq!(r.secret_epoch, c.secret_epoch + 1);
        assert!(!format!("{r:?}").contains(&r.secret_hash));
    }

    #[test]
    fn unknown_roles_are_refused_and_lookups_stay_in_their_tenant() {
        let mut s = world();
        assert!(
            s.insert_client("1", "1", "a", &["nope".into()], None, "x", None)
                .is_err()
        );
        let c = s
            .insert_client("1", "1", "a", &[], None, "x", None)
            .unwrap();
        assert!(s.find_in_tenant("1", &c.id).is_some());
        assert!(s.find_in_tenant("1", &c.client_id).is_some());
        assert!(s.find_in_tenant("2", &c.client_id).is_none());
    }

    #[test]
    fn search_filters_sorts_and_pages() {
        let mut s = world();
        for n in ["b", "a", "c", "other"] {
            s.insert_client("1", "1", &format!("rekey-{n}"), &[], None, "x", None)
                .unwrap();
        }
        s.insert_client("2", "2", "rekey-z", &[], None, "x", None)
            .unwrap();
        let f = SearchFilter {
            name: Some("rekey-_".into()),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(s.search("1", &f).total_count, 0);
        let f = SearchFilter {
            name: Some("rekey-%".into()),
            offset: 1,
            limit: 2,
            ..Default::default()
        };
        let r = s.search("1", &f);
        assert_eq!(r.total_count, 4);
        assert_eq!(r.total_unfiltered_count, 4);
        let names: Vec<_> = r.results.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["rekey-b", "rekey-c"]);
    }

    #[test]
    fn seeds_may_list_children_before_parents_and_keep_stored_clients() {
        let seed: Seed = serde_json::from_str(
            r#"{"tenants": [
                {"id": "20", "parent": "10", "clients": [
                    {"client_id": "kid", "secret": "kid-secret-value"}]},
                {"id": "10", "clients": [
                    {"client_id": "boss", "secret": "boss-secret-value", "name": "Boss",
                     "roles": ["ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068"]}]}]}"#,
        )
        .unwrap();
        let mut s = State::new();
        assert!(s.apply_seed(&seed).unwrap().is_empty());
        assert!(s.may_act_in("10", "20"));
        let kid = s.client_by_client_id("kid").unwrap();
        assert_eq!(kid.name, "kid");
        assert!(!kid.is_tenant_admin());
        assert!(s.client_by_client_id("boss").unwrap().is_tenant_admin());
        // A rotated secret survives a second application of the same seed.
        let id = kid.id.clone();
        s.rotate(&id, "rotated-secret-value", "boss").unwrap();
        assert_eq!(s.apply_seed(&seed).unwrap(), ["kid", "boss"]);
        assert!(
            s.client_by_client_id("kid")
                .unwrap()
                .secret_matches("rotated-secret-value")
        );
        let orphan: Seed =
            serde_json::from_str(r#"{"tenants": [{"id": "30", "parent": "31"}]}"#).unwrap();
        assert!(State::new().apply_seed(&orphan).is_err());
    }

    #[test]
    fn state_round_trips_through_the_file_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut s = world();
        let c = s
            .insert_client("1", "1", "a", &[], None, "the-secret", None)
            .unwrap();
        s.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("the-secret"));
        let back = State::load(&path).unwrap().unwrap();
        assert_eq!(back.signing_key(), s.signing_key());
        let c2 = back.client_by_client_id(&c.client_id).unwrap();
        assert!(c2.secret_matches("the-secret"));
        assert!(State::load(&dir.path().join("missing")).unwrap().is_none());
    }
}
