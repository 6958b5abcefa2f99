//! `type = "file"`: the embedded default backend (age-encrypted records in a directory).
//!
//! Layout: one file per slot, `<dir>/<slot>.age`, holding the age encryption (X25519, to the
//! identity's own recipient plus the configured `recipients`) of the JSON
//! `{ "version": N, "record": SlotRecord }`. One file per slot keeps each write small and
//! independent of the thousands of others.
//!
//! Writes are compare-and-set under an exclusive `flock` on a hidden per-slot lock file,
//! `<dir>/.<slot>.lock`: per slot so that writes to different slots never wait on each other, and
//! hidden so that `list` and people skip it. Under the lock a write reads the current version,
//! compares it, writes a temp file `.<slot>.age.XXXX.tmp` (0600) in the same directory, fsyncs
//! it, renames it over the record and fsyncs the directory. Reads take no lock: the rename is
//! atomic, so a reader sees the old or the new record, never a mix, and a crash mid-write
//! leaves at worst a stray temp file that everything ignores.
//!
//! Versions are opaque tokens: a new entry starts at the current time in microseconds and each
//! write adds one, so an entry deleted and created again never repeats a version a stale
//! writer may still hold.

use crate::backend::{Backend, BackendCapabilities};
use crate::config::check::join;
use crate::config::{Checker, Kind, Table, ValueRef, is_valid_slot_name};
use crate::error::{Error, ErrorKind, Result};
use crate::record::{SlotRecord, Versioned};
use age::secrecy::ExposeSecret;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

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
        let e = t.get("recipients").expect("strings() found it");
        for (i, r) in recipients.iter().enumerate() {
            if r.parse::<age::x25519::Recipient>().is_err() {
                let line = match &e.value.kind {
                    Kind::Array(items) => items.get(i).map_or(e.line, |n| n.line),
                    _ => e.line,
                };
                c.err(
                    line,
                    format!("{path}.recipients[{i}]"),
                    format!("\"{r}\" is not an age X25519 recipient (age1...)"),
                );
            }
        }
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

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    version: u64,
    record: &'a SlotRecord,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeIn {
    version: u64,
    record: SlotRecord,
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
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {
                if m.mode() & 0o077 != 0 {
                    tracing::warn!(
                        backend = %name,
                        dir = %dir.display(),
                        "the record directory is open to other users (slot names are visible); chmod 700 it"
                    );
                }
            }
            Ok(_) => {
                return Err(Error::config(format!(
                    "backend {name}: {} is not a directory",
                    dir.display()
                )));
            }
            Err(e) => {
                return Err(classify_io(
                    e,
                    &format!("backend {name}: {}", dir.display()),
                ));
            }
        }
        Ok(FileBackend {
            inner: Arc::new(Inner {
                name: name.clone(),
                dir,
                identity,
                recipients,
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

/// Maps I/O errors to kinds: the one place this backend decides what a failure means.
fn classify_io(e: std::io::Error, what: &str) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => ErrorKind::Forbidden,
        std::io::ErrorKind::AlreadyExists => ErrorKind::Conflict,
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, what.to_string()).with_source(e)
}

fn first_version() -> u64 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    u64::try_from(micros).unwrap_or(u64::MAX / 2).max(1)
}

fn describe(version: Option<u64>) -> String {
    match version {
        Some(v) => format!("version {v}"),
        None => "no entry".to_string(),
    }
}

impl Inner {
    fn record_path(&self, slot: &str) -> PathBuf {
        self.dir.join(format!("{slot}{RECORD_SUFFIX}"))
    }

    fn check_slot(&self, slot: &str) -> Result<()> {
        if is_valid_slot_name(slot) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "backend {}: \"{slot}\" is not a valid slot name",
                self.name
            )))
        }
    }

    fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let fail = |e: &dyn fmt::Display| Error::internal(format!("age encryption failed: {e}"));
        let encryptor = age::Encryptor::with_recipients(
            self.recipients.iter().map(|r| r as &dyn age::Recipient),
        )
        .map_err(|e| fail(&e))?;
        let mut out = Vec::with_capacity(plaintext.len() + 256);
        let mut writer = encryptor.wrap_output(&mut out).map_err(|e| fail(&e))?;
        writer.write_all(plaintext).map_err(|e| fail(&e))?;
        writer.finish().map_err(|e| fail(&e))?;
        Ok(out)
    }

    /// Decrypts and decodes one record file. `None` when the file does not exist.
    fn read(&self, slot: &str) -> Result<Option<Versioned>> {
        let path = self.record_path(slot);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(classify_io(e, &format!("cannot read {}", path.display()))),
        };
        let plaintext = self.decrypt(&path, &bytes)?;
        self.decode(slot, &path, &plaintext).map(Some)
    }

    fn decrypt(&self, path: &Path, bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let malformed = || {
            Error::malformed(format!(
                "{} is not a readable age file (corrupt or truncated)",
                path.display()
            ))
        };
        let decryptor = age::Decryptor::new_buffered(bytes).map_err(|_| malformed())?;
        let mut reader = decryptor
            .decrypt(std::iter::once(&self.identity as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => Error::new(
                    ErrorKind::Unauthorized,
                    format!(
                        "cannot decrypt {} with the configured identity of backend {} (encrypted to another key?)",
                        path.display(),
                        self.name
                    ),
                ),
                _ => malformed(),
            })?;
        let mut plaintext = Zeroizing::new(Vec::new());
        reader
            .read_to_end(&mut plaintext)
            .map_err(|_| malformed())?;
        Ok(plaintext)
    }

    /// Decodes a decrypted record. Error messages never quote the content.
    fn decode(&self, slot: &str, path: &Path, plaintext: &[u8]) -> Result<Versioned> {
        let not_ours = || {
            Error::conflict(format!(
                "{} is not managed by rekey (no rekey record in it); refusing to touch it",
                path.display()
            ))
        };
        let env: EnvelopeIn = match serde_json::from_slice(plaintext) {
            Ok(env) => env,
            Err(_) => {
                // Tell "someone else's file" from "a rekey record this build cannot read".
                let value: serde_json::Value =
                    serde_json::from_slice(plaintext).map_err(|_| not_ours())?;
                let managed = value
                    .get("record")
                    .and_then(|r| r.get("managed_by"))
                    .and_then(|m| m.as_str())
                    == Some(crate::record::MANAGED_BY);
                return Err(if managed {
                    Error::malformed(format!(
                        "{} holds a rekey record this version cannot read (newer schema?)",
                        path.display()
                    ))
                } else {
                    not_ours()
                });
            }
        };
        if !env.record.is_managed() {
            return Err(not_ours());
        }
        if env.record.slot != slot {
            return Err(Error::conflict(format!(
                "{} holds the record of slot \"{}\", not \"{slot}\"; refusing to touch it",
                path.display(),
                env.record.slot
            )));
        }
        Ok(Versioned {
            record: env.record,
            version: env.version,
        })
    }

    /// Takes the slot's write lock. `delete` removes lock files (while holding them), so after
    /// locking, make sure the file locked is still the one at the path; else try again.
    fn lock(&self, slot: &str) -> Result<File> {
        let path = self.dir.join(format!(".{slot}.lock"));
        let io = |e| classify_io(e, &format!("cannot lock {}", path.display()));
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(io)?;
            file.lock().map_err(io)?;
            let held = file.metadata().map_err(io)?;
            match fs::metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => return Ok(file),
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            }
        }
    }

    /// Reads the current version under the lock and compares it with `expected`.
    fn compare(&self, slot: &str, expected: Option<u64>) -> Result<Option<u64>> {
        let current = self.read(slot)?.map(|v| v.version);
        if current != expected {
            return Err(Error::conflict(format!(
                "slot {slot}: backend {} changed under us: expected {}, found {} (another run wrote first)",
                self.name,
                describe(expected),
                describe(current)
            )));
        }
        Ok(current)
    }

    fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| classify_io(e, &format!("cannot sync {}", self.dir.display())))
    }

    fn write(&self, slot: &str, record: &SlotRecord, expected: Option<u64>) -> Result<u64> {
        self.check_slot(slot)?;
        if record.slot != slot || !record.is_managed() {
            return Err(Error::invalid(format!(
                "backend {}: refusing to store a record for slot \"{}\" (managed by \"{}\") as slot \"{slot}\"",
                self.name, record.slot, record.managed_by
            )));
        }
        let _lock = self.lock(slot)?;
        let version = match self.compare(slot, expected)? {
            Some(v) => v
                .checked_add(1)
                .ok_or_else(|| Error::internal(format!("slot {slot}: version counter overflow")))?,
            None => first_version(),
        };
        let plaintext = Zeroizing::new(
            serde_json::to_vec(&EnvelopeOut { version, record })
                .map_err(|_| Error::internal(format!("slot {slot}: cannot encode the record")))?,
        );
        let ciphertext = self.encrypt(&plaintext)?;
        let prefix = format!(".{slot}{RECORD_SUFFIX}.");
        let io = |e| {
            classify_io(
                e,
                &format!("slot {slot}: cannot write in {}", self.dir.display()),
            )
        };
        // NamedTempFile is created 0600 with O_EXCL and removed again if we fail before persist.
        let mut tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempfile_in(&self.dir)
            .map_err(io)?;
        tmp.write_all(&ciphertext).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(self.record_path(slot))
            .map_err(|e| io(e.error))?;
        self.sync_dir()?;
        Ok(version)
    }

    fn delete(&self, slot: &str, expected: u64) -> Result<()> {
        self.check_slot(slot)?;
        let lock = self.lock(slot)?;
        self.compare(slot, Some(expected))?;
        let path = self.record_path(slot);
        fs::remove_file(&path)
            .map_err(|e| classify_io(e, &format!("cannot remove {}", path.display())))?;
        self.sync_dir()?;
        // Removed while held: a waiter that then locks the unlinked file notices and retries.
        let _ = fs::remove_file(self.dir.join(format!(".{slot}.lock")));
        drop(lock);
        Ok(())
    }

    /// Owned slot names, leaving out `known` ones undecrypted (see `Backend::list_unknown`).
    fn list(&self, known: &BTreeSet<String>) -> Result<Vec<String>> {
        let entries = fs::read_dir(&self.dir)
            .map_err(|e| classify_io(e, &format!("cannot list {}", self.dir.display())))?;
        let mut slots = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|e| classify_io(e, &format!("cannot list {}", self.dir.display())))?;
            let file_name = entry.file_name();
            let Some(slot) = file_name
                .to_str()
                .and_then(|n| n.strip_suffix(RECORD_SUFFIX))
            else {
                continue;
            };
            // Temp and lock files start with '.', which no slot name does.
            if !is_valid_slot_name(slot) || known.contains(slot) {
                continue;
            }
            match self.read(slot) {
                Ok(Some(_)) => slots.push(slot.to_string()),
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    backend = %self.name,
                    slot,
                    kind = %e.kind(),
                    "skipping an entry that is not a readable rekey record: {e}"
                ),
            }
        }
        slots.sort();
        Ok(slots)
    }

    fn check(&self) -> Result<()> {
        let meta = fs::metadata(&self.dir).map_err(|e| {
            classify_io(e, &format!("backend {}: {}", self.name, self.dir.display()))
        })?;
        if !meta.is_dir() {
            return Err(Error::config(format!(
                "backend {}: {} is not a directory",
                self.name,
                self.dir.display()
            )));
        }
        let io = |e| {
            classify_io(
                e,
                &format!(
                    "backend {}: {} is not writable",
                    self.name,
                    self.dir.display()
                ),
            )
        };
        let mut probe = tempfile::Builder::new()
            .prefix(".check.")
            .suffix(".tmp")
            .tempfile_in(&self.dir)
            .map_err(io)?;
        probe.write_all(b"rekey").map_err(io)?;
        probe.as_file().sync_all().map_err(io)?;
        probe.close().map_err(io)
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

    async fn list(&self) -> Result<Vec<String>> {
        self.blocking(|b| b.list(&BTreeSet::new())).await
    }

    async fn list_unknown(&self, known: &BTreeSet<String>) -> Result<Vec<String>> {
        let known = known.clone();
        self.blocking(move |b| b.list(&known)).await
    }

    async fn check(&self) -> Result<()> {
        self.blocking(|b| b.check()).await
    }
}
