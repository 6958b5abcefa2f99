//! What both platforms' records share: tenants (Cisco orgs live in the same table), the part
//! of an API client every platform has, the table that holds a platform's clients, and the
//! helpers for secrets and times. Each platform's own fields and rules are in its folder
//! (`taegis/state.rs`, `cisco/state.rs`); `world.rs` puts the tables together and saves them.
//!
//! Secrets are never kept: a client stores a salted SHA-256 of its secret and a `secret_epoch`
//! that every token carries, so rotating or deleting a client kills its old secret and every
//! token minted before, at once.

use crate::error::{Error, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Tenant {
    pub id: String,
    pub parent: Option<String>,
}

/// Tenants and Cisco orgs, by id, with their parent links.
#[derive(Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Tenants(BTreeMap<String, Tenant>);

impl Tenants {
    pub fn get(&self, id: &str) -> Option<&Tenant> {
        self.0.get(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }

    pub fn add(&mut self, id: &str, parent: Option<&str>) -> Result<()> {
        if id.is_empty() {
            return Err(Error::invalid("tenant id must not be empty"));
        }
        if let Some(p) = parent {
            if !self.0.contains_key(p) {
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
        match self.0.get(id) {
            Some(t) if t.parent.as_deref() != parent && parent.is_some() => Err(Error::conflict(
                format!("tenant {id} already exists with another parent"),
            )),
            Some(_) => Ok(()),
            None => {
                self.0.insert(
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
        for _ in 0..=self.0.len() {
            match cur {
                Some(t) if t == actor => return true,
                Some(t) => cur = self.0.get(t).and_then(|t| t.parent.as_deref()),
                None => return false,
            }
        }
        false
    }
}

/// Which API a client belongs to: each platform's endpoints see only their own clients.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    #[default]
    Taegis,
    Cisco,
}

/// What every API client has, whatever its platform. Holds no secret: only `secret_hash`
/// (hex SHA-256 of salt and secret).
#[derive(Serialize, Deserialize, Clone)]
pub struct ClientRecord {
    #[serde(default)]
    pub platform: Platform,
    /// Object id (UUID v4 for Taegis; the client id for Cisco).
    pub id: String,
    /// The CLIENT_ID.
    pub client_id: String,
    pub name: String,
    pub tenant_id: String,
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
    /// A new, enabled client at epoch 1 with `secret` set.
    pub fn new(
        platform: Platform,
        id: String,
        client_id: String,
        name: &str,
        tenant: &str,
        secret: &str,
        created_by: Option<&str>,
    ) -> Self {
        let now = Utc::now();
        let mut rec = ClientRecord {
            platform,
            id,
            client_id,
            name: name.to_string(),
            tenant_id: tenant.to_string(),
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
        rec
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

    /// Sets a new secret and bumps the epoch, killing the old secret and all older tokens.
    pub fn rotate(&mut self, secret: &str, by: &str) {
        self.set_secret(secret);
        self.secret_epoch += 1;
        self.updated_at = Utc::now();
        self.updated_by = Some(by.to_string());
    }

    #[cfg(test)]
    pub fn secret_hash(&self) -> &str {
        &self.secret_hash
    }
}

/// A platform's client type: its own fields around a [`ClientRecord`].
pub trait Record: std::ops::Deref<Target = ClientRecord> + std::ops::DerefMut {}

impl<R: std::ops::Deref<Target = ClientRecord> + std::ops::DerefMut> Record for R {}

/// One platform's clients, by object id, with an index by client_id.
pub struct Table<R> {
    clients: BTreeMap<String, R>,
    by_client_id: HashMap<String, String>,
}

impl<R> Default for Table<R> {
    fn default() -> Self {
        Table {
            clients: BTreeMap::new(),
            by_client_id: HashMap::new(),
        }
    }
}

impl<R: Record> Table<R> {
    /// Adds (or replaces) a record.
    pub fn put(&mut self, rec: R) {
        self.by_client_id
            .insert(rec.client_id.clone(), rec.id.clone());
        self.clients.insert(rec.id.clone(), rec);
    }

    pub fn get(&self, object_id: &str) -> Option<&R> {
        self.clients.get(object_id)
    }

    pub fn get_mut(&mut self, object_id: &str) -> Option<&mut R> {
        self.clients.get_mut(object_id)
    }

    pub fn by_client_id(&self, client_id: &str) -> Option<&R> {
        self.by_client_id
            .get(client_id)
            .and_then(|id| self.clients.get(id))
    }

    pub fn values(&self) -> impl Iterator<Item = &R> {
        self.clients.values()
    }

    pub fn remove(&mut self, object_id: &str) -> Result<R> {
        let c = self
            .clients
            .remove(object_id)
            .ok_or_else(|| Error::not_found("client not found"))?;
        self.by_client_id.remove(&c.client_id);
        Ok(c)
    }

    /// Records a successful token request, made at `at` (the emulator's clock: [`World::now`]).
    ///
    /// [`World::now`]: super::world::World::now
    pub fn note_token_request(&mut self, object_id: &str, at: chrono::DateTime<Utc>) {
        if let Some(c) = self.clients.get_mut(object_id) {
            c.token_request_time = Some(at);
            c.token_request_count += 1;
        }
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

/// The seed's name for a client, or its client_id when it has none.
pub fn name_or_id(name: &str, client_id: &str) -> String {
    if name.is_empty() {
        client_id.to_string()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> Tenants {
        let mut s = Tenants::default();
        s.add("1", None).unwrap();
        s.add("2", Some("1")).unwrap();
        s.add("3", Some("2")).unwrap();
        s.add("9", None).unwrap();
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
}
