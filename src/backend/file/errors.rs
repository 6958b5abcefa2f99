//! What an I/O failure means: the one place this backend maps failures to kinds.

use crate::error::{Error, ErrorKind};

/// Maps I/O errors to kinds: the one place this backend decides what a failure means.
pub(super) fn classify_io(e: std::io::Error, what: &str) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => ErrorKind::Forbidden,
        std::io::ErrorKind::AlreadyExists => ErrorKind::Conflict,
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, what.to_string()).with_source(e)
}
