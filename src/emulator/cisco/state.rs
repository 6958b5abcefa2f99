//! Cisco's API clients: the client record (scopes, availability, description) and the org's
//! listing.

use crate::emulator::state::{ClientRecord, Platform, Table};
use serde::{Deserialize, Serialize};

/// A Cisco API client: the shared record (its object id is its client id), its scopes, and
/// its `availability` as created (`org`).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Client {
    #[serde(flatten)]
    record: ClientRecord,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub availability: String,
    #[serde(default)]
    pub description: String,
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

/// The Cisco clients.
pub type Clients = Table<Client>;

impl Client {
    /// A new client of `org` with id (and client id) `id`; repeated scopes count once.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        org: &str,
        name: &str,
        description: &str,
        scopes: &[String],
        availability: &str,
        id: String,
        password: &str,
        created_by: Option<&str>,
    ) -> Client {
        let mut unique: Vec<String> = Vec::new();
        for s in scopes {
            if !unique.contains(s) {
                unique.push(s.clone());
            }
        }
        Client {
            record: ClientRecord::new(
                Platform::Cisco,
                id.clone(),
                id,
                name,
                org,
                password,
                created_by,
            ),
            scopes: unique,
            availability: availability.to_string(),
            description: description.to_string(),
        }
    }

    /// A fresh id: `client-<uuid>`.
    pub fn new_id() -> String {
        format!("client-{}", uuid::Uuid::new_v4())
    }
}

impl Table<Client> {
    /// The clients of an org, sorted by name then id.
    pub fn clients_of(&self, org: &str) -> Vec<&Client> {
        let mut v: Vec<&Client> = self.values().filter(|c| c.tenant_id == org).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        v
    }
}
