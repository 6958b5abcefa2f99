//! The inventory: typed, validated, with no I/O beyond reading the file itself.
//!
//! `load` parses the TOML and validates everything it can without the network, collecting every
//! problem (file, line, key, message) before returning. References to secrets (`env`, `file`) are
//! kept as references here and resolved only when a command needs them (`resolve`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) mod check;
pub(crate) mod tree;
pub mod values;

pub use values::{ConfigError, ConfigErrors, PairRef, Strategy, ValueRef};

pub use crate::backend::aws::AwsBackendConfig;
pub use crate::backend::file::FileBackendConfig;
pub use crate::backend::vault::{VaultAuth, VaultBackendConfig};
pub use crate::provider::cisco::{CISCO_OAUTH_SCOPE, CISCO_REGIONS, CiscoSettings};
pub use crate::provider::taegis::{
    TAEGIS_ENVIRONMENTS, TAEGIS_TENANT_ADMIN_ROLE, TaegisSettings, taegis_environment_url,
};
pub(crate) use check::Checker;
pub use check::is_valid_slot_name;
use check::*;
use tree::Lines;
pub(crate) use tree::{Kind, Table};

/// The tenant recorded for Cisco slots that name none: the org comes with the credential.
pub const CISCO_DEFAULT_TENANT: &str = "org";

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
    /// `[defaults] grace` (24h unless set): the grace of a slot that left the inventory and is
    /// retired by `prune` (README "Removing slots").
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
    /// every managed name (`<prefix><instance>-<slot>-g<gen>-<op>`); empty = none (README
    /// "Ownership of clients").
    pub instance: String,
    /// A run refuses (exit 2) to start retiring more than this many slots of one backend, or
    /// more than `max_retire_percent` of the slots it holds, without `--allow-mass-retire`.
    pub max_retire: usize,
    pub max_retire_percent: u32,
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
    /// `rekey run`: cron expression (seconds optional), its time zone, and a random delay
    /// added to each fire time (README "Operating rekey"). `--schedule`, `--timezone` and
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
    /// Role ids given to the client (Taegis); empty means the platform default.
    pub roles: Vec<String>,
    pub strategy: Strategy,
    pub max_age: Duration,
    pub grace: Duration,
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
/// Keys every `[providers.*]` table may have, whatever its type.
const PROVIDER_COMMON_KEYS: &[&str] = &["tenant", "rate_limit", "timeout", "bootstrap", "ca_cert"];
pub const BACKEND_TYPES: &[&str] = &["file", "exec", "vault", "aws"];

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
    is_cisco: bool,
    has_tenant: bool,
    bootstrap_slot: Option<(String, usize)>,
}

/// Extra locations of a slot, for checks that run after every slot is known.
struct SlotLines {
    path: String,
    roles: usize,
    retired: usize,
}

impl Checker {
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

