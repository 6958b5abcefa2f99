//! Shared test world: a real emulator (in this process), a temp directory with an age identity,
//! bootstrap secret files and an inventory, and the real `rekey` binary run as a subprocess.
//! Checks read the platform through its own HTTP API (token exchange, the emulator's client
//! listing), not through rekey's provider code.

#![allow(dead_code)]

pub mod secrets;

use rekey::backend::Backend;
use rekey::emulator::{self, EmulatorConfig, EmulatorHandle, Faults, Seed, SeedClient, SeedTenant};
use rekey::record::SlotRecord;
use rekey::secret::Secret;
use std::collections::BTreeSet;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

pub const ADMIN_ROLE: &str = "ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068";

pub struct Tenant {
    pub id: String,
    pub admin_id: String,
    pub admin_secret: String,
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub emu: EmulatorHandle,
    pub tenants: Vec<Tenant>,
    /// Every secret this world made or saw stored, for leak checks on output.
    pub known_secrets: std::sync::Mutex<Vec<String>>,
}

pub fn random_alnum(n: usize) -> String {
    use rand::Rng;
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| A[rng.random_range(0..A.len())] as char)
        .collect()
}

fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

impl World {
    pub async fn new(tenants: usize) -> World {
        Self::with_state_file(tenants, false).await
    }

