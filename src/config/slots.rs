//! `[[slots]]`: each slot with the defaults applied, checked against its provider's rules and
//! the backends defined; then the bootstrap slots, which need every slot known.

use super::defaults::{DRAIN_KEYS, Defaults, grace_message};
use super::providers::{PROVIDER_SLOT_RULES, ProviderFacts};
use super::{BackendConfig, ProviderConfig, SlotConfig};
use crate::check::tree::{Kind, Table};
use crate::check::values::Strategy;
use crate::check::*;
use crate::provider::SlotRules;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The slot keys a client's grants may be listed under: each platform's `SlotRules` take one or
/// both. Read in this order.
const GRANT_KEYS: &[&str] = &["roles", "scopes"];

/// Extra locations of a slot, for checks that run after every slot is known.
pub(super) struct SlotLines {
    path: String,
    roles: usize,
    retired: usize,
}

impl Checker {
    pub(super) fn slots(
        &mut self,
        root: &mut Table,
        defaults: &Defaults,
        providers: &BTreeMap<String, ProviderConfig>,
        facts: &BTreeMap<String, ProviderFacts>,
        backends: &BTreeMap<String, BackendConfig>,
    ) -> (Vec<Arc<SlotConfig>>, Vec<SlotLines>) {
        let Some(e) = root.entries.iter_mut().find(|e| e.key == "slots") else {
            return (Vec::new(), Vec::new());
        };
        let n = match &e.value.kind {
            Kind::Array(items) => items.len(),
            _ => 0,
        };
        let mut slots = Vec::with_capacity(n);
        let mut lines = Vec::with_capacity(n);
        let Kind::Array(items) = &mut e.value.kind else {
            self.err(
                e.line,
                "slots",
                format!(
                    "must be an array of tables (write each slot as [[slots]]), found {}",
                    e.value.kind.describe()
                ),
            );
            return (slots, lines);
        };
        if backends.is_empty() && !items.is_empty() {
            self.err(
                items[0].line,
                "backends",
                "no backend is defined: add a [backends.NAME] table (e.g. type = \"file\") to store the slots' credentials in",
            );
        }
        let mut seen: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        // Taken out of the tree: each slot's nodes go once it is checked.
        for (i, node) in std::mem::take(items).into_iter().enumerate() {
            let path = format!("slots[{i}]");
            let Kind::Table(t) = &node.kind else {
                self.err(
                    node.line,
                    path,
                    format!("must be a table, found {}", node.kind.describe()),
                );
                continue;
            };
            let (slot, l) = self.slot(t, path, defaults, providers, facts, backends);
            if !slot.name.is_empty() {
                if let Some((j, line)) = seen.get(&slot.name) {
                    let name_line = t.get("name").map_or(t.line, |e| e.line);
                    self.err(
                        name_line,
                        format!("{}.name", l.path),
                        format!(
                            "slot name \"{}\" is already used by slots[{j}] (line {line}); slot names must be unique",
                            slot.name
                        ),
                    );
                } else {
                    seen.insert(slot.name.clone(), (i, t.line));
                }
            }
            slots.push(Arc::new(slot));
            lines.push(l);
        }
        (slots, lines)
    }

