//! The GraphQL output types of Taegis's clients API (`Client`, `NewClient`,
//! `ClientRoleAssignment`, `ClientSearchResults`), each field with its deprecated snake_case
//! twin, as the SDK's generated types ask for them.

use super::state::{self, Client as ClientRecord};
use crate::emulator::state::iso;
use async_graphql::{ID, Object, SimpleObject};

/// `ClientRoleAssignment`.
pub struct ClientRoleAssignment {
    id: String,
    tenant_id: String,
    role_id: String,
}

#[Object(name = "ClientRoleAssignment")]
impl ClientRoleAssignment {
    async fn id(&self) -> ID {
        ID(self.id.clone())
    }
    #[graphql(name = "tenantID")]
    async fn tenant_id(&self) -> &str {
        &self.tenant_id
    }
    #[graphql(name = "roleID")]
    async fn role_id(&self) -> &str {
        &self.role_id
    }
    #[graphql(name = "roleName")]
    async fn role_name(&self) -> &str {
        state::role_name(&self.role_id).unwrap_or_default()
    }
    #[graphql(name = "expiresAt")]
    async fn expires_at(&self) -> Option<String> {
        None
    }
    #[graphql(name = "tenant_id", deprecation = "use tenantID")]
    async fn tenant_id_snake(&self) -> &str {
        &self.tenant_id
    }
    #[graphql(name = "role_id", deprecation = "use roleID")]
    async fn role_id_snake(&self) -> &str {
        &self.role_id
    }
    #[graphql(name = "role_name", deprecation = "use roleName")]
    async fn role_name_snake(&self) -> &str {
        state::role_name(&self.role_id).unwrap_or_default()
    }
    #[graphql(name = "expires_at", deprecation = "use expiresAt")]
    async fn expires_at_snake(&self) -> Option<String> {
        None
    }
}

/// `Client`: a snapshot of a client record (never its secret hash).
pub struct Client(pub(super) ClientRecord);

impl Client {
    fn assignments(&self) -> Vec<ClientRoleAssignment> {
        self.0
            .role_assignments
            .iter()
            .map(|r| ClientRoleAssignment {
                id: r.id.clone(),
                tenant_id: r.tenant_id.clone(),
                role_id: r.role_id.clone(),
            })
            .collect()
    }
    fn roles(&self) -> String {
        self.0.role_ids().collect::<Vec<_>>().join(",")
    }
    fn count(&self) -> i32 {
        i32::try_from(self.0.token_request_count).unwrap_or(i32::MAX)
    }
    fn token_time(&self) -> Option<String> {
        self.0.token_request_time.map(iso)
    }
}

#[Object(name = "Client")]
impl Client {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    #[graphql(name = "clientID")]
    async fn client_id(&self) -> &str {
        &self.0.client_id
    }
    #[graphql(name = "roles")]
    async fn roles_field(&self) -> String {
        self.roles()
    }
    #[graphql(name = "tenantID")]
    async fn tenant_id(&self) -> &str {
        &self.0.tenant_id
    }
    #[graphql(name = "ownerTenantID")]
    async fn owner_tenant_id(&self) -> &str {
        &self.0.owner_tenant_id
    }
    #[graphql(name = "createdAt")]
    async fn created_at(&self) -> String {
        iso(self.0.created_at)
    }
    #[graphql(name = "updatedAt")]
    async fn updated_at(&self) -> String {
        iso(self.0.updated_at)
    }
    #[graphql(name = "createdBy")]
    async fn created_by(&self) -> Option<&str> {
        self.0.created_by.as_deref()
    }
    #[graphql(name = "updatedBy")]
    async fn updated_by(&self) -> Option<&str> {
        self.0.updated_by.as_deref()
    }
    async fn environment(&self) -> &str {
        state::ENVIRONMENT
    }
    #[graphql(name = "tokenRequestTime")]
    async fn token_request_time(&self) -> Option<String> {
        self.token_time()
    }
    #[graphql(name = "tokenRequestCount")]
    async fn token_request_count(&self) -> i32 {
        self.count()
    }
    async fn enabled(&self) -> bool {
        self.0.enabled
    }
    #[graphql(name = "roleAssignments")]
    async fn role_assignments(&self) -> Vec<ClientRoleAssignment> {
        self.assignments()
    }

    #[graphql(name = "client_id", deprecation = "use clientID")]
    async fn client_id_snake(&self) -> &str {
        &self.0.client_id
    }
    #[graphql(name = "tenant_id", deprecation = "use tenantID")]
    async fn tenant_id_snake(&self) -> &str {
        &self.0.tenant_id
    }
    #[graphql(name = "owner_tenant_id", deprecation = "use ownerTenantID")]
    async fn owner_tenant_id_snake(&self) -> &str {
        &self.0.owner_tenant_id
    }
    #[graphql(name = "created_at", deprecation = "use createdAt")]
    async fn created_at_snake(&self) -> String {
        iso(self.0.created_at)
    }
    #[graphql(name = "updated_at", deprecation = "use updatedAt")]
    async fn updated_at_snake(&self) -> String {
        iso(self.0.updated_at)
    }
    #[graphql(name = "created_by", deprecation = "use createdBy")]
    async fn created_by_snake(&self) -> Option<&str> {
        self.0.created_by.as_deref()
    }
    #[graphql(name = "updated_by", deprecation = "use updatedBy")]
    async fn updated_by_snake(&self) -> Option<&str> {
        self.0.updated_by.as_deref()
    }
    #[graphql(name = "token_request_time", deprecation = "use tokenRequestTime")]
    async fn token_request_time_snake(&self) -> Option<String> {
        self.token_time()
    }
    #[graphql(name = "token_request_count", deprecation = "use tokenRequestCount")]
    async fn token_request_count_snake(&self) -> i32 {
        self.count()
    }
    #[graphql(name = "role_assignments", deprecation = "use roleAssignments")]
    async fn role_assignments_snake(&self) -> Vec<ClientRoleAssignment> {
        self.assignments()
    }
}

/// `NewClient`: the secret, shown this once, and the client.
pub struct NewClient {
    pub(super) secret: String,
    pub(super) client: ClientRecord,
}

#[Object(name = "NewClient")]
impl NewClient {
    #[graphql(name = "clientSecret")]
    async fn client_secret(&self) -> &str {
        &self.secret
    }
    async fn client(&self) -> Client {
        Client(self.client.clone())
    }
    #[graphql(name = "client_secret", deprecation = "use clientSecret")]
    async fn client_secret_snake(&self) -> &str {
        &self.secret
    }
}

/// `ClientSearchResults`.
#[derive(SimpleObject)]
#[graphql(name = "ClientSearchResults")]
pub struct ClientSearchResults {
    /// Results on this page (the SDK's generated type asks for it, snake_case and not
    /// deprecated).
    #[graphql(name = "result_count")]
    pub(super) result_count: i32,
    #[graphql(name = "totalCount")]
    pub(super) total_count: i32,
    #[graphql(name = "totalUnfilteredCount")]
    pub(super) total_unfiltered_count: i32,
    pub(super) results: Vec<Client>,
}

pub(super) fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
