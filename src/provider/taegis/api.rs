//! Taegis on the wire (docs/src/platforms/taegis.md): the GraphQL documents, the answers' shapes,
//! and the one place answers become errors. No network here, so the fuzz targets can feed these
//! parsers any answer.

use crate::error::{Error, ErrorKind, Result};
use crate::provider::session::{DecodeToken, Platform, status_error};
use crate::provider::token::Token;
use crate::provider::{ClientInfo, ClientSpec, IssuedClient, Usage};
use crate::scrub::Scrubber;
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

pub(super) const PER_PAGE: usize = 100;
const CLIENT_FIELDS: &str = "id clientID name createdAt tokenRequestTime tokenRequestCount";
pub(super) const GRAPHQL_PATH: &str = "/graphql";

/// What Taegis adds to the shared session: its token endpoint and how to read its answer.
pub(crate) struct TaegisApi;

impl Platform for TaegisApi {
    const TOKEN_PATH: &'static str = "/auth/api/v2/auth/token";
    const DECODE_TOKEN: DecodeToken = decode_token;
}

/// One page of the clients whose name starts with `name_prefix`.
pub(super) fn search_document(name_prefix: &str, offset: usize) -> String {
    format!(
        "query {{ clientsSearch(filters: {{name: {}, pageOffset: {offset}, perPage: {PER_PAGE}, sortBy: NAME, sortOrder: ASC}}) {{ totalCount results {{ {CLIENT_FIELDS} }} }} }}",
        gql_string(&format!("{name_prefix}%"))
    )
}

