//! `type = "aws"`: AWS Secrets Manager (cargo feature `aws`).
//!
//! ## Layout: one secret per slot, `<prefix><slot>`, three kinds of versions
//!
//! - **`AWSCURRENT`**: what consumers read, the JSON `{client_id, client_secret, tenant,
//!   generation, rotated_at, managed_by}` of the slot's current pair. Consumers must ask for
//!   `VersionStage = "AWSCURRENT"` (the default on AWS; the IAM policy in the README pins it).
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

use crate::config::check::Checker;
use crate::config::check::join;
use crate::config::tree::Table;
use crate::error::ErrorKind;
use crate::record::{MANAGED_BY, SlotRecord, StoredCredential};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// Label of the version holding rekey's record.
pub const RECORD_STAGE: &str = "REKEY_RECORD";
/// Label of a just-written record version, before the compare-and-set moves `REKEY_RECORD`.
pub const NEXT_STAGE: &str = "REKEY_NEXT";
pub const CURRENT_STAGE: &str = "AWSCURRENT";
pub const PENDING_STAGE: &str = "AWSPENDING";
/// Ownership tags.
pub const TAG_MANAGED_BY: &str = "rekey:managed-by";
pub const TAG_SLOT: &str = "rekey:slot";

/// `type = "aws"`: one secret per slot in AWS Secrets Manager.
#[derive(Clone)]
pub struct AwsBackendConfig {
    pub name: String,
    /// Region; `None`: the standard chain (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override (https, or http to loopback only): VPC endpoints, tests.
    pub endpoint_url: Option<String>,
    /// Secret name prefix; a slot's secret is `<prefix><slot>`.
    pub prefix: String,
    /// KMS key for new secrets; `None`: the account's `aws/secretsmanager` key.
    pub kms_key_id: Option<String>,
    /// Recovery window of deletes, 7 to 30 days.
    pub recovery_window_days: i64,
    /// Limit for one API operation, retries included.
    pub timeout: Duration,
}

impl fmt::Debug for AwsBackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsBackendConfig")
            .field("name", &self.name)
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("prefix", &self.prefix)
            .field("kms_key_id", &self.kms_key_id.as_ref().map(|_| "set"))
            .field("recovery_window_days", &self.recovery_window_days)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl AwsBackendConfig {
    /// Defaults for everything but the name.
    pub fn new(name: &str) -> Self {
        AwsBackendConfig {
            name: name.to_string(),
            region: None,
            endpoint_url: None,
            prefix: "rekey/".to_string(),
            kms_key_id: None,
            recovery_window_days: 7,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Characters AWS allows in secret names.
fn is_valid_prefix(p: &str) -> bool {
    p.len() <= 400
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c))
}

/// Parses `[backends.NAME]` with `type = "aws"`, recording every problem in `c`. No I/O:
/// credentials come from the standard AWS chain when the backend is first used.
pub(crate) fn parse_config(c: &mut Checker, name: &str, t: &Table, path: &str) -> AwsBackendConfig {
    let mut cfg = AwsBackendConfig::new(name);
    c.known_keys(
        t,
        path,
        &[
            "type",
            "region",
            "endpoint_url",
            "prefix",
            "kms_key_id",
            "recovery_window_days",
            "timeout",
        ],
    );
    if let Some((r, e)) = c.string(t, path, "region") {
        let ok = !r.is_empty()
            && r.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
        if ok {
            cfg.region = Some(r.to_string());
        } else {
            c.err(
                e.line,
                join(path, "region"),
                format!("\"{r}\" is not an AWS region name (e.g. \"eu-west-1\")"),
            );
        }
    }
    if let Some((u, e)) = c.string(t, path, "endpoint_url") {
        let key = join(path, "endpoint_url");
        match crate::http::endpoint(u) {
            Err(msg) => c.err(e.line, key, msg),
            Ok(_) => cfg.endpoint_url = Some(u.trim().trim_end_matches('/').to_string()),
        }
    }
    if let Some((p, e)) = c.string(t, path, "prefix") {
        if is_valid_prefix(p) {
            cfg.prefix = p.to_string();
        } else {
            c.err(
                e.line,
                join(path, "prefix"),
                format!(
                    "\"{p}\" is not a valid secret name prefix (letters, digits and /_+=.@- only)"
                ),
            );
        }
    }
    if let Some((k, e)) = c.string(t, path, "kms_key_id") {
        if k.trim().is_empty() {
            c.err(e.line, join(path, "kms_key_id"), "must not be empty");
        } else {
            cfg.kms_key_id = Some(k.trim().to_string());
        }
    }
    if let Some(n) = c.integer(t, path, "recovery_window_days", 7, 30) {
        cfg.recovery_window_days = n;
    }
    if let Some((d, _)) = c.duration(t, path, "timeout", false) {
        cfg.timeout = d;
    }
    cfg
}

/// What consumers read under `AWSCURRENT` (and `AWSPENDING`).
#[derive(Serialize)]
struct ConsumerView<'a> {
    client_id: Option<&'a str>,
    client_secret: Option<&'a str>,
    tenant: &'a str,
    generation: u64,
    rotated_at: Option<chrono::DateTime<chrono::Utc>>,
    managed_by: &'a str,
}