    fn settings(&mut self, t: &Table) -> Settings {
        let p = "settings";
        self.known_keys(
            t,
            p,
            &[
                "name_prefix",
                "instance",
                "prune",
                "max_retire",
                "max_retire_percent",
                "concurrency",
                "lease_ttl",
                "verify_attempts",
                "verify_delay",
                "max_verify_failures",
                "schedule",
                "timezone",
                "jitter",
            ],
        );
        let mut s = Settings::default();
        if let Some((prefix, e)) = self.string(t, p, "name_prefix") {
            let ok = !prefix.is_empty()
                && prefix.len() <= 64
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
                        "\"{prefix}\" is not a valid name prefix: use 1 to 64 of a-z, 0-9, '-', '_', '.'"
                    ),
                );
            }
        }
        if let Some((instance, e)) = self.string(t, p, "instance") {
            if is_valid_instance(instance) {
                s.instance = instance.to_string();
            } else {
                self.err(
                    e.line,
                    "settings.instance",
                    format!(
                        "\"{instance}\" is not a valid instance name: use 1 to {MAX_INSTANCE_LEN} of a-z, 0-9 and '-', starting and ending with a letter or digit"
                    ),
                );
            }
        }
        if let Some(b) = self.boolean(t, p, "prune") {
            s.prune = b;
        }
        if let Some(n) = self.integer(t, p, "max_retire", 0, 100_000) {
            s.max_retire = n as usize;
        }
        if let Some(n) = self.integer(t, p, "max_retire_percent", 0, 100) {
            s.max_retire_percent = n as u32;
        }
        if let Some(n) = self.integer(t, p, "concurrency", 1, 100_000) {
            s.concurrency = n as usize;
        }
        if let Some((d, _)) = self.duration_at_most(t, p, "lease_ttl", false, MAX_LEASE_TTL) {
            s.lease_ttl = d;
        }
        if let Some(n) = self.integer(t, p, "verify_attempts", 1, 1_000) {
            s.verify_attempts = n as u32;
        }
        if let Some((d, _)) = self.duration_at_most(t, p, "verify_delay", true, MAX_VERIFY_DELAY) {
            s.verify_delay = d;
        }
        if let Some(n) = self.integer(t, p, "max_verify_failures", 1, 1_000) {
            s.max_verify_failures = n as u32;
        }
        if let Some((v, e)) = self.string(t, p, "schedule") {
            s.schedule = v.to_string();
            if let Err(err) = crate::schedule::Schedule::parse(v, "UTC", Duration::ZERO) {
                self.err(e.line, "settings.schedule", err.to_string());
            }
        }
        if let Some((v, e)) = self.string(t, p, "timezone") {
            s.timezone = v.to_string();
            if v.parse::<chrono_tz::Tz>().is_err() {
                self.err(
                    e.line,
                    "settings.timezone",
                    format!("\"{v}\" is not an IANA time zone name (such as UTC or Europe/Berlin)"),
                );
            }
        }
        if let Some((d, _)) = self.duration_at_most(t, p, "jitter", true, MAX_JITTER) {
            s.jitter = d;
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

    fn backends(&mut self, root: &Table) -> BTreeMap<String, BackendConfig> {
        let mut out = BTreeMap::new();
        for (name, t) in self.named_tables(root, "backends") {
            let path = format!("backends.{name}");
            // An unknown type is still a defined backend: slots naming it are not also wrong.
            let config = match self.type_of(t, &path, BACKEND_TYPES) {
                Some("file") => {
                    BackendConfig::File(crate::backend::file::parse_config(self, name, t, &path))
                }
                Some("exec") => {
                    BackendConfig::Exec(crate::backend::exec::parse_config(self, name, t, &path))
                }
                Some("vault") => {
                    BackendConfig::Vault(crate::backend::vault::parse_config(self, name, t, &path))
                }
                Some("aws") => {
                    BackendConfig::Aws(crate::backend::aws::parse_config(self, name, t, &path))
                }
                _ => BackendConfig::File(FileBackendConfig::placeholder(name)),
            };
            out.insert(name.to_string(), config);
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
            ca_cert: None,
        };
        let ty = self.type_of(t, &path, PROVIDER_TYPES);
        let is_cisco = ty == Some("cisco");
        if ty.is_none() {
            // Unknown type: its other keys mean nothing yet, and its slots are not blamed.
            let facts = ProviderFacts {
                is_taegis: false,
                is_cisco: false,
                has_tenant: true,
                bootstrap_slot: None,
            };
            return (cfg, facts);
        }
        let own_keys = if is_cisco {
            crate::provider::cisco::SETTINGS_KEYS
        } else {
            crate::provider::taegis::SETTINGS_KEYS
        };
        let known: Vec<&str> = ["type"]
            .iter()
            .chain(own_keys)
            .chain(PROVIDER_COMMON_KEYS)
            .copied()
            .collect();
        self.known_keys(t, &path, &known);
        let kind = if is_cisco {
            ProviderKind::Cisco(crate::provider::cisco::parse_settings(self, t, &path))
        } else {
            ProviderKind::Taegis(crate::provider::taegis::parse_settings(self, t, &path))
        };
        cfg.tenant = self.tenant(t, &path, !is_cisco);
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
        if let Some((d, _)) = self.duration_at_most(t, &path, "timeout", false, MAX_TIMEOUT) {
            cfg.timeout = d;
        }
        match self.string(t, &path, "ca_cert") {
            Some((p, e)) if p.trim().is_empty() => {
                self.err(e.line, join(&path, "ca_cert"), "must not be empty")
            }
            Some((p, _)) => cfg.ca_cert = Some(self.base_dir.join(p)),
            None => {}
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
        cfg.kind = kind;
        let facts = ProviderFacts {
            is_taegis: !is_cisco,
            is_cisco,
            // A Cisco org comes with the bootstrap credential: a tenant is optional there.
            has_tenant: is_cisco || cfg.tenant.is_some() || t.get("tenant").is_some(),
            bootstrap_slot,
        };
        (cfg, facts)
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
                "name", "provider", "tenant", "roles", "scopes", "strategy", "max_age", "grace",
                "backend", "mirrors", "retired",
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
            mirrors: Vec::new(),
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
                        // The org is the bootstrap credential's; the record still names one.
                        None if f.is_cisco => slot.tenant = CISCO_DEFAULT_TENANT.to_string(),
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
        let is_cisco = provider_facts.is_some_and(|f| f.is_cisco);
        if let Some(e) = t.get("scopes") {
            if !is_cisco && provider_facts.is_some() {
                self.err(
                    e.line,
                    join(p, "scopes"),
                    "scopes are for Cisco slots; Taegis clients take roles = [\"<role id>\", ...]",
                );
            } else if t.get("roles").is_some() {
                self.err(
                    e.line,
                    join(p, "scopes"),
                    "give either scopes or roles (its alias on Cisco slots), not both",
                );
            } else if let Some((scopes, line)) = self.strings(t, p, "scopes") {
                slot.roles = scopes;
                roles_line = line;
            }
        }
        if is_cisco
            && slot.roles.is_empty()
            && t.get("roles").is_none()
            && t.get("scopes").is_none()
        {
            self.err(
                t.line,
                join(p, "scopes"),
                "a Cisco client needs its scopes: set scopes = [\"...\"] (e.g. [\"enrich:read\", \"inspect:read\"])",
            );
        }
        let strategy_entry = t.get("strategy");
        if let Some(s) = self.strategy(t, p) {
            slot.strategy = s;
        }
        if is_cisco && slot.strategy == Strategy::InPlace {
            let (line, from) = match strategy_entry {
                Some(e) => (e.line, ""),
                None => (t.line, " (from [defaults])"),
            };
            self.err(
                line,
                join(p, "strategy"),
                format!(
                    "slot \"{}\": strategy \"in-place\"{from} is not possible on Cisco provider \"{}\", which has no password reset; use strategy = \"alternate\"",
                    slot.name, slot.provider
                ),
            );
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
        if let Some((mirrors, line)) = self.strings(t, p, "mirrors") {
            let key = join(p, "mirrors");
            for (i, name) in mirrors.iter().enumerate() {
                if !backends.contains_key(name) {
                    self.err(
                        line,
                        key.clone(),
                        undefined("backend", name, backends.keys()),
                    );
                } else if *name == slot.backend {
                    self.err(line, key.clone(), format!("\"{name}\" is this slot's primary backend; a mirror must be another one"));
                } else if mirrors[..i].contains(name) {
                    self.err(line, key.clone(), format!("\"{name}\" is listed twice"));
                }
            }
            slot.mirrors = mirrors;
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
            let cisco = matches!(
                providers.get(pname).map(|p| &p.kind),
                Some(ProviderKind::Cisco(_))
            );
            if cisco && !slot.roles.iter().any(|r| r == CISCO_OAUTH_SCOPE) {
                self.err(
                    lines[i].roles,
                    format!("{}.scopes", lines[i].path),
                    format!(
                        "slot \"{sname}\" holds the bootstrap credential of provider \"{pname}\" ({key}, line {line}), so it must manage clients: its scopes must include \"{CISCO_OAUTH_SCOPE}\""
                    ),
                );
            }
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

const EMPTY_PRUNE: &str = "prune = true with no [[slots]] would retire every slot rekey holds; an inventory with no [[slots]] never prunes: list the slots (retired = true for those to retire), or set prune = false";

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
        let ProviderKind::Taegis(t) = &p.kind else {
            panic!("not taegis")
        };
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
        let BackendConfig::File(b) = &inv.backends["b"] else {
            panic!("a file backend")
        };
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
        let ProviderKind::Taegis(t) = &eu.kind else {
            panic!("not taegis")
        };
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
        let BackendConfig::File(b) = &inv.backends["local"] else {
            panic!("a file backend")
        };
        assert_eq!(b.recipients.len(), 1);
    }

    #[test]
    fn environment_names_are_case_insensitive() {
        let inv = parse_ok(&BASE.replace("\"us1\"", "\"Delta\""));
        let ProviderKind::Taegis(t) = &inv.providers["p"].kind else {
            panic!("not taegis")
        };
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
            let ProviderKind::Taegis(t) = &inv.providers["p"].kind else {
                panic!("not taegis")
            };
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

    const CISCO: &str = r#"[providers.c]
type = "cisco"
region = "eu"
bootstrap = { client_id = { env = "CID" }, client_secret = { env = "CSECRET" } }

[backends.b]
type = "file"
path = "store"
identity = { file = "key.txt" }
"#;

    #[test]
    fn cisco_provider_and_slot_defaults() {
        let inv = parse_ok(&format!(
            "{CISCO}\n[[slots]]\nname = \"x\"\nprovider = \"c\"\nscopes = [\"enrich:read\"]\n"
        ));
        let ProviderKind::Cisco(c) = &inv.providers["c"].kind else {
            panic!("not cisco")
        };
        assert_eq!(c.base_url, "https://visibility.eu.amp.cisco.com");
        assert_eq!(c.clients_path, "/iroh/oauth2-clients/clients");
        assert_eq!(c.client_path, "/iroh/oauth2-clients/clients/{id}");
        assert_eq!(c.availability, "org");
        assert_eq!(c.org_hourly_budget, 8000);
        assert_eq!(inv.providers["c"].kind.type_name(), "cisco");
        let slot = &inv.slots[0];
        assert_eq!(slot.tenant, CISCO_DEFAULT_TENANT);
        assert_eq!(slot.roles, ["enrich:read"]);
    }

    #[test]
    fn cisco_paths_url_and_budget_are_configurable() {
        let text = CISCO.replace(
            "region = \"eu\"",
            "url = \"http://127.0.0.1:9/\"\npaths = { clients = \"/x/clients\", client = \"/x/clients/{id}\" }\norg_hourly_budget = 500\ntenant = \"my-org\"",
        );
        let inv = parse_ok(&format!(
            "{text}\n[[slots]]\nname = \"x\"\nprovider = \"c\"\nroles = [\"inspect\"]\n"
        ));
        let ProviderKind::Cisco(c) = &inv.providers["c"].kind else {
            panic!("not cisco")
        };
        assert_eq!(c.base_url, "http://127.0.0.1:9");
        assert_eq!(c.clients_path, "/x/clients");
        assert_eq!(c.org_hourly_budget, 500);
        assert_eq!(
            inv.slots[0].tenant, "my-org",
            "Taegis's numeric rule does not apply"
        );
    }

    #[test]
    fn cisco_mistakes_are_located() {
        let e = one(&CISCO.replace("region = \"eu\"", "region = \"mars\""));
        assert!(e.message.contains("us, eu, apjc"), "{e}");
        let e = one(&CISCO.replace(
            "region = \"eu\"",
            "region = \"eu\"\nurl = \"https://x.example\"",
        ));
        assert!(e.message.contains("not both"), "{e}");
        let e = one(&CISCO.replace(
            "region = \"eu\"",
            "region = \"eu\"\npaths = { client = \"/no-id\" }",
        ));
        assert_eq!(e.key, "providers.c.paths.client");
        let e = one(&CISCO.replace("region = \"eu\"", "region = \"eu\"\nenvironment = \"us1\""));
        assert!(e.message.contains("unknown key"), "{e}");

        // No scopes at all.
        let e = one(&format!(
            "{CISCO}\n[[slots]]\nname = \"x\"\nprovider = \"c\"\n"
        ));
        assert_eq!(e.key, "slots[0].scopes");
        // in-place on the slot, and through [defaults], both name the slot.
        let e = one(&format!(
            "{CISCO}\n[[slots]]\nname = \"x\"\nprovider = \"c\"\nscopes = [\"a\"]\nstrategy = \"in-place\"\n"
        ));
        assert_eq!((e.key.as_str(), e.line), ("slots[0].strategy", Some(15)));
        assert!(
            e.message.contains("\"x\"") && e.message.contains("alternate"),
            "{e}"
        );
        let e = one(&format!(
            "[defaults]\nstrategy = \"in-place\"\n\n{CISCO}\n[[slots]]\nname = \"x\"\nprovider = \"c\"\nscopes = [\"a\"]\n"
        ));
        assert!(e.message.contains("from [defaults]"), "{e}");
        assert_eq!(e.line, Some(14));
    }

    #[test]
    fn scopes_belong_to_cisco_slots_and_a_cisco_bootstrap_slot_needs_oauth() {
        let e = one(&format!("{BASE}scopes = [\"a\"]\n"));
        assert!(e.message.contains("Cisco"), "{e}");
        let text = CISCO.replace(
            "bootstrap = { client_id = { env = \"CID\" }, client_secret = { env = \"CSECRET\" } }",
            "bootstrap = { slot = \"boot\" }",
        );
        let e = one(&format!(
            "{text}\n[[slots]]\nname = \"boot\"\nprovider = \"c\"\nscopes = [\"profile\"]\n"
        ));
        assert!(e.message.contains("\"oauth\""), "{e}");
        parse_ok(&format!(
            "{text}\n[[slots]]\nname = \"boot\"\nprovider = \"c\"\nscopes = [\"oauth\", \"profile\"]\n"
        ));
    }

    #[test]
    fn instance_and_retire_limits() {
        let inv = parse_ok(&format!(
            "[settings]\ninstance = \"eu-prod-2\"\nmax_retire = 2\nmax_retire_percent = 10\n{BASE}"
        ));
        assert_eq!(inv.settings.instance, "eu-prod-2");
        assert_eq!(inv.settings.max_retire, 2);
        assert_eq!(inv.settings.max_retire_percent, 10);
        assert_eq!(parse_ok(BASE).settings.instance, "");
        assert_eq!(parse_ok(BASE).default_grace, Duration::from_secs(86_400));
        for bad in ["EU", "-eu", "eu-", "e_u", "", &"x".repeat(33)] {
            let e = one(&format!("[settings]\ninstance = \"{bad}\"\n{BASE}"));
            assert_eq!(
                (e.key.as_str(), e.line),
                ("settings.instance", Some(2)),
                "{bad}"
            );
        }
        let e = one(&format!("[settings]\nmax_retire_percent = 101\n{BASE}"));
        assert_eq!(e.key, "settings.max_retire_percent");
    }

    #[test]
    fn durations_are_bounded() {
        for (line, key) in [
            ("lease_ttl = \"25h\"", "settings.lease_ttl"),
            ("verify_delay = \"11m\"", "settings.verify_delay"),
            ("jitter = \"1000000y\"", "settings.jitter"),
            (
                "lease_ttl = \"99999999999999999999y\"",
                "settings.lease_ttl",
            ),
        ] {
            let e = one(&format!("[settings]\n{line}\n{BASE}"));
            assert_eq!((e.key.as_str(), e.line), (key, Some(2)), "{line}");
            assert!(e.message.contains("must be at most"), "{e}");
        }
        let e = one(&format!("{BASE}grace = \"11y\"\n"));
        assert_eq!(
            (e.key.as_str(), e.line),
            ("slots[0].grace", Some(15)),
            "{e}"
        );
        // Ten years is still fine (and a grace shorter than it).
        let inv = parse_ok(&format!("{BASE}max_age = \"10y\"\ngrace = \"9y\"\n"));
        assert_eq!(inv.slots[0].max_age, MAX_DURATION);
        parse_ok(&format!("[settings]\nlease_ttl = \"24h\"\n{BASE}"));
    }

    #[test]
    fn prune_with_no_slots_is_refused() {
        let no_slots = BASE.split("[[slots]]").next().unwrap();
        let e = one(&format!("[settings]\nprune = true\n{no_slots}"));
        assert_eq!((e.key.as_str(), e.line), ("settings.prune", Some(2)));
        assert!(e.message.contains("never prunes"), "{e}");
        parse_ok(&format!("[settings]\nprune = false\n{no_slots}"));
        parse_ok(no_slots);
    }
}
