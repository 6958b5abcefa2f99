//! The emulator held to the official Taegis Python SDK (docs/src/platforms/taegis.md,
//! docs/src/testing.md): the SDK's documented calls work against it unchanged, and nothing secret
//! is printed on the way.
//!
//! Needs the project venv: `scripts/setup-python.sh`. Without it this test fails; it never
//! skips.

#![cfg(feature = "emulator")]

mod common;

use rand::Rng;
use rekey::emulator::{self, EmulatorConfig, Seed, SeedClient, SeedTenant, TENANT_ADMIN_ROLE};
use rekey::secret::Secret;
use std::time::Duration;

fn random_tenant(rng: &mut impl Rng) -> String {
    rng.random_range(100_000..999_999u32).to_string()
}

fn admin(client_id: &str, secret: &Secret) -> SeedClient {
    SeedClient {
        client_id: client_id.to_string(),
        secret: secret.expose().to_string(),
        name: "sdk-check-admin".into(),
        roles: vec![TENANT_ADMIN_ROLE.into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_works_against_the_emulator() {
    common::python::venv_python();

    let mut rng = rand::rng();
    let tenant_a = random_tenant(&mut rng);
    let tenant_child = format!("{tenant_a}1");
    let tenant_b = loop {
        let t = random_tenant(&mut rng);
        if t != tenant_a {
            break t;
        }
    };
    let a_id = format!("sdkA{}", rekey_suffix(&mut rng));
    let b_id = format!("sdkB{}", rekey_suffix(&mut rng));
    let a_secret = Secret::generate(64);
    let b_secret = Secret::generate(64);

    let config = EmulatorConfig {
        seed: Seed {
            tenants: vec![
                SeedTenant {
                    id: tenant_a.clone(),
                    parent: None,
                    clients: vec![admin(&a_id, &a_secret)],
                },
                SeedTenant {
                    id: tenant_child.clone(),
                    parent: Some(tenant_a.clone()),
                    clients: vec![],
                },
                SeedTenant {
                    id: tenant_b.clone(),
                    parent: None,
                    clients: vec![admin(&b_id, &b_secret)],
                },
            ],
            ..Seed::default()
        },
        ..EmulatorConfig::default()
    };
    let emu = emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("emulator starts");

    let home = tempfile::tempdir().expect("temp HOME");
    let mut cmd = common::python::python_script("taegis_sdk_check.py");
    cmd.arg(emu.url())
        .env("HOME", home.path())
        .env("OAUTHLIB_INSECURE_TRANSPORT", "1")
        .env("CLIENT_ID", &a_id)
        .env("CLIENT_SECRET", a_secret.expose())
        .env("REKEY_TENANT_A", &tenant_a)
        .env("REKEY_TENANT_A_CHILD", &tenant_child)
        .env("REKEY_TENANT_B", &tenant_b)
        .env("REKEY_B_CLIENT_ID", &b_id)
        .env("REKEY_B_CLIENT_SECRET", b_secret.expose());
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("the SDK check finishes within 5 minutes")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();

    // Checked before anything is printed, so a leak never reaches the test log either.
    for (what, secret) in [("A's", &a_secret), ("B's", &b_secret)] {
        assert!(
            !stdout.contains(secret.expose()) && !stderr.contains(secret.expose()),
            "the SDK check printed {what} bootstrap secret"
        );
    }
    assert!(
        out.status.success(),
        "the SDK check failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    for expected in [
        "ok - service.access_token returns a JWT",
        "ok - create_client without roles makes a Tenant Analyst client",
        "ok - create_client with the Tenant Admin role",
        "ok - create_client with tenant_id set on GraphQLService",
        "ok - create_client inside `with service(tenant_id=...)`",
        "ok - clients.query.clients by client_ids",
        "ok - clients.query.clients by %-wildcard name",
        "ok - clients.query.clients_search",
        "ok - clients.query.client by object id and by client id",
        "ok - rotate_client_secret by object id",
        "ok - the old secret is refused at the token endpoint at once",
        "ok - a token minted before the rotation is rejected",
        "ok - the new secret gets a token through a fresh GraphQLService",
        "ok - rotate_client_secret by client id",
        "ok - rotate_client_secret(secret=...) sets the caller-chosen secret",
        "ok - a client without Tenant Admin is refused",
        "ok - tenant A cannot see, read, rotate or delete tenant B's clients",
        "ok - delete_client removes the client",
        "ok - a deleted client cannot log in",
        "ok - tokens of a deleted client are rejected",
        "ok - clean-up",
        "ok - the SDK found every field its generated types ask for",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(expected)),
            "missing {expected:?} in the SDK check's output:\n{stdout}"
        );
    }

    // Already checked to hold no secret; shown with --nocapture.
    println!("{stdout}");
    let stats = emu.stats().await;
    assert!(stats.requests.get("introspection").copied().unwrap_or(0) >= 1);
    assert!(stats.requests.get("token").copied().unwrap_or(0) >= 3);
    emu.shutdown().await;
}

fn rekey_suffix(rng: &mut impl Rng) -> String {
    (0..12)
        .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
        .collect()
}
