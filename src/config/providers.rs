//! `[providers.*]`: the keys every provider has (tenant, rate limit, timeout, CA, bootstrap)
//! and the dispatch of the rest to each provider's `parse_settings` by `type`.

use super::{BootstrapConfig, PROVIDER_TYPES, ProviderConfig, ProviderKind};
use crate::check::tree::{Kind, Table};
use crate::check::*;
use crate::provider::{SlotRules, TenantRule, cisco, taegis};
use std::collections::BTreeMap;
use std::time::Duration;

/// Keys every `[providers.*]` table may have, whatever its type.
const PROVIDER_COMMON_KEYS: &[&str] = &["tenant", "rate_limit", "timeout", "bootstrap", "ca_cert"];

/// Parses the keys of one provider type into its settings, recording every problem.
type SettingsParser = fn(&mut Checker, &Table, &str) -> ProviderKind;

/// Each provider type's own keys and settings parser: the one place a `type` (one of
/// [`PROVIDER_TYPES`]) meets its module.
fn provider_type(ty: &str) -> (&'static [&'static str], SettingsParser) {
    match ty {
        "cisco" => (cisco::SETTINGS_KEYS, |c, t, p| {
            ProviderKind::Cisco(cisco::parse_settings(c, t, p))
        }),
        // "taegis"
        _ => (taegis::SETTINGS_KEYS, |c, t, p| {
            ProviderKind::Taegis(taegis::parse_settings(c, t, p))
        }),
    }
}

impl ProviderKind {
    /// What the slot checks need to know about this platform (config/slots.rs names none).
    pub fn slot_rules(&self) -> &'static SlotRules {
        match self {
            ProviderKind::Taegis(_) => &taegis::SLOT_RULES,
            ProviderKind::Cisco(_) => &cisco::SLOT_RULES,
        }
    }
}

/// The slot rules of every provider type, in [`PROVIDER_TYPES`] order: for messages about a key
/// that the slot's own platform does not take.
pub(super) const PROVIDER_SLOT_RULES: &[&SlotRules] = &[&taegis::SLOT_RULES, &cisco::SLOT_RULES];

/// What slot validation needs to know about a provider, even a broken one (so that one mistake
/// in a provider does not also show up as an error in each of its slots).
pub(super) struct ProviderFacts {
    /// The platform's rules; `None` when the provider's type is unknown (its slots are not
    /// blamed for it).
    pub(super) rules: Option<&'static SlotRules>,
    pub(super) has_tenant: bool,
    pub(super) bootstrap_slot: Option<(String, usize)>,
}

impl Checker {
    pub(super) fn providers(
        &mut self,
        root: &Table,
    ) -> (
        BTreeMap<String, ProviderConfig>,
        BTreeMap<String, ProviderFacts>,
    ) {
        let mut configs = BTreeMap::new();
        let mut facts = BTreeMap::new();
        for (name, t) in self.named_tables(root, "providers") {
            let (cfg, f) = self.provider(name, t);
            configs.insert(name.to_string(), cfg);
            facts.insert(name.to_string(), f);
        }
        (configs, facts)
    }

    fn provider(&mut self, name: &str, t: &Table) -> (ProviderConfig, ProviderFacts) {
        let path = format!("providers.{name}");
        let mut cfg = ProviderConfig {
            name: name.to_string(),
            kind: ProviderKind::placeholder(),
            bootstrap: BootstrapConfig::Slot {
                slot: String::new(),
                seed: None,
            },
            tenant: None,
            rate_limit: 50.0,
            timeout: Duration::from_secs(30),
            ca_cert: None,
        };
        let Some(ty) = self.type_of(t, &path, PROVIDER_TYPES) else {
            // Unknown type: its other keys mean nothing yet, and its slots are not blamed.
            let facts = ProviderFacts {
                rules: None,
                has_tenant: true,
                bootstrap_slot: None,
            };
            return (cfg, facts);
        };
        let (own_keys, parse_settings) = provider_type(ty);
        let known: Vec<&str> = ["type"]
            .iter()
            .chain(own_keys)
            .chain(PROVIDER_COMMON_KEYS)
            .copied()
            .collect();
        self.known_keys(t, &path, &known);
        let kind = parse_settings(self, t, &path);
        let rules = kind.slot_rules();
        cfg.tenant = self.tenant(t, &path, Some(rules));
        if let Some(e) = t.get("rate_limit") {
            match e.value.kind {
                Kind::Int(n) if n > 0 => cfg.rate_limit = n as f64,
                Kind::Float(f) if f.is_finite() && f > 0.0 => cfg.rate_limit = f,
                Kind::Int(_) | Kind::Float(_) => self.err(
                    e.line,
                    join(&path, "rate_limit"),
                    "must be more than 0 (requests per second)",
                ),
                _ => self.wrong_type(e, &path, "a number of requests per second"),
            }
        }
        if let Some((d, _)) = self.duration_at_most(t, &path, "timeout", false, MAX_TIMEOUT) {
            cfg.timeout = d;
        }
        match self.string(t, &path, "ca_cert") {
            Some((p, e)) if p.trim().is_empty() => {
                self.err(e.line, join(&path, "ca_cert"), "must not be empty")
            }
            Some((p, _)) => cfg.ca_cert = Some(self.base_dir.join(p)),
            None => {}
        }
        let mut bootstrap_slot = None;
        match t.get("bootstrap") {
            None => self.missing(
                t,
                &path,
                "bootstrap",
                " (the credential rekey uses: { client_id = {...}, client_secret = {...} } or { slot = \"NAME\" })",
            ),
            Some(e) => match &e.value.kind {
                Kind::Table(b) => {
                    let (bootstrap, slot) = self.bootstrap(b, &join(&path, "bootstrap"));
                    cfg.bootstrap = bootstrap;
                    bootstrap_slot = slot;
                }
                _ => self.wrong_type(e, &path, "a table"),
            },
        }
        cfg.kind = kind;
        let facts = ProviderFacts {
            rules: Some(rules),
            // Where the tenant comes with the bootstrap credential, it is optional.
            has_tenant: rules.tenant.fallback().is_some()
                || cfg.tenant.is_some()
                || t.get("tenant").is_some(),
            bootstrap_slot,
        };
        (cfg, facts)
    }

