//! The age file store: encryption, reads, compare-and-set writes under per-slot locks,
//! atomic replacement, listing, and the sweep of temp files that killed writes left.

use super::errors::classify_io;
use super::{Inner, RECORD_SUFFIX};
use crate::backend::common::check_write;
use crate::check::is_valid_slot_name;
use crate::error::{Error, ErrorKind, Result};
use crate::record::{SlotRecord, Versioned};
use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

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
pub(super) fn check_dir_mode(name: &str, dir: &Path, meta: &fs::Metadata) -> Result<()> {
    if !meta.is_dir() {
        return Err(Error::config(format!(
            "backend {name}: {} is not a directory",
            dir.display()
        )));
    }
    if let Some(mode) = writable_by_others(meta) {
        return Err(Error::config(format!(
            "backend {name}: the record directory {d} is writable by other users (mode {mode:03o}): anyone who can write it can plant or remove records; run: chmod 700 {d}",
            d = shell_path(dir)
        )));
    }
    Ok(())
}

/// The mode bits, when group or others may write.
fn writable_by_others(meta: &fs::Metadata) -> Option<u32> {
    let mode = meta.mode() & 0o7777;
    (mode & 0o022 != 0).then_some(mode)
}

/// Refuses a record file others can write (rekey creates them 0600).
fn check_record_mode(path: &Path, meta: &fs::Metadata) -> Result<()> {
    if let Some(mode) = writable_by_others(meta) {
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

    pub(super) fn check_slot(&self, slot: &str) -> Result<()> {
        crate::backend::common::check_slot(&self.name, slot)
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
    pub(super) fn read(&self, slot: &str) -> Result<Option<Versioned>> {
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
    pub(super) fn read_plain(&self, slot: &str) -> Result<Option<(PathBuf, Zeroizing<Vec<u8>>)>> {
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
    /// Takes the slot's write lock. `delete` removes lock files (while holding them), so after
    /// locking, make sure the file locked is still the one at the path; else try again.
    pub(super) fn lock(&self, slot: &str) -> Result<File> {
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

    pub(super) fn write(
        &self,
        slot: &str,
        record: &SlotRecord,
        expected: Option<u64>,
    ) -> Result<u64> {
        check_write(&self.name, slot, record)?;
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
    pub(super) fn replace_locked(&self, slot: &str, plaintext: &[u8]) -> Result<()> {
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

    pub(super) fn delete(&self, slot: &str, expected: u64) -> Result<()> {
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
    pub(super) fn list(&self, known: &BTreeSet<String>) -> Result<Vec<String>> {
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

    /// The slot names that have a record file, from one directory listing (no file is opened:
    /// `plan` over 100,000 slots with few records would otherwise open 100,000 missing files).
    pub(super) fn names(&self) -> Result<BTreeSet<String>> {
        let io = |e| classify_io(e, &format!("cannot list {}", self.dir.display()));
        let mut names = BTreeSet::new();
        for entry in fs::read_dir(&self.dir).map_err(io)? {
            let file_name = entry.map_err(io)?.file_name();
            if let Some(slot) = file_name
                .to_str()
                .and_then(|n| n.strip_suffix(RECORD_SUFFIX))
                .filter(|s| is_valid_slot_name(s))
            {
                names.insert(slot.to_string());
            }
        }
        Ok(names)
    }

    /// Proves the directory is usable (not open to others, writable), refuses record files
    /// others can write, and removes temp files that killed writes left behind.
    pub(super) fn check(&self) -> Result<()> {
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
}