pub(super) fn create_document(spec: &ClientSpec) -> String {
    let roles = if spec.roles.is_empty() {
        String::new()
    } else {
        format!(
            ", roles: [{}]",
            spec.roles
                .iter()
                .map(|r| gql_string(r))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "mutation {{ createClient(name: {}{roles}) {{ clientSecret client {{ {CLIENT_FIELDS} }} }} }}",
        gql_string(&spec.name)
    )
}

/// With `chosen`, the document carries that secret: scrub it from whatever the answer says.
pub(super) fn rotate_document(client: &str, chosen: Option<&Secret>) -> String {
    let secret_arg = chosen
        .map(|s| format!(", secret: {}", gql_string(s.expose())))
        .unwrap_or_default();
    format!(
        "mutation {{ rotateClientSecret(id: {}{secret_arg}) {{ clientSecret client {{ {CLIENT_FIELDS} }} }} }}",
        gql_string(client)
    )
}

pub(super) fn delete_document(client: &str) -> String {
    format!(
        "mutation {{ deleteClient(id: {}) {{ id clientID }} }}",
        gql_string(client)
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClientWire {
    pub(super) id: String,
    #[serde(rename = "clientID")]
    client_id: String,
    pub(super) name: String,
    created_at: Option<String>,
    token_request_time: Option<String>,
    token_request_count: Option<u64>,
}

impl ClientWire {
    pub(crate) fn info(self) -> ClientInfo {
        ClientInfo {
            client_id: self.client_id,
            object_id: self.id,
            name: self.name,
            created_at: parse_time(self.created_at.as_deref()),
            // A time that does not parse reports nothing: it is never read as "never used".
            usage: match self.token_request_time.as_deref() {
                Some(t) => parse_time(Some(t)).map_or(Usage::Unreported, |at| Usage::LastToken {
                    at,
                    count: self.token_request_count,
                }),
                None => Usage::from_fields(None, self.token_request_count),
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewClientWire {
    client_secret: String,
    client: ClientWire,
}

impl NewClientWire {
    fn issued(self) -> Result<IssuedClient> {
        if self.client_secret.is_empty() || self.client.client_id.is_empty() {
            return Err(Error::malformed("the new client has an empty id or secret"));
        }
        Ok(IssuedClient {
            client_id: self.client.client_id,
            object_id: self.client.id,
            name: self.client.name,
            secret: Secret::new(self.client_secret),
        })
    }
}

/// What a token answer means: a refusal, a temporary failure, or a token. No network, so the
/// fuzz targets can feed it any answer.
pub(crate) fn decode_token(
    status: StatusCode,
    wait: Option<Duration>,
    body: &[u8],
    client_id: &str,
) -> Result<Token> {
    let what = "token request";
    if !status.is_success() {
        // OAuth error bodies carry a code (`invalid_client`) and no secret; keep the code only.
        let code = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .map(|c| scrub_text(&c, &Scrubber::known().answer_bytes(body)));
        let detail = code.map(|c| format!(" ({c})")).unwrap_or_default();
        return Err(match status {
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Error::new(
                    ErrorKind::Unauthorized,
                    format!(
                        "{what}: client {} was refused: HTTP {}{detail}",
                        client_id,
                        status.as_u16()
                    ),
                )
            }
            _ => status_error(status, wait, what, &detail),
        });
    }
    #[derive(Deserialize)]
    struct TokenResponse {
        access_token: String,
        expires_in: Option<i64>,
    }
    let parsed: TokenResponse = serde_json::from_slice(body)
        .map_err(|_| Error::malformed(format!("{what}: the answer has no access_token")))?;
    Token::from_response(parsed.access_token, parsed.expires_in)
}

fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
}

fn decode<T: serde::de::DeserializeOwned>(v: Value, field: &str, scrub: &[&Secret]) -> Result<T> {
    // serde's message names the missing field, and quotes a string found where another type
    // belongs: that string may be the secret rekey chose, so it is scrubbed like server text.
    serde_json::from_value(v).map_err(|e| {
        Error::malformed(format!(
            "{field}: unexpected answer shape: {}",
            scrub_text(
                &e.to_string(),
                &Scrubber::known().secrets(scrub.iter().copied())
            )
        ))
    })
}

/// `data.createClient` / `data.rotateClientSecret` → the issued client.
pub(crate) fn decode_issued(v: Value, field: &str, scrub: &[&Secret]) -> Result<IssuedClient> {
    decode::<NewClientWire>(v, field, scrub)?.issued()
}

/// `data.clientsSearch` → (totalCount, this page's clients).
pub(crate) fn decode_page(v: Value) -> Result<(usize, Vec<ClientWire>)> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Page {
        total_count: Option<usize>,
        results: Vec<ClientWire>,
    }
    let page: Page = decode(v, "clientsSearch", &[])?;
    Ok((page.total_count.unwrap_or(0), page.results))
}

/// The one place Taegis answers become errors: HTTP status, then `errors[]`, then null data.
pub(crate) fn decode_graphql(
    status: StatusCode,
    wait: Option<Duration>,
    body: &[u8],
    field: &str,
    scrub: &[&Secret],
) -> Result<Value> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    // Server text loses every secret known here: this process's, the request's, and those the
    // answer itself carries (a create answer may hold the new secret and quote it in errors[]).
    // Built only when there is an error to quote.
    let scrubber = || {
        let s = Scrubber::known().secrets(scrub.iter().copied());
        match &parsed {
            Some(v) => s.answer(v),
            None => s,
        }
    };
    let first_error = parsed
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(|e| e.as_array())
        .and_then(|a| a.first())
        .map(|e| {
            let message = e
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("unknown error");
            let code = e
                .pointer("/extensions/code")
                .and_then(|c| c.as_str())
                .unwrap_or("");
            let scrubber = scrubber();
            (
                scrub_text(message, &scrubber),
                scrub_text(code, &scrubber)
                    .chars()
                    .take(50)
                    .collect::<String>(),
            )
        });
    if !status.is_success() {
        let detail = first_error
            .map(|(m, _)| format!(": {m}"))
            .unwrap_or_default();
        return Err(status_error(status, wait, field, &detail));
    }
    let Some(v) = parsed else {
        return Err(Error::malformed(format!(
            "{field}: the answer is not JSON (truncated?)"
        )));
    };
    if let Some((message, code)) = first_error {
        let lower = message.to_ascii_lowercase();
        let kind = match code.as_str() {
            "NOT_FOUND" => ErrorKind::NotFound,
            "UNAUTHENTICATED" => ErrorKind::Unauthorized,
            "FORBIDDEN" | "PERMISSION_DENIED" => ErrorKind::Forbidden,
            _ if lower.contains("not found") || lower.contains("does not exist") => {
                ErrorKind::NotFound
            }
            _ if [
                "not authorized",
                "unauthorized",
                "forbidden",
                "permission",
                "access denied",
            ]
            .iter()
            .any(|w| lower.contains(w)) =>
            {
                ErrorKind::Forbidden
            }
            _ => ErrorKind::Invalid,
        };
        return Err(Error::new(kind, format!("{field}: {message}")));
    }
    match v.get("data").and_then(|d| d.get(field)) {
        Some(value) if !value.is_null() => Ok(value.clone()),
        _ => Err(Error::malformed(format!("{field}: the answer has no data"))),
    }
}

/// Removes every secret `scrubber` knows from server text, then shortens it. In that order:
/// cutting first could leave a secret's prefix behind.
fn scrub_text(text: &str, scrubber: &Scrubber) -> String {
    scrubber.scrub(text).chars().take(300).collect()
}

/// A GraphQL string literal: quotes, backslashes and control characters escaped.
pub(crate) fn gql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped() {
        assert_eq!(gql_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(gql_string("x\ny\u{1}"), "\"x\\ny\\u0001\"");
    }

    #[test]
    fn decoding_checks_status_then_errors_then_data() {
        let ok = br#"{"data":{"deleteClient":{"id":"1"}}}"#;
        assert!(decode_graphql(StatusCode::OK, None, ok, "deleteClient", &[]).is_ok());

        let e = decode_graphql(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(3)),
            b"",
            "x",
            &[],
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert!(!e.maybe_applied());

        let e = decode_graphql(StatusCode::BAD_GATEWAY, None, b"<html>", "x", &[]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.maybe_applied());

        let nf = br#"{"data":null,"errors":[{"message":"client not found"}]}"#;
        assert_eq!(
            decode_graphql(StatusCode::OK, None, nf, "deleteClient", &[])
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );

        let denied = br#"{"data":{"createClient":null},"errors":[{"message":"Not authorized to access tenant"}]}"#;
        assert_eq!(
            decode_graphql(StatusCode::OK, None, denied, "createClient", &[])
                .unwrap_err()
                .kind(),
            ErrorKind::Forbidden
        );

        let empty = br#"{"data":{"createClient":null}}"#;
        assert_eq!(
            decode_graphql(StatusCode::OK, None, empty, "createClient", &[])
                .unwrap_err()
                .kind(),
            ErrorKind::Malformed
        );
        assert_eq!(
            decode_graphql(StatusCode::OK, None, b"{}", "f", &[])
                .unwrap_err()
                .kind(),
            ErrorKind::Malformed
        );
        assert_eq!(
            decode_graphql(StatusCode::OK, None, br#"{"data":{"f""#, "f", &[])
                .unwrap_err()
                .kind(),
            ErrorKind::Malformed
        );

        let not_found_url =
            decode_graphql(StatusCode::NOT_FOUND, None, b"", "deleteClient", &[]).unwrap_err();
        assert_eq!(
            not_found_url.kind(),
            ErrorKind::Invalid,
            "a 404 page must never mean 'client already deleted'"
        );
    }

    #[test]
    fn a_secret_across_the_cut_is_still_scrubbed() {
        let secret = Secret::new("S".repeat(64));
        let text = format!("{}{}", "x".repeat(280), secret.expose());
        let out = scrub_text(&text, &Scrubber::new().secret(&secret));
        assert!(
            !out.contains("SSSSSSSSSS"),
            "no part of the secret survives: {out}"
        );
    }

    #[test]
    fn server_messages_are_scrubbed_of_secrets() {
        let s = Secret::new("TOPSECRETVALUE123");
        let body = br#"{"errors":[{"message":"Argument secret has invalid value \"TOPSECRETVALUE123\""}]}"#;
        let e =
            decode_graphql(StatusCode::OK, None, body, "rotateClientSecret", &[&s]).unwrap_err();
        assert!(!e.to_string().contains("TOPSECRETVALUE123"), "{e}");
        assert!(e.to_string().contains("[redacted]"));
    }
}
