//! `[settings]`: run-wide knobs, each checked against its bounds.

use super::{MAX_INSTANCE_LEN, Settings, is_valid_instance};
use crate::check::tree::{Kind, Table};
use crate::check::*;
use std::time::Duration;

impl Checker {
    pub(super) fn settings(&mut self, t: &Table) -> Settings {
        let p = "settings";
        self.known_keys(
            t,
            p,
            &[
                "name_prefix",
                "instance",
                "prune",
                "max_retire",
                "max_retire_percent",
                "concurrency",
                "concurrency_min",
                "concurrency_max",
                "lease_ttl",
                "verify_attempts",
                "verify_delay",
                "max_verify_failures",
                "schedule",
                "timezone",
                "jitter",
            ],
        );
        let mut s = Settings::default();
        let prefix_rule = "use 1 to 64 of a-z, 0-9, '-', '_', '.'";
        if let Some(v) = self.name(
            t,
            "name_prefix",
            "name prefix",
            is_valid_prefix,
            prefix_rule,
        ) {
            s.name_prefix = v;
        }
        let instance_rule = format!(
            "use 1 to {MAX_INSTANCE_LEN} of a-z, 0-9 and '-', starting and ending with a letter or digit"
        );
        if let Some(v) = self.name(
            t,
            "instance",
            "instance name",
            is_valid_instance,
            &instance_rule,
        ) {
            s.instance = v;
        }
        if let Some(b) = self.boolean(t, p, "prune") {
            s.prune = b;
        }
        if let Some(n) = self.integer(t, p, "max_retire", 0, 100_000) {
            s.max_retire = n as usize;
        }
        if let Some(n) = self.integer(t, p, "max_retire_percent", 0, 100) {
            s.max_retire_percent = n as u32;
        }
        self.concurrency(t, &mut s);
        if let Some((d, _)) = self.duration_at_most(t, p, "lease_ttl", false, MAX_LEASE_TTL) {
            s.lease_ttl = d;
        }
        if let Some(n) = self.integer(t, p, "verify_attempts", 1, 1_000) {
            s.verify_attempts = n as u32;
        }
        if let Some((d, _)) = self.duration_at_most(t, p, "verify_delay", true, MAX_VERIFY_DELAY) {
            s.verify_delay = d;
        }
        if let Some(n) = self.integer(t, p, "max_verify_failures", 1, 1_000) {
            s.max_verify_failures = n as u32;
        }
        if let Some((v, e)) = self.string(t, p, "schedule") {
            s.schedule = v.to_string();
            if let Err(err) = crate::schedule::Schedule::parse(v, "UTC", Duration::ZERO) {
                self.err(e.line, "settings.schedule", err.to_string());
            }
        }
        if let Some((v, e)) = self.string(t, p, "timezone") {
            s.timezone = v.to_string();
            if v.parse::<chrono_tz::Tz>().is_err() {
                self.err(
                    e.line,
                    "settings.timezone",
                    format!("\"{v}\" is not an IANA time zone name (such as UTC or Europe/Berlin)"),
                );
            }
        }
        if let Some((d, _)) = self.duration_at_most(t, p, "jitter", true, MAX_JITTER) {
            s.jitter = d;
        }
        s
    }

    /// `concurrency`: a number, or `"auto"` with its optional bounds `concurrency_min` and
    /// `concurrency_max` (which mean nothing with a fixed number, and say so).
    fn concurrency(&mut self, t: &Table, s: &mut Settings) {
        let p = "settings";
        if let Some(e) = t.get("concurrency") {
            match &e.value.kind {
                Kind::Str(v) if v.trim().eq_ignore_ascii_case("auto") => s.concurrency_auto = true,
                Kind::Str(v) => self.err(
                    e.line,
                    "settings.concurrency",
                    format!(
                        "\"{v}\" is not a concurrency: give a number of slots at once, or \"auto\""
                    ),
                ),
                _ => {
                    if let Some(n) = self.integer(t, p, "concurrency", 1, 100_000) {
                        s.concurrency = n as usize;
                    }
                }
            }
        }
        s.concurrency_min = self
            .integer(t, p, "concurrency_min", 1, 100_000)
            .map(|n| n as usize);
        s.concurrency_max = self
            .integer(t, p, "concurrency_max", 1, 100_000)
            .map(|n| n as usize);
        for key in ["concurrency_min", "concurrency_max"] {
            if let Some(e) = t.get(key)
                && !s.concurrency_auto
            {
                self.err(
                    e.line,
                    join(p, key),
                    "is a bound of concurrency = \"auto\"; with a fixed concurrency it means nothing (remove it, or set concurrency = \"auto\")",
                );
            }
        }
        if let (Some(lo), Some(hi), Some(e)) = (
            s.concurrency_min,
            s.concurrency_max,
            t.get("concurrency_max"),
        ) && lo > hi
        {
            self.err(
                e.line,
                "settings.concurrency_max",
                format!("must be at least concurrency_min ({lo}), found {hi}"),
            );
        }
    }

    /// A `[settings]` string that must follow `rule`: `None` (reported) when it does not.
    fn name(
        &mut self,
        t: &Table,
        key: &str,
        what: &str,
        valid: fn(&str) -> bool,
        rule: &str,
    ) -> Option<String> {
        let (v, e) = self.string(t, "settings", key)?;
        if valid(v) {
            return Some(v.to_string());
        }
        self.err(
            e.line,
            join("settings", key),
            format!("\"{v}\" is not a valid {what}: {rule}"),
        );
        None
    }
}

/// `settings.name_prefix`: 1 to 64 of a-z, 0-9, '-', '_', '.'.
fn is_valid_prefix(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}
