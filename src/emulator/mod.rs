//! A Taegis- and Cisco-compatible API emulator: the test server and the demo's platform
//! (docs/src/testing.md). The official Python SDK works against it unchanged.
//!
//! From the top down:
//! - this file: `rekey emulator`'s flags, start and stop, the router and the accept loop.
//! - `admin`: `/_emulator/` endpoints for tests.
//! - `taegis/`, `cisco/`: each platform's endpoints (`mod.rs`: routes and how requests are
//!   named for faults; `auth.rs`: the token endpoint and the bearer check; `api.rs`: the
//!   client-management API; `state.rs`: the platform's client records).
//! - `shared`: what every handler shares; `world`: both platforms' clients and the state file.
//! - `auth`: JWTs, Basic and bearer credentials, OAuth2 answers (both platforms').
//! - `state`: tenants and the client record both platforms share; `seed`: the seed file.
//! - `layer`: the fault layer (the middleware), and `faults`: its settings and decisions
//!   (latency, rate limits, 5xx, drops, hangs, truncation) and request statistics. Neither
//!   knows a platform: each names its own requests ([`faults::Operation`]).
//!
//! The server runs its own accept loop on hyper (not `axum::serve`) so that a handler can
//! close its own connection without an answer: that is how "commit, then drop the response"
//! is made to look like a network failure to the client.

mod admin;
mod auth;
mod cisco;
mod faults;
mod layer;
mod seed;
mod shared;
mod state;
mod taegis;
mod world;

pub use admin::ClientSummary;
pub use faults::{FaultAction, Faults, OneShot, Stats};
pub use seed::{Seed, SeedCiscoClient, SeedClient, SeedOrg, SeedTenant};
pub use taegis::state::{ROLES, TENANT_ADMIN_ROLE, TENANT_ANALYST_ROLE};

use crate::error::{Error, Result};
use axum::Router;
use axum::http::Method;
use axum::routing::{get, post};
use faults::Operation;
use layer::{ConnControl, Injector};
use shared::Shared;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use world::World;

