//! The slot record: what a backend stores per slot. It holds the credentials (current, pending,
//! draining) and the rotation state (operation, phase, lease), so a crashed run can be resumed
//! by the next one from the backend alone (docs/src/protocol.md, "The rules").

use crate::secret::{self, ClientPair, Secret};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Written into every record: entries without it are not rekey's and are never touched.
pub const MANAGED_BY: &str = "rekey";
pub const SCHEMA: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlotRecord {
    pub schema: u32,
    pub managed_by: String,
    pub slot: String,
    /// Inventory name of the provider and the tenant, so a slot removed from the inventory can
    /// still be retired.
    pub provider: String,
    pub tenant: String,
    /// Highest generation ever issued for this slot (a new credential gets `generation + 1`).
    pub generation: u64,
    /// What consumers use.
    pub current: Option<StoredCredential>,
    /// Issued and stored, not yet verified and promoted.
    pub pending: Option<StoredCredential>,
    /// Previous credentials still alive for their grace period.
    #[serde(default)]
    pub draining: Vec<Draining>,
    /// The operation in flight, if any.
    pub op: Option<Operation>,
    /// Which run may act on this slot now. Taken and released by compare-and-set writes.
    pub lease: Option<Lease>,
    /// Outcome of the last operation that ended, for `status`.
    pub last: Option<LastResult>,
    /// Set when the slot is being retired; entry is removed once its clients are gone.
    #[serde(default)]
    pub retiring: Option<Retiring>,
    /// Set on a mirror's copy: the name of the primary backend. Copies are never acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_of: Option<String>,
    /// Set by `rekey rollback`: no age-based rotation before this time (`--force` still
    /// rotates), so the restored credential is not replaced at once by the next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<DateTime<Utc>>,
    /// Set only on a provider's hourly-budget entry (src/provider/budget.rs), which is never a
    /// slot: what every rekey process took of the platform's hourly budget in the last hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetLedger>,
}

impl SlotRecord {
    pub fn new(slot: &str, provider: &str, tenant: &str) -> Self {
        SlotRecord {
            schema: SCHEMA,
            managed_by: MANAGED_BY.to_string(),
            slot: slot.to_string(),
            provider: provider.to_string(),
            tenant: tenant.to_string(),
            generation: 0,
            current: None,
            pending: None,
            draining: Vec::new(),
            op: None,
            lease: None,
            last: None,
            retiring: None,
            mirror_of: None,
            hold_until: None,
            budget: None,
        }
    }

    pub fn is_managed(&self) -> bool {
        self.managed_by == MANAGED_BY
    }
}

/// One issued credential with what is needed to use it, prove it, and delete it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoredCredential {
    pub generation: u64,
    /// The CLIENT_ID consumers use.
    pub client_id: String,
    /// The provider's object id (Taegis client UUID); equals `client_id` where there is none.
    pub object_id: String,
    /// The client's name at the provider (`<prefix><slot>-g<generation>` when rekey made it).
    pub name: String,
    #[serde(with = "secret::expose")]
    pub secret: Secret,
    pub created_at: DateTime<Utc>,
    pub verified_at: Option<DateTime<Utc>>,
    /// True when rekey created this client and may delete it (docs/src/protocol.md, "Ownership of clients").
    pub owned: bool,
}

