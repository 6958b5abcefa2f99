//! The inventory: typed, validated, with no I/O beyond reading the file itself.
//!
//! `load` parses the TOML and validates everything it can without the network, collecting every
//! problem (file, line, key, message) before returning. References to secrets (`env`, `file`) are
//! kept as references here and resolved only when a command needs them (`resolve`).

use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default prefix of the names of clients rekey creates: `<prefix><slot>-g<generation>`.
pub const DEFAULT_NAME_PREFIX: &str = "rekey-";

#[derive(Clone, Debug)]
pub struct Inventory {
    /// The file it was read from (for messages) and the directory relative paths start from.
    pub source: PathBuf,
    pub settings: Settings,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub backends: BTreeMap<String, BackendConfig>,
    /// In file order, with defaults applied.
    pub slots: Vec<SlotConfig>,
}

/// `[settings]`: run-wide knobs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Prefix of managed client names (default `rekey-`).
    pub name_prefix: String,
    /// Retire entries rekey owns that are no longer in the inventory (default false).
    pub prune: bool,
    /// Slots worked on at once (default 16; `--concurrency` overrides).
    pub concurrency: usize,
    /// How long a run's claim on a slot lasts without being renewed (default 10m).
    pub lease_ttl: Duration,
    /// Token exchanges tried with a new pair before giving up for this run (default 5), spaced
    /// by `verify_delay` to ride out propagation delay.
    pub verify_attempts: u32,
    pub verify_delay: Duration,
    /// Runs in a row a pending pair may fail verification before it is discarded (default 3).
    pub max_verify_failures: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name_prefix: DEFAULT_NAME_PREFIX.to_string(),
            prune: false,
            concurrency: 16,
            lease_ttl: Duration::from_secs(600),
            verify_attempts: 5,
            verify_delay: Duration::from_secs(2),
            max_verify_failures: 3,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// New client next to the old one; old one deleted after grace. Zero downtime. Default.
    Alternate,
    /// New secret for the same client; consumers of the old secret fail until they reload.
    InPlace,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Alternate => "alternate",
            Strategy::InPlace => "in-place",
        })
    }
}

/// Where a value comes from. Secrets are only ever given this way, never as literals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueRef {
    /// `{ env = "NAME" }`
    Env(String),
    /// `{ file = "path" }` (relative to the inventory's directory); trailing newline trimmed.
    File(PathBuf),
    /// A literal: allowed for non-secret values only (a client id).
    Literal(String),
}

impl ValueRef {
    /// Reads the value. The error names the reference, never the value.
    pub fn resolve(&self) -> Result<Secret> {
        match self {
            ValueRef::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
                _ => Err(Error::config(format!(
                    "environment variable {name} is not set"
                ))),
            },
            ValueRef::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::new(ErrorKind::Config, format!("cannot read {}", path.display()))
                        .with_source(e)
                })?;
                Ok(Secret::new(text.trim_end_matches(['\n', '\r']).to_string()))
            }
            ValueRef::Literal(v) => Ok(Secret::new(v.clone())),
        }
    }
}

impl fmt::Display for ValueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueRef::Env(n) => write!(f, "env {n}"),
            ValueRef::File(p) => write!(f, "file {}", p.display()),
            ValueRef::Literal(_) => f.write_str("literal"),
        }
    }
}

/// A client id and secret given by reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairRef {
    pub client_id: ValueRef,
    pub client_secret: ValueRef,
}

/// How a provider authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootstrapConfig {
    /// `bootstrap = { client_id = {...}, client_secret = {...} }`: a fixed credential.
    Static(PairRef),
    /// `bootstrap = { slot = "NAME", seed = { client_id = ..., client_secret = ... } }`: the
    /// current pair of slot NAME (which rekey rotates, last and alone). `seed` is used only
    /// while that slot has no credential yet; the seed client is adopted, not owned.
    Slot { slot: String, seed: Option<PairRef> },
}

#[derive(Clone, Debug)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub bootstrap: BootstrapConfig,
    /// Default tenant for this provider's slots.
    pub tenant: Option<String>,
    /// Requests per second to this provider's environment (default 50).
    pub rate_limit: f64,
    /// Timeout of each HTTP request (default 30s).
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub enum ProviderKind {
    Taegis(TaegisSettings),
}

impl ProviderKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            ProviderKind::Taegis(_) => "taegis",
        }
    }
}

#[derive(Clone, Debug)]
pub struct TaegisSettings {
    /// API base URL, from `environment` or `url`; no trailing slash.
    pub base_url: String,
    /// The environment name given, if any (for messages and rate-limit keys).
    pub environment: Option<String>,
    /// `in_place_secret = "caller"`: in-place rotation sends a secret rekey generated and stored
    /// first (only if the platform honours the `secret` argument). Default `"server"`.
    pub caller_chosen_secret: bool,
}

/// Known Taegis environments: (names, base URL). See protocols/taegis.md.
pub const TAEGIS_ENVIRONMENTS: &[(&[&str], &str)] = &[
    (
        &["charlie", "production", "us1"],
        "https://api.ctpx.secureworks.com",
    ),
    (
        &["delta", "us2"],
        "https://api.delta.taegis.secureworks.com",
    ),
    (&["echo", "eu"], "https://api.echo.taegis.secureworks.com"),
    (
        &["foxtrot", "us3"],
        "https://api.foxtrot.taegis.secureworks.com",
    ),
    (&["golf", "euw1"], "https://api.golf.taegis.secureworks.com"),
    (
        &["hotel", "apse2"],
        "https://api.hotel.taegis.secureworks.com",
    ),
    (
        &["india", "aps1"],
        "https://api.india.taegis.secureworks.com",
    ),
    (
        &["juliet", "apne1"],
        "https://api.juliet.taegis.secureworks.com",
    ),
    (&["kilo", "sae1"], "https://api.kilo.taegis.secureworks.com"),
    (
        &["quebec", "cac1"],
        "https://api.quebec.taegis.secureworks.com",
    ),
];

/// The base URL of a Taegis environment name (case-insensitive), if known.
pub fn taegis_environment_url(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    TAEGIS_ENVIRONMENTS
        .iter()
        .find(|(names, _)| names.contains(&lower.as_str()))
        .map(|(_, url)| *url)
}

