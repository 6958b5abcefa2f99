//! `rekey exec` (docs/src/consumers.md, "rekey exec"): the official Taegis SDK's token example
//! runs under it against the emulator with a slot's current pair, and the token works for an
//! API call; the variables can take the SDK's per-environment names; the command's exit code
//! is rekey's; no secret reaches rekey's own output.

mod common;
use common::python::venv_python;
use common::{ADMIN_ROLE, World};
use std::path::Path;

fn inventory(w: &World) {
    w.inventory(&format!(
        "[[slots]]\nname = \"sdk\"\nprovider = \"p0\"\nroles = [\"{ADMIN_ROLE}\"]\n"
    ));
}

async fn exec_sdk(w: &World, extra: &[&str], prefix: Option<&str>) -> common::Run {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/exec_token.py");
    let python = venv_python();
    let home = w.path().join("sdk-home");
    std::fs::create_dir_all(&home).unwrap();
    let mut args = vec!["exec", "-c", "inventory.toml", "sdk"];
    args.extend_from_slice(extra);
    args.push("--");
    let url = w.emu.url();
    let cmd = [
        python.to_str().unwrap(),
        script.to_str().unwrap(),
        url.as_str(),
    ];
    args.extend_from_slice(&cmd);
    if let Some(p) = prefix {
        args.push(p);
    }
    w.rekey_env(
        &args,
        &[
            ("OAUTHLIB_INSECURE_TRANSPORT", "1"),
            ("HOME", home.to_str().unwrap()),
            ("NO_PROXY", "127.0.0.1,localhost"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_taegis_sdk_gets_a_working_token_with_the_pair_rekey_exec_hands_it() {
    let w = World::new(1).await;
    inventory(&w);
    w.apply(&[]).await.expect_code(0);
    let cur = w.record("sdk").await.unwrap().current.unwrap();

    let run = exec_sdk(&w, &[], None).await;
    run.expect_code(0);
    assert!(run.stdout.contains("token ok, 1 clients"), "{}", run.all());

    // The SDK's per-environment names: US1_CLIENT_ID / US1_CLIENT_SECRET.
    let run = exec_sdk(&w, &["--env-prefix", "US1_"], Some("US1_")).await;
    run.expect_code(0);
    assert!(run.stdout.contains("token ok"), "{}", run.all());
    w.assert_no_secrets(&run.all());
    assert!(!run.all().contains(cur.secret.expose()));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_commands_exit_code_is_rekeys_and_bad_names_are_refused() {
    let w = World::new(1).await;
    inventory(&w);
    w.apply(&[]).await.expect_code(0);
    let cur = w.record("sdk").await.unwrap().current.unwrap();
    // No shell: the arguments reach the program as they are.
    let r = w
        .rekey(&[
            "exec",
            "-c",
            "inventory.toml",
            "sdk",
            "--id-var",
            "MY_ID",
            "--",
            "sh",
            "-c",
            "test \"$MY_ID\" = \"$1\" && test -n \"$CLIENT_SECRET\" && exit 7",
            "sh",
            &cur.client_id,
        ])
        .await;
    r.expect_code(7);
    let r = w
        .rekey(&[
            "exec",
            "-c",
            "inventory.toml",
            "sdk",
            "--id-var",
            "1BAD",
            "--",
            "true",
        ])
        .await;
    r.expect_code(2);
    assert!(
        r.stderr.contains("not an environment variable name"),
        "{}",
        r.stderr
    );
    let r = w
        .rekey(&["exec", "-c", "inventory.toml", "nope", "--", "true"])
        .await;
    r.expect_code(2);
    let r = w
        .rekey(&[
            "exec",
            "-c",
            "inventory.toml",
            "sdk",
            "--",
            "/no/such/program",
        ])
        .await;
    r.expect_code(2);
    assert!(r.stderr.contains("cannot run"), "{}", r.stderr);
}
