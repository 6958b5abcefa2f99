//! A platform's hourly request budget, shared by every rekey process through the state store
//! (docs/src/scale.md, "The hourly budget across processes").
//!
//! Cisco counts requests per organisation over a rolling hour, and every integration of the
//! organisation spends the same budget. A limiter in memory forgets at exit, so a CronJob every
//! five minutes, or N shards started together, would each start with a full budget. The budget
//! is therefore kept in one entry of the backend that holds the provider's slots, named
//! [`ENTRY_PREFIX`]`<provider>`: a name every backend stores like a slot's, which the inventory
//! may not use for a slot (the engine refuses one, exit 2) and which the engine never lists as
//! an orphan. The entry is a [`SlotRecord`] whose `budget` holds the grants of the last hour.
//!
//! A process reserves requests before sending them, in chunks ([`chunk_size`]), with the same
//! compare-and-set write the slot records use: two processes reading the same ledger cannot both
//! write their grant, the loser reads again and sees the other's. So the grants of any rolling
//! hour never add up to more than the budget, and a process never sends a request it has not
//! reserved. What a process reserved and did not use is lost until its grant is an hour old:
//! conservative, never over.

use crate::backend::Backend;
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::record::{BudgetGrant, BudgetLedger, SlotRecord};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// Budget entries are named this, then the provider's name.
pub const ENTRY_PREFIX: &str = "rekey-budget.";
/// The window the platform counts over.
pub const WINDOW: Duration = Duration::from_secs(3600);
/// Compare-and-set attempts before a reservation gives up (each loss means another process
/// just reserved, so a few are plenty).
const CAS_ATTEMPTS: u32 = 20;

/// The entry of `provider`'s budget.
pub fn entry_name(provider: &str) -> String {
    let safe: String = provider
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("{ENTRY_PREFIX}{safe}");
    name.truncate(100);
    name
}

/// Whether a backend entry is a budget entry, not a slot.
pub fn is_budget_entry(name: &str) -> bool {
    name.starts_with(ENTRY_PREFIX)
}

/// Requests reserved per write: about a twentieth of this shard's part of the budget, between
/// 1 and 100, so a small budget is not lost to one process's unused chunk and a large one costs
/// one backend write per 100 requests at most.
pub fn chunk_size(allowed: u32, shards: u32) -> u32 {
    (allowed / 20 / shards.max(1)).clamp(1, 100)
}

/// Takes up to `chunk` requests from `ledger` at `now`, for a budget of `allowed` per hour.
/// Grants older than the window are dropped first. `Err(at)`: nothing is left until `at`.
pub fn grant(
    ledger: &mut BudgetLedger,
    now: DateTime<Utc>,
    allowed: u32,
    chunk: u32,
) -> std::result::Result<u32, DateTime<Utc>> {
    let window = chrono::Duration::from_std(WINDOW).expect("an hour fits");
    ledger.grants.retain(|g| g.at + window > now);
    ledger.allowed = allowed;
    let used: u64 = ledger.grants.iter().map(|g| u64::from(g.requests)).sum();
    let left = u64::from(allowed).saturating_sub(used);
    if left == 0 {
        // The oldest grant leaves the window first; with none (allowed 0), in an hour.
        let at = ledger.grants.first().map_or(now, |g| g.at) + window;
        return Err(at);
    }
    let n = (left.min(u64::from(chunk.max(1)))) as u32;
    ledger.grants.push(BudgetGrant {
        at: now,
        requests: n,
    });
    Ok(n)
}

/// Where the budget is kept, and the clock its hour is read from (the engine's, so a test clock
/// moves it too).
#[derive(Clone)]
pub struct BudgetStore {
    pub backend: Arc<dyn Backend>,
    pub clock: Arc<dyn Clock>,
}

/// One provider's share of the budget in this process: requests reserved and not yet sent.
pub struct SharedBudget {
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    entry: String,
    provider: String,
    platform: &'static str,
    allowed: u32,
    /// This process's part (`allowed` / shards): what its own grants of the last hour may add
    /// up to, the plain 1/N split of docs/src/scale.md.
    own_part: u32,
    chunk: u32,
    held: tokio::sync::Mutex<Held>,
}

/// Reserved and not yet sent, and this process's own grants of the last hour.
#[derive(Default)]
struct Held {
    left: u32,
    mine: BudgetLedger,
}

impl SharedBudget {
    /// `allowed`: requests per rolling hour for every process together (budget minus reserve);
    /// `shards`: how many processes are expected to share it (sizes the chunks).
    pub fn new(
        store: BudgetStore,
        provider: &str,
        platform: &'static str,
        allowed: u32,
        shards: u32,
    ) -> Self {
        SharedBudget {
            backend: store.backend,
            clock: store.clock,
            entry: entry_name(provider),
            provider: provider.to_string(),
            platform,
            allowed,
            own_part: (allowed / shards.max(1)).max(1),
            chunk: chunk_size(allowed, shards),
            held: tokio::sync::Mutex::default(),
        }
    }

