//! Taegis's API clients: roles and role assignments, the client record, and the searches of
//! `clientsSearch` and `clients`.

use crate::emulator::state::{ClientRecord, Platform, Table, random_alnum};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Role id of Tenant Admin: the only role allowed to manage API clients.
pub const TENANT_ADMIN_ROLE: &str = "ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068";
/// Role id the emulator uses for Tenant Analyst, the default of `createClient` (invented: the
/// real id is not public).
pub const TENANT_ANALYST_ROLE: &str = "a4903f9a-2d5a-4c1e-9b7e-3f6c1d2e8a40";

/// Roles the emulator knows, `(id, name)`. Other role ids are refused like an unknown role
/// would be. Only Tenant Admin's id is the real one.
pub const ROLES: &[(&str, &str)] = &[
    (TENANT_ADMIN_ROLE, "Tenant Admin"),
    (TENANT_ANALYST_ROLE, "Tenant Analyst"),
    ("e1b1a8f2-6f0b-4d55-9c3a-7a2f1c9b5d61", "Tenant Responder"),
    ("c7d2e3f4-8a9b-4c0d-8e1f-2a3b4c5d6e7f", "Tenant Auditor"),
];

/// The internal Secureworks tenant: clients there are refused, as on the real service.
pub const INTERNAL_TENANT: &str = "5000";

/// Value of the `environment` field of every client.
pub const ENVIRONMENT: &str = "emulator";

pub fn role_name(id: &str) -> Option<&'static str> {
    ROLES.iter().find(|(rid, _)| *rid == id).map(|(_, n)| *n)
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct RoleAssignment {
    pub id: String,
    pub tenant_id: String,
    pub role_id: String,
}

/// A Taegis API client: the shared record, its owner tenant and its role assignments.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Client {
    #[serde(flatten)]
    record: ClientRecord,
    pub owner_tenant_id: String,
    pub role_assignments: Vec<RoleAssignment>,
}

impl std::ops::Deref for Client {
    type Target = ClientRecord;
    fn deref(&self) -> &ClientRecord {
        &self.record
    }
}

impl std::ops::DerefMut for Client {
    fn deref_mut(&mut self) -> &mut ClientRecord {
        &mut self.record
    }
}

/// The Taegis clients.
pub type Clients = Table<Client>;

impl Client {
    /// A new client. `roles` empty means Tenant Analyst. Every role must be known.
    pub fn new(
        tenant: &str,
        owner_tenant: &str,
        name: &str,
        roles: &[String],
        client_id: String,
        secret: &str,
        created_by: Option<&str>,
    ) -> Result<Client> {
        let mut role_ids: Vec<String> = Vec::new();
        for r in roles {
            if role_name(r).is_none() {
                return Err(Error::invalid(format!("unknown role {r}")));
            }
            if !role_ids.contains(r) {
                role_ids.push(r.clone());
            }
        }
        if role_ids.is_empty() {
            role_ids.push(TENANT_ANALYST_ROLE.to_string());
        }
        let record = ClientRecord::new(
            Platform::Taegis,
            uuid::Uuid::new_v4().to_string(),
            client_id,
            name,
            tenant,
            secret,
            created_by,
        );
        Ok(Client {
            record,
            owner_tenant_id: owner_tenant.to_string(),
            role_assignments: role_ids
                .into_iter()
                .map(|role_id| RoleAssignment {
                    id: uuid::Uuid::new_v4().to_string(),
                    tenant_id: tenant.to_string(),
                    role_id,
                })
                .collect(),
        })
    }

    pub fn role_ids(&self) -> impl Iterator<Item = &str> {
        self.role_assignments.iter().map(|r| r.role_id.as_str())
    }

    pub fn is_tenant_admin(&self) -> bool {
        self.role_ids().any(|r| r == TENANT_ADMIN_ROLE)
    }
}

/// A fresh CLIENT_ID: 32 alphanumeric characters, not `taken` yet.
pub fn new_client_id(taken: impl Fn(&str) -> bool) -> String {
    loop {
        let id = random_alnum(32);
        if !taken(&id) {
            break id;
        }
    }
}