    pub async fn with_state_file(tenants: usize, state_file: bool) -> World {
        if !cfg!(feature = "test-hooks") {
            panic!(
                "the tests drive rekey through its test hooks (clock, crash points, leak \
                 registry): run them with `cargo test --features test-hooks` (scripts/test.sh does)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let mut seed = Seed::default();
        let mut ts = Vec::new();
        use rand::Rng;
        let base: u32 = rand::rng().random_range(10_000..90_000);
        for i in 0..tenants {
            let t = Tenant {
                id: (base + i as u32).to_string(),
                admin_id: random_alnum(32),
                admin_secret: Secret::generate(64).expose().to_string(),
            };
            write_private(&dir.path().join(format!("boot-{i}.id")), &t.admin_id);
            write_private(
                &dir.path().join(format!("boot-{i}.secret")),
                &t.admin_secret,
            );
            seed.tenants.push(SeedTenant {
                id: t.id.clone(),
                parent: None,
                clients: vec![SeedClient {
                    client_id: t.admin_id.clone(),
                    secret: t.admin_secret.clone(),
                    name: format!("admin-{i}"),
                    roles: vec![ADMIN_ROLE.into()],
                }],
            });
            ts.push(t);
        }
        let state = state_file.then(|| dir.path().join("emulator-state.json"));
        let config = EmulatorConfig {
            seed,
            faults: Faults::default(),
            state_file: state,
            token_ttl: Duration::from_secs(3600),
        };
        let emu = emulator::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("emulator starts");
        rekey::backend::file::generate_identity(&dir.path().join("rekey.key")).unwrap();
        let known = ts.iter().map(|t| t.admin_secret.clone()).collect();
        World {
            dir,
            emu,
            tenants: ts,
            known_secrets: std::sync::Mutex::new(known),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The inventory header: settings, the file backend, one provider `p<i>` per tenant.
    pub fn header(&self) -> String {
        let mut s = String::from(
            "[settings]\nverify_delay = \"50ms\"\nverify_attempts = 3\n\n[defaults]\nbackend = \"local\"\n\n\
             [backends.local]\ntype = \"file\"\npath = \"store\"\nidentity = { file = \"rekey.key\" }\n",
        );
        for (i, t) in self.tenants.iter().enumerate() {
            s.push_str(&format!(
                "\n[providers.p{i}]\ntype = \"taegis\"\nurl = \"{}\"\ntenant = \"{}\"\nrate_limit = 1000\ntimeout = \"5s\"\n\
                 bootstrap = {{ client_id = {{ file = \"boot-{i}.id\" }}, client_secret = {{ file = \"boot-{i}.secret\" }} }}\n",
                self.emu.url(),
                t.id
            ));
        }
        s
    }

    /// Writes `inventory.toml` = header + `slots`, returns its path.
    pub fn inventory(&self, slots: &str) -> PathBuf {
        self.inventory_raw(&format!("{}\n{slots}", self.header()))
    }

    pub fn inventory_raw(&self, text: &str) -> PathBuf {
        let p = self.path().join("inventory.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    pub async fn rekey(&self, args: &[&str]) -> Run {
        self.rekey_env(args, &[]).await
    }

    /// Runs the real binary in the world's directory. Logs as JSON at debug level by default.
    pub async fn rekey_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rekey"));
        cmd.args(args)
            .current_dir(self.path())
            .env("REKEY_LOG_FORMAT", "json")
            .env("RUST_LOG", secrets::rust_log());
        cmd.env_remove("REKEY_CRASH_AT")
            .env_remove("REKEY_TEST_CLOCK_OFFSET");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .expect("rekey finished in time")
            .unwrap();
        secrets::keep_output(args, &out);
        Run::from(out)
    }

    pub async fn apply(&self, extra: &[&str]) -> Run {
        let mut args = vec!["apply", "-c", "inventory.toml"];
        args.extend_from_slice(extra);
        self.rekey(&args).await
    }

    fn backend(&self) -> rekey::backend::file::FileBackend {
        let cfg = rekey::config::FileBackendConfig {
            name: "local".into(),
            path: self.path().join("store"),
            identity: rekey::config::ValueRef::File(self.path().join("rekey.key")),
            recipients: vec![],
        };
        rekey::backend::file::FileBackend::open(&cfg).unwrap()
    }

    pub async fn record(&self, slot: &str) -> Option<SlotRecord> {
        self.record_in(&self.backend(), slot).await
    }

    pub async fn records(&self) -> Vec<SlotRecord> {
        self.records_in(&self.backend()).await
    }

    /// A token exchange straight against the emulator (not through rekey's provider).
    pub async fn token_ok(&self, client_id: &str, secret: &str) -> bool {
        let resp = reqwest::Client::new()
            .post(format!("{}/auth/api/v2/auth/token", self.emu.url()))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        resp.status().is_success()
    }

    /// The clients the platform holds in a tenant: (name, clientID, object id).
    pub async fn platform_clients(&self, tenant: &str) -> Vec<(String, String, String)> {
        let v: serde_json::Value = reqwest::get(format!(
            "{}/_emulator/tenants/{tenant}/clients",
            self.emu.url()
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let list = v
            .as_array()
            .cloned()
            .or_else(|| v.get("clients").and_then(|c| c.as_array()).cloned())
            .expect("client list");
        list.iter()
            .map(|c| {
                let s = |k: &str| {
                    c.get(k)
                        .and_then(|x| x.as_str())
                        .unwrap_or_default()
                        .to_string()
                };
                (
                    s("name"),
                    s("clientID").max(s("client_id")),
                    s("id").max(s("object_id")),
                )
            })
            .collect()
    }

    /// Every slot's current pair works; every rekey-named client at the platform is one the
    /// store knows (current, pending or draining): nothing lost, nothing orphaned.
    pub async fn assert_consistent(&self, expect_slots: &[&str]) {
        self.assert_consistent_in(&self.backend(), expect_slots)
            .await
    }

    pub async fn managed_clients(&self, tenant: &str, slot: &str) -> Vec<String> {
        let prefix = format!("rekey-{slot}-g");
        self.platform_clients(tenant)
            .await
            .into_iter()
            .map(|c| c.0)
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }

    /// Fails if any secret this world knows appears in `text`.
    pub fn assert_no_secrets(&self, text: &str) {
        for s in self.known_secrets.lock().unwrap().iter() {
            assert!(!text.contains(s.as_str()), "a secret appeared in output");
        }
    }

    pub async fn set_faults(&self, f: Faults) {
        self.emu.set_faults(f).await;
    }
}

pub struct Run {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        use std::os::unix::process::ExitStatusExt;
        Run {
            code: o.status.code(),
            signal: o.status.signal(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
    /// The apply report as JSON (`--output json`).
    pub fn outcomes(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

// ---- Cisco (IROH) ----------------------------------------------------------------------------

/// Scopes of each Cisco org's admin (bootstrap) client: it may manage clients (`oauth`) and
/// grant these to the clients it makes.
pub const CISCO_ADMIN_SCOPES: &[&str] = &["oauth", "profile", "enrich", "inspect"];

pub struct CiscoOrg {
    pub id: String,
    pub admin_id: String,
    pub admin_password: String,
}

/// A [`World`] that also holds Cisco orgs on the same emulator, one provider `c<i>` per org.
pub struct CiscoWorld {
    pub w: World,
    pub orgs: Vec<CiscoOrg>,
}

impl std::ops::Deref for CiscoWorld {
    type Target = World;
    fn deref(&self) -> &World {
        &self.w
    }
}

impl World {
    /// `tenants` Taegis tenants (providers `p<i>`) and `orgs` Cisco orgs (providers `c<i>`).
    pub async fn new_with(tenants: usize, orgs: usize) -> CiscoWorld {
        let w = World::new(tenants).await;
        let mut list = Vec::new();
        for i in 0..orgs {
            let o = CiscoOrg {
                id: format!("org-{}", random_alnum(12).to_lowercase()),
                admin_id: format!("client-{}", uuid::Uuid::new_v4()),
                admin_password: Secret::generate(54).expose().to_string(),
            };
            write_private(&w.path().join(format!("cboot-{i}.id")), &o.admin_id);
            write_private(
                &w.path().join(format!("cboot-{i}.secret")),
                &o.admin_password,
            );
            w.emu
                .add_org(emulator::SeedOrg {
                    id: o.id.clone(),
                    clients: vec![emulator::SeedCiscoClient {
                        client_id: o.admin_id.clone(),
                        password: o.admin_password.clone(),
                        name: format!("cisco-admin-{i}"),
                        scopes: CISCO_ADMIN_SCOPES.iter().map(|s| s.to_string()).collect(),
                    }],
                })
                .await
                .expect("org added");
            w.known_secrets
                .lock()
                .unwrap()
                .push(o.admin_password.clone());
            list.push(o);
        }
        CiscoWorld { w, orgs: list }
    }
}

impl CiscoWorld {
    /// `[providers.c<i>]` sections, one per org.
    pub fn cisco_providers(&self) -> String {
        let mut s = String::new();
        for i in 0..self.orgs.len() {
            s.push_str(&format!(
                "\n[providers.c{i}]\ntype = \"cisco\"\nurl = \"{}\"\nrate_limit = 1000\ntimeout = \"5s\"\n\
                 bootstrap = {{ client_id = {{ file = \"cboot-{i}.id\" }}, client_secret = {{ file = \"cboot-{i}.secret\" }} }}\n",
                self.w.emu.url()
            ));
        }
        s
    }

    /// Taegis header plus the Cisco providers.
    pub fn header(&self) -> String {
        format!("{}{}", self.w.header(), self.cisco_providers())
    }

    pub fn inventory(&self, slots: &str) -> PathBuf {
        self.w.inventory_raw(&format!("{}\n{slots}", self.header()))
    }

    /// A Cisco token exchange straight against the emulator.
    pub async fn cisco_token_ok(&self, client_id: &str, password: &str) -> bool {
        let resp = reqwest::Client::new()
            .post(format!("{}/iroh/oauth2/token", self.w.emu.url()))
            .basic_auth(client_id, Some(password))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        resp.status().is_success()
    }

    /// Like [`World::assert_consistent`], over Taegis tenants and Cisco orgs: slots of a
    /// provider `c<i>` are checked with a Cisco token exchange.
    pub async fn assert_consistent(&self, expect_slots: &[&str]) {
        let records = self.w.records().await;
        let names: BTreeSet<&str> = records.iter().map(|r| r.slot.as_str()).collect();
        for s in expect_slots {
            assert!(names.contains(s), "slot {s} has no record; have {names:?}");
        }
        let mut referenced = BTreeSet::new();
        for r in &records {
            let cur = r
                .current
                .as_ref()
                .unwrap_or_else(|| panic!("slot {} has no current pair: {r:?}", r.slot));
            let works = if r.provider.starts_with('c') {
                self.cisco_token_ok(&cur.client_id, cur.secret.expose())
                    .await
            } else {
                self.w.token_ok(&cur.client_id, cur.secret.expose()).await
            };
            assert!(
                works,
                "slot {}: current pair g{} does not work",
                r.slot, cur.generation
            );
            assert!(
                r.op.is_none(),
                "slot {} still has an operation in flight",
                r.slot
            );
            for c in r
                .current
                .iter()
                .chain(r.pending.iter())
                .chain(r.draining.iter().map(|d| &d.credential))
            {
                referenced.insert(c.client_id.clone());
            }
        }
        let places = self
            .w
            .tenants
            .iter()
            .map(|t| t.id.clone())
            .chain(self.orgs.iter().map(|o| o.id.clone()));
        for place in places {
            for (name, client_id, _) in self.w.platform_clients(&place).await {
                if name.starts_with("rekey-") {
                    assert!(
                        referenced.contains(&client_id),
                        "orphaned client {name} ({client_id}) in {place}"
                    );
                }
            }
        }
    }
}

/// Another backend as the primary: the inventory keeps `[backends.local]` (the file backend)
/// defined but makes `name` (given by its `section`, e.g. a `[backends.vault]` table) the
/// default, and the checks read the store through `backend`.
impl World {
    /// `header()` with `section` appended and `name` as `[defaults] backend`.
    pub fn header_with_backend(&self, name: &str, section: &str) -> String {
        let header =
            self.header()
                .replacen("backend = \"local\"", &format!("backend = \"{name}\""), 1);
        format!("{header}\n{section}")
    }

    pub async fn record_in(&self, backend: &dyn Backend, slot: &str) -> Option<SlotRecord> {
        let r = backend.read(slot).await.unwrap().map(|v| v.record);
        if let Some(rec) = &r {
            let mut known = self.known_secrets.lock().unwrap();
            for c in rec
                .current
                .iter()
                .chain(rec.pending.iter())
                .chain(rec.draining.iter().map(|d| &d.credential))
            {
                known.push(c.secret.expose().to_string());
            }
        }
        r
    }

    pub async fn records_in(&self, backend: &dyn Backend) -> Vec<SlotRecord> {
        let mut out = Vec::new();
        for name in backend.list(&Default::default()).await.unwrap() {
            if let Some(r) = self.record_in(backend, &name).await {
                out.push(r);
            }
        }
        out
    }

    /// `assert_consistent` over the records in `backend`.
    pub async fn assert_consistent_in(&self, backend: &dyn Backend, expect_slots: &[&str]) {
        let records = self.records_in(backend).await;
        let names: BTreeSet<&str> = records.iter().map(|r| r.slot.as_str()).collect();
        for s in expect_slots {
            assert!(names.contains(s), "slot {s} has no record; have {names:?}");
        }
        let mut referenced = BTreeSet::new();
        for r in &records {
            let cur = r
                .current
                .as_ref()
                .unwrap_or_else(|| panic!("slot {} has no current pair", r.slot));
            assert!(
                self.token_ok(&cur.client_id, cur.secret.expose()).await,
                "slot {}: current pair g{} does not work",
                r.slot,
                cur.generation
            );
            assert!(
                r.op.is_none(),
                "slot {} still has an operation in flight",
                r.slot
            );
            for c in r
                .current
                .iter()
                .chain(r.pending.iter())
                .chain(r.draining.iter().map(|d| &d.credential))
            {
                referenced.insert(c.client_id.clone());
            }
        }
        for t in &self.tenants {
            for (name, client_id, _) in self.platform_clients(&t.id).await {
                if name.starts_with("rekey-") {
                    assert!(
                        referenced.contains(&client_id),
                        "orphaned client {name} ({client_id}) in tenant {}",
                        t.id
                    );
                }
            }
        }
    }
}

// ---- AWS Secrets Manager as the primary backend (tests/rotation_aws.rs) --------------------
// Append-only: the file-backend world above is unchanged; these add `[backends.aws]` (a moto
// server at `endpoint`, secrets under `prefix`) and make it the default backend.

/// Where the `aws` backend of a world stores its slots.
#[cfg(feature = "aws")]
pub struct AwsTarget {
    pub endpoint: String,
    pub prefix: String,
}

/// Static fake credentials for moto (it ignores them); nothing from the real AWS chain.
#[cfg(feature = "aws")]
pub const AWS_TEST_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_SESSION_TOKEN", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/dev/null"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
];

#[cfg(feature = "aws")]
impl World {
    /// `header()` plus `[backends.aws]`, made the default backend.
    pub fn header_aws(&self, t: &AwsTarget) -> String {
        format!(
            "{}\n[backends.aws]\ntype = \"aws\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nprefix = \"{}\"\ntimeout = \"10s\"\n",
            self.header()
                .replacen("backend = \"local\"", "backend = \"aws\"", 1),
            t.endpoint,
            t.prefix
        )
    }

    /// Writes `inventory.toml` = `header_aws` + `slots`.
    pub fn inventory_aws(&self, t: &AwsTarget, slots: &str) -> PathBuf {
        self.inventory_raw(&format!("{}\n{slots}", self.header_aws(t)))
    }

    /// `rekey_env` with the fake AWS credentials added.
    pub async fn rekey_aws(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut all: Vec<(&str, &str)> = AWS_TEST_ENV.to_vec();
        all.extend_from_slice(env);
        self.rekey_env(args, &all).await
    }

    pub fn aws_backend(&self, t: &AwsTarget) -> rekey::backend::aws::AwsBackend {
        let mut cfg = rekey::backend::aws::AwsBackendConfig::new("aws");
        cfg.endpoint_url = Some(t.endpoint.clone());
        cfg.prefix = t.prefix.clone();
        cfg.region = Some("us-east-1".into());
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(
                aws_sdk_secretsmanager::config::SharedCredentialsProvider::new(
                    aws_sdk_secretsmanager::config::Credentials::new(
                        "testing",
                        "testing",
                        None,
                        None,
                        "static-test",
                    ),
                ),
            )
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .build();
        rekey::backend::aws::AwsBackend::with_sdk_config(&cfg, sdk)
    }

    pub async fn record_aws(&self, t: &AwsTarget, slot: &str) -> Option<SlotRecord> {
        self.record_in(&self.aws_backend(t), slot).await
    }

    pub async fn records_aws(&self, t: &AwsTarget) -> Vec<SlotRecord> {
        self.records_in(&self.aws_backend(t)).await
    }

    /// `assert_consistent` over the slots stored in the `aws` backend.
    pub async fn assert_consistent_aws(&self, t: &AwsTarget, expect_slots: &[&str]) {
        self.assert_consistent_in(&self.aws_backend(t), expect_slots)
            .await
    }
}
