//! What Vault's answers and transport failures mean: the one place this backend maps them to kinds.

use crate::error::{Error, ErrorKind, Result};
use serde::Deserialize;
use vaultrs::error::ClientError;

/// Maps vaultrs errors to kinds: the one place this backend decides what a failure means.
/// Messages are built from status codes and Vault's own error strings, never from bodies (a KV
/// read's body is the secret) and never with the token.
pub(super) fn classify_vault_error(e: &ClientError, what: &str) -> Error {
    use rustify::errors::ClientError as Rest;
    match e {
        ClientError::APIError { code, errors } => {
            let detail = if errors.is_empty() {
                String::new()
            } else {
                format!(": {}", errors.join("; "))
            };
            let msg = format!("{what}: Vault answered {code}{detail}");
            let cas = errors.iter().any(|m| m.contains("check-and-set"));
            let kind = match code {
                404 => ErrorKind::NotFound,
                400 if cas => ErrorKind::Conflict,
                401 => ErrorKind::Unauthorized,
                403 => ErrorKind::Forbidden,
                412 => ErrorKind::Conflict,
                429 => ErrorKind::RateLimited,
                400 | 405 | 422 => ErrorKind::Invalid,
                503 if errors.iter().any(|m| m.contains("sealed")) => ErrorKind::Unavailable,
                500..=599 => ErrorKind::Unavailable,
                _ => ErrorKind::Invalid,
            };
            Error::new(kind, msg)
        }
        ClientError::RestClientError { source } => match source {
            // A soft-deleted or destroyed KV v2 version: 404 with `data.metadata`, no `errors`.
            Rest::ServerResponseError { code: 404, .. } => {
                Error::not_found(format!("{what}: deleted"))
            }
            Rest::ServerResponseError { code, .. } => {
                let kind = match code {
                    401 => ErrorKind::Unauthorized,
                    403 => ErrorKind::Forbidden,
                    429 => ErrorKind::RateLimited,
                    500..=599 => ErrorKind::Unavailable,
                    _ => ErrorKind::Invalid,
                };
                Error::new(kind, format!("{what}: Vault answered {code}"))
            }
            // What rekey's own transport (`VaultHttp`) refused or could not reach: its error
            // already says what happened, in this backend's words.
            Rest::RequestError { source, .. } | Rest::ResponseError { source } => {
                match source.downcast_ref::<Error>() {
                    Some(inner) => {
                        let e = Error::new(inner.kind(), format!("{what}: {}", inner.message()));
                        if inner.maybe_applied() {
                            e
                        } else {
                            e.not_applied()
                        }
                    }
                    None => Error::unavailable(format!("{what}: the request to Vault failed")),
                }
            }
            Rest::ResponseParseError { .. } | Rest::ResponseConversionError { .. } => {
                Error::malformed(format!("{what}: Vault's answer could not be decoded"))
            }
            _ => Error::unavailable(format!("{what}: the request to Vault failed")),
        },
        ClientError::JsonParseError { .. }
        | ClientError::ResponseEmptyError
        | ClientError::ResponseDataEmptyError => {
            Error::malformed(format!("{what}: Vault's answer could not be decoded"))
        }
        ClientError::ParseCertificateError { path, .. } => {
            Error::config(format!("{what}: ca_cert {path} is not a PEM certificate"))
        }
        ClientError::FileNotFoundError { path } | ClientError::FileReadError { path, .. } => {
            Error::config(format!("{what}: cannot read {path}"))
        }
        _ => Error::internal(format!("{what}: Vault client error ({e})")),
    }
}

/// A read's answer, Vault's "not found" (no such path, or its latest version deleted) as
/// `None`. `what` names the read in messages.
pub(super) fn found<T>(
    answer: std::result::Result<T, ClientError>,
    what: impl FnOnce() -> String,
) -> Result<Option<T>> {
    match answer {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            let e = classify_vault_error(&e, &what());
            if e.kind() == ErrorKind::NotFound {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// A transport failure in this backend's words (the certificate case is a configuration
/// problem, as for the providers).
pub(super) fn vault_transport_error(e: reqwest::Error) -> Error {
    let e = e.without_url();
    if crate::http::is_certificate_error(&e) {
        Error::config(
            "cannot connect to Vault: its TLS certificate is not trusted (for a private CA, set ca_cert)",
        )
        .not_applied()
    } else if e.is_timeout() {
        Error::new(ErrorKind::Timeout, "no answer from Vault in time")
    } else if e.is_connect() {
        Error::unavailable("cannot connect to Vault (server down or unreachable)").not_applied()
    } else {
        Error::unavailable("the request to Vault failed")
    }
}

/// Vault's `{"errors": [...]}` of a non-2xx answer, as vaultrs reads it.
pub(super) fn api_error(e: rustify::errors::ClientError) -> ClientError {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<String>,
    }
    if let rustify::errors::ClientError::ServerResponseError {
        code,
        content: Some(c),
    } = &e
        && let Ok(parsed) = serde_json::from_str::<Errors>(c)
    {
        return ClientError::APIError {
            code: *code,
            errors: parsed.errors,
        };
    }
    ClientError::RestClientError { source: e }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_mismatch_is_conflict_and_403_forbidden() {
        let cas = ClientError::APIError {
            code: 400,
            errors: vec!["check-and-set parameter did not match the current version".to_string()],
        };
        assert_eq!(classify_vault_error(&cas, "w").kind(), ErrorKind::Conflict);
        let denied = ClientError::APIError {
            code: 403,
            errors: vec!["1 error occurred:\n\t* permission denied\n\n".to_string()],
        };
        assert_eq!(
            classify_vault_error(&denied, "w").kind(),
            ErrorKind::Forbidden
        );
        let deleted = ClientError::RestClientError {
            source: rustify::errors::ClientError::ServerResponseError {
                code: 404,
                content: Some("{\"data\":{\"metadata\":{}}}".into()),
            },
        };
        let e = classify_vault_error(&deleted, "r");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(!e.message().contains("metadata"));
    }
}
