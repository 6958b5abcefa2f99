//! Scrubbing: text that comes from a server or a plugin (an error message, a plugin's stderr, a
//! decoder's complaint about an answer) loses every secret rekey knows before it goes anywhere:
//! errors, `LastResult.message` in the stored record, logs, reports, webhooks (SECURITY.md,
//! *Output*).
//!
//! A [`Scrubber`] holds the secrets known at the point where such text enters rekey:
//! - every [`Secret`] alive in this process ([`Scrubber::known`]): bootstrap credentials, the
//!   records being worked on, pairs being verified, caller-chosen secrets;
//! - the secrets of the request at hand ([`Scrubber::secret`]);
//! - every secret the answer itself carries ([`Scrubber::answer`]): a create answer that holds a
//!   new secret and also quotes it in an error message, a plugin answer holding a record.
//!
//! Scrubbing replaces each secret, longest first, with `[redacted]`, on the whole text, before
//! any truncation (a cut could leave a secret's prefix behind).

use crate::secret::Secret;
use serde_json::Value;
use std::sync::Arc;
use zeroize::Zeroizing;

/// What a secret becomes in scrubbed text.
pub const REDACTED: &str = "[redacted]";

#[derive(Default)]
pub struct Scrubber {
    secrets: Vec<Arc<Zeroizing<String>>>,
}

impl Scrubber {
    /// No secret known yet.
    pub fn new() -> Self {
        Scrubber::default()
    }

    /// Every secret alive in this process.
    pub fn known() -> Self {
        Scrubber {
            secrets: crate::secret::live(),
        }
    }

    /// Adds one secret (of the request, of the record).
    pub fn secret(mut self, s: &Secret) -> Self {
        self.add(s);
        self
    }

    /// Adds several secrets.
    pub fn secrets<'a>(mut self, list: impl IntoIterator<Item = &'a Secret>) -> Self {
        for s in list {
            self.add(s);
        }
        self
    }

    pub fn add(&mut self, s: &Secret) {
        self.secrets.push(s.shared());
    }

    /// Adds every string the JSON answer `v` carries under a key that names a secret
    /// (`clientSecret`, `client_secret`, `secret`, `password`, `access_token`, ...), at any
    /// depth.
    pub fn answer(mut self, v: &Value) -> Self {
        self.walk(v);
        self
    }

    /// [`Scrubber::answer`] on raw bytes, when they are JSON (anything else adds nothing).
    pub fn answer_bytes(self, bytes: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => self.answer(&v),
            Err(_) => self,
        }
    }

    fn walk(&mut self, v: &Value) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match v {
                        Value::String(s) if names_a_secret(k) && !s.is_empty() => {
                            self.secrets.push(Arc::new(Zeroizing::new(s.to_string())))
                        }
                        _ => self.walk(v),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| self.walk(v)),
            _ => {}
        }
    }

    /// `text` with every known secret replaced by `[redacted]`.
    pub fn scrub(&self, text: &str) -> String {
        let mut list: Vec<&str> = self
            .secrets
            .iter()
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .collect();
        // Longest first: a secret that contains another is replaced whole.
        list.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        list.dedup();
        let mut out = text.to_string();
        for s in list {
            if out.contains(s) {
                out = out.replace(s, REDACTED);
            }
        }
        out
    }
}

/// Whether a JSON key names a secret: it ends, case and `_`/`-` aside, in `secret`, `password`
/// or `token` (`clientSecret`, `client_secret`, `password`, `access_token`, `id_token`). Not
/// `token_type` or `secret_epoch`.
fn names_a_secret(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    ["secret", "password", "token"]
        .iter()
        .any(|end| k.ends_with(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_give_up_their_secrets() {
        let v: Value = serde_json::json!({
            "data": {"createClient": {"clientSecret": "S1-abcdefgh", "client": {"name": "n"}}},
            "errors": [{"message": "bad secret S1-abcdefgh"}],
            "access_token": "T0-abcdefgh",
            "token_type": "Bearer",
            "record": {"current": {"secret": "S2-abcdefgh"}}
        });
        let s = Scrubber::new().answer(&v);
        assert_eq!(
            s.scrub("S1-abcdefgh T0-abcdefgh S2-abcdefgh Bearer"),
            "[redacted] [redacted] [redacted] Bearer"
        );
    }

    #[test]
    fn longest_secret_first_and_live_secrets_are_known() {
        let long = Secret::new("abcdefgh-long-secret");
        let short = Secret::new("abcdefgh");
        let s = Scrubber::known();
        assert_eq!(s.scrub("x abcdefgh-long-secret y"), "x [redacted] y");
        assert_eq!(s.scrub("abcdefgh"), "[redacted]");
        drop((long, short));
    }
}
