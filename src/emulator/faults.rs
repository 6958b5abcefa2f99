//! Fault settings, the decision they make about each request, and request statistics. The
//! middleware that carries the decisions out is in `layer.rs`; neither knows a platform: each
//! platform names its own requests ([`Operation`]).

use axum::http::StatusCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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
    /// Client listings leave out when each client was last used (Cisco's `last-used-at`), as
    /// a platform that reports no usage would.
    pub omit_last_used: bool,
    /// Requests the platform works on at once (each for the latency above); more wait their
    /// turn, first come first served. So the answer time grows with the load, as a real
    /// server's does when its workers are busy, with no 429 to say so. None: no such limit.
    pub capacity: Option<u32>,
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
    /// The actions other than `status:NNN`, which are named by their kind alone.
    const NAMED: [FaultAction; 8] = [
        FaultAction::DropAfterCommit,
        FaultAction::Hang,
        FaultAction::Truncate,
        FaultAction::NoData,
        FaultAction::GraphqlError,
        FaultAction::EmptyToken,
        FaultAction::ExpiredToken,
        FaultAction::EchoSecret,
    ];

    /// The action's kind, as counted in [`Stats::faults_injected`].
    fn kind(&self) -> &'static str {
        match self {
            FaultAction::Status(_) => "status",
            FaultAction::DropAfterCommit => "drop_after_commit",
            FaultAction::Hang => "hang",
            FaultAction::Truncate => "truncate",
            FaultAction::NoData => "no_data",
            FaultAction::GraphqlError => "graphql_error",
            FaultAction::EmptyToken => "empty_token",
            FaultAction::ExpiredToken => "expired_token",
            FaultAction::EchoSecret => "echo_secret",
        }
    }

    fn as_string(&self) -> String {
        match self {
            FaultAction::Status(s) => format!("status:{s}"),
            other => other.kind().into(),
        }
    }

    /// What the action does to the request: answer in place of the handler, or spoil its
    /// answer.
    fn effect(self) -> (Option<Before>, Option<After>) {
        match self {
            FaultAction::Status(code) => (
                Some(Before::Status {
                    code,
                    retry_after: Some(Duration::from_secs(1)),
                }),
                None,
            ),
            FaultAction::Hang => (Some(Before::Hang), None),
            FaultAction::EmptyToken => (
                Some(Before::TokenBody(
                    r#"{"access_token":"","token_type":"bearer","expires_in":3600}"#,
                )),
                None,
            ),
            FaultAction::ExpiredToken => (
                Some(Before::TokenBody(
                    r#"{"access_token":"emulator-expired-token","token_type":"bearer","expires_in":0}"#,
                )),
                None,
            ),
            FaultAction::NoData => (Some(Before::NoData), None),
            FaultAction::GraphqlError => (Some(Before::GraphqlError), None),
            FaultAction::DropAfterCommit => (None, Some(After::Drop)),
            FaultAction::Truncate => (None, Some(After::Truncate)),
            FaultAction::EchoSecret => (None, Some(After::EchoSecret)),
        }
    }
}

impl std::str::FromStr for FaultAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(a) = FaultAction::NAMED.into_iter().find(|a| a.kind() == s) {
            return Ok(a);
        }
        match s.strip_prefix("status:").map(str::parse::<u16>) {
            Some(Ok(code)) if (400..=599).contains(&code) => Ok(FaultAction::Status(code)),
            _ => Err(format!(
                "unknown fault action {s:?}: expected status:NNN (400-599), \
                 drop_after_commit, hang, truncate, no_data, graphql_error, empty_token, expired_token or echo_secret"
            )),
        }
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
        if self.capacity == Some(0) {
            return Err("capacity must be at least 1".to_string());
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
    /// Cisco requests counted against each org's hourly budget (admitted, not answered 429),
    /// since the emulator started: what the org's budget was charged.
    pub cisco_org_requests: BTreeMap<String, u64>,
    /// Requests that waited for a free worker (the `capacity` fault), and their waits in all.
    pub queued: u64,
    pub queued_ms: u64,
}

impl Stats {
    pub(super) fn fault(&mut self, kind: &str) {
        *self.faults_injected.entry(kind.to_string()).or_default() += 1;
    }
    pub(super) fn response(&mut self, status: StatusCode) {
        *self
            .responses
            .entry(status.as_u16().to_string())
            .or_default() += 1;
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.rate_limited += 1;
        }
    }
}

/// A request's operation, as far as faults and stats care: named by the platform that serves
/// the request (`token`, a GraphQL root field, `cisco.createClient`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub name: String,
    pub is_mutation: bool,
}

impl Operation {
    pub fn new(name: impl Into<String>, is_mutation: bool) -> Self {
        Operation {
            name: name.into(),
            is_mutation,
        }
    }
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

    /// Decides the fate of one request and updates the counters. Order: latency, then one-shots
    /// (deterministic, so tests are not at the mercy of the random ones), then the rate limit,
    /// then error_rate, then the drop rate for mutations.
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
            (d.before, d.after) = action.effect();
            stats.fault(action.kind());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, is_mutation: bool) -> Operation {
        Operation::new(name, is_mutation)
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
