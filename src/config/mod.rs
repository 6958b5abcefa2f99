//! The inventory: typed, validated, with no I/O beyond reading the file itself.
//!
//! `load` parses the TOML and validates everything it can without the network, collecting every
//! problem (file, line, key, message) before returning. References to secrets (`env`, `file`) are
//! kept as references here and resolved only when a command needs them (`resolve`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod backends;
mod defaults;
mod providers;
mod settings;
mod slots;

pub use crate::check::values::{
    ConfigError, ConfigErrors, DrainMode, DrainPolicy, OnDrainTimeout, PairRef, Strategy, ValueRef,
};

pub use crate::backend::aws::AwsBackendConfig;
pub use crate::backend::file::FileBackendConfig;
pub use crate::backend::vault::{VaultAuth, VaultBackendConfig};
pub(crate) use crate::check::Checker;
pub use crate::check::is_valid_slot_name;
use crate::check::tree::Lines;
pub(crate) use crate::check::tree::Table;
use crate::provider::cisco::SLOT_RULES as CISCO_SLOT_RULES;
pub use crate::provider::cisco::{CISCO_OAUTH_SCOPE, CISCO_REGIONS, CiscoSettings};
pub use crate::provider::taegis::{
    TAEGIS_ENVIRONMENTS, TAEGIS_TENANT_ADMIN_ROLE, TaegisSettings, taegis_environment_url,
};

/// The tenant recorded for Cisco slots that name none: the org comes with the credential.
pub const CISCO_DEFAULT_TENANT: &str = match CISCO_SLOT_RULES.tenant.fallback() {
    Some(tenant) => tenant,
    None => panic!("a Cisco slot needs no tenant"),
};

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
    /// Shared, not copied, by the run's targets (one per slot at 100,000 slots).
    pub slots: Vec<std::sync::Arc<SlotConfig>>,
    /// `[defaults] grace` (24h unless set): the grace of a slot that left the inventory and is
    /// retired by `prune` (docs/src/protocol.md, "Retire").
    pub default_grace: Duration,
}

/// `[settings]`: run-wide knobs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Prefix of managed client names (default `rekey-`).
    pub name_prefix: String,
    /// Retire entries rekey owns that are no longer in the inventory (default false). They
    /// retire with `[defaults] grace`; never with an inventory that lists no `[[slots]]`.
    pub prune: bool,
    /// Tells this deployment's clients from other deployments' on the same tenant: part of
    /// every managed name (`<prefix><instance>-<slot>-g<gen>-<op>`); empty = none
    /// (docs/src/protocol.md, "Ownership of clients").
    pub instance: String,
    /// A run refuses (exit 2) to start retiring more than this many slots of one backend, or
    /// more than `max_retire_percent` of the slots it holds, without `--allow-mass-retire`.
    pub max_retire: usize,
    pub max_retire_percent: u32,
    /// Slots worked on at once (default 16; `--concurrency` overrides).
    pub concurrency: usize,
    /// `concurrency = "auto"`: found while the run goes, within `concurrency_min` and
    /// `concurrency_max` (None: the engine's defaults; src/engine/concurrency.rs).
    pub concurrency_auto: bool,
    pub concurrency_min: Option<usize>,
    pub concurrency_max: Option<usize>,
    /// How long a run's claim on a slot lasts without being renewed (default 10m).
    pub lease_ttl: Duration,
    /// Token exchanges tried with a new pair before giving up for this run (default 5), spaced
    /// by `verify_delay` to ride out propagation delay.
    pub verify_attempts: u32,
    pub verify_delay: Duration,
    /// Runs in a row a pending pair may fail verification before it is discarded (default 3).
    pub max_verify_failures: u32,
    /// `rekey run`: cron expression (seconds optional), its time zone, and a random delay
    /// added to each fire time (docs/src/operating.md). `--schedule`, `--timezone` and
    /// `--jitter` override.
    pub schedule: String,
    pub timezone: String,
    pub jitter: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name_prefix: DEFAULT_NAME_PREFIX.to_string(),
            prune: false,
            instance: String::new(),
            max_retire: 5,
            max_retire_percent: 50,
            concurrency: 16,
            concurrency_auto: false,
            concurrency_min: None,
            concurrency_max: None,
            lease_ttl: Duration::from_secs(600),
            verify_attempts: 5,
            verify_delay: Duration::from_secs(2),
            max_verify_failures: 3,
            schedule: crate::schedule::DEFAULT_SCHEDULE.to_string(),
            timezone: "UTC".to_string(),
            jitter: Duration::ZERO,
        }
    }
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
    /// An extra CA (PEM) trusted for this provider's TLS, besides the public roots.
    pub ca_cert: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub enum ProviderKind {
    Taegis(TaegisSettings),
    Cisco(CiscoSettings),
}

