//! The Taegis clients GraphQL API: schema, resolvers, and the `/graphql` handler.
//!
//! Names and types follow shared/protocols/taegis.md and the official SDK's generated types
//! (`services/clients/types.py`): camelCase fields, each with its deprecated snake_case twin,
//! arguments typed as the SDK's documents declare them (`id: ID!`, `name: String!`,
//! `roles: [ID!]`). The SDK rebuilds its documents from our introspection, so these types are
//! what it will send.
//!
//! Choices where the real service is not documented (see also `rekey emulator --help`):
//! - `rotateClientSecret(secret:)` sets that exact secret (16–256 printable ASCII characters,
//!   no spaces); without it a random 64-character secret is made. `forceRotateClientSecret`
//!   does the same as a rotation without `secret`.
//! - The old secret, and every token minted with it, stop working at once.
//! - Duplicate client names are allowed.
//! - `clientsSearch`: `pageOffset` is the number of matching results to skip (0 = first),
//!   `perPage` defaults to 100 and is capped at 1000; sorted by name unless `sortBy` says
//!   otherwise. `clients` (deprecated): `page` is 1-based, `perPage` as above.
//! - Searches cover the tenant in context only; `tenantID`/`tenantIDs` narrow within it.
//! - `roles` (the String field) is the client's role ids joined by commas.

use super::Shared;
use super::auth::{self, Caller};
use super::faults::Operation;
use super::state::{self, ClientRecord, INTERNAL_TENANT, SearchFilter, SortBy};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use async_graphql::{
    Context, EmptySubscription, Enum, ErrorExtensions, ID, InputObject, Object, Schema,
    SimpleObject,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub type TaegisSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Root fields the emulator serves; stats name other fields `other`, so a client cannot grow
/// the stats map without bound.
const ROOT_FIELDS: &[&str] = &[
    "createClient",
    "rotateClientSecret",
    "forceRotateClientSecret",
    "deleteClient",
    "client",
    "clientsSearch",
    "clients",
];

const DEFAULT_PER_PAGE: usize = 100;
const MAX_PER_PAGE: usize = 1000;

pub fn schema() -> TaegisSchema {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription).finish()
}

/// What resolvers know about the request: the authenticated caller and the tenant header.
pub struct RequestCtx {
    pub shared: Arc<Shared>,
    pub caller: Caller,
    pub tenant_header: Option<String>,
}

/// `POST /graphql`: bearer auth (a bare 401 otherwise, like the gateway), then the schema.
pub async fn graphql(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match auth::authenticate(&shared, &headers).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            return super::faults::json_status(
                StatusCode::BAD_REQUEST,
                "the body is not a GraphQL request",
            );
        }
    };
    let tenant_header = headers
        .get("x-tenant-context")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    tracing::debug!(
        client_id = %caller.client_id,
        tenant_context = tenant_header.as_deref().unwrap_or("-"),
        "graphql request"
    );
    let request = request.data(RequestCtx {
        shared: shared.clone(),
        caller,
        tenant_header,
    });
    let response = shared.schema.execute(request).await;
    async_graphql_axum::GraphQLResponse::from(response).into_response()
}

/// Names a GraphQL request by the first root field of its operation (`introspection` for
/// `__schema`/`__type`/`__typename`), and says whether it is a mutation. Uses async-graphql's
/// parser; a body that does not parse is `invalid`.
pub fn operation_of(body: &[u8]) -> Operation {
    #[derive(serde::Deserialize)]
    struct Body {
        query: String,
        #[serde(rename = "operationName")]
        operation_name: Option<String>,
    }
    let invalid = || Operation {
        name: "invalid".into(),
        is_mutation: false,
    };
    let Ok(body) = serde_json::from_slice::<Body>(body) else {
        return invalid();
    };
    let Ok(doc) = async_graphql::parser::parse_query(&body.query) else {
        return invalid();
    };
    let op = match &doc.operations {
        DocumentOperations::Single(op) => Some(op),
        DocumentOperations::Multiple(ops) => match body.operation_name.as_deref() {
            Some(name) => ops.iter().find(|(n, _)| n.as_str() == name).map(|(_, o)| o),
            None if ops.len() == 1 => ops.values().next(),
            None => None,
        },
    };
    let Some(op) = op else {
        return invalid();
    };
    let name = match first_field(&doc, &op.node.selection_set.node, 0) {
        Some(f) if f.starts_with("__") => "introspection".to_string(),
        Some(f) if ROOT_FIELDS.contains(&f) => f.to_string(),
        Some(_) => "other".to_string(),
        None => return invalid(),
    };
    Operation {
        name,
        is_mutation: op.node.ty == OperationType::Mutation,
    }
}

