//! The file store trusts only what the holder of its age identity wrote (SECURITY.md, "Someone
//! who can write the store directory"): records planted with the public recipient alone are
//! never acted on and show as `tampered`; an open store directory is refused; stores written
//! before records were authenticated are adopted only by an explicit, reviewed
//! `rekey store upgrade`; temp files of killed writes are removed under the slot's lock.
//! Every test runs the real binary against the emulator.

mod common;
use chrono::Utc;
use common::{World, plain_slots};
use rekey::record::{Draining, Retiring, SlotRecord, StoredCredential};
use rekey::secret::Secret;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// The store's public recipient: all an attacker who can write the directory needs to make a
/// file the identity decrypts (it is printed by `rekey keygen` and not a secret).
fn recipient(w: &World) -> age::x25519::Recipient {
    let text = std::fs::read_to_string(w.path().join("rekey.key")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("# public key: "))
        .unwrap();
    line.trim_start_matches("# public key: ").parse().unwrap()
}

/// Writes `<store>/<slot>.age` the way rekey wrote records before they were authenticated: the
/// age encryption, to the store's recipient, of `{"version": N, "record": ...}`.
fn plant_legacy(w: &World, slot: &str, version: u64, record: &SlotRecord) {
    let env = serde_json::json!({ "version": version, "record": record });
    let bytes = age::encrypt(&recipient(w), env.to_string().as_bytes()).unwrap();
    let path = w.path().join("store").join(format!("{slot}.age"));
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A client made straight at the platform (createClient with the tenant's admin pair), as
/// another team would: rekey never made it. Returns (clientID, object id).
async fn foreign_client(w: &World, name: &str) -> (String, String) {
    let http = rekey::http::client();
    let t = &w.tenants[0];
    let tok: serde_json::Value = http
        .post(format!("{}/auth/api/v2/auth/token", w.emu.url()))
        .basic_auth(&t.admin_id, Some(&t.admin_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let v: serde_json::Value = http
        .post(format!("{}/graphql", w.emu.url()))
        .bearer_auth(tok["access_token"].as_str().unwrap())
        .header("X-Tenant-Context", &t.id)
        .json(&serde_json::json!({
            "query": "mutation createClient($name: String!) { createClient(name: $name) { clientSecret client { id clientID } } }",
            "variables": { "name": name },
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let nc = &v["data"]["createClient"];
    w.known_secrets
        .lock()
        .unwrap()
        .push(nc["clientSecret"].as_str().unwrap().to_string());
    (
        nc["client"]["clientID"].as_str().unwrap().to_string(),
        nc["client"]["id"].as_str().unwrap().to_string(),
    )
}

fn naming(generation: u64, client_id: &str, object_id: &str, name: &str) -> StoredCredential {
    StoredCredential {
        generation,
        client_id: client_id.to_string(),
        object_id: object_id.to_string(),
        name: name.to_string(),
        secret: Secret::new("planted-not-a-real-secret"),
        created_at: Utc::now() - chrono::Duration::days(2),
        verified_at: None,
        owned: true,
    }
}

async fn client_exists(w: &World, client_id: &str) -> bool {
    w.platform_clients(&w.tenants[0].id)
        .await
        .iter()
        .any(|c| c.1 == client_id)
}

/// A loopback receiver standing in for a chat webhook (no real server can be run here for
/// Slack): answers 200 and hands each request body to the test.
async fn webhook_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    common::servers::webhook_receiver("/hook", |_| "200 OK").await
}

fn store_snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".age"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Issue 13 finding 3: a record planted with the public recipient alone (well-formed, naming a
/// client that another team made as a due draining credential, and an orphan "retiring" record
/// naming another) made a normal `apply` (prune off) delete those clients.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_record_is_never_acted_on_and_is_reported_as_tampered() {
    let w = World::new(1).await;
    w.inventory(&plain_slots(&["alpha", "beta"]));
    w.apply(&["--only", "alpha"]).await.expect_code(0);
    let tenant = w.tenants[0].id.clone();

    let (pay_id, pay_obj) = foreign_client(&w, "payments-prod").await;
    let (bill_id, bill_obj) = foreign_client(&w, "billing-prod").await;

    // beta (in the inventory, no record yet): a current pair of the attacker's choosing and
    // payments-prod draining, grace over.
    let mut beta = SlotRecord::new("beta", "p0", &tenant);
    beta.generation = 2;
    beta.current = Some(naming(
        2,
        "made-up-client",
        "made-up-object",
        "rekey-beta-g2",
    ));
    beta.draining = vec![Draining {
        credential: naming(1, &pay_id, &pay_obj, "rekey-beta-g1"),
        delete_after: Utc::now() - chrono::Duration::hours(1),
        hold: None,
    }];
    plant_legacy(&w, "beta", 7, &beta);
    // ghost (not in the inventory): retiring, grace over, naming billing-prod.
    let mut ghost = SlotRecord::new("ghost", "p0", &tenant);
    ghost.generation = 1;
    ghost.current = Some(naming(1, &bill_id, &bill_obj, "rekey-ghost-g1"));
    ghost.retiring = Some(Retiring {
        since: Utc::now() - chrono::Duration::days(3),
        delete_after: Utc::now() - chrono::Duration::days(1),
    });
    plant_legacy(&w, "ghost", 7, &ghost);
    let planted = store_snapshot(&w.path().join("store"));

    let (url, mut rx) = webhook_receiver().await;
    let run = w
        .apply(&[
            "--output",
            "json",
            "--metrics-file",
            "rekey.prom",
            "--webhook",
            &url,
        ])
        .await;
    assert!(
        client_exists(&w, &pay_id).await,
        "the draining client of a forged record was deleted:\n{}",
        run.all()
    );
    assert!(
        client_exists(&w, &bill_id).await,
        "the client of a forged retiring record was deleted:\n{}",
        run.all()
    );
    run.expect_code(1);
    // Nothing was written over the planted files either (they are evidence).
    let after: Vec<_> = store_snapshot(&w.path().join("store"))
        .into_iter()
        .filter(|(n, _)| n != "alpha.age")
        .collect();
    let planted: Vec<_> = planted
        .into_iter()
        .filter(|(n, _)| n != "alpha.age")
        .collect();
    assert_eq!(after, planted, "a tampered record was rewritten");
    let outcomes = run.outcomes();
    for slot in ["beta", "ghost"] {
        let o = outcomes
            .iter()
            .find(|o| o["slot"] == slot)
            .unwrap_or_else(|| panic!("{slot} not reported: {}", run.stdout));
        assert_eq!(o["result"], "failed", "{o}");
        assert!(o["actions"].as_array().unwrap().is_empty(), "{o}");
        assert!(
            o["detail"]
                .as_str()
                .unwrap()
                .contains("rekey store upgrade"),
            "{o}"
        );
    }
    // The genuine slot is untouched and still works.
    let alpha = w.record("alpha").await.unwrap();
    let cur = alpha.current.unwrap();
    assert!(w.token_ok(&cur.client_id, cur.secret.expose()).await);

    // status: both tampered, exit 1.
    let status = w
        .rekey(&["status", "-c", "inventory.toml", "--output", "json"])
        .await;
    status.expect_code(1);
    let rows = status.rows();
    for slot in ["beta", "ghost"] {
        let r = rows.iter().find(|r| r["slot"] == slot).unwrap();
        assert_eq!(r["state"], "tampered", "{r}");
        assert_eq!(r["attention"], true, "{r}");
    }
    let table = w.rekey(&["status", "-c", "inventory.toml"]).await;
    table.expect_code(1);
    assert!(table.stdout.contains("TAMPERED"), "{}", table.stdout);

    // metrics: the state gauge.
    let prom = std::fs::read_to_string(w.path().join("rekey.prom")).unwrap();
    assert!(
        prom.lines()
            .any(|l| l == "rekey_slots{state=\"tampered\"} 2"),
        "{prom}"
    );

    // webhook: one tampered event per slot.
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.len() < 2 {
        let body = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("webhook events in time")
            .unwrap();
        events.push(serde_json::from_str::<serde_json::Value>(&body).unwrap());
    }
    let mut slots_told: Vec<&str> = events.iter().map(|e| e["slot"].as_str().unwrap()).collect();
    slots_told.sort();
    assert_eq!(slots_told, ["beta", "ghost"]);
    for e in &events {
        assert_eq!(e["event"], "slot_tampered", "{e}");
        assert_eq!(e["error_kind"], "tampered", "{e}");
        w.assert_no_secrets(&e.to_string());
    }

    // `get` never hands out the planted pair.
    let get = w.rekey(&["get", "-c", "inventory.toml", "beta"]).await;
    get.expect_code(1);
    assert!(!get.stdout.contains("planted-not-a-real-secret"));
    assert!(!get.stdout.contains("made-up-client"));
    w.assert_no_secrets(&run.all());
}

/// A store directory others can write is refused before anything happens, naming the chmod.
#[tokio::test(flavor = "multi_thread")]
async fn an_open_store_directory_is_refused_with_the_chmod_to_run() {
    let w = World::new(1).await;
    w.inventory(&plain_slots(&["alpha"]));
    w.apply(&[]).await.expect_code(0);
    let store = w.path().join("store");
    let before = store_snapshot(&store);
    let clients = w.platform_clients(&w.tenants[0].id).await;

    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o777)).unwrap();
    for args in [
        vec!["apply", "-c", "inventory.toml", "--force"],
        vec!["status", "-c", "inventory.toml"],
    ] {
        let run = w.rekey(&args).await;
        run.expect_code(2);
        let want = format!("chmod 700 {}", store.display());
        assert!(run.stderr.contains(&want), "{args:?}: {}", run.stderr);
    }
    assert_eq!(store_snapshot(&store), before, "the store changed");
    assert_eq!(w.platform_clients(&w.tenants[0].id).await, clients);

    // A record file others can write is refused the same way.
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o700)).unwrap();
    let rec = store.join("alpha.age");
    std::fs::set_permissions(&rec, std::fs::Permissions::from_mode(0o666)).unwrap();
    let run = w.apply(&["--force"]).await;
    run.expect_code(2);
    assert!(
        run.stderr.contains(&format!("chmod 600 {}", rec.display())),
        "{}",
        run.stderr
    );
    assert_eq!(store_snapshot(&store), before, "the store changed");
    std::fs::set_permissions(&rec, std::fs::Permissions::from_mode(0o600)).unwrap();
    w.apply(&["--force"]).await.expect_code(0);
    w.assert_consistent(&["alpha"]).await;
}

/// The upgrade path from a store written before records were authenticated: refused with an
/// error naming the command; `rekey store upgrade` shows the records and a fingerprint of
/// exactly what it showed; only `--accept FINGERPRINT` authenticates them, and a record planted
/// after the review changes the fingerprint, so it cannot ride along.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_store_is_adopted_only_by_a_reviewed_upgrade() {
    let w = World::new(1).await;
    w.inventory(&plain_slots(&["alpha", "beta"]));
    w.apply(&[]).await.expect_code(0);
    let alpha_id = w.record("alpha").await.unwrap().current.unwrap().client_id;
    // Rewrite both records as the previous version stored them: same envelope, no MAC.
    for slot in ["alpha", "beta"] {
        let rec = w.record(slot).await.unwrap();
        plant_legacy(&w, slot, 41, &rec);
    }
    let store = w.path().join("store");
    let before = store_snapshot(&store);

    let run = w.apply(&["--force", "--output", "json"]).await;
    run.expect_code(1);
    for o in run.outcomes() {
        assert_eq!(o["result"], "failed", "{o}");
        assert!(
            o["detail"]
                .as_str()
                .unwrap()
                .contains("rekey store upgrade -c"),
            "{o}"
        );
    }
    assert_eq!(store_snapshot(&store), before, "nothing changed");

    // Review: lists the records, changes nothing, exit 1 (they need attention).
    let review = w.rekey(&["store", "upgrade", "-c", "inventory.toml"]).await;
    review.expect_code(1);
    assert!(review.stdout.contains("alpha") && review.stdout.contains("beta"));
    assert!(review.stdout.contains(&alpha_id), "{}", review.stdout);
    w.assert_no_secrets(&review.all());
    let fp = review
        .stdout
        .lines()
        .find_map(|l| l.split("--accept ").nth(1))
        .unwrap_or_else(|| panic!("no --accept in:\n{}", review.stdout))
        .trim()
        .to_string();
    assert_eq!(store_snapshot(&store), before, "review changed nothing");

    // A record planted after the review: the reviewed fingerprint no longer matches.
    let mut planted = SlotRecord::new("ghost", "p0", &w.tenants[0].id);
    planted.current = Some(naming(1, "x", "y", "rekey-ghost-g1"));
    plant_legacy(&w, "ghost", 3, &planted);
    let refused = w
        .rekey(&["store", "upgrade", "-c", "inventory.toml", "--accept", &fp])
        .await;
    refused.expect_code(2);
    assert!(refused.stderr.contains("fingerprint"), "{}", refused.stderr);
    std::fs::remove_file(store.join("ghost.age")).unwrap();
    assert_eq!(store_snapshot(&store), before, "refusal changed nothing");

    let wrong = w
        .rekey(&[
            "store",
            "upgrade",
            "-c",
            "inventory.toml",
            "--accept",
            "0000",
        ])
        .await;
    wrong.expect_code(2);

    let done = w
        .rekey(&["store", "upgrade", "-c", "inventory.toml", "--accept", &fp])
        .await;
    done.expect_code(0);
    assert!(done.stdout.contains("authenticated 2"), "{}", done.stdout);
    // Same records, now trusted: versions kept, pairs work, apply proceeds.
    let a = w.record("alpha").await.unwrap();
    let cur = a.current.as_ref().unwrap();
    assert_eq!(cur.client_id, alpha_id);
    assert!(w.token_ok(&cur.client_id, cur.secret.expose()).await);
    w.rekey(&["status", "-c", "inventory.toml"])
        .await
        .expect_code(0);
    w.apply(&["--force"]).await.expect_code(0);
    w.assert_consistent(&["alpha", "beta"]).await;
    // Nothing left to upgrade.
    let again = w.rekey(&["store", "upgrade", "-c", "inventory.toml"]).await;
    again.expect_code(0);
}

/// Issue 13 finding 9: a write killed between its temp file and the rename leaves
/// `.SLOT.age.XXXXXX.tmp`; the next run removes it (under the slot's lock), and a temp file of a
/// writer that holds the lock is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn temp_files_of_killed_writes_are_removed_by_the_next_run() {
    let w = World::new(1).await;
    w.inventory(&plain_slots(&["alpha", "beta"]));
    w.apply(&[]).await.expect_code(0);
    let store = w.path().join("store");
    let run = w
        .rekey_env(
            &[
                "apply",
                "-c",
                "inventory.toml",
                "--force",
                "--only",
                "alpha",
            ],
            &[("REKEY_CRASH_AT", "file-before-rename")],
        )
        .await;
    assert!(run.stderr.contains("file-before-rename"), "{}", run.all());
    let temps = |prefix: &str| -> Vec<String> {
        std::fs::read_dir(&store)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix) && n.ends_with(".tmp"))
            .collect()
    };
    assert_eq!(
        temps(".alpha.age.").len(),
        1,
        "the killed write left its temp"
    );

    // A live writer of beta: holds beta's lock while its temp file exists.
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(store.join(".beta.lock"))
        .unwrap();
    lock.lock().unwrap();
    std::fs::write(store.join(".beta.age.Ab12Cd.tmp"), b"in flight").unwrap();
    // Not rekey's pattern: never touched.
    std::fs::write(store.join(".alpha.age.notes.tmp"), b"mine").unwrap();
    std::fs::write(store.join("alpha.tmp"), b"mine").unwrap();

    w.apply(&["--only", "alpha"]).await.expect_code(0);
    assert_eq!(temps(".alpha.age."), [".alpha.age.notes.tmp"]);
    assert!(store.join("alpha.tmp").exists());
    assert_eq!(
        temps(".beta.age."),
        [".beta.age.Ab12Cd.tmp"],
        "a live writer's temp"
    );
    drop(lock);
    w.rekey(&["check", "-c", "inventory.toml"])
        .await
        .expect_code(0);
    assert!(
        temps(".beta.age.").is_empty(),
        "removed once no writer holds it"
    );
    w.assert_consistent(&["alpha", "beta"]).await;
}
