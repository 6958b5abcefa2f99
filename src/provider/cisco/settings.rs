//! The Cisco-specific keys of `[providers.NAME]`: the region (or URL), the inferred REST paths,
//! the availability of created clients and the org's hourly budget
//! (docs/src/platforms/cisco.md).

use crate::check::Checker;
use crate::check::join;
use crate::check::tree::Table;

/// The scope a bootstrap client needs to manage other clients.
pub const CISCO_OAUTH_SCOPE: &str = "oauth";
pub const DEFAULT_CLIENTS_PATH: &str = "/iroh/oauth2-clients/clients";
pub const DEFAULT_CLIENT_PATH: &str = "/iroh/oauth2-clients/clients/{id}";
/// Cisco's documented limit: requests per rolling hour per organisation.
pub const DEFAULT_ORG_HOURLY_BUDGET: u32 = 8000;
/// Share of the org budget left to the org's other integrations unless `hourly_budget_reserve`
/// says otherwise.
pub const DEFAULT_RESERVE_PERCENT: u32 = 10;

/// Cisco regions: (name, API base). See docs/src/platforms/cisco.md.
pub const CISCO_REGIONS: &[(&str, &str)] = &[
    ("us", "https://visibility.amp.cisco.com"),
    ("eu", "https://visibility.eu.amp.cisco.com"),
    ("apjc", "https://visibility.apjc.amp.cisco.com"),
];

#[derive(Clone, Debug)]
pub struct CiscoSettings {
    /// API base URL, from `region` or `url`; no trailing slash.
    pub base_url: String,
    pub region: Option<String>,
    /// List (GET) path of clients. Inferred, not documented.
    pub clients_path: String,
    /// Path of one client (DELETE); `{id}` is replaced by the client id. Inferred.
    pub client_path: String,
    /// `availability` of created clients (default `org`).
    pub availability: String,
    /// The org's hourly request budget (default 8000).
    pub org_hourly_budget: u32,
    /// What rekey leaves of that budget to the org's other integrations (default 10%).
    pub hourly_budget_reserve: Reserve,
    /// The shards (`--shard I/N`) this process shares the budget with: its own pace is
    /// 1/`shards` of rekey's part (docs/src/scale.md).
    pub shards: u32,
}

/// `hourly_budget_reserve`: a count of requests, or a percent of `org_hourly_budget`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reserve {
    Requests(u32),
    Percent(u32),
}

impl CiscoSettings {
    /// Requests per rolling hour rekey may send to the org in all (every process and shard
    /// together): the budget minus the reserve, at least 1.
    pub fn rekey_hourly_budget(&self) -> u32 {
        let reserve = match self.hourly_budget_reserve {
            Reserve::Requests(n) => n,
            Reserve::Percent(p) => {
                (u64::from(self.org_hourly_budget) * u64::from(p)).div_ceil(100) as u32
            }
        };
        self.org_hourly_budget.saturating_sub(reserve).max(1)
    }

    /// This process's even part of [`Self::rekey_hourly_budget`] (the plain 1/N split).
    pub fn shard_hourly_budget(&self) -> u32 {
        (self.rekey_hourly_budget() / self.shards.max(1)).max(1)
    }
}

impl CiscoSettings {
    /// Settings for `base_url` with every default.
    pub fn with_url(base_url: impl Into<String>) -> Self {
        CiscoSettings {
            base_url: base_url.into(),
            region: None,
            clients_path: DEFAULT_CLIENTS_PATH.into(),
            client_path: DEFAULT_CLIENT_PATH.into(),
            availability: "org".into(),
            org_hourly_budget: DEFAULT_ORG_HOURLY_BUDGET,
            hourly_budget_reserve: Reserve::Percent(DEFAULT_RESERVE_PERCENT),
            shards: 1,
        }
    }
}

/// How the inventory's checks treat a Cisco slot: the org comes with the credential (a slot
/// that names no tenant records "org"), scopes (alias roles) are required, no password reset,
/// and the "oauth" scope for a bootstrap client.
pub const SLOT_RULES: crate::provider::SlotRules = crate::provider::SlotRules {
    platform: "Cisco",
    tenant: crate::provider::TenantRule::Optional { fallback: "org" },
    grants_key: "scopes",
    grants_alias: Some("roles"),
    grants_required: true,
    grants_example: "[\"enrich:read\", \"inspect:read\"]",
    in_place_rotation: false,
    manager_grant: crate::provider::Grant {
        id: CISCO_OAUTH_SCOPE,
        name: None,
    },
};
/// Keys a `type = "cisco"` provider has beyond the common ones.
pub(crate) const SETTINGS_KEYS: &[&str] = &[
    "region",
    "url",
    "paths",
    "availability",
    "org_hourly_budget",
    "hourly_budget_reserve",
];

