//! Secrets that cannot be printed by accident.
//!
//! [`Secret`] redacts itself in `Debug` and `Display`, zeroizes its memory on drop, and is not
//! `Serialize`: the only way to write one out is the explicit [`expose`] serde helper, used by
//! the encrypted backend records and by `rekey get`.
//!
//! Every `Secret` alive in the process is known to [`live`], so that text from a server or a
//! plugin can be scrubbed of it (`src/scrub.rs`). Clones share one zeroized buffer; the
//! registry holds weak references only, so it keeps no secret alive and makes no copy.

use rand::Rng;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use zeroize::Zeroizing;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<Zeroizing<String>>);

/// Weak references to every secret made in this process; dead ones are dropped as it grows.
static LIVE: Mutex<Vec<Weak<Zeroizing<String>>>> = Mutex::new(Vec::new());

fn register(s: &Arc<Zeroizing<String>>) {
    if s.is_empty() {
        return;
    }
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    // Amortised clean-up: when the list has doubled since the last one, forget dead entries.
    if live.len() >= 64 && live.len().is_power_of_two() {
        live.retain(|w| w.strong_count() > 0);
    }
    live.push(Arc::downgrade(s));
}

/// Every secret alive in this process, for scrubbing (src/scrub.rs).
pub(crate) fn live() -> Vec<Arc<Zeroizing<String>>> {
    let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.iter().filter_map(Weak::upgrade).collect()
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        let inner = Arc::new(Zeroizing::new(value.into()));
        register(&inner);
        Secret(inner)
    }

    /// The shared buffer, for a scrubber that must know this secret (src/scrub.rs).
    pub(crate) fn shared(&self) -> Arc<Zeroizing<String>> {
        self.0.clone()
    }

    /// The secret value. Call only where it goes on the wire or into an encrypted store.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// First 8 hex characters of the SHA-256 of the value: safe to log, enough to correlate.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.0.as_bytes())
    }

    /// A fresh random secret of `len` URL-safe characters, for caller-chosen secrets.
    pub fn generate(len: usize) -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut rng = rand::rng();
        let s: String = (0..len)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        record_for_leak_scan(&s);
        Secret::new(s)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Test builds only (`test-hooks`): when `REKEY_SECRET_REGISTRY` names a file, every secret
/// made here (by the tests, the emulator, or rekey's caller-chosen secrets) is appended to it,
/// one a line, so that `scripts/test.sh` can scan all test output for it afterwards. The file is
/// created 0600. Production builds have no such code.
#[cfg(feature = "test-hooks")]
pub fn record_for_leak_scan(value: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let Some(path) = std::env::var_os("REKEY_SECRET_REGISTRY") else {
        return;
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
    {
        // One write per line: O_APPEND keeps lines whole between concurrent processes.
        let _ = f.write_all(format!("{value}\n").as_bytes());
    }
}

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn record_for_leak_scan(_value: &str) {}

pub fn fingerprint(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    hex::encode(&digest[..4])
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(sha256:{})", self.fingerprint())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A client id and its secret: what a consumer needs, and what a provider issues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientPair {
    pub client_id: String,
    pub secret: Secret,
}

/// `#[serde(with = "crate::secret::expose")]`: the explicit, greppable way to store a secret.
pub mod expose {
    use super::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Secret, D::Error> {
        Ok(Secret::new(String::deserialize(de)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-very-secret-value");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        let pair = ClientPair {
            client_id: "abc".into(),
            secret: s,
        };
        assert!(!format!("{pair:?}").contains("hunter2"));
    }

    #[test]
    fn fingerprint_is_short_and_stable() {
        let s = Secret::new("abc");
        assert_eq!(s.fingerprint(), "ba7816bf");
        assert_eq!(s.fingerprint().len(), 8);
    }

    #[test]
    fn generated_secrets_differ() {
        let a = Secret::generate(48);
        let b = Secret::generate(48);
        assert_eq!(a.expose().len(), 48);
        assert_ne!(a, b);
    }
}
