//! The Taegis XDR endpoints: the client-credentials token endpoint and the clients GraphQL
//! API (docs/src/platforms/taegis.md), and how their requests are named for faults and stats.
//!
//! - `auth`: the token endpoint and the bearer check.
//! - `api`: the GraphQL schema and resolvers.
//! - `state`: Taegis's client records, roles and searches.
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

pub mod api;
pub mod auth;
pub mod state;
mod types;

use crate::emulator::faults::Operation;
use crate::emulator::layer::json_status;
use crate::emulator::shared::Shared;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use auth::Caller;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::sync::Arc;

pub const GRAPHQL_PATH: &str = "/graphql";

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

/// What Taegis's handlers share: the emulator's state and the GraphQL schema.
pub struct Api {
    pub shared: Arc<Shared>,
    schema: api::TaegisSchema,
}

/// The token endpoint and `/graphql`.
pub fn routes<S>(shared: Arc<Shared>) -> Router<S> {
    let api = Arc::new(Api {
        shared,
        schema: api::schema(),
    });
    Router::new()
        .route(auth::TOKEN_PATH, post(auth::token))
        .route(GRAPHQL_PATH, post(graphql))
        .with_state(api)
}

/// What resolvers know about the request: the authenticated caller and the tenant header.
pub struct RequestCtx {
    pub shared: Arc<Shared>,
    pub caller: Caller,
    pub tenant_header: Option<String>,
}

/// `POST /graphql`: bearer auth (a bare 401 otherwise, like the gateway), then the schema.
async fn graphql(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match auth::authenticate(&api.shared, &headers).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => {
            return json_status(StatusCode::BAD_REQUEST, "the body is not a GraphQL request");
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
        shared: api.shared.clone(),
        caller,
        tenant_header,
    });
    let response = api.schema.execute(request).await;
    async_graphql_axum::GraphQLResponse::from(response).into_response()
}

/// Names a Taegis request for faults and stats: `token` for the token endpoint (and any other
/// path), else by [`graphql_operation`].
pub fn operation_of(_method: &Method, path: &str, body: &[u8]) -> Operation {
    if path == GRAPHQL_PATH {
        graphql_operation(body)
    } else {
        Operation::new("token", false)
    }
}

/// Names a GraphQL request by the first root field of its operation (`introspection` for
/// `__schema`/`__type`/`__typename`), and says whether it is a mutation. Uses async-graphql's
/// parser; a body that does not parse is `invalid`.
fn graphql_operation(body: &[u8]) -> Operation {
    #[derive(serde::Deserialize)]
    struct Body {
        query: String,
        #[serde(rename = "operationName")]
        operation_name: Option<String>,
    }
    let invalid = || Operation::new("invalid", false);
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
    Operation::new(name, op.node.ty == OperationType::Mutation)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn op(query: &str, name: Option<&str>) -> Operation {
        let body = serde_json::json!({"query": query, "operationName": name});
        operation_of(&Method::POST, GRAPHQL_PATH, body.to_string().as_bytes())
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
        assert_eq!(graphql_operation(b"not json").name, "invalid");
        let token = operation_of(&Method::POST, auth::TOKEN_PATH, b"grant_type=x");
        assert_eq!((token.name.as_str(), token.is_mutation), ("token", false));
    }
}
