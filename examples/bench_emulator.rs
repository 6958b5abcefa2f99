//! Throughput of a running `rekey emulator` for rekey's hot path: token exchange followed by
//! `rotateClientSecret`, from N concurrent workers, for a bounded time, on loopback.
//!
//! ```text
//! export BENCH_SECRET=$(openssl rand -hex 24)
//! rekey emulator --bootstrap 11772:bench-admin:BENCH_SECRET &
//! cargo run --example bench_emulator -- --url http://127.0.0.1:8484 \
//!     --client-id bench-admin --secret-env BENCH_SECRET --workers 8 --seconds 10
//! ```
//!
//! Each worker creates its own client, then loops: get a token with the client's current
//! secret, rotate the secret (as the bootstrap admin), keep the new one. Every iteration thus
//! also proves the new secret works. The clients are deleted at the end.

use clap::Parser;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Emulator base URL (loopback).
    #[arg(long, default_value = "http://127.0.0.1:8484")]
    url: String,
    /// A Tenant Admin client of the emulator.
    #[arg(long)]
    client_id: String,
    /// Environment variable holding that client's secret.
    #[arg(long, default_value = "BENCH_SECRET")]
    secret_env: String,
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// How long to run (bounded: at most 120 s).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

const ROTATE: &str = "mutation rotateClientSecret($id: ID!, $secret: String) {
  rotateClientSecret(id: $id, secret: $secret) { clientSecret client { id } } }";
const CREATE: &str = "mutation createClient($name: String!, $roles: [ID!]) {
  createClient(name: $name, roles: $roles) { clientSecret client { id clientID } } }";
const DELETE: &str = "mutation deleteClient($id: ID!) { deleteClient(id: $id) { id } }";

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn token(http: &reqwest::Client, url: &str, id: &str, secret: &str) -> Res<String> {
    let r = http
        .post(format!("{url}/auth/api/v2/auth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?;
    if !r.status().is_success() {
        return Err(format!("token: HTTP {}", r.status()).into());
    }
    let v: Value = r.json().await?;
    Ok(v["access_token"]
        .as_str()
        .ok_or("token: no access_token")?
        .to_string())
}

async fn gql(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    vars: Value,
) -> Res<Value> {
    let r = http
        .post(format!("{url}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": vars}))
        .send()
        .await?;
    if !r.status().is_success() {
        return Err(format!("graphql: HTTP {}", r.status()).into());
    }
    let v: Value = r.json().await?;
    if let Some(e) = v.get("errors") {
        return Err(format!("graphql: {e}").into());
    }
    Ok(v["data"].clone())
}

#[derive(Default)]
struct WorkerStats {
    iterations: u64,
    errors: u64,
    token_time: Duration,
    rotate_time: Duration,
}

#[tokio::main]
async fn main() -> Res<()> {
    let args = Args::parse();
    let url = args.url.trim_end_matches('/').to_string();
    let secret = std::env::var(&args.secret_env)
        .map_err(|_| format!("environment variable {} is not set", args.secret_env))?;
    let seconds = args.seconds.min(120);
    let http = rekey::http::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(args.workers * 2)
        .build()?;
    let admin = token(&http, &url, &args.client_id, &secret).await?;
    let run = format!("{:016x}", rand::random::<u64>());

    let mut clients = Vec::new();
    for i in 0..args.workers {
        let d = gql(
            &http,
            &url,
            &admin,
            CREATE,
            json!({"name": format!("bench-{run}-{i}")}),
        )
        .await?;
        let nc = &d["createClient"];
        clients.push((
            nc["client"]["id"].as_str().unwrap_or_default().to_string(),
            nc["client"]["clientID"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            nc["clientSecret"].as_str().unwrap_or_default().to_string(),
        ));
    }

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (object_id, client_id, mut secret) in clients.clone() {
        let (http, url, admin) = (http.clone(), url.clone(), admin.clone());
        tasks.spawn(async move {
            let mut s = WorkerStats::default();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                if token(&http, &url, &client_id, &secret).await.is_err() {
                    s.errors += 1;
                    continue;
                }
                let t1 = Instant::now();
                match gql(&http, &url, &admin, ROTATE, json!({"id": object_id})).await {
                    Ok(d) => {
                        if let Some(new) = d["rotateClientSecret"]["clientSecret"].as_str() {
                            secret = new.to_string();
                        }
                        s.iterations += 1;
                        s.token_time += t1 - t0;
                        s.rotate_time += t1.elapsed();
                    }
                    Err(_) => s.errors += 1,
                }
            }
            s
        });
    }
    let mut total = WorkerStats::default();
    while let Some(r) = tasks.join_next().await {
        let s = r?;
        total.iterations += s.iterations;
        total.errors += s.errors;
        total.token_time += s.token_time;
        total.rotate_time += s.rotate_time;
    }
    let elapsed = started.elapsed().as_secs_f64();

    for (object_id, _, _) in &clients {
        let _ = gql(&http, &url, &admin, DELETE, json!({"id": object_id})).await;
    }

    let it = total.iterations.max(1) as f64;
    println!(
        "workers={} seconds={:.1} iterations={} errors={}",
        args.workers, elapsed, total.iterations, total.errors
    );
    println!(
        "token+rotate pairs/s: {:.0}   HTTP requests/s: {:.0}",
        total.iterations as f64 / elapsed,
        2.0 * total.iterations as f64 / elapsed
    );
    println!(
        "mean latency: token {:.2} ms, rotateClientSecret {:.2} ms",
        total.token_time.as_secs_f64() * 1000.0 / it,
        total.rotate_time.as_secs_f64() * 1000.0 / it
    );
    Ok(())
}
