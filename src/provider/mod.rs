//! Platforms that issue API clients. One small trait, one folder per platform; retries and
//! rate limits live in wrappers and in the shared HTTP layer, not in each call.
//!
//! Each platform folder (`taegis/`, `cisco/`) has the same rooms: `mod.rs` (the provider and its
//! `Provider` impl), `settings.rs` (its keys of `[providers.NAME]`) and `api.rs` (wire types,
//! documents or paths, and the one place its answers become errors). What both platforms do alike
//! (the client-credentials token, the 401 refresh, the per-second rate limit, `Retry-After`, the
//! bounded body) is written once, in [`session`], over the token cache in [`token`].

use crate::error::Result;
use crate::secret::{ClientPair, Secret};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::{Arc, RwLock};

pub mod budget;
pub mod cisco;
pub mod load;
pub mod session;
pub mod taegis;
pub mod token;

#[derive(Clone, Copy, Debug, Default)]
pub struct ProviderCapabilities {
    /// The platform can give an existing client a new secret (Taegis yes, Cisco no).
    pub in_place_rotation: bool,
    /// `rotate_secret` accepts a secret chosen by rekey, so it can be stored before the call.
    pub caller_chosen_secret: bool,
}

/// What the inventory's slot checks need to know about a platform, so that they name none
/// (src/config/slots.rs asks `ProviderKind::slot_rules`; docs/src/inventory.md lists the keys).
/// Each provider module answers with one `SLOT_RULES` constant.
#[derive(Clone, Copy, Debug)]
pub struct SlotRules {
    /// The platform's name in messages: `Taegis`.
    pub platform: &'static str,
    /// Whether a slot (or its provider) must name a tenant.
    pub tenant: TenantRule,
    /// The slot key that lists what a client may do: `roles` or `scopes`.
    pub grants_key: &'static str,
    /// Another slot key accepted for `grants_key`, if any.
    pub grants_alias: Option<&'static str>,
    /// Whether a slot must list its grants (there is no platform default).
    pub grants_required: bool,
    /// What a list of grants looks like, for messages: `["<role id>", ...]`.
    pub grants_example: &'static str,
    /// Whether an existing client can get a new secret (strategy `in-place`).
    pub in_place_rotation: bool,
    /// The grant a bootstrap slot's client needs to manage other clients.
    pub manager_grant: Grant,
}

/// How a platform's slots name their tenant.
#[derive(Clone, Copy, Debug)]
pub enum TenantRule {
    /// Given on the slot or as its provider's default; with `numeric`, digits only, such as
    /// `example`.
    Required {
        numeric: bool,
        example: &'static str,
    },
    /// The tenant comes with the credential; a slot that names none records `fallback`.
    Optional { fallback: &'static str },
}

impl TenantRule {
    /// The tenant recorded for a slot that names none, if the platform allows that.
    pub const fn fallback(&self) -> Option<&'static str> {
        match *self {
            TenantRule::Required { .. } => None,
            TenantRule::Optional { fallback } => Some(fallback),
        }
    }
}

/// One grant (a role id or a scope), with the name it is shown by, if it has one.
#[derive(Clone, Copy, Debug)]
pub struct Grant {
    pub id: &'static str,
    pub name: Option<&'static str>,
}

impl SlotRules {
    /// Whether a slot may list its grants under `key`.
    pub fn takes(&self, key: &str) -> bool {
        self.grants_key == key || self.grants_alias == Some(key)
    }
}

/// What to create.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    /// The managed name, `<prefix><slot>-g<generation>`.
    pub name: String,
    /// Role ids (Taegis) or scopes (Cisco).
    pub roles: Vec<String>,
}

/// A client as issued by the platform, with its secret (shown exactly once).
#[derive(Clone, Debug)]
pub struct IssuedClient {
    pub client_id: String,
    pub object_id: String,
    pub name: String,
    pub secret: Secret,
}

/// A client as listed by the platform (no secret).
#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub client_id: String,
    pub object_id: String,
    pub name: String,
    pub created_at: Option<DateTime<Utc>>,
    /// Whether consumers still get tokens with it, as the platform's listing says (read before
    /// a draining client is deleted: docs/src/protocol.md, "Draining").
    pub usage: Usage,
}