const SEED_HELP: &str = "JSON seed: tenants and clients created at start.

  {\"tenants\": [
     {\"id\": \"11772\", \"clients\": [
        {\"client_id\": \"...\", \"secret\": \"...\", \"name\": \"admin\",
         \"roles\": [\"ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068\"]}]},
     {\"id\": \"11773\", \"parent\": \"11772\"}]}

Cisco orgs: {\"orgs\": [{\"id\": \"org-1\", \"clients\": [{\"client_id\": \"client-...\", \
\"password\": \"...\", \"scopes\": [\"oauth\", \"profile\"]}]}]}.

`parent` makes a tenant a child: clients of the parent may act in it through X-Tenant-Context. \
`roles` are role ids; empty means Tenant Analyst. Known roles: Tenant Admin \
ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068 (may manage clients), Tenant Analyst \
a4903f9a-2d5a-4c1e-9b7e-3f6c1d2e8a40, Tenant Responder e1b1a8f2-6f0b-4d55-9c3a-7a2f1c9b5d61, \
Tenant Auditor c7d2e3f4-8a9b-4c0d-8e1f-2a3b4c5d6e7f. With --state-file, clients already in the \
state file are kept as they are (their secret may have been rotated since).";

const ABOUT: &str = "Serves the Taegis XDR API-client endpoints on loopback: \
POST /auth/api/v2/auth/token (client credentials) and POST /graphql (createClient, \
rotateClientSecret, forceRotateClientSecret, deleteClient, client, clientsSearch, clients; \
full introspection). Point the official SDK at it with \
GraphQLService(environment=\"local\", environments={\"local\": \"http://127.0.0.1:8484\"}) and \
OAUTHLIB_INSECURE_TRANSPORT=1.

Behaviour where the real service is undocumented: rotateClientSecret(secret:) sets that exact \
secret; the old secret and every earlier token stop working at once (rotation and deletion); \
duplicate client names are allowed; clientsSearch pageOffset counts results to skip, perPage \
defaults to 100 (max 1000), sorted by name.

Cisco XDR / Threat Response (IROH): POST /iroh/oauth2/token (10-minute tokens), \
POST/GET /iroh/oauth2-clients/clients, GET/DELETE /iroh/oauth2-clients/clients/{id} (list, get \
and delete are inferred shapes), GET /iroh/profile/whoami (scope profile). Managing clients \
needs scope oauth; no scope escalation. Orgs come from the seed's \"orgs\" list; the org \
budget (8000 requests per hour, or the cisco_hourly_budget fault) answers 429 + Retry-After.

Test endpoints (no auth): GET/PUT /_emulator/faults, GET /_emulator/stats, POST \
/_emulator/tenants, GET /_emulator/tenants/{id}/clients, GET /_emulator/health.";

/// `rekey emulator` options.
#[derive(clap::Args, Debug, Clone)]
#[command(after_long_help = ABOUT)]
pub struct EmulatorArgs {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:8484")]
    pub listen: SocketAddr,

    /// JSON seed file with tenants and clients (see --help for the format).
    #[arg(long, value_name = "FILE", long_help = SEED_HELP)]
    pub seed: Option<PathBuf>,

    /// Create a tenant (repeatable).
    #[arg(long, value_name = "ID")]
    pub tenant: Vec<String>,

    /// A Tenant Admin client in TENANT whose secret is read from the environment variable
    /// SECRET_ENV_VAR, never from the command line (repeatable; creates the tenant).
    #[arg(long, value_name = "TENANT:CLIENT_ID:SECRET_ENV_VAR")]
    pub bootstrap: Vec<String>,

    /// Keep state (clients, secret hashes, the token key) in FILE across restarts (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,

    /// Lifetime of issued tokens.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub token_ttl: u64,

    /// Fault: delay every request this long.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,

    /// Fault: add a uniform random delay of up to this long.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_jitter_ms: u64,

    /// Fault: answer 429 beyond this many requests per second (token bucket, all requests).
    #[arg(long, value_name = "RPS")]
    pub rate_limit: Option<f64>,

    /// Fault: work on at most N requests at once; more wait their turn, so answers slow down
    /// under load (with no 429).
    #[arg(long, value_name = "N")]
    pub capacity: Option<u32>,

    /// Fault: send 429s with Retry-After as an HTTP date instead of seconds.
    #[arg(long)]
    pub retry_after_http_date: bool,

    /// Fault: send 429s without Retry-After.
    #[arg(long)]
    pub omit_retry_after: bool,

    /// Fault: answer this fraction of requests 500/502/503 before doing anything.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    pub error_rate: f64,

    /// Fault: apply this fraction of mutations, then close the connection without an answer.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    pub drop_after_commit_rate: f64,

    /// Seed for the random faults, for reproducible runs.
    #[arg(long, value_name = "N")]
    pub fault_seed: Option<u64>,
}

/// Everything [`start`] needs.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    pub seed: Seed,
    pub faults: Faults,
    pub state_file: Option<PathBuf>,
    pub token_ttl: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            seed: Seed::default(),
            faults: Faults::default(),
            state_file: None,
            token_ttl: Duration::from_secs(3600),
        }
    }
}

impl EmulatorConfig {
    /// Builds the configuration from `rekey emulator` flags: reads the seed file and the
    /// bootstrap secrets from their environment variables.
    pub fn from_args(args: &EmulatorArgs) -> Result<Self> {
        let mut seed = match &args.seed {
            Some(path) => Seed::from_file(path)?,
            None => Seed::default(),
        };
        for t in &args.tenant {
            if t.is_empty() {
                return Err(Error::config("--tenant needs a tenant id"));
            }
            seed.tenant_mut(t);
        }
        for spec in &args.bootstrap {
            let parts: Vec<&str> = spec.splitn(3, ':').collect();
            let [tenant, client_id, var] = parts[..] else {
                return Err(Error::config(format!(
                    "--bootstrap {spec:?}: expected TENANT:CLIENT_ID:SECRET_ENV_VAR"
                )));
            };
            if tenant.is_empty() || client_id.is_empty() || var.is_empty() {
                return Err(Error::config(format!(
                    "--bootstrap {spec:?}: expected TENANT:CLIENT_ID:SECRET_ENV_VAR"
                )));
            }
            let secret = std::env::var(var).unwrap_or_default();
            if secret.is_empty() {
                return Err(Error::config(format!(
                    "--bootstrap {client_id}: environment variable {var} is not set or empty"
                )));
            }
            seed.tenant_mut(tenant).clients.push(SeedClient {
                client_id: client_id.to_string(),
                secret,
                name: format!("bootstrap-{client_id}"),
                roles: vec![TENANT_ADMIN_ROLE.to_string()],
            });
        }
        let faults = Faults {
            latency_ms: args.latency_ms,
            latency_jitter_ms: args.latency_jitter_ms,
            rate_limit_per_sec: args.rate_limit,
            omit_retry_after: args.omit_retry_after,
            retry_after_http_date: args.retry_after_http_date,
            error_rate: args.error_rate,
            drop_after_commit_rate: args.drop_after_commit_rate,
            fail_next: Vec::new(),
            fault_seed: args.fault_seed,
            cisco_hourly_budget: None,
            omit_last_used: false,
            capacity: args.capacity,
        };
        faults.validate().map_err(Error::config)?;
        if args.token_ttl == 0 {
            return Err(Error::config("--token-ttl must be at least 1 second"));
        }
        Ok(EmulatorConfig {
            seed,
            faults,
            state_file: args.state_file.clone(),
            token_ttl: Duration::from_secs(args.token_ttl),
        })
    }
}

/// A running emulator. Dropping it stops the server too; [`EmulatorHandle::shutdown`] also
/// waits for it and writes the state file a last time.
pub struct EmulatorHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl EmulatorHandle {
    /// `http://127.0.0.1:PORT`: the base URL for the SDK's `environments`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the fault settings (clamping rates into range; the HTTP endpoint validates).
    pub async fn set_faults(&self, mut f: Faults) {
        f.error_rate = f.error_rate.clamp(0.0, 1.0);
        f.drop_after_commit_rate = f.drop_after_commit_rate.clamp(0.0, 1.0);
        f.rate_limit_per_sec = f.rate_limit_per_sec.filter(|r| *r > 0.0 && r.is_finite());
        self.shared.set_faults(f);
    }

    /// Moves the clock the emulator records clients' use by (see `World::clock_offset`).
    pub async fn set_clock_offset(&self, offset: chrono::Duration) {
        self.shared.state.lock().await.clock_offset = offset;
    }

    /// Adds a Cisco org (if new) and its clients.
    pub async fn add_org(&self, org: SeedOrg) -> Result<()> {
        let mut state = self.shared.state.lock().await;
        state.add_tenant(&org.id, None)?;
        for c in &org.clients {
            state.add_seed_cisco_client(&org.id, c)?;
        }
        self.shared.save(&state)
    }

    /// The current fault settings (one-shots that have run out are gone).
    pub async fn faults(&self) -> Faults {
        self.shared.faults().faults().clone()
    }

    pub async fn stats(&self) -> Stats {
        self.shared.stats().clone()
    }

    /// The secrets the `echo_secret` fault has quoted so far, for tests that check they
    /// appear nowhere.
    pub fn echoed_secrets(&self) -> Vec<String> {
        self.shared.echoed().clone()
    }

    /// Stops accepting, drops every open connection (hung requests included), and saves the
    /// state file.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Some(path) = &self.shared.state_file {
            let state = self.shared.state.lock().await;
            if let Err(e) = state.save(path) {
                tracing::error!(error = %crate::error::chain(&e), "cannot save emulator state");
            }
        }
    }
}

