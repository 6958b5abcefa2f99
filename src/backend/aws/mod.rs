//! `type = "aws"`: AWS Secrets Manager (cargo feature `aws`).
//!
//! ## Layout: one secret per slot, `<prefix><slot>`, three kinds of versions
//!
//! - **`AWSCURRENT`**: what consumers read, the JSON `{client_id, client_secret, tenant,
//!   generation, rotated_at, managed_by}` of the slot's current pair. Consumers must ask for
//!   `VersionStage = "AWSCURRENT"` (the default on AWS; the IAM policy in examples/aws-iam-policy.json pins it).
//! - **`AWSPENDING`**: the same JSON for a pair issued but not yet verified. Promotion moves
//!   `AWSCURRENT` onto that very version (AWS then labels the old one `AWSPREVIOUS`), as in
//!   AWS's own rotation model.
//! - **`REKEY_RECORD`**: rekey's full [`SlotRecord`] (pending and draining pairs, operation,
//!   lease) as `{"rekey_record": 1, "record": ...}`. Secrets live only in secret values, never in
//!   tags or the description, which broader policies can read.
//!
//! Tags `rekey:managed-by = rekey` and `rekey:slot = <slot>` mark ownership; a secret without
//! them is never read as a record, listed, or written.
//!
//! ## Compare-and-set
//!
//! Secrets Manager has no conditional PutSecretValue, but `UpdateSecretVersionStage` with
//! `RemoveFromVersionId` fails unless the label is on that version: that is the conditional.
//! A write from version `v` (the 64-bit hash of the VersionId holding `REKEY_RECORD`):
//!
//! 1. `DescribeSecret`: ownership, deletion state, which version holds which label; `v` must
//!    still hold `REKEY_RECORD` (else `Conflict` without writing anything).
//! 2. `PutSecretValue` of the new record as a new version labelled only `REKEY_NEXT`
//!    (invisible to consumers and to readers of the record). If the record makes a pair current
//!    that `AWSCURRENT` does not show yet, `AWSCURRENT` moves onto it now, before the commit
//!    (consumers first, as in the vault backend): the record only ever makes verified pairs
//!    current, and an in-place rotation has already killed the previous secret, so consumers
//!    must never wait on a step after the commit for it.
//! 3. `UpdateSecretVersionStage(REKEY_RECORD, RemoveFromVersionId = v's id, MoveToVersionId =
//!    new)`: the commit point. Of two writers from `v` exactly one succeeds; the loser's version
//!    is an unlabelled orphan AWS removes with its version limit. A failure is resolved by a
//!    fresh `DescribeSecret`: the label on our version means we won (a retry after a lost
//!    response), anywhere else means `Conflict`.
//! 4. The consumer view follows the committed record: a new pending pair is put as
//!    `AWSPENDING`; a changed current pair moves `AWSCURRENT` (onto the pending version when it
//!    holds that pair); `AWSPENDING` is removed once nothing is pending.
//!
//! A crash before step 3 leaves the old record readable; after it, the new one. Either way
//! consumers already read the newest current pair (step 2); a crash between 3 and 4 leaves only
//! `AWSPENDING` behind, which the next write tidies. (The fault campaign found consumers left on
//! a dead in-place secret when `AWSCURRENT` moved only in step 4.)
//!
//! The entry's version is the first 8 bytes of SHA-256 of the VersionId: equal for equal states,
//! different after every write. `ClientRequestToken` (= the VersionId) of a record write is a
//! UUID from SHA-256 of (slot, expected version, record JSON), so retrying the same write
//! replays it idempotently and a different value never reuses a token (AWS refuses that with
//! ResourceExistsException). A write that creates the entry (`expected = None`) also mixes in a
//! random nonce, so an entry deleted and created again never repeats an old version. Consumer
//! versions use SHA-256 of (slot, view JSON): the pending version and the later current one are
//! the same version.
//!
//! ## First write, delete, re-create
//!
//! `CreateSecret` (the conditional for "must not exist": a second creator gets
//! ResourceExistsException) stores the consumer view (or a placeholder without a pair) as the
//! first version, because AWS labels a secret's first version `AWSCURRENT` whatever is asked;
//! the record then follows steps 2–3 with no `RemoveFromVersionId` (AWS refuses to move a label
//! attached elsewhere without it). `delete` first removes `REKEY_RECORD` from `v`'s version
//! (conditional), then calls `DeleteSecret` with the recovery window. A slot written again
//! later restores the secret (`RestoreSecret`) and continues on it.
//!
//! Throttling is retried by the SDK's retry strategy (standard mode, `AWS_MAX_ATTEMPTS` /
//! `AWS_RETRY_MODE` honoured); what is left is `RateLimited` for the engine's own retries.

// Without the `aws` feature only the config part is used (to refuse `type = "aws"` clearly).
#![cfg_attr(not(feature = "aws"), allow(dead_code))]

#[cfg(feature = "aws")]
mod answer_cap;
mod config;
mod errors;
#[cfg(feature = "aws")]
mod session;
mod stages;
#[cfg(feature = "aws")]
mod store;

