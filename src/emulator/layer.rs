//! The fault layer: one axum middleware ([`fault_layer`]) in front of the platforms'
//! endpoints (not the `/_emulator/` admin endpoints). It has each request named by the
//! platform that serves it (an [`Operation`], through the [`Injector`]'s classifier: this
//! layer knows no platform), counts it, and asks the [`FaultEngine`] what to do to it: delay
//! it, answer in place of the handler (429, 5xx, `{}`, a GraphQL error, or never), or let the
//! handler run and then spoil the answer (drop the connection after the commit, or truncate
//! the body).

use super::faults::{After, Before, FaultEngine, Faults, Operation, Stats};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Notify, Semaphore};

/// Largest request body the emulator reads (token and GraphQL requests are tiny).
const MAX_BODY: usize = 1 << 20;

/// Names a request from its method, path and body.
pub type Classify = fn(&Method, &str, &[u8]) -> Operation;

/// The fault layer's own state: the live faults, the counters, the secrets `echo_secret`
/// quoted, and the classifier the platforms provide.
pub struct Injector {
    engine: Mutex<FaultEngine>,
    /// The `capacity` fault's workers: a request holds one while it is worked on.
    workers: Mutex<Option<Arc<Semaphore>>>,
    stats: Mutex<Stats>,
    /// Secrets the `echo_secret` fault quoted (in-process tests only; never served).
    echoed: Mutex<Vec<String>>,
    classify: Classify,
}

impl Injector {
    pub fn new(faults: Faults, classify: Classify) -> Self {
        Injector {
            workers: Mutex::new(workers(&faults)),
            engine: Mutex::new(FaultEngine::new(faults)),
            stats: Mutex::new(Stats::default()),
            echoed: Mutex::new(Vec::new()),
            classify,
        }
    }

    // These std mutexes are never held across an await; a panic while holding one cannot
    // leave them inconsistent in a way that matters, so poisoning is ignored.
    pub fn engine(&self) -> MutexGuard<'_, FaultEngine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn echoed(&self) -> MutexGuard<'_, Vec<String>> {
        self.echoed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the faults (and so the random source and the token bucket).
    pub fn set_faults(&self, f: Faults) {
        *self.workers.lock().unwrap_or_else(|e| e.into_inner()) = workers(&f);
        *self.engine() = FaultEngine::new(f);
    }

    fn workers(&self) -> Option<Arc<Semaphore>> {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn workers(f: &Faults) -> Option<Arc<Semaphore>> {
    f.capacity
        .map(|n| Arc::new(Semaphore::new(n.max(1) as usize)))
}

/// Lets a handler close its own connection: the accept loop puts one in every request's
/// extensions and drops the connection (without an answer) when it is fired.
#[derive(Clone, Default)]
pub struct ConnControl(Arc<Notify>);

impl ConnControl {
    pub fn kill(&self) {
        // notify_one keeps a permit, so the kill is not lost if the connection task is not
        // waiting yet.
        self.0.notify_one();
    }

    pub async fn killed(&self) {
        self.0.notified().await
    }
}

/// The fault-injection and statistics middleware for the platforms' endpoints.
pub async fn fault_layer(
    State(shared): State<Arc<Injector>>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return json_status(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
    };
    let op = (shared.classify)(&parts.method, parts.uri.path(), &bytes);
    let decision = {
        let mut stats = shared.stats();
        *stats.requests.entry(op.name.clone()).or_default() += 1;
        shared.engine().decide(&op, &mut stats)
    };
    tracing::debug!(operation = %op.name, ?decision, "request");
    // A worker for the whole of the request's work (its latency and its handler); held until
    // the answer is made.
    let _worker = match shared.workers() {
        Some(workers) => {
            let waiting = Instant::now();
            let permit = workers.acquire_owned().await.ok();
            let waited = waiting.elapsed();
            if waited >= Duration::from_millis(1) {
                let mut stats = shared.stats();
                stats.queued += 1;
                stats.queued_ms += waited.as_millis() as u64;
            }
            permit
        }
        None => None,
    };
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }

    let response = match decision.before {
        Some(Before::Hang) => {
            // Never answer: the connection stays open until the client gives up or the
            // emulator stops (which aborts every connection task).
            std::future::pending::<Response>().await
        }
        Some(Before::Status { code, retry_after }) => {
            let faults = shared.engine().faults().clone();
            injected_status(code, retry_after, &faults)
        }
        Some(Before::NoData) => json_response(StatusCode::OK, "{}"),
        Some(Before::TokenBody(body)) => json_response(StatusCode::OK, body),
        Some(Before::GraphqlError) => json_response(
            StatusCode::OK,
            &serde_json::json!({
                "data": null,
                "errors": [{
                    "message": "emulator: injected fault",
                    "path": [op.name],
                    "extensions": {"code": "INTERNAL_SERVER_ERROR"}
                }]
            })
            .to_string(),
        ),
        None => {
            let req = Request::from_parts(parts.clone(), Body::from(bytes));
            let resp = next.run(req).await;
            match decision.after {
                None => resp,
                Some(After::Drop) => {
                    // The handler has committed; now close the connection without a word, so
                    // the client sees a transport error and cannot know the outcome.
                    match parts.extensions.get::<ConnControl>() {
                        Some(ctl) => {
                            shared.stats().connections_dropped += 1;
                            ctl.kill();
                            std::future::pending::<Response>().await
                        }
                        None => {
                            tracing::warn!("drop_after_commit without a connection handle");
                            resp
                        }
                    }
                }
                Some(After::Truncate) => truncate(resp).await,
                Some(After::EchoSecret) => echo_secret(resp, &shared).await,
            }
        }
    };
    shared.stats().response(response.status());
    response
}

async fn truncate(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let cut = Bytes::copy_from_slice(&bytes[..bytes.len() / 2]);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(cut))
}

/// The handler's answer with an `errors[]` entry quoting every secret it carries
/// (`clientSecret`, `password`, `client_secret` at any depth), between terminal escapes.
async fn echo_secret(resp: Response, shared: &Injector) -> Response {
    fn secrets(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match v {
                        serde_json::Value::String(s)
                            if ["clientSecret", "password", "client_secret"]
                                .contains(&k.as_str()) =>
                        {
                            out.push(s.clone())
                        }
                        _ => secrets(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| secrets(v, out)),
            _ => {}
        }
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let mut found = Vec::new();
    secrets(&v, &mut found);
    let message = format!(
        "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[31mFAKE OK\rsecret rejected:\n{}\u{9b}",
        found.join(", ")
    );
    shared.echoed().extend(found);
    if let Some(m) = v.as_object_mut() {
        m.insert(
            "errors".into(),
            serde_json::json!([{ "message": message, "extensions": {"code": "BAD_USER_INPUT"} }]),
        );
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(v.to_string()))
}

fn injected_status(code: u16, retry_after: Option<Duration>, faults: &Faults) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut resp = json_status(
        status,
        status.canonical_reason().unwrap_or("injected fault"),
    );
    if status == StatusCode::TOO_MANY_REQUESTS && !faults.omit_retry_after {
        let wait = retry_after.unwrap_or(Duration::from_secs(1));
        // Whole seconds, rounded up, at least 1: a client waiting that long will find a token.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let secs = secs.max(1);
        let value = if faults.retry_after_http_date {
            httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs))
        } else {
            secs.to_string()
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// A gateway-style error: `{"message": ...}` with the status.
pub fn json_status(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        &serde_json::json!({ "message": message }).to_string(),
    )
}

pub fn json_response(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