#[derive(Clone, Debug)]
pub enum BackendConfig {
    File(FileBackendConfig),
}

impl BackendConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            BackendConfig::File(_) => "file",
        }
    }
}

/// `type = "file"`: age-encrypted records, one file per slot, in a directory.
#[derive(Clone, Debug)]
pub struct FileBackendConfig {
    pub name: String,
    /// Directory holding `<slot>.age` files (created 0700 if missing).
    pub path: PathBuf,
    /// The age X25519 identity (`AGE-SECRET-KEY-1...`): `{ file = ... }` or `{ env = ... }`.
    pub identity: ValueRef,
    /// Extra age recipients (`age1...`) every record is also encrypted to (e.g. a break-glass key).
    pub recipients: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct SlotConfig {
    pub name: String,
    pub provider: String,
    pub tenant: String,
    /// Role ids given to the client (Taegis); empty means the platform default.
    pub roles: Vec<String>,
    pub strategy: Strategy,
    pub max_age: Duration,
    pub grace: Duration,
    pub backend: String,
    pub retired: bool,
    /// Line of the slot's table in the inventory, for messages.
    pub line: usize,
}

/// One problem in an inventory, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// Dotted key, e.g. `slots[3].provider` or `providers.taegis-us1.environment`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: {}: {}",
                self.file.display(),
                line,
                self.key,
                self.message
            ),
            None => write!(f, "{}: {}: {}", self.file.display(), self.key, self.message),
        }
    }
}

/// Every problem found in an inventory.
#[derive(Clone, Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "the inventory has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigErrors> for Error {
    fn from(e: ConfigErrors) -> Self {
        Error::config(e.to_string())
    }
}

/// Reads and validates an inventory. Every problem is reported, none is fixed silently.
pub fn load(path: &Path) -> std::result::Result<Inventory, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: "-".into(),
            message: format!("cannot read the inventory: {e}"),
        }])
    })?;
    parse(&text, path)
}

/// The Taegis role every bootstrap client needs to manage other clients.
pub const TAEGIS_TENANT_ADMIN_ROLE: &str = "ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068";

/// Values of `type` accepted in `[providers.*]` and `[backends.*]`.
pub const PROVIDER_TYPES: &[&str] = &["taegis"];
pub const BACKEND_TYPES: &[&str] = &["file"];

const SECRET_BY_REFERENCE: &str =
    "a secret must be given by reference: { env = \"NAME\" } or { file = \"PATH\" }";

/// Parses and validates inventory text; `path` is used for messages and relative paths only.
///
/// No I/O and no environment lookups: references stay references. Every problem is collected;
/// the inventory is returned only when there is none.
pub fn parse(text: &str, path: &Path) -> std::result::Result<Inventory, ConfigErrors> {
    let doc = match toml_edit::ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => return Err(ConfigErrors(vec![syntax_error(text, path, &e)])),
    };
    let lines = Lines::new(text);
    let root = tree::table(doc.as_table(), 1, &lines);
    let mut c = Checker {
        file: path.to_path_buf(),
        base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        errors: Vec::new(),
    };
    let inventory = c.inventory(&root);
    if c.errors.is_empty() {
        Ok(inventory)
    } else {
        // Stable: problems on one line keep the order they were found in.
        c.errors.sort_by_key(|e| e.line.unwrap_or(0));
        Err(ConfigErrors(c.errors))
    }
}

fn syntax_error(text: &str, path: &Path, e: &toml_edit::TomlError) -> ConfigError {
    let (line, column) = match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let before = &text[..start];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (Some(line), Some(column))
        }
        None => (None, None),
    };
    let detail = e.message().trim().replace('\n', "; ");
    let at = column
        .map(|c| format!(" at column {c}"))
        .unwrap_or_default();
    ConfigError {
        file: path.to_path_buf(),
        line,
        key: "-".into(),
        message: format!("TOML syntax error{at}: {detail}"),
    }
}

/// Byte offset -> 1-based line number.
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { starts }
    }

    fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

/// The parsed TOML reduced to what validation needs: values with the line they sit on, tables
/// as ordered entries with the line of each key. Inline and standard tables look alike here.
mod tree {
    use super::Lines;
    use toml_edit::{Item, Value};

    pub(super) struct Node {
        pub line: usize,
        pub kind: Kind,
    }

    pub(super) enum Kind {
        Str(String),
        Int(i64),
        Float(f64),
        Bool(bool),
        Datetime,
        Array(Vec<Node>),
        Table(Table),
    }

