//! The client-credentials session both platforms share: a bootstrap credential exchanged for a
//! bearer token at the platform's token endpoint, kept in a [`TokenCache`] until it nears expiry;
//! every request paced by the per-second limiter of its API base ([`http::limiter_for`]), token
//! exchanges included; a 401 drops the cached token and sends the request once more with a new
//! one; `Retry-After` read from every answer; bodies capped by [`http::read_body`].
//!
//! A platform supplies only what differs, through [`Platform`]: where its token endpoint is, what
//! a token answer means, and any pacing of its own (Cisco's hourly org budget). What an API
//! answer means stays with the platform; [`status_error`] is the status mapping they share.

use crate::error::{Error, ErrorKind, Result};
use crate::http::{self, classify_transport, read_body, retry_after};
use crate::provider::Bootstrap;
use crate::provider::token::{Token, TokenCache};
use crate::secret::ClientPair;
use governor::DefaultDirectRateLimiter;
use reqwest::StatusCode;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// An answer as it came: status, any `Retry-After`, and the bounded body (zeroized on drop: a
/// create or token answer *is* a secret).
pub type Answer = (StatusCode, Option<Duration>, Zeroizing<Vec<u8>>);

/// Reads a token endpoint's answer (status, `Retry-After`, body) for a client id. No network, so
/// the fuzz targets can feed it any answer.
pub type DecodeToken = fn(StatusCode, Option<Duration>, &[u8], &str) -> Result<Token>;

/// What one platform adds to the shared session.
pub trait Platform: Send + Sync {
    /// The token endpoint, below the API base URL.
    const TOKEN_PATH: &'static str;

    /// What a token answer means: a refusal, a temporary failure, or a token.
    const DECODE_TOKEN: DecodeToken;

    /// Runs before every request (token exchanges included), after the per-second limiter. An
    /// error fails the request before anything is sent.
    fn pace(&self, _what: &str) -> impl Future<Output = Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

pub struct Session<P> {
    name: String,
    base_url: String,
    bootstrap: Bootstrap,
    http: reqwest::Client,
    timeout: Duration,
    limiter: Arc<DefaultDirectRateLimiter>,
    tokens: TokenCache,
    platform: P,
}

impl<P: Platform> Session<P> {
    /// `name` is the inventory's name for the provider (used in messages only); `base_url` loses
    /// any trailing slash and must be https (or loopback). `platform` is built from that base.
    pub fn new(
        name: &str,
        base_url: &str,
        bootstrap: Bootstrap,
        rate_limit: f64,
        timeout: Duration,
        platform: impl FnOnce(&str) -> P,
    ) -> Result<Self> {
        let base_url = base_url.trim_end_matches('/').to_string();
        http::check_url(&base_url)?;
        Ok(Session {
            name: name.to_string(),
            limiter: http::limiter_for(&base_url, rate_limit),
            platform: platform(&base_url),
            base_url,
            bootstrap,
            http: http::client(),
            timeout,
            tokens: TokenCache::default(),
        })
    }

    /// Uses `http` instead of the process-wide client (a provider with its own `ca_cert`).
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// The platform's part, to set up after construction (Cisco's shared budget).
    pub fn platform_mut(&mut self) -> &mut P {
        &mut self.platform
    }

    /// The inventory's name for the provider.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The API base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn pace(&self, what: &str) -> Result<()> {
        self.limiter.until_ready().await;
        self.platform.pace(what).await
    }

    /// One token exchange. Used for the bootstrap token and to verify new pairs.
    pub async fn fetch_token(&self, pair: &ClientPair) -> Result<Token> {
        let what = "token request";
        self.pace(what).await?;
        let (status, wait, body) = http::client_credentials(
            &self.http,
            &format!("{}{}", self.base_url, P::TOKEN_PATH),
            pair,
            self.timeout,
            what,
        )
        .await?;
        (P::DECODE_TOKEN)(status, wait, &body, &pair.client_id)
    }

    /// Keeps `token`, just fetched for `pair` by a check that the pair works, for the bootstrap
    /// calls that follow when `pair` is the bootstrap credential: the start-up check then spares
    /// a second exchange right after this one.
    pub async fn adopt(&self, pair: &ClientPair, token: Token) {
        if self.bootstrap.holds(pair) {
            self.tokens.offer(pair, token).await;
        }
    }

    /// Sends one API request with the bootstrap credential's token; `request` builds it (method,
    /// URL, platform headers, body) and may be called twice: a 401 (expired or revoked token)
    /// fetches a new token once and sends the request again, since the gateway refused it before
    /// running anything. Returns the answer unread; what it means is the platform's to say.
    pub async fn send(
        &self,
        what: &str,
        request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Answer> {
        let boot = self
            .bootstrap
            .get()
            .map_err(|e| e.context(format!("provider {}: bootstrap credential", self.name)))?;
        let mut refreshed = false;
        loop {
            let token = self
                .tokens
                .get(&boot, || self.fetch_token(&boot))
                .await
                .map_err(|e| e.context(format!("provider {}: bootstrap credential", self.name)))?;
            let queued = std::time::Instant::now();
            self.pace(what).await?;
            let sent = std::time::Instant::now();
            let resp = request(&self.http)
                .bearer_auth(token.expose())
                .header(reqwest::header::ACCEPT, "application/json")
                .timeout(self.timeout)
                .send()
                .await;
            // What the answer says about load, for `--concurrency auto` (src/provider/load.rs).
            let throttled = resp.as_ref().map_or(true, |r| {
                r.status() == StatusCode::TOO_MANY_REQUESTS || r.status().is_server_error()
            });
            crate::provider::load::record(sent.elapsed(), sent - queued, throttled);
            let resp = resp.map_err(|e| classify_transport(e, what))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                tracing::debug!(provider = %self.name, "token refused; fetching a new one");
                self.tokens.invalidate(&boot, &token).await;
                refreshed = true;
                continue;
            }
            let wait = retry_after(&resp);
            let body = read_body(resp, what).await?;
            return Ok((status, wait, body));
        }
    }
}

/// An HTTP status that is not a success → the error, as both platforms read it. `detail` is what
/// the platform could safely quote from the body (already scrubbed), or empty.
pub fn status_error(status: StatusCode, wait: Option<Duration>, what: &str, detail: &str) -> Error {
    let msg = format!("{what}: HTTP {}{detail}", status.as_u16());
    match status.as_u16() {
        401 => Error::new(ErrorKind::Unauthorized, msg),
        403 => Error::new(ErrorKind::Forbidden, msg),
        429 => Error::new(ErrorKind::RateLimited, msg).with_retry_after(wait),
        408 | 500..=599 => Error::new(ErrorKind::Unavailable, msg).with_retry_after(wait),
        // A 404 is a wrong URL as often as a missing client: never read it as "already deleted".
        _ => Error::new(ErrorKind::Invalid, msg),
    }
}
