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

use crate::backend::{Backend, BackendCapabilities};
use crate::config::check::join;
use crate::config::check::{Checker, is_valid_slot_name};
use crate::config::tree::{Kind, Table};
use crate::config::values::ValueRef;
use crate::error::{Error, ErrorKind, Result};
use crate::record::{SlotRecord, Versioned};
use age::secrecy::ExposeSecret;
use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
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

/// The decrypted file, with the record kept as the exact bytes the MAC covers. `mac` is absent
/// in records written before records were authenticated.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeIn<'a> {
    version: u64,
    #[serde(borrow)]
    record: &'a RawValue,
    #[serde(default)]
    mac: Option<String>,
}

/// Domain separation for the MAC key and the MAC input: a key or a tag made for anything else
/// never verifies here.
const MAC_LABEL: &[u8] = b"rekey file-store record v1";

/// The MAC key: HMAC-SHA256 keyed by the identity's secret encoding, over the label. Only the
/// holder of the identity can compute it; extra `recipients` (break-glass keys) can decrypt
/// records but not make one.
fn mac_key(identity: &age::x25519::Identity) -> Zeroizing<[u8; 32]> {
    let secret = identity.to_string();
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes a key of any length");
    m.update(MAC_LABEL);
    Zeroizing::new(m.finalize().into_bytes().into())
}

/// The record's MAC: over the slot name (so a record cannot be moved to another slot's file),
/// the version (so an older record cannot be replayed under a newer version) and the record's
/// bytes.
fn record_mac(key: &[u8; 32], slot: &str, version: u64, record: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a 32-byte key");
    m.update(MAC_LABEL);
    m.update(&[0]);
    m.update(&(slot.len() as u64).to_be_bytes());
    m.update(slot.as_bytes());
    m.update(&version.to_be_bytes());
    m.update(record);
    m
}

/// A record without a MAC (written before records were authenticated, or planted), as
/// `rekey store upgrade` shows it for review.
#[derive(Debug)]
pub struct LegacyRecord {
    pub slot: String,
    pub version: u64,
    pub record: SlotRecord,
    /// SHA-256 of the decrypted file: what the review saw, byte for byte.
    digest: [u8; 32],
}

/// What `rekey store upgrade` finds in one file store.
#[derive(Debug, Default)]
pub struct UpgradeReview {
    /// Records without a MAC: adoptable after review.
    pub legacy: Vec<LegacyRecord>,
    /// Records whose MAC is wrong, with the reason: never adopted.
    pub tampered: Vec<(String, String)>,
}

