//! What should happen to a slot, decided from the inventory and the backend record alone: pure,
//! no I/O, so `rekey plan` can show it and `apply` can follow it step by step.

use crate::config::{DrainMode, DrainPolicy, OnDrainTimeout, SlotConfig, Strategy};
use crate::record::{Draining, Lease, Phase, SlotRecord};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use uuid::Uuid;

/// One thing `apply` would do next to a slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Step {
    /// No credential yet: issue generation 1.
    Create,
    /// The current credential is due: issue the next generation (strategy decides how).
    Rotate { strategy: Strategy },
    /// An operation was interrupted (crash, lost answer, failed verification): carry it on.
    Resume { phase: Phase },
    /// Previous credentials whose grace period is over: delete them at the provider.
    DeleteOld { generations: Vec<u64> },
    /// The slot is retired (or pruned): delete its clients after grace, then its entry.
    Retire,
}

impl Step {
    pub fn name(&self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::Rotate { .. } => "rotate",
            Step::Resume { .. } => "resume",
            Step::DeleteOld { .. } => "delete-old",
            Step::Retire => "retire",
        }
    }
}

/// The decision for one slot: the next step (if any) and why, in words for the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub step: Option<Step>,
    /// Another live run holds the slot: do nothing now.
    pub locked: bool,
    pub reason: String,
}

impl Decision {
    fn act(step: Step, reason: impl Into<String>) -> Self {
        Decision {
            step: Some(step),
            locked: false,
            reason: reason.into(),
        }
    }
    fn nothing(reason: impl Into<String>) -> Self {
        Decision {
            step: None,
            locked: false,
            reason: reason.into(),
        }
    }
}

/// What the decision depends on besides the slot and its record.
pub struct Context<'a> {
    pub now: DateTime<Utc>,
    /// `--force`: credentials issued before this instant are due (the run's start, so a forced
    /// run never rotates what it, or a concurrent forced run, just issued).
    pub force_before: Option<DateTime<Utc>>,
    /// This run's id: its own lease does not lock it out.
    pub run_id: Uuid,
    /// Decides whether a lease's holder is gone (same host, process not running).
    pub holder_alive: &'a dyn Fn(&Lease) -> bool,
}

/// Whether `lease` keeps this run away from the slot.
pub fn is_locked(lease: Option<&Lease>, ctx: &Context) -> bool {
    match lease {
        None => false,
        Some(l) if l.run_id == ctx.run_id => false,
        Some(l) if l.expires_at <= ctx.now => false,
        Some(l) => (ctx.holder_alive)(l),
    }
}

