//! The test world: a real emulator (in this process), a temp directory with an age identity,
//! bootstrap secret files and an inventory, and the real `rekey` binary run as a subprocess.
//! Checks read the platform through its own HTTP API (token exchange, the emulator's client
//! listing), not through rekey's provider code.

use super::secrets;
use rekey::backend::Backend;
use rekey::emulator::{self, EmulatorConfig, EmulatorHandle, Faults, Seed, SeedClient, SeedTenant};
use rekey::record::SlotRecord;
use rekey::secret::Secret;
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

/// Writes `text` to a new file only its owner can read (rekey refuses secret files others can).
pub fn write_private(path: &Path, text: &str) {
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

    /// `apply` on the test clock moved by `offset` (e.g. `31d`; empty: the real time).
    pub async fn apply_at(&self, offset: &str, extra: &[&str]) -> Run {
        let mut args = vec!["apply", "-c", "inventory.toml"];
        args.extend_from_slice(extra);
        if offset.is_empty() {
            self.rekey(&args).await
        } else {
            self.rekey_env(&args, &[("REKEY_TEST_CLOCK_OFFSET", offset)])
                .await
        }
    }

    /// The world's file backend (`[backends.local]`), as the checks read it.
    pub fn backend(&self) -> rekey::backend::file::FileBackend {
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
        let resp = rekey::http::client()
            .post(format!("{}/auth/api/v2/auth/token", self.emu.url()))
            .basic_auth(client_id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        resp.status().is_success()
    }

    /// The emulator's own listing of a tenant's clients (never their secrets; not a use).
    pub async fn platform_listing(&self, tenant: &str) -> Vec<rekey::emulator::ClientSummary> {
        rekey::http::client()
            .get(format!(
                "{}/_emulator/tenants/{tenant}/clients",
                self.emu.url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .expect("client list")
    }

    /// The clients the platform holds in a tenant: (name, clientID, object id).
    pub async fn platform_clients(&self, tenant: &str) -> Vec<(String, String, String)> {
        self.platform_listing(tenant)
            .await
            .into_iter()
            .map(|c| (c.name, c.client_id, c.id))
            .collect()
    }

    /// [`super::consistency::assert_consistent`] over the file backend's slots.
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

/// `[[slots]]` tables on provider `p0`, one per `(name, strategy)`.
pub fn slots(names: &[(&str, &str)]) -> String {
    names
        .iter()
        .map(|(n, s)| format!("[[slots]]\nname = \"{n}\"\nprovider = \"p0\"\nstrategy = \"{s}\"\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `[[slots]]` tables on provider `p0` with the default strategy.
pub fn plain_slots(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("[[slots]]\nname = \"{n}\"\nprovider = \"p0\"\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Two applies run at once: each ends 0 or 3 (a slot the other run held is skipped, exit 3),
/// and each slot of `names` was promoted by exactly one of them.
#[track_caller]
pub fn assert_each_promoted_once(a: &Run, b: &Run, names: &[String]) {
    for r in [a, b] {
        assert!(
            matches!(r.code, Some(0) | Some(3)),
            "exit {:?}\n{}",
            r.code,
            r.stderr
        );
    }
    for n in names {
        let rotations = [a, b]
            .iter()
            .filter(|r| actions(r, n).iter().any(|x| x.starts_with("promoted")))
            .count();
        assert_eq!(
            rotations,
            1,
            "slot {n}: rotated exactly once: {:?} / {:?}",
            actions(a, n),
            actions(b, n)
        );
    }
}

/// `(name, strategy)` for each of `names`: in-place when `in_place(name)`, alternate otherwise.
pub fn strategies(names: &[String], in_place: impl Fn(&str) -> bool) -> Vec<(&str, &'static str)> {
    names
        .iter()
        .map(|n| {
            let strategy = if in_place(n) { "in-place" } else { "alternate" };
            (n.as_str(), strategy)
        })
        .collect()
}

/// What the apply report (`--output json`) says was done to `slot`.
pub fn actions(run: &Run, slot: &str) -> Vec<String> {
    run.outcome(slot)["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
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
    /// The `--output json` document: one JSON object on one line (docs/src/operating.md,
    /// "Machine-readable output").
    pub fn document(&self) -> serde_json::Value {
        let line = self.stdout.trim_end();
        assert!(
            !line.is_empty() && !line.contains('\n'),
            "not one line:\n{}\n{}",
            self.stdout,
            self.stderr
        );
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
    /// The document's rows (one per slot; per backend and provider for `check`).
    pub fn rows(&self) -> Vec<serde_json::Value> {
        let doc = self.document();
        assert_eq!(doc["format_version"], 1, "{doc}");
        doc["rows"].as_array().expect("rows").clone()
    }
    /// The apply report's outcomes.
    pub fn outcomes(&self) -> Vec<serde_json::Value> {
        self.rows()
    }
    /// `slot`'s row (`plan`, `verify` or `status` with `--output json`).
    pub fn row(&self, slot: &str) -> serde_json::Value {
        self.rows()
            .into_iter()
            .find(|r| r["slot"] == slot)
            .unwrap_or_else(|| panic!("no row for {slot}"))
    }
    /// `slot`'s outcome in the apply report.
    pub fn outcome(&self, slot: &str) -> serde_json::Value {
        self.outcomes()
            .into_iter()
            .find(|o| o["slot"] == slot)
            .unwrap_or_else(|| panic!("no outcome for {slot}: {}", self.stderr))
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

    /// [`super::consistency::assert_consistent`] over the records in `backend`.
    pub async fn assert_consistent_in(&self, backend: &dyn Backend, expect_slots: &[&str]) {
        super::consistency::assert_consistent(self, &[], backend, expect_slots).await
    }
}