impl UpgradeReview {
    /// A short digest of exactly the legacy records shown (backend, slot, version, content).
    /// `--accept` must repeat it, so a record planted after the review cannot ride along.
    pub fn fingerprint(&self, backend: &str, hasher: &mut Sha256) {
        for r in &self.legacy {
            hasher.update((backend.len() as u64).to_be_bytes());
            hasher.update(backend.as_bytes());
            hasher.update((r.slot.len() as u64).to_be_bytes());
            hasher.update(r.slot.as_bytes());
            hasher.update(r.version.to_be_bytes());
            hasher.update(r.digest);
        }
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

/// `path` made absolute and, when it holds anything but plain path characters, single-quoted,
/// so the command in a message can be pasted as it is.
fn shell_path(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let s = abs.display().to_string();
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+@%:,".contains(&b))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Refuses a store directory that is not a directory, or that others can write: whoever can
/// write it can plant, replace or remove records (a planted record is caught by its MAC, but
/// removal and replacement by an older genuine record of another slot are not rekey's to
/// undo). The message gives the command that fixes it.
fn check_dir_mode(name: &str, dir: &Path, meta: &fs::Metadata) -> Result<()> {
    if !meta.is_dir() {
        return Err(Error::config(format!(
            "backend {name}: {} is not a directory",
            dir.display()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Error::config(format!(
            "backend {name}: the record directory {d} is writable by other users (mode {mode:03o}): anyone who can write it can plant or remove records; run: chmod 700 {d}",
            d = shell_path(dir)
        )));
    }
    Ok(())
}

/// Refuses a record file others can write (rekey creates them 0600).
fn check_record_mode(path: &Path, meta: &fs::Metadata) -> Result<()> {
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Error::config(format!(
            "record file {p} is writable by other users (mode {mode:03o}); run: chmod 600 {p}",
            p = shell_path(path)
        )));
    }
    Ok(())
}

/// The random part of a temp file name of rekey's own (`tempfile`'s default: 6 ASCII
/// alphanumerics), so `.a.age.b.age.XXXXXX.tmp` (slot `a.age.b`) is never taken for slot `a`'s.
fn is_temp_suffix(s: &str) -> bool {
    s.len() == 6 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The slot whose write left this temp file (`.<slot>.age.XXXXXX.tmp`), if it is one.
fn temp_file_slot(file_name: &str) -> Option<&str> {
    let rest = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (slot, random) = rest.rsplit_once('.')?;
    let slot = slot.strip_suffix(RECORD_SUFFIX)?;
    (is_temp_suffix(random) && is_valid_slot_name(slot)).then_some(slot)
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

    /// Decrypts, decodes and authenticates one record file. `None` when the file does not
    /// exist.
    fn read(&self, slot: &str) -> Result<Option<Versioned>> {
        match self.read_plain(slot)? {
            None => Ok(None),
            Some((path, plaintext)) => {
                let (versioned, mac, bytes) = self.decode(slot, &path, &plaintext)?;
                self.authenticate(slot, &path, versioned.version, bytes, mac.as_deref())?;
                Ok(Some(versioned))
            }
        }
    }

    /// The decrypted bytes of the slot's file, refusing one that others can write.
    fn read_plain(&self, slot: &str) -> Result<Option<(PathBuf, Zeroizing<Vec<u8>>)>> {
        let path = self.record_path(slot);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(classify_io(e, &format!("cannot read {}", path.display()))),
        };
        let io = |e| classify_io(e, &format!("cannot read {}", path.display()));
        check_record_mode(&path, &file.metadata().map_err(io)?)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let plaintext = self.decrypt(&path, &bytes)?;
        Ok(Some((path, plaintext)))
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

    /// Decodes a decrypted record (not yet authenticated) and its MAC, if it has one. Error
    /// messages never quote the content.
    fn decode<'p>(
        &self,
        slot: &str,
        path: &Path,
        plaintext: &'p [u8],
    ) -> Result<(Versioned, Option<String>, &'p str)> {
        let not_ours = || {
            Error::conflict(format!(
                "{} is not managed by rekey (no rekey record in it); refusing to touch it",
                path.display()
            ))
        };
        let parsed = serde_json::from_slice::<EnvelopeIn<'p>>(plaintext)
            .ok()
            .and_then(|env| {
                let record = serde_json::from_str::<SlotRecord>(env.record.get()).ok()?;
                Some((env.version, record, env.mac, env.record.get()))
            });
        let Some((version, record, mac, bytes)) = parsed else {
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
        };
        if !record.is_managed() {
            return Err(not_ours());
        }
        if record.slot != slot {
            return Err(Error::conflict(format!(
                "{} holds the record of slot \"{}\", not \"{slot}\"; refusing to touch it",
                path.display(),
                record.slot
            )));
        }
        Ok((Versioned { record, version }, mac, bytes))
    }

    /// Checks the record's MAC over its exact bytes: a record without one, or with a wrong one,
    /// is `Tampered` and nothing in it is used.
    fn authenticate(
        &self,
        slot: &str,
        path: &Path,
        version: u64,
        record: &str,
        mac: Option<&str>,
    ) -> Result<()> {
        let Some(mac) = mac else {
            return Err(Error::tampered(format!(
                "{} is not authenticated (no MAC): written by a rekey from before records were authenticated, or planted by someone who can write {}; rekey will not act on it until it is reviewed and adopted with `rekey store upgrade -c INVENTORY`",
                path.display(),
                self.dir.display()
            )));
        };
        let ok = hex::decode(mac).is_ok_and(|tag| {
            record_mac(&self.mac_key, slot, version, record.as_bytes())
                .verify_slice(&tag)
                .is_ok()
        });
        if ok {
            Ok(())
        } else {
            Err(Error::tampered(format!(
                "{} fails its authentication (MAC mismatch): it was not written with the identity of backend {} (forged, altered, or copied from another slot or version); rekey will not act on it. Restore it from a backup or remove it; `rekey store upgrade -c INVENTORY` does not adopt it",
                path.display(),
                self.name
            )))
        }
    }

    /// The plaintext of a record: the envelope with its MAC.
    fn seal(&self, slot: &str, version: u64, record: &[u8]) -> Zeroizing<Vec<u8>> {
        let tag = record_mac(&self.mac_key, slot, version, record).finalize();
        let mac = hex::encode(tag.into_bytes());
        let mut out = Zeroizing::new(Vec::with_capacity(record.len() + 128));
        out.extend_from_slice(format!("{{\"version\":{version},\"record\":").as_bytes());
        out.extend_from_slice(record);
        out.extend_from_slice(format!(",\"mac\":\"{mac}\"}}").as_bytes());
        out
    }

    /// Takes the slot's write lock. `delete` removes lock files (while holding them), so after
    /// locking, make sure the file locked is still the one at the path; else try again.
    fn lock(&self, slot: &str) -> Result<File> {
        loop {
            if let Some(file) = self.lock_once(slot, true)? {
                return Ok(file);
            }
        }
    }

    /// Takes the slot's write lock if no one holds it. `None`: held by a writer.
    fn try_lock(&self, slot: &str) -> Result<Option<File>> {
        loop {
            match self.lock_once(slot, false) {
                Ok(Some(file)) => return Ok(Some(file)),
                Ok(None) => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt: `Ok(None)` when `wait` is false and the lock is held; when the file locked
    /// is no longer the one at the path, `Ok(None)` (waiting) or `Conflict` (not waiting), so
    /// the caller tries again.
    fn lock_once(&self, slot: &str, wait: bool) -> Result<Option<File>> {
        let path = self.dir.join(format!(".{slot}.lock"));
        let io = |e| classify_io(e, &format!("cannot lock {}", path.display()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        if wait {
            file.lock().map_err(io)?;
        } else {
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        let held = file.metadata().map_err(io)?;
        let retry = || {
            if wait {
                Ok(None)
            } else {
                Err(Error::conflict("lock file replaced"))
            }
        };
        match fs::metadata(&path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => Ok(Some(file)),
            Ok(_) => retry(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => retry(),
            Err(e) => Err(io(e)),
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
        let bytes = Zeroizing::new(
            serde_json::to_vec(record)
                .map_err(|_| Error::internal(format!("slot {slot}: cannot encode the record")))?,
        );
        self.replace_locked(slot, &self.seal(slot, version, &bytes))?;
        Ok(version)
    }

    /// Encrypts `plaintext` and puts it in place of the slot's file: temp file, fsync, rename,
    /// fsync of the directory. The caller holds the slot's lock for the whole time the temp
    /// file exists (what lets `check` remove stale ones safely).
    fn replace_locked(&self, slot: &str, plaintext: &[u8]) -> Result<()> {
        let ciphertext = self.encrypt(plaintext)?;
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
        crate::crash::point("file-before-rename");
        tmp.persist(self.record_path(slot))
            .map_err(|e| io(e.error))?;
        self.sync_dir()
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

    /// Owned slot names, leaving out `known` ones undecrypted (see `Backend::list`).
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
                // A rekey record that fails its authentication is listed (so `status` shows
                // it as tampered); reading it again fails the same way, so it is never acted on.
                Err(e) if e.kind() == ErrorKind::Tampered => slots.push(slot.to_string()),
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

    /// Proves the directory is usable (not open to others, writable), refuses record files
    /// others can write, and removes temp files that killed writes left behind.
    fn check(&self) -> Result<()> {
        let meta = fs::metadata(&self.dir).map_err(|e| {
            classify_io(e, &format!("backend {}: {}", self.name, self.dir.display()))
        })?;
        check_dir_mode(&self.name, &self.dir, &meta)?;
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
        probe.close().map_err(io)?;
        self.sweep()
    }

    /// One pass over the directory: record files others can write are refused (with the
    /// chmod), and each slot's stale temp files are removed while holding that slot's lock.
    /// A slot whose lock is held (a live writer) keeps its temp files until a later pass.
    fn sweep(&self) -> Result<()> {
        let list_err = |e| classify_io(e, &format!("cannot list {}", self.dir.display()));
        let mut temps: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
        for entry in fs::read_dir(&self.dir).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                continue;
            };
            if let Some(slot) = temp_file_slot(name) {
                temps
                    .entry(slot.to_string())
                    .or_default()
                    .push(entry.path());
            } else if name
                .strip_suffix(RECORD_SUFFIX)
                .is_some_and(is_valid_slot_name)
            {
                let path = entry.path();
                // lstat: a symlink's own mode says nothing; what it points at is read (and
                // refused by its MAC) like any other content.
                let meta = entry.metadata().map_err(list_err)?;
                if meta.file_type().is_file() {
                    check_record_mode(&path, &meta)?;
                }
            }
        }
        for (slot, files) in temps {
            let Some(lock) = self.try_lock(&slot)? else {
                tracing::debug!(backend = %self.name, slot, "temp files of a live write; left alone");
                continue;
            };
            for f in &files {
                match fs::remove_file(f) {
                    Ok(()) => tracing::info!(
                        backend = %self.name,
                        slot,
                        file = %f.display(),
                        "removed the temp file of an interrupted write"
                    ),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(classify_io(e, &format!("cannot remove {}", f.display())));
                    }
                }
            }
            if !self.record_path(&slot).exists() {
                // No record: the lock file only existed for this pass (removed while held,
                // as `delete` does).
                let _ = fs::remove_file(self.dir.join(format!(".{slot}.lock")));
            }
            drop(lock);
        }
        Ok(())
    }

    /// Every record of this store that `rekey store upgrade` has to look at.
    fn review(&self) -> Result<UpgradeReview> {
        let mut review = UpgradeReview::default();
        let list_err = |e| classify_io(e, &format!("cannot list {}", self.dir.display()));
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            if let Some(slot) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(RECORD_SUFFIX))
                .filter(|s| is_valid_slot_name(s))
            {
                names.push(slot.to_string());
            }
        }
        names.sort();
        for slot in names {
            let Some((path, plaintext)) = self.read_plain(&slot)? else {
                continue;
            };
            let (versioned, mac, bytes) = match self.decode(&slot, &path, &plaintext) {
                Ok(d) => d,
                // Not a rekey record: not ours to adopt, and left alone as everywhere else.
                Err(_) => continue,
            };
            match mac {
                None => review.legacy.push(LegacyRecord {
                    slot,
                    version: versioned.version,
                    record: versioned.record,
                    digest: Sha256::digest(&plaintext[..]).into(),
                }),
                Some(mac) => {
                    if let Err(e) =
                        self.authenticate(&slot, &path, versioned.version, bytes, Some(&mac))
                    {
                        review.tampered.push((slot, e.to_string()));
                    }
                }
            }
        }
        Ok(review)
    }

    /// Adds the MAC to each reviewed legacy record, under its slot's lock, keeping its version
    /// and bytes; refused if the file is no longer exactly what was reviewed.
    fn adopt(&self, legacy: &[LegacyRecord]) -> Result<usize> {
        for r in legacy {
            let _lock = self.lock(&r.slot)?;
            let Some((path, plaintext)) = self.read_plain(&r.slot)? else {
                return Err(Error::conflict(format!(
                    "slot {}: the record was removed after the review; run `rekey store upgrade` again",
                    r.slot
                )));
            };
            let digest: [u8; 32] = Sha256::digest(&plaintext[..]).into();
            if digest != r.digest {
                return Err(Error::conflict(format!(
                    "{} changed after the review; run `rekey store upgrade` again and review it",
                    path.display()
                )));
            }
            let (versioned, _, bytes) = self.decode(&r.slot, &path, &plaintext)?;
            let sealed = self.seal(&r.slot, versioned.version, bytes.as_bytes());
            self.replace_locked(&r.slot, &sealed)?;
        }
        Ok(legacy.len())
    }
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

    async fn check(&self) -> Result<()> {
        self.blocking(|b| b.check()).await
    }
}