    fn slot(
        &mut self,
        t: &Table,
        path: String,
        defaults: &Defaults,
        providers: &BTreeMap<String, ProviderConfig>,
        facts: &BTreeMap<String, ProviderFacts>,
        backends: &BTreeMap<String, BackendConfig>,
    ) -> (SlotConfig, SlotLines) {
        let p = path.as_str();
        self.known_keys(
            t,
            p,
            &[
                &[
                    "name", "provider", "tenant", "roles", "scopes", "strategy", "max_age",
                    "grace", "backend", "mirrors", "retired",
                ],
                DRAIN_KEYS,
            ]
            .concat(),
        );
        let mut slot = SlotConfig {
            name: String::new(),
            provider: String::new(),
            tenant: String::new(),
            roles: Vec::new(),
            strategy: defaults.strategy,
            max_age: defaults.max_age.0,
            grace: defaults.grace.0,
            drain: defaults.drain,
            backend: String::new(),
            mirrors: Vec::new(),
            retired: false,
            line: t.line,
        };
        match self.string(t, p, "name") {
            Some((name, e)) => {
                if !is_valid_slot_name(name) {
                    self.err(
                        e.line,
                        join(p, "name"),
                        format!(
                            "\"{name}\" is not a valid slot name: use 1-100 of a-z, 0-9, '.', '_', '-', starting with a letter or digit (it becomes a file name and part of a client name)"
                        ),
                    );
                }
                slot.name = name.to_string();
            }
            None if t.get("name").is_none() => self.missing(t, p, "name", ""),
            None => {}
        }
        let mut provider_facts = None;
        match self.string(t, p, "provider") {
            Some((name, e)) => {
                slot.provider = name.to_string();
                provider_facts = facts.get(name);
                self.defined(e.line, join(p, "provider"), "provider", name, facts);
            }
            None if t.get("provider").is_none() => self.missing(
                t,
                p,
                "provider",
                &format!(" (one of: {})", list(facts.keys())),
            ),
            None => {}
        }
        let rules = provider_facts.and_then(|f| f.rules);
        match self.tenant(t, p, rules) {
            Some(tenant) => slot.tenant = tenant,
            None => {
                if let Some(f) = provider_facts {
                    let fallback = providers
                        .get(&slot.provider)
                        .and_then(|c| c.tenant.clone())
                        // The org is the bootstrap credential's; the record still names one.
                        .or_else(|| rules.and_then(|r| r.tenant.fallback()).map(str::to_string));
                    match fallback {
                        Some(tenant) => slot.tenant = tenant,
                        None if !f.has_tenant && t.get("tenant").is_none() => self.err(
                            t.line,
                            join(p, "tenant"),
                            format!(
                                "missing tenant: set tenant = \"...\" here or a default tenant in [providers.{}]",
                                slot.provider
                            ),
                        ),
                        None => {}
                    }
                }
            }
        }
        let roles_line = self.grants(t, p, rules, &mut slot.roles);
        let strategy_entry = t.get("strategy");
        if let Some(s) = self.strategy(t, p) {
            slot.strategy = s;
        }
        if let Some(r) = rules
            && !r.in_place_rotation
            && slot.strategy == Strategy::InPlace
        {
            let (line, from) = match strategy_entry {
                Some(e) => (e.line, ""),
                None => (t.line, " (from [defaults])"),
            };
            self.err(
                line,
                join(p, "strategy"),
                format!(
                    "slot \"{}\": strategy \"in-place\"{from} is not possible on {} provider \"{}\", which has no password reset; use strategy = \"alternate\"",
                    slot.name, r.platform, slot.provider
                ),
            );
        }
        slot.drain = self.drain(t, p, defaults.drain);
        let max_age = self.duration(t, p, "max_age", false);
        let grace = self.duration(t, p, "grace", true);
        if let Some((d, _)) = max_age {
            slot.max_age = d;
        }
        if let Some((d, _)) = grace {
            slot.grace = d;
        }
        if slot.grace >= slot.max_age {
            let at = match (grace, max_age) {
                (Some((_, l)), _) => Some(("grace", l)),
                (None, Some((_, l))) => Some(("max_age", l)),
                // Both from [defaults]: reported there, once.
                (None, None) => None,
            };
            if let Some((key, line)) = at {
                self.err(line, join(p, key), grace_message(slot.grace, slot.max_age));
            }
        }
        match self.string(t, p, "backend") {
            Some((name, e)) => {
                self.defined(e.line, join(p, "backend"), "backend", name, backends);
                slot.backend = name.to_string();
            }
            None if t.get("backend").is_some() => {}
            None => match (&defaults.backend, backends.len()) {
                (Some(name), _) => slot.backend = name.clone(),
                (None, 1) => slot.backend = backends.keys().next().cloned().unwrap_or_default(),
                // No backend at all: reported once for the whole inventory.
                (None, 0) => {}
                (None, n) => self.err(
                    t.line,
                    join(p, "backend"),
                    format!(
                        "which backend? {n} are defined ({}): set backend here or in [defaults]",
                        list(backends.keys())
                    ),
                ),
            },
        }
        if let Some((mirrors, line)) = self.strings(t, p, "mirrors") {
            let key = join(p, "mirrors");
            for (i, name) in mirrors.iter().enumerate() {
                let problem = if !self.defined(line, key.clone(), "backend", name, backends) {
                    None
                } else if *name == slot.backend {
                    Some(format!(
                        "\"{name}\" is this slot's primary backend; a mirror must be another one"
                    ))
                } else if mirrors[..i].contains(name) {
                    Some(format!("\"{name}\" is listed twice"))
                } else {
                    None
                };
                if let Some(message) = problem {
                    self.err(line, key.clone(), message);
                }
            }
            slot.mirrors = mirrors;
        }
        let retired_line = t.get("retired").map_or(t.line, |e| e.line);
        if let Some(b) = self.boolean(t, p, "retired") {
            slot.retired = b;
        }
        let lines = SlotLines {
            path,
            roles: roles_line,
            retired: retired_line,
        };
        (slot, lines)
    }

