//! The commands: each turns parsed arguments into engine calls and a report, and returns the
//! process exit code. `main` parses, sets up logging, hands the command to its module (here,
//! `scheduler`, `demo`, `store` or `emulator`) and prints the one error.

use crate::app::report::{self, Table};
use crate::cli::{GetArgs, GetFormat, OutputFormat, RunArgs};
use crate::clock::Clock;
use crate::config;
use crate::engine::{Engine, Options, OutcomeKind};
use crate::error::{Error, ErrorKind, Result};
use crate::plan::{fmt_age, is_locked};
use serde::Serialize;
use std::sync::Arc;

/// The documented exit codes (docs/src/operating.md, "Commands").
pub use crate::error::exit;

/// The exit code for an error that ended a command.
pub fn exit_code_for(err: &Error) -> u8 {
    match err.kind() {
        ErrorKind::Config | ErrorKind::Invalid => exit::USAGE,
        ErrorKind::Locked => exit::LOCKED,
        ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::RateLimited => exit::UNREACHABLE,
        _ => exit::ATTENTION,
    }
}

/// Loads the inventory and builds the engine (no network yet).
pub async fn engine(args: &RunArgs, clock: Arc<dyn Clock>) -> Result<Arc<Engine>> {
    let inventory = config::load(&args.config)?;
    Ok(Arc::new(
        Engine::build(inventory, clock, options(args)?).await?,
    ))
}

/// The engine options a command's arguments ask for, the shard included (from `--shard`, else
/// from `JOB_COMPLETION_INDEX` / `REKEY_SHARD_COUNT`).
pub fn options(args: &RunArgs) -> Result<Options> {
    let shard = match args.shard {
        Some(s) => Some(s),
        None => crate::shard::Shard::from_env(|k| std::env::var(k).ok())?,
    };
    if let Some(s) = shard {
        tracing::info!(shard = %s, "working on shard {s} of the inventory");
    }
    Ok(Options {
        force: args.force,
        allow_mass_retire: args.allow_mass_retire,
        only: args.only.clone(),
        concurrency: args.concurrency,
        shard,
    })
}

/// [`engine`], with its events going to `outputs` (metrics, audit trail, notifications).
pub async fn observed_engine(
    args: &RunArgs,
    clock: Arc<dyn Clock>,
    outputs: &crate::observe::Outputs,
) -> Result<Arc<Engine>> {
    let inventory = config::load(&args.config)?;
    let mut engine = Engine::build(inventory, clock, options(args)?).await?;
    engine.events = outputs.observer.clone();
    Ok(Arc::new(engine))
}

pub(crate) fn clock() -> Arc<dyn Clock> {
    Arc::from(crate::clock::from_env())
}

pub async fn plan(args: &RunArgs) -> Result<u8> {
    let started = chrono::Utc::now();
    let outputs = crate::observe::Outputs::open(&Default::default())?;
    let engine = observed_engine(args, clock(), &outputs).await?;
    let bar = progress_bar(args, &engine, &outputs, "plan ").await?;
    let rows = engine.plan().await;
    if let Some(pb) = &bar {
        pb.finish_and_clear();
    }
    let rows = rows?;
    let summary = report::Summary::of_plan(&rows);
    match args.output {
        OutputFormat::Table => {
            crate::out!("{}", crate::terminal::paint(&report::plan_table(&rows)))?
        }
        OutputFormat::Json => {
            report::print_document("plan", engine.run_id, started, summary, &rows)?
        }
    }
    Ok(match summary.changed {
        Some(n) if n > 0 && args.detailed_exitcode => exit::PENDING,
        _ => exit::OK,
    })
}

pub async fn apply(args: &RunArgs) -> Result<u8> {
    let started = chrono::Utc::now();
    let mut outputs = crate::observe::Outputs::open(&args.obs.options())?;
    let mut run_id = uuid::Uuid::nil();
    let result = observed_apply_with(args, clock(), &mut outputs, |e| run_id = e.run_id).await;
    let outcomes = result?;
    match args.output {
        OutputFormat::Table => crate::out!(
            "{}",
            crate::terminal::paint(&report::apply_table(&outcomes))
        )?,
        OutputFormat::Json => report::print_document(
            "apply",
            run_id,
            started,
            report::Summary::of_outcomes(&outcomes),
            &outcomes,
        )?,
    }
    Ok(apply_exit_code(&outcomes))
}

