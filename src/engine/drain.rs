//! Draining: whether a previous generation whose grace is over may be deleted now
//! (docs/src/protocol.md, "Draining"). With the default policy (`drain = "until-unused"`) the
//! platform's listing is asked when the client last got a token: a client used within the
//! quiet window is held, and the record says why, until its consumers have moved.
//!
//! The use is read from the listing (`find_clients`), never by using the old pair: after
//! promotion rekey makes no token request with it, so its own look never counts as a use.

use super::slot::{SlotRun, ignore_not_found};
use crate::config::{DrainMode, DrainPolicy, OnDrainTimeout};
use crate::crash;
use crate::error::Result;
use crate::plan;
use crate::plan::fmt_age;
use crate::provider::Usage;
use crate::record::{DrainHold, Draining, StoredCredential};
use chrono::{DateTime, Duration, Utc};

/// The soonest a held client is asked about again, so a run that finds it in use moves on to
/// the slot's other work instead of asking again at once.
const MIN_RECHECK: Duration = Duration::minutes(1);

/// What to do with one draining client whose grace is over.
pub(super) enum Verdict {
    /// Delete it. `note` is for the slot's actions, set only when the deletion is not the
    /// ordinary one (" (the platform reports no usage for it: ...)"); `why` is for the log.
    Delete { note: String, why: String },
    /// Keep it: consumers still use it.
    Hold(DrainHold),
}

impl Verdict {
    fn ordinary(why: String) -> Verdict {
        Verdict::Delete {
            note: String::new(),
            why,
        }
    }
    fn noted(note: &str) -> Verdict {
        Verdict::Delete {
            note: note.to_string(),
            why: note.trim().trim_matches(['(', ')']).to_string(),
        }
    }
}

impl SlotRun<'_> {
    /// Deletes previous generations whose grace is over (only clients rekey made), unless the
    /// slot's drain policy holds one that consumers still use (drain.rs).
    pub(super) async fn delete_old(&mut self) -> Result<()> {
        let entry = self.provider()?;
        let tenant = self.tenant()?;
        let now = self.now();
        let rec = self.record()?.clone();
        let policy = self.config()?.drain;
        let (due, mut keep): (Vec<Draining>, Vec<Draining>) = rec
            .draining
            .iter()
            .cloned()
            .partition(|d| plan::is_due(d, &policy, now));
        for mut d in due {
            if !d.credential.owned {
                self.actions.push(format!(
                    "released g{} (not created by rekey; left at the provider)",
                    d.credential.generation
                ));
                continue;
            }
            match self.drain_verdict(&d, now).await? {
                Verdict::Hold(hold) => {
                    d.hold = Some(hold);
                    let held = plan::hold_text(&d, now).unwrap_or_default();
                    tracing::warn!(slot = self.slot(), generation = d.credential.generation, client_id = %d.credential.client_id, "{held}: deletion held");
                    self.actions.push(format!("held {held}"));
                    self.held.push(held);
                    keep.push(d);
                    continue;
                }
                Verdict::Delete { note, why } => {
                    self.fence("before-provider-delete").await?;
                    ignore_not_found(
                        entry
                            .provider
                            .delete_client(&tenant, &d.credential.object_id)
                            .await,
                    )
                    .map_err(|e| {
                        e.context(format!(
                            "deleting g{} ({})",
                            d.credential.generation, d.credential.client_id
                        ))
                    })?;
                    crash::point("after-old-deleted");
                    tracing::info!(slot = self.slot(), generation = d.credential.generation, client_id = %d.credential.client_id, why, "deleted the previous generation");
                    self.deleted.push(d.credential.client_id.clone());
                    self.retired
                        .push(crate::observe::Retired::of(&d.credential));
                    self.actions
                        .push(format!("deleted g{}{note}", d.credential.generation));
                }
            }
        }
        let mut rec = rec;
        keep.sort_by_key(|d| d.credential.generation);
        rec.draining = keep;
        self.release_if_done(&mut rec);
        self.save(rec).await
    }

    pub(super) async fn drain_verdict(&self, d: &Draining, now: DateTime<Utc>) -> Result<Verdict> {
        let policy: DrainPolicy = self
            .target
            .config
            .as_ref()
            .map(|c| c.drain)
            .unwrap_or_default();
        if policy.mode == DrainMode::GraceOnly {
            return Ok(Verdict::Delete {
                note: String::new(),
                why: "drain = \"grace-only\"".into(),
            });
        }
        let entry = self.provider()?;
        let tenant = self.tenant()?;
        let c = &d.credential;
        let listed = entry
            .provider
            .find_clients(&tenant, &c.name)
            .await
            .map_err(|e| {
                e.context(format!(
                    "reading the use of g{} ({}) before deleting it",
                    c.generation, c.client_id
                ))
            })?;
        let usage = listed
            .into_iter()
            .find(|i| i.object_id == c.object_id || i.client_id == c.client_id)
            .map(|i| i.usage);
        Ok(verdict(d, usage, &policy, now, self.own_last_use(d)))
    }
}

