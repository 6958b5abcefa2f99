//! The seed: tenants, Cisco orgs and their API clients to create at start (`rekey emulator
//! --seed`, `--tenant`, `--bootstrap`; `POST /_emulator/tenants` takes one tenant of it).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Tenants and clients to create at start.
#[derive(Serialize, Deserialize, Clone, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub tenants: Vec<SeedTenant>,
    /// Cisco organisations (each also usable as a tenant id in `/_emulator/` listings).
    #[serde(default)]
    pub orgs: Vec<SeedOrg>,
}

/// A Cisco organisation and its API clients.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct SeedOrg {
    pub id: String,
    #[serde(default)]
    pub clients: Vec<SeedCiscoClient>,
}

/// A Cisco API client: `client_id` is its id (`client-<uuid>` for clients the emulator makes).
#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SeedCiscoClient {
    pub client_id: String,
    pub password: String,
    /// Defaults to the client_id.
    #[serde(default)]
    pub name: String,
    /// Scopes such as `oauth`, `profile`, `enrich:read`. `oauth` may manage clients.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for SeedCiscoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedCiscoClient")
            .field("client_id", &self.client_id)
            .field("password", &"[redacted]")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct SeedTenant {
    pub id: String,
    /// The parent tenant; its clients may act in this one.
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub clients: Vec<SeedClient>,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SeedClient {
    pub client_id: String,
    pub secret: String,
    /// Defaults to the client_id.
    #[serde(default)]
    pub name: String,
    /// Role ids; empty means Tenant Analyst.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl std::fmt::Debug for SeedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedClient")
            .field("client_id", &self.client_id)
            .field("secret", &"[redacted]")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .finish()
    }
}

impl Seed {
    pub fn from_file(path: &std::path::Path) -> Result<Seed> {
        // A seed holds plaintext client secrets.
        crate::harden::check_private_file(path, "seed file")?;
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!("cannot read seed file {}", path.display())).with_source(e)
        })?;
        serde_json::from_str(&text).map_err(|e| {
            Error::config(format!("seed file {} is not valid", path.display())).with_source(e)
        })
    }

    pub(super) fn tenant_mut(&mut self, id: &str) -> &mut SeedTenant {
        if let Some(i) = self.tenants.iter().position(|t| t.id == id) {
            &mut self.tenants[i]
        } else {
            self.tenants.push(SeedTenant {
                id: id.to_string(),
                parent: None,
                clients: Vec::new(),
            });
            let last = self.tenants.len() - 1;
            &mut self.tenants[last]
        }
    }
}
