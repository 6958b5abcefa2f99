//! A cache of bearer tokens per credential, refreshed shortly before they expire, with one fetch
//! in flight per credential (sixteen concurrent slots do not fetch sixteen tokens).

use crate::error::Result;
use crate::secret::{ClientPair, Secret};
use base64::Engine;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Refresh this long before expiry, so a token never dies mid-request.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// The longest lifetime rekey believes a server: an absurd `expires_in` or `exp` (`u64::MAX`
/// seconds overflowed the clock and panicked) means a token refreshed daily.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone)]
pub struct Token {
    pub value: Secret,
    pub expires_at: Instant,
}

impl Token {
    /// A token valid for `lifetime` from now.
    pub fn valid_for(value: Secret, lifetime: Duration) -> Token {
        Token {
            value,
            expires_at: Instant::now() + lifetime,
        }
    }
}

impl Token {
    /// Builds a token from a token endpoint's answer, taking its lifetime from the JWT `exp`
    /// claim, else `expires_in`, else 5m. An answer that cannot be used is no token and no proof
    /// that the credential works (SECURITY.md, "Verification"): an empty `access_token`, an
    /// `expires_in` of zero or less, or a JWT whose `exp` has passed. Those are `Malformed`
    /// (a definitive failure, not a temporary one).
    pub fn from_response(access_token: String, expires_in: Option<i64>) -> Result<Token> {
        if access_token.trim().is_empty() {
            return Err(crate::error::Error::malformed(
                "token request: the answer's access_token is empty, which proves nothing",
            ));
        }
        let now_unix = chrono::Utc::now().timestamp();
        let exp = jwt_exp(&access_token);
        let expired = match exp {
            Some(exp) => exp <= now_unix,
            None => expires_in.is_some_and(|s| s <= 0),
        };
        if expired {
            return Err(crate::error::Error::malformed(
                "token request: the answer's token has already expired, which proves nothing",
            ));
        }
        let lifetime = exp
            .map(|exp| Duration::from_secs(exp.saturating_sub(now_unix).max(0) as u64))
            .or(expires_in.map(|s| Duration::from_secs(s.max(0) as u64)))
            .unwrap_or(Duration::from_secs(300))
            .min(MAX_LIFETIME);
        // Short-lived tokens are refreshed when 10% of their life is left, long ones a minute early.
        let margin = REFRESH_MARGIN.min(lifetime / 10);
        Ok(Token {
            value: Secret::new(access_token),
            expires_at: Instant::now() + lifetime - margin,
        })
    }

    /// `expires_at` already has the refresh margin taken off.
    fn fresh(&self) -> bool {
        self.expires_at > Instant::now()
    }
}

/// Reads the `exp` claim of a JWT without checking its signature (we are its holder, not its
/// verifier).
pub fn jwt_exp(jwt: &str) -> Option<i64> {
    jwt_claims(jwt)?.get("exp")?.as_i64()
}

pub fn jwt_claims(jwt: &str) -> Option<serde_json::Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

type Slot = Arc<tokio::sync::Mutex<Option<Token>>>;

#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, Slot>>,
}

impl TokenCache {
    fn key(pair: &ClientPair) -> String {
        // The secret is part of the key so a rotated bootstrap secret never reuses an old token.
        format!(
            "{}:{}",
            pair.client_id,
            crate::secret::fingerprint(pair.secret.expose().as_bytes())
        )
    }

    fn slot(&self, pair: &ClientPair) -> Slot {
        let mut map = self.entries.lock().expect("token cache poisoned");
        map.entry(Self::key(pair)).or_default().clone()
    }

    /// A fresh token for `pair`, fetching one with `fetch` when none is cached or it nears expiry.
    pub async fn get<F, Fut>(&self, pair: &ClientPair, fetch: F) -> Result<Secret>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token>>,
    {
        let slot = self.slot(pair);
        let mut guard = slot.lock().await;
        if let Some(token) = guard.as_ref().filter(|t| t.fresh()) {
            return Ok(token.value.clone());
        }
        let token = fetch().await?;
        let value = token.value.clone();
        *guard = Some(token);
        Ok(value)
    }

