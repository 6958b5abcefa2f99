//! Entry points for the fuzz targets (`fuzz/fuzz_targets/`) and for the test that replays their
//! seeds and regressions on stable Rust (`tests/fuzz_replay.rs`).
//!
//! Each function takes raw bytes, feeds them to the same decoding functions the providers and
//! backends run on a real answer, and panics only when an invariant breaks: a panic inside
//! rekey's code, or a secret that was in the input showing up in an error message. Not an API:
//! hidden from the docs, free to change with the fuzz targets.

use crate::backend::exec;
use crate::error::Error;
use crate::provider::{cisco, taegis, token};
use crate::secret::Secret;
use reqwest::StatusCode;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

/// The secret rekey "sent" with every fuzzed request (a caller-chosen Taegis secret, the
/// record given to a plugin). The seeds contain it so the fuzzer learns to echo it back.
pub const SENT_SECRET: &str = "FUZZ-SECRET-7f3a9c2e";

/// Secrets found in an answer are checked only from this length on: shorter strings turn up in
/// messages by coincidence (`"ok"`, a status code).
const MIN_CHECKED_SECRET: usize = 8;

/// An answer: `STATUS[ RETRY-AFTER]` on the first line, the body after it. Without a valid
/// first line the whole input is the body of a 200, so raw JSON inputs work too.
pub struct Answer<'a> {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: &'a [u8],
}

pub fn split_answer(data: &[u8]) -> Answer<'_> {
    let plain = Answer {
        status: StatusCode::OK,
        retry_after: None,
        body: data,
    };
    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
        return plain;
    };
    let Ok(head) = std::str::from_utf8(&data[..nl]) else {
        return plain;
    };
    let (code, rest) = head.split_once(' ').unwrap_or((head, ""));
    let Some(status) = code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
    else {
        return plain;
    };
    Answer {
        status,
        // The same parser the providers run on a real `Retry-After` header.
        retry_after: crate::http::parse_retry_after(rest),
        body: &data[nl + 1..],
    }
}

/// Panics when `err`'s message or debug text holds any of `secrets`.
fn assert_hidden(err: &Error, secrets: &[&str], what: &str) {
    let shown = format!("{err} {err:?}");
    for s in secrets {
        assert!(
            !shown.contains(s),
            "{what}: a secret of the input reached an error message"
        );
    }
}

/// String values of `key` anywhere in a JSON document (the secrets an answer carries).
fn strings_at(v: &serde_json::Value, key: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, val) in o {
                match val {
                    serde_json::Value::String(s) if k == key => out.push(s.clone()),
                    _ => strings_at(val, key, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings_at(x, key, out)),
        _ => {}
    }
}

/// The secrets an answer carries: string values of `keys`, anywhere in it.
fn secrets_in(body: &[u8], keys: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        for k in keys {
            strings_at(&v, k, &mut out);
        }
    }
    // A string that also stands elsewhere in the answer (say, the server copied it into an
    // error code) may be echoed from there: only strings found once are checked.
    let text = String::from_utf8_lossy(body);
    out.retain(|s| s.len() >= MIN_CHECKED_SECRET && text.matches(s.as_str()).count() == 1);
    out
}

/// Inventory text → [`crate::config::parse`], every problem rendered. The parser does no I/O,
/// so any text is safe to feed it. Invariant: a value given for a secret key is never echoed.
pub fn inventory(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz/inventory.toml");
    let Err(errors) = crate::config::parse(text, path) else {
        return;
    };
    let secrets = inventory_secrets(text);
    for e in &errors.0 {
        let shown = e.to_string();
        for s in &secrets {
            assert!(
                !shown.contains(s.as_str()),
                "inventory: a value given for a secret key was echoed"
            );
        }
    }
    let _ = errors.to_string();
}

/// Keys whose values are secrets (or, misused, may be): `client_secret`, a file backend's
/// `identity`, a Vault `token` or `secret_id`.
const SECRET_KEYS: &[&str] = &["client_secret", "identity", "token", "secret_id"];

