//! Run reports: an aligned table for people, JSON for machines. Reports go to stdout, logs to
//! stderr. Nothing here ever holds a secret: rows carry ids and fingerprints only.

use crate::engine::{OutcomeKind, PlanRow, SlotOutcome};
use serde::Serialize;
use std::fmt::Write;

/// A plain text table with aligned columns.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: Vec<&'static str>) -> Self {
        Table {
            headers,
            rows: Vec::new(),
        }
    }

    /// Adds a row. Cells are escaped here (src/terminal.rs, `escape`): they may quote servers,
    /// plugins or the inventory.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| crate::terminal::escape(&c).into_owned())
                .collect(),
        );
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: Vec<&str>, out: &mut String| {
            let last = cells.len() - 1;
            for (i, c) in cells.iter().enumerate() {
                if i == last {
                    out.push_str(c);
                } else {
                    let _ = write!(out, "{:<w$}  ", c, w = widths[i]);
                }
            }
            out.push('\n');
        };
        line(self.headers.clone(), &mut out);
        for r in &self.rows {
            line(r.iter().map(String::as_str).collect(), &mut out);
        }
        out
    }
}

pub fn plan_table(rows: &[PlanRow]) -> String {
    let mut t = Table::new(vec!["SLOT", "PROVIDER", "TENANT", "ACTION", "WHY"]);
    for r in rows {
        t.row(vec![
            r.slot.clone(),
            r.provider.clone(),
            r.tenant.clone(),
            r.action.clone(),
            r.reason.clone(),
        ]);
    }
    let acting = rows.iter().filter(|r| r.action != "nothing").count();
    format!(
        "{}\n{} slot{}, {acting} to change\n",
        t.render(),
        rows.len(),
        plural(rows.len())
    )
}

pub fn apply_table(outcomes: &[SlotOutcome]) -> String {
    let mut t = Table::new(vec![
        "SLOT",
        "PROVIDER",
        "TENANT",
        "RESULT",
        "GEN",
        "CLIENT_ID",
        "SECRET",
        "DONE / DETAIL",
    ]);
    for o in outcomes {
        let done = if o.actions.is_empty() {
            o.detail.clone()
        } else {
            o.actions.join(", ")
        };
        let done = if o.result == OutcomeKind::Failed && !o.actions.is_empty() {
            format!("{done}; {}", o.detail)
        } else {
            done
        };
        t.row(vec![
            o.slot.clone(),
            o.provider.clone(),
            o.tenant.clone(),
            result_word(o.result).into(),
            o.generation
                .map(|g| format!("g{g}"))
                .unwrap_or_else(|| "-".into()),
            o.client_id.clone().unwrap_or_else(|| "-".into()),
            o.fingerprint
                .as_ref()
                .map(|f| format!("sha256:{f}"))
                .unwrap_or_else(|| "-".into()),
            done,
        ]);
    }
    format!("{}\n{}\n", t.render(), summary_line(outcomes))
}

pub fn summary_line(outcomes: &[SlotOutcome]) -> String {
    let count = |k| outcomes.iter().filter(|o| o.result == k).count();
    let changed = outcomes.iter().filter(|o| !o.actions.is_empty()).count();
    format!(
        "{} slot{}: {changed} changed, {} unchanged, {} failed, {} skipped (held by another run)",
        outcomes.len(),
        plural(outcomes.len()),
        outcomes.len() - changed - count(OutcomeKind::Failed).min(outcomes.len() - changed),
        count(OutcomeKind::Failed),
        count(OutcomeKind::Skipped)
    )
}

fn result_word(k: OutcomeKind) -> &'static str {
    match k {
        OutcomeKind::Ok => "ok",
        OutcomeKind::Failed => "FAILED",
        OutcomeKind::Skipped => "skipped",
    }
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("reports serialize") + "\n"
}
