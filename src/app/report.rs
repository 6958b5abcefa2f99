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
            r.provider.to_string(),
            r.tenant.to_string(),
            r.action.to_string(),
            r.reason().to_string(),
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

/// The version of the `--output json` document (docs/src/operating.md, "Machine-readable
/// output"; its JSON Schema is docs/schema/report.schema.json). Raised when a field changes
/// meaning or goes away; new fields do not raise it.
pub const FORMAT_VERSION: u32 = 1;

/// What every command prints with `--output json`: one JSON document on one line.
#[derive(Serialize)]
pub struct Document<'a, T: Serialize> {
    pub format_version: u32,
    /// `plan`, `apply`, `status`, `verify`, `check`, `rollback` or `run`.
    pub command: &'static str,
    pub run_id: uuid::Uuid,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    pub summary: Summary,
    /// One row per slot (per backend and provider for `check`).
    pub rows: &'a [T],
}

/// The counts of a document, those that apply to its command.
#[derive(Serialize, Default, Debug, Clone, Copy)]
pub struct Summary {
    /// Rows in the document.
    pub total: usize,
    /// `apply`, `rollback`: slots something was done to; `plan`: slots something would be done to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unchanged: Option<usize>,
    /// `apply`, `rollback`, `verify`, `check`: rows that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<usize>,
    /// `apply`: slots another run held; `plan`: slots another run holds now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<usize>,
    /// `status`: slots that need someone (overdue, missing, interrupted, failed, tampered, held
    /// past their drain timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention: Option<usize>,
}

impl Summary {
    /// For `apply` and `rollback`.
    pub fn of_outcomes(outcomes: &[SlotOutcome]) -> Summary {
        let count = |k| outcomes.iter().filter(|o| o.result == k).count();
        let changed = outcomes.iter().filter(|o| !o.actions.is_empty()).count();
        Summary {
            total: outcomes.len(),
            changed: Some(changed),
            unchanged: Some(outcomes.len() - changed),
            failed: Some(count(OutcomeKind::Failed)),
            skipped: Some(count(OutcomeKind::Skipped)),
            attention: None,
        }
    }

    /// For `verify` and `check`: rows, and those that failed.
    pub fn of_failures(total: usize, failed: usize) -> Summary {
        Summary {
            total,
            failed: Some(failed),
            ..Summary::default()
        }
    }

    /// For `plan`.
    pub fn of_plan(rows: &[PlanRow]) -> Summary {
        let changed = rows.iter().filter(|r| r.decision.step.is_some()).count();
        Summary {
            total: rows.len(),
            changed: Some(changed),
            unchanged: Some(rows.len() - changed),
            skipped: Some(rows.iter().filter(|r| r.decision.locked).count()),
            ..Summary::default()
        }
    }
}

/// Prints `rows` as the command's JSON document, on stdout ([`crate::app::output::write_json`]).
pub fn print_document<T: Serialize>(
    command: &'static str,
    run_id: uuid::Uuid,
    started_at: chrono::DateTime<chrono::Utc>,
    summary: Summary,
    rows: &[T],
) -> crate::error::Result<()> {
    crate::app::output::write_json(&Document {
        format_version: FORMAT_VERSION,
        command,
        run_id,
        started_at,
        finished_at: chrono::Utc::now(),
        summary,
        rows,
    })
}