impl StoredCredential {
    pub fn pair(&self) -> ClientPair {
        ClientPair {
            client_id: self.client_id.clone(),
            secret: self.secret.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Draining {
    pub credential: StoredCredential,
    /// When its grace ends.
    pub delete_after: DateTime<Utc>,
    /// Set when the grace is over but its deletion is held because consumers still use it
    /// (docs/src/protocol.md, "Draining").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<DrainHold>,
}

/// Why a draining client outlives its grace: what the platform last said of its use.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DrainHold {
    /// The first check that found it still in use.
    pub since: DateTime<Utc>,
    /// When rekey last asked the platform.
    pub checked_at: DateTime<Utc>,
    /// The client's last token, as the platform reported it then.
    pub last_token: DateTime<Utc>,
    /// Its token requests in all, where the platform counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_requests: Option<u64>,
    /// No use in asking again before this: the quiet window cannot have passed sooner
    /// (`last_token + drain_quiet`), unless the drain timeout ends the hold first.
    pub recheck_after: DateTime<Utc>,
    /// The drain timeout has passed and the policy keeps holding (`on_drain_timeout = "keep"`).
    #[serde(default)]
    pub overdue: bool,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// First credential of a slot.
    Create,
    /// `alternate`: a new client next to the current one.
    Rotate,
    /// `in-place`: a new secret for the same client.
    RotateInPlace,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// State written; the provider call may or may not have happened.
    Creating,
    /// In-place: state written (and, with caller-chosen secrets, the secret stored as pending);
    /// the rotate call may or may not have happened.
    Rotating,
    /// A pending credential is stored and awaits verification.
    Pending,
    /// The pending credential is verified and its promotion has begun: consumers may already
    /// read it (backends whose promotion is more than one write). From here the operation only
    /// moves forward: it is promoted without another verification, never discarded.
    Promoting,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    pub id: Uuid,
    pub kind: OpKind,
    pub phase: Phase,
    /// The generation this operation produces.
    pub generation: u64,
    pub started_at: DateTime<Utc>,
    /// Failed verification attempts of the pending credential, across runs.
    #[serde(default)]
    pub verify_failures: u32,
    /// The exact name of the client this operation creates (`create`, `rotate`), recorded in
    /// the same write as the operation, before the provider call: the proof that a client of
    /// that name is this slot's own (docs/src/protocol.md, "Ownership of clients"). None for in-place
    /// rotations, and for operations recorded by versions of rekey before 0.x that did not
    /// record it (those never adopt a client by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    pub run_id: Uuid,
    pub host: String,
    pub pid: u32,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Retiring {
    pub since: DateTime<Utc>,
    pub delete_after: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LastResult {
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// What happened, for humans; never contains a secret.
    pub message: String,
}

/// The requests rekey processes took of a platform's hourly budget, kept in the state store so
/// that shards, and runs started every few minutes, share one budget (docs/src/scale.md).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetLedger {
    /// Requests rekey may send per rolling hour, all processes together (for `status` readers;
    /// each process applies its own configured figure).
    pub allowed: u32,
    /// What was taken, oldest first; grants older than an hour are dropped on each write.
    pub grants: Vec<BudgetGrant>,
}

/// One reservation of `requests` from the hourly budget, made at `at`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetGrant {
    pub at: DateTime<Utc>,
    pub requests: u32,
}

/// A record and the backend's version of it, the token for the next compare-and-set.
#[derive(Clone, Debug)]
pub struct Versioned {
    pub record: SlotRecord,
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the previous version wrote it (no `client_name` in the operation) still
    /// reads, with the operation naming no client.
    #[test]
    fn records_of_the_previous_version_still_read() {
        let old = r#"{"schema":1,"managed_by":"rekey","slot":"s","provider":"p","tenant":"1",
            "generation":2,"current":null,"pending":null,"draining":[],
            "op":{"id":"0190b6a0-0000-7000-8000-000000000001","kind":"rotate","phase":"creating",
                  "generation":2,"started_at":"2026-01-01T00:00:00Z","verify_failures":0},
            "lease":null,"last":null,"retiring":null}"#;
        let rec: SlotRecord = serde_json::from_str(old).unwrap();
        let op = rec.op.as_ref().unwrap();
        assert_eq!(op.client_name, None);
        assert_eq!(op.generation, 2);
        // And what this version writes without a client name is what the previous one wrote.
        let again = serde_json::to_value(&rec).unwrap();
        assert!(again["op"].get("client_name").is_none());
    }
}
