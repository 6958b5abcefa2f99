//! How a command gets its engine: the inventory loaded, the options its arguments ask for, the
//! clock, and the engine's events going to the command's outputs. Shared by every command
//! module, and below them all.

use crate::cli::RunArgs;
use crate::clock::Clock;
use crate::config;
use crate::engine::{Engine, Options};
use crate::error::Result;
use std::sync::Arc;

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

pub fn clock() -> Arc<dyn Clock> {
    Arc::from(crate::clock::from_env())
}
