//! `type = "file"`: the embedded default backend (age-encrypted records in a directory).
//!
//! Layout: one file per slot, `<dir>/<slot>.age`, holding the age encryption (X25519, to the
//! identity's own recipient plus the configured `recipients`) of the JSON
//! `{ "version": N, "record": SlotRecord, "mac": HEX }`. One file per slot keeps each write
//! small and independent of the thousands of others.
//!
//! Records are authenticated, not just encrypted: age needs only the public recipient, so anyone
//! who can write the directory could plant a well-formed record. `mac` is HMAC-SHA256, keyed by
//! a key derived from the age identity (never from a recipient), over the slot name, the
//! version and the record's exact bytes; a record whose MAC is missing or wrong is
//! `ErrorKind::Tampered` on every read and never acted on. Records written before MACs existed
//! are adopted only by `rekey store upgrade` after review (SECURITY.md, "Someone who can write
//! the store directory"). A directory or record file others can write is refused.
//!
//! Writes are compare-and-set under an exclusive `flock` on a hidden per-slot lock file,
//! `<dir>/.<slot>.lock`: per slot so that writes to different slots never wait on each other, and
//! hidden so that `list` and people skip it. Under the lock a write reads the current version,
//! compares it, writes a temp file `.<slot>.age.XXXX.tmp` (0600) in the same directory, fsyncs
//! it, renames it over the record and fsyncs the directory. Reads take no lock: the rename is
//! atomic, so a reader sees the old or the new record, never a mix, and a crash mid-write
//! leaves at worst a stray temp file. `check` (every `apply`'s preflight) removes such files,
//! each only while holding its slot's lock: a writer holds that lock for as long as its temp
//! file exists, so a temp file found under the lock belongs to no live writer.
//!
//! Versions are opaque tokens: a new entry starts at the current time in microseconds and each
//! write adds one, so an entry deleted and created again never repeats a version a stale
//! writer may still hold.

mod config;
mod errors;
mod integrity;
mod store;

pub use config::FileBackendConfig;
pub(crate) use config::parse_config;
pub use integrity::{LegacyRecord, UpgradeReview};

use crate::backend::{Backend, BackendCapabilities};
use crate::check::values::ValueRef;
use crate::error::{Error, Result};
use crate::record::{SlotRecord, Versioned};
use age::secrecy::ExposeSecret;
use async_trait::async_trait;
use errors::classify_io;
use integrity::mac_key;
use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::check_dir_mode;
use zeroize::Zeroizing;

const RECORD_SUFFIX: &str = ".age";

/// Records in a directory, one age-encrypted file per slot.
#[derive(Clone)]
pub struct FileBackend {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    dir: PathBuf,
    identity: age::x25519::Identity,
    recipients: Vec<age::x25519::Recipient>,
    /// The record MAC key, derived from the identity (see [`mac_key`]).
    mac_key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for FileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBackend")
            .field("name", &self.inner.name)
            .field("dir", &self.inner.dir)
            .field("recipients", &self.inner.recipients.len())
            .finish_non_exhaustive()
    }
}

impl FileBackend {
    /// Resolves the identity (refusing an identity file others can read), parses the extra
    /// recipients, and creates the directory (0700) if it is missing.
    pub fn open(config: &FileBackendConfig) -> Result<Self> {
        let name = &config.name;
        if let ValueRef::File(path) = &config.identity {
            check_identity_file(path).map_err(|e| e.context(format!("backend {name}")))?;
        }
        let text = config
            .identity
            .resolve()
            .map_err(|e| e.context(format!("backend {name}: identity")))?;
        let identity = parse_identity(text.expose()).map_err(|msg| {
            Error::config(format!(
                "backend {name}: the identity ({}) {msg}",
                config.identity
            ))
        })?;
        let mut recipients = vec![identity.to_public()];
        for r in &config.recipients {
            let parsed = r.parse::<age::x25519::Recipient>().map_err(|_| {
                Error::config(format!(
                    "backend {name}: \"{r}\" is not an age X25519 recipient (age1...)"
                ))
            })?;
            recipients.push(parsed);
        }
        let dir = config.path.clone();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                classify_io(
                    e,
                    &format!("backend {name}: cannot create {}", dir.display()),
                )
            })?;
        let meta = fs::metadata(&dir)
            .map_err(|e| classify_io(e, &format!("backend {name}: {}", dir.display())))?;
        check_dir_mode(name, &dir, &meta)?;
        if meta.mode() & 0o077 != 0 {
            tracing::warn!(
                backend = %name,
                dir = %dir.display(),
                "the record directory is readable by other users (slot names are visible); chmod 700 it"
            );
        }
        let mac_key = mac_key(&identity);
        Ok(FileBackend {
            inner: Arc::new(Inner {
                name: name.clone(),
                dir,
                identity,
                recipients,
                mac_key,
            }),
        })
    }

    /// Writes a new age X25519 identity to `path` (0600; refused if the file exists) and returns
    /// its public recipient (`age1...`). For `rekey keygen`.
    pub fn generate_identity(path: &Path) -> Result<String> {
        generate_identity(path)
    }

    /// The directory holding the records.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Runs blocking file work off the async runtime.
    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::internal("file backend task failed").with_source(e))?
    }
}