    impl Kind {
        /// "a string", "an integer", ... for "must be X, found Y" messages.
        pub fn describe(&self) -> &'static str {
            match self {
                Kind::Str(_) => "a string",
                Kind::Int(_) => "an integer",
                Kind::Float(_) => "a number",
                Kind::Bool(_) => "true/false",
                Kind::Datetime => "a date-time",
                Kind::Array(_) => "an array",
                Kind::Table(_) => "a table",
            }
        }
    }

    pub(super) struct Entry {
        pub key: String,
        /// Line of the key itself (the offending key in messages).
        pub line: usize,
        pub value: Node,
    }

    pub(super) struct Table {
        /// Line of the header (`[x]`, `[[x]]`), the `{` of an inline table, or the key.
        pub line: usize,
        pub entries: Vec<Entry>,
    }

    impl Table {
        pub fn get(&self, key: &str) -> Option<&Entry> {
            self.entries.iter().find(|e| e.key == key)
        }
    }

    fn line_of(span: Option<std::ops::Range<usize>>, fallback: usize, lines: &Lines) -> usize {
        span.map_or(fallback, |s| lines.line(s.start))
    }

    pub(super) fn table(t: &toml_edit::Table, fallback: usize, lines: &Lines) -> Table {
        let line = line_of(t.span(), fallback, lines);
        let entries = t
            .iter()
            .filter_map(|(k, _)| t.get_key_value(k))
            .filter_map(|(key, item)| {
                let key_line = line_of(key.span(), line, lines);
                item_node(item, key_line, lines).map(|value| Entry {
                    key: key.get().to_string(),
                    line: key_line,
                    value,
                })
            })
            .collect();
        Table { line, entries }
    }

    fn inline_table(t: &toml_edit::InlineTable, fallback: usize, lines: &Lines) -> Table {
        let line = line_of(t.span(), fallback, lines);
        let entries = t
            .iter()
            .filter_map(|(k, _)| t.get_key_value(k))
            .filter_map(|(key, item)| {
                let key_line = line_of(key.span(), line, lines);
                item_node(item, key_line, lines).map(|value| Entry {
                    key: key.get().to_string(),
                    line: key_line,
                    value,
                })
            })
            .collect();
        Table { line, entries }
    }

    fn item_node(item: &Item, fallback: usize, lines: &Lines) -> Option<Node> {
        match item {
            Item::None => None,
            Item::Value(v) => Some(value_node(v, fallback, lines)),
            Item::Table(t) => {
                let t = table(t, fallback, lines);
                Some(Node {
                    line: t.line,
                    kind: Kind::Table(t),
                })
            }
            Item::ArrayOfTables(a) => {
                let items = a
                    .iter()
                    .map(|t| {
                        let t = table(t, fallback, lines);
                        Node {
                            line: t.line,
                            kind: Kind::Table(t),
                        }
                    })
                    .collect();
                Some(Node {
                    line: fallback,
                    kind: Kind::Array(items),
                })
            }
        }
    }

    fn value_node(v: &Value, fallback: usize, lines: &Lines) -> Node {
        let line = line_of(v.span(), fallback, lines);
        let kind = match v {
            Value::String(s) => Kind::Str(s.value().clone()),
            Value::Integer(i) => Kind::Int(*i.value()),
            Value::Float(f) => Kind::Float(*f.value()),
            Value::Boolean(b) => Kind::Bool(*b.value()),
            Value::Datetime(_) => Kind::Datetime,
            Value::Array(a) => Kind::Array(a.iter().map(|v| value_node(v, line, lines)).collect()),
            Value::InlineTable(t) => Kind::Table(inline_table(t, line, lines)),
        };
        Node { line, kind }
    }
}

use tree::{Entry, Kind, Table};

/// `[defaults]`, each with the line it was given on (None: built-in default).
struct Defaults {
    strategy: Strategy,
    max_age: (Duration, Option<usize>),
    grace: (Duration, Option<usize>),
    backend: Option<String>,
}

/// What slot validation needs to know about a provider, even a broken one (so that one mistake
/// in a provider does not also show up as an error in each of its slots).
struct ProviderFacts {
    is_taegis: bool,
    has_tenant: bool,
    bootstrap_slot: Option<(String, usize)>,
}

/// Collects problems while walking the tree. Each check records what is wrong and returns a
/// usable placeholder, so one walk finds every problem.
struct Checker {
    file: PathBuf,
    base_dir: PathBuf,
    errors: Vec<ConfigError>,
}

/// Joins a table path and a key: `providers.x` + `url`.
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn list(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let v: Vec<String> = names.into_iter().map(|n| n.as_ref().to_string()).collect();
    if v.is_empty() {
        "(none)".to_string()
    } else {
        v.join(", ")
    }
}

fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Edit distance, for "did you mean" on unknown keys.
fn distance(a: &str, b: &str) -> usize {
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

fn is_loopback_host(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

fn parse_strategy(s: &str) -> Option<Strategy> {
    match s {
        "alternate" => Some(Strategy::Alternate),
        "in-place" => Some(Strategy::InPlace),
        _ => None,
    }
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Extra locations of a slot, for checks that run after every slot is known.
struct SlotLines {
    path: String,
    roles: usize,
    retired: usize,
}

impl Checker {
    fn err(&mut self, line: usize, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: Some(line),
            key: key.into(),
            message: message.into(),
        });
    }

    fn known_keys(&mut self, t: &Table, path: &str, known: &[&str]) {
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

    fn wrong_type(&mut self, e: &Entry, path: &str, expected: &str) {
        self.err(
            e.line,
            join(path, &e.key),
            format!("must be {expected}, found {}", e.value.kind.describe()),
        );
    }

    fn missing(&mut self, t: &Table, path: &str, key: &str, hint: &str) {
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
    fn string<'a>(&mut self, t: &'a Table, path: &str, key: &str) -> Option<(&'a str, &'a Entry)> {
        let e = t.get(key)?;
        match &e.value.kind {
            Kind::Str(s) => Some((s.as_str(), e)),
            _ => {
                self.wrong_type(e, path, "a string (in quotes)");
                None
            }
        }
    }

    fn boolean(&mut self, t: &Table, path: &str, key: &str) -> Option<bool> {
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
    fn integer(&mut self, t: &Table, path: &str, key: &str, min: i64, max: i64) -> Option<i64> {
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

    fn duration(
        &mut self,
        t: &Table,
        path: &str,
        key: &str,
        allow_zero: bool,
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
        match humantime::parse_duration(s.trim()) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.err(
                    e.line,
                    join(path, key),
                    format!("must be longer than zero, found \"{s}\""),
                );
                None
            }
            Ok(d) => Some((d, e.line)),
            Err(_) => {
                self.err(
                    e.line,
                    join(path, key),
                    format!(
                        "\"{s}\" is not a duration: write a number and a unit, e.g. \"90s\", \"10m\", \"24h\", \"30d\""
                    ),
                );
                None
            }
        }
    }

    fn strings(&mut self, t: &Table, path: &str, key: &str) -> Option<(Vec<String>, usize)> {
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
    fn table<'a>(&mut self, t: &'a Table, path: &str, key: &str) -> Option<&'a Table> {
        let e = t.get(key)?;
        match &e.value.kind {
            Kind::Table(sub) => Some(sub),
            _ => {
                self.wrong_type(e, path, "a table");
                None
            }
        }
    }

    fn inventory(&mut self, root: &Table) -> Inventory {
        self.known_keys(
            root,
            "",
            &["settings", "defaults", "providers", "backends", "slots"],
        );
        let settings = match self.table(root, "", "settings") {
            Some(t) => self.settings(t),
            None => Settings::default(),
        };
        let backends = self.backends(root);
        let defaults = self.defaults(root, &backends);
        let (providers, facts) = self.providers(root);
        let (slots, slot_lines) = self.slots(root, &defaults, &providers, &facts, &backends);
        self.bootstrap_slots(&providers, &facts, &slots, &slot_lines);
        Inventory {
            source: self.file.clone(),
            settings,
            providers,
            backends,
            slots,
        }
    }

    fn settings(&mut self, t: &Table) -> Settings {
        let p = "settings";
        self.known_keys(
            t,
            p,
            &[
                "name_prefix",
                "prune",
                "concurrency",
                "lease_ttl",
                "verify_attempts",
                "verify_delay",
                "max_verify_failures",
            ],
        );
        let mut s = Settings::default();
        if let Some((prefix, e)) = self.string(t, p, "name_prefix") {
            let ok = !prefix.is_empty()
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if ok {
                s.name_prefix = prefix.to_string();
            } else {
                self.err(
                    e.line,
                    "settings.name_prefix",
                    format!(
                        "\"{prefix}\" is not a valid name prefix: use one or more of a-z, 0-9, '-', '_', '.'"
                    ),
                );
            }
        }
        if let Some(b) = self.boolean(t, p, "prune") {
            s.prune = b;
        }
        if let Some(n) = self.integer(t, p, "concurrency", 1, 100_000) {
            s.concurrency = n as usize;
        }
        if let Some((d, _)) = self.duration(t, p, "lease_ttl", false) {
            s.lease_ttl = d;
        }
        if let Some(n) = self.integer(t, p, "verify_attempts", 1, 1_000) {
            s.verify_attempts = n as u32;
        }
        if let Some((d, _)) = self.duration(t, p, "verify_delay", true) {
            s.verify_delay = d;
        }
        if let Some(n) = self.integer(t, p, "max_verify_failures", 1, 1_000) {
            s.max_verify_failures = n as u32;
        }
        s
    }

    fn defaults(&mut self, root: &Table, backends: &BTreeMap<String, BackendConfig>) -> Defaults {
        let mut d = Defaults {
            strategy: Strategy::Alternate,
            max_age: (Duration::from_secs(30 * 86_400), None),
            grace: (Duration::from_secs(86_400), None),
            backend: None,
        };
        let Some(t) = self.table(root, "", "defaults") else {
            return d;
        };
        let p = "defaults";
        self.known_keys(t, p, &["strategy", "max_age", "grace", "backend"]);
        if let Some(s) = self.strategy(t, p) {
            d.strategy = s;
        }
        let max_age = self.duration(t, p, "max_age", false);
        let grace = self.duration(t, p, "grace", true);
        if let Some((v, line)) = max_age {
            d.max_age = (v, Some(line));
        }
        if let Some((v, line)) = grace {
            d.grace = (v, Some(line));
        }
        if d.grace.0 >= d.max_age.0 && (max_age.is_some() || grace.is_some()) {
            let (key, line) = match (grace, max_age) {
                (Some((_, l)), _) => ("defaults.grace", l),
                (None, Some((_, l))) => ("defaults.max_age", l),
                (None, None) => unreachable!("checked above"),
            };
            let msg = grace_message(d.grace.0, d.max_age.0);
            self.err(line, key, msg);
        }
        if let Some((name, e)) = self.string(t, p, "backend") {
            if !backends.contains_key(name) {
                self.err(
                    e.line,
                    "defaults.backend",
                    undefined("backend", name, backends.keys()),
                );
            }
            d.backend = Some(name.to_string());
        }
        d
    }

    fn strategy(&mut self, t: &Table, path: &str) -> Option<Strategy> {
        let (s, e) = self.string(t, path, "strategy")?;
        let parsed = parse_strategy(s);
        if parsed.is_none() {
            self.err(
                e.line,
                join(path, "strategy"),
                format!("unknown strategy \"{s}\"; use \"alternate\" or \"in-place\""),
            );
        }
        parsed
    }

    /// `type = "..."`: the type if known; `None` when missing, mistyped or unknown (reported).
    fn type_of<'a>(&mut self, t: &'a Table, path: &str, known: &[&str]) -> Option<&'a str> {
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
    fn named_tables<'a>(&mut self, root: &'a Table, key: &str) -> Vec<(&'a str, &'a Table)> {
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

    fn backends(&mut self, root: &Table) -> BTreeMap<String, BackendConfig> {
        let mut out = BTreeMap::new();
        for (name, t) in self.named_tables(root, "backends") {
            let path = format!("backends.{name}");
            let mut cfg = FileBackendConfig {
                name: name.to_string(),
                path: PathBuf::new(),
                identity: ValueRef::Env(String::new()),
                recipients: Vec::new(),
            };
            // An unknown type is still a defined backend: slots naming it are not also wrong.
            if self.type_of(t, &path, BACKEND_TYPES) == Some("file") {
                self.known_keys(t, &path, &["type", "path", "identity", "recipients"]);
                match self.string(t, &path, "path") {
                    Some((p, e)) if p.trim().is_empty() => {
                        self.err(e.line, join(&path, "path"), "must not be empty")
                    }
                    Some((p, _)) => cfg.path = self.base_dir.join(p),
                    None if t.get("path").is_none() => self.missing(
                        t,
                        &path,
                        "path",
                        " (the directory holding the encrypted records, e.g. path = \"./rekey-store\")",
                    ),
                    None => {}
                }
                match t.get("identity") {
                    Some(e) => cfg.identity = self.value_ref(e, &path, true),
                    None => self.missing(
                        t,
                        &path,
                        "identity",
                        " (the age identity: { file = \"./rekey.key\" } or { env = \"NAME\" })",
                    ),
                }
                if let Some((recipients, _)) = self.strings(t, &path, "recipients") {
                    let e = t.get("recipients").expect("strings() found it");
                    for (i, r) in recipients.iter().enumerate() {
                        if r.parse::<age::x25519::Recipient>().is_err() {
                            let line = match &e.value.kind {
                                Kind::Array(items) => items.get(i).map_or(e.line, |n| n.line),
                                _ => e.line,
                            };
                            self.err(
                                line,
                                format!("{path}.recipients[{i}]"),
                                format!("\"{r}\" is not an age X25519 recipient (age1...)"),
                            );
                        }
                    }
                    cfg.recipients = recipients;
                }
            }
            out.insert(name.to_string(), BackendConfig::File(cfg));
        }
        out
    }

    fn providers(
        &mut self,
        root: &Table,
    ) -> (
        BTreeMap<String, ProviderConfig>,
        BTreeMap<String, ProviderFacts>,
    ) {
        let mut configs = BTreeMap::new();
        let mut facts = BTreeMap::new();
        for (name, t) in self.named_tables(root, "providers") {
            let (cfg, f) = self.provider(name, t);
            configs.insert(name.to_string(), cfg);
            facts.insert(name.to_string(), f);
        }
        (configs, facts)
    }

    fn provider(&mut self, name: &str, t: &Table) -> (ProviderConfig, ProviderFacts) {
        let path = format!("providers.{name}");
        let mut cfg = ProviderConfig {
            name: name.to_string(),
            kind: ProviderKind::Taegis(TaegisSettings {
                base_url: String::new(),
                environment: None,
                caller_chosen_secret: false,
            }),
            bootstrap: BootstrapConfig::Slot {
                slot: String::new(),
                seed: None,
            },
            tenant: None,
            rate_limit: 50.0,
            timeout: Duration::from_secs(30),
        };
        let Some("taegis") = self.type_of(t, &path, PROVIDER_TYPES) else {
            // Unknown type: its other keys mean nothing yet, and its slots are not blamed.
            let facts = ProviderFacts {
                is_taegis: false,
                has_tenant: true,
                bootstrap_slot: None,
            };
            return (cfg, facts);
        };
        self.known_keys(
            t,
            &path,
            &[
                "type",
                "environment",
                "url",
                "tenant",
                "rate_limit",
                "timeout",
                "in_place_secret",
                "bootstrap",
            ],
        );
        let mut taegis = TaegisSettings {
            base_url: String::new(),
            environment: None,
            caller_chosen_secret: false,
        };
        let env = self.string(t, &path, "environment");
        let url = self.string(t, &path, "url");
        match (env, url) {
            (Some(_), Some((_, e))) => self.err(
                e.line,
                join(&path, "url"),
                "give either environment or url, not both",
            ),
            (Some((env, e)), None) => match taegis_environment_url(env) {
                Some(u) => {
                    taegis.base_url = u.to_string();
                    taegis.environment = Some(env.to_ascii_lowercase());
                }
                None => {
                    let names = TAEGIS_ENVIRONMENTS.iter().flat_map(|(n, _)| n.iter());
                    self.err(
                        e.line,
                        join(&path, "environment"),
                        format!(
                            "unknown Taegis environment \"{env}\"; valid names: {} (or give url = \"https://...\")",
                            list(names)
                        ),
                    );
                }
            },
            (None, Some((u, e))) => {
                if let Some(base) = self.base_url(u, e, &path) {
                    taegis.base_url = base;
                }
            }
            (None, None) => {
                if t.get("environment").is_none() && t.get("url").is_none() {
                    self.missing(
                        t,
                        &path,
                        "environment",
                        " (a Taegis environment such as \"us1\", or url = \"https://...\")",
                    );
                }
            }
        }
        cfg.tenant = self.tenant(t, &path, true);
        if let Some(e) = t.get("rate_limit") {
            match e.value.kind {
                Kind::Int(n) if n > 0 => cfg.rate_limit = n as f64,
                Kind::Float(f) if f.is_finite() && f > 0.0 => cfg.rate_limit = f,
                Kind::Int(_) | Kind::Float(_) => self.err(
                    e.line,
                    join(&path, "rate_limit"),
                    "must be more than 0 (requests per second)",
                ),
                _ => self.wrong_type(e, &path, "a number of requests per second"),
            }
        }
        if let Some((d, _)) = self.duration(t, &path, "timeout", false) {
            cfg.timeout = d;
        }
        if let Some((v, e)) = self.string(t, &path, "in_place_secret") {
            match v {
                "server" => taegis.caller_chosen_secret = false,
                "caller" => taegis.caller_chosen_secret = true,
                _ => self.err(
                    e.line,
                    join(&path, "in_place_secret"),
                    format!("unknown value \"{v}\"; use \"server\" or \"caller\""),
                ),
            }
        }
        let mut bootstrap_slot = None;
        match t.get("bootstrap") {
            None => self.missing(
                t,
                &path,
                "bootstrap",
                " (the credential rekey uses: { client_id = {...}, client_secret = {...} } or { slot = \"NAME\" })",
            ),
            Some(e) => match &e.value.kind {
                Kind::Table(b) => {
                    let (bootstrap, slot) = self.bootstrap(b, &join(&path, "bootstrap"));
                    cfg.bootstrap = bootstrap;
                    bootstrap_slot = slot;
                }
                _ => self.wrong_type(e, &path, "a table"),
            },
        }
        cfg.kind = ProviderKind::Taegis(taegis);
        let facts = ProviderFacts {
            is_taegis: true,
            has_tenant: cfg.tenant.is_some() || t.get("tenant").is_some(),
            bootstrap_slot,
        };
        (cfg, facts)
    }

    /// A provider `url`: https, or http to a loopback host only. Never echoes a URL carrying
    /// credentials.
    fn base_url(&mut self, u: &str, e: &Entry, path: &str) -> Option<String> {
        let key = join(path, "url");
        let url = match reqwest::Url::parse(u.trim()) {
            Ok(url) => url,
            Err(err) => {
                self.err(e.line, key, format!("\"{u}\" is not a URL ({err})"));
                return None;
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            self.err(
                e.line,
                key,
                "the URL must not carry credentials (user:password@); give them in bootstrap",
            );
            return None;
        }
        let problem = match url.scheme() {
            "https" => None,
            "http" if is_loopback_host(&url) => None,
            "http" => Some(format!(
                "plain http is allowed only to loopback hosts (127.0.0.1, ::1, localhost); use https:// for \"{u}\""
            )),
            other => Some(format!(
                "unsupported scheme \"{other}\" in \"{u}\"; use https://"
            )),
        };
        let problem = problem.or_else(|| {
            (url.host_str().is_none_or(str::is_empty))
                .then(|| format!("\"{u}\" has no host"))
                .or_else(|| {
                    (url.query().is_some() || url.fragment().is_some())
                        .then(|| format!("\"{u}\" must not have a query or fragment"))
                })
        });
        match problem {
            Some(msg) => {
                self.err(e.line, key, msg);
                None
            }
            None => Some(url.as_str().trim_end_matches('/').to_string()),
        }
    }

    /// `tenant`: a string; numeric for Taegis.
    fn tenant(&mut self, t: &Table, path: &str, is_taegis: bool) -> Option<String> {
        let e = t.get("tenant")?;
        let key = join(path, "tenant");
        match &e.value.kind {
            Kind::Str(s) if s.trim().is_empty() => {
                self.err(e.line, key, "must not be empty");
                None
            }
            Kind::Str(s) => {
                if is_taegis && !s.chars().all(|c| c.is_ascii_digit()) {
                    self.err(
                        e.line,
                        key,
                        format!("Taegis tenant ids are numbers such as \"11772\"; \"{s}\" is not"),
                    );
                }
                Some(s.clone())
            }
            Kind::Int(n) => {
                self.err(
                    e.line,
                    key,
                    format!("must be a string: write tenant = \"{n}\" (in quotes)"),
                );
                Some(n.to_string())
            }
            _ => {
                self.wrong_type(e, path, "a string such as \"11772\"");
                None
            }
        }
    }

    fn bootstrap(&mut self, b: &Table, path: &str) -> (BootstrapConfig, Option<(String, usize)>) {
        self.known_keys(b, path, &["client_id", "client_secret", "slot", "seed"]);
        if b.get("slot").is_some() {
            for k in ["client_id", "client_secret"] {
                if let Some(e) = b.get(k) {
                    self.err(
                        e.line,
                        join(path, k),
                        "give either slot (with an optional seed) or client_id + client_secret, not both",
                    );
                }
            }
            let slot = self
                .string(b, path, "slot")
                .map(|(s, e)| (s.to_string(), e.line));
            let seed = self
                .table(b, path, "seed")
                .map(|t| self.pair(t, &join(path, "seed")));
            let name = slot.as_ref().map(|(s, _)| s.clone()).unwrap_or_default();
            (BootstrapConfig::Slot { slot: name, seed }, slot)
        } else {
            if let Some(e) = b.get("seed") {
                self.err(
                    e.line,
                    join(path, "seed"),
                    "seed is used only with slot = \"NAME\" (the seed pair is adopted by that slot)",
                );
            }
            (BootstrapConfig::Static(self.pair(b, path)), None)
        }
    }

    fn pair(&mut self, t: &Table, path: &str) -> PairRef {
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
    fn value_ref(&mut self, e: &Entry, path: &str, secret: bool) -> ValueRef {
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

    fn slots(
        &mut self,
        root: &Table,
        defaults: &Defaults,
        providers: &BTreeMap<String, ProviderConfig>,
        facts: &BTreeMap<String, ProviderFacts>,
        backends: &BTreeMap<String, BackendConfig>,
    ) -> (Vec<SlotConfig>, Vec<SlotLines>) {
        let mut slots = Vec::new();
        let mut lines = Vec::new();
        let Some(e) = root.get("slots") else {
            return (slots, lines);
        };
        let Kind::Array(items) = &e.value.kind else {
            self.err(
                e.line,
                "slots",
                format!(
                    "must be an array of tables (write each slot as [[slots]]), found {}",
                    e.value.kind.describe()
                ),
            );
            return (slots, lines);
        };
        if backends.is_empty() && !items.is_empty() {
            self.err(
                items[0].line,
                "backends",
                "no backend is defined: add a [backends.NAME] table (e.g. type = \"file\") to store the slots' credentials in",
            );
        }
        let mut seen: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (i, node) in items.iter().enumerate() {
            let path = format!("slots[{i}]");
            let Kind::Table(t) = &node.kind else {
                self.err(
                    node.line,
                    path,
                    format!("must be a table, found {}", node.kind.describe()),
                );
                continue;
            };
            let (slot, l) = self.slot(t, path, defaults, providers, facts, backends);
            if !slot.name.is_empty() {
                if let Some((j, line)) = seen.get(&slot.name) {
                    let name_line = t.get("name").map_or(t.line, |e| e.line);
                    self.err(
                        name_line,
                        format!("{}.name", l.path),
                        format!(
                            "slot name \"{}\" is already used by slots[{j}] (line {line}); slot names must be unique",
                            slot.name
                        ),
                    );
                } else {
                    seen.insert(slot.name.clone(), (i, t.line));
                }
            }
            slots.push(slot);
            lines.push(l);
        }
        (slots, lines)
    }

    fn slot(
        &mut self,
        t: &Table,
        path: String,
        defaults: &Defaults,
        providers: &BTreeMap<String, ProviderConfig>,
        facts: &BTreeMap<String, ProviderFacts>,
        backends: &BTreeMap<String, BackendConfig>,
    ) -> (SlotConfig, SlotLines) {
        let p = path.as_str();
        self.known_keys(
            t,
            p,
            &[
                "name", "provider", "tenant", "roles", "strategy", "max_age", "grace", "backend",
                "retired",
            ],
        );
        let mut slot = SlotConfig {
            name: String::new(),
            provider: String::new(),
            tenant: String::new(),
            roles: Vec::new(),
            strategy: defaults.strategy,
            max_age: defaults.max_age.0,
            grace: defaults.grace.0,
            backend: String::new(),
            retired: false,
            line: t.line,
        };
        match self.string(t, p, "name") {
            Some((name, e)) => {
                if !is_valid_slot_name(name) {
                    self.err(
                        e.line,
                        join(p, "name"),
                        format!(
                            "\"{name}\" is not a valid slot name: use 1-100 of a-z, 0-9, '.', '_', '-', starting with a letter or digit (it becomes a file name and part of a client name)"
                        ),
                    );
                }
                slot.name = name.to_string();
            }
            None if t.get("name").is_none() => self.missing(t, p, "name", ""),
            None => {}
        }
        let mut provider_facts = None;
        match self.string(t, p, "provider") {
            Some((name, e)) => {
                slot.provider = name.to_string();
                provider_facts = facts.get(name);
                if provider_facts.is_none() {
                    self.err(
                        e.line,
                        join(p, "provider"),
                        undefined("provider", name, facts.keys()),
                    );
                }
            }
            None if t.get("provider").is_none() => self.missing(
                t,
                p,
                "provider",
                &format!(" (one of: {})", list(facts.keys())),
            ),
            None => {}
        }
        let is_taegis = provider_facts.is_some_and(|f| f.is_taegis);
        match self.tenant(t, p, is_taegis) {
            Some(tenant) => slot.tenant = tenant,
            None => {
                if let Some(f) = provider_facts {
                    match providers.get(&slot.provider).and_then(|c| c.tenant.clone()) {
                        Some(tenant) => slot.tenant = tenant,
                        None if !f.has_tenant && t.get("tenant").is_none() => self.err(
                            t.line,
                            join(p, "tenant"),
                            format!(
                                "missing tenant: set tenant = \"...\" here or a default tenant in [providers.{}]",
                                slot.provider
                            ),
                        ),
                        None => {}
                    }
                }
            }
        }
        let mut roles_line = t.line;
        if let Some((roles, line)) = self.strings(t, p, "roles") {
            slot.roles = roles;
            roles_line = line;
        }
        if let Some(s) = self.strategy(t, p) {
            slot.strategy = s;
        }
        let max_age = self.duration(t, p, "max_age", false);
        let grace = self.duration(t, p, "grace", true);
        if let Some((d, _)) = max_age {
            slot.max_age = d;
        }
        if let Some((d, _)) = grace {
            slot.grace = d;
        }
        if slot.grace >= slot.max_age {
            let at = match (grace, max_age) {
                (Some((_, l)), _) => Some(("grace", l)),
                (None, Some((_, l))) => Some(("max_age", l)),
                // Both from [defaults]: reported there, once.
                (None, None) => None,
            };
            if let Some((key, line)) = at {
                self.err(line, join(p, key), grace_message(slot.grace, slot.max_age));
            }
        }
        match self.string(t, p, "backend") {
            Some((name, e)) => {
                if !backends.contains_key(name) {
                    self.err(
                        e.line,
                        join(p, "backend"),
                        undefined("backend", name, backends.keys()),
                    );
                }
                slot.backend = name.to_string();
            }
            None if t.get("backend").is_some() => {}
            None => match (&defaults.backend, backends.len()) {
                (Some(name), _) => slot.backend = name.clone(),
                (None, 1) => slot.backend = backends.keys().next().cloned().unwrap_or_default(),
                // No backend at all: reported once for the whole inventory.
                (None, 0) => {}
                (None, n) => self.err(
                    t.line,
                    join(p, "backend"),
                    format!(
                        "which backend? {n} are defined ({}): set backend here or in [defaults]",
                        list(backends.keys())
                    ),
                ),
            },
        }
        let retired_line = t.get("retired").map_or(t.line, |e| e.line);
        if let Some(b) = self.boolean(t, p, "retired") {
            slot.retired = b;
        }
        let lines = SlotLines {
            path,
            roles: roles_line,
            retired: retired_line,
        };
        (slot, lines)
    }

    /// `bootstrap = { slot = ... }` must name a live slot of the same provider that can manage
    /// clients.
    fn bootstrap_slots(
        &mut self,
        providers: &BTreeMap<String, ProviderConfig>,
        facts: &BTreeMap<String, ProviderFacts>,
        slots: &[SlotConfig],
        lines: &[SlotLines],
    ) {
        for (pname, f) in facts {
            let Some((sname, line)) = &f.bootstrap_slot else {
                continue;
            };
            let key = format!("providers.{pname}.bootstrap.slot");
            let Some(i) = slots.iter().position(|s| &s.name == sname) else {
                let own = slots
                    .iter()
                    .filter(|s| &s.provider == pname && !s.name.is_empty())
                    .map(|s| &s.name);
                self.err(
                    *line,
                    key,
                    format!(
                        "bootstrap slot \"{sname}\" is not a slot in this inventory (slots of provider {pname}: {})",
                        list(own)
                    ),
                );
                continue;
            };
            let slot = &slots[i];
            if &slot.provider != pname {
                self.err(
                    *line,
                    key,
                    format!(
                        "bootstrap slot \"{sname}\" belongs to provider \"{}\", not \"{pname}\": a provider's bootstrap slot must be one of its own slots",
                        slot.provider
                    ),
                );
                continue;
            }
            if slot.retired {
                self.err(
                    lines[i].retired,
                    format!("{}.retired", lines[i].path),
                    format!(
                        "slot \"{sname}\" holds the bootstrap credential of provider \"{pname}\" ({key}, line {line}) and cannot be retired; choose another bootstrap first"
                    ),
                );
            }
            let taegis = matches!(
                providers.get(pname).map(|p| &p.kind),
                Some(ProviderKind::Taegis(_))
            );
            if taegis && !slot.roles.iter().any(|r| r == TAEGIS_TENANT_ADMIN_ROLE) {
                self.err(
                    lines[i].roles,
                    format!("{}.roles", lines[i].path),
                    format!(
                        "slot \"{sname}\" holds the bootstrap credential of provider \"{pname}\" ({key}, line {line}), so it must manage clients: its roles must include Tenant Admin ({TAEGIS_TENANT_ADMIN_ROLE})"
                    ),
                );
            }
        }
    }
}

fn grace_message(grace: Duration, max_age: Duration) -> String {
    format!(
        "grace ({}) must be shorter than max_age ({}): the previous credential has to be retired before the next rotation is due",
        fmt_duration(grace),
        fmt_duration(max_age)
    )
}

fn undefined<'a>(what: &str, name: &str, defined: impl Iterator<Item = &'a String>) -> String {
    format!(
        "{what} \"{name}\" is not defined; defined {what}s: {}",
        list(defined)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"[providers.p]
type = "taegis"
environment = "us1"
bootstrap = { client_id = { env = "ID" }, client_secret = { env = "SECRET" } }

[backends.b]
type = "file"
path = "store"
identity = { file = "key.txt" }

[[slots]]
name = "s1"
provider = "p"
tenant = "1"
"#;

    fn parse_ok(text: &str) -> Inventory {
        match parse(text, Path::new("/etc/rekey/inv.toml")) {
            Ok(inv) => inv,
            Err(e) => panic!("{e}"),
        }
    }

    fn errors(text: &str) -> Vec<ConfigError> {
        match parse(text, Path::new("inv.toml")) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.0,
        }
    }

    fn one(text: &str) -> ConfigError {
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        errs.into_iter().next().unwrap()
    }

    #[test]
    fn minimal_inventory_gets_defaults() {
        let inv = parse_ok(BASE);
        assert_eq!(inv.settings.name_prefix, "rekey-");
        assert_eq!(inv.settings.concurrency, 16);
        let s = &inv.slots[0];
        assert_eq!(s.name, "s1");
        assert_eq!(s.line, 11);
        assert_eq!(s.strategy, Strategy::Alternate);
        assert_eq!(s.max_age, Duration::from_secs(30 * 86400));
        assert_eq!(s.grace, Duration::from_secs(86400));
        assert_eq!(s.backend, "b", "the only backend is the default");
        assert!(!s.retired);
        let p = &inv.providers["p"];
        assert_eq!(p.rate_limit, 50.0);
        assert_eq!(p.timeout, Duration::from_secs(30));
        let ProviderKind::Taegis(t) = &p.kind;
        assert_eq!(t.base_url, "https://api.ctpx.secureworks.com");
        assert_eq!(t.environment.as_deref(), Some("us1"));
        assert!(!t.caller_chosen_secret);
        assert_eq!(
            p.bootstrap,
            BootstrapConfig::Static(PairRef {
                client_id: ValueRef::Env("ID".into()),
                client_secret: ValueRef::Env("SECRET".into()),
            })
        );
        let BackendConfig::File(b) = &inv.backends["b"];
        assert_eq!(b.path, Path::new("/etc/rekey/store"));
        assert_eq!(b.identity, ValueRef::File("/etc/rekey/key.txt".into()));
    }

    #[test]
    fn the_sample_inventory_parses_with_every_option() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/inventory.toml");
        let inv = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.slots.len(), 4);
        let s = &inv.slots[0];
        assert_eq!(s.strategy, Strategy::InPlace);
        assert_eq!(s.max_age, Duration::from_secs(7 * 86400));
        assert_eq!(s.grace, Duration::from_secs(3600));
        assert_eq!(inv.slots[1].tenant, "11772", "tenant from the provider");
        assert!(inv.slots[3].retired);
        let eu = &inv.providers["taegis-eu"];
        let ProviderKind::Taegis(t) = &eu.kind;
        assert_eq!(t.base_url, "https://api.echo.taegis.secureworks.com");
        assert_eq!(t.environment, None);
        let BootstrapConfig::Slot { slot, seed } = &eu.bootstrap else {
            panic!("slot bootstrap expected");
        };
        assert_eq!(slot, "rekey-admin-eu");
        let seed = seed.as_ref().expect("seed");
        assert_eq!(seed.client_id, ValueRef::Literal("seed-client-id".into()));
        assert_eq!(
            seed.client_secret,
            ValueRef::File(path.parent().unwrap().join("./secrets/eu-seed-secret"))
        );
        let BackendConfig::File(b) = &inv.backends["local"];
        assert_eq!(b.recipients.len(), 1);
    }

    #[test]
    fn environment_names_are_case_insensitive() {
        let inv = parse_ok(&BASE.replace("\"us1\"", "\"Delta\""));
        let ProviderKind::Taegis(t) = &inv.providers["p"].kind;
        assert_eq!(t.base_url, "https://api.delta.taegis.secureworks.com");
        assert_eq!(t.environment.as_deref(), Some("delta"));
    }

    #[test]
    fn loopback_http_url_is_allowed_and_trimmed() {
        for url in [
            "http://127.0.0.1:8080/",
            "http://localhost:1",
            "http://[::1]:9/api/",
        ] {
            let text = BASE.replace("environment = \"us1\"", &format!("url = \"{url}\""));
            let inv = parse_ok(&text);
            let ProviderKind::Taegis(t) = &inv.providers["p"].kind;
            assert!(!t.base_url.ends_with('/'), "{}", t.base_url);
        }
    }

    #[test]
    fn zero_grace_is_allowed() {
        let inv = parse_ok(&format!("{BASE}grace = \"0s\"\n"));
        assert_eq!(inv.slots[0].grace, Duration::ZERO);
    }

    #[test]
    fn a_syntax_error_is_one_error_with_its_line() {
        let e = one("[settings]\nprune = false\nconcurrency = = 3\n");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("TOML syntax error"), "{}", e.message);
    }

    #[test]
    fn unknown_key_suggests_the_near_one() {
        let e = one(&BASE.replace("environment", "enviroment"));
        assert_eq!(e.key, "providers.p.enviroment");
        assert_eq!(e.line, Some(3));
        assert!(
            e.message.contains("did you mean `environment`?"),
            "{}",
            e.message
        );
        assert!(
            e.message
                .contains("known keys here: type, environment, url"),
            "{}",
            e.message
        );
    }

    #[test]
    fn literal_secret_is_refused_and_never_echoed() {
        let text = BASE.replace(
            "client_secret = { env = \"SECRET\" }",
            "client_secret = \"hunter2-s3cr3t\"",
        );
        let e = one(&text);
        assert_eq!(e.key, "providers.p.bootstrap.client_secret");
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("by reference"));
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn secret_pasted_as_env_name_is_not_echoed() {
        let text = BASE.replace("{ env = \"SECRET\" }", "{ env = \"abc/def+ghi=\" }");
        let e = one(&text);
        assert_eq!(e.key, "providers.p.bootstrap.client_secret.env");
        assert!(!e.message.contains("abc/def"), "{}", e.message);
    }

    #[test]
    fn url_with_credentials_is_refused_without_echo() {
        let text = BASE.replace(
            "environment = \"us1\"",
            "url = \"https://user:pa55word@api.example\"",
        );
        let e = one(&text);
        assert_eq!(e.key, "providers.p.url");
        assert!(!e.message.contains("pa55word"), "{}", e.message);
    }

    #[test]
    fn line_counting() {
        let l = Lines::new("a\nbb\n\nc");
        assert_eq!(
            [l.line(0), l.line(1), l.line(2), l.line(5), l.line(6)],
            [1, 1, 2, 3, 4]
        );
    }

    #[test]
    fn distance_is_levenshtein() {
        assert_eq!(distance("grace", "grcae"), 2);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("max_age", "max_age"), 0);
    }
}
