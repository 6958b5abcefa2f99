//! `rekey store upgrade`: the one way a file store written before records were authenticated
//! (no MAC) is trusted again. Without `--accept` it shows every unauthenticated record (slot,
//! version, the clients it names: what rekey would act on) and a fingerprint of exactly what it
//! showed, and changes nothing. With `--accept FINGERPRINT` it adds the MAC to those records,
//! and only if the store still holds exactly them: a record planted after the review changes
//! the fingerprint and is refused. Records whose MAC is wrong are never adopted (docs/src/backends/file.md;
//! SECURITY.md, "Someone who can write the store directory").

use crate::app::report::Table;
use crate::backend::file::{FileBackend, LegacyRecord, UpgradeReview};
use crate::cli::StoreUpgradeArgs;
use crate::config::{self, BackendConfig};
use crate::error::exit;
use crate::error::{Error, Result};
use crate::record::{SlotRecord, StoredCredential};
use sha2::{Digest, Sha256};

/// Control characters of unauthenticated text shown escaped, never raw on the terminal.
fn shown(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn credential(role: &str, c: &StoredCredential) -> String {
    format!(
        "{role} g{} {} ({}{})",
        c.generation,
        shown(&c.client_id),
        shown(&c.name),
        if c.owned { "" } else { ", not rekey's" }
    )
}

/// Every client the record names, as rekey would act on them.
fn clients(r: &SlotRecord) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &r.current {
        parts.push(credential("current", c));
    }
    if let Some(c) = &r.pending {
        parts.push(credential("pending", c));
    }
    for d in &r.draining {
        parts.push(format!(
            "{} deleted after {}",
            credential("draining", &d.credential),
            d.delete_after
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    if let Some(op) = &r.op {
        parts.push(format!(
            "operation {:?} g{} in flight",
            op.kind, op.generation
        ));
    }
    if let Some(ret) = &r.retiring {
        parts.push(format!(
            "retiring: clients deleted after {}",
            ret.delete_after
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}

pub async fn upgrade(args: &StoreUpgradeArgs) -> Result<u8> {
    let inventory = config::load(&args.config)?;
    let mut stores: Vec<(String, FileBackend, UpgradeReview)> = Vec::new();
    for (name, cfg) in &inventory.backends {
        let BackendConfig::File(c) = cfg else {
            continue;
        };
        let backend = FileBackend::open(c)?;
        let review = backend
            .review()
            .map_err(|e| e.context(format!("backend {name}")))?;
        stores.push((name.clone(), backend, review));
    }
    if stores.is_empty() {
        return Err(Error::config(format!(
            "{} has no file backend; only file stores have records to upgrade",
            args.config.display()
        )));
    }
    let mut hasher = Sha256::new();
    for (name, _, review) in &stores {
        review.fingerprint(name, &mut hasher);
    }
    let fingerprint = hex::encode(&hasher.finalize()[..8]);
    let legacy: usize = stores.iter().map(|(_, _, r)| r.legacy.len()).sum();
    let tampered: usize = stores.iter().map(|(_, _, r)| r.tampered.len()).sum();

    for (name, _, review) in &stores {
        for (slot, why) in &review.tampered {
            crate::errln!(
                "backend {name}: slot {slot} is tampered and will not be adopted: {}",
                shown(why)
            );
        }
    }

    if let Some(accept) = &args.accept {
        if legacy == 0 {
            crate::outln!("nothing to upgrade: every rekey record is authenticated")?;
            return Ok(if tampered == 0 {
                exit::OK
            } else {
                exit::ATTENTION
            });
        }
        if !accept.trim().eq_ignore_ascii_case(&fingerprint) {
            return Err(Error::config(format!(
                "the unauthenticated records now in the store do not match the fingerprint given ({}; they now give {fingerprint}): a record was added, changed or removed since the review. Run `rekey store upgrade -c {}` again and review what it shows",
                shown(accept.trim()),
                args.config.display()
            )));
        }
        let mut done = 0;
        for (name, backend, review) in &stores {
            done += backend
                .adopt(&review.legacy)
                .map_err(|e| e.context(format!("backend {name}")))?;
        }
        for (name, _, review) in &stores {
            for r in &review.legacy {
                tracing::info!(backend = %name, slot = %r.slot, version = r.version, "record authenticated by `rekey store upgrade`");
            }
        }
        crate::outln!(
            "authenticated {done} record{}",
            crate::app::report::plural(done)
        )?;
        return Ok(if tampered == 0 {
            exit::OK
        } else {
            exit::ATTENTION
        });
    }

    if legacy == 0 {
        crate::outln!("nothing to upgrade: every rekey record is authenticated")?;
        return Ok(if tampered == 0 {
            exit::OK
        } else {
            exit::ATTENTION
        });
    }
    let known: std::collections::BTreeSet<&str> =
        inventory.slots.iter().map(|s| s.name.as_str()).collect();
    let mut t = Table::new(vec![
        "BACKEND",
        "SLOT",
        "VERSION",
        "IN INVENTORY",
        "PROVIDER",
        "TENANT",
        "CLIENTS NAMED",
    ]);
    let rows: Vec<(&str, &LegacyRecord)> = stores
        .iter()
        .flat_map(|(n, _, r)| r.legacy.iter().map(move |l| (n.as_str(), l)))
        .collect();
    for (name, r) in rows {
        t.row(vec![
            name.to_string(),
            r.slot.clone(),
            r.version.to_string(),
            if known.contains(r.slot.as_str()) {
                "yes".into()
            } else {
                "NO".into()
            },
            shown(&r.record.provider),
            shown(&r.record.tenant),
            clients(&r.record),
        ]);
    }
    crate::out!("{}", t.render())?;
    crate::outln!(
        "\n{legacy} record{} without authentication (written before records were authenticated, or planted by someone who can write the store directory).",
        crate::app::report::plural(legacy)
    )?;
    crate::outln!(
        "Check that each one is yours: the slots and clients above are what rekey will act on (delete draining and retiring clients, rotate current ones)."
    )?;
    crate::outln!(
        "To authenticate exactly these records, run: rekey store upgrade -c {} --accept {fingerprint}",
        args.config.display()
    )?;
    Ok(exit::ATTENTION)
}