    /// What the client may do, under the key its platform's `rules` take (`roles`, `scopes`);
    /// with no rules (the provider is undefined or of an unknown type), under any such key.
    /// Returns the line to blame for a missing grant.
    fn grants(
        &mut self,
        t: &Table,
        p: &str,
        rules: Option<&SlotRules>,
        grants: &mut Vec<String>,
    ) -> usize {
        let mut line = t.line;
        let mut given: Option<&str> = None;
        for &key in GRANT_KEYS {
            let Some(e) = t.get(key) else {
                continue;
            };
            if let Some(r) = rules
                && !r.takes(key)
            {
                let owner = PROVIDER_SLOT_RULES
                    .iter()
                    .find(|o| o.grants_key == key)
                    .map(|o| format!("{key} are for {} slots; ", o.platform))
                    .unwrap_or_default();
                self.err(
                    e.line,
                    join(p, key),
                    format!(
                        "{owner}{} clients take {} = {}",
                        r.platform, r.grants_key, r.grants_example
                    ),
                );
                continue;
            }
            if let Some(first) = given {
                let both = |r: &&SlotRules| r.takes(first) && r.takes(key);
                let message = match rules
                    .filter(both)
                    .or_else(|| PROVIDER_SLOT_RULES.iter().copied().find(both))
                {
                    Some(SlotRules {
                        platform,
                        grants_key,
                        grants_alias: Some(alias),
                        ..
                    }) => format!(
                        "give either {grants_key} or {alias} (its alias on {platform} slots), not both"
                    ),
                    _ => format!("give either {key} or {first}, not both"),
                };
                self.err(e.line, join(p, key), message);
                continue;
            }
            given = Some(key);
            if let Some((list, at)) = self.strings(t, p, key) {
                *grants = list;
                line = at;
            }
        }
        if let Some(r) = rules
            && r.grants_required
            && given.is_none()
        {
            let key = r.grants_key;
            self.err(
                t.line,
                join(p, key),
                format!(
                    "a {} client needs its {key}: set {key} = [\"...\"] (e.g. {})",
                    r.platform, r.grants_example
                ),
            );
        }
        line
    }

    /// `bootstrap = { slot = ... }` must name a live slot of the same provider that can manage
    /// clients.
    pub(super) fn bootstrap_slots(
        &mut self,
        facts: &BTreeMap<String, ProviderFacts>,
        slots: &[Arc<SlotConfig>],
        lines: &[SlotLines],
    ) {
        for (pname, f) in facts {
            let Some((sname, line)) = &f.bootstrap_slot else {
                continue;
            };
            let key = format!("providers.{pname}.bootstrap.slot");
            let Some(i) = slots.iter().position(|s| &s.name == sname) else {
                let own = slots
                    .iter()
                    .filter(|s| &s.provider == pname && !s.name.is_empty())
                    .map(|s| &s.name);
                self.err(
                    *line,
                    key,
                    format!(
                        "bootstrap slot \"{sname}\" is not a slot in this inventory (slots of provider {pname}: {})",
                        list(own)
                    ),
                );
                continue;
            };
            let slot = &slots[i];
            if &slot.provider != pname {
                self.err(
                    *line,
                    key,
                    format!(
                        "bootstrap slot \"{sname}\" belongs to provider \"{}\", not \"{pname}\": a provider's bootstrap slot must be one of its own slots",
                        slot.provider
                    ),
                );
                continue;
            }
            if slot.retired {
                self.err(
                    lines[i].retired,
                    format!("{}.retired", lines[i].path),
                    format!(
                        "slot \"{sname}\" holds the bootstrap credential of provider \"{pname}\" ({key}, line {line}) and cannot be retired; choose another bootstrap first"
                    ),
                );
            }
            if let Some(r) = f.rules
                && !slot.roles.iter().any(|g| g == r.manager_grant.id)
            {
                let grant = r.manager_grant;
                let shown = match grant.name {
                    Some(name) => format!("{name} ({})", grant.id),
                    None => format!("\"{}\"", grant.id),
                };
                self.err(
                    lines[i].roles,
                    format!("{}.{}", lines[i].path, r.grants_key),
                    format!(
                        "slot \"{sname}\" holds the bootstrap credential of provider \"{pname}\" ({key}, line {line}), so it must manage clients: its {} must include {shown}",
                        r.grants_key
                    ),
                );
            }
        }
    }
}
