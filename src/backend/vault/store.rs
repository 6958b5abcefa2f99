//! KV v2 storage: reads, compare-and-set writes and deletes of the consumer and state entries.

use super::VaultBackend;
use super::errors::{classify_vault_error, found};
use super::transport::{VaultConn, exec_empty, exec_result};
use crate::error::{Error, ErrorKind, Result};
use crate::record::{MANAGED_BY, SlotRecord, StoredCredential, Versioned};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use vaultrs::api::kv2::requests::{
    DeleteSecretVersionsRequest, ReadSecretMetadataRequest, ReadSecretRequest,
    SetSecretMetadataRequest, SetSecretRequest, SetSecretRequestOptions,
};
use vaultrs::api::kv2::responses::ReadSecretMetadataResponse;

/// What consumers read at `<path_prefix><slot>`.
#[derive(Serialize, Deserialize)]
pub(super) struct ConsumerEntry {
    pub(super) client_id: String,
    pub(super) client_secret: String,
    pub(super) tenant: String,
    pub(super) generation: u64,
    pub(super) rotated_at: String,
    pub(super) slot: String,
    pub(super) managed_by: String,
}

/// A live consumer entry as read: its version and what it shows.
pub(super) struct ConsumerState {
    pub(super) version: u64,
    /// `None` when the latest version is deleted (the path exists, metadata kept).
    pub(super) shown: Option<ConsumerEntry>,
}
impl VaultBackend {
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
        let read = found(exec_result(client, req).await, || {
            format!("read {}", self.shown(path))
        })?;
        Ok(read.map(|r| (r.data, r.metadata.version)))
    }

    pub(super) async fn read_metadata(
        &self,
        client: &VaultConn,
        path: &str,
    ) -> Result<Option<ReadSecretMetadataResponse>> {
        let req = ReadSecretMetadataRequest::builder()
            .mount(&self.config.mount)
            .path(path)
            .build()
            .map_err(|e| Error::internal(format!("KV metadata request: {e}")))?;
        found(exec_result(client, req).await, || {
            format!("read metadata of {}", self.shown(path))
        })
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
    pub(super) async fn consumer(
        &self,
        client: &VaultConn,
        slot: &str,
    ) -> Result<Option<ConsumerState>> {
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
    pub(super) async fn sync_consumer(
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

    pub(super) fn decode(
        &self,
        slot: &str,
        path: &str,
        data: serde_json::Value,
    ) -> Result<SlotRecord> {
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

    pub(super) async fn read_state(
        &self,
        client: &VaultConn,
        slot: &str,
    ) -> Result<Option<Versioned>> {
        let path = self.state_path(slot);
        match self.read_data(client, &path).await? {
            Some((data, version)) => Ok(Some(Versioned {
                record: self.decode(slot, &path, data)?,
                version,
            })),
            None => Ok(None),
        }
    }

    /// The state entry's compare-and-set write (see `do_write`).
    pub(super) async fn put_state(
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

    pub(super) async fn delete_version(
        &self,
        client: &VaultConn,
        path: &str,
        version: u64,
    ) -> Result<()> {
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
}
