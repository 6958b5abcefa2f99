//! `rekey run`: the long-running scheduler. Each fire time of the [`Schedule`] runs one cycle:
//! a fresh engine over a freshly read inventory, then `apply`, then metrics, audit and
//! notifications as after `rekey apply`. Per-slot decisions still come from max age, so a
//! frequent schedule only reads.
//!
//! SIGTERM or SIGINT: while sleeping, exit at once; during a cycle, start no new slot, let the
//! slots in flight finish (each ends by releasing its lease), then exit 0.

use crate::app::commands::{self as app, exit};
use crate::cli::ScheduleArgs;
use crate::error::{Error, Result};
use crate::observe::{Outputs, metrics};
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
    {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let signal = wait_for_signal().await;
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
        tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving /metrics");
        tokio::spawn(serve_metrics(listener));
    }
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
        let code = cycle(args, &mut outputs, &stop, false).await?;
        tracing::info!(exit_code = code, "cycle finished");
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
    let clock: Arc<dyn crate::clock::Clock> = Arc::from(crate::clock::from_env());
    let cycle_started = clock.now();
    let result = app::observed_apply_with(&args.run, clock, outputs, |engine| {
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
                        print!("{}", crate::app::report::apply_table(&outcomes))
                    }
                    crate::cli::OutputFormat::Json => {
                        print!("{}", crate::app::report::json(&outcomes))
                    }
                }
            } else {
                tracing::info!(summary = %crate::app::report::summary_line(&outcomes), "cycle report");
            }
            Ok(app::apply_exit_code(&outcomes))
        }
        Err(e) if once => Err(e),
        Err(e) => {
            tracing::error!(error = %crate::error::chain(&e), "cycle failed");
            Ok(app::exit_code_for(&e))
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

/// A minimal HTTP/1.1 responder: `GET /metrics` gets the exposition, anything else 404.
async fn serve_metrics(listener: tokio::net::TcpListener) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                match tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut chunk))
                    .await
                {
                    Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
            }
            let head = String::from_utf8_lossy(&buf);
            let (status, ctype, body) = if head.starts_with("GET /metrics ") {
                (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics::global().encode(),
                )
            } else {
                (
                    "404 Not Found",
                    "text/plain",
                    "not found; try /metrics\n".to_string(),
                )
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}
