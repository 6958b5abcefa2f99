//! Everything the emulator remembers: the tenants, both platforms' clients, the token-signing
//! key; the seed applied to them; and the state file.
//!
//! The state file (JSON, mode 0600, replaced atomically) holds the secret hashes and the
//! token-signing key, so a restarted emulator keeps its clients and still honours the tokens
//! it handed out. Its `clients` map holds both platforms' clients, each with its `platform`.

use super::cisco::state as cisco;
use super::seed::{Seed, SeedCiscoClient, SeedClient, SeedTenant};
use super::state::{Platform, Tenant, Tenants, name_or_id};
use super::taegis::state as taegis;
use crate::error::{Error, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

const STATE_VERSION: u32 = 1;

/// The emulator's state, under one lock.
pub struct World {
    /// HS256 key for tokens, base64. Persisted so tokens survive a restart like secrets do.
    signing_key: String,
    pub tenants: Tenants,
    pub taegis: taegis::Clients,
    pub cisco: cisco::Clients,
    /// How far the emulator's clock for recorded use (each client's last token) stands from
    /// real time, so a test or the demo that moves rekey's clock forward can play a consumer
    /// that gets a token "now" in that later time. Not saved.
    pub clock_offset: chrono::Duration,
}

/// The state file as written.
#[derive(Serialize)]
struct FileOut<'a> {
    version: u32,
    signing_key: &'a str,
    tenants: &'a Tenants,
    /// By object id.
    clients: BTreeMap<&'a str, StoredClient<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum StoredClient<'a> {
    Taegis(&'a taegis::Client),
    Cisco(&'a cisco::Client),
}

/// The state file as read: each client by its `platform` (Taegis when absent).
#[derive(Deserialize)]
struct FileIn {
    version: u32,
    signing_key: String,
    tenants: Tenants,
    clients: BTreeMap<String, serde_json::Value>,
}

impl World {
    pub fn new() -> Self {
        use base64::Engine;
        let key: [u8; 32] = rand::rng().random();
        World {
            signing_key: base64::engine::general_purpose::STANDARD.encode(key),
            tenants: Tenants::default(),
            taegis: taegis::Clients::default(),
            cisco: cisco::Clients::default(),
            clock_offset: chrono::Duration::zero(),
        }
    }

    /// The time the emulator records a client's use at.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.clock_offset
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
        let invalid = |e: serde_json::Error| {
            Error::config(format!(
                "emulator state file {} is not valid",
                path.display()
            ))
            .with_source(e)
        };
        let file: FileIn = serde_json::from_slice(&bytes).map_err(invalid)?;
        if file.version != STATE_VERSION {
            return Err(Error::config(format!(
                "emulator state file {} has version {}, expected {STATE_VERSION}",
                path.display(),
                file.version
            )));
        }
        let mut world = World {
            signing_key: file.signing_key,
            tenants: file.tenants,
            taegis: Default::default(),
            cisco: Default::default(),
            clock_offset: chrono::Duration::zero(),
        };
        if world.signing_key().len() < 32 {
            return Err(Error::config(format!(
                "emulator state file {} has no usable signing key",
                path.display()
            )));
        }
        for (_, v) in file.clients {
            let platform = match v.get("platform") {
                Some(p) => Platform::deserialize(p).map_err(invalid)?,
                None => Platform::Taegis,
            };
            match platform {
                Platform::Taegis => world
                    .taegis
                    .put(serde_json::from_value(v).map_err(invalid)?),
                Platform::Cisco => world.cisco.put(serde_json::from_value(v).map_err(invalid)?),
            }
        }
        Ok(Some(world))
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
        let clients = self
            .taegis
            .values()
            .map(|c| (c.id.as_str(), StoredClient::Taegis(c)))
            .chain(
                self.cisco
                    .values()
                    .map(|c| (c.id.as_str(), StoredClient::Cisco(c))),
            )
            .collect();
        let file = FileOut {
            version: STATE_VERSION,
            signing_key: &self.signing_key,
            tenants: &self.tenants,
            clients,
        };
        let json = serde_json::to_vec_pretty(&file)
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
        self.tenants.add(id, parent)
    }

    pub fn may_act_in(&self, actor: &str, target: &str) -> bool {
        self.tenants.may_act_in(actor, target)
    }

    /// Whether a client of either platform has this client_id.
    pub fn client_id_taken(&self, client_id: &str) -> bool {
        self.taegis.by_client_id(client_id).is_some()
            || self.cisco.by_client_id(client_id).is_some()
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
                    Some(p) if !self.tenants.contains(p) => rest.push(t),
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
                if self.client_id_taken(&c.client_id) {
                    skipped.push(c.client_id.clone());
                    continue;
                }
                self.add_seed_cisco_client(&o.id, c)?;
            }
        }
        for t in &seed.tenants {
            for c in &t.clients {
                if self.client_id_taken(&c.client_id) {
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
        c: &SeedCiscoClient,
    ) -> Result<cisco::Client> {
        if c.client_id.is_empty() || c.password.is_empty() {
            return Err(Error::config(format!(
                "seed Cisco client in org {org}: client_id and password must not be empty"
            )));
        }
        self.insert_cisco_client(
            org,
            &name_or_id(&c.name, &c.client_id),
            "",
            &c.scopes,
            "org",
            Some(c.client_id.clone()),
            &c.password,
            None,
        )
    }

    pub fn add_seed_client(&mut self, tenant: &str, c: &SeedClient) -> Result<taegis::Client> {
        if c.client_id.is_empty() || c.secret.is_empty() {
            return Err(Error::config(format!(
                "seed client in tenant {tenant}: client_id and secret must not be empty"
            )));
        }
        if self.client_id_taken(&c.client_id) {
            return Err(Error::conflict(format!(
                "client {} already exists",
                c.client_id
            )));
        }
        self.insert_client(
            tenant,
            tenant,
            &name_or_id(&c.name, &c.client_id),
            &c.roles,
            Some(c.client_id.clone()),
            &c.secret,
            None,
        )
    }

    /// Creates a Taegis client in `tenant`. `roles` empty means Tenant Analyst. Every role
    /// must be known.
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
    ) -> Result<taegis::Client> {
        if !self.tenants.contains(tenant) {
            return Err(Error::not_found(format!("tenant {tenant} does not exist")));
        }
        let client_id = match client_id {
            Some(id) => id,
            None => taegis::new_client_id(|id| self.client_id_taken(id)),
        };
        let rec = taegis::Client::new(
            tenant,
            owner_tenant,
            name,
            roles,
            client_id,
            secret,
            created_by,
        )?;
        self.taegis.put(rec.clone());
        Ok(rec)
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
    ) -> Result<cisco::Client> {
        if !self.tenants.contains(org) {
            return Err(Error::not_found(format!("org {org} does not exist")));
        }
        let id = client_id.unwrap_or_else(cisco::Client::new_id);
        if self.client_id_taken(&id) {
            return Err(Error::conflict(format!("client {id} already exists")));
        }
        let rec = cisco::Client::new(
            org,
            name,
            description,
            scopes,
            availability,
            id,
            password,
            created_by,
        );
        self.cisco.put(rec.clone());
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::taegis::state::{SearchFilter, TENANT_ANALYST_ROLE};

    fn world() -> World {
        let mut s = World::new();
        s.add_tenant("1", None).unwrap();
        s.add_tenant("2", Some("1")).unwrap();
        s.add_tenant("3", Some("2")).unwrap();
        s.add_tenant("9", None).unwrap();
        s
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
        let r = s.taegis.rotate(&c.id, "new-secret", "me").unwrap();
        assert!(!r.secret_matches("old-secret"));
        assert!(r.secret_matches("new-secret"));
        assert_eq!(r.secret_epoch, c.secret_epoch + 1);
        assert!(!format!("{r:?}").contains(r.secret_hash()));
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
        assert!(s.taegis.find_in_tenant("1", &c.id).is_some());
        assert!(s.taegis.find_in_tenant("1", &c.client_id).is_some());
        assert!(s.taegis.find_in_tenant("2", &c.client_id).is_none());
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
        assert_eq!(s.taegis.search("1", &f).total_count, 0);
        let f = SearchFilter {
            name: Some("rekey-%".into()),
            offset: 1,
            limit: 2,
            ..Default::default()
        };
        let r = s.taegis.search("1", &f);
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
        let mut s = World::new();
        assert!(s.apply_seed(&seed).unwrap().is_empty());
        assert!(s.may_act_in("10", "20"));
        let kid = s.taegis.by_client_id("kid").unwrap();
        assert_eq!(kid.name, "kid");
        assert!(!kid.is_tenant_admin());
        assert!(s.taegis.by_client_id("boss").unwrap().is_tenant_admin());
        // A rotated secret survives a second application of the same seed.
        let id = kid.id.clone();
        s.taegis
            .rotate(&id, "rotated-secret-value", "boss")
            .unwrap();
        assert_eq!(s.apply_seed(&seed).unwrap(), ["kid", "boss"]);
        assert!(
            s.taegis
                .by_client_id("kid")
                .unwrap()
                .secret_matches("rotated-secret-value")
        );
        let orphan: Seed =
            serde_json::from_str(r#"{"tenants": [{"id": "30", "parent": "31"}]}"#).unwrap();
        assert!(World::new().apply_seed(&orphan).is_err());
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
        let org = s
            .insert_cisco_client("9", "b", "", &["oauth".into()], "org", None, "pw", None)
            .unwrap();
        s.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("the-secret"));
        let back = World::load(&path).unwrap().unwrap();
        assert_eq!(back.signing_key(), s.signing_key());
        let c2 = back.taegis.by_client_id(&c.client_id).unwrap();
        assert!(c2.secret_matches("the-secret"));
        let o2 = back.cisco.by_client_id(&org.client_id).unwrap();
        assert!(o2.secret_matches("pw"));
        assert_eq!(o2.scopes, ["oauth"]);
        assert!(back.taegis.by_client_id(&org.client_id).is_none());
        assert!(World::load(&dir.path().join("missing")).unwrap().is_none());
    }
}
