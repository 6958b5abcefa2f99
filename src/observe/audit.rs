//! The audit trail: one JSON line per slot state change ([`StateChanged`]), appended to a file
//! (created 0600, opened append-only, fsynced after each line) or written to stdout. Lines hold
//! client ids and secret fingerprints, never a secret.

use super::StateChanged;
use crate::error::{Error, Result};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

pub struct AuditLog {
    out: Mutex<Out>,
}

enum Out {
    File(std::fs::File),
    Stdout,
}

impl AuditLog {
    /// `-` is stdout; anything else a file opened for appending (created with mode 0600).
    pub fn open(path: &Path) -> Result<AuditLog> {
        if path.as_os_str() == "-" {
            return Ok(AuditLog {
                out: Mutex::new(Out::Stdout),
            });
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                Error::config(format!("cannot open the audit log {}: {e}", path.display()))
            })?;
        // An existing log keeps its mode; one others can read or write is refused (it names
        // every client and fingerprint, and others could forge lines). Pipes and terminals pass.
        if file.metadata().is_ok_and(|m| m.is_file()) {
            crate::harden::check_private_file(path, "audit log")?;
        }
        Ok(AuditLog {
            out: Mutex::new(Out::File(file)),
        })
    }

    /// Appends one line. A failure is logged, not raised: the state change it describes has
    /// already been written to the backend, and failing the slot would not undo it.
    pub fn write(&self, event: &StateChanged) {
        let mut line = match serde_json::to_string(event) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize an audit event");
                return;
            }
        };
        line.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let r = match &mut *out {
            Out::File(f) => f.write_all(line.as_bytes()).and_then(|()| f.sync_data()),
            Out::Stdout => {
                let mut s = std::io::stdout().lock();
                s.write_all(line.as_bytes()).and_then(|()| s.flush())
            }
        };
        if let Err(e) = r {
            tracing::error!(slot = %event.slot, error = %e, "could not write the audit line");
        }
    }
}
