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

mod config;
mod errors;
mod session;
mod store;
mod transport;

pub(crate) use config::parse_config;
pub use config::{VaultAuth, VaultBackendConfig};

use crate::backend::{Backend, BackendCapabilities};
use crate::check::is_valid_slot_name;
use crate::error::{Error, ErrorKind, Result};
use crate::record::{SlotRecord, StoredCredential, Versioned};
use async_trait::async_trait;
use errors::{classify_vault_error, found};
use futures_util::StreamExt;
use session::Session;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use store::ConsumerState;
use transport::{capabilities_self, exec_result};
use vaultrs::api::kv2::responses::ReadSecretMetadataResponse;

/// The folder, under `path_prefix`, holding rekey's state entries.
const STATE_DIR: &str = ".rekey/";
/// State entries read at once while listing.
const LIST_READS: usize = 16;

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
        crate::backend::common::check_slot(&self.config.name, slot)
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
        // Unprefixed: `named` says which backend.
        crate::backend::common::check_record(slot, record)?;
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

    /// Owned slot names, leaving out `known` ones unread (see `Backend::list`).
    async fn do_list(&self, known: &BTreeSet<String>) -> Result<Vec<String>> {
        let client = self.client().await?;
        let dir = format!("{}{STATE_DIR}", self.config.path_prefix);
        let req = vaultrs::api::kv2::requests::ListSecretsRequest::builder()
            .mount(&self.config.mount)
            .path(&dir)
            .build()
            .map_err(|e| Error::internal(format!("KV list request: {e}")))?;
        let listed = found(exec_result(client.as_ref(), req).await, || {
            format!("list {}", self.shown(&dir))
        })?;
        let Some(keys) = listed.map(|r| r.keys) else {
            return Ok(Vec::new());
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
