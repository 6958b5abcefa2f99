//! `rekey check`: every backend's `check()` and every provider's bootstrap token exchange;
//! changes nothing. A diagnostic is wanted now, so it is not run like a rotation:
//!
//! - Providers and backends are checked at once, up to `[settings] concurrency`
//!   at a time: 50 providers behind one firewall take as long as one.
//! - Each provider gets a short retry budget ([`CHECK_RETRY`], about 1 s of backoff), not the
//!   rotation's (8 attempts, about 40 s), which exists so a rotation half done survives a blip.
//!   A refused connection is known at once; a blip still gets a second try.
//! - The whole check ends by [`CHECK_DEADLINE`]: whatever has not answered by then is reported
//!   as a timeout (exit 4), named like every other row.

use crate::app::report::{self, Table};
use crate::app::setup::clock;
use crate::cli::{CheckArgs, OutputFormat};
use crate::config;
use crate::engine::{Engine, Options};
use crate::error::exit;
use crate::error::{Error, ErrorKind, Result};
use crate::layer::RetryPolicy;
use futures_util::StreamExt;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A provider's retries during a check: 3 attempts, at most about 1 s of backoff in all.
pub const CHECK_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_delay: Duration::from_millis(200),
    max_delay: Duration::from_secs(2),
};

/// The whole check's time limit (docs/src/operating.md, "Commands").
pub const CHECK_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Serialize, Clone, Debug)]
pub struct CheckRow {
    /// `backend` or `provider`.
    pub kind: &'static str,
    pub name: String,
    pub ok: bool,
    /// The error kind when not ok (`unavailable`, `forbidden`, ...).
    pub error_kind: Option<String>,
    pub detail: String,
}

type Probe<'a> = Pin<Box<dyn Future<Output = CheckRow> + Send + 'a>>;

/// The rows of a check: backends first, then providers, each in name order.
pub async fn check_rows(engine: &Engine) -> Vec<CheckRow> {
    let deadline = tokio::time::Instant::now() + CHECK_DEADLINE;
    let concurrency = engine.inventory.settings.concurrency.max(1);
    let mut probes: Vec<Probe<'_>> = Vec::new();
    for (name, backend) in &engine.backends {
        let probe = async move { backend.check().await };
        probes.push(Box::pin(bounded(
            "backend",
            name,
            deadline,
            probe,
            "reachable and writable",
        )));
    }
    for name in engine.providers.keys() {
        probes.push(Box::pin(bounded(
            "provider",
            name,
            deadline,
            provider_probe(engine, name),
            "bootstrap credential gets a token",
        )));
    }
    // `buffered` keeps the order the probes were listed in.
    futures_util::stream::iter(probes)
        .buffered(concurrency)
        .collect()
        .await
}

/// A provider's bootstrap token exchange, through the usual layers but with [`CHECK_RETRY`].
async fn provider_probe(engine: &Engine, name: &str) -> Result<()> {
    let entry = &engine.providers[name];
    let pair = entry.bootstrap.get()?;
    let cfg = &engine.inventory.providers[name];
    let provider = crate::layer::stack_provider(
        cfg.open(entry.bootstrap.clone(), engine.budget_store(name))?,
        name,
        CHECK_RETRY,
    );
    let tenant = cfg.tenant.clone().unwrap_or_default();
    provider.verify(&tenant, &pair).await
}

/// `probe` as a row, or a timeout row once `deadline` has passed.
async fn bounded(
    kind: &'static str,
    name: &str,
    deadline: tokio::time::Instant,
    probe: impl Future<Output = Result<()>>,
    ok_detail: &str,
) -> CheckRow {
    let r = match tokio::time::timeout_at(deadline, probe).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "no answer within the check's time limit ({} s)",
                CHECK_DEADLINE.as_secs()
            ),
        )),
    };
    check_row(kind, name, r, ok_detail)
}

fn check_row(kind: &'static str, name: &str, r: Result<()>, ok_detail: &str) -> CheckRow {
    match r {
        Ok(()) => CheckRow {
            kind,
            name: name.to_string(),
            ok: true,
            error_kind: None,
            detail: ok_detail.to_string(),
        },
        Err(e) => CheckRow {
            kind,
            name: name.to_string(),
            ok: false,
            error_kind: Some(e.kind().to_string()),
            detail: crate::error::chain(&e),
        },
    }
}

pub async fn run(args: &CheckArgs) -> Result<u8> {
    let started = chrono::Utc::now();
    let inventory = config::load(&args.config)?;
    let engine = Engine::build(inventory, clock(), Options::default()).await?;
    let rows = check_rows(&engine).await;
    match args.output {
        OutputFormat::Table => {
            let mut t = Table::new(vec!["KIND", "NAME", "RESULT", "DETAIL"]);
            for r in &rows {
                t.row(vec![
                    r.kind.into(),
                    r.name.clone(),
                    if r.ok { "ok".into() } else { "FAILED".into() },
                    r.detail.clone(),
                ]);
            }
            crate::out!("{}", t.render())?;
        }
        OutputFormat::Json => {
            let failed = rows.iter().filter(|r| !r.ok).count();
            let summary = report::Summary::of_failures(rows.len(), failed);
            report::print_document("check", engine.run_id, started, summary, &rows)?
        }
    }
    let unreachable = rows.iter().any(|r| {
        matches!(
            r.error_kind.as_deref(),
            Some("unavailable") | Some("timeout") | Some("rate_limited")
        )
    });
    Ok(if unreachable {
        exit::UNREACHABLE
    } else if rows.iter().any(|r| !r.ok) {
        exit::ATTENTION
    } else {
        exit::OK
    })
}