    /// Takes one request, reserving a chunk from the shared ledger when none is held. When the
    /// hour's budget is spent: `RateLimited`, not applied, with the time it frees up as
    /// `retry_after` (the engine defers the slot to the next run).
    pub async fn take(&self, what: &str) -> Result<()> {
        let mut held = self.held.lock().await;
        if held.left == 0 {
            // This process's part first: a grant it may not take is not asked of the store.
            let now = self.clock.now();
            let mut mine = held.mine.clone();
            let chunk = match grant(&mut mine, now, self.own_part, self.chunk) {
                Ok(n) => n,
                Err(until) => {
                    return Err(self
                        .spent(now, until, self.own_part, "this shard's part")
                        .context(what));
                }
            };
            let n = self.reserve(chunk).await.map_err(|e| e.context(what))?;
            if let Some(last) = mine.grants.last_mut() {
                last.requests = n;
            }
            held.mine = mine;
            held.left = n;
        }
        held.left -= 1;
        Ok(())
    }

    async fn reserve(&self, chunk: u32) -> Result<u32> {
        for _ in 0..CAS_ATTEMPTS {
            let now = self.clock.now();
            let stored = self.backend.read(&self.entry).await.map_err(|e| {
                e.context(format!(
                    "provider {}: reading the hourly budget entry {}",
                    self.provider, self.entry
                ))
            })?;
            let (mut record, version) = match stored {
                Some(v) => (v.record, Some(v.version)),
                None => (SlotRecord::new(&self.entry, &self.provider, ""), None),
            };
            let mut ledger = record.budget.take().unwrap_or_default();
            let n = match grant(&mut ledger, now, self.allowed, chunk) {
                Ok(n) => n,
                Err(until) => return Err(self.spent(now, until, self.allowed, "all processes")),
            };
            record.budget = Some(ledger);
            match self.backend.write(&self.entry, &record, version).await {
                Ok(_) => {
                    tracing::debug!(provider = %self.provider, requests = n, "reserved requests of the hourly budget");
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Conflict => continue,
                Err(e) => {
                    return Err(e.context(format!(
                        "provider {}: writing the hourly budget entry {}",
                        self.provider, self.entry
                    )));
                }
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "provider {}: the hourly budget entry {} kept changing under {CAS_ATTEMPTS} reservations in a row",
                self.provider, self.entry
            ),
        )
        .not_applied())
    }

    /// The budget `of` requests (whose: this shard's part, or all processes') is spent.
    fn spent(&self, now: DateTime<Utc>, until: DateTime<Utc>, of: u32, whose: &str) -> Error {
        let wait = (until - now).to_std().unwrap_or_default();
        Error::new(
            ErrorKind::RateLimited,
            format!(
                "{} hourly budget spent: 0 of {of} left until {} UTC ({whose}; provider {}; shared by every rekey process through {})",
                self.platform,
                until.format("%H:%M"),
                self.provider,
                self.entry
            ),
        )
        .with_retry_after(Some(wait.max(Duration::from_secs(1))))
        .not_applied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn grants_never_exceed_the_budget_within_a_rolling_hour() {
        let mut l = BudgetLedger::default();
        let mut taken = 0;
        for s in 0..100 {
            if let Ok(n) = grant(&mut l, at(s * 10), 50, 7) {
                taken += n;
            }
        }
        assert_eq!(taken, 50, "the whole budget and no more within the hour");
        assert_eq!(grant(&mut l, at(1000), 50, 7), Err(at(3600)));
        // The first grant (7 at t=0) leaves the window at t=3600: exactly that comes back.
        assert_eq!(grant(&mut l, at(3600), 50, 100), Ok(7));
        assert!(grant(&mut l, at(3601), 50, 100).is_err());
    }

    #[test]
    fn the_last_grant_is_what_is_left() {
        let mut l = BudgetLedger::default();
        assert_eq!(grant(&mut l, at(0), 10, 4), Ok(4));
        assert_eq!(grant(&mut l, at(1), 10, 4), Ok(4));
        assert_eq!(grant(&mut l, at(2), 10, 4), Ok(2));
        assert_eq!(l.grants.len(), 3);
        assert_eq!(l.allowed, 10);
    }

    #[test]
    fn chunks_are_small_against_the_budget() {
        assert_eq!(chunk_size(7200, 1), 100);
        assert_eq!(chunk_size(400, 4), 5);
        assert_eq!(chunk_size(10, 1), 1);
    }

    #[test]
    fn entry_names_are_stored_like_slot_names() {
        let e = entry_name("Cisco Prod");
        assert_eq!(e, "rekey-budget.cisco-prod");
        assert!(is_budget_entry(&e));
        assert!(
            crate::check::is_valid_slot_name(&e),
            "every backend takes it"
        );
        assert!(crate::check::is_valid_slot_name(&entry_name(
            &"x".repeat(200)
        )));
    }
}