    /// Keeps `token`, fetched for `pair` outside `get` (a check that the pair works), for the
    /// calls that follow, unless a fresh token is cached already.
    pub async fn offer(&self, pair: &ClientPair, token: Token) {
        let slot = self.slot(pair);
        let mut guard = slot.lock().await;
        if guard.as_ref().is_none_or(|t| !t.fresh()) {
            *guard = Some(token);
        }
    }

    /// Forgets `stale` (after a 401), unless another task already replaced it.
    pub async fn invalidate(&self, pair: &ClientPair, stale: &Secret) {
        let slot = self.slot(pair);
        let mut guard = slot.lock().await;
        if guard.as_ref().is_some_and(|t| &t.value == stale) {
            *guard = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt_with_exp(exp: i64) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            e.encode(br#"{"alg":"HS256"}"#),
            e.encode(format!(r#"{{"exp":{exp}}}"#))
        )
    }

    #[test]
    fn lifetime_comes_from_exp() {
        let exp = chrono::Utc::now().timestamp() + 3600;
        let t = Token::from_response(jwt_with_exp(exp), Some(10)).unwrap();
        let left = t.expires_at.saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(3500), "{left:?}");
        assert!(t.fresh());
    }

    #[test]
    fn absurd_lifetimes_are_capped_not_a_panic() {
        let t = Token::from_response("opaque".into(), Some(i64::MAX)).unwrap();
        assert!(t.fresh());
        assert!(t.expires_at <= Instant::now() + MAX_LIFETIME);
        let t = Token::from_response(jwt_with_exp(i64::MAX), None).unwrap();
        assert!(t.expires_at <= Instant::now() + MAX_LIFETIME);
    }

    #[test]
    fn expired_or_nearly_expired_tokens_are_not_fresh() {
        let exp = chrono::Utc::now().timestamp() + 30;
        let t = Token::from_response(jwt_with_exp(exp), None).unwrap();
        assert!(
            t.fresh(),
            "a 30 s token is used until 10% of its life is left"
        );
        assert!(t.expires_at <= Instant::now() + Duration::from_secs(27));
        // Not a JWT: expires_in decides.
        let t = Token::from_response("opaque".into(), Some(600)).unwrap();
        assert!(t.fresh());
    }

    #[test]
    fn unusable_answers_are_no_token() {
        use crate::error::ErrorKind;
        let past = chrono::Utc::now().timestamp() - 10;
        let now = chrono::Utc::now().timestamp();
        for (token, expires_in) in [
            (String::new(), Some(3600)),
            ("   ".to_string(), None),
            ("opaque".to_string(), Some(0)),
            ("opaque".to_string(), Some(-5)),
            (jwt_with_exp(past), Some(3600)),
            (jwt_with_exp(now), None),
        ] {
            let e = Token::from_response(token, expires_in)
                .err()
                .expect("refused");
            assert_eq!(e.kind(), ErrorKind::Malformed);
            assert!(!e.is_temporary());
        }
    }

    #[tokio::test]
    async fn one_fetch_serves_many_callers() {
        let cache = TokenCache::default();
        let pair = ClientPair {
            client_id: "c".into(),
            secret: Secret::new("s"),
        };
        let fetches = std::sync::atomic::AtomicU32::new(0);
        for _ in 0..5 {
            cache
                .get(&pair, || async {
                    fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok(Token::valid_for(
                        Secret::new("t"),
                        Duration::from_secs(3600),
                    ))
                })
                .await
                .unwrap();
        }
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
        cache.invalidate(&pair, &Secret::new("t")).await;
        cache
            .get(&pair, || async {
                fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(Token::valid_for(
                    Secret::new("t2"),
                    Duration::from_secs(3600),
                ))
            })
            .await
            .unwrap();
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