fn consumer_view(record: &SlotRecord, c: Option<&StoredCredential>) -> zeroize::Zeroizing<String> {
    let view = ConsumerView {
        client_id: c.map(|c| c.client_id.as_str()),
        client_secret: c.map(|c| c.secret.expose()),
        tenant: &record.tenant,
        generation: c.map_or(0, |c| c.generation),
        rotated_at: c.map(|c| c.created_at),
        managed_by: MANAGED_BY,
    };
    zeroize::Zeroizing::new(serde_json::to_string(&view).expect("plain JSON"))
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    rekey_record: u32,
    record: &'a SlotRecord,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeIn {
    #[allow(dead_code)]
    rekey_record: u32,
    record: SlotRecord,
}

/// The entry's version: the first 8 bytes of SHA-256 of the VersionId holding the record.
pub fn version_of(version_id: &str) -> u64 {
    let h = Sha256::digest(version_id.as_bytes());
    u64::from_be_bytes(h[..8].try_into().expect("8 bytes"))
}

/// A `ClientRequestToken` (UUID text, 36 chars) from the parts that make a write distinct.
fn token(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut b: [u8; 16] = d[..16].try_into().expect("16 bytes");
    // RFC 9562 version 8 (custom), variant 10.
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).hyphenated().to_string()
}

/// Token of a record write from `expected` (plus `nonce` when creating the entry).
pub fn record_token(slot: &str, expected: Option<u64>, value: &str, nonce: &[u8]) -> String {
    let exp = expected.map_or_else(|| "none".to_string(), |v| v.to_string());
    token(&[
        b"rekey-record",
        slot.as_bytes(),
        exp.as_bytes(),
        value.as_bytes(),
        nonce,
    ])
}

/// Token of a consumer view version: one per distinct view, so the pending version is the one
/// `AWSCURRENT` later moves to.
pub fn view_token(slot: &str, view: &str) -> String {
    token(&[b"rekey-view", slot.as_bytes(), view.as_bytes()])
}

/// What `DescribeSecret` told us about a slot's secret.
#[derive(Clone, Debug, Default)]
pub struct SecretState {
    pub exists: bool,
    /// Tagged as rekey's, for this slot.
    pub owned: bool,
    /// Scheduled for deletion.
    pub deleted: bool,
    /// VersionId -> labels.
    pub stages: HashMap<String, Vec<String>>,
}

impl SecretState {
    /// The versions carrying `label` (one on AWS; moto may leave more, see `start_write`).
    pub fn holders(&self, label: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .stages
            .iter()
            .filter(|(_, s)| s.iter().any(|l| l == label))
            .map(|(id, _)| id.as_str())
            .collect();
        v.sort();
        v
    }

    pub fn holder(&self, label: &str) -> Option<&str> {
        self.holders(label).into_iter().next()
    }
}

/// The first step of a write, decided from the secret's state alone (pure, unit-tested).
#[derive(Debug, PartialEq, Eq)]
pub enum WriteStart {
    /// No secret: create it (the create is the conditional).
    Create,
    /// Soft-deleted secret of ours and the caller expects no entry: restore, then put.
    Restore,
    /// Put the record, then move `REKEY_RECORD` from `remove_from` (none: attached nowhere).
    Put { remove_from: Option<String> },
    /// `REKEY_RECORD` already sits on this write's own version: a retry of a committed write.
    Done,
    /// The compare fails; nothing is written.
    Conflict(String),
}