fn first_field<'a>(
    doc: &'a ExecutableDocument,
    set: &'a SelectionSet,
    depth: u8,
) -> Option<&'a str> {
    // Fragments may spread each other; the depth bound stops a cycle.
    if depth > 8 {
        return None;
    }
    set.items.iter().find_map(|item| match &item.node {
        Selection::Field(f) => Some(f.node.name.node.as_str()),
        Selection::InlineFragment(f) => first_field(doc, &f.node.selection_set.node, depth + 1),
        Selection::FragmentSpread(s) => doc
            .fragments
            .get(&s.node.fragment_name.node)
            .and_then(|frag| first_field(doc, &frag.node.selection_set.node, depth + 1)),
    })
}

fn gql_error(message: impl Into<String>, code: &'static str) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
}

fn not_found() -> async_graphql::Error {
    gql_error("client not found", "NOT_FOUND")
}

fn from_error(e: crate::error::Error) -> async_graphql::Error {
    use crate::error::ErrorKind;
    let code = match e.kind() {
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::Invalid | ErrorKind::Conflict => "BAD_USER_INPUT",
        _ => "INTERNAL_SERVER_ERROR",
    };
    gql_error(e.message().to_string(), code)
}

/// The checks every client operation starts with: the caller holds Tenant Admin, and the
/// tenant in context (header, else the caller's own) exists and is the caller's or below it.
async fn admin_scope<'c>(ctx: &'c Context<'_>) -> async_graphql::Result<(&'c RequestCtx, String)> {
    let rc = ctx.data::<RequestCtx>()?;
    if !rc.caller.is_admin {
        return Err(gql_error(
            "not authorized: managing API clients requires the Tenant Admin role",
            "FORBIDDEN",
        ));
    }
    let tenant = rc
        .tenant_header
        .clone()
        .unwrap_or_else(|| rc.caller.tenant_id.clone());
    let state = rc.shared.state.lock().await;
    // One message for "no such tenant" and "not yours", so tenants cannot be probed.
    if state.tenant(&tenant).is_none() || !state.may_act_in(&rc.caller.tenant_id, &tenant) {
        return Err(gql_error(
            format!("not authorized for tenant {tenant}"),
            "FORBIDDEN",
        ));
    }
    Ok((rc, tenant))
}

/// Writes the state file after a mutation, under the same lock as the change.
fn persist(shared: &Shared, state: &state::State) -> async_graphql::Result<()> {
    if let Some(path) = &shared.state_file {
        state.save(path).map_err(|e| {
            tracing::error!(error = %crate::error::chain(&e), "cannot persist emulator state");
            gql_error(
                "emulator could not persist its state",
                "INTERNAL_SERVER_ERROR",
            )
        })?;
    }
    Ok(())
}

fn validate_secret(secret: &str) -> async_graphql::Result<()> {
    let ok_len = (16..=256).contains(&secret.len());
    let ok_chars = secret.bytes().all(|b| b.is_ascii_graphic());
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(gql_error(
            "invalid secret: 16 to 256 printable ASCII characters, no spaces",
            "BAD_USER_INPUT",
        ))
    }
}

fn per_page(v: Option<i32>) -> async_graphql::Result<usize> {
    match v {
        None | Some(0) => Ok(DEFAULT_PER_PAGE),
        Some(n) if n < 0 => Err(gql_error("perPage must not be negative", "BAD_USER_INPUT")),
        Some(n) => Ok((n as usize).min(MAX_PER_PAGE)),
    }
}

/// `ClientsSearchSortBy`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "ClientsSearchSortBy")]
pub enum ClientsSearchSortBy {
    Name,
    ClientId,
    RoleAssignmentName,
    TokenRequestCount,
    TokenRequestTime,
}

/// `ClientsSearchSortOrder`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "ClientsSearchSortOrder")]
pub enum ClientsSearchSortOrder {
    Asc,
    Desc,
}

#[derive(InputObject, Default)]
#[graphql(name = "CreateClientInput")]
pub struct CreateClientInput {
    #[graphql(name = "ownerTenantID")]
    owner_tenant_id: Option<String>,
    #[graphql(name = "owner_tenant_id", deprecation = "use ownerTenantID")]
    owner_tenant_id_snake: Option<String>,
}

