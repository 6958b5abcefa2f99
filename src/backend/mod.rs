//! Secret stores. One small trait, one module per store; retries and timing live in wrappers.

use crate::error::Result;
use crate::record::{SlotRecord, Versioned};
use async_trait::async_trait;
use std::collections::BTreeSet;

pub mod aws;
mod common;
pub mod exec;
pub mod file;
pub mod vault;

/// What a backend can do beyond the contract of [`Backend`].
#[derive(Clone, Copy, Debug, Default)]
pub struct BackendCapabilities {
    /// Deleted entries can be recovered for a while (KV v2 soft delete, AWS recovery window).
    pub soft_delete: bool,
    /// A write that makes a pair current is one atomic write of everything consumers read (the
    /// file backend: one rename). Where it is not (vault: consumer entry, then state entry; aws:
    /// `AWSCURRENT`, then the record; exec: whatever the plugin does), the engine records the
    /// `promoting` phase before the promotion, so a promotion cut in half only ever goes
    /// forward (docs/src/protocol.md).
    pub atomic_promotion: bool,
}

/// The pair consumers read from a backend right now, and its generation.
#[derive(Clone, Debug)]
pub struct ConsumerView {
    pub generation: u64,
    pub pair: crate::secret::ClientPair,
}

/// A secret store holding one [`SlotRecord`] per slot.
///
/// Contract: every write is a compare-and-set against the version returned by [`Backend::read`]
/// (or `None` for "must not exist yet"), and a lost race is `ErrorKind::Conflict`, never a
/// silent overwrite. A write is atomic: after a crash a reader sees the old or the new record,
/// never a mix.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The inventory name of this backend instance (for messages).
    fn name(&self) -> &str;

    fn capabilities(&self) -> BackendCapabilities;

    /// The slot's record and its version, or `None` when there is no entry.
    /// An entry that exists but is not rekey's is `ErrorKind::Conflict`.
    async fn read(&self, slot: &str) -> Result<Option<Versioned>>;

    /// Stores `record` if the entry's version is still `expected` (`None`: the entry must not
    /// exist). Returns the new version.
    async fn write(&self, slot: &str, record: &SlotRecord, expected: Option<u64>) -> Result<u64>;

    /// Removes the entry if its version is still `expected` (soft delete where the store has one).
    async fn delete(&self, slot: &str, expected: u64) -> Result<()>;

    /// Names of the slots whose entries rekey owns in this backend, leaving out the names in
    /// `known` (pass an empty set for all of them). A backend need not read the entries of
    /// `known` names to list: the engine reads the inventory's own slots anyway, and confirming
    /// their ownership here too would read every entry twice per run.
    async fn list(&self, known: &BTreeSet<String>) -> Result<Vec<String>>;

    /// Every name this backend holds an entry for, rekey's or not, from one listing that reads
    /// no entry, when the backend can tell that cheaply; `None` when it cannot. A name left out
    /// is one whose `read` would have found nothing when the listing was taken, so a caller that
    /// reads many slots to show them (`plan`) skips those reads; the reads of the names listed
    /// still decide what each entry is.
    async fn names(&self) -> Result<Option<BTreeSet<String>>> {
        Ok(None)
    }

    /// Proves the store is reachable and writable by us, changing nothing visible to consumers.
    async fn check(&self) -> Result<()>;

    /// What consumers of `slot` read now (`record` is the slot's record, just read). By default
    /// the record's current pair, which is what consumers read where the record is the consumer
    /// entry (file, exec); backends whose consumers read something else override it.
    async fn consumer_view(&self, slot: &str, record: &SlotRecord) -> Result<Option<ConsumerView>> {
        let _ = slot;
        Ok(record.current.as_ref().map(|c| ConsumerView {
            generation: c.generation,
            pair: c.pair(),
        }))
    }
}
