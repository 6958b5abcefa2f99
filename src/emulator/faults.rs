//! Fault injection and request statistics.
//!
//! One axum middleware ([`fault_layer`]) sits in front of the token endpoint and `/graphql`
//! (not the `/_emulator/` admin endpoints). It names the operation of each request, counts it,
//! and decides, from the current [`Faults`], what to do to it: delay it, answer in place of the
//! handler (429, 5xx, `{}`, a GraphQL error, or never), or let the handler run and then spoil
//! the answer (drop the connection after the commit, or truncate the body).

use super::Shared;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

/// Largest request body the emulator reads (token and GraphQL requests are tiny).
const MAX_BODY: usize = 1 << 20;

/// Fault settings. All off by default; settable at start (`rekey emulator` flags) and at run
/// time (`PUT /_emulator/faults`, [`super::EmulatorHandle::set_faults`]).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Delay added to every request.
    pub latency_ms: u64,
    /// Extra delay drawn uniformly from `0..=latency_jitter_ms`.
    pub latency_jitter_ms: u64,
    /// Token bucket over all requests (burst = one second's worth, at least 1). Over it: 429.
    pub rate_limit_per_sec: Option<f64>,
    /// Send 429s without `Retry-After`.
    pub omit_retry_after: bool,
    /// Send `Retry-After` as an HTTP date instead of seconds.
    pub retry_after_http_date: bool,
    /// Fraction of requests answered 500, 502 or 503 before anything is done.
    pub error_rate: f64,
    /// Fraction of GraphQL mutations that are applied, after which the connection is closed
    /// without an answer.
    pub drop_after_commit_rate: f64,
    /// Deterministic faults for the next matching requests, checked in order.
    pub fail_next: Vec<OneShot>,
    /// Seed for the random draws (jitter, error_rate, drop rate), for reproducible runs.
    pub fault_seed: Option<u64>,
    /// Cisco: requests per org per rolling hour (default 8000, the real limit). Over it: 429
    /// with `Retry-After` until the oldest request leaves the window.
    pub cisco_hourly_budget: Option<u64>,
}

/// A fault for the next `count` requests of one operation (or of any, when `operation` is
/// None). Operations: `token`, `introspection`, and GraphQL root fields (`createClient`,
/// `rotateClientSecret`, `deleteClient`, `client`, `clientsSearch`, `clients`, ...).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OneShot {
    #[serde(default)]
    pub operation: Option<String>,
    #[serde(default = "one")]
    pub count: u32,
    pub action: FaultAction,
    /// Let this many matching requests through first (e.g. to fail the third token request).
    #[serde(default)]
    pub skip: u32,
}

fn one() -> u32 {
    1
}

/// What a one-shot fault does. On the wire a string: `status:503`, `drop_after_commit`,
/// `hang`, `truncate`, `no_data`, `graphql_error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this HTTP status (400–599) before doing anything; 429 carries Retry-After.
    Status(u16),
    /// Do the request, then close the connection without an answer.
    DropAfterCommit,
    /// Never answer (the client must time out).
    Hang,
    /// Do the request, then send only the first half of the answer's body.
    Truncate,
    /// Answer 200 `{}` without doing anything.
    NoData,
    /// Answer 200 with `errors[]` and `data: null` without doing anything.
    GraphqlError,
    /// Token requests: answer 200 with an empty `access_token` (a broken server's "success").
    EmptyToken,
    /// Token requests: answer 200 with a token that has already expired (`expires_in: 0`).
    ExpiredToken,
    /// Do the request, then add to its answer an `errors[]` message that quotes every secret
    /// the answer carries, wrapped in terminal escapes (a careless or hostile server). The
    /// quoted secrets are kept for [`super::EmulatorHandle::echoed_secrets`].
    EchoSecret,
}

