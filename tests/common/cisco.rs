//! Cisco (IROH) orgs on the same emulator as the Taegis tenants of a [`World`].

use super::{World, random_alnum, write_private};
use rekey::emulator;
use rekey::secret::Secret;
use std::path::PathBuf;

/// Scopes of each Cisco org's admin (bootstrap) client: it may manage clients (`oauth`) and
/// grant these to the clients it makes.
pub const CISCO_ADMIN_SCOPES: &[&str] = &["oauth", "profile", "enrich", "inspect"];

/// A `[[slots]]` table for a Cisco slot on `provider`, with scopes its admin may grant.
pub fn cisco_slot(name: &str, provider: &str) -> String {
    format!(
        "[[slots]]\nname = \"{name}\"\nprovider = \"{provider}\"\nscopes = [\"enrich:read\", \"inspect:read\"]\n"
    )
}

pub struct CiscoOrg {
    pub id: String,
    pub admin_id: String,
    pub admin_password: String,
}

/// A [`World`] that also holds Cisco orgs on the same emulator, one provider `c<i>` per org.
pub struct CiscoWorld {
    pub w: World,
    pub orgs: Vec<CiscoOrg>,
}

impl std::ops::Deref for CiscoWorld {
    type Target = World;
    fn deref(&self) -> &World {
        &self.w
    }
}

impl World {
    /// `tenants` Taegis tenants (providers `p<i>`) and `orgs` Cisco orgs (providers `c<i>`).
    pub async fn new_with(tenants: usize, orgs: usize) -> CiscoWorld {
        let w = World::new(tenants).await;
        let mut list = Vec::new();
        for i in 0..orgs {
            let o = CiscoOrg {
                id: format!("org-{}", random_alnum(12).to_lowercase()),
                admin_id: format!("client-{}", uuid::Uuid::new_v4()),
                admin_password: Secret::generate(54).expose().to_string(),
            };
            write_private(&w.path().join(format!("cboot-{i}.id")), &o.admin_id);
            write_private(
                &w.path().join(format!("cboot-{i}.secret")),
                &o.admin_password,
            );
            w.emu
                .add_org(emulator::SeedOrg {
                    id: o.id.clone(),
                    clients: vec![emulator::SeedCiscoClient {
                        client_id: o.admin_id.clone(),
                        password: o.admin_password.clone(),
                        name: format!("cisco-admin-{i}"),
                        scopes: CISCO_ADMIN_SCOPES.iter().map(|s| s.to_string()).collect(),
                    }],
                })
                .await
                .expect("org added");
            w.known_secrets
                .lock()
                .unwrap()
                .push(o.admin_password.clone());
            list.push(o);
        }
        CiscoWorld { w, orgs: list }
    }
}

impl CiscoWorld {
    /// `[providers.c<i>]` sections, one per org.
    pub fn cisco_providers(&self) -> String {
        let mut s = String::new();
        for i in 0..self.orgs.len() {
            s.push_str(&format!(
                "\n[providers.c{i}]\ntype = \"cisco\"\nurl = \"{}\"\nrate_limit = 1000\ntimeout = \"5s\"\n\
                 bootstrap = {{ client_id = {{ file = \"cboot-{i}.id\" }}, client_secret = {{ file = \"cboot-{i}.secret\" }} }}\n",
                self.w.emu.url()
            ));
        }
        s
    }

    /// Taegis header plus the Cisco providers.
    pub fn header(&self) -> String {
        format!("{}{}", self.w.header(), self.cisco_providers())
    }

    pub fn inventory(&self, slots: &str) -> PathBuf {
        self.w.inventory_raw(&format!("{}\n{slots}", self.header()))
    }

    /// [`super::consistency::assert_consistent`] over the file backend's slots, Taegis tenants
    /// and Cisco orgs: slots of a provider `c<i>` are checked with a Cisco token exchange.
    pub async fn assert_consistent(&self, expect_slots: &[&str]) {
        super::consistency::assert_consistent(&self.w, &self.orgs, &self.w.backend(), expect_slots)
            .await
    }
}

impl World {
    /// A Cisco token exchange straight against the emulator.
    pub async fn cisco_token_ok(&self, client_id: &str, password: &str) -> bool {
        let resp = rekey::http::client()
            .post(format!("{}/iroh/oauth2/token", self.emu.url()))
            .basic_auth(client_id, Some(password))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        resp.status().is_success()
    }
}
