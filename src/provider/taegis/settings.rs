//! The Taegis-specific keys of `[providers.NAME]`: the environment (or URL) and who chooses an
//! in-place secret (docs/src/platforms/taegis.md).

use crate::check::Checker;
use crate::check::tree::Table;
use crate::check::{join, list};

/// The Taegis role every bootstrap client needs to manage other clients.
pub const TAEGIS_TENANT_ADMIN_ROLE: &str = "ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068";

#[derive(Clone, Debug)]
pub struct TaegisSettings {
    /// API base URL, from `environment` or `url`; no trailing slash.
    pub base_url: String,
    /// The environment name given, if any (for messages and rate-limit keys).
    pub environment: Option<String>,
    /// `in_place_secret = "caller"`: in-place rotation sends a secret rekey generated and stored
    /// first (only if the platform honours the `secret` argument). Default `"server"`.
    pub caller_chosen_secret: bool,
}

/// Known Taegis environments: (names, base URL). See docs/src/platforms/taegis.md.
pub const TAEGIS_ENVIRONMENTS: &[(&[&str], &str)] = &[
    (
        &["charlie", "production", "us1"],
        "https://api.ctpx.secureworks.com",
    ),
    (
        &["delta", "us2"],
        "https://api.delta.taegis.secureworks.com",
    ),
    (&["echo", "eu"], "https://api.echo.taegis.secureworks.com"),
    (
        &["foxtrot", "us3"],
        "https://api.foxtrot.taegis.secureworks.com",
    ),
    (&["golf", "euw1"], "https://api.golf.taegis.secureworks.com"),
    (
        &["hotel", "apse2"],
        "https://api.hotel.taegis.secureworks.com",
    ),
    (
        &["india", "aps1"],
        "https://api.india.taegis.secureworks.com",
    ),
    (
        &["juliet", "apne1"],
        "https://api.juliet.taegis.secureworks.com",
    ),
    (&["kilo", "sae1"], "https://api.kilo.taegis.secureworks.com"),
    (
        &["quebec", "cac1"],
        "https://api.quebec.taegis.secureworks.com",
    ),
];

/// The base URL of a Taegis environment name (case-insensitive), if known.
pub fn taegis_environment_url(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    TAEGIS_ENVIRONMENTS
        .iter()
        .find(|(names, _)| names.contains(&lower.as_str()))
        .map(|(_, url)| *url)
}

/// How the inventory's checks treat a Taegis slot: numeric tenant ids, roles (none means the
/// platform default), in-place rotation, and Tenant Admin for a bootstrap client.
pub const SLOT_RULES: crate::provider::SlotRules = crate::provider::SlotRules {
    platform: "Taegis",
    tenant: crate::provider::TenantRule::Required {
        numeric: true,
        example: "11772",
    },
    grants_key: "roles",
    grants_alias: None,
    grants_required: false,
    grants_example: "[\"<role id>\", ...]",
    in_place_rotation: true,
    manager_grant: crate::provider::Grant {
        id: TAEGIS_TENANT_ADMIN_ROLE,
        name: Some("Tenant Admin"),
    },
};
/// Keys a `type = "taegis"` provider has beyond the common ones.
pub(crate) const SETTINGS_KEYS: &[&str] = &["environment", "url", "in_place_secret"];

/// Parses the Taegis-specific keys of `[providers.NAME]`, recording every problem in `c`.
pub(crate) fn parse_settings(c: &mut Checker, t: &Table, path: &str) -> TaegisSettings {
    let mut taegis = TaegisSettings {
        base_url: String::new(),
        environment: None,
        caller_chosen_secret: false,
    };
    let env = c.string(t, path, "environment");
    let url = c.string(t, path, "url");
    match (env, url) {
        (Some(_), Some((_, e))) => c.err(
            e.line,
            join(path, "url"),
            "give either environment or url, not both",
        ),
        (Some((env, e)), None) => match taegis_environment_url(env) {
            Some(u) => {
                taegis.base_url = u.to_string();
                taegis.environment = Some(env.to_ascii_lowercase());
            }
            None => {
                let names = TAEGIS_ENVIRONMENTS.iter().flat_map(|(n, _)| n.iter());
                c.err(
                    e.line,
                    join(path, "environment"),
                    format!(
                        "unknown Taegis environment \"{env}\"; valid names: {} (or give url = \"https://...\")",
                        list(names)
                    ),
                );
            }
        },
        (None, Some((u, e))) => {
            if let Some(base) = c.base_url(u, e, path) {
                taegis.base_url = base;
            }
        }
        (None, None) => {
            if t.get("environment").is_none() && t.get("url").is_none() {
                c.missing(
                    t,
                    path,
                    "environment",
                    " (a Taegis environment such as \"us1\", or url = \"https://...\")",
                );
            }
        }
    }
    if let Some((v, e)) = c.string(t, path, "in_place_secret") {
        match v {
            "server" => taegis.caller_chosen_secret = false,
            "caller" => taegis.caller_chosen_secret = true,
            _ => c.err(
                e.line,
                join(path, "in_place_secret"),
                format!("unknown value \"{v}\"; use \"server\" or \"caller\""),
            ),
        }
    }
    taegis
}
