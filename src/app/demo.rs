//! `rekey demo`: the whole job on the embedded default, with no setup. It starts the emulator on
//! a loopback port with three tenants and their bootstrap clients, writes an age identity, the
//! bootstrap secrets (as 0600 files) and a sample inventory into a directory, then runs
//! plan → apply → a forced rotation → verify → status → an apply that must change nothing →
//! past the grace, an apply that deletes the old clients but holds the one a consumer still uses
//! → once that consumer has moved, the apply that deletes it. Each step checks its outcome on
//! the platform and in the store, not just its exit code; time moves on the demo's own clock.

use crate::app::commands::{self as app, exit};
use crate::cli::{DemoArgs, OutputFormat, RunArgs};
use crate::emulator::{self, EmulatorConfig, Seed, SeedClient, SeedTenant};
use crate::error::{Error, Result};
use crate::secret::Secret;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const TENANT_ADMIN_ROLE: &str = "ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068";

/// A demo tenant: its id, a company name, and its slots as (name, strategy).
struct DemoTenant {
    id: &'static str,
    company: &'static str,
    slots: &'static [(&'static str, &'static str)],
}

const TENANTS: &[DemoTenant] = &[
    DemoTenant {
        id: "11772",
        company: "acme",
        slots: &[
            ("siem-ingest-acme", "alternate"),
            ("soar-playbooks-acme", "in-place"),
            ("edr-export-acme", "alternate"),
        ],
    },
    DemoTenant {
        id: "11773",
        company: "globex",
        slots: &[
            ("siem-ingest-globex", "alternate"),
            ("ticketing-globex", "in-place"),
            ("edr-export-globex", "alternate"),
            ("reporting-globex", "alternate"),
        ],
    },
    DemoTenant {
        id: "11774",
        company: "initech",
        slots: &[
            ("siem-ingest-initech", "alternate"),
            ("soar-playbooks-initech", "in-place"),
            ("edr-export-initech", "alternate"),
            ("backup-audit-initech", "alternate"),
        ],
    },
];
const RETIRED_SLOT: &str = "legacy-export-acme";
/// The emulator's state file in `demo --dir DIR`.
const EMULATOR_STATE: &str = "emulator-state.json";
const SELF_SLOT: &str = "rekey-admin-initech";