/// Search filters shared by `clientsSearch` and the deprecated `clients`.
#[derive(Default, Debug, Clone)]
pub struct SearchFilter {
    pub name: Option<String>,
    pub client_ids: Option<Vec<String>>,
    pub role_ids: Option<Vec<String>>,
    pub tenant_ids: Option<Vec<String>>,
    pub sort_by: SortBy,
    pub descending: bool,
    /// Number of matching results to skip.
    pub offset: usize,
    pub limit: usize,
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    #[default]
    Name,
    ClientId,
    RoleAssignmentName,
    TokenRequestCount,
    TokenRequestTime,
}

pub struct SearchResult {
    pub total_count: usize,
    pub total_unfiltered_count: usize,
    pub results: Vec<Client>,
}

/// SQL `LIKE` with `%` only: `%` matches any run of characters, everything else (including
/// `_`, which is common in client names) matches itself, case-sensitively.
pub fn like(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('%').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    // Checked before slicing, so both cut points are char boundaries.
    if value.len() < first.len() + last.len() || !value.starts_with(first) || !value.ends_with(last)
    {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(pos) => rest = &rest[pos + mid.len()..],
            None => return false,
        }
    }
    true
}

impl Table<Client> {
    /// Finds a client of `tenant` by object id or client_id. A client of another tenant is
    /// "not found", so nothing leaks across tenants.
    pub fn find_in_tenant(&self, tenant: &str, id: &str) -> Option<&Client> {
        self.get(id)
            .or_else(|| self.by_client_id(id))
            .filter(|c| c.tenant_id == tenant)
    }

    /// Sets a new secret and bumps the epoch, killing the old secret and all older tokens.
    pub fn rotate(&mut self, object_id: &str, secret: &str, by: &str) -> Result<Client> {
        let c = self
            .get_mut(object_id)
            .ok_or_else(|| Error::not_found("client not found"))?;
        c.rotate(secret, by);
        Ok(c.clone())
    }

    /// The clients of a tenant.
    pub fn clients_of(&self, tenant: &str) -> impl Iterator<Item = &Client> {
        self.values().filter(move |c| c.tenant_id == tenant)
    }

    /// Filters, sorts and pages the clients of `tenant`.
    pub fn search(&self, tenant: &str, f: &SearchFilter) -> SearchResult {
        let scope: Vec<&Client> = self.clients_of(tenant).collect();
        let total_unfiltered_count = scope.len();
        let mut hits: Vec<&Client> = scope
            .into_iter()
            .filter(|c| f.name.as_deref().is_none_or(|p| like(p, &c.name)))
            .filter(|c| {
                f.client_ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&c.client_id))
            })
            .filter(|c| {
                f.role_ids
                    .as_ref()
                    .is_none_or(|ids| c.role_ids().any(|r| ids.iter().any(|i| i == r)))
            })
            .filter(|c| {
                f.tenant_ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&c.tenant_id))
            })
            .collect();
        let first_role_name = |c: &Client| {
            c.role_ids()
                .filter_map(role_name)
                .min()
                .unwrap_or_default()
                .to_string()
        };
        hits.sort_by(|a, b| {
            let primary = match f.sort_by {
                SortBy::Name => a.name.cmp(&b.name),
                SortBy::ClientId => a.client_id.cmp(&b.client_id),
                SortBy::RoleAssignmentName => first_role_name(a).cmp(&first_role_name(b)),
                SortBy::TokenRequestCount => a.token_request_count.cmp(&b.token_request_count),
                SortBy::TokenRequestTime => a.token_request_time.cmp(&b.token_request_time),
            };
            let primary = if f.descending {
                primary.reverse()
            } else {
                primary
            };
            // Ties broken by client_id so paging is stable.
            primary.then_with(|| a.client_id.cmp(&b.client_id))
        });
        let total_count = hits.len();
        let results = hits
            .into_iter()
            .skip(f.offset)
            .take(f.limit)
            .cloned()
            .collect();
        SearchResult {
            total_count,
            total_unfiltered_count,
            results,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_percent_runs_only() {
        assert!(like("abc", "abc"));
        assert!(!like("abc", "abcd"));
        assert!(like("rekey-%", "rekey-slot-g1"));
        assert!(like("%-g1", "rekey-slot-g1"));
        assert!(like("%slot%", "rekey-slot-g1"));
        assert!(like("r%s%1", "rekey-slot-g1"));
        assert!(like("%", ""));
        assert!(!like("a%a", "a"));
        assert!(like("a_b", "a_b"));
        assert!(!like("a_b", "axb"));
        assert!(!like("Rekey-%", "rekey-x"));
    }
}