#[derive(InputObject, Default)]
#[graphql(name = "ClientsSearchInput")]
pub struct ClientsSearchInput {
    name: Option<String>,
    #[graphql(name = "clientIDs")]
    client_ids: Option<Vec<String>>,
    #[graphql(name = "tenantID")]
    tenant_id: Option<String>,
    #[graphql(name = "roleIDs")]
    role_ids: Option<Vec<String>>,
    #[graphql(name = "tenantIDs")]
    tenant_ids: Option<Vec<String>>,
    #[graphql(name = "pageOffset")]
    page_offset: Option<i32>,
    #[graphql(name = "perPage")]
    per_page: Option<i32>,
    #[graphql(name = "sortBy")]
    sort_by: Option<ClientsSearchSortBy>,
    #[graphql(name = "sortOrder")]
    sort_order: Option<ClientsSearchSortOrder>,
    #[graphql(name = "client_ids", deprecation = "use clientIDs")]
    client_ids_snake: Option<Vec<String>>,
    #[graphql(name = "tenant_id", deprecation = "use tenantID")]
    tenant_id_snake: Option<String>,
    #[graphql(name = "role_ids", deprecation = "use roleIDs")]
    role_ids_snake: Option<Vec<String>>,
    #[graphql(name = "tenant_ids", deprecation = "use tenantIDs")]
    tenant_ids_snake: Option<Vec<String>>,
    #[graphql(name = "page_offset", deprecation = "use pageOffset")]
    page_offset_snake: Option<i32>,
    #[graphql(name = "per_page", deprecation = "use perPage")]
    per_page_snake: Option<i32>,
}

/// Merges a tenant id and a tenant id list into one filter.
fn tenant_filter(one: Option<String>, many: Option<Vec<String>>) -> Option<Vec<String>> {
    match (one, many) {
        (None, None) => None,
        (one, many) => Some(many.unwrap_or_default().into_iter().chain(one).collect()),
    }
}

