//! The checking toolkit the inventory parser and each provider/backend module share: a
//! [`Checker`] that walks the located TOML tree, records every problem with its line and key,
//! and returns usable placeholders so one walk finds every problem.

pub(crate) mod sections;
pub mod tree;
pub mod values;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tree::{Entry, Kind, Table};
use values::{ConfigError, PairRef, Strategy, ValueRef};

/// The longest duration any inventory key accepts (`max_age`, `grace`, timeouts...): ten years.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 31_557_600);
/// The longest `lease_ttl`: a day. A claim on a slot is renewed by every write; one that must
/// outlive a day points at a mistake, and a stale lease blocks the slot for that long.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(86_400);
/// The longest `verify_delay` (a pause between token exchanges with a new pair): ten minutes.
pub const MAX_VERIFY_DELAY: Duration = Duration::from_secs(600);
/// The longest `jitter` and provider `timeout`: a day and an hour.
pub const MAX_JITTER: Duration = Duration::from_secs(86_400);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

pub(crate) const SECRET_BY_REFERENCE: &str =
    "a secret must be given by reference: { env = \"NAME\" } or { file = \"PATH\" }";

/// Collects problems while walking the tree. Each check records what is wrong and returns a
/// usable placeholder, so one walk finds every problem.
pub(crate) struct Checker {
    pub(crate) file: PathBuf,
    pub(crate) base_dir: PathBuf,
    pub(crate) errors: Vec<ConfigError>,
}

/// Joins a table path and a key: `providers.x` + `url`.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn list(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let v: Vec<String> = names.into_iter().map(|n| n.as_ref().to_string()).collect();
    if v.is_empty() {
        "(none)".to_string()
    } else {
        v.join(", ")
    }
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Edit distance, for "did you mean" on unknown keys.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Whether `name` is a valid slot name: `[a-z0-9][a-z0-9._-]{0,99}`. Slot names become file
/// names and parts of client names, so backends may rely on this.
pub fn is_valid_slot_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 100
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

pub(crate) fn parse_strategy(s: &str) -> Option<Strategy> {
    match s {
        "alternate" => Some(Strategy::Alternate),
        "in-place" => Some(Strategy::InPlace),
        _ => None,
    }
}

