//! Names: the managed names of clients, operation tags, slot globs, and small helpers.

use chrono::{DateTime, Utc};
use std::time::Duration;
use uuid::Uuid;

/// `<prefix>[<instance>-]<slot>-g<generation>-<op>`: the name of the client an operation
/// creates, recorded in the operation before the call (docs/src/protocol.md, "Ownership of clients"). `op` is
/// [`op_tag`] of the operation's id, so two deployments (or two operations) never share a name.
pub fn managed_name(
    prefix: &str,
    instance: &str,
    slot: &str,
    generation: u64,
    op: &Uuid,
) -> String {
    let instance = if instance.is_empty() {
        String::new()
    } else {
        format!("{instance}-")
    };
    format!("{prefix}{instance}{slot}-g{generation}-{}", op_tag(op))
}

/// The names versions of rekey before recorded names gave clients: `<prefix><slot>-g<gen>`.
/// Such a name proves nothing; it is only reported (a possible orphan), never acted on.
pub fn legacy_managed_name(prefix: &str, slot: &str, generation: u64) -> String {
    format!("{prefix}{slot}-g{generation}")
}

/// Eight hex digits of an operation's id, from its random bits (the last ones of a UUIDv7; its
/// first ones are a timestamp, the same for operations started in the same minute).
pub fn op_tag(id: &Uuid) -> String {
    let hex = id.simple().to_string();
    hex[hex.len() - 8..].to_string()
}

/// `t + d`, saturating at the latest representable time instead of panicking. Inventory
/// durations are bounded at validation (docs/src/inventory.md, "Limits"); this is the second line.
pub(super) fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

pub(super) fn short_id(id: &Uuid) -> String {
    id.to_string()[..8].to_string()
}

/// The first selector that matches none of `names` (all slots, whatever the shard).
pub(super) fn unmatched<'a, 'n>(
    only: &'a [String],
    names: impl Iterator<Item = &'n str> + Clone,
) -> Option<&'a str> {
    only.iter()
        .find(|sel| !names.clone().any(|n| glob_match(sel, n)))
        .map(String::as_str)
}

/// `*` matches any run of characters; everything else is literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else {
                return false;
            };
            rest = &rest[pos + part.len()..];
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("siem-*", "siem-acme"));
        assert!(glob_match("*-acme", "siem-acme"));
        assert!(glob_match("s*m*e", "siem-acme"));
        assert!(!glob_match("siem-*", "edr-acme"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn managed_names() {
        let op = Uuid::parse_str("0190b6a0-1234-7abc-8def-0123456789ab").unwrap();
        assert_eq!(
            managed_name("rekey-", "", "siem", 3, &op),
            "rekey-siem-g3-456789ab"
        );
        assert_eq!(
            managed_name("rekey-", "eu-prod", "siem", 3, &op),
            "rekey-eu-prod-siem-g3-456789ab"
        );
        assert_eq!(legacy_managed_name("rekey-", "siem", 3), "rekey-siem-g3");
    }

    #[test]
    fn later_saturates() {
        let now = Utc::now();
        assert_eq!(
            later(now, Duration::from_secs(60)),
            now + chrono::Duration::seconds(60)
        );
        assert_eq!(later(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
    }
}