pub fn start_write(state: &SecretState, expected: Option<u64>, my_token: &str) -> WriteStart {
    if !state.exists {
        return match expected {
            None => WriteStart::Create,
            Some(_) => WriteStart::Conflict("the entry no longer exists".into()),
        };
    }
    if !state.owned {
        return WriteStart::Conflict(
            "a secret of that name exists and is not tagged as rekey's; refusing to touch it"
                .into(),
        );
    }
    let holders = state.holders(RECORD_STAGE);
    if holders.len() > 1 {
        return WriteStart::Conflict(format!(
            "{RECORD_STAGE} is on {} versions (another writer raced a create); try again",
            holders.len()
        ));
    }
    let holder = holders.first().copied();
    if holder == Some(my_token) && !state.deleted {
        return WriteStart::Done;
    }
    match (expected, state.deleted) {
        (None, true) => WriteStart::Restore,
        (Some(_), true) => WriteStart::Conflict("the entry was deleted".into()),
        (None, false) => match holder {
            // An entry whose create was interrupted (no record yet) counts as none.
            None => WriteStart::Put { remove_from: None },
            Some(_) => WriteStart::Conflict("the entry already exists".into()),
        },
        (Some(v), false) => match holder {
            Some(id) if version_of(id) == v => WriteStart::Put {
                remove_from: Some(id.to_string()),
            },
            Some(_) => WriteStart::Conflict("another run wrote first".into()),
            None => WriteStart::Conflict("the entry holds no record".into()),
        },
    }
}

/// One label change of the consumer view.
#[derive(Debug, PartialEq, Eq)]
pub enum StageOp {
    /// PutSecretValue of a view under `token` with this one label.
    Put {
        token: String,
        stage: &'static str,
        pending: bool,
    },
    /// UpdateSecretVersionStage.
    Move {
        stage: &'static str,
        to: Option<String>,
        from: Option<String>,
    },
}

/// The label changes that make the consumer view match `record` (pure, unit-tested). Never a
/// PutSecretValue without an explicit label: AWS and moto differ in what that does to
/// `AWSPENDING`.
pub fn plan_view(
    state: &SecretState,
    pending_token: Option<&str>,
    current_token: Option<&str>,
) -> Vec<StageOp> {
    let mut ops = Vec::new();
    let pending_at = state.holder(PENDING_STAGE).map(str::to_string);
    let current_at = state.holder(CURRENT_STAGE).map(str::to_string);
    if let Some(p) = pending_token
        && pending_at.as_deref() != Some(p)
    {
        if state.stages.contains_key(p) {
            ops.push(StageOp::Move {
                stage: PENDING_STAGE,
                to: Some(p.to_string()),
                from: pending_at.clone(),
            });
        } else {
            ops.push(StageOp::Put {
                token: p.to_string(),
                stage: PENDING_STAGE,
                pending: true,
            });
        }
    }
    if let Some(c) = current_token
        && current_at.as_deref() != Some(c)
    {
        if state.stages.contains_key(c) || pending_token == Some(c) {
            ops.push(StageOp::Move {
                stage: CURRENT_STAGE,
                to: Some(c.to_string()),
                from: current_at.clone(),
            });
        } else {
            ops.push(StageOp::Put {
                token: c.to_string(),
                stage: CURRENT_STAGE,
                pending: false,
            });
        }
    }
    if pending_token.is_none()
        && let Some(p) = pending_at
    {
        ops.push(StageOp::Move {
            stage: PENDING_STAGE,
            to: None,
            from: Some(p),
        });
    }
    ops
}

