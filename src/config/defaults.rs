//! `[defaults]`: the strategy, ages and backend a slot gets when it names none.

use super::BackendConfig;
use crate::check::tree::Table;
use crate::check::values::{DrainMode, DrainPolicy, OnDrainTimeout, Strategy};
use crate::check::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// `[defaults]`, each with the line it was given on (None: built-in default).
pub(super) struct Defaults {
    pub(super) strategy: Strategy,
    pub(super) max_age: (Duration, Option<usize>),
    pub(super) grace: (Duration, Option<usize>),
    pub(super) backend: Option<String>,
    pub(super) drain: DrainPolicy,
}

impl Checker {
    pub(super) fn defaults(
        &mut self,
        root: &Table,
        backends: &BTreeMap<String, BackendConfig>,
    ) -> Defaults {
        let mut d = Defaults {
            strategy: Strategy::Alternate,
            max_age: (Duration::from_secs(30 * 86_400), None),
            grace: (Duration::from_secs(86_400), None),
            backend: None,
            drain: DrainPolicy::default(),
        };
        let Some(t) = self.table(root, "", "defaults") else {
            return d;
        };
        let p = "defaults";
        self.known_keys(
            t,
            p,
            &[&["strategy", "max_age", "grace", "backend"], DRAIN_KEYS].concat(),
        );
        d.drain = self.drain(t, p, DrainPolicy::default());
        if let Some(s) = self.strategy(t, p) {
            d.strategy = s;
        }
        let max_age = self.duration(t, p, "max_age", false);
        let grace = self.duration(t, p, "grace", true);
        if let Some((v, line)) = max_age {
            d.max_age = (v, Some(line));
        }
        if let Some((v, line)) = grace {
            d.grace = (v, Some(line));
        }
        if d.grace.0 >= d.max_age.0 && (max_age.is_some() || grace.is_some()) {
            let (key, line) = match (grace, max_age) {
                (Some((_, l)), _) => ("defaults.grace", l),
                (None, Some((_, l))) => ("defaults.max_age", l),
                (None, None) => unreachable!("checked above"),
            };
            let msg = grace_message(d.grace.0, d.max_age.0);
            self.err(line, key, msg);
        }
        if let Some((name, e)) = self.string(t, p, "backend") {
            self.defined(e.line, "defaults.backend", "backend", name, backends);
            d.backend = Some(name.to_string());
        }
        d
    }

    pub(super) fn strategy(&mut self, t: &Table, path: &str) -> Option<Strategy> {
        let (s, e) = self.string(t, path, "strategy")?;
        let parsed = parse_strategy(s);
        if parsed.is_none() {
            self.err(
                e.line,
                join(path, "strategy"),
                format!("unknown strategy \"{s}\"; use \"alternate\" or \"in-place\""),
            );
        }
        parsed
    }
}

/// The keys of a drain policy, in `[defaults]` and in a slot.
pub(super) const DRAIN_KEYS: &[&str] =
    &["drain", "drain_quiet", "drain_timeout", "on_drain_timeout"];

impl Checker {
    /// A drain policy: `base` (the built-in default, or `[defaults]` for a slot) with the keys
    /// `t` sets.
    pub(super) fn drain(&mut self, t: &Table, path: &str, base: DrainPolicy) -> DrainPolicy {
        let mut d = base;
        if let Some((s, e)) = self.string(t, path, "drain") {
            match s {
                "until-unused" => d.mode = DrainMode::UntilUnused,
                "grace-only" => d.mode = DrainMode::GraceOnly,
                _ => self.err(
                    e.line,
                    join(path, "drain"),
                    format!(
                        "unknown drain policy \"{s}\"; use \"until-unused\" (delete an old client once the platform shows no recent use) or \"grace-only\" (delete it when its grace ends)"
                    ),
                ),
            }
        }
        if let Some((v, _)) = self.duration(t, path, "drain_quiet", false) {
            d.quiet = v;
        }
        if let Some((v, _)) = self.duration(t, path, "drain_timeout", false) {
            d.timeout = v;
        }
        if let Some((s, e)) = self.string(t, path, "on_drain_timeout") {
            match s {
                "keep" => d.on_timeout = OnDrainTimeout::Keep,
                "delete" => d.on_timeout = OnDrainTimeout::Delete,
                _ => self.err(
                    e.line,
                    join(path, "on_drain_timeout"),
                    format!("unknown value \"{s}\"; use \"keep\" (hold the old client, and report it) or \"delete\""),
                ),
            }
        }
        d
    }
}

pub(super) fn grace_message(grace: Duration, max_age: Duration) -> String {
    format!(
        "grace ({}) must be shorter than max_age ({}): the previous credential has to be retired before the next rotation is due",
        fmt_duration(grace),
        fmt_duration(max_age)
    )
}