pub(crate) fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Checker {
    pub(crate) fn err(&mut self, line: usize, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: Some(line),
            key: key.into(),
            message: message.into(),
        });
    }

    pub(crate) fn known_keys(&mut self, t: &Table, path: &str, known: &[&str]) {
        for e in &t.entries {
            if known.contains(&e.key.as_str()) {
                continue;
            }
            let mut msg = format!("unknown key `{}`", e.key);
            let hint = known
                .iter()
                .map(|k| (distance(k, &e.key), k))
                .filter(|(d, k)| *d <= 2.max(k.len() / 4))
                .min();
            if let Some((_, k)) = hint {
                msg.push_str(&format!(" (did you mean `{k}`?)"));
            }
            msg.push_str(&format!("; known keys here: {}", known.join(", ")));
            self.err(e.line, join(path, &e.key), msg);
        }
    }

    /// Whether `name` is one of the `defined` (backends, providers); reports it at `line` and
    /// `key` when it is not.
    pub(crate) fn defined<V>(
        &mut self,
        line: usize,
        key: impl Into<String>,
        what: &str,
        name: &str,
        defined: &BTreeMap<String, V>,
    ) -> bool {
        if defined.contains_key(name) {
            return true;
        }
        self.err(
            line,
            key,
            format!(
                "{what} \"{name}\" is not defined; defined {what}s: {}",
                list(defined.keys())
            ),
        );
        false
    }

    pub(crate) fn wrong_type(&mut self, e: &Entry, path: &str, expected: &str) {
        self.err(
            e.line,
            join(path, &e.key),
            format!("must be {expected}, found {}", e.value.kind.describe()),
        );
    }

    pub(crate) fn missing(&mut self, t: &Table, path: &str, key: &str, hint: &str) {
        // A misspelt key is already reported as unknown, with this key as the suggestion.
        let misspelt = t
            .entries
            .iter()
            .any(|e| e.key != key && distance(&e.key, key) <= 2.max(key.len() / 4));
        if misspelt {
            return;
        }
        self.err(
            t.line,
            join(path, key),
            format!("missing required key `{key}`{hint}"),
        );
    }

    /// A string value: `None` when absent or of another type (reported).
    pub(crate) fn string<'a>(
        &mut self,
        t: &'a Table,
        path: &str,
        key: &str,
    ) -> Option<(&'a str, &'a Entry)> {
        let e = t.get(key)?;
        match &e.value.kind {
            Kind::Str(s) => Some((s.as_str(), e)),
            _ => {
                self.wrong_type(e, path, "a string (in quotes)");
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, t: &Table, path: &str, key: &str) -> Option<bool> {
        let e = t.get(key)?;
        match e.value.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.wrong_type(e, path, "true or false");
                None
            }
        }
    }

    /// An integer of at least `min`.
    pub(crate) fn integer(
        &mut self,
        t: &Table,
        path: &str,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let e = t.get(key)?;
        match e.value.kind {
            Kind::Int(n) if (min..=max).contains(&n) => Some(n),
            Kind::Int(n) => {
                self.err(
                    e.line,
                    join(path, key),
                    format!("must be at least {min} (and at most {max}), found {n}"),
                );
                None
            }
            _ => {
                self.wrong_type(e, path, &format!("an integer >= {min}"));
                None
            }
        }
    }

    /// A duration of at most [`MAX_DURATION`] (ten years): larger ones are refused here, so no
    /// date arithmetic on them can overflow later.
    pub(crate) fn duration(
        &mut self,
        t: &Table,
        path: &str,
        key: &str,
        allow_zero: bool,
    ) -> Option<(Duration, usize)> {
        self.duration_at_most(t, path, key, allow_zero, MAX_DURATION)
    }

    /// [`Checker::duration`] with a tighter bound (`lease_ttl`, `verify_delay`...).
    pub(crate) fn duration_at_most(
        &mut self,
        t: &Table,
        path: &str,
        key: &str,
        allow_zero: bool,
        max: Duration,
    ) -> Option<(Duration, usize)> {
        let e = t.get(key)?;
        let Kind::Str(s) = &e.value.kind else {
            self.wrong_type(
                e,
                path,
                "a duration in quotes such as \"90s\", \"10m\", \"24h\", \"30d\"",
            );
            return None;
        };
        let message = match humantime::parse_duration(s.trim()) {
            Ok(d) if d.is_zero() && !allow_zero => {
                format!("must be longer than zero, found \"{s}\"")
            }
            Ok(d) if d <= max => return Some((d, e.line)),
            // Longer than `max`, or too large for a duration at all ("99999999999999999999y").
            Ok(_) | Err(humantime::DurationError::NumberOverflow) => format!(
                "must be at most {} (docs/src/inventory.md, \"Limits\"), found \"{s}\"",
                fmt_duration(max)
            ),
            Err(_) => format!(
                "\"{s}\" is not a duration: write a number and a unit, e.g. \"90s\", \"10m\", \"24h\", \"30d\""
            ),
        };
        self.err(e.line, join(path, key), message);
        None
    }

    pub(crate) fn strings(
        &mut self,
        t: &Table,
        path: &str,
        key: &str,
    ) -> Option<(Vec<String>, usize)> {
        let e = t.get(key)?;
        let Kind::Array(items) = &e.value.kind else {
            self.wrong_type(e, path, "an array of strings, e.g. [\"a\", \"b\"]");
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match &item.kind {
                Kind::Str(s) if !s.trim().is_empty() => out.push(s.clone()),
                Kind::Str(_) => self.err(
                    item.line,
                    format!("{}[{i}]", join(path, key)),
                    "must not be empty",
                ),
                other => self.err(
                    item.line,
                    format!("{}[{i}]", join(path, key)),
                    format!("must be a string, found {}", other.describe()),
                ),
            }
        }
        Some((out, e.line))
    }

    /// A sub-table such as `[settings]` or `bootstrap = { ... }`.
    pub(crate) fn table<'a>(&mut self, t: &'a Table, path: &str, key: &str) -> Option<&'a Table> {
        let e = t.get(key)?;
        match &e.value.kind {
            Kind::Table(sub) => Some(sub),
            _ => {
                self.wrong_type(e, path, "a table");
                None
            }
        }
    }

    /// `type = "..."`: the type if known; `None` when missing, mistyped or unknown (reported).
    pub(crate) fn type_of<'a>(
        &mut self,
        t: &'a Table,
        path: &str,
        known: &[&str],
    ) -> Option<&'a str> {
        if t.get("type").is_none() {
            self.missing(t, path, "type", &format!(" (one of: {})", known.join(", ")));
            return None;
        }
        let (ty, e) = self.string(t, path, "type")?;
        if known.contains(&ty) {
            Some(ty)
        } else {
            self.err(
                e.line,
                join(path, "type"),
                format!("unknown type \"{ty}\"; known types: {}", known.join(", ")),
            );
            None
        }
    }

    /// The named sub-tables of `[providers]` or `[backends]`.
    pub(crate) fn named_tables<'a>(
        &mut self,
        root: &'a Table,
        key: &str,
    ) -> Vec<(&'a str, &'a Table)> {
        let Some(section) = self.table(root, "", key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in &section.entries {
            match &e.value.kind {
                Kind::Table(t) => out.push((e.key.as_str(), t)),
                _ => self.wrong_type(e, key, &format!("a table [{key}.{}]", e.key)),
            }
        }
        out
    }

    /// A provider `url`: https, or http to a loopback host only. Never echoes a URL carrying
    /// credentials.
    pub(crate) fn base_url(&mut self, u: &str, e: &Entry, path: &str) -> Option<String> {
        let key = join(path, "url");
        let shown = crate::http::redact_url(u, crate::http::UrlPart::Path);
        let checked = crate::http::endpoint(u).and_then(|url| {
            if url.query().is_some() || url.fragment().is_some() {
                Err(format!("\"{shown}\" must not have a query or fragment"))
            } else {
                Ok(url)
            }
        });
        match checked {
            Err(msg) => {
                self.err(e.line, key, msg);
                None
            }
            Ok(url) => Some(url.as_str().trim_end_matches('/').to_string()),
        }
    }

    pub(crate) fn pair(&mut self, t: &Table, path: &str) -> PairRef {
        if path.ends_with(".seed") {
            self.known_keys(t, path, &["client_id", "client_secret"]);
        }
        let mut pair = PairRef {
            client_id: ValueRef::Literal(String::new()),
            client_secret: ValueRef::Env(String::new()),
        };
        match t.get("client_id") {
            Some(e) => pair.client_id = self.value_ref(e, path, false),
            None => self.missing(t, path, "client_id", ""),
        }
        match t.get("client_secret") {
            Some(e) => pair.client_secret = self.value_ref(e, path, true),
            None => self.missing(
                t,
                path,
                "client_secret",
                " ({ env = \"NAME\" } or { file = \"PATH\" })",
            ),
        }
        pair
    }

    /// A literal (non-secrets only) or `{ env = ... }` / `{ file = ... }`. Values given for
    /// secret keys are never echoed.
    pub(crate) fn value_ref(&mut self, e: &Entry, path: &str, secret: bool) -> ValueRef {
        let key = join(path, &e.key);
        let placeholder = ValueRef::Env(String::new());
        match &e.value.kind {
            Kind::Str(_) if secret => {
                self.err(e.line, key, SECRET_BY_REFERENCE);
                placeholder
            }
            Kind::Str(s) if s.is_empty() => {
                self.err(e.line, key, "must not be empty");
                placeholder
            }
            Kind::Str(s) => ValueRef::Literal(s.clone()),
            Kind::Table(t) => {
                self.known_keys(t, &key, &["env", "file"]);
                match (t.get("env"), t.get("file")) {
                    (Some(_), Some(f)) => {
                        self.err(
                            f.line,
                            join(&key, "file"),
                            "give either env or file, not both",
                        );
                        placeholder
                    }
                    (None, None) => {
                        self.err(
                            t.line,
                            key,
                            "an empty reference: write { env = \"NAME\" } or { file = \"PATH\" }",
                        );
                        placeholder
                    }
                    (Some(_), None) => match self.string(t, &key, "env") {
                        Some((name, _)) if is_env_name(name) => ValueRef::Env(name.to_string()),
                        Some((name, env)) => {
                            // Someone may have pasted the secret itself here: do not echo it.
                            let shown = if secret {
                                String::new()
                            } else {
                                format!("\"{name}\" ")
                            };
                            self.err(
                                env.line,
                                join(&key, "env"),
                                format!(
                                    "{shown}is not an environment variable name (letters, digits and _, not starting with a digit)"
                                ),
                            );
                            placeholder
                        }
                        None => placeholder,
                    },
                    (None, Some(_)) => match self.string(t, &key, "file") {
                        Some((p, f)) if p.trim().is_empty() => {
                            self.err(f.line, join(&key, "file"), "must not be empty");
                            placeholder
                        }
                        Some((p, _)) => ValueRef::File(self.base_dir.join(p)),
                        None => placeholder,
                    },
                }
            }
            other => {
                let expected = if secret {
                    "a reference { env = \"NAME\" } or { file = \"PATH\" }"
                } else {
                    "a string or a reference { env = \"NAME\" } or { file = \"PATH\" }"
                };
                self.err(
                    e.line,
                    key,
                    format!("must be {expected}, found {}", other.describe()),
                );
                placeholder
            }
        }
    }
}
