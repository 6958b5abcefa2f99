//! The compare-and-set over version labels, decided from the secret's state alone (pure,
//! unit-tested): versions and request tokens, the first step of a write, and the label
//! changes of the consumer view. See the module docs of `backend::aws`.

use super::{CURRENT_STAGE, PENDING_STAGE, RECORD_STAGE};
use crate::record::{MANAGED_BY, SlotRecord, StoredCredential};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// What consumers read under `AWSCURRENT` (and `AWSPENDING`).
#[derive(Serialize)]
pub(super) struct ConsumerView<'a> {
    client_id: Option<&'a str>,
    client_secret: Option<&'a str>,
    tenant: &'a str,
    generation: u64,
    rotated_at: Option<chrono::DateTime<chrono::Utc>>,
    managed_by: &'a str,
}

pub(super) fn consumer_view(
    record: &SlotRecord,
    c: Option<&StoredCredential>,
) -> zeroize::Zeroizing<String> {
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
pub(super) struct EnvelopeOut<'a> {
    pub(super) rekey_record: u32,
    pub(super) record: &'a SlotRecord,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnvelopeIn {
    #[allow(dead_code)]
    pub(super) rekey_record: u32,
    pub(super) record: SlotRecord,
}

/// The entry's version: the first 8 bytes of SHA-256 of the VersionId holding the record.
pub fn version_of(version_id: &str) -> u64 {
    let h = Sha256::digest(version_id.as_bytes());
    u64::from_be_bytes(h[..8].try_into().expect("8 bytes"))
}

/// A `ClientRequestToken` (UUID text, 36 chars) from the parts that make a write distinct.
pub(super) fn token(parts: &[&[u8]]) -> String {
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
        let exists = state.stages.contains_key(p);
        ops.push(place(PENDING_STAGE, p, pending_at.as_deref(), exists));
    }
    if let Some(c) = current_token
        && current_at.as_deref() != Some(c)
    {
        // The pending version exists by then (put just above, if it was not there).
        let exists = state.stages.contains_key(c) || pending_token == Some(c);
        ops.push(place(CURRENT_STAGE, c, current_at.as_deref(), exists));
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

/// `stage` onto the version of `token` (the label is on `at` now): moved there when that
/// version `exists`, else a put of the view as a new version with that one label.
fn place(stage: &'static str, token: &str, at: Option<&str>, exists: bool) -> StageOp {
    if exists {
        StageOp::Move {
            stage,
            to: Some(token.to_string()),
            from: at.map(str::to_string),
        }
    } else {
        StageOp::Put {
            token: token.to_string(),
            stage,
            pending: stage == PENDING_STAGE,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Where moto is more lenient than AWS (docs/src/testing.md), the behaviour is pinned here
    //! against AWS's documented answers instead of against moto.
    use super::*;

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
}