/// Starts the emulator on `listen` (loopback only; port 0 picks a free port) and returns once
/// it accepts connections.
pub async fn start(config: EmulatorConfig, listen: SocketAddr) -> Result<EmulatorHandle> {
    if !listen.ip().is_loopback() {
        return Err(Error::config(format!(
            "the emulator listens on loopback addresses only, not {listen}"
        )));
    }
    config.faults.validate().map_err(Error::config)?;
    let mut state = match &config.state_file {
        Some(path) => World::load(path)?.unwrap_or_else(World::new),
        None => World::new(),
    };
    for client_id in state.apply_seed(&config.seed)? {
        tracing::warn!(
            %client_id,
            "seed client already in the state file; keeping the stored one"
        );
    }
    if let Some(path) = &config.state_file {
        state.save(path)?;
    }
    let shared = Arc::new(Shared {
        signing_key: state.signing_key(),
        state: tokio::sync::Mutex::new(state),
        state_file: config.state_file.clone(),
        token_ttl: config.token_ttl,
        injector: Arc::new(Injector::new(config.faults.clone(), operation_of)),
    });
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| Error::config(format!("cannot listen on {listen}")).with_source(e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::internal("cannot read the listening address").with_source(e))?;
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(serve(listener, router(shared.clone()), stopped));
    tracing::info!(%addr, "emulator started");
    Ok(EmulatorHandle {
        addr,
        shared,
        stop,
        task,
    })
}