/// Maps a Secrets Manager error code and HTTP status to a kind: the one table of this backend
/// (used by `classify_aws_error`). Codes as AWS returns them (recorded in the unit tests).
pub fn kind_of_code(code: Option<&str>, status: Option<u16>) -> ErrorKind {
    match code.unwrap_or("") {
        "ResourceNotFoundException" => ErrorKind::NotFound,
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "LimitExceededException" => ErrorKind::RateLimited,
        // ResourceExists: the name is taken, or a token was reused with another value.
        // InvalidRequest: the secret's state forbids it now (scheduled for deletion, ...).
        "ResourceExistsException" | "InvalidRequestException" => ErrorKind::Conflict,
        "InvalidParameterException"
        | "MalformedPolicyDocumentException"
        | "PreconditionNotMetException"
        | "ValidationException" => ErrorKind::Invalid,
        "AccessDeniedException" | "AccessDenied" | "DecryptionFailure" | "EncryptionFailure" => {
            ErrorKind::Forbidden
        }
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "MissingAuthenticationToken"
        | "IncompleteSignature" => ErrorKind::Unauthorized,
        "InternalServiceError" | "InternalFailure" | "ServiceUnavailable" => ErrorKind::Unavailable,
        _ => match status {
            Some(429) => ErrorKind::RateLimited,
            Some(401) => ErrorKind::Unauthorized,
            Some(403) => ErrorKind::Forbidden,
            Some(404) => ErrorKind::NotFound,
            Some(s) if s >= 500 => ErrorKind::Unavailable,
            Some(_) => ErrorKind::Invalid,
            None => ErrorKind::Unavailable,
        },
    }
}

#[cfg(feature = "aws")]
pub use imp::AwsBackend;