/// One observed run of `apply` (`rekey apply`, each cycle of `rekey run`): the engine built
/// over a freshly read inventory, its slots worked, then metrics, audit and notifications.
/// A run that fails as a whole (bad inventory, a provider or backend unreachable) still
/// reports: the run-level metrics say it failed, the store's gauges come from the backend
/// when it can be read, and the webhook gets a `run_failed` event (docs/src/operating.md,
/// "Metrics").
pub async fn observed_apply(
    args: &RunArgs,
    clock: Arc<dyn Clock>,
    outputs: &mut crate::observe::Outputs,
) -> Result<Vec<crate::engine::SlotOutcome>> {
    observed_apply_with(args, clock, outputs, |_| {}).await
}

/// [`observed_apply`], with `setup` applied to the engine before it runs (the scheduler's
/// stop flag and cycle start).
pub async fn observed_apply_with(
    args: &RunArgs,
    clock: Arc<dyn Clock>,
    outputs: &mut crate::observe::Outputs,
    setup: impl FnOnce(&mut Engine),
) -> Result<Vec<crate::engine::SlotOutcome>> {
    let now = clock.now();
    let failed = |e: &Error, max_ages| crate::observe::RunFailure {
        now,
        run_id: uuid::Uuid::now_v7(),
        exit_code: exit_code_for(e),
        error_kind: e.kind().as_str(),
        detail: crate::error::chain(e),
        max_ages,
    };
    let none = None::<std::future::Ready<Result<Vec<StatusRow>>>>;
    if let Ok(s) = crate::shard::Shard::from_env(|k| std::env::var(k).ok()) {
        outputs.shard = args.shard.or(s);
    }
    let inventory = match config::load(&args.config).map_err(Error::from) {
        Ok(i) => i,
        Err(e) => {
            outputs
                .after_failed_run(&failed(&e, Default::default()), none)
                .await;
            return Err(e);
        }
    };
    let max_ages: std::collections::BTreeMap<String, std::time::Duration> = inventory
        .slots
        .iter()
        .map(|s| (s.name.clone(), s.max_age))
        .collect();
    let built = match options(args) {
        Ok(o) => Engine::build(inventory, clock, o).await,
        Err(e) => Err(e),
    };
    let mut engine = match built {
        Ok(e) => e,
        Err(e) => {
            outputs.after_failed_run(&failed(&e, max_ages), none).await;
            return Err(e);
        }
    };
    engine.events = outputs.observer.clone();
    setup(&mut engine);
    outputs.begin(
        engine.providers.keys().map(String::as_str),
        engine.backends.keys().map(String::as_str),
    );
    let engine = Arc::new(engine);
    let bar = progress_bar(args, &engine, outputs, "apply").await;
    let result = engine.apply().await;
    if let Ok(Some(pb)) = &bar {
        pb.finish_and_clear();
    }
    match result {
        Ok(outcomes) => {
            outputs
                .after_run(
                    &engine.run_end(&outcomes),
                    apply_exit_code(&outcomes),
                    status_rows(&engine),
                )
                .await;
            Ok(outcomes)
        }
        Err(e) => {
            let mut run = failed(&e, max_ages);
            run.now = engine.clock.now();
            run.run_id = engine.run_id;
            outputs
                .after_failed_run(&run, Some(status_rows(&engine)))
                .await;
            Err(e)
        }
    }
}

/// A progress bar over the run's slots, advanced by the engine's events; only for table
/// output on a terminal.
async fn progress_bar(
    args: &RunArgs,
    engine: &Engine,
    outputs: &crate::observe::Outputs,
    verb: &str,
) -> Result<Option<indicatif::ProgressBar>> {
    if args.output != OutputFormat::Table {
        return Ok(None);
    }
    let Some(pb) = crate::terminal::progress(0, verb) else {
        return Ok(None);
    };
    pb.set_length(engine.targets().await?.len() as u64);
    let _ = outputs.observer.progress.set(pb.clone());
    Ok(Some(pb))
}

pub fn apply_exit_code(outcomes: &[crate::engine::SlotOutcome]) -> u8 {
    if outcomes.iter().any(|o| o.result == OutcomeKind::Failed) {
        exit::ATTENTION
    } else if outcomes.iter().any(|o| o.result == OutcomeKind::Skipped) {
        exit::LOCKED
    } else {
        exit::OK
    }
}

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
                    provider,
                    tenant,
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
            provider,
            tenant,
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

