//! Record authentication: the MAC that makes a planted or altered record `Tampered`, the
//! envelope it covers, and the review and adoption of records written before MACs existed
//! (`rekey store upgrade`, src/store.rs).

use super::Inner;
use super::RECORD_SUFFIX;
use super::errors::classify_io;
use crate::check::is_valid_slot_name;
use crate::error::{Error, Result};
use crate::record::{SlotRecord, Versioned};
use age::secrecy::ExposeSecret;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::fs;
use std::path::Path;
use zeroize::Zeroizing;

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
pub(super) fn mac_key(identity: &age::x25519::Identity) -> Zeroizing<[u8; 32]> {
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

impl Inner {
    /// Decodes a decrypted record (not yet authenticated) and its MAC, if it has one. Error
    /// messages never quote the content.
    pub(super) fn decode<'p>(
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
    pub(super) fn authenticate(
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
    pub(super) fn seal(&self, slot: &str, version: u64, record: &[u8]) -> Zeroizing<Vec<u8>> {
        let tag = record_mac(&self.mac_key, slot, version, record).finalize();
        let mac = hex::encode(tag.into_bytes());
        let mut out = Zeroizing::new(Vec::with_capacity(record.len() + 128));
        out.extend_from_slice(format!("{{\"version\":{version},\"record\":").as_bytes());
        out.extend_from_slice(record);
        out.extend_from_slice(format!(",\"mac\":\"{mac}\"}}").as_bytes());
        out
    }

    /// Every record of this store that `rekey store upgrade` has to look at.
    pub(super) fn review(&self) -> Result<UpgradeReview> {
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
    pub(super) fn adopt(&self, legacy: &[LegacyRecord]) -> Result<usize> {
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
