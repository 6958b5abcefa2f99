//! The one error type of rekey: a kind, a message, an optional cause, and the retry decision.
//!
//! Every provider and backend maps its wire errors to an [`ErrorKind`] in exactly one function
//! (`classify_*`), and whether an error is worth retrying is decided here, nowhere else: its
//! kind says whether it is temporary ([`Error::is_temporary`]), and once a retry loop has given
//! up on it, it is exhausted and no loop further out tries it again ([`Error::should_retry`]).

use std::fmt;
use std::time::Duration;

/// What went wrong, as far as the caller needs to know to decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The thing asked for does not exist (client, slot entry, path).
    NotFound,
    /// A compare-and-set lost: someone else wrote first, or the resource already exists.
    Conflict,
    /// The credential was refused (bad or revoked secret, expired token).
    Unauthorized,
    /// The credential is valid but lacks the permission (role, scope, policy).
    Forbidden,
    /// The server asked us to slow down (HTTP 429); `retry_after` may say for how long.
    RateLimited,
    /// The server or network is down or answered 5xx. Temporary.
    Unavailable,
    /// No answer in time. Temporary, but the request may have been applied.
    Timeout,
    /// The request was refused as invalid (validation error, bad argument). Permanent.
    Invalid,
    /// The server answered something we cannot decode (truncated JSON, missing data). Permanent.
    Malformed,
    /// The configuration or command line is wrong. Permanent; exit code 2.
    Config,
    /// Another run holds the lease on this slot. Not an error of ours; exit code 3.
    Locked,
    /// A stored record failed its authentication (or has none): it was not written by the
    /// holder of the store's key. Never acted on, never retried; `rekey status` shows the slot
    /// as `tampered` (SECURITY.md, "Someone who can write the store directory").
    Tampered,
    /// A bug or an impossible state in rekey itself.
    Internal,
}

impl ErrorKind {
    /// Whether retrying the same request later can succeed. Decided here, in one place.
    pub fn is_temporary(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited | ErrorKind::Unavailable | ErrorKind::Timeout
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Malformed => "malformed",
            ErrorKind::Config => "config",
            ErrorKind::Locked => "locked",
            ErrorKind::Tampered => "tampered",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// rekey's error. Its message and cause never contain a secret: callers build messages from
/// names, ids and statuses only, and HTTP bodies of credential calls are never attached.
pub struct Error {
    kind: ErrorKind,
    message: String,
    retry_after: Option<Duration>,
    /// False only when the request certainly never reached the server (connect refused,
    /// 429), so even a non-idempotent mutation may be sent again.
    maybe_applied: bool,
    /// Set by the retry layer when it gave up on this (temporary) error: retries spent.
    exhausted: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            retry_after: None,
            maybe_applied: !matches!(kind, ErrorKind::RateLimited),
            exhausted: false,
            source: None,
        }
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Marks that the request never reached the server, so resending it is safe.
    pub fn not_applied(mut self) -> Self {
        self.maybe_applied = false;
        self
    }

    /// Marks that a retry loop gave up on this error (src/layer/retry.rs): it stays temporary
    /// (a later run may succeed), but nothing in this run retries it again.
    pub fn exhausted(mut self) -> Self {
        self.exhausted = true;
        self
    }

    /// Prefixes the message with context (a slot name, an operation), keeping kind and cause.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
    pub fn is_temporary(&self) -> bool {
        self.kind.is_temporary()
    }
    /// Whether a retry loop gave up on this error already.
    pub fn is_exhausted(&self) -> bool {
        self.exhausted
    }
    /// Whether retrying now can help: temporary, and no retry loop has given up on it yet.
    pub fn should_retry(&self) -> bool {
        self.is_temporary() && !self.exhausted
    }
    /// Whether a non-idempotent request that failed with this error may have taken effect.
    pub fn maybe_applied(&self) -> bool {
        self.maybe_applied
    }

    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, m)
    }
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, m)
    }
    pub fn malformed(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Malformed, m)
    }
    pub fn tampered(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Tampered, m)
    }
    pub fn config(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, m)
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, m)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(r) = self.retry_after {
            d.field("retry_after", &r);
        }
        if self.exhausted {
            d.field("exhausted", &true);
        }
        if let Some(s) = &self.source {
            d.field("source", &s.to_string());
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Renders an error and its cause chain as one readable line: `a: b: c`.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// The documented exit codes (docs/src/operating.md, "Commands"). Kept beside the error kinds they are
/// derived from, below every command, so that any command module can use them.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ATTENTION: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const LOCKED: u8 = 3;
    pub const UNREACHABLE: u8 = 4;
    /// `plan --detailed-exitcode`: something would change.
    pub const PENDING: u8 = 5;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_kinds_are_temporary() {
        assert!(ErrorKind::RateLimited.is_temporary());
        assert!(ErrorKind::Unavailable.is_temporary());
        assert!(ErrorKind::Timeout.is_temporary());
        for k in [
            ErrorKind::NotFound,
            ErrorKind::Unauthorized,
            ErrorKind::Invalid,
            ErrorKind::Malformed,
            ErrorKind::Tampered,
        ] {
            assert!(!k.is_temporary(), "{k}");
        }
    }

    #[test]
    fn rate_limited_was_not_applied_but_timeouts_may_have_been() {
        assert!(!Error::new(ErrorKind::RateLimited, "x").maybe_applied());
        assert!(Error::new(ErrorKind::Timeout, "x").maybe_applied());
        assert!(
            !Error::new(ErrorKind::Unavailable, "x")
                .not_applied()
                .maybe_applied()
        );
    }

    #[test]
    fn an_exhausted_error_stays_temporary_but_is_not_retried() {
        let e = Error::unavailable("x");
        assert!(e.should_retry());
        let e = e.exhausted().context("slot a");
        assert!(e.is_temporary() && e.is_exhausted() && !e.should_retry());
        assert!(!Error::invalid("x").should_retry());
    }

    #[test]
    fn chain_joins_causes_once() {
        let io = std::io::Error::other("connection reset");
        let e = Error::unavailable("token request failed").with_source(io);
        assert_eq!(chain(&e), "token request failed: connection reset");
    }
}