/// String values given directly for a secret key, or as the `env` name of one (a pasted secret),
/// that appear nowhere else in the text (so an echo of them can only be an echo of the secret).
fn inventory_secrets(text: &str) -> Vec<String> {
    use toml::de::{DeTable, DeValue};
    fn walk(t: &DeTable<'_>, out: &mut Vec<String>) {
        for (k, v) in t.iter() {
            let secret_key = SECRET_KEYS.contains(&k.get_ref().as_ref());
            match v.get_ref() {
                DeValue::String(s) if secret_key => out.push(s.to_string()),
                DeValue::Table(sub) => {
                    if secret_key
                        && let Some(DeValue::String(s)) = sub.get("env").map(|e| e.get_ref())
                    {
                        out.push(s.to_string());
                    }
                    walk(sub, out);
                }
                DeValue::Array(a) => {
                    for item in a.iter() {
                        if let DeValue::Table(sub) = item.get_ref() {
                            walk(sub, out);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let Ok(doc) = DeTable::parse(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(doc.get_ref(), &mut out);
    out.retain(|s| s.len() >= MIN_CHECKED_SECRET && text.matches(s.as_str()).count() == 1);
    out
}

/// A Taegis answer, decoded as each call would decode it: the token exchange, then the GraphQL
/// answer of every mutation and query rekey sends. Invariant: neither the secret rekey sent
/// (a caller-chosen one) nor the secret or token in the answer reaches an error message.
pub fn taegis(data: &[u8]) {
    let a = split_answer(data);
    let sent = Secret::new(SENT_SECRET);
    let mut hidden = secrets_in(a.body, &["clientSecret", "access_token"]);
    hidden.push(SENT_SECRET.to_string());
    let hidden: Vec<&str> = hidden.iter().map(String::as_str).collect();

    match taegis::decode_token(a.status, a.retry_after, a.body, "fuzz-client") {
        Ok(t) => check_token(&t),
        Err(e) => assert_hidden(&e, &hidden, "taegis token"),
    }
    for field in [
        "createClient",
        "rotateClientSecret",
        "deleteClient",
        "clientsSearch",
    ] {
        let scrub = [&sent];
        let value = match taegis::decode_graphql(a.status, a.retry_after, a.body, field, &scrub) {
            Ok(v) => v,
            Err(e) => {
                // Server text is scrubbed of what rekey sent; a secret the server itself put
                // into an error message is its own to leak, so only the sent one is checked.
                assert_hidden(&e, &[SENT_SECRET], field);
                continue;
            }
        };
        let result = match field {
            "clientsSearch" => taegis::decode_page(value).map(|(_, page)| {
                page.into_iter().for_each(|c| drop(c.info()));
            }),
            "deleteClient" => Ok(()),
            _ => taegis::decode_issued(value, field, &scrub).map(drop),
        };
        if let Err(e) = result {
            assert_hidden(&e, &hidden, field);
        }
    }
}

/// A Cisco answer, decoded as each call would decode it: token, create, list (every entry),
/// and the classification of any status. Invariant: the password or token in the answer never
/// reaches an error message.
pub fn cisco(data: &[u8]) {
    let a = split_answer(data);
    let hidden = secrets_in(a.body, &["password", "access_token"]);
    let hidden: Vec<&str> = hidden.iter().map(String::as_str).collect();

    match cisco::decode_token(a.status, a.retry_after, a.body, "fuzz-client") {
        Ok(t) => check_token(&t),
        Err(e) => assert_hidden(&e, &hidden, "cisco token"),
    }
    let body = match cisco::classify(a.status, a.retry_after, a.body, "fuzz call") {
        Ok(body) => body,
        // An error answer's text is the server's: it is shortened, not scrubbed.
        Err(_) => return,
    };
    if let Err(e) = cisco::decode_created(&body, "rekey-fuzz-g1") {
        assert_hidden(&e, &hidden, "create client");
    }
    match cisco::decode_list(&body) {
        Ok(items) => {
            for item in &items {
                if let Err(e) = cisco::client_info(item) {
                    assert_hidden(&e, &hidden, "list clients");
                }
            }
        }
        Err(e) => assert_hidden(&e, &hidden, "list clients"),
    }
}

/// What rekey reads from a token: its lifetime (from the JWT `exp` claim or `expires_in`) and,
/// for Cisco's verify, its claims. Both come from the server and must not panic.
fn check_token(t: &token::Token) {
    let _ = token::jwt_claims(t.value.expose());
    let _ = t.expires_at;
}

/// An exec plugin's answer: its exit code on the first line (`0` when absent), then its stdout,
/// then after a NUL byte its stderr. Decoded as every call decodes it, with [`SENT_SECRET`] as the
/// secret of the request. Invariant: that secret never reaches an error message, whether the
/// plugin echoes it on stdout, on stderr or in its error message.
pub fn exec_plugin(data: &[u8]) {
    let (code, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(nl) => match std::str::from_utf8(&data[..nl])
            .ok()
            .and_then(|h| h.trim().parse::<i32>().ok())
        {
            Some(c) => (c, &data[nl + 1..]),
            None => (0, data),
        },
        None => (0, data),
    };
    // A negative code stands for death by a signal (the raw wait status of one).
    let status = if code < 0 {
        ExitStatus::from_raw(code.unsigned_abs() as i32 & 0x7f)
    } else {
        ExitStatus::from_raw((code & 0xff) << 8)
    };
    let (stdout, stderr) = match rest.iter().position(|&b| b == 0) {
        Some(z) => (&rest[..z], &rest[z + 1..]),
        None => (rest, &b""[..]),
    };
    let sent = Secret::new(SENT_SECRET);
    match exec::decode_response(
        "backend fuzz: plugin write",
        stdout,
        status,
        stderr,
        &[&sent],
    ) {
        Ok(r) => drop(exec::read_answer("fuzz", "fuzz-slot", r)),
        Err(e) => assert_hidden(&e, &[SENT_SECRET], "exec plugin"),
    }
}