pub async fn run(args: &DemoArgs) -> Result<u8> {
    let _tmp;
    let dir: PathBuf = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| {
                Error::config(format!("cannot create {}", d.display())).with_source(e)
            })?;
            if std::fs::read_dir(d)
                .map(|mut r| r.next().is_some())
                .unwrap_or(false)
            {
                return Err(Error::config(format!(
                    "{} is not empty; give the demo an empty directory",
                    d.display()
                )));
            }
            d.clone()
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("rekey-demo-")
                .tempdir()
                .map_err(|e| Error::config("cannot create a temporary directory").with_source(e))?;
            let p = t.path().to_path_buf();
            _tmp = t;
            p
        }
    };

    // The platform: one bootstrap Tenant Admin client per tenant, with secrets made here.
    let mut seed = Seed::default();
    for DemoTenant {
        id: tenant,
        company,
        ..
    } in TENANTS
    {
        let client_id = random_client_id();
        let secret = Secret::generate(64);
        write_private(&dir.join(format!("bootstrap-{company}.id")), &client_id)?;
        write_private(
            &dir.join(format!("bootstrap-{company}.secret")),
            secret.expose(),
        )?;
        seed.tenants.push(SeedTenant {
            id: tenant.to_string(),
            parent: None,
            clients: vec![SeedClient {
                client_id,
                secret: secret.expose().to_string(),
                name: format!("bootstrap-{company}"),
                roles: vec![TENANT_ADMIN_ROLE.to_string()],
            }],
        });
    }
    let config = EmulatorConfig {
        seed,
        faults: Default::default(),
        // With --dir the platform's state stays beside the inventory, so the setup keeps
        // working after the demo: `rekey emulator --state-file` serves it again.
        state_file: args.dir.as_ref().map(|_| dir.join(EMULATOR_STATE)),
        token_ttl: Duration::from_secs(3600),
    };
    let emu = emulator::start(config, "127.0.0.1:0".parse().expect("static address")).await?;
    let recipient = crate::backend::file::generate_identity(&dir.join("rekey.key"))?;

    let inventory = dir.join("inventory.toml");
    crate::outln!(
        "rekey demo: a Taegis-compatible emulator on {} with tenants 11772 (acme), 11773 (globex), 11774 (initech)",
        emu.url()
    )?;
    crate::outln!(
        "files in {}: inventory.toml, rekey.key (age identity {}...), store/ (encrypted records)\n",
        dir.display(),
        &recipient[..12]
    )?;

    // Yesterday: the legacy slot was in use. Today's inventory retires it.
    std::fs::write(&inventory, inventory_text(&emu.url(), false)).map_err(io_err(&inventory))?;
    let quiet = RunArgs {
        config: inventory.clone(),
        only: vec![RETIRED_SLOT.into()],
        force: false,
        allow_mass_retire: false,
        detailed_exitcode: false,
        output: OutputFormat::Json,
        concurrency: None,
        obs: Default::default(),
        shard: WHOLE,
    };
    let pre = crate::app::setup::engine(&quiet, Arc::new(crate::clock::SystemClock))
        .await?
        .apply()
        .await?;
    if app::apply_exit_code(&pre) != exit::OK {
        return Err(Error::internal("the demo could not enrol its legacy slot"));
    }
    std::fs::write(&inventory, inventory_text(&emu.url(), true)).map_err(io_err(&inventory))?;

    let demo = Demo {
        inventory: inventory.clone(),
        clock: Arc::new(DemoClock::default()),
        emu: &emu,
    };
    let mut failures = Vec::new();

    heading("1. rekey plan -c inventory.toml   (what would change, and why; changes nothing)")?;
    let engine = demo.engine(vec![], false).await?;
    crate::out!("{}", crate::app::report::plan_table(&engine.plan().await?))?;

    heading(
        "2. rekey apply -c inventory.toml   (create, retire; the bootstrap slot last and alone)",
    )?;
    let first = demo.apply(vec![], false).await?;
    check(&mut failures, "first apply", app::apply_exit_code(&first));
    for o in &first {
        if o.slot != RETIRED_SLOT && o.generation != Some(1) {
            failures.push(format!("{} holds no g1 after the first apply", o.slot));
        }
    }
    if demo.record(RETIRED_SLOT).await?.is_some() {
        failures.push(format!("the retired slot {RETIRED_SLOT} is still stored"));
    }

    // The demo's own clock (not a test hook) moves on, so that "now" is later than what step 2
    // issued, as it is for a real forced rotation.
    demo.clock.advance(chrono::Duration::hours(1));
    heading(
        "3. an hour later: rekey apply --force --only 'siem-ingest-*'   (rotate now: a new client each; the old one drains)",
    )?;
    let mut old_pairs = Vec::new();
    let forced = demo.apply(vec!["siem-ingest-*".into()], true).await?;
    check(
        &mut failures,
        "forced rotation",
        app::apply_exit_code(&forced),
    );
    for o in &forced {
        let rec = demo.record(&o.slot).await?;
        let promoted = o.actions.iter().any(|a| a == "promoted g2");
        let old = rec
            .as_ref()
            .and_then(|r| Some((r.tenant.clone(), r.draining.first()?.credential.clone())));
        let alive = match &old {
            Some((tenant, g1)) => demo.platform_has(tenant, &g1.client_id).await?,
            None => false,
        };
        match old {
            Some((tenant, g1)) if promoted && alive => old_pairs.push((o.slot.clone(), tenant, g1)),
            _ => failures.push(format!(
                "{} was not rotated to g2 with g1 draining and alive",
                o.slot
            )),
        }
    }
    if forced.len() != 3 {
        failures.push(format!(
            "the forced rotation touched {} slots, not 3",
            forced.len()
        ));
    }

    heading(
        "4. rekey verify -c inventory.toml   (a token exchange with every pair consumers read)",
    )?;
    let engine = demo.engine(vec![], false).await?;
    let rows = crate::app::verify::verify_rows(&engine).await?;
    crate::out!("{}", crate::app::verify::verify_table(&rows))?;
    if rows.iter().any(|r| !r.ok) {
        failures.push("verify found a pair that does not work".into());
    }

    heading("5. rekey status -c inventory.toml")?;
    demo.status(&mut failures, false).await?;

    heading("6. rekey apply -c inventory.toml   (again: nothing is due, nothing changes)")?;
    let again = demo.apply(vec![], false).await?;
    if again.iter().any(|o| !o.actions.is_empty()) || app::apply_exit_code(&again) != exit::OK {
        failures.push("the second apply changed something".to_string());
    }

    // Past the 24 h grace. One consumer of siem-ingest-acme never reloaded: it still gets
    // tokens with g1, so rekey holds that client (docs/src/protocol.md, "Draining").
    demo.clock.advance(chrono::Duration::hours(25));
    let late = old_pairs
        .iter()
        .find(|(slot, ..)| slot == "siem-ingest-acme");
    if let Some((_, _, g1)) = late {
        demo.consumer_token(&g1.pair()).await?;
    }
    demo.clock.advance(chrono::Duration::minutes(5));
    heading(
        "7. a day later, past the grace: rekey apply   (old clients go, but one a consumer still uses is held)",
    )?;
    let drained = demo.apply(vec![], false).await?;
    for (slot, tenant, g1) in &old_pairs {
        let alive = demo.platform_has(tenant, &g1.client_id).await?;
        let acted = drained
            .iter()
            .find(|o| &o.slot == slot)
            .map(|o| o.actions.clone())
            .unwrap_or_default();
        let held = slot == "siem-ingest-acme";
        let ok = if held {
            alive && acted.iter().any(|a| a.starts_with("held g1 still in use"))
        } else {
            !alive && acted.iter().any(|a| a == "deleted g1")
        };
        if !ok {
            failures.push(format!(
                "{slot}: g1 should have been {} (actions: {acted:?})",
                if held {
                    "held: its consumer still uses it"
                } else {
                    "deleted"
                }
            ));
        }
    }
    heading("   rekey status -c inventory.toml   (why g1 of siem-ingest-acme is still there)")?;
    demo.status(&mut failures, true).await?;

    // The consumer reloads and uses g2 from now on; g1 gets no token for two hours.
    if let Some((slot, tenant, g1)) = late {
        let current = demo.record(slot).await?.and_then(|r| r.current);
        if let Some(c) = current {
            demo.consumer_token(&c.pair()).await?;
        }
        demo.clock.advance(chrono::Duration::minutes(125));
        heading(
            "8. the consumer moved to g2; two hours later: rekey apply   (g1 has been quiet: deleted)",
        )?;
        let last = demo.apply(vec![], false).await?;
        let acted = last
            .iter()
            .find(|o| &o.slot == slot)
            .map(|o| o.actions.clone())
            .unwrap_or_default();
        if demo.platform_has(tenant, &g1.client_id).await?
            || !acted.iter().any(|a| a == "deleted g1")
        {
            failures.push(format!(
                "{slot}: g1 was not deleted once quiet (actions: {acted:?})"
            ));
        }
    }

    let addr = emu.addr();
    emu.shutdown().await;
    crate::outln!()?;
    if failures.is_empty() {
        crate::outln!(
            "demo finished: checked that every slot holds a verified pair, the retired slot is gone, the forced rotation moved 3 slots to g2 with g1 draining, old clients were deleted after their grace except the one a consumer still used, which went once it was quiet, and no secret was printed."
        )?;
        crate::outln!(
            "a consumer reads a slot with:  rekey get -c {} SLOT",
            inventory.display()
        )?;
        match &args.dir {
            None => crate::outln!(
                "(the files were in a temporary directory; keep them with --dir DIR)"
            )?,
            Some(_) => crate::outln!(
                "the demo's platform is saved in {}; serve it again (then plan, status and get work on the inventory):\n  rekey emulator --state-file {} --listen {}",
                dir.join(EMULATOR_STATE).display(),
                dir.join(EMULATOR_STATE).display(),
                addr
            )?,
        }
        Ok(exit::OK)
    } else {
        crate::outln!("demo FAILED: {}", failures.join("; "))?;
        Ok(exit::ATTENTION)
    }
}

