//! `rekey run`: the long-running scheduler. Each fire time of the [`Schedule`] runs one cycle:
//! a fresh engine over a freshly read inventory, then `apply`, then metrics, audit and
//! notifications as after `rekey apply`. Per-slot decisions still come from max age, so a
//! frequent schedule only reads.
//!
//! SIGTERM or SIGINT: while sleeping, exit at once; during a cycle, start no new slot, let the
//! slots in flight finish (each ends by releasing its lease), then exit 0. `/readyz` answers
//! 503 from the signal on.
//!
//! Each cycle ends with one info line (`cycle finished`: exit code, summary, duration; or
//! `cycle failed` with the error), shown at the default log level, like `next run`.

use crate::app::commands::{self as app, exit};
use crate::cli::ScheduleArgs;
use crate::error::{Error, Result};
use crate::observe::Outputs;
use crate::observe::serve::Health;
use crate::schedule::Schedule;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub async fn run(args: &ScheduleArgs) -> Result<u8> {
    let mut outputs = Outputs::open(&args.run.obs.options())?;
    outputs.serving = args.metrics_listen.is_some();
    // A scheduler lives on: its counters mean something. `--once` is a batch run.
    outputs.batch = args.once;
    let inventory = crate::config::load(&args.run.config)?;
    let s = &inventory.settings;
    let schedule = Schedule::parse(
        args.schedule.as_deref().unwrap_or(&s.schedule),
        args.timezone.as_deref().unwrap_or(&s.timezone),
        args.jitter.unwrap_or(s.jitter),
    )?;
    drop(inventory);
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut stopped) = tokio::sync::watch::channel(false);
    let health = Arc::new(Health::default());
    {
        let stop = Arc::clone(&stop);
        let health = Arc::clone(&health);
        tokio::spawn(async move {
            let signal = wait_for_signal().await;
            health.set_ready(false);
            tracing::info!(
                signal,
                "shutting down: no new slot starts; slots in flight finish"
            );
            stop.store(true, Ordering::SeqCst);
            let _ = tx.send(true);
        });
    }
    if let Some(addr) = &args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::config(format!("--metrics-listen {addr}: {e}")))?;
        tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving /metrics, /healthz and /readyz");
        tokio::spawn(crate::observe::serve::serve(listener, Arc::clone(&health)));
    }
    health.set_ready(true);
    if args.once {
        return cycle(args, &mut outputs, &stop, true).await;
    }
    loop {
        let next = schedule.next_after(chrono::Utc::now())?;
        let delay = schedule.jitter_delay();
        tracing::info!(
            next_fire = %next.to_rfc3339(),
            jitter_ms = delay.as_millis() as u64,
            schedule = %schedule.expr,
            timezone = %schedule.tz,
            "next run"
        );
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default() + delay;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.wait_for(|s| *s) => return Ok(exit::OK),
        }
        cycle(args, &mut outputs, &stop, false).await?;
        if stop.load(Ordering::SeqCst) {
            return Ok(exit::OK);
        }
    }
}

/// One cycle. Problems of the cycle (bad inventory, unreachable provider) are logged and the
/// scheduler goes on; with `--once` they end the command like `rekey apply`.
async fn cycle(
    args: &ScheduleArgs,
    outputs: &mut Outputs,
    stop: &Arc<AtomicBool>,
    once: bool,
) -> Result<u8> {
    let started = std::time::Instant::now();
    let clock: Arc<dyn crate::clock::Clock> = Arc::from(crate::clock::from_env());
    let cycle_started = clock.now();
    let mut run_id = uuid::Uuid::nil();
    let result = app::observed_apply_with(&args.run, clock, outputs, |engine| {
        run_id = engine.run_id;
        // A cycle is a run of its own: `--force` rotates what was issued before this cycle.
        // (A one-shot command counts from its process's start; a scheduler started days ago
        // would otherwise force only its first cycle.)
        engine.started = cycle_started;
        engine.stop = Arc::clone(stop);
    })
    .await;
    match result {
        Ok(outcomes) => {
            if once {
                match args.run.output {
                    crate::cli::OutputFormat::Table => {
                        crate::out!("{}", crate::app::report::apply_table(&outcomes))?
                    }
                    crate::cli::OutputFormat::Json => crate::app::report::print_document(
                        "run",
                        run_id,
                        cycle_started,
                        crate::app::report::Summary::of_outcomes(&outcomes),
                        &outcomes,
                    )?,
                }
            }
            let code = app::apply_exit_code(&outcomes);
            // One line per cycle at the default level: what it did, how it ended, how long.
            tracing::info!(
                exit_code = code,
                summary = %crate::app::report::summary_line(&outcomes),
                duration_ms = started.elapsed().as_millis() as u64,
                "cycle finished"
            );
            Ok(code)
        }
        Err(e) if once => Err(e),
        Err(e) => {
            let code = app::exit_code_for(&e);
            tracing::error!(
                exit_code = code,
                error = %crate::error::chain(&e),
                duration_ms = started.elapsed().as_millis() as u64,
                "cycle failed"
            );
            Ok(code)
        }
    }
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        unreachable!()
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
