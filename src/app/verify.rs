//! `rekey verify`: each slot's current pair proven at its provider (a token exchange), without
//! changing anything, as a table or JSON.

use crate::app::report::{self, Table};
use crate::app::setup::{clock, engine};
use crate::cli::{OutputFormat, RunArgs};
use crate::engine::Engine;
use crate::error::Result;
use crate::error::exit;
use serde::Serialize;

#[derive(Serialize, Clone, Debug)]
pub struct VerifyRow {
    pub slot: String,
    pub client_id: String,
    pub generation: u64,
    pub ok: bool,
    pub detail: String,
}

pub async fn verify_rows(engine: &Engine) -> Result<Vec<VerifyRow>> {
    let mut rows = Vec::new();
    for t in engine.targets().await? {
        let Some(stored) = engine.backends[&t.backend]
            .read(&t.name)
            .await
            .map_err(|e| e.context(format!("slot {}", t.name)))?
        else {
            continue;
        };
        let Some(current) = stored.record.current.as_ref() else {
            continue;
        };
        let Some(entry) = engine.providers.get(&stored.record.provider) else {
            rows.push(VerifyRow {
                slot: t.name.clone(),
                client_id: current.client_id.clone(),
                generation: current.generation,
                ok: false,
                detail: format!(
                    "provider {} is not in the inventory",
                    stored.record.provider
                ),
            });
            continue;
        };
        // The pair consumers read, which may be ahead of the record (a promotion cut short).
        let view = match engine.backends[&t.backend]
            .consumer_view(&t.name, &stored.record)
            .await
        {
            Ok(Some(view)) => view,
            Ok(None) => {
                rows.push(VerifyRow {
                    slot: t.name.clone(),
                    client_id: current.client_id.clone(),
                    generation: current.generation,
                    ok: false,
                    detail: format!(
                        "consumers read no pair from backend {} although the record holds g{}: run `rekey apply`",
                        t.backend, current.generation
                    ),
                });
                continue;
            }
            Err(e) => {
                rows.push(VerifyRow {
                    slot: t.name.clone(),
                    client_id: current.client_id.clone(),
                    generation: current.generation,
                    ok: false,
                    detail: format!(
                        "cannot read what consumers read: {}",
                        crate::error::chain(&e)
                    ),
                });
                continue;
            }
        };
        // A draining pair is never used by rekey, not even to test it: the platform's record
        // of its use decides when it may be deleted (docs/src/protocol.md, "Draining").
        if let Some(old) = stored
            .record
            .draining
            .iter()
            .find(|d| d.credential.pair() == view.pair)
        {
            rows.push(VerifyRow {
                slot: t.name.clone(),
                client_id: view.pair.client_id.clone(),
                generation: view.generation,
                ok: false,
                detail: format!(
                    "consumers read g{}, a previous generation that is draining (not tested: rekey never uses a draining pair); the current pair is g{} ({}): run `rekey apply`",
                    old.credential.generation, current.generation, current.client_id
                ),
            });
            continue;
        }
        let result = entry
            .provider
            .verify(&stored.record.tenant, &view.pair)
            .await;
        let behind = view.pair != current.pair();
        rows.push(VerifyRow {
            slot: t.name.clone(),
            client_id: view.pair.client_id.clone(),
            generation: view.generation,
            ok: result.is_ok() && !behind,
            detail: match result {
                Ok(()) if behind => format!(
                    "token exchange ok, but the record's current pair is g{} ({}): run `rekey apply` to finish the promotion",
                    current.generation, current.client_id
                ),
                Ok(()) => "token exchange ok".into(),
                Err(e) => crate::error::chain(&e),
            },
        });
    }
    Ok(rows)
}

pub fn verify_table(rows: &[VerifyRow]) -> String {
    let mut t = Table::new(vec!["SLOT", "GEN", "CLIENT_ID", "RESULT", "DETAIL"]);
    for r in rows {
        t.row(vec![
            r.slot.clone(),
            format!("g{}", r.generation),
            r.client_id.clone(),
            if r.ok { "ok".into() } else { "FAILED".into() },
            r.detail.clone(),
        ]);
    }
    let bad = rows.iter().filter(|r| !r.ok).count();
    format!(
        "{}\n{} pair{} checked, {bad} failed\n",
        t.render(),
        rows.len(),
        report::plural(rows.len())
    )
}

pub async fn run(args: &RunArgs) -> Result<u8> {
    let started = chrono::Utc::now();
    let engine = engine(args, clock()).await?;
    let rows = verify_rows(&engine).await?;
    match args.output {
        OutputFormat::Table => crate::out!("{}", verify_table(&rows))?,
        OutputFormat::Json => {
            let failed = rows.iter().filter(|r| !r.ok).count();
            let summary = report::Summary::of_failures(rows.len(), failed);
            report::print_document("verify", engine.run_id, started, summary, &rows)?
        }
    }
    Ok(if rows.iter().all(|r| r.ok) {
        exit::OK
    } else {
        exit::ATTENTION
    })
}
