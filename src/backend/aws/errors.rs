//! What Secrets Manager's errors mean: the one place this backend maps them to kinds.

#[cfg(feature = "aws")]
use crate::error::Error;
use crate::error::ErrorKind;
#[cfg(feature = "aws")]
use aws_sdk_secretsmanager::config::http::HttpResponse;
#[cfg(feature = "aws")]
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

/// Maps a Secrets Manager error code and HTTP status to a kind: the one table of this backend
/// (used by `classify_aws_error`). Codes as AWS returns them (recorded in the unit tests).
pub fn kind_of_code(code: Option<&str>, status: Option<u16>) -> ErrorKind {
    match code.unwrap_or("") {
        "ResourceNotFoundException" => ErrorKind::NotFound,
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "LimitExceededException" => ErrorKind::RateLimited,
        // ResourceExists: the name is taken, or a token was reused with another value.
        // InvalidRequest: the secret's state forbids it now (scheduled for deletion, ...).
        "ResourceExistsException" | "InvalidRequestException" => ErrorKind::Conflict,
        "InvalidParameterException"
        | "MalformedPolicyDocumentException"
        | "PreconditionNotMetException"
        | "ValidationException" => ErrorKind::Invalid,
        "AccessDeniedException" | "AccessDenied" | "DecryptionFailure" | "EncryptionFailure" => {
            ErrorKind::Forbidden
        }
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "MissingAuthenticationToken"
        | "IncompleteSignature" => ErrorKind::Unauthorized,
        "InternalServiceError" | "InternalFailure" | "ServiceUnavailable" => ErrorKind::Unavailable,
        _ => match status {
            Some(429) => ErrorKind::RateLimited,
            Some(401) => ErrorKind::Unauthorized,
            Some(403) => ErrorKind::Forbidden,
            Some(404) => ErrorKind::NotFound,
            Some(s) if s >= 500 => ErrorKind::Unavailable,
            Some(_) => ErrorKind::Invalid,
            None => ErrorKind::Unavailable,
        },
    }
}

#[cfg(feature = "aws")]
/// Maps SDK errors to kinds: the one place this backend decides what a failure means.
/// Messages carry the operation, the error code and AWS's message (names and ids, never a
/// secret value: the SDK redacts `SecretString` and we never add bodies).
pub(super) fn classify_aws_error<E>(e: SdkError<E, HttpResponse>, what: &str) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if super::answer_cap::too_large(&e) {
        return Error::malformed(format!(
            "{what}: AWS's answer is larger than {} bytes",
            crate::http::MAX_BODY
        ));
    }
    match &e {
        SdkError::TimeoutError(_) => {
            Error::new(ErrorKind::Timeout, format!("{what}: no answer in time"))
        }
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            Error::new(ErrorKind::Timeout, format!("{what}: no answer in time"))
        }
        SdkError::DispatchFailure(d) => {
            let detail = if d.is_io() {
                "cannot connect"
            } else if d.is_user() {
                "the request could not be sent (bad endpoint or credentials setup?)"
            } else {
                "the request failed in transit"
            };
            let msg = format!("{what}: AWS Secrets Manager unreachable ({detail})");
            let err = if d.is_user() {
                Error::new(ErrorKind::Config, msg)
            } else {
                Error::new(ErrorKind::Unavailable, msg).not_applied()
            };
            err.with_source(e)
        }
        SdkError::ConstructionFailure(_) => {
            // Mostly: no credentials found by the chain, or no region.
            Error::new(
                ErrorKind::Config,
                format!(
                    "{what}: the request could not be built: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                ),
            )
        }
        SdkError::ResponseError(_) => Error::new(
            ErrorKind::Unavailable,
            format!("{what}: unreadable answer from AWS Secrets Manager"),
        ),
        SdkError::ServiceError(s) => {
            let err = s.err();
            let code = err.code();
            let status = Some(s.raw().status().as_u16());
            let kind = kind_of_code(code, status);
            let mut message = format!("{what}: {}", code.unwrap_or("error"));
            if let Some(m) = err.message() {
                message.push_str(&format!(" ({m})"));
            }
            Error::new(kind, message)
        }
        _ => Error::new(ErrorKind::Unavailable, format!("{what}: request failed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Error codes and statuses as AWS Secrets Manager returns them (recorded from the API
    // reference's error lists): {"__type": CODE, "message": ...} with this HTTP status.
    const RECORDED: &[(&str, u16, ErrorKind)] = &[
        // Reusing an AWSPENDING version's ClientRequestToken with another value: AWS says
        // ResourceExistsException (moto accepts some of these).
        ("ResourceExistsException", 400, ErrorKind::Conflict),
        // PutSecretValue on a secret scheduled for deletion: InvalidRequestException on AWS.
        ("InvalidRequestException", 400, ErrorKind::Conflict),
        ("ResourceNotFoundException", 400, ErrorKind::NotFound),
        ("InvalidParameterException", 400, ErrorKind::Invalid),
        ("ThrottlingException", 400, ErrorKind::RateLimited),
        ("LimitExceededException", 400, ErrorKind::RateLimited),
        ("AccessDeniedException", 400, ErrorKind::Forbidden),
        ("DecryptionFailure", 400, ErrorKind::Forbidden),
        ("UnrecognizedClientException", 400, ErrorKind::Unauthorized),
        ("ExpiredTokenException", 400, ErrorKind::Unauthorized),
        ("InternalServiceError", 500, ErrorKind::Unavailable),
    ];

    #[test]
    fn recorded_error_codes_map_to_kinds() {
        for (code, status, kind) in RECORDED {
            assert_eq!(kind_of_code(Some(code), Some(*status)), *kind, "{code}");
        }
        assert_eq!(kind_of_code(None, Some(503)), ErrorKind::Unavailable);
        assert_eq!(
            kind_of_code(Some("Whatever"), Some(429)),
            ErrorKind::RateLimited
        );
        assert_eq!(
            kind_of_code(Some("Whatever"), Some(400)),
            ErrorKind::Invalid
        );
        assert!(
            !ErrorKind::Conflict.is_temporary(),
            "a refused token reuse is not retried"
        );
        assert!(ErrorKind::RateLimited.is_temporary());
    }
}