#[cfg(feature = "aws")]
mod imp {
    use super::*;
    use crate::backend::{Backend, BackendCapabilities};
    use crate::config::check::is_valid_slot_name;
    use crate::error::{Error, Result};
    use crate::record::Versioned;
    use async_trait::async_trait;
    use aws_sdk_secretsmanager::Client;
    use aws_sdk_secretsmanager::config::http::HttpResponse;
    use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
    use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};
    use std::sync::Arc;
    use tokio::sync::OnceCell;

    /// Answers of Secrets Manager are read at most [`crate::http::MAX_BODY`] bytes far, as the
    /// providers' are (SECURITY.md, *Transport*): an interceptor wraps each answer's body, before
    /// the SDK reads it, in one that fails past the limit. (The credential chain's own calls,
    /// IMDS and STS, are the SDK's and are not capped.)
    mod cap {
        use aws_sdk_secretsmanager::config::{ConfigBag, Intercept, RuntimeComponents};
        use aws_smithy_runtime_api::box_error::BoxError;
        use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut;
        use aws_smithy_types::body::SdkBody;
        use std::pin::Pin;
        use std::task::{Context, Poll};

        /// The error of an answer over the limit, found again by [`too_large`].
        #[derive(Debug)]
        pub(super) struct TooLarge;

        impl std::fmt::Display for TooLarge {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "answer larger than {} bytes", crate::http::MAX_BODY)
            }
        }

        impl std::error::Error for TooLarge {}

        /// Whether `e`, or one of its causes, is [`TooLarge`].
        pub(super) fn too_large(e: &(dyn std::error::Error + 'static)) -> bool {
            let mut cur = Some(e);
            while let Some(e) = cur {
                if e.is::<TooLarge>() {
                    return true;
                }
                cur = e.source();
            }
            false
        }

        #[derive(Debug)]
        pub(super) struct AnswerCap;

        impl Intercept for AnswerCap {
            fn name(&self) -> &'static str {
                "rekey answer size cap"
            }

            fn modify_before_deserialization(
                &self,
                ctx: &mut BeforeDeserializationInterceptorContextMut<'_>,
                _: &RuntimeComponents,
                _: &mut ConfigBag,
            ) -> Result<(), BoxError> {
                let resp = ctx.response_mut();
                let announced = resp
                    .headers()
                    .get("content-length")
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if announced.is_some_and(|n| n > crate::http::MAX_BODY as u64) {
                    return Err(Box::new(TooLarge));
                }
                let body = std::mem::replace(resp.body_mut(), SdkBody::taken());
                *resp.body_mut() = SdkBody::from_body_1_x(Capped {
                    inner: body,
                    seen: 0,
                });
                Ok(())
            }
        }

        /// A body that fails once more than the limit has come.
        struct Capped {
            inner: SdkBody,
            seen: usize,
        }

        impl http_body::Body for Capped {
            type Data = bytes::Bytes;
            type Error = BoxError;

            fn poll_frame(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
                let this = &mut *self;
                match Pin::new(&mut this.inner).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            this.seen += data.len();
                            if this.seen > crate::http::MAX_BODY {
                                return Poll::Ready(Some(Err(Box::new(TooLarge))));
                            }
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    other => other,
                }
            }

            fn is_end_stream(&self) -> bool {
                http_body::Body::is_end_stream(&self.inner)
            }

            fn size_hint(&self) -> http_body::SizeHint {
                http_body::Body::size_hint(&self.inner)
            }
        }
    }

    /// Maps SDK errors to kinds: the one place this backend decides what a failure means.
    /// Messages carry the operation, the error code and AWS's message (names and ids, never a
    /// secret value: the SDK redacts `SecretString` and we never add bodies).
    pub(super) fn classify_aws_error<E>(e: SdkError<E, HttpResponse>, what: &str) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if cap::too_large(&e) {
            return Error::malformed(format!(
                "{what}: AWS's answer is larger than {} bytes",
                crate::http::MAX_BODY
            ));
        }
        match &e {
            SdkError::TimeoutError(_) => {
                Error::new(ErrorKind::Timeout, format!("{what}: no answer in time"))
            }
            SdkError::DispatchFailure(d) if d.is_timeout() => {
                Error::new(ErrorKind::Timeout, format!("{what}: no answer in time"))
            }
            SdkError::DispatchFailure(d) => {
                let detail = if d.is_io() {
                    "cannot connect"
                } else if d.is_user() {
                    "the request could not be sent (bad endpoint or credentials setup?)"
                } else {
                    "the request failed in transit"
                };
                let msg = format!("{what}: AWS Secrets Manager unreachable ({detail})");
                let err = if d.is_user() {
                    Error::new(ErrorKind::Config, msg)
                } else {
                    Error::new(ErrorKind::Unavailable, msg).not_applied()
                };
                err.with_source(e)
            }
            SdkError::ConstructionFailure(_) => {
                // Mostly: no credentials found by the chain, or no region.
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "{what}: the request could not be built: {}",
                        aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                    ),
                )
            }
            SdkError::ResponseError(_) => Error::new(
                ErrorKind::Unavailable,
                format!("{what}: unreadable answer from AWS Secrets Manager"),
            ),
            SdkError::ServiceError(s) => {
                let err = s.err();
                let code = err.code();
                let status = Some(s.raw().status().as_u16());
                let kind = kind_of_code(code, status);
                let mut message = format!("{what}: {}", code.unwrap_or("error"));
                if let Some(m) = err.message() {
                    message.push_str(&format!(" ({m})"));
                }
                Error::new(kind, message)
            }
            _ => Error::new(ErrorKind::Unavailable, format!("{what}: request failed")),
        }
    }

    /// AWS Secrets Manager, one secret per slot (see the module docs).
    #[derive(Clone)]
    pub struct AwsBackend {
        inner: Arc<Inner>,
    }

    struct Inner {
        config: AwsBackendConfig,
        preset: Option<aws_config::SdkConfig>,
        client: OnceCell<Client>,
    }

    impl fmt::Debug for AwsBackend {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("AwsBackend")
                .field("config", &self.inner.config)
                .finish_non_exhaustive()
        }
    }

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

        async fn client(&self) -> Result<&Client> {
            self.inner
                .client
                .get_or_try_init(|| async {
                    let cfg = &self.inner.config;
                    let sdk = match &self.inner.preset {
                        Some(s) => s.clone(),
                        None => {
                            let http = aws_smithy_http_client::Builder::new()
                                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                                ))
                                .build_https();
                            // The same timeouts for the credential chain's own calls (STS
                            // web identity, ECS), so no network call of the backend is unbounded.
                            let mut loader =
                                aws_config::defaults(aws_config::BehaviorVersion::latest())
                                    .http_client(http)
                                    .timeout_config(
                                        aws_config::timeout::TimeoutConfig::builder()
                                            .operation_timeout(cfg.timeout)
                                            .connect_timeout(
                                                cfg.timeout.min(Duration::from_secs(5)),
                                            )
                                            .build(),
                                    );
                            if let Some(r) = &cfg.region {
                                loader = loader.region(aws_config::Region::new(r.clone()));
                            }
                            loader.load().await
                        }
                    };
                    if sdk.region().is_none() && cfg.region.is_none() {
                        return Err(Error::config(format!(
                            "backend {}: no AWS region: set region in [backends.{}] or AWS_REGION",
                            cfg.name, cfg.name
                        )));
                    }
                    let mut b = aws_sdk_secretsmanager::config::Builder::from(&sdk).timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .operation_timeout(cfg.timeout)
                            .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
                            .build(),
                    );
                    if let Some(r) = &cfg.region {
                        b = b.region(aws_config::Region::new(r.clone()));
                    }
                    b = b.interceptor(cap::AnswerCap);
                    // Only Secrets Manager goes to the override; STS (web identity) does not.
                    if let Some(e) = &cfg.endpoint_url {
                        b = b.endpoint_url(e.clone());
                    }
                    Ok(Client::from_conf(b.build()))
                })
                .await
        }

        fn check_slot(&self, slot: &str) -> Result<()> {
            if is_valid_slot_name(slot) {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "backend {}: \"{slot}\" is not a valid slot name",
                    self.inner.config.name
                )))
            }
        }

        fn ctx(&self, slot: &str) -> String {
            format!(
                "slot {slot}: backend {} (secret {})",
                self.inner.config.name,
                self.secret_name(slot)
            )
        }

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
        async fn get_stage(
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
                    let value = zeroize::Zeroizing::new(
                        out.secret_string().unwrap_or_default().to_string(),
                    );
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

        async fn write_inner(
            &self,
            slot: &str,
            record: &SlotRecord,
            expected: Option<u64>,
        ) -> Result<u64> {
            self.check_slot(slot)?;
            if record.slot != slot || !record.is_managed() {
                return Err(Error::invalid(format!(
                    "backend {}: refusing to store a record for slot \"{}\" (managed by \"{}\") as slot \"{slot}\"",
                    self.inner.config.name, record.slot, record.managed_by
                )));
            }
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

        async fn read_inner(&self, slot: &str) -> Result<Option<Versioned>> {
            self.check_slot(slot)?;
            let got = match self.get_stage(slot, RECORD_STAGE).await {
                Ok(got) => got,
                // The README's policy conditions reads on rekey's tags, so AWS denies reading a
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

        async fn delete_inner(&self, slot: &str, expected: u64) -> Result<()> {
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

        async fn list_inner(&self) -> Result<Vec<String>> {
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
                    if owned && has_record && s.deleted_date().is_none() && is_valid_slot_name(slot)
                    {
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

        async fn read(&self, slot: &str) -> Result<Option<Versioned>> {
            self.read_inner(slot).await
        }

        async fn write(
            &self,
            slot: &str,
            record: &SlotRecord,
            expected: Option<u64>,
        ) -> Result<u64> {
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
}

#[cfg(test)]
mod tests {
    //! Where moto is more lenient than AWS (TESTING.md), the behaviour is pinned here against
    //! AWS's documented answers instead of against moto.
    use super::*;
    use std::path::Path;

    fn state(stages: &[(&str, &[&str])]) -> SecretState {
        SecretState {
            exists: true,
            owned: true,
            deleted: false,
            stages: stages
                .iter()
                .map(|(id, s)| (id.to_string(), s.iter().map(|x| x.to_string()).collect()))
                .collect(),
        }
    }

    // Error codes and statuses as AWS Secrets Manager returns them (recorded from the API
    // reference's error lists): {"__type": CODE, "message": ...} with this HTTP status.
    const RECORDED: &[(&str, u16, ErrorKind)] = &[
        // Reusing an AWSPENDING version's ClientRequestToken with another value: AWS says
        // ResourceExistsException (moto accepts some of these).
        ("ResourceExistsException", 400, ErrorKind::Conflict),
        // PutSecretValue on a secret scheduled for deletion: InvalidRequestException on AWS.
        ("InvalidRequestException", 400, ErrorKind::Conflict),
        ("ResourceNotFoundException", 400, ErrorKind::NotFound),
        ("InvalidParameterException", 400, ErrorKind::Invalid),
        ("ThrottlingException", 400, ErrorKind::RateLimited),
        ("LimitExceededException", 400, ErrorKind::RateLimited),
        ("AccessDeniedException", 400, ErrorKind::Forbidden),
        ("DecryptionFailure", 400, ErrorKind::Forbidden),
        ("UnrecognizedClientException", 400, ErrorKind::Unauthorized),
        ("ExpiredTokenException", 400, ErrorKind::Unauthorized),
        ("InternalServiceError", 500, ErrorKind::Unavailable),
    ];

    #[test]
    fn recorded_error_codes_map_to_kinds() {
        for (code, status, kind) in RECORDED {
            assert_eq!(kind_of_code(Some(code), Some(*status)), *kind, "{code}");
        }
        assert_eq!(kind_of_code(None, Some(503)), ErrorKind::Unavailable);
        assert_eq!(
            kind_of_code(Some("Whatever"), Some(429)),
            ErrorKind::RateLimited
        );
        assert_eq!(
            kind_of_code(Some("Whatever"), Some(400)),
            ErrorKind::Invalid
        );
        assert!(
            !ErrorKind::Conflict.is_temporary(),
            "a refused token reuse is not retried"
        );
        assert!(ErrorKind::RateLimited.is_temporary());
    }

    #[test]
    fn tokens_never_repeat_for_a_different_value() {
        // AWS refuses a token reused with another value (moto does not always): every distinct
        // (slot, expected version, value) gets its own token; the same write gets the same one.
        let a = record_token("s", Some(1), "{\"a\":1}", &[0; 16]);
        assert_eq!(a, record_token("s", Some(1), "{\"a\":1}", &[0; 16]));
        assert_ne!(a, record_token("s", Some(1), "{\"a\":2}", &[0; 16]));
        assert_ne!(a, record_token("s", Some(2), "{\"a\":1}", &[0; 16]));
        assert_ne!(a, record_token("t", Some(1), "{\"a\":1}", &[0; 16]));
        assert_ne!(
            record_token("s", None, "v", &[1; 16]),
            record_token("s", None, "v", &[2; 16]),
            "creates differ by nonce"
        );
        assert_ne!(view_token("s", "x"), view_token("s", "y"));
        // 32..64 characters, UUID text, no secret in it.
        assert_eq!(a.len(), 36);
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }

    #[test]
    fn a_secret_scheduled_for_deletion_is_never_written_to() {
        // AWS answers PutSecretValue on it with InvalidRequestException; moto accepts it. rekey
        // decides from DescribeSecret first: restore for a create, conflict otherwise.
        let mut s = state(&[("v1", &["AWSCURRENT"])]);
        s.deleted = true;
        assert_eq!(start_write(&s, None, "t"), WriteStart::Restore);
        let v = version_of("v1");
        assert!(matches!(
            start_write(&s, Some(v), "t"),
            WriteStart::Conflict(_)
        ));
    }

    #[test]
    fn the_compare_and_set_decisions() {
        let s = state(&[("v1", &["AWSCURRENT"]), ("r1", &[RECORD_STAGE])]);
        let v = version_of("r1");
        assert_eq!(
            start_write(&s, Some(v), "t"),
            WriteStart::Put {
                remove_from: Some("r1".into())
            }
        );
        assert!(matches!(
            start_write(&s, Some(v + 1), "t"),
            WriteStart::Conflict(_)
        ));
        assert!(matches!(
            start_write(&s, None, "t"),
            WriteStart::Conflict(_)
        ));
        assert_eq!(
            start_write(&s, Some(123), "r1"),
            WriteStart::Done,
            "a replay"
        );
        assert_eq!(
            start_write(&SecretState::default(), None, "t"),
            WriteStart::Create
        );
        assert!(matches!(
            start_write(&SecretState::default(), Some(v), "t"),
            WriteStart::Conflict(_)
        ));
        let mut foreign = s.clone();
        foreign.owned = false;
        assert!(matches!(
            start_write(&foreign, None, "t"),
            WriteStart::Conflict(_)
        ));
        assert!(matches!(
            start_write(&foreign, Some(v), "t"),
            WriteStart::Conflict(_)
        ));
        // An interrupted create (no record yet) counts as no entry.
        let bare = state(&[("v1", &["AWSCURRENT"])]);
        assert_eq!(
            start_write(&bare, None, "t"),
            WriteStart::Put { remove_from: None }
        );
        // AWS refuses to attach a label that is on another version without RemoveFromVersionId;
        // moto attaches it twice. Two holders are never taken as a committed record.
        let twice = state(&[("a", &[RECORD_STAGE]), ("b", &[RECORD_STAGE])]);
        assert!(matches!(
            start_write(&twice, None, "a"),
            WriteStart::Conflict(_)
        ));
        assert!(matches!(
            start_write(&twice, Some(version_of("a")), "t"),
            WriteStart::Conflict(_)
        ));
    }

    #[test]
    fn the_consumer_view_is_moved_never_put_without_a_label() {
        // Pending appears: put it as AWSPENDING, AWSCURRENT untouched.
        let s = state(&[("c1", &["AWSCURRENT"])]);
        assert_eq!(
            plan_view(&s, Some("p2"), Some("c1")),
            vec![StageOp::Put {
                token: "p2".into(),
                stage: PENDING_STAGE,
                pending: true
            }]
        );
        // Promotion: AWSCURRENT moves onto the pending version, then AWSPENDING is removed
        // explicitly (AWS and moto differ in what a stage-less put does to it: never rely on it).
        let s = state(&[("c1", &["AWSCURRENT"]), ("p2", &["AWSPENDING"])]);
        assert_eq!(
            plan_view(&s, None, Some("p2")),
            vec![
                StageOp::Move {
                    stage: CURRENT_STAGE,
                    to: Some("p2".into()),
                    from: Some("c1".into())
                },
                StageOp::Move {
                    stage: PENDING_STAGE,
                    to: None,
                    from: Some("p2".into())
                },
            ]
        );
        // In sync: nothing to do.
        let s = state(&[("c1", &["AWSCURRENT"])]);
        assert!(plan_view(&s, None, Some("c1")).is_empty());
        // A discarded pending pair leaves AWSPENDING.
        let s = state(&[("c1", &["AWSCURRENT"]), ("p2", &["AWSPENDING"])]);
        assert_eq!(
            plan_view(&s, None, Some("c1")),
            vec![StageOp::Move {
                stage: PENDING_STAGE,
                to: None,
                from: Some("p2".into())
            }]
        );
    }

    #[test]
    fn the_consumer_view_holds_the_pair_and_no_rotation_state() {
        let mut rec = SlotRecord::new("s", "p", "11772");
        let c = StoredCredential {
            generation: 3,
            client_id: "cid".into(),
            object_id: "o".into(),
            name: "rekey-s-g3".into(),
            secret: crate::secret::Secret::generate(32),
            created_at: chrono::Utc::now(),
            verified_at: None,
            owned: true,
        };
        rec.current = Some(c.clone());
        let v: serde_json::Value =
            serde_json::from_str(&consumer_view(&rec, rec.current.as_ref())).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys.len(),
            6,
            "client_id, client_secret, tenant, generation, rotated_at, managed_by: {keys:?}"
        );
        assert_eq!(v["client_secret"], c.secret.expose());
        assert_eq!(v["generation"], 3);
        assert_eq!(v["tenant"], "11772");
    }

    fn parse(backend: &str) -> std::result::Result<crate::config::Inventory, String> {
        let text = format!(
            "[providers.p]\ntype = \"taegis\"\nenvironment = \"us1\"\nbootstrap = {{ client_id = {{ env = \"ID\" }}, client_secret = {{ env = \"SECRET\" }} }}\n\n[backends.a]\ntype = \"aws\"\n{backend}\n[[slots]]\nname = \"s1\"\nprovider = \"p\"\ntenant = \"1\"\n"
        );
        crate::config::parse(&text, Path::new("inv.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn config_defaults_and_every_option() {
        let inv = parse("").unwrap();
        let crate::config::BackendConfig::Aws(c) = &inv.backends["a"] else {
            panic!("aws backend expected");
        };
        assert_eq!(
            (
                c.prefix.as_str(),
                c.recovery_window_days,
                c.region.as_deref()
            ),
            ("rekey/", 7, None)
        );
        let inv = parse(
            "region = \"eu-west-1\"\nendpoint_url = \"https://vpce.example\"\nprefix = \"team/x/\"\nkms_key_id = \"alias/rekey\"\nrecovery_window_days = 30\ntimeout = \"10s\"\n",
        )
        .unwrap();
        let crate::config::BackendConfig::Aws(c) = &inv.backends["a"] else {
            panic!("aws backend expected");
        };
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.kms_key_id.as_deref(), Some("alias/rekey"));
        assert_eq!(c.recovery_window_days, 30);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert!(!format!("{c:?}").contains("alias/rekey"));
        assert!(parse("endpoint_url = \"http://127.0.0.1:4566\"").is_ok());
    }

    #[test]
    fn config_errors() {
        for (bad, says) in [
            ("endpoint_url = \"http://aws.example\"", "loopback"),
            ("recovery_window_days = 3", "at least 7"),
            ("recovery_window_days = 31", "at most 30"),
            ("prefix = \"a b\"", "not a valid secret name prefix"),
            ("region = \"EU WEST\"", "not an AWS region"),
            ("access_key = \"AKIA\"", "access_key"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
