//! The SDK calls of a slot's secret (describe, get, put, move a label, create, restore,
//! delete, list) and the write, read and delete built from them (the steps in the module
//! docs of `backend::aws`).

use super::errors::classify_aws_error;
use super::stages::{
    EnvelopeIn, EnvelopeOut, SecretState, StageOp, WriteStart, consumer_view, plan_view,
    record_token, start_write, token, version_of, view_token,
};
use super::{AwsBackend, NEXT_STAGE, PENDING_STAGE, RECORD_STAGE, TAG_MANAGED_BY, TAG_SLOT};
use crate::backend::common::check_write;
use crate::check::is_valid_slot_name;
use crate::error::{Error, ErrorKind, Result};
use crate::record::{MANAGED_BY, SlotRecord, Versioned};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};
use serde::Deserialize;
use std::collections::HashMap;

impl AwsBackend {
    /// `DescribeSecret`: existence, ownership, deletion, labels.
    async fn describe(&self, slot: &str) -> Result<SecretState> {
        let client = self.client().await?;
        let name = self.secret_name(slot);
        match client.describe_secret().secret_id(&name).send().await {
            Ok(out) => {
                let tags: HashMap<&str, &str> = out
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?, t.value()?)))
                    .collect();
                Ok(SecretState {
                    exists: true,
                    owned: tags.get(TAG_MANAGED_BY) == Some(&MANAGED_BY)
                        && tags.get(TAG_SLOT) == Some(&slot),
                    deleted: out.deleted_date().is_some(),
                    stages: out.version_ids_to_stages().cloned().unwrap_or_default(),
                })
            }
            Err(e) => {
                let e = classify_aws_error(e, &format!("{}: DescribeSecret", self.ctx(slot)));
                if e.kind() == ErrorKind::NotFound {
                    Ok(SecretState::default())
                } else {
                    Err(e)
                }
            }
        }
    }

    /// `GetSecretValue` of the version holding `stage` (always an explicit stage).
    pub(super) async fn get_stage(
        &self,
        slot: &str,
        stage: &str,
    ) -> Result<Option<(String, zeroize::Zeroizing<String>)>> {
        let client = self.client().await?;
        match client
            .get_secret_value()
            .secret_id(self.secret_name(slot))
            .version_stage(stage)
            .send()
            .await
        {
            Ok(out) => {
                let id = out.version_id().unwrap_or_default().to_string();
                let value =
                    zeroize::Zeroizing::new(out.secret_string().unwrap_or_default().to_string());
                Ok(Some((id, value)))
            }
            Err(e) => {
                let e = classify_aws_error(e, &format!("{}: GetSecretValue", self.ctx(slot)));
                match e.kind() {
                    // Missing secret or no version with that label (or, Conflict: the
                    // secret is scheduled for deletion): the caller asks DescribeSecret.
                    ErrorKind::NotFound | ErrorKind::Conflict => Ok(None),
                    _ => Err(e),
                }
            }
        }
    }

    fn decode(&self, slot: &str, value: &str) -> Result<SlotRecord> {
        let env: EnvelopeIn = serde_json::from_str(value).map_err(|_| {
            Error::malformed(format!(
                "{}: the {RECORD_STAGE} version is not a rekey record this version can read",
                self.ctx(slot)
            ))
        })?;
        if !env.record.is_managed() || env.record.slot != slot {
            return Err(Error::conflict(format!(
                "{}: the record is not rekey's record of this slot; refusing to touch it",
                self.ctx(slot)
            )));
        }
        Ok(env.record)
    }

    async fn put(
        &self,
        slot: &str,
        value: &str,
        token: &str,
        stage: &str,
        what: &str,
    ) -> Result<()> {
        self.client()
            .await?
            .put_secret_value()
            .secret_id(self.secret_name(slot))
            .secret_string(value)
            .client_request_token(token)
            .version_stages(stage)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                classify_aws_error(e, &format!("{}: PutSecretValue ({what})", self.ctx(slot)))
            })
    }

    async fn move_stage(
        &self,
        slot: &str,
        stage: &str,
        to: Option<&str>,
        from: Option<&str>,
    ) -> Result<()> {
        self.client()
            .await?
            .update_secret_version_stage()
            .secret_id(self.secret_name(slot))
            .version_stage(stage)
            .set_move_to_version_id(to.map(str::to_string))
            .set_remove_from_version_id(from.map(str::to_string))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                classify_aws_error(
                    e,
                    &format!("{}: UpdateSecretVersionStage ({stage})", self.ctx(slot)),
                )
            })
    }

    async fn create(&self, slot: &str, record: &SlotRecord, token: &str) -> Result<()> {
        let cfg = &self.inner.config;
        let view = consumer_view(record, record.current.as_ref());
        let mut req = self
            .client()
            .await?
            .create_secret()
            .name(self.secret_name(slot))
            .description(format!(
                "Managed by rekey (slot {slot}). Consumers read the version labelled AWSCURRENT."
            ))
            .secret_string(view.as_str())
            .client_request_token(token)
            .tags(Tag::builder().key(TAG_MANAGED_BY).value(MANAGED_BY).build())
            .tags(Tag::builder().key(TAG_SLOT).value(slot).build());
        if let Some(k) = &cfg.kms_key_id {
            req = req.kms_key_id(k);
        }
        req.send()
            .await
            .map(|_| ())
            .map_err(|e| classify_aws_error(e, &format!("{}: CreateSecret", self.ctx(slot))))
    }

    pub(super) async fn write_inner(
        &self,
        slot: &str,
        record: &SlotRecord,
        expected: Option<u64>,
    ) -> Result<u64> {
        check_write(&self.inner.config.name, slot, record)?;
        let value = zeroize::Zeroizing::new(
            serde_json::to_string(&EnvelopeOut {
                rekey_record: 1,
                record,
            })
            .map_err(|_| Error::internal(format!("slot {slot}: cannot encode the record")))?,
        );
        let nonce: [u8; 16] = if expected.is_none() {
            rand::random()
        } else {
            [0; 16]
        };
        let my = record_token(slot, expected, &value, &nonce);
        let conflict = |why: &str| {
            Error::conflict(format!(
                "{}: {why} (expected {})",
                self.ctx(slot),
                expected.map_or_else(|| "no entry".to_string(), |v| format!("version {v}"))
            ))
        };
        let state = self.describe(slot).await?;
        let start = start_write(&state, expected, &my);
        // Only an update sees the labels as they are; a create or restore just changed them.
        let early_view = matches!(start, WriteStart::Put { .. });
        let remove_from = match start {
            WriteStart::Conflict(why) => return Err(conflict(&why)),
            WriteStart::Done => None,
            WriteStart::Create => {
                let create_token = token(&[b"rekey-create", my.as_bytes()]);
                self.create(slot, record, &create_token).await?;
                Some(None)
            }
            WriteStart::Restore => {
                self.client()
                    .await?
                    .restore_secret()
                    .secret_id(self.secret_name(slot))
                    .send()
                    .await
                    .map_err(|e| {
                        classify_aws_error(e, &format!("{}: RestoreSecret", self.ctx(slot)))
                    })?;
                // Restored with its old labels: the record label, if any, is the base.
                Some(state.holder(RECORD_STAGE).map(str::to_string))
            }
            WriteStart::Put { remove_from } => Some(remove_from),
        };
        if let Some(remove_from) = remove_from {
            self.put(slot, &value, &my, NEXT_STAGE, "record").await?;
            if early_view {
                self.current_view_first(slot, record, &state).await?;
            }
            crate::crash::point("aws-after-record-put");
            if let Err(e) = self
                .move_stage(slot, RECORD_STAGE, Some(&my), remove_from.as_deref())
                .await
            {
                // Did it land anyway (a retry after a lost answer)? Ask the store.
                let Ok(after) = self.describe(slot).await else {
                    return Err(e);
                };
                if after.holders(RECORD_STAGE) != [my.as_str()] {
                    return Err(if e.is_temporary() {
                        e
                    } else {
                        conflict("another run wrote first")
                    });
                }
            }
            if remove_from.is_none() {
                // No conditional was possible on the label itself: a store that does not
                // refuse to attach it twice (moto) is caught here; AWS never gets here.
                let after = self.describe(slot).await?;
                if after.holders(RECORD_STAGE).len() > 1 {
                    let _ = self.move_stage(slot, RECORD_STAGE, None, Some(&my)).await;
                    return Err(conflict("another run created the entry at the same time"));
                }
            }
        }
        crate::crash::point("aws-after-record-commit");
        self.sync_view(slot, record, &my).await?;
        Ok(version_of(&my))
    }

    /// Step 2's consumer part: `AWSCURRENT` onto the record's current pair before the
    /// commit (`AWSPENDING` is left to step 4). A writer that then loses its
    /// compare-and-set is set right by the winner's step 4.
    async fn current_view_first(
        &self,
        slot: &str,
        record: &SlotRecord,
        state: &SecretState,
    ) -> Result<()> {
        let Some(current) = record.current.as_ref() else {
            return Ok(());
        };
        let view = consumer_view(record, Some(current));
        let ct = view_token(slot, &view);
        let keep_pending = state.holder(PENDING_STAGE);
        let ops = plan_view(state, keep_pending, Some(&ct));
        let moves = !ops.is_empty();
        for op in ops {
            match op {
                StageOp::Put { token, stage, .. } => {
                    self.put(slot, &view, &token, stage, "consumer view")
                        .await?
                }
                StageOp::Move { stage, to, from } => {
                    self.move_stage(slot, stage, to.as_deref(), from.as_deref())
                        .await?
                }
            }
        }
        if moves {
            // Consumers read the new pair now; the record does not say so yet.
            crate::crash::point("aws-after-current-view");
        }
        Ok(())
    }

    /// Step 4: the consumer labels follow the record just committed under `mine`.
    async fn sync_view(&self, slot: &str, record: &SlotRecord, mine: &str) -> Result<()> {
        let state = self.describe(slot).await?;
        if state.holder(RECORD_STAGE) != Some(mine) {
            // A later write won; its writer owns the view now.
            return Ok(());
        }
        let pending = record
            .pending
            .as_ref()
            .map(|c| consumer_view(record, Some(c)));
        let current = record
            .current
            .as_ref()
            .map(|c| consumer_view(record, Some(c)));
        let pt = pending.as_ref().map(|v| view_token(slot, v));
        let ct = current.as_ref().map(|v| view_token(slot, v));
        for op in plan_view(&state, pt.as_deref(), ct.as_deref()) {
            match op {
                StageOp::Put {
                    token,
                    stage,
                    pending: is_pending,
                } => {
                    let v = if is_pending { &pending } else { &current };
                    let v = v.as_ref().expect("planned from it");
                    self.put(slot, v, &token, stage, "consumer view").await?
                }
                StageOp::Move { stage, to, from } => {
                    self.move_stage(slot, stage, to.as_deref(), from.as_deref())
                        .await?
                }
            }
        }
        Ok(())
    }

    pub(super) async fn read_inner(&self, slot: &str) -> Result<Option<Versioned>> {
        self.check_slot(slot)?;
        let got = match self.get_stage(slot, RECORD_STAGE).await {
            Ok(got) => got,
            // The IAM policy (examples/aws-iam-policy.json) conditions reads on rekey's tags, so AWS denies reading a
            // secret that does not exist yet (or is not ours): DescribeSecret tells which.
            Err(e) if e.kind() == ErrorKind::Forbidden => {
                let state = self.describe(slot).await?;
                if state.exists && state.owned && !state.deleted {
                    return Err(e);
                }
                None
            }
            Err(e) => return Err(e),
        };
        if let Some((id, value)) = got {
            let record = self.decode(slot, &value)?;
            // One call on the common path: only rekey puts REKEY_RECORD on a version, and
            // the record itself names rekey and this slot (checked in `decode`); the tags
            // are checked by every write before anything is changed.
            return Ok(Some(Versioned {
                record,
                version: version_of(&id),
            }));
        }
        let state = self.describe(slot).await?;
        if state.exists && !state.owned {
            return Err(Error::conflict(format!(
                "{}: the secret is not tagged as rekey's ({TAG_MANAGED_BY}, {TAG_SLOT}); refusing to touch it",
                self.ctx(slot)
            )));
        }
        // Missing, scheduled for deletion, or a create interrupted before its record.
        Ok(None)
    }

    pub(super) async fn delete_inner(&self, slot: &str, expected: u64) -> Result<()> {
        self.check_slot(slot)?;
        let state = self.describe(slot).await?;
        let conflict = |why: &str| {
            Error::conflict(format!(
                "{}: {why} (expected version {expected})",
                self.ctx(slot)
            ))
        };
        if !state.exists || state.deleted {
            return Err(conflict("the entry no longer exists"));
        }
        if !state.owned {
            return Err(conflict("the secret is not tagged as rekey's"));
        }
        let Some(id) = state.holder(RECORD_STAGE).map(str::to_string) else {
            return Err(conflict("the entry holds no record"));
        };
        if version_of(&id) != expected {
            return Err(conflict("another run wrote first"));
        }
        // The conditional: from here on the entry reads as none.
        if let Err(e) = self.move_stage(slot, RECORD_STAGE, None, Some(&id)).await {
            let Ok(after) = self.describe(slot).await else {
                return Err(e);
            };
            if after.holder(RECORD_STAGE).is_some() {
                return Err(if e.is_temporary() {
                    e
                } else {
                    conflict("another run wrote first")
                });
            }
        }
        crate::crash::point("aws-after-record-removed");
        self.client()
            .await?
            .delete_secret()
            .secret_id(self.secret_name(slot))
            .recovery_window_in_days(self.inner.config.recovery_window_days)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify_aws_error(e, &format!("{}: DeleteSecret", self.ctx(slot))))
    }

    pub(super) async fn list_inner(&self) -> Result<Vec<String>> {
        let client = self.client().await?;
        let prefix = &self.inner.config.prefix;
        let mut slots = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut req = client
                .list_secrets()
                .max_results(100)
                .filters(
                    Filter::builder()
                        .key(FilterNameStringType::TagKey)
                        .values(TAG_MANAGED_BY)
                        .build(),
                )
                .set_next_token(next.take());
            if !prefix.is_empty() {
                req = req.filters(
                    Filter::builder()
                        .key(FilterNameStringType::Name)
                        .values(prefix)
                        .build(),
                );
            }
            let out = req.send().await.map_err(|e| {
                classify_aws_error(
                    e,
                    &format!("backend {}: ListSecrets", self.inner.config.name),
                )
            })?;
            for s in out.secret_list() {
                let Some(slot) = s.name().and_then(|n| n.strip_prefix(prefix.as_str())) else {
                    continue;
                };
                let tags: HashMap<&str, &str> = s
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?, t.value()?)))
                    .collect();
                let owned = tags.get(TAG_MANAGED_BY) == Some(&MANAGED_BY)
                    && tags.get(TAG_SLOT) == Some(&slot);
                let has_record = s
                    .secret_versions_to_stages()
                    .is_some_and(|m| m.values().any(|st| st.iter().any(|l| l == RECORD_STAGE)));
                if owned && has_record && s.deleted_date().is_none() && is_valid_slot_name(slot) {
                    slots.push(slot.to_string());
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        slots.sort();
        slots.dedup();
        Ok(slots)
    }

    /// What consumers read: the pair under `AWSCURRENT` (see `Backend::consumer_view`).
    pub(super) async fn consumer_view_inner(
        &self,
        slot: &str,
    ) -> Result<Option<crate::backend::ConsumerView>> {
        self.check_slot(slot)?;
        let Some((_, value)) = self.get_stage(slot, "AWSCURRENT").await? else {
            return Ok(None);
        };
        #[derive(Deserialize)]
        struct Shown {
            client_id: Option<String>,
            client_secret: Option<String>,
            #[serde(default)]
            generation: u64,
        }
        let shown: Shown = serde_json::from_str(&value).map_err(|_| {
            Error::malformed(format!(
                "{}: the AWSCURRENT version is not the JSON rekey writes",
                self.ctx(slot)
            ))
        })?;
        Ok(match (shown.client_id, shown.client_secret) {
            (Some(client_id), Some(secret)) => Some(crate::backend::ConsumerView {
                generation: shown.generation,
                pair: crate::secret::ClientPair {
                    client_id,
                    secret: crate::secret::Secret::new(secret),
                },
            }),
            _ => None,
        })
    }
}
