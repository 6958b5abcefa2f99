//! The Taegis clients GraphQL API: schema and resolvers.
//!
//! Names and types follow docs/src/platforms/taegis.md and the official SDK's generated types
//! (`services/clients/types.py`): camelCase fields, each with its deprecated snake_case twin,
//! arguments typed as the SDK's documents declare them (`id: ID!`, `name: String!`,
//! `roles: [ID!]`). The SDK rebuilds its documents from our introspection, so these types are
//! what it will send.

use super::RequestCtx;
use super::state::{INTERNAL_TENANT, SearchFilter, SortBy};
use super::types::{Client, ClientSearchResults, NewClient, to_i32};
use crate::emulator::shared::Shared;
use crate::emulator::state::random_secret;
use crate::emulator::world::World;
use async_graphql::{
    Context, EmptySubscription, Enum, ErrorExtensions, ID, InputObject, Object, Schema,
};

pub type TaegisSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

const DEFAULT_PER_PAGE: usize = 100;
const MAX_PER_PAGE: usize = 1000;

pub fn schema() -> TaegisSchema {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription).finish()
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
fn persist(shared: &Shared, state: &World) -> async_graphql::Result<()> {
    shared.save(state).map_err(|e| {
        tracing::error!(error = %crate::error::chain(&e), "cannot persist emulator state");
        gql_error(
            "emulator could not persist its state",
            "INTERNAL_SERVER_ERROR",
        )
    })
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

pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// Get Client by id. The ID can be either the ID of the client object or the client_id.
    async fn client(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Client>> {
        let (rc, tenant) = admin_scope(ctx).await?;
        let state = rc.shared.state.lock().await;
        let c = state
            .taegis
            .find_in_tenant(&tenant, &id)
            .ok_or_else(not_found)?;
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
        let r = state.taegis.search(&tenant, &filter);
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
        let r = state.taegis.search(&tenant, &filter);
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
        let secret = random_secret();
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
            None => random_secret(),
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
        rotate(rc, &tenant, &id, random_secret()).await
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
            .taegis
            .find_in_tenant(&tenant, &id)
            .ok_or_else(not_found)?
            .id
            .clone();
        let client = state.taegis.remove(&object_id).map_err(from_error)?;
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
        .taegis
        .find_in_tenant(tenant, id)
        .ok_or_else(not_found)?
        .id
        .clone();
    let client = state
        .taegis
        .rotate(&object_id, &secret, &rc.caller.client_id)
        .map_err(from_error)?;
    persist(&rc.shared, &state)?;
    tracing::info!(client_id = %client.client_id, tenant = %tenant, "client secret rotated");
    Ok(Some(NewClient { secret, client }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
