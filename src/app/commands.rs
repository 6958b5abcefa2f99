//! The commands: each turns parsed arguments into engine calls and a report, and returns the
//! process exit code. `main` parses, sets up logging, hands the command to its module (here,
//! `scheduler`, `demo`, `store` or `emulator`) and prints the one error.

use crate::app::report;
use crate::app::setup::{clock, observed_engine, options};
use crate::app::status::status_rows;
use crate::cli::{GetArgs, GetFormat, OutputFormat, RunArgs};
use crate::clock::Clock;
use crate::config;
use crate::engine::{Engine, Options, OutcomeKind};
use crate::error::{Error, ErrorKind, Result};
use crate::observe::StatusRow;
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
