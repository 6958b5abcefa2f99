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

/// Parses and validates inventory text; `path` is used for messages and relative paths only.
pub fn parse(text: &str, path: &Path) -> std::result::Result<Inventory, ConfigErrors> {
    let _ = text;
    Err(ConfigErrors(vec![ConfigError {
        file: path.to_path_buf(),
        line: None,
        key: "-".into(),
        message: "not yet implemented".into(),
    }]))
}
