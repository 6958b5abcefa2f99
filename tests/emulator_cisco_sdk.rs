//! The emulator's Cisco endpoints held to Cisco's official `threatresponse` module, with clients
//! rekey itself made: rekey creates a Cisco slot, rotates it by alternate, deletes the old
//! client after grace; then the module gets a token with the new pair, `profile.whoami()`
//! works, and the old pair gets a 401.
//!
//! Needs the project venv (`scripts/setup-python.sh`). Without it this test fails; it never
//! skips.

mod common;
use common::World;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn threatresponse_works_with_clients_rekey_made() {
    common::python::venv_python();

    let w = World::new_with(0, 1).await;
    w.inventory(
        "[[slots]]\nname = \"tr\"\nprovider = \"c0\"\nscopes = [\"profile\", \"enrich:read\"]\n",
    );
    w.apply(&[]).await.expect_code(0);
    let old = w.record("tr").await.unwrap().current.unwrap();
    w.apply(&["--force"]).await.expect_code(0);
    let rotated = w.apply_at("25h", &[]).await;
    rotated.expect_code(0);
    let rec = w.record("tr").await.unwrap();
    assert!(rec.draining.is_empty(), "the old client was deleted");
    let new = rec.current.unwrap();
    assert_eq!(new.generation, 2);

    // Secrets go to the script in a 0600 file, never on its command line.
    let check = w.path().join("cisco-check.json");
    let doc = serde_json::json!({
        "url": w.emu.url(),
        "org": w.orgs[0].id,
        "new_id": new.client_id,
        "new_password": new.secret.expose(),
        "old_id": old.client_id,
        "old_password": old.secret.expose(),
    });
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&check)
        .unwrap()
        .write_all(doc.to_string().as_bytes())
        .unwrap();

    let mut cmd = common::python::python_script("threatresponse_check.py");
    cmd.env("REKEY_CISCO_CHECK_FILE", &check);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("the threatresponse check finishes in time")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    // Checked before anything is printed, so a leak never reaches the test log either.
    w.assert_no_secrets(&stdout);
    w.assert_no_secrets(&stderr);
    w.assert_no_secrets(&rotated.all());
    assert!(
        out.status.success(),
        "the threatresponse check failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    for expected in [
        "ok - ThreatResponse got a token with the client rekey created",
        "ok - profile.whoami() names the org",
        "ok - the deleted client's password gets a 401",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(expected)),
            "missing {expected:?}:\n{stdout}"
        );
    }
    let stats = w.emu.stats().await;
    assert!(stats.requests.get("cisco.whoami").copied().unwrap_or(0) >= 1);
    println!("{stdout}");
}
