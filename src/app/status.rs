//! `rekey status`: every slot's state, from the store alone (no provider call), as a table or
//! JSON, and the rows the metrics and the demo use (docs/src/operating.md, "Status").

use crate::app::report::{self, Table};
use crate::app::setup::{clock, engine};
use crate::cli::{OutputFormat, RunArgs};
use crate::engine::Engine;
use crate::error::exit;
use crate::error::{ErrorKind, Result};
use crate::plan::{fmt_age, is_locked};

pub use crate::observe::StatusRow;

pub async fn status_rows(engine: &Engine) -> Result<Vec<StatusRow>> {
    let now = engine.clock.now();
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let alive = move |l: &crate::record::Lease| crate::engine::lease_holder_alive(l, &host);
    let ctx = crate::plan::Context {
        now,
        force_before: None,
        run_id: engine.run_id,
        holder_alive: &alive,
    };
    let mut rows = Vec::new();
    for t in engine.targets().await? {
        let stored = match engine.backends[&t.backend].read(&t.name).await {
            // Nothing in a record that fails its authentication is shown as fact.
            Err(e) if e.kind() == ErrorKind::Tampered => {
                let (provider, tenant) = crate::engine::describe(&t, None);
                rows.push(StatusRow {
                    slot: t.name.clone(),
                    provider: provider.to_string(),
                    tenant: tenant.to_string(),
                    state: "tampered".into(),
                    generation: None,
                    age_seconds: None,
                    draining: 0,
                    last_result: Some(e.to_string()),
                    attention: true,
                    held: Vec::new(),
                });
                continue;
            }
            r => r.map_err(|e| e.context(format!("slot {}", t.name)))?,
        };
        let rec = stored.as_ref().map(|v| &v.record);
        let (provider, tenant) = crate::engine::describe(&t, rec);
        let current = rec.and_then(|r| r.current.as_ref());
        let age = current.map(|c| now - c.created_at);
        let last_failed = rec.and_then(|r| r.last.as_ref()).is_some_and(|l| !l.ok);
        let state = match (&t.config, rec) {
            (None, Some(r)) if r.retiring.is_some() => "retiring",
            (None, _) => "orphaned",
            (Some(c), None) if c.retired => "retired",
            (Some(_), None) => "missing",
            (Some(_), Some(r)) if r.retiring.is_some() => "retiring",
            (Some(_), Some(r)) if r.op.is_some() && is_locked(r.lease.as_ref(), &ctx) => {
                "in-progress"
            }
            (Some(_), Some(r)) if r.op.is_some() => "interrupted",
            (Some(_), Some(_)) if last_failed => "failed",
            (Some(c), Some(_)) if current.is_none() && !c.retired => "missing",
            (Some(c), Some(_))
                if age.is_some_and(|a| a.to_std().unwrap_or_default() >= c.max_age) =>
            {
                "overdue"
            }
            (Some(c), Some(_)) if c.retired => "retiring",
            (Some(_), Some(r)) if r.draining.iter().any(|d| d.hold.is_some()) => "draining-in-use",
            _ => "ok",
        };
        let held: Vec<String> = rec
            .into_iter()
            .flat_map(|r| &r.draining)
            .filter_map(|d| crate::plan::hold_text(d, now))
            .collect();
        // Held past its drain timeout: the old credential lives on until someone moves its
        // consumers (or sets on_drain_timeout = "delete").
        let drain_overdue = rec.is_some_and(|r| {
            r.draining
                .iter()
                .any(|d| d.hold.as_ref().is_some_and(|h| h.overdue))
        });
        let attention =
            matches!(state, "overdue" | "missing" | "interrupted" | "failed") || drain_overdue;
        rows.push(StatusRow {
            slot: t.name.clone(),
            provider: provider.to_string(),
            tenant: tenant.to_string(),
            state: state.to_string(),
            generation: current.map(|c| c.generation),
            age_seconds: age.map(|a| a.num_seconds()),
            draining: rec.map(|r| r.draining.len()).unwrap_or(0),
            last_result: rec.and_then(|r| r.last.as_ref()).map(|l| l.message.clone()),
            attention,
            held,
        });
    }
    Ok(rows)
}

pub fn status_table(rows: &[StatusRow]) -> String {
    let mut t = Table::new(vec![
        "SLOT",
        "PROVIDER",
        "TENANT",
        "STATE",
        "GEN",
        "AGE",
        "DRAINING",
        "LAST RESULT",
    ]);
    for r in rows {
        t.row(vec![
            r.slot.clone(),
            r.provider.clone(),
            r.tenant.clone(),
            if r.attention {
                r.state.to_uppercase()
            } else {
                r.state.clone()
            },
            r.generation
                .map(|g| format!("g{g}"))
                .unwrap_or_else(|| "-".into()),
            r.age_seconds
                .map(|s| fmt_age(chrono::Duration::seconds(s)))
                .unwrap_or_else(|| "-".into()),
            r.draining.to_string(),
            r.last_result.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let n = rows.iter().filter(|r| r.attention).count();
    let held: String = rows
        .iter()
        .flat_map(|r| r.held.iter().map(move |h| format!("{}: {h}\n", r.slot)))
        .collect();
    format!(
        "{}\n{held}{} slot{}, {n} need{} attention\n",
        t.render(),
        rows.len(),
        report::plural(rows.len()),
        if n == 1 { "s" } else { "" }
    )
}

pub async fn run(args: &RunArgs) -> Result<u8> {
    let started = chrono::Utc::now();
    let engine = engine(args, clock()).await?;
    let rows = status_rows(&engine).await?;
    match args.output {
        OutputFormat::Table => crate::out!("{}", crate::terminal::paint(&status_table(&rows)))?,
        OutputFormat::Json => {
            let summary = report::Summary {
                total: rows.len(),
                attention: Some(rows.iter().filter(|r| r.attention).count()),
                ..Default::default()
            };
            report::print_document("status", engine.run_id, started, summary, &rows)?
        }
    }
    Ok(if rows.iter().any(|r| r.attention) {
        exit::ATTENTION
    } else {
        exit::OK
    })
}