/// `rekey emulator`: serves until Ctrl-C or SIGTERM.
pub async fn run(args: EmulatorArgs) -> Result<()> {
    let config = EmulatorConfig::from_args(&args)?;
    let handle = start(config, args.listen).await?;
    crate::errln!("listening on {}", handle.url());
    wait_for_signal().await?;
    tracing::info!("stopping the emulator");
    handle.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    let sig_err = |e| Error::internal("cannot listen for signals").with_source(e);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(sig_err)?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(sig_err)?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.map_err(sig_err)?;
    Ok(())
}

/// Names a request for faults and stats: each platform names its own (a path that is not
/// Cisco's is Taegis's).
fn operation_of(method: &Method, path: &str, body: &[u8]) -> Operation {
    if path.starts_with(cisco::PREFIX) {
        cisco::operation_of(method, path, body)
    } else {
        taegis::operation_of(method, path, body)
    }
}

fn router(shared: Arc<Shared>) -> Router {
    // Faults and stats apply to the API, never to the test endpoints.
    let api = Router::new()
        .merge(taegis::routes(shared.clone()))
        .merge(cisco::routes(shared.clone()))
        .layer(axum::middleware::from_fn_with_state(
            shared.injector.clone(),
            layer::fault_layer,
        ));
    let admin = Router::new()
        .route("/_emulator/health", get(admin::health))
        .route(
            "/_emulator/faults",
            get(admin::get_faults).put(admin::put_faults),
        )
        .route("/_emulator/stats", get(admin::get_stats))
        .route("/_emulator/clock", axum::routing::put(admin::put_clock))
        .route("/_emulator/tenants", post(admin::post_tenant))
        .route(
            "/_emulator/tenants/{id}/clients",
            get(admin::tenant_clients),
        );
    // The org-limit header goes on every Cisco answer, injected faults included.
    let api = api.layer(axum::middleware::from_fn_with_state(
        shared.clone(),
        cisco::org_limit_header,
    ));
    api.merge(admin).with_state(shared)
}

async fn serve(listener: TcpListener, app: Router, mut stop: watch::Receiver<bool>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            changed = stop.changed() => {
                // Err: the handle was dropped; also a reason to stop.
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(serve_connection(stream, app.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    // Aborts hung and keep-alive connections alike.
    conns.shutdown().await;
}

async fn serve_connection(stream: TcpStream, app: Router) {
    let _ = stream.set_nodelay(true);
    let ctl = ConnControl::default();
    let request_ctl = ctl.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(request_ctl.clone());
            tower::ServiceExt::oneshot(app.clone(), req)
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = ctl.killed() => {
            // Dropping the connection closes the socket with no response written.
            tracing::debug!("connection dropped after commit (injected fault)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> EmulatorArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            a: EmulatorArgs,
        }
        Cli::parse_from(["x"]).a
    }

    #[test]
    fn bootstrap_reads_the_secret_from_the_environment() {
        // A variable name unique to this test, so parallel tests cannot interfere.
        let var = "REKEY_EMULATOR_TEST_BOOTSTRAP_SECRET_7f3a";
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var(var, "s3cret-value-from-env") };
        let mut a = args();
        a.tenant = vec!["1".into()];
        a.bootstrap = vec![format!("2:admin-id:{var}")];
        let c = EmulatorConfig::from_args(&a).unwrap();
        assert_eq!(c.seed.tenants.len(), 2);
        let admin = &c.seed.tenants[1].clients[0];
        assert_eq!(admin.secret, "s3cret-value-from-env");
        assert_eq!(admin.roles, [TENANT_ADMIN_ROLE]);
        assert!(!format!("{c:?}").contains("s3cret"));

        a.bootstrap = vec!["2:admin-id:REKEY_EMULATOR_TEST_UNSET_VAR_91".into()];
        assert!(EmulatorConfig::from_args(&a).is_err());
        a.bootstrap = vec!["2:admin-id".into()];
        assert!(EmulatorConfig::from_args(&a).is_err());
    }

    #[tokio::test]
    async fn refuses_to_listen_beyond_loopback() {
        let err = start(EmulatorConfig::default(), "0.0.0.0:0".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(err.message().contains("loopback"));
    }
}
