//! What more than one backend does the same way: the checks of a slot name and of a record
//! before it is stored, and the checks their `[backends.NAME]` parsers share.

use crate::check::tree::{Entry, Kind, Table};
use crate::check::{Checker, is_valid_slot_name, join};
use crate::error::{Error, Result};
use crate::record::SlotRecord;

/// Refuses a name that is not a valid slot name, before it becomes a path or a secret name.
pub(crate) fn check_slot(backend: &str, slot: &str) -> Result<()> {
    if is_valid_slot_name(slot) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "backend {backend}: \"{slot}\" is not a valid slot name"
        )))
    }
}

/// Refuses to store `record` as `slot` unless it is rekey's record of that very slot.
pub(crate) fn check_record(slot: &str, record: &SlotRecord) -> Result<()> {
    if record.slot != slot || !record.is_managed() {
        return Err(Error::invalid(format!(
            "refusing to store a record for slot \"{}\" (managed by \"{}\") as slot \"{slot}\"",
            record.slot, record.managed_by
        )));
    }
    Ok(())
}

/// Both checks before a write, the record's refusal named by its backend.
pub(crate) fn check_write(backend: &str, slot: &str, record: &SlotRecord) -> Result<()> {
    check_slot(backend, slot)?;
    check_record(slot, record).map_err(|e| e.context(format!("backend {backend}")))
}

/// The string at `key` when `valid` accepts it; else `why(value)` is reported at its line.
pub(crate) fn valid_string<'a>(
    c: &mut Checker,
    t: &'a Table,
    path: &str,
    key: &str,
    valid: impl FnOnce(&str) -> bool,
    why: impl FnOnce(&str) -> String,
) -> Option<&'a str> {
    let (s, e) = c.string(t, path, key)?;
    if valid(s) {
        Some(s)
    } else {
        c.err(e.line, join(path, key), why(s));
        None
    }
}

/// Reports each of `items` (the strings `Checker::strings` read from `key`) that `valid`
/// refuses, as `key[i]` at that item's own line.
pub(crate) fn check_items(
    c: &mut Checker,
    t: &Table,
    path: &str,
    key: &str,
    items: &[String],
    valid: impl Fn(&str) -> bool,
    why: impl Fn(&str) -> String,
) {
    let Some(e) = t.get(key) else {
        return;
    };
    for (i, item) in items.iter().enumerate() {
        if !valid(item) {
            c.err(item_line(e, i), format!("{path}.{key}[{i}]"), why(item));
        }
    }
}

/// The line of the `i`th item of an array entry (the entry's own line otherwise).
fn item_line(e: &Entry, i: usize) -> usize {
    match &e.value.kind {
        Kind::Array(items) => items.get(i).map_or(e.line, |n| n.line),
        _ => e.line,
    }
}