impl FaultAction {
    fn as_string(&self) -> String {
        match self {
            FaultAction::Status(s) => format!("status:{s}"),
            FaultAction::DropAfterCommit => "drop_after_commit".into(),
            FaultAction::Hang => "hang".into(),
            FaultAction::Truncate => "truncate".into(),
            FaultAction::NoData => "no_data".into(),
            FaultAction::GraphqlError => "graphql_error".into(),
            FaultAction::EmptyToken => "empty_token".into(),
            FaultAction::ExpiredToken => "expired_token".into(),
            FaultAction::EchoSecret => "echo_secret".into(),
        }
    }
}

impl std::str::FromStr for FaultAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "drop_after_commit" => FaultAction::DropAfterCommit,
            "hang" => FaultAction::Hang,
            "truncate" => FaultAction::Truncate,
            "no_data" => FaultAction::NoData,
            "graphql_error" => FaultAction::GraphqlError,
            "empty_token" => FaultAction::EmptyToken,
            "expired_token" => FaultAction::ExpiredToken,
            "echo_secret" => FaultAction::EchoSecret,
            other => match other.strip_prefix("status:").map(str::parse::<u16>) {
                Some(Ok(code)) if (400..=599).contains(&code) => FaultAction::Status(code),
                _ => {
                    return Err(format!(
                        "unknown fault action {other:?}: expected status:NNN (400-599), \
                         drop_after_commit, hang, truncate, no_data, graphql_error, empty_token, expired_token or echo_secret"
                    ));
                }
            },
        })
    }
}

impl Serialize for FaultAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_string())
    }
}

impl<'de> Deserialize<'de> for FaultAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Faults {
    /// Rejects settings that make no sense (rates outside 0..=1, a non-positive rate limit).
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("error_rate", self.error_rate),
            ("drop_after_commit_rate", self.drop_after_commit_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be between 0 and 1, not {v}"));
            }
        }
        if let Some(r) = self.rate_limit_per_sec
            && !(r > 0.0 && r.is_finite())
        {
            return Err(format!("rate_limit_per_sec must be positive, not {r}"));
        }
        Ok(())
    }
}

/// Counters served by `GET /_emulator/stats`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Stats {
    /// Requests by operation: `token`, `introspection`, a GraphQL root field, or `invalid`
    /// (a GraphQL body that does not parse) and `other` (an unknown field).
    pub requests: BTreeMap<String, u64>,
    /// Responses by HTTP status (as a string), including injected ones.
    pub responses: BTreeMap<String, u64>,
    /// 429s served, by the rate limit or a one-shot.
    pub rate_limited: u64,
    /// Faults injected, by kind: latency, rate_limit, error_rate, drop_after_commit, hang,
    /// truncate, no_data, graphql_error, status.
    pub faults_injected: BTreeMap<String, u64>,
    /// Connections closed without an answer (drop_after_commit).
    pub connections_dropped: u64,
}

impl Stats {
    fn fault(&mut self, kind: &str) {
        *self.faults_injected.entry(kind.to_string()).or_default() += 1;
    }
    fn response(&mut self, status: StatusCode) {
        *self
            .responses
            .entry(status.as_u16().to_string())
            .or_default() += 1;
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.rate_limited += 1;
        }
    }
}

/// A request's operation, as far as faults and stats care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub name: String,
    pub is_mutation: bool,
}

/// The live fault state: settings, the random source, the token bucket.
pub struct FaultEngine {
    faults: Faults,
    rng: StdRng,
    bucket: Option<Bucket>,
}

struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Self {
        let capacity = rate.max(1.0);
        Bucket {
            rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    /// Takes one token, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// What to do with one request.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    pub delay: Duration,
    /// Answer instead of the handler.
    pub before: Option<Before>,
    /// Spoil the handler's answer.
    pub after: Option<After>,
}

#[derive(Debug, PartialEq)]
pub enum Before {
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    Hang,
    NoData,
    GraphqlError,
    /// A 200 token answer carrying this body (`empty_token`, `expired_token`).
    TokenBody(&'static str),
}

#[derive(Debug, PartialEq, Eq)]
pub enum After {
    Drop,
    Truncate,
    EchoSecret,
}

impl FaultEngine {
    pub fn new(faults: Faults) -> Self {
        let rng = match faults.fault_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let bucket = faults.rate_limit_per_sec.map(Bucket::new);
        FaultEngine {
            faults,
            rng,
            bucket,
        }
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Decides the fate of one request and updates the counters. Order: latency, then one-shots
    /// (deterministic, so tests are not at the mercy of the random ones), then the rate limit,
    /// then error_rate, then the drop rate for mutations.
    /// Counts a matching request against one-shot `i`'s `skip`; true while it still skips.
    fn skipped(&mut self, i: usize) -> bool {
        let shot = &mut self.faults.fail_next[i];
        if shot.skip > 0 {
            shot.skip -= 1;
            true
        } else {
            false
        }
    }

    pub fn decide(&mut self, op: &Operation, stats: &mut Stats) -> Decision {
        let mut d = Decision::default();
        let f = &self.faults;
        if f.latency_ms > 0 || f.latency_jitter_ms > 0 {
            let jitter = if f.latency_jitter_ms > 0 {
                self.rng.random_range(0..=f.latency_jitter_ms)
            } else {
                0
            };
            d.delay = Duration::from_millis(f.latency_ms + jitter);
            stats.fault("latency");
        }

        if let Some(i) = self
            .faults
            .fail_next
            .iter()
            .position(|s| s.count > 0 && s.operation.as_deref().is_none_or(|o| o == op.name))
            && !self.skipped(i)
        {
            let shot = &mut self.faults.fail_next[i];
            shot.count -= 1;
            let action = shot.action;
            if shot.count == 0 {
                self.faults.fail_next.remove(i);
            }
            let kind = match action {
                FaultAction::Status(code) => {
                    d.before = Some(Before::Status {
                        code,
                        retry_after: Some(Duration::from_secs(1)),
                    });
                    "status"
                }
                FaultAction::Hang => {
                    d.before = Some(Before::Hang);
                    "hang"
                }
                FaultAction::EmptyToken => {
                    d.before = Some(Before::TokenBody(
                        r#"{"access_token":"","token_type":"bearer","expires_in":3600}"#,
                    ));
                    "empty_token"
                }
                FaultAction::ExpiredToken => {
                    d.before = Some(Before::TokenBody(
                        r#"{"access_token":"emulator-expired-token","token_type":"bearer","expires_in":0}"#,
                    ));
                    "expired_token"
                }
                FaultAction::NoData => {
                    d.before = Some(Before::NoData);
                    "no_data"
                }
                FaultAction::GraphqlError => {
                    d.before = Some(Before::GraphqlError);
                    "graphql_error"
                }
                FaultAction::DropAfterCommit => {
                    d.after = Some(After::Drop);
                    "drop_after_commit"
                }
                FaultAction::Truncate => {
                    d.after = Some(After::Truncate);
                    "truncate"
                }
                FaultAction::EchoSecret => {
                    d.after = Some(After::EchoSecret);
                    "echo_secret"
                }
            };
            stats.fault(kind);
            return d;
        }

        if let Some(bucket) = &mut self.bucket
            && let Err(wait) = bucket.take(Instant::now())
        {
            d.before = Some(Before::Status {
                code: 429,
                retry_after: Some(wait),
            });
            stats.fault("rate_limit");
            return d;
        }

        let f = &self.faults;
        if f.error_rate > 0.0 && self.rng.random_bool(f.error_rate) {
            let code = [500, 502, 503][self.rng.random_range(0..3)];
            d.before = Some(Before::Status {
                code,
                retry_after: None,
            });
            stats.fault("error_rate");
            return d;
        }

        if op.is_mutation
            && f.drop_after_commit_rate > 0.0
            && self.rng.random_bool(f.drop_after_commit_rate)
        {
            d.after = Some(After::Drop);
            stats.fault("drop_after_commit");
        }
        d
    }
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

/// The fault-injection and statistics middleware for the token endpoint and `/graphql`.
pub async fn fault_layer(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return json_status(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
    };
    let op = if parts.uri.path() == super::GRAPHQL_PATH {
        super::taegis::operation_of(&bytes)
    } else if parts.uri.path().starts_with("/iroh/") {
        super::cisco::operation_of(&parts.method, parts.uri.path())
    } else {
        Operation {
            name: "token".into(),
            is_mutation: false,
        }
    };
    let decision = {
        let mut stats = shared.stats();
        *stats.requests.entry(op.name.clone()).or_default() += 1;
        shared.faults().decide(&op, &mut stats)
    };
    tracing::debug!(operation = %op.name, ?decision, "request");
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
            let faults = shared.faults().faults().clone();
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
async fn echo_secret(resp: Response, shared: &Shared) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, is_mutation: bool) -> Operation {
        Operation {
            name: name.into(),
            is_mutation,
        }
    }

    #[test]
    fn actions_round_trip_as_strings() {
        for s in [
            "status:503",
            "status:429",
            "drop_after_commit",
            "hang",
            "truncate",
            "no_data",
            "graphql_error",
        ] {
            let a: FaultAction = s.parse().unwrap();
            assert_eq!(serde_json::to_value(a).unwrap(), s);
        }
        assert!("status:200".parse::<FaultAction>().is_err());
        assert!("explode".parse::<FaultAction>().is_err());
        let f: Faults =
            serde_json::from_str(r#"{"fail_next":[{"operation":"token","action":"status:503"}]}"#)
                .unwrap();
        assert_eq!(f.fail_next[0].count, 1);
        assert!(serde_json::from_str::<Faults>(r#"{"nope":1}"#).is_err());
    }

    #[test]
    fn one_shots_match_their_operation_and_run_out() {
        let mut e = FaultEngine::new(Faults {
            fail_next: vec![OneShot {
                skip: 0,
                operation: Some("createClient".into()),
                count: 2,
                action: FaultAction::DropAfterCommit,
            }],
            ..Default::default()
        });
        let mut s = Stats::default();
        assert_eq!(e.decide(&op("token", false), &mut s), Decision::default());
        assert_eq!(
            e.decide(&op("createClient", true), &mut s).after,
            Some(After::Drop)
        );
        assert_eq!(
            e.decide(&op("createClient", true), &mut s).after,
            Some(After::Drop)
        );
        assert_eq!(e.decide(&op("createClient", true), &mut s).after, None);
        assert_eq!(s.faults_injected["drop_after_commit"], 2);
        assert!(e.faults().fail_next.is_empty());
    }

    #[test]
    fn the_bucket_limits_and_says_how_long_to_wait() {
        let mut e = FaultEngine::new(Faults {
            rate_limit_per_sec: Some(2.0),
            ..Default::default()
        });
        let mut s = Stats::default();
        let o = op("token", false);
        assert!(e.decide(&o, &mut s).before.is_none());
        assert!(e.decide(&o, &mut s).before.is_none());
        match e.decide(&o, &mut s).before {
            Some(Before::Status {
                code: 429,
                retry_after: Some(w),
            }) => assert!(w <= Duration::from_millis(500)),
            other => panic!("expected a 429, got {other:?}"),
        }
    }

    #[test]
    fn seeded_randomness_is_reproducible() {
        let faults = Faults {
            error_rate: 0.5,
            fault_seed: Some(7),
            ..Default::default()
        };
        let run = || {
            let mut e = FaultEngine::new(faults.clone());
            let mut s = Stats::default();
            (0..50)
                .map(|_| e.decide(&op("client", false), &mut s).before.is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().any(|x| *x) && a.iter().any(|x| !*x));
    }

    #[test]
    fn validation_rejects_nonsense() {
        assert!(Faults::default().validate().is_ok());
        assert!(
            Faults {
                error_rate: 1.5,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Faults {
                rate_limit_per_sec: Some(0.0),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}
