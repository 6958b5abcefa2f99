//! `[backends.NAME]` with `type = "file"`: the settings and their parser.

use crate::backend::common::check_items;
use crate::check::Checker;
use crate::check::join;
use crate::check::tree::Table;
use crate::check::values::ValueRef;
use std::path::PathBuf;

/// `type = "file"`: age-encrypted records, one file per slot, in a directory.
#[derive(Clone, Debug)]
pub struct FileBackendConfig {
    pub name: String,
    /// Directory holding `<slot>.age` files (created 0700 if missing).
    pub path: PathBuf,
    /// The age X25519 identity (`AGE-SECRET-KEY-1...`): `{ file = ... }` or `{ env = ... }`.
    pub identity: ValueRef,
    /// Extra age recipients (`age1...`) every record is also encrypted to (e.g. a break-glass key).
    pub recipients: Vec<String>,
}

/// Parses `[backends.NAME]` with `type = "file"`, recording every problem in `c`.
pub(crate) fn parse_config(
    c: &mut Checker,
    name: &str,
    t: &Table,
    path: &str,
) -> FileBackendConfig {
    let mut cfg = FileBackendConfig::placeholder(name);
    c.known_keys(t, path, &["type", "path", "identity", "recipients"]);
    match c.string(t, path, "path") {
        Some((p, e)) if p.trim().is_empty() => {
            c.err(e.line, join(path, "path"), "must not be empty")
        }
        Some((p, _)) => cfg.path = c.base_dir.join(p),
        None if t.get("path").is_none() => c.missing(
            t,
            path,
            "path",
            " (the directory holding the encrypted records, e.g. path = \"./rekey-store\")",
        ),
        None => {}
    }
    match t.get("identity") {
        Some(e) => cfg.identity = c.value_ref(e, path, true),
        None => c.missing(
            t,
            path,
            "identity",
            " (the age identity: { file = \"./rekey.key\" } or { env = \"NAME\" })",
        ),
    }
    if let Some((recipients, _)) = c.strings(t, path, "recipients") {
        check_items(
            c,
            t,
            path,
            "recipients",
            &recipients,
            |r| r.parse::<age::x25519::Recipient>().is_ok(),
            |r| format!("\"{r}\" is not an age X25519 recipient (age1...)"),
        );
        cfg.recipients = recipients;
    }
    cfg
}

impl FileBackendConfig {
    /// What an unusable `[backends.NAME]` stands in as while the rest is checked.
    pub(crate) fn placeholder(name: &str) -> Self {
        FileBackendConfig {
            name: name.to_string(),
            path: PathBuf::new(),
            identity: ValueRef::Env(String::new()),
            recipients: Vec::new(),
        }
    }
}