/// The next step for a slot from the inventory (`slot`: None when it is not in the inventory
/// any more) and its record.
pub fn decide(
    slot: Option<&SlotConfig>,
    record: Option<&SlotRecord>,
    prune: bool,
    ctx: &Context,
) -> Decision {
    if let Some(rec) = record
        && is_locked(rec.lease.as_ref(), ctx)
    {
        let l = rec.lease.as_ref().expect("locked implies a lease");
        return Decision {
            step: None,
            locked: true,
            reason: format!(
                "held by run {} on {} (pid {}) until {}",
                short(&l.run_id),
                l.host,
                l.pid,
                fmt_time(l.expires_at)
            ),
        };
    }

    let Some(slot) = slot else {
        // In the backend, not in the inventory.
        return match record {
            Some(rec) if rec.retiring.is_some() => retire_decision(rec, ctx),
            Some(_) if prune => Decision::act(
                Step::Retire,
                "not in the inventory any more, and prune = true: retiring (clients deleted after the default grace)",
            ),
            Some(_) => Decision::nothing(
                "not in the inventory any more; kept (set prune = true to retire it)",
            ),
            None => Decision::nothing("unknown slot"),
        };
    };

    if slot.retired {
        return match record {
            None => Decision::nothing("retired; nothing stored"),
            Some(rec) => retire_decision(rec, ctx),
        };
    }

    let Some(rec) = record else {
        return Decision::act(Step::Create, "no credential yet");
    };

    if let Some(op) = &rec.op {
        let why = match op.phase {
            Phase::Creating => format!(
                "generation {} was being created when a run stopped",
                op.generation
            ),
            Phase::Rotating => format!(
                "generation {} was being rotated in place when a run stopped",
                op.generation
            ),
            Phase::Pending => format!(
                "generation {} is stored but not yet verified",
                op.generation
            ),
            Phase::Promoting => format!(
                "generation {} is verified and was being promoted when a run stopped",
                op.generation
            ),
        };
        return Decision::act(Step::Resume { phase: op.phase }, why);
    }

    let due: Vec<&Draining> = rec
        .draining
        .iter()
        .filter(|d| is_due(d, &slot.drain, ctx.now))
        .collect();
    if !due.is_empty() {
        let gens = due
            .iter()
            .map(|d| format!("g{}", d.credential.generation))
            .collect::<Vec<_>>()
            .join(", ");
        let again = if due.iter().any(|d| d.hold.is_some()) {
            " (still in use at the last check: checking again)"
        } else {
            ""
        };
        return Decision::act(
            Step::DeleteOld {
                generations: due.iter().map(|d| d.credential.generation).collect(),
            },
            format!("grace over for {gens}{again}"),
        );
    }

    let Some(current) = &rec.current else {
        return Decision::act(Step::Create, "no current credential");
    };

    let age = ctx.now - current.created_at;
    let max_age = Duration::from_std(slot.max_age).unwrap_or(Duration::MAX);
    if let Some(cutoff) = ctx.force_before
        && current.created_at < cutoff
    {
        return Decision::act(
            Step::Rotate {
                strategy: slot.strategy,
            },
            format!(
                "--force (age {}){}",
                fmt_age(age),
                in_place_note(slot.strategy)
            ),
        );
    }
    if let Some(hold) = rec.hold_until
        && hold > ctx.now
    {
        return Decision::nothing(format!(
            "g{} restored by rollback; rotation held until {}",
            current.generation,
            fmt_time(hold)
        ));
    }
    if age >= max_age {
        return Decision::act(
            Step::Rotate {
                strategy: slot.strategy,
            },
            format!(
                "age {} > max_age {}{}",
                fmt_age(age),
                fmt_age(max_age),
                in_place_note(slot.strategy)
            ),
        );
    }
    let waiting = rec.draining.first().map(|d| match hold_text(d, ctx.now) {
        Some(held) => format!("; {held}"),
        None => format!(
            "; g{} deleted after {}",
            d.credential.generation,
            fmt_time(d.delete_after)
        ),
    });
    Decision::nothing(format!(
        "g{} is {} old, due in {}{}",
        current.generation,
        fmt_age(age),
        fmt_age(max_age.checked_sub(&age).unwrap_or_default()),
        waiting.unwrap_or_default()
    ))
}

/// Whether a draining client is to be looked at now: its grace is over and, if its deletion
/// is held, the hold is due for another check, or the slot's policy (changed since) would no
/// longer hold it: `grace-only`, or a drain timeout that has passed with `delete`.
pub fn is_due(d: &Draining, policy: &DrainPolicy, now: DateTime<Utc>) -> bool {
    if d.delete_after > now {
        return false;
    }
    let Some(h) = &d.hold else {
        return true;
    };
    let timed_out = Duration::from_std(policy.timeout)
        .ok()
        .and_then(|t| d.delete_after.checked_add_signed(t))
        .is_some_and(|t| t <= now);
    h.recheck_after <= now
        || policy.mode == DrainMode::GraceOnly
        || (timed_out && policy.on_timeout == OnDrainTimeout::Delete)
}

/// What a held client's record says, for `plan` and `status`: "g3 still in use: last token 12m
/// ago, 41 token requests in all; checked again after 2026-12-01 14:05 UTC".
pub fn hold_text(d: &Draining, now: DateTime<Utc>) -> Option<String> {
    let h = d.hold.as_ref()?;
    let count = h
        .token_requests
        .map(|n| {
            format!(
                ", {n} token request{} in all",
                if n == 1 { "" } else { "s" }
            )
        })
        .unwrap_or_default();
    let overdue = if h.overdue {
        "; drain_timeout passed, kept (on_drain_timeout = \"keep\")"
    } else {
        ""
    };
    Some(format!(
        "g{} still in use: last token {} ago{count}{overdue}; checked again after {}",
        d.credential.generation,
        fmt_age(now - h.last_token),
        fmt_time(h.recheck_after)
    ))
}

/// In place, the old secret dies with the rotation: no old client is left to drain.
fn in_place_note(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::InPlace => {
            "; in place: the old secret dies at once, so there is no old client to drain"
        }
        Strategy::Alternate => "",
    }
}

fn retire_decision(rec: &SlotRecord, ctx: &Context) -> Decision {
    match &rec.retiring {
        Some(r) if r.delete_after > ctx.now => Decision::nothing(format!(
            "retiring: clients deleted after {}",
            fmt_time(r.delete_after)
        )),
        Some(_) => Decision::act(
            Step::Retire,
            "retired and grace over: delete clients and entry",
        ),
        None => Decision::act(Step::Retire, "retired in the inventory"),
    }
}

fn short(id: &Uuid) -> String {
    id.to_string()[..8].to_string()
}

pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `3d 4h`, `5h 12m`, `42s`: coarse, for humans.
pub fn fmt_age(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, hours, mins) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {mins}m")
    } else if mins > 0 {
        format!("{mins}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Draining, OpKind, Operation, StoredCredential};
    use crate::secret::Secret;

    fn slot() -> SlotConfig {
        SlotConfig {
            name: "s".into(),
            provider: "p".into(),
            tenant: "1".into(),
            roles: vec![],
            strategy: Strategy::Alternate,
            max_age: std::time::Duration::from_secs(30 * 86_400),
            grace: std::time::Duration::from_secs(86_400),
            drain: Default::default(),
            backend: "b".into(),
            mirrors: vec![],
            retired: false,
            line: 1,
        }
    }

    fn cred(generation: u64, created_at: DateTime<Utc>) -> StoredCredential {
        StoredCredential {
            generation,
            client_id: format!("c{generation}"),
            object_id: format!("o{generation}"),
            name: format!("rekey-s-g{generation}"),
            secret: Secret::new("x"),
            created_at,
            verified_at: Some(created_at),
            owned: true,
        }
    }

    fn ctx(now: DateTime<Utc>) -> Context<'static> {
        Context {
            now,
            force_before: None,
            run_id: Uuid::nil(),
            holder_alive: &|_| true,
        }
    }

    #[test]
    fn lifecycle_decisions() {
        let now = Utc::now();
        let s = slot();
        assert_eq!(
            decide(Some(&s), None, false, &ctx(now)).step,
            Some(Step::Create)
        );

        let mut rec = SlotRecord::new("s", "p", "1");
        rec.current = Some(cred(1, now - Duration::days(2)));
        assert_eq!(decide(Some(&s), Some(&rec), false, &ctx(now)).step, None);

        rec.current = Some(cred(1, now - Duration::days(31)));
        assert_eq!(
            decide(Some(&s), Some(&rec), false, &ctx(now)).step,
            Some(Step::Rotate {
                strategy: Strategy::Alternate
            })
        );

        let mut forced = ctx(now);
        rec.current = Some(cred(1, now - Duration::days(1)));
        forced.force_before = Some(now - Duration::hours(1));
        assert!(matches!(
            decide(Some(&s), Some(&rec), false, &forced).step,
            Some(Step::Rotate { .. })
        ));
        // What a forced run (or a concurrent one) issued after its start is not rotated again.
        rec.current = Some(cred(2, now - Duration::minutes(5)));
        assert_eq!(decide(Some(&s), Some(&rec), false, &forced).step, None);

        rec.draining.push(Draining {
            credential: cred(1, now - Duration::days(3)),
            delete_after: now - Duration::hours(1),
            hold: None,
        });
        assert_eq!(
            decide(Some(&s), Some(&rec), false, &ctx(now)).step,
            Some(Step::DeleteOld {
                generations: vec![1]
            })
        );

        rec.op = Some(Operation {
            id: Uuid::now_v7(),
            kind: OpKind::Rotate,
            phase: Phase::Pending,
            generation: 3,
            started_at: now,
            verify_failures: 0,
            client_name: None,
        });
        assert_eq!(
            decide(Some(&s), Some(&rec), false, &ctx(now)).step,
            Some(Step::Resume {
                phase: Phase::Pending
            })
        );
    }

    #[test]
    fn leases_lock_out_other_live_runs_only() {
        let now = Utc::now();
        let mut rec = SlotRecord::new("s", "p", "1");
        rec.lease = Some(Lease {
            run_id: Uuid::now_v7(),
            host: "h".into(),
            pid: 1,
            expires_at: now + Duration::minutes(5),
        });
        assert!(decide(Some(&slot()), Some(&rec), false, &ctx(now)).locked);
        let dead = Context {
            holder_alive: &|_| false,
            ..ctx(now)
        };
        assert!(!decide(Some(&slot()), Some(&rec), false, &dead).locked);
        let later = ctx(now + Duration::minutes(6));
        assert!(!decide(Some(&slot()), Some(&rec), false, &later).locked);
    }

    #[test]
    fn removal_deletes_nothing_without_prune() {
        let rec = SlotRecord::new("gone", "p", "1");
        assert_eq!(decide(None, Some(&rec), false, &ctx(Utc::now())).step, None);
        assert_eq!(
            decide(None, Some(&rec), true, &ctx(Utc::now())).step,
            Some(Step::Retire)
        );
        let mut s = slot();
        s.retired = true;
        assert_eq!(decide(Some(&s), None, false, &ctx(Utc::now())).step, None);
        assert_eq!(
            decide(Some(&s), Some(&rec), false, &ctx(Utc::now())).step,
            Some(Step::Retire)
        );
    }
}