pub async fn status(args: &RunArgs) -> Result<u8> {
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

pub async fn verify(args: &RunArgs) -> Result<u8> {
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

/// `rekey rollback SLOT`: the previous credential becomes current again (audited).
pub async fn rollback(args: &crate::cli::RollbackArgs) -> Result<u8> {
    let started = chrono::Utc::now();
    let outputs = crate::observe::Outputs::open(&args.obs.options())?;
    let inventory = config::load(&args.config)?;
    let mut engine = Engine::build(inventory, clock(), Options::default()).await?;
    engine.events = outputs.observer.clone();
    let outcome = engine.rollback(&args.slot, args.hold).await?;
    let outcomes = vec![outcome];
    match args.output {
        OutputFormat::Table => crate::out!("{}", report::apply_table(&outcomes))?,
        OutputFormat::Json => report::print_document(
            "rollback",
            engine.run_id,
            started,
            report::Summary::of_outcomes(&outcomes),
            &outcomes,
        )?,
    }
    Ok(apply_exit_code(&outcomes))
}

/// A slot of the inventory at `config` and its current credential, read from its backend:
/// what `get` prints and `exec` hands to a command.
pub async fn current_credential(
    config: &std::path::Path,
    slot: &str,
) -> Result<(config::SlotConfig, crate::record::StoredCredential)> {
    let inventory = config::load(config)?;
    let slot = inventory
        .slots
        .iter()
        .find(|s| s.name == slot)
        .cloned()
        .ok_or_else(|| Error::config(format!("slot {slot} is not in {}", config.display())))?;
    let backend = inventory.backends[&slot.backend].open()?;
    let stored = backend.read(&slot.name).await?;
    let current = stored.and_then(|v| v.record.current).ok_or_else(|| {
        Error::not_found(format!(
            "slot {} has no current credential yet (run `rekey apply`)",
            slot.name
        ))
    })?;
    Ok(((*slot).clone(), current))
}

/// `rekey get`: the one place a secret is printed, because the operator asked for it.
pub async fn get(args: &GetArgs) -> Result<u8> {
    let (slot, current) = current_credential(&args.config, &args.slot).await?;
    let current = &current;
    match args.format {
        GetFormat::Env => {
            // Checked before anything is printed: all or nothing.
            env_safe(&slot.name, "CLIENT_ID", &current.client_id)?;
            env_safe(&slot.name, "CLIENT_SECRET", current.secret.expose())?;
            // One write: a failing stdout leaves no half of the pair behind unnoticed.
            crate::out!(
                "CLIENT_ID={}\nCLIENT_SECRET={}\n",
                current.client_id,
                current.secret.expose()
            )?;
        }
        GetFormat::Json => {
            let v = serde_json::json!({
                "slot": slot.name,
                "tenant": slot.tenant,
                "generation": current.generation,
                "client_id": current.client_id,
                "client_secret": current.secret.expose(),
                "rotated_at": current.created_at,
            });
            crate::outln!("{v}")?;
        }
    }
    Ok(exit::OK)
}

/// Whether `value` can be written as `KEY=value` and read back unchanged by all three readers of
/// env files: a shell's `source` (sh, bash), `docker --env-file` (no unquoting at all) and
/// systemd's `EnvironmentFile`. No quoting serves all three (docker would keep the quotes), so
/// a value outside this set is refused rather than written: ASCII letters, digits and
/// `-_.+/=:@%,^`. Provider-issued ids and secrets are in it (docs/src/operating.md, *Commands*). The error
/// names the slot and the field, never the value; `--format json` carries any value.
fn env_safe(slot: &str, field: &str, value: &str) -> Result<()> {
    const SAFE: &[u8] = b"-_.+/=:@%,^";
    match value
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || SAFE.contains(&b)))
    {
        None => Ok(()),
        Some(at) => Err(Error::malformed(format!(
            "slot {slot}: the stored {field} holds a character (at byte {}) that an env file \
             cannot carry safely (a shell would run or split it, docker --env-file or systemd \
             would read another value); nothing was printed. Use `rekey get --format json`, \
             or rotate the slot",
            at + 1
        ))),
    }
}