/// The demo's own clock: real time plus an offset the demo moves forward between steps.
#[derive(Default)]
struct DemoClock(std::sync::atomic::AtomicI64);

impl DemoClock {
    fn advance(&self, by: chrono::Duration) {
        self.0
            .fetch_add(by.num_seconds(), std::sync::atomic::Ordering::SeqCst);
    }
    fn offset(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

impl crate::clock::Clock for DemoClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.offset()
    }
}

/// What every step needs: the inventory, the demo's clock and the emulator.
struct Demo<'a> {
    inventory: PathBuf,
    clock: Arc<DemoClock>,
    emu: &'a emulator::EmulatorHandle,
}

impl Demo<'_> {
    async fn engine(&self, only: Vec<String>, force: bool) -> Result<Arc<crate::engine::Engine>> {
        let args = RunArgs {
            config: self.inventory.clone(),
            only,
            force,
            allow_mass_retire: false,
            detailed_exitcode: false,
            output: OutputFormat::Table,
            concurrency: None,
            obs: Default::default(),
            shard: WHOLE,
        };
        crate::app::setup::engine(&args, self.clock.clone()).await
    }

    async fn apply(
        &self,
        only: Vec<String>,
        force: bool,
    ) -> Result<Vec<crate::engine::SlotOutcome>> {
        let outcomes = self.engine(only, force).await?.apply().await?;
        crate::out!(
            "{}",
            crate::terminal::paint(&crate::app::report::apply_table(&outcomes))
        )?;
        Ok(outcomes)
    }

    async fn status(&self, failures: &mut Vec<String>, expect_held: bool) -> Result<()> {
        let rows = crate::app::status::status_rows(&*self.engine(vec![], false).await?).await?;
        crate::out!(
            "{}",
            crate::terminal::paint(&crate::app::status::status_table(&rows))
        )?;
        if rows.iter().any(|r| r.attention) {
            failures.push("status found a slot that needs attention".into());
        }
        if rows.iter().any(|r| !r.held.is_empty()) != expect_held {
            failures.push(format!(
                "status should {}show a held client",
                if expect_held { "" } else { "not " }
            ));
        }
        Ok(())
    }

    async fn record(&self, slot: &str) -> Result<Option<crate::record::SlotRecord>> {
        let engine = self.engine(vec![], false).await?;
        Ok(engine.backends["local"].read(slot).await?.map(|v| v.record))
    }

    /// A consumer's token request with `pair`, made "now" on the demo's clock.
    async fn consumer_token(&self, pair: &crate::secret::ClientPair) -> Result<()> {
        self.emu.set_clock_offset(self.clock.offset()).await;
        let resp = crate::http::client()
            .post(format!("{}/auth/api/v2/auth/token", self.emu.url()))
            .basic_auth(&pair.client_id, Some(pair.secret.expose()))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| crate::http::classify_transport(e, "the demo's consumer"))?;
        if !resp.status().is_success() {
            return Err(Error::internal(format!(
                "the demo's consumer could not get a token with {}: HTTP {}",
                pair.client_id,
                resp.status().as_u16()
            )));
        }
        Ok(())
    }

    /// Whether the platform still holds the client (the emulator's own listing, not a use).
    async fn platform_has(&self, tenant: &str, client_id: &str) -> Result<bool> {
        let list: Vec<emulator::ClientSummary> = crate::http::client()
            .get(format!(
                "{}/_emulator/tenants/{tenant}/clients",
                self.emu.url()
            ))
            .send()
            .await
            .map_err(|e| crate::http::classify_transport(e, "the emulator"))?
            .json()
            .await
            .map_err(|e| Error::internal(format!("the emulator's client list: {e}")))?;
        Ok(list.iter().any(|c| c.client_id == client_id))
    }
}

