//! `rekey demo`: the whole job on the embedded default, with no setup. It starts the emulator on
//! a loopback port with three tenants and their bootstrap clients, writes an age identity, the
//! bootstrap secrets (as 0600 files) and a sample inventory into a directory, then runs
//! plan → apply → a forced rotation → verify → status → a final apply that must change nothing.

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
        state_file: None,
        token_ttl: Duration::from_secs(3600),
    };
    let emu = emulator::start(config, "127.0.0.1:0".parse().expect("static address")).await?;
    let recipient = crate::backend::file::generate_identity(&dir.join("rekey.key"))?;

    let inventory = dir.join("inventory.toml");
    println!(
        "rekey demo: a Taegis-compatible emulator on {} with tenants 11772 (acme), 11773 (globex), 11774 (initech)",
        emu.url()
    );
    println!(
        "files in {}: inventory.toml, rekey.key (age identity {}...), store/ (encrypted records)\n",
        dir.display(),
        &recipient[..12]
    );

    // The whole inventory, whatever JOB_COMPLETION_INDEX / REKEY_SHARD_COUNT say.
    const WHOLE: Option<crate::shard::Shard> = Some(crate::shard::Shard { index: 0, count: 1 });
    // Yesterday: the legacy slot was in use. Today's inventory retires it.
    std::fs::write(&inventory, inventory_text(&emu.url(), false)).map_err(io_err(&inventory))?;
    let quiet = RunArgs {
        config: inventory.clone(),
        only: vec![RETIRED_SLOT.into()],
        force: false,
        allow_mass_retire: false,
        output: OutputFormat::Json,
        concurrency: None,
        obs: Default::default(),
        shard: WHOLE,
    };
    let pre = app::engine(&quiet, Arc::new(crate::clock::SystemClock))
        .await?
        .apply()
        .await?;
    if app::apply_exit_code(&pre) != exit::OK {
        return Err(Error::internal("the demo could not enrol its legacy slot"));
    }
    std::fs::write(&inventory, inventory_text(&emu.url(), true)).map_err(io_err(&inventory))?;

    let run = |only: Vec<String>, force: bool| RunArgs {
        config: inventory.clone(),
        only,
        force,
        allow_mass_retire: false,
        output: OutputFormat::Table,
        concurrency: None,
        obs: Default::default(),
        shard: WHOLE,
    };
    let mut failures = Vec::new();

    heading("1. rekey plan -c inventory.toml   (what would change, and why; changes nothing)");
    app::plan(&run(vec![], false)).await?;

    heading(
        "2. rekey apply -c inventory.toml   (create, retire; the bootstrap slot last and alone)",
    );
    check(
        &mut failures,
        "first apply",
        app::apply(&run(vec![], false)).await?,
    );

    heading(
        "3. rekey apply --force --only 'siem-ingest-*'   (rotate now: new client, old one drains for its grace)",
    );
    check(
        &mut failures,
        "forced rotation",
        app::apply(&run(vec!["siem-ingest-*".into()], true)).await?,
    );

    heading("4. rekey verify -c inventory.toml   (a token exchange with every stored pair)");
    check(
        &mut failures,
        "verify",
        app::verify(&run(vec![], false)).await?,
    );

    heading("5. rekey status -c inventory.toml");
    check(
        &mut failures,
        "status",
        app::status(&run(vec![], false)).await?,
    );

    heading("6. rekey apply -c inventory.toml   (again: nothing is due, nothing changes)");
    let engine = app::engine(&run(vec![], false), Arc::new(crate::clock::SystemClock)).await?;
    let again = engine.apply().await?;
    print!("{}", crate::app::report::apply_table(&again));
    if again.iter().any(|o| !o.actions.is_empty()) || app::apply_exit_code(&again) != exit::OK {
        failures.push("the second apply changed something".to_string());
    }

    emu.shutdown().await;
    println!();
    if failures.is_empty() {
        println!(
            "demo finished: every slot holds a verified pair, the retired slot is gone, and no secret was printed."
        );
        println!(
            "a consumer reads a slot with:  rekey get -c {} SLOT",
            inventory.display()
        );
        if args.dir.is_none() {
            println!("(the files were in a temporary directory; keep them with --dir DIR)");
        }
        Ok(exit::OK)
    } else {
        println!("demo FAILED: {}", failures.join("; "));
        Ok(exit::ATTENTION)
    }
}

use std::sync::Arc;

fn heading(text: &str) {
    println!("\n== {text}\n");
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