/// A client's use as the platform reports it in a listing. Read without using the client, so
/// rekey's own look never counts as a use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// The answer carries no usage field: nothing can be concluded, and a draining client is
    /// deleted at the end of its grace, as before (never "unknown means unused").
    Unreported,
    /// The platform reports that the client never got a token.
    Never,
    /// The client's last token, and how many it got in its life where the platform counts.
    LastToken {
        at: DateTime<Utc>,
        count: Option<u64>,
    },
}

impl Usage {
    /// From a last-token time and a count, each `None` when the answer lacks the field (or, for
    /// the time, holds null): a null time beside a count of 0 is "never"; beside a count above 0
    /// the answer contradicts itself, and reports nothing.
    pub fn from_fields(at: Option<DateTime<Utc>>, count: Option<u64>) -> Usage {
        match (at, count) {
            (Some(at), _) => Usage::LastToken { at, count },
            (None, Some(0)) => Usage::Never,
            (None, _) => Usage::Unreported,
        }
    }
}

/// The privileged credential a provider acts with. Shared, so that after rekey rotates its own
/// bootstrap credential the engine can swap in the new pair for the rest of the run. It may be
/// unresolved (an unset environment variable): commands that never use it (`verify`) still work,
/// and the first use reports why it is missing.
#[derive(Clone)]
pub struct Bootstrap(Arc<RwLock<std::result::Result<ClientPair, String>>>);

impl Bootstrap {
    pub fn new(pair: ClientPair) -> Self {
        Bootstrap(Arc::new(RwLock::new(Ok(pair))))
    }
    pub fn unresolved(reason: impl Into<String>) -> Self {
        Bootstrap(Arc::new(RwLock::new(Err(reason.into()))))
    }
    pub fn get(&self) -> Result<ClientPair> {
        self.0
            .read()
            .expect("bootstrap lock poisoned")
            .clone()
            .map_err(crate::error::Error::config)
    }
    /// Whether `pair` is the credential this bootstrap holds now.
    pub fn holds(&self, pair: &ClientPair) -> bool {
        self.get().is_ok_and(|b| b == *pair)
    }
    pub fn replace(&self, pair: ClientPair) {
        *self.0.write().expect("bootstrap lock poisoned") = Ok(pair);
    }
}

/// A platform that issues API clients. All calls act in one `tenant`, with the bootstrap
/// credential the provider was built with.
///
/// Mutations are not retried blindly by callers: a failed `create_client` may still have
/// created the client (see `Error::maybe_applied`), which is why clients carry managed names
/// and `find_clients` exists.
#[async_trait]
pub trait Provider: Send + Sync {
    /// `taegis` or `cisco`.
    fn kind(&self) -> &'static str;

    fn capabilities(&self) -> ProviderCapabilities;

    /// Creates a client; the returned secret is the only copy that will ever exist.
    async fn create_client(&self, tenant: &str, spec: &ClientSpec) -> Result<IssuedClient>;

    /// Gives an existing client (by client id or object id) a new secret; the old one is assumed
    /// dead at once. With `chosen`, asks the platform to use that secret
    /// (only when `capabilities().caller_chosen_secret`).
    async fn rotate_secret(
        &self,
        tenant: &str,
        client: &str,
        chosen: Option<&Secret>,
    ) -> Result<IssuedClient>;

    /// Deletes a client (by client id or object id). `ErrorKind::NotFound` when it is gone.
    async fn delete_client(&self, tenant: &str, client: &str) -> Result<()>;

    /// Every client in the tenant whose name starts with `name_prefix` (all pages).
    async fn find_clients(&self, tenant: &str, name_prefix: &str) -> Result<Vec<ClientInfo>>;

    /// Proves a pair works: a token exchange with it succeeds. `Unauthorized` when it does not.
    async fn verify(&self, tenant: &str, pair: &ClientPair) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::Usage;

    #[test]
    fn only_a_consistent_answer_says_never_used() {
        let now = chrono::Utc::now();
        assert_eq!(Usage::from_fields(None, Some(0)), Usage::Never);
        assert_eq!(Usage::from_fields(None, Some(3)), Usage::Unreported);
        assert_eq!(Usage::from_fields(None, None), Usage::Unreported);
        assert_eq!(
            Usage::from_fields(Some(now), Some(3)),
            Usage::LastToken {
                at: now,
                count: Some(3)
            }
        );
    }
}