    /// `tenant`: a string; digits only where the platform's `rules` say so.
    pub(super) fn tenant(
        &mut self,
        t: &Table,
        path: &str,
        rules: Option<&SlotRules>,
    ) -> Option<String> {
        let e = t.get("tenant")?;
        let key = join(path, "tenant");
        match &e.value.kind {
            Kind::Str(s) if s.trim().is_empty() => {
                self.err(e.line, key, "must not be empty");
                None
            }
            Kind::Str(s) => {
                if let Some(r) = rules
                    && let TenantRule::Required {
                        numeric: true,
                        example,
                    } = r.tenant
                    && !s.chars().all(|c| c.is_ascii_digit())
                {
                    self.err(
                        e.line,
                        key,
                        format!(
                            "{} tenant ids are numbers such as \"{example}\"; \"{s}\" is not",
                            r.platform
                        ),
                    );
                }
                Some(s.clone())
            }
            Kind::Int(n) => {
                self.err(
                    e.line,
                    key,
                    format!("must be a string: write tenant = \"{n}\" (in quotes)"),
                );
                Some(n.to_string())
            }
            _ => {
                self.wrong_type(e, path, "a string such as \"11772\"");
                None
            }
        }
    }

    fn bootstrap(&mut self, b: &Table, path: &str) -> (BootstrapConfig, Option<(String, usize)>) {
        self.known_keys(b, path, &["client_id", "client_secret", "slot", "seed"]);
        if b.get("slot").is_some() {
            for k in ["client_id", "client_secret"] {
                if let Some(e) = b.get(k) {
                    self.err(
                        e.line,
                        join(path, k),
                        "give either slot (with an optional seed) or client_id + client_secret, not both",
                    );
                }
            }
            let slot = self
                .string(b, path, "slot")
                .map(|(s, e)| (s.to_string(), e.line));
            let seed = self
                .table(b, path, "seed")
                .map(|t| self.pair(t, &join(path, "seed")));
            let name = slot.as_ref().map(|(s, _)| s.clone()).unwrap_or_default();
            (BootstrapConfig::Slot { slot: name, seed }, slot)
        } else {
            if let Some(e) = b.get("seed") {
                self.err(
                    e.line,
                    join(path, "seed"),
                    "seed is used only with slot = \"NAME\" (the seed pair is adopted by that slot)",
                );
            }
            (BootstrapConfig::Static(self.pair(b, path)), None)
        }
    }
}

impl ProviderConfig {
    /// This provider as one of `count` shards runs it: the plain 1/`count` part of its
    /// `rate_limit` and of its hourly budget, whatever share of the slots the shard holds
    /// (docs/src/scale.md, "Shards share the limits"). Logged at info, since a shard's rate is
    /// not what the inventory says.
    pub fn for_shard(&self, shard: crate::shard::Shard) -> ProviderConfig {
        let mut cfg = self.clone();
        let n = shard.count.max(1);
        cfg.rate_limit = self.rate_limit / n as f64;
        let mut budget = String::new();
        if let ProviderKind::Cisco(c) = &mut cfg.kind {
            c.shards = u32::try_from(n).unwrap_or(u32::MAX);
            budget = format!(
                ", hourly budget {} of {} (org budget {} less the reserve; the whole is shared through the state store)",
                c.shard_hourly_budget(),
                c.rekey_hourly_budget(),
                c.org_hourly_budget
            );
        }
        tracing::info!(
            shard = %shard,
            provider = %self.name,
            "shard {shard}: provider {} ({}) rate limit {} req/s of {}{budget}",
            self.name,
            self.kind.type_name(),
            cfg.rate_limit,
            self.rate_limit
        );
        cfg
    }

    /// Builds the provider this entry describes, bare: the engine wraps it in the layer stack
    /// (src/layer/mod.rs). The inventory opens what it parsed, so it is the one place that names
    /// every platform; the provider modules never import it. `state`: the backend that keeps
    /// the provider's hourly budget across processes (Cisco), if the engine has one for it.
    pub fn open(
        &self,
        bootstrap: crate::provider::Bootstrap,
        state: Option<crate::provider::budget::BudgetStore>,
    ) -> crate::error::Result<std::sync::Arc<dyn crate::provider::Provider>> {
        let http = crate::http::client_with_ca(self.ca_cert.as_deref())
            .map_err(|e| e.context(format!("provider {}", self.name)))?;
        let provider: std::sync::Arc<dyn crate::provider::Provider> = match &self.kind {
            ProviderKind::Taegis(t) => std::sync::Arc::new(
                taegis::TaegisProvider::new(
                    &self.name,
                    t,
                    bootstrap,
                    self.rate_limit,
                    self.timeout,
                )?
                .with_http_client(http),
            ),
            ProviderKind::Cisco(c) => {
                let p = cisco::CiscoProvider::new(
                    &self.name,
                    c,
                    bootstrap,
                    self.rate_limit,
                    self.timeout,
                )?
                .with_http_client(http);
                std::sync::Arc::new(match state {
                    Some(store) => p.share_budget_through(store, c),
                    None => p,
                })
            }
        };
        Ok(provider)
    }
}