/// Writes a new age X25519 identity to `path` (0600, created with `create_new`, so an existing
/// file is never overwritten) and returns its public recipient (`age1...`).
pub fn generate_identity(path: &Path) -> Result<String> {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::config(format!(
                    "{} already exists; not overwriting an identity (records encrypted to it would be lost)",
                    path.display()
                ))
            } else {
                classify_io(e, &format!("cannot create {}", path.display()))
            }
        })?;
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = Zeroizing::new(format!(
        "# created: {created}\n# public key: {recipient}\n{}\n",
        identity.to_string().expose_secret()
    ));
    file.write_all(body.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| classify_io(e, &format!("cannot write {}", path.display())))?;
    Ok(recipient)
}

/// Refuses an identity file that anyone but its owner can read or write.
fn check_identity_file(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(|e| {
        classify_io(e, &format!("identity file {}", path.display())).context(
            "the age identity file is missing or unreadable (create one with `rekey keygen`)",
        )
    })?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::config(format!(
            "identity file {p} is accessible to other users (mode {mode:03o}); run: chmod 600 {p}",
            p = path.display()
        )));
    }
    Ok(())
}

/// The first identity in `text` (lines starting with `#` are comments, as `age-keygen` writes).
/// The message on failure never includes the text.
fn parse_identity(text: &str) -> std::result::Result<age::x25519::Identity, &'static str> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or("is empty")?;
    line.parse::<age::x25519::Identity>()
        .map_err(|_| "is not an age X25519 identity (AGE-SECRET-KEY-1...)")
}

impl FileBackend {
    /// For `rekey store upgrade`: the records without a MAC, for review, and those whose MAC
    /// is wrong. Changes nothing.
    pub fn review(&self) -> Result<UpgradeReview> {
        self.inner.review()
    }

    /// For `rekey store upgrade --accept`: authenticates exactly the reviewed records.
    pub fn adopt(&self, legacy: &[LegacyRecord]) -> Result<usize> {
        self.inner.adopt(legacy)
    }
}

#[async_trait]
impl Backend for FileBackend {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> BackendCapabilities {
        BackendCapabilities {
            soft_delete: false,
            // One rename replaces the whole record, consumers' pair included.
            atomic_promotion: true,
        }
    }

    async fn read(&self, slot: &str) -> Result<Option<Versioned>> {
        let slot = slot.to_string();
        self.blocking(move |b| {
            b.check_slot(&slot)?;
            b.read(&slot)
        })
        .await
    }

    async fn write(&self, slot: &str, record: &SlotRecord, expected: Option<u64>) -> Result<u64> {
        let slot = slot.to_string();
        let record = record.clone();
        self.blocking(move |b| b.write(&slot, &record, expected))
            .await
    }

    async fn delete(&self, slot: &str, expected: u64) -> Result<()> {
        let slot = slot.to_string();
        self.blocking(move |b| b.delete(&slot, expected)).await
    }

    async fn list(&self, known: &BTreeSet<String>) -> Result<Vec<String>> {
        let known = known.clone();
        self.blocking(move |b| b.list(&known)).await
    }

    async fn names(&self) -> Result<Option<BTreeSet<String>>> {
        self.blocking(|b| b.names()).await.map(Some)
    }

    async fn check(&self) -> Result<()> {
        self.blocking(|b| b.check()).await
    }
}