/// The whole inventory, whatever JOB_COMPLETION_INDEX / REKEY_SHARD_COUNT say.
const WHOLE: Option<crate::shard::Shard> = Some(crate::shard::Shard { index: 0, count: 1 });

use std::sync::Arc;

fn heading(text: &str) -> Result<()> {
    crate::outln!("\n== {text}\n")
}

fn check(failures: &mut Vec<String>, what: &str, code: u8) {
    if code != exit::OK {
        failures.push(format!("{what} exited {code}"));
    }
}

fn inventory_text(url: &str, retire_legacy: bool) -> String {
    let mut s = String::from(
        "# The demo's inventory: three tenants on a local Taegis-compatible emulator.\n\
         [settings]\nverify_delay = \"200ms\"\n\n\
         [defaults]\nstrategy = \"alternate\"\nmax_age = \"30d\"\ngrace = \"24h\"\nbackend = \"local\"\n\n\
         [backends.local]\ntype = \"file\"\npath = \"store\"\nidentity = { file = \"rekey.key\" }\n",
    );
    for DemoTenant {
        id: tenant,
        company,
        slots,
    } in TENANTS
    {
        let bootstrap = if *company == "initech" {
            // rekey rotates its own credential here: the seed is used until the slot holds one.
            format!(
                "bootstrap = {{ slot = \"{SELF_SLOT}\", seed = {{ client_id = {{ file = \"bootstrap-{company}.id\" }}, client_secret = {{ file = \"bootstrap-{company}.secret\" }} }} }}"
            )
        } else {
            format!(
                "bootstrap = {{ client_id = {{ file = \"bootstrap-{company}.id\" }}, client_secret = {{ file = \"bootstrap-{company}.secret\" }} }}"
            )
        };
        s.push_str(&format!(
            "\n[providers.taegis-{company}]\ntype = \"taegis\"\nurl = \"{url}\"\ntenant = \"{tenant}\"\nrate_limit = 200\n{bootstrap}\n"
        ));
        for (name, strategy) in *slots {
            s.push_str(&format!("\n[[slots]]\nname = \"{name}\"\nprovider = \"taegis-{company}\"\nstrategy = \"{strategy}\"\n"));
        }
        if *company == "acme" {
            s.push_str(&format!(
                "\n[[slots]]\nname = \"{RETIRED_SLOT}\"\nprovider = \"taegis-acme\"\ngrace = \"0s\"\nretired = {retire_legacy}\n"
            ));
        }
        if *company == "initech" {
            s.push_str(&format!(
                "\n[[slots]]\nname = \"{SELF_SLOT}\"\nprovider = \"taegis-initech\"\nroles = [\"{TENANT_ADMIN_ROLE}\"]\n"
            ));
        }
    }
    s
}

fn random_client_id() -> String {
    use rand::Rng;
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..32)
        .map(|_| ALNUM[rng.random_range(0..ALNUM.len())] as char)
        .collect()
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(contents.as_bytes()).map_err(io_err(path))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::config(format!("cannot write {}", path.display())).with_source(e)
}