impl SlotRun<'_> {
    /// In place there is no old client to hold: the secret consumers use dies with the
    /// rotation. When the platform shows that client used within the quiet window, the slot's
    /// actions and the log say so (best effort: a failed look does not stop the rotation).
    pub(super) async fn warn_in_place_use(&mut self, current: &StoredCredential, generation: u64) {
        let policy = self
            .target
            .config
            .as_ref()
            .map(|c| c.drain)
            .unwrap_or_default();
        if policy.mode == DrainMode::GraceOnly {
            return;
        }
        let (Ok(entry), Ok(tenant)) = (self.provider(), self.tenant()) else {
            return;
        };
        let listed = match entry.provider.find_clients(&tenant, &current.name).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(slot = self.slot(), error = %e, "cannot read the client's use before rotating in place");
                return;
            }
        };
        let now = self.now();
        let quiet = Duration::from_std(policy.quiet).unwrap_or(Duration::MAX);
        // As for draining, a token no later than rekey's own last use may be rekey's.
        let own = match entry.bootstrap_slot.as_deref() == Some(self.slot()) {
            true => Some(now),
            false => current.verified_at,
        };
        if let Some(Usage::LastToken { at, .. }) = listed
            .iter()
            .find(|i| i.object_id == current.object_id)
            .map(|i| i.usage)
            && at > now - quiet
            && own.is_none_or(|own| at > own)
        {
            let warning = format!(
                "warning: consumers used g{}'s secret {} ago; in place it dies now, and they fail until they read g{generation}",
                current.generation,
                fmt_age(now - at)
            );
            tracing::warn!(slot = self.slot(), client_id = %current.client_id, "{warning}");
            self.actions.push(warning);
        }
    }
}

impl SlotRun<'_> {
    /// The last time rekey itself got a token with a draining pair: its verification before
    /// promotion, or, for the slot that holds its provider's bootstrap credential, the
    /// promotion (every call until then used it). A last token no later than this may be
    /// rekey's own, so it is no sign of a consumer.
    fn own_last_use(&self, d: &Draining) -> Option<DateTime<Utc>> {
        let bootstrap = self
            .provider()
            .is_ok_and(|e| e.bootstrap_slot.as_deref() == Some(self.slot()));
        let promoted = self
            .target
            .config
            .as_ref()
            .and_then(|c| Duration::from_std(c.grace).ok())
            .and_then(|g| d.delete_after.checked_sub_signed(g));
        match bootstrap {
            true => promoted.max(d.credential.verified_at),
            false => d.credential.verified_at,
        }
    }
}