pub use config::AwsBackendConfig;
pub(crate) use config::parse_config;
pub use errors::kind_of_code;
pub use stages::{
    SecretState, StageOp, WriteStart, plan_view, record_token, start_write, version_of, view_token,
};

// What only the SDK-backed half below needs.
#[cfg(feature = "aws")]
use {
    crate::backend::{Backend, BackendCapabilities},
    crate::error::Result,
    crate::record::{SlotRecord, Versioned},
    async_trait::async_trait,
    aws_sdk_secretsmanager::Client,
    aws_sdk_secretsmanager::types::{Filter, FilterNameStringType},
    errors::classify_aws_error,
    std::fmt,
    std::sync::Arc,
    tokio::sync::OnceCell,
};

/// Label of the version holding rekey's record.
pub const RECORD_STAGE: &str = "REKEY_RECORD";
/// Label of a just-written record version, before the compare-and-set moves `REKEY_RECORD`.
pub const NEXT_STAGE: &str = "REKEY_NEXT";
pub const CURRENT_STAGE: &str = "AWSCURRENT";
pub const PENDING_STAGE: &str = "AWSPENDING";
/// Ownership tags.
pub const TAG_MANAGED_BY: &str = "rekey:managed-by";
pub const TAG_SLOT: &str = "rekey:slot";

/// AWS Secrets Manager, one secret per slot (see the module docs).
#[cfg(feature = "aws")]
#[derive(Clone)]
pub struct AwsBackend {
    inner: Arc<Inner>,
}

#[cfg(feature = "aws")]
struct Inner {
    config: AwsBackendConfig,
    preset: Option<aws_config::SdkConfig>,
    client: OnceCell<Client>,
}

#[cfg(feature = "aws")]
impl fmt::Debug for AwsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsBackend")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "aws")]
impl AwsBackend {
    /// Credentials and (unless configured) the region come from the standard AWS chain
    /// (env, profile, web identity / IRSA, ECS, IMDS), loaded when first used.
    pub fn open(config: &AwsBackendConfig) -> Self {
        Self::build(config, None)
    }

    /// With an explicit SDK configuration (tests: static fake credentials).
    pub fn with_sdk_config(config: &AwsBackendConfig, sdk: aws_config::SdkConfig) -> Self {
        Self::build(config, Some(sdk))
    }

    fn build(config: &AwsBackendConfig, preset: Option<aws_config::SdkConfig>) -> Self {
        AwsBackend {
            inner: Arc::new(Inner {
                config: config.clone(),
                preset,
                client: OnceCell::new(),
            }),
        }
    }

    /// The secret name of `slot`.
    pub fn secret_name(&self, slot: &str) -> String {
        format!("{}{slot}", self.inner.config.prefix)
    }

    fn check_slot(&self, slot: &str) -> Result<()> {
        crate::backend::common::check_slot(&self.inner.config.name, slot)
    }

    fn ctx(&self, slot: &str) -> String {
        format!(
            "slot {slot}: backend {} (secret {})",
            self.inner.config.name,
            self.secret_name(slot)
        )
    }

    async fn check_inner(&self) -> Result<()> {
        // Reachable, credentials accepted, listing allowed; writes cannot be proven without
        // writing, and IAM simulation needs more rights than rekey should have.
        self.client()
            .await?
            .list_secrets()
            .max_results(1)
            .filters(
                Filter::builder()
                    .key(FilterNameStringType::TagKey)
                    .values(TAG_MANAGED_BY)
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                classify_aws_error(
                    e,
                    &format!("backend {}: ListSecrets", self.inner.config.name),
                )
            })
    }
}

#[cfg(feature = "aws")]
#[async_trait]
impl Backend for AwsBackend {
    fn name(&self) -> &str {
        &self.inner.config.name
    }

    fn capabilities(&self) -> BackendCapabilities {
        BackendCapabilities {
            soft_delete: true,
            // `AWSCURRENT` moves before the record's commit: two steps.
            atomic_promotion: false,
        }
    }

    /// Consumers read `AWSCURRENT`, which moves before the record's commit.
    async fn consumer_view(
        &self,
        slot: &str,
        _record: &SlotRecord,
    ) -> Result<Option<crate::backend::ConsumerView>> {
        self.consumer_view_inner(slot).await
    }

    async fn read(&self, slot: &str) -> Result<Option<Versioned>> {
        self.read_inner(slot).await
    }

    async fn write(&self, slot: &str, record: &SlotRecord, expected: Option<u64>) -> Result<u64> {
        self.write_inner(slot, record, expected).await
    }

    async fn delete(&self, slot: &str, expected: u64) -> Result<()> {
        self.delete_inner(slot, expected).await
    }

    async fn list(&self, known: &std::collections::BTreeSet<String>) -> Result<Vec<String>> {
        // The listing names every secret under the prefix without reading one, so leaving
        // out `known` saves nothing here.
        let mut names = self.list_inner().await?;
        names.retain(|n| !known.contains(n));
        Ok(names)
    }

    async fn check(&self) -> Result<()> {
        self.check_inner().await
    }
}