/// Parses the Cisco-specific keys of `[providers.NAME]`, recording every problem in `c`.
pub(crate) fn parse_settings(c: &mut Checker, t: &Table, path: &str) -> CiscoSettings {
    let mut s = CiscoSettings::with_url(String::new());
    let region = c.string(t, path, "region");
    let url = c.string(t, path, "url");
    match (region, url) {
        (Some(_), Some((_, e))) => c.err(
            e.line,
            join(path, "url"),
            "give either region or url, not both",
        ),
        (Some((r, e)), None) => {
            let lower = r.to_ascii_lowercase();
            match CISCO_REGIONS.iter().find(|(n, _)| *n == lower) {
                Some((n, u)) => {
                    s.base_url = u.to_string();
                    s.region = Some(n.to_string());
                }
                None => c.err(
                    e.line,
                    join(path, "region"),
                    format!(
                        "unknown Cisco region \"{r}\"; valid regions: us, eu, apjc (or give url = \"https://...\")"
                    ),
                ),
            }
        }
        (None, Some((u, e))) => {
            if let Some(base) = c.base_url(u, e, path) {
                s.base_url = base;
            }
        }
        (None, None) => {
            if t.get("region").is_none() && t.get("url").is_none() {
                c.missing(
                    t,
                    path,
                    "region",
                    " (a Cisco region: \"us\", \"eu\" or \"apjc\", or url = \"https://...\")",
                );
            }
        }
    }
    if let Some(paths) = c.table(t, path, "paths") {
        let pp = join(path, "paths");
        c.known_keys(paths, &pp, &["clients", "client"]);
        if let Some((v, e)) = c.string(paths, &pp, "clients") {
            if v.starts_with('/') && !v.contains(['?', '#']) {
                s.clients_path = v.trim_end_matches('/').to_string();
            } else {
                c.err(
                    e.line,
                    join(&pp, "clients"),
                    format!("\"{v}\" must be a path starting with '/', without '?' or '#'"),
                );
            }
        }
        if let Some((v, e)) = c.string(paths, &pp, "client") {
            if v.starts_with('/') && v.contains("{id}") && !v.contains(['?', '#']) {
                s.client_path = v.to_string();
            } else {
                c.err(
                    e.line,
                    join(&pp, "client"),
                    format!(
                        "\"{v}\" must be a path starting with '/' that contains {{id}} (where the client id goes)"
                    ),
                );
            }
        }
    }
    if let Some((v, e)) = c.string(t, path, "availability") {
        if v.trim().is_empty() {
            c.err(
                e.line,
                join(path, "availability"),
                "must not be empty (Cisco documents \"org\")",
            );
        } else {
            s.availability = v.to_string();
        }
    }
    if let Some(n) = c.integer(t, path, "org_hourly_budget", 10, 10_000_000) {
        s.org_hourly_budget = n as u32;
    }
    if let Some(r) = reserve(c, t, path, s.org_hourly_budget) {
        s.hourly_budget_reserve = r;
    }
    s
}

/// `hourly_budget_reserve`: a whole number of requests below `org_hourly_budget`, or a string
/// `"N%"` with N from 0 to 99, so rekey always keeps some of the budget and never all of it.
fn reserve(c: &mut Checker, t: &Table, path: &str, budget: u32) -> Option<Reserve> {
    use crate::check::tree::Kind;
    let e = t.get("hourly_budget_reserve")?;
    let key = join(path, "hourly_budget_reserve");
    match &e.value.kind {
        Kind::Int(n) if (0..i64::from(budget)).contains(n) => Some(Reserve::Requests(*n as u32)),
        Kind::Int(n) => {
            c.err(
                e.line,
                key,
                format!(
                    "must be at least 0 and below org_hourly_budget ({budget}), found {n}: rekey needs some of the budget"
                ),
            );
            None
        }
        Kind::Str(v) => match v.trim().strip_suffix('%').map(|p| p.trim().parse::<u32>()) {
            Some(Ok(p)) if p < 100 => Some(Reserve::Percent(p)),
            _ => {
                c.err(
                    e.line,
                    key,
                    format!(
                        "\"{v}\" is not a share of the budget: write a percent from 0 to 99 such as \"10%\", or a number of requests"
                    ),
                );
                None
            }
        },
        _ => {
            c.wrong_type(e, path, "a number of requests or a percent such as \"10%\"");
            None
        }
    }
}