/// The decision itself, from what the platform said (`None`: the listing does not show the
/// client under its name, so its use cannot be read) and when rekey last used the pair.
fn verdict(
    d: &Draining,
    usage: Option<Usage>,
    policy: &DrainPolicy,
    now: DateTime<Utc>,
    own_last_use: Option<DateTime<Utc>>,
) -> Verdict {
    let quiet = Duration::from_std(policy.quiet).unwrap_or(Duration::MAX);
    let (at, count) = match usage {
        None => {
            return Verdict::noted(
                " (its use cannot be read: the provider does not list it under its name; drained by its grace alone)",
            );
        }
        Some(Usage::Unreported) => {
            return Verdict::noted(
                " (the platform reports no usage for it: drained by its grace alone)",
            );
        }
        Some(Usage::Never) => return Verdict::ordinary("never used".into()),
        Some(Usage::LastToken { at, count }) => (at, count),
    };
    if at <= now - quiet {
        return Verdict::ordinary(format!("last token {} ago", fmt_age(now - at)));
    }
    if own_last_use.is_some_and(|own| at <= own) {
        return Verdict::ordinary("no token since rekey's own verification".into());
    }
    let timeout = Duration::from_std(policy.timeout).unwrap_or(Duration::MAX);
    let timed_out_at = d.delete_after.checked_add_signed(timeout);
    let timed_out = timed_out_at.is_some_and(|t| now >= t);
    if timed_out && policy.on_timeout == OnDrainTimeout::Delete {
        return Verdict::noted(&format!(
            " though still in use (last token {} ago): drain_timeout passed and on_drain_timeout = \"delete\"",
            fmt_age(now - at)
        ));
    }
    // Held at least until the quiet window after its last token has passed; with
    // `on_drain_timeout = "delete"`, no later than the timeout.
    let mut recheck = at
        .checked_add_signed(quiet)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if policy.on_timeout == OnDrainTimeout::Delete
        && let Some(t) = timed_out_at
    {
        recheck = recheck.min(t);
    }
    Verdict::Hold(DrainHold {
        since: d.hold.as_ref().map_or(now, |h| h.since),
        checked_at: now,
        last_token: at,
        token_requests: count,
        recheck_after: recheck.max(now + MIN_RECHECK),
        overdue: timed_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StoredCredential;
    use crate::secret::Secret;

    fn draining(delete_after: DateTime<Utc>) -> Draining {
        Draining {
            credential: StoredCredential {
                generation: 3,
                client_id: "c3".into(),
                object_id: "o3".into(),
                name: "rekey-s-g3".into(),
                secret: Secret::new("x"),
                created_at: delete_after,
                verified_at: None,
                owned: true,
            },
            delete_after,
            hold: None,
        }
    }

    fn used(at: DateTime<Utc>) -> Option<Usage> {
        Some(Usage::LastToken {
            at,
            count: Some(41),
        })
    }

    #[test]
    fn a_client_used_within_the_quiet_window_is_held_until_the_window_after_its_last_token() {
        let now = Utc::now();
        let d = draining(now - Duration::hours(1));
        let policy = DrainPolicy::default();
        let last = now - Duration::minutes(12);
        let Verdict::Hold(h) = verdict(&d, used(last), &policy, now, None) else {
            panic!("deleted a client used 12 minutes ago");
        };
        assert_eq!(h.recheck_after, last + Duration::hours(2));
        assert_eq!(h.token_requests, Some(41));
        assert!(!h.overdue);
        // Quiet for longer than the window: deleted.
        let quiet = now - Duration::hours(3);
        assert!(matches!(
            verdict(&d, used(quiet), &policy, now, None),
            Verdict::Delete { .. }
        ));
    }

    #[test]
    fn unknown_use_falls_back_to_the_grace_and_says_so_never_used_is_deleted() {
        let now = Utc::now();
        let d = draining(now);
        let policy = DrainPolicy::default();
        for (usage, says) in [
            (Some(Usage::Unreported), "reports no usage"),
            (None, "cannot be read"),
            (Some(Usage::Never), "never used"),
        ] {
            match verdict(&d, usage, &policy, now, None) {
                Verdict::Delete { why, .. } => assert!(why.contains(says), "{why}"),
                Verdict::Hold(_) => panic!("{usage:?} held"),
            }
        }
    }

    #[test]
    fn the_drain_timeout_keeps_by_default_and_deletes_when_the_policy_says() {
        let now = Utc::now();
        let d = draining(now - Duration::days(8));
        let last = now - Duration::minutes(1);
        let mut policy = DrainPolicy::default();
        let Verdict::Hold(h) = verdict(&d, used(last), &policy, now, None) else {
            panic!("the default deleted a client in use");
        };
        assert!(h.overdue);
        policy.on_timeout = OnDrainTimeout::Delete;
        assert!(matches!(
            verdict(&d, used(last), &policy, now, None),
            Verdict::Delete { .. }
        ));
        // Before the timeout, a `delete` policy holds, and asks again no later than the timeout.
        let d = draining(now - Duration::days(7) + Duration::minutes(30));
        let Verdict::Hold(h) = verdict(&d, used(last), &policy, now, None) else {
            panic!("deleted before the timeout");
        };
        assert_eq!(h.recheck_after, now + Duration::minutes(30));
    }

    #[test]
    fn rekeys_own_verification_is_not_a_consumer() {
        let now = Utc::now();
        let d = draining(now - Duration::minutes(5));
        let verified = now - Duration::minutes(20);
        let policy = DrainPolicy::default();
        // The last token is rekey's verification (or older): deleted.
        assert!(matches!(
            verdict(&d, used(verified), &policy, now, Some(verified)),
            Verdict::Delete { .. }
        ));
        // A token after it is a consumer's: held.
        assert!(matches!(
            verdict(
                &d,
                used(verified + Duration::seconds(1)),
                &policy,
                now,
                Some(verified)
            ),
            Verdict::Hold(_)
        ));
    }
}