impl ProviderKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            ProviderKind::Taegis(_) => "taegis",
            ProviderKind::Cisco(_) => "cisco",
        }
    }

    /// What a provider of an unknown type holds: never built, since its inventory is refused.
    pub(crate) fn placeholder() -> Self {
        ProviderKind::Taegis(TaegisSettings {
            base_url: String::new(),
            environment: None,
            caller_chosen_secret: false,
        })
    }
}

#[derive(Clone, Debug)]
pub enum BackendConfig {
    File(FileBackendConfig),
    Exec(crate::backend::exec::ExecBackendConfig),
    Vault(VaultBackendConfig),
    Aws(AwsBackendConfig),
}

impl BackendConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            BackendConfig::File(_) => "file",
            BackendConfig::Exec(_) => "exec",
            BackendConfig::Vault(_) => "vault",
            BackendConfig::Aws(_) => "aws",
        }
    }
}

#[derive(Clone, Debug)]
pub struct SlotConfig {
    pub name: String,
    pub provider: String,
    pub tenant: String,
    /// What the client may do: role ids or scopes, listed under the key its platform takes
    /// (`SlotRules::grants_key`); empty means the platform default.
    pub roles: Vec<String>,
    pub strategy: Strategy,
    pub max_age: Duration,
    pub grace: Duration,
    /// When a draining client may be deleted after its grace.
    pub drain: DrainPolicy,
    pub backend: String,
    /// Backends that receive a copy of the slot's record after the primary (`backend`) is
    /// written; a failed mirror write fails the slot and is retried by the next run.
    pub mirrors: Vec<String>,
    pub retired: bool,
    /// Line of the slot's table in the inventory, for messages.
    pub line: usize,
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

/// Values of `type` accepted in `[providers.*]` and `[backends.*]`.
pub const PROVIDER_TYPES: &[&str] = &["taegis", "cisco"];
pub const BACKEND_TYPES: &[&str] = &["file", "exec", "vault", "aws"];

/// Parses and validates inventory text; `path` is used for messages and relative paths only.
///
/// No I/O and no environment lookups: references stay references. Every problem is collected;
/// the inventory is returned only when there is none.
pub fn parse(text: &str, path: &Path) -> std::result::Result<Inventory, ConfigErrors> {
    let lines = Lines::new(text);
    // A long run of `[[slots]]` is parsed a section at a time (src/check/sections.rs); any
    // other document, or one that does not parse, whole, so errors are the parser's own.
    let root = match crate::check::sections::document(text, &lines) {
        Some(root) => root,
        None => match toml::de::DeTable::parse(text) {
            Ok(doc) => crate::check::tree::document(doc.get_ref(), &lines),
            Err(e) => return Err(ConfigErrors(vec![syntax_error(text, path, &e)])),
        },
    };
    let mut c = Checker {
        file: path.to_path_buf(),
        base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        errors: Vec::new(),
    };
    let inventory = c.inventory(root);
    if c.errors.is_empty() {
        Ok(inventory)
    } else {
        // Stable: problems on one line keep the order they were found in.
        c.errors.sort_by_key(|e| e.line.unwrap_or(0));
        Err(ConfigErrors(c.errors))
    }
}

fn syntax_error(text: &str, path: &Path, e: &toml::de::Error) -> ConfigError {
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

impl Checker {
    /// The inventory from the tree, which it takes: each slot's part of the tree is dropped as
    /// soon as that slot is checked, so the tree and the slots never both hold 100,000 slots.
    fn inventory(&mut self, mut root: Table) -> Inventory {
        let root = &mut root;
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
        self.bootstrap_slots(&facts, &slots, &slot_lines);
        if settings.prune && slots.is_empty() {
            // An empty inventory is a mistake far more often than a wish to retire everything
            // (a template that rendered nothing, the wrong file): it never prunes.
            let line = self
                .table(root, "", "settings")
                .and_then(|t| t.get("prune"))
                .map(|e| e.line);
            if let Some(line) = line {
                self.err(line, "settings.prune", EMPTY_PRUNE);
            }
        }
        Inventory {
            source: self.file.clone(),
            settings,
            providers,
            backends,
            slots,
            default_grace: defaults.grace.0,
        }
    }
}

/// Longest `settings.instance`: managed names stay far below the platforms' 256 characters.
pub const MAX_INSTANCE_LEN: usize = 32;

/// `settings.instance`: 1 to 32 of a-z, 0-9 and '-', not starting or ending with '-'.
pub fn is_valid_instance(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_INSTANCE_LEN
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

const EMPTY_PRUNE: &str = "prune = true with no [[slots]] would retire every slot rekey holds; an inventory with no [[slots]] never prunes: list the slots (retired = true for those to retire), or set prune = false";

#[cfg(test)]
mod tests;