impl ClientsSearchInput {
    fn into_filter(self) -> async_graphql::Result<SearchFilter> {
        let offset = match self.page_offset.or(self.page_offset_snake) {
            None => 0,
            Some(n) if n < 0 => {
                return Err(gql_error(
                    "pageOffset must not be negative",
                    "BAD_USER_INPUT",
                ));
            }
            Some(n) => n as usize,
        };
        Ok(SearchFilter {
            name: self.name,
            client_ids: self.client_ids.or(self.client_ids_snake),
            role_ids: self.role_ids.or(self.role_ids_snake),
            tenant_ids: tenant_filter(
                self.tenant_id.or(self.tenant_id_snake),
                self.tenant_ids.or(self.tenant_ids_snake),
            ),
            sort_by: match self.sort_by {
                None | Some(ClientsSearchSortBy::Name) => SortBy::Name,
                Some(ClientsSearchSortBy::ClientId) => SortBy::ClientId,
                Some(ClientsSearchSortBy::RoleAssignmentName) => SortBy::RoleAssignmentName,
                Some(ClientsSearchSortBy::TokenRequestCount) => SortBy::TokenRequestCount,
                Some(ClientsSearchSortBy::TokenRequestTime) => SortBy::TokenRequestTime,
            },
            descending: self.sort_order == Some(ClientsSearchSortOrder::Desc),
            offset,
            limit: per_page(self.per_page.or(self.per_page_snake))?,
        })
    }
}

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
pub struct Client(ClientRecord);

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
        self.0.token_request_time.map(state::iso)
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
        state::iso(self.0.created_at)
    }
    #[graphql(name = "updatedAt")]
    async fn updated_at(&self) -> String {
        state::iso(self.0.updated_at)
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
        state::iso(self.0.created_at)
    }
    #[graphql(name = "updated_at", deprecation = "use updatedAt")]
    async fn updated_at_snake(&self) -> String {
        state::iso(self.0.updated_at)
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
    secret: String,
    client: ClientRecord,
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
    result_count: i32,
    #[graphql(name = "totalCount")]
    total_count: i32,
    #[graphql(name = "totalUnfilteredCount")]
    total_unfiltered_count: i32,
    results: Vec<Client>,
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// Get Client by id. The ID can be either the ID of the client object or the client_id.
    async fn client(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Client>> {
        let (rc, tenant) = admin_scope(ctx).await?;
        let state = rc.shared.state.lock().await;
        let c = state.find_in_tenant(&tenant, &id).ok_or_else(not_found)?;
        Ok(Some(Client(c.clone())))
    }

    /// Returns clients matching the search criteria along with totalCount and
    /// totalUnfilteredCount.
    #[graphql(name = "clientsSearch")]
    async fn clients_search(
        &self,
        ctx: &Context<'_>,
        filters: Option<ClientsSearchInput>,
    ) -> async_graphql::Result<Option<ClientSearchResults>> {
        let (rc, tenant) = admin_scope(ctx).await?;
        let filter = filters.unwrap_or_default().into_filter()?;
        let state = rc.shared.state.lock().await;
        let r = state.search(&tenant, &filter);
        Ok(Some(ClientSearchResults {
            result_count: to_i32(r.results.len()),
            total_count: to_i32(r.total_count),
            total_unfiltered_count: to_i32(r.total_unfiltered_count),
            results: r.results.into_iter().map(Client).collect(),
        }))
    }

    /// Search Clients.
    #[graphql(
        deprecation = "Use clientsSearchResults instead, which includes totalCount and totalUnfilteredCount"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn clients(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
        #[graphql(name = "clientIDs")] client_ids: Option<Vec<String>>,
        #[graphql(name = "tenantID")] tenant_id: Option<String>,
        #[graphql(name = "roleIDs")] role_ids: Option<Vec<String>>,
        #[graphql(name = "tenantIDs")] tenant_ids: Option<Vec<String>>,
        page: Option<i32>,
        #[graphql(name = "perPage")] per_page_arg: Option<i32>,
    ) -> async_graphql::Result<Option<Vec<Client>>> {
        let (rc, tenant) = admin_scope(ctx).await?;
        let limit = per_page(per_page_arg)?;
        let page = usize::try_from(page.unwrap_or(1).max(1)).unwrap_or(1);
        let filter = SearchFilter {
            name,
            client_ids,
            role_ids,
            tenant_ids: tenant_filter(tenant_id, tenant_ids),
            offset: (page - 1).saturating_mul(limit),
            limit,
            ..Default::default()
        };
        let state = rc.shared.state.lock().await;
        let r = state.search(&tenant, &filter);
        Ok(Some(r.results.into_iter().map(Client).collect()))
    }
}

pub struct MutationRoot;

#[Object]
impl MutationRoot {
    /// Create a new client (SCWX (tenant 5000) clients are disallowed). The new client will be
    /// assigned the TenantAnalyst role if the `roles` parameter is omitted.
    #[graphql(name = "createClient")]
    async fn create_client(
        &self,
        ctx: &Context<'_>,
        name: String,
        roles: Option<Vec<ID>>,
        input: Option<CreateClientInput>,
    ) -> async_graphql::Result<Option<NewClient>> {
        let (rc, tenant) = admin_scope(ctx).await?;
        if tenant == INTERNAL_TENANT {
            return Err(gql_error(
                format!("clients of tenant {INTERNAL_TENANT} (SCWX) are not allowed"),
                "FORBIDDEN",
            ));
        }
        if name.trim().is_empty() || name.len() > 256 {
            return Err(gql_error(
                "name must be 1 to 256 characters",
                "BAD_USER_INPUT",
            ));
        }
        let roles: Vec<String> = roles.unwrap_or_default().into_iter().map(|r| r.0).collect();
        let input = input.unwrap_or_default();
        let owner = input
            .owner_tenant_id
            .or(input.owner_tenant_id_snake)
            .unwrap_or_else(|| tenant.clone());
        let secret = state::random_secret();
        let mut state = rc.shared.state.lock().await;
        if state.tenant(&owner).is_none() || !state.may_act_in(&rc.caller.tenant_id, &owner) {
            return Err(gql_error(
                format!("not authorized for owner tenant {owner}"),
                "FORBIDDEN",
            ));
        }
        let client = state
            .insert_client(
                &tenant,
                &owner,
                &name,
                &roles,
                None,
                &secret,
                Some(&rc.caller.client_id),
            )
            .map_err(from_error)?;
        persist(&rc.shared, &state)?;
        tracing::info!(client_id = %client.client_id, tenant = %tenant, "client created");
        Ok(Some(NewClient { secret, client }))
    }

    /// Generate a new secret for an existing client. The emulator honours a caller-chosen
    /// `secret`; the old secret and its tokens stop working at once.
    #[graphql(name = "rotateClientSecret")]
    async fn rotate_client_secret(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(secret)] secret: Option<String>,
    ) -> async_graphql::Result<Option<NewClient>> {
        let (rc, tenant) = admin_scope(ctx).await?;
        let secret = match secret {
            Some(s) => {
                validate_secret(&s)?;
                s
            }
            None => state::random_secret(),
        };
        rotate(rc, &tenant, &id, secret).await
    }

    /// Force rotate a new secret for an existing client (the same as a rotation without a
    /// chosen secret, in the emulator).
    #[graphql(name = "forceRotateClientSecret")]
    async fn force_rotate_client_secret(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<NewClient>> {
        let (rc, tenant) = admin_scope(ctx).await?;
        rotate(rc, &tenant, &id, state::random_secret()).await
    }

    /// Delete a client. Its secret and tokens stop working at once.
    #[graphql(name = "deleteClient")]
    async fn delete_client(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Client>> {
        let (rc, tenant) = admin_scope(ctx).await?;
        let mut state = rc.shared.state.lock().await;
        let object_id = state
            .find_in_tenant(&tenant, &id)
            .ok_or_else(not_found)?
            .id
            .clone();
        let client = state.delete(&object_id).map_err(from_error)?;
        persist(&rc.shared, &state)?;
        tracing::info!(client_id = %client.client_id, tenant = %tenant, "client deleted");
        Ok(Some(Client(client)))
    }
}

async fn rotate(
    rc: &RequestCtx,
    tenant: &str,
    id: &str,
    secret: String,
) -> async_graphql::Result<Option<NewClient>> {
    let mut state = rc.shared.state.lock().await;
    let object_id = state
        .find_in_tenant(tenant, id)
        .ok_or_else(not_found)?
        .id
        .clone();
    let client = state
        .rotate(&object_id, &secret, &rc.caller.client_id)
        .map_err(from_error)?;
    persist(&rc.shared, &state)?;
    tracing::info!(client_id = %client.client_id, tenant = %tenant, "client secret rotated");
    Ok(Some(NewClient { secret, client }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(query: &str, name: Option<&str>) -> Operation {
        let body = serde_json::json!({"query": query, "operationName": name});
        operation_of(body.to_string().as_bytes())
    }

    #[test]
    fn operations_are_named_by_their_first_root_field() {
        let o = op(
            "mutation createClient($name: String!) { createClient(name: $name) { clientSecret } }",
            None,
        );
        assert_eq!(o.name, "createClient");
        assert!(o.is_mutation);
        let o = op("{ client(id: \"x\") { id } }", None);
        assert_eq!((o.name.as_str(), o.is_mutation), ("client", false));
        assert_eq!(
            op(
                "query IntrospectionQuery { __schema { types { name } } }",
                None
            )
            .name,
            "introspection"
        );
        assert_eq!(
            op(
                "query q { ...F } fragment F on Query { clientsSearch { totalCount } }",
                None
            )
            .name,
            "clientsSearch"
        );
        assert_eq!(
            op(
                "query a { client(id: 1) { id } } mutation b { deleteClient(id: 1) { id } }",
                Some("b")
            )
            .name,
            "deleteClient"
        );
        assert_eq!(
            op(
                "query a { client(id: 1) { id } } query b { clients { id } }",
                None
            )
            .name,
            "invalid"
        );
        assert_eq!(op("{ somethingElse }", None).name, "other");
        assert_eq!(op("{ broken", None).name, "invalid");
        assert_eq!(operation_of(b"not json").name, "invalid");
    }

    #[test]
    fn the_schema_has_the_documented_signatures() {
        let sdl = schema().sdl();
        for needle in [
            "createClient(name: String!, roles: [ID!], input: CreateClientInput): NewClient",
            "rotateClientSecret(id: ID!, secret: String): NewClient",
            "forceRotateClientSecret(id: ID!): NewClient",
            "deleteClient(id: ID!): Client",
            "client(id: ID!): Client",
            "clientsSearch(filters: ClientsSearchInput): ClientSearchResults",
            "clients(name: String, clientIDs: [String!], tenantID: String, roleIDs: [String!], tenantIDs: [String!], page: Int, perPage: Int): [Client!]",
            "client_id: String! @deprecated(reason: \"use clientID\")",
            "owner_tenant_id: String @deprecated(reason: \"use ownerTenantID\")",
        ] {
            assert!(sdl.contains(needle), "missing {needle:?} in\n{sdl}");
        }
    }
}
