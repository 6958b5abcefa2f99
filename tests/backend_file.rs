//! The age file backend: compare-and-set, atomic writes, ownership, permissions, and races
//! between tasks and between processes. Every test works in its own temp dir with its own keys.

use chrono::Utc;
use rekey::backend::Backend;
use rekey::backend::file::{FileBackend, generate_identity};
use rekey::config::{FileBackendConfig, ValueRef};
use rekey::error::ErrorKind;
use rekey::record::{OpKind, Operation, Phase, SlotRecord, StoredCredential};
use rekey::secret::Secret;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::TempDir;

struct Fixture {
    _tmp: TempDir,
    key: PathBuf,
    store: PathBuf,
    backend: FileBackend,
}

fn config(store: &Path, key: &Path) -> FileBackendConfig {
    FileBackendConfig {
        name: "local".into(),
        path: store.to_path_buf(),
        identity: ValueRef::File(key.to_path_buf()),
        recipients: Vec::new(),
    }
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("rekey.key");
    generate_identity(&key).unwrap();
    let store = tmp.path().join("store");
    let backend = FileBackend::open(&config(&store, &key)).unwrap();
    Fixture {
        _tmp: tmp,
        key,
        store,
        backend,
    }
}

fn cred(generation: u64, secret: &str) -> StoredCredential {
    StoredCredential {
        generation,
        client_id: format!("client-{generation}"),
        object_id: format!("object-{generation}"),
        name: format!("rekey-s1-g{generation}"),
        secret: Secret::new(secret),
        created_at: Utc::now(),
        verified_at: None,
        owned: true,
    }
}

fn record(slot: &str) -> SlotRecord {
    let mut r = SlotRecord::new(slot, "taegis-us1", "11772");
    r.generation = 1;
    r.current = Some(cred(1, "first-secret-value"));
    r
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn first_write_then_read_back_equal() {
    let f = fixture();
    assert!(f.backend.read("s1").await.unwrap().is_none());
    let rec = record("s1");
    let v = f.backend.write("s1", &rec, None).await.unwrap();
    let got = f.backend.read("s1").await.unwrap().expect("written");
    assert_eq!(got.version, v);
    assert_eq!(got.record, rec);
    assert_eq!(f.backend.name(), "local");
    assert!(!f.backend.capabilities().soft_delete);
    // Encrypted at rest: the secret is not in the file.
    let bytes = std::fs::read(f.store.join("s1.age")).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains("first-secret-value"));
    assert!(bytes.starts_with(b"age-encryption.org/v1"));
}

#[tokio::test]
async fn stale_version_is_a_conflict_naming_both_versions() {
    let f = fixture();
    let mut rec = record("s1");
    let v1 = f.backend.write("s1", &rec, None).await.unwrap();
    rec.generation = 2;
    let v2 = f.backend.write("s1", &rec, Some(v1)).await.unwrap();
    assert_ne!(v1, v2);
    rec.generation = 3;
    let err = f.backend.write("s1", &rec, Some(v1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let msg = err.to_string();
    assert!(msg.contains("s1"), "{msg}");
    assert!(msg.contains(&format!("expected version {v1}")), "{msg}");
    assert!(msg.contains(&format!("found version {v2}")), "{msg}");
    // The losing write changed nothing.
    let got = f.backend.read("s1").await.unwrap().unwrap();
    assert_eq!((got.version, got.record.generation), (v2, 2));
}

#[tokio::test]
async fn create_over_existing_and_update_of_missing_are_conflicts() {
    let f = fixture();
    let rec = record("s1");
    f.backend.write("s1", &rec, None).await.unwrap();
    let err = f.backend.write("s1", &rec, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("expected no entry"), "{err}");

    let err = f
        .backend
        .write("s2", &record("s2"), Some(7))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("found no entry"), "{err}");
}

#[tokio::test]
async fn pending_then_promote_sequence() {
    let f = fixture();
    let mut rec = record("s1");
    let mut v = f.backend.write("s1", &rec, None).await.unwrap();

    // creating: state written first
    rec.op = Some(Operation {
        id: uuid::Uuid::now_v7(),
        kind: OpKind::Rotate,
        phase: Phase::Creating,
        generation: 2,
        started_at: Utc::now(),
        verify_failures: 0,
        client_name: None,
    });
    v = f.backend.write("s1", &rec, Some(v)).await.unwrap();

    // pending: the new secret stored at once
    rec.generation = 2;
    rec.pending = Some(cred(2, "second-secret-value"));
    rec.op.as_mut().unwrap().phase = Phase::Pending;
    v = f.backend.write("s1", &rec, Some(v)).await.unwrap();
    let got = f.backend.read("s1").await.unwrap().unwrap();
    assert_eq!(
        got.record.pending.as_ref().unwrap().secret.expose(),
        "second-secret-value"
    );
    assert_eq!(got.version, v);

    // promote: pending -> current, old current draining
    let old = rec.current.take().unwrap();
    let mut new = rec.pending.take().unwrap();
    new.verified_at = Some(Utc::now());
    rec.current = Some(new);
    rec.draining.push(rekey::record::Draining {
        credential: old,
        delete_after: Utc::now() + chrono::Duration::hours(24),
        hold: None,
    });
    rec.op = None;
    v = f.backend.write("s1", &rec, Some(v)).await.unwrap();
    let got = f.backend.read("s1").await.unwrap().unwrap();
    assert_eq!(got.version, v);
    assert_eq!(got.record, rec);
    assert_eq!(
        got.record.current.unwrap().secret.expose(),
        "second-secret-value"
    );
    assert_eq!(
        got.record.draining[0].credential.secret.expose(),
        "first-secret-value"
    );
}

#[tokio::test]
async fn delete_is_compare_and_set() {
    let f = fixture();
    let v1 = f.backend.write("s1", &record("s1"), None).await.unwrap();
    let v2 = f
        .backend
        .write("s1", &record("s1"), Some(v1))
        .await
        .unwrap();
    let err = f.backend.delete("s1", v1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(f.backend.read("s1").await.unwrap().is_some());

    f.backend.delete("s1", v2).await.unwrap();
    assert!(f.backend.read("s1").await.unwrap().is_none());
    assert!(
        f.backend
            .list(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    // Nothing left behind: no record, lock or temp file.
    assert_eq!(std::fs::read_dir(&f.store).unwrap().count(), 0);
    let err = f.backend.delete("s1", v2).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);

    // Re-created, the entry never reuses a version a stale writer may still hold.
    let v3 = f.backend.write("s1", &record("s1"), None).await.unwrap();
    assert!(v3 != v1 && v3 != v2);
}

/// Encrypts arbitrary bytes to the fixture's own key, as another tool using the same key would.
fn encrypt_to_fixture_key(key: &Path, plaintext: &[u8]) -> Vec<u8> {
    let text = std::fs::read_to_string(key).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    let identity: age::x25519::Identity = line.parse().unwrap();
    age::encrypt(&identity.to_public(), plaintext).unwrap()
}

#[tokio::test]
async fn list_shows_only_rekey_records_and_foreign_files_are_not_touched() {
    let f = fixture();
    f.backend
        .write("b-slot", &record("b-slot"), None)
        .await
        .unwrap();
    f.backend
        .write("a-slot", &record("a-slot"), None)
        .await
        .unwrap();
    std::fs::write(
        f.store.join("foreign.age"),
        encrypt_to_fixture_key(&f.key, br#"{"hello":"world"}"#),
    )
    .unwrap();
    let mut not_managed = serde_json::json!({ "version": 1, "record": record("other") });
    not_managed["record"]["managed_by"] = "someone-else".into();
    std::fs::write(
        f.store.join("other.age"),
        encrypt_to_fixture_key(&f.key, not_managed.to_string().as_bytes()),
    )
    .unwrap();
    std::fs::write(f.store.join("junk.age"), b"this is not age at all").unwrap();
    std::fs::write(f.store.join("notes.txt"), b"hello").unwrap();

    assert_eq!(
        f.backend.list(&Default::default()).await.unwrap(),
        vec!["a-slot", "b-slot"]
    );

    for slot in ["foreign", "other"] {
        let err = f.backend.read(slot).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{slot}: {err}");
        assert!(err.to_string().contains("not managed by rekey"), "{err}");
        // Never overwritten, whatever version is claimed.
        let err = f
            .backend
            .write(slot, &record(slot), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
    }
    let err = f.backend.read("junk").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Malformed, "{err}");
}

#[tokio::test]
async fn a_record_under_another_slots_name_is_refused() {
    let f = fixture();
    f.backend.write("s1", &record("s1"), None).await.unwrap();
    std::fs::copy(f.store.join("s1.age"), f.store.join("s2.age")).unwrap();
    let err = f.backend.read("s2").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string().contains("holds the record of slot \"s1\""),
        "{err}"
    );
    // And a record is only ever stored under its own slot name.
    let err = f
        .backend
        .write("s3", &record("s1"), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
}

#[tokio::test]
async fn wrong_identity_is_a_clear_unauthorized_error() {
    let f = fixture();
    f.backend.write("s1", &record("s1"), None).await.unwrap();
    let other_key = f.store.parent().unwrap().join("other.key");
    generate_identity(&other_key).unwrap();
    let other = FileBackend::open(&config(&f.store, &other_key)).unwrap();
    let err = other.read("s1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    let msg = err.to_string();
    assert!(
        msg.contains("cannot decrypt") && msg.contains("s1.age"),
        "{msg}"
    );
    assert!(msg.contains("with the configured identity"), "{msg}");
    // It cannot overwrite what it cannot read, and does not list it.
    let err = other.write("s1", &record("s1"), None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(other.list(&Default::default()).await.unwrap().is_empty());
}

#[tokio::test]
async fn extra_recipients_can_decrypt_every_record() {
    let f = fixture();
    let glass = age::x25519::Identity::generate();
    let mut cfg = config(&f.store, &f.key);
    cfg.recipients = vec![glass.to_public().to_string()];
    let backend = FileBackend::open(&cfg).unwrap();
    backend.write("s1", &record("s1"), None).await.unwrap();
    let bytes = std::fs::read(f.store.join("s1.age")).unwrap();
    let plain = age::decrypt(&glass, &bytes).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(json["record"]["slot"], "s1");
    assert!(json["version"].is_u64());
}

#[tokio::test]
async fn files_are_0600_and_a_new_directory_is_0700() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("k");
    generate_identity(&key).unwrap();
    assert_eq!(mode(&key), 0o600);
    let store = tmp.path().join("nested/store");
    let backend = FileBackend::open(&config(&store, &key)).unwrap();
    assert_eq!(mode(&store), 0o700);
    backend.write("s1", &record("s1"), None).await.unwrap();
    for entry in std::fs::read_dir(&store).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[test]
fn an_identity_file_others_can_read_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("rekey.key");
    generate_identity(&key).unwrap();
    for m in [0o640, 0o604, 0o660] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(m)).unwrap();
        let err = FileBackend::open(&config(&tmp.path().join("s"), &key)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("chmod 600 {}", key.display())),
            "{msg}"
        );
        assert!(!msg.contains("AGE-SECRET-KEY"), "{msg}");
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
    FileBackend::open(&config(&tmp.path().join("s"), &key)).unwrap();
}

#[test]
fn a_bad_identity_is_a_config_error_that_does_not_echo_it() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("bad.key");
    std::fs::write(&key, "AGE-SECRET-KEY-1NOTREALLYAKEYBUTSECRETISH\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = FileBackend::open(&config(&tmp.path().join("s"), &key)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string().contains("is not an age X25519 identity"),
        "{err}"
    );
    assert!(!format!("{err:?}").contains("NOTREALLY"), "{err:?}");

    let missing = tmp.path().join("missing.key");
    let err = FileBackend::open(&config(&tmp.path().join("s"), &missing)).unwrap_err();
    assert!(err.to_string().contains("rekey keygen"), "{err}");
}

#[tokio::test]
async fn generate_identity_refuses_to_overwrite_and_works_with_open() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("rekey.key");
    let recipient = generate_identity(&key).unwrap();
    assert!(recipient.starts_with("age1"), "{recipient}");
    let before = std::fs::read(&key).unwrap();
    let err = FileBackend::generate_identity(&key).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "identity left as it was"
    );
    let text = String::from_utf8(before).unwrap();
    assert!(text.contains(&format!("# public key: {recipient}")));

    let backend = FileBackend::open(&config(&tmp.path().join("s"), &key)).unwrap();
    backend.write("s1", &record("s1"), None).await.unwrap();
    assert!(backend.read("s1").await.unwrap().is_some());
    assert!(!format!("{backend:?}").contains("AGE-SECRET-KEY"));
}

#[tokio::test]
async fn a_crash_mid_write_leaves_the_old_record_readable() {
    let f = fixture();
    let rec = record("s1");
    let v = f.backend.write("s1", &rec, None).await.unwrap();
    // What a process killed between creating the temp file and the rename leaves behind.
    std::fs::write(
        f.store.join(".s1.age.Xy12ab.tmp"),
        b"age-encryption.org/v1\n-> X25519 trunc",
    )
    .unwrap();
    std::fs::write(f.store.join(".s1.lock"), b"").unwrap();
    let got = f.backend.read("s1").await.unwrap().unwrap();
    assert_eq!((got.version, &got.record), (v, &rec));
    assert_eq!(
        f.backend.list(&Default::default()).await.unwrap(),
        vec!["s1"]
    );
    // And the next write goes through.
    f.backend.write("s1", &rec, Some(v)).await.unwrap();
}

#[tokio::test]
async fn check_proves_the_directory_is_writable() {
    let f = fixture();
    f.backend.check().await.unwrap();
    assert_eq!(
        std::fs::read_dir(&f.store).unwrap().count(),
        0,
        "check leaves nothing"
    );
    std::fs::remove_dir(&f.store).unwrap();
    let err = f.backend.check().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn invalid_slot_names_never_reach_the_filesystem() {
    let f = fixture();
    for slot in ["../escape", ".hidden", "a/b", ""] {
        let err = f.backend.read(slot).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{slot}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_from_one_version_exactly_one_wins_each_round() {
    let f = fixture();
    let backend = Arc::new(f.backend.clone());
    let mut version = backend.write("s1", &record("s1"), None).await.unwrap();
    for round in 0..5u64 {
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let mut tasks = Vec::new();
        for writer in 0..8u64 {
            let (backend, barrier) = (Arc::clone(&backend), Arc::clone(&barrier));
            tasks.push(tokio::spawn(async move {
                let mut rec = record("s1");
                rec.generation = 100 * round + writer;
                barrier.wait().await;
                (writer, backend.write("s1", &rec, Some(version)).await)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (w, Ok(v)) => winners.push((w, v)),
                (_, Err(e)) => assert_eq!(e.kind(), ErrorKind::Conflict, "{e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let (w, v) = winners[0];
        let got = backend.read("s1").await.unwrap().unwrap();
        assert_eq!((got.version, got.record.generation), (v, 100 * round + w));
        version = v;
    }
}

/// Read-modify-write increments with retry on conflict: with a correct compare-and-set no
/// increment is ever lost, however the writers interleave.
async fn increment(backend: &FileBackend, times: u64) -> u64 {
    let mut conflicts = 0;
    let mut done = 0;
    while done < times {
        let cur = backend.read("counter").await.unwrap().unwrap();
        let mut rec = cur.record.clone();
        rec.generation += 1;
        match backend.write("counter", &rec, Some(cur.version)).await {
            Ok(_) => done += 1,
            Err(e) if e.kind() == ErrorKind::Conflict => conflicts += 1,
            Err(e) => panic!("{e}"),
        }
    }
    conflicts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_tasks_lose_no_update() {
    let f = fixture();
    f.backend
        .write("counter", &SlotRecord::new("counter", "p", "1"), None)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let backend = f.backend.clone();
        tasks.push(tokio::spawn(async move { increment(&backend, 10).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let got = f.backend.read("counter").await.unwrap().unwrap();
    assert_eq!(got.record.generation, 80);
}

const CHILD_ENV: &str = "REKEY_TEST_FILE_BACKEND_CHILD";

/// Run by `racing_processes_lose_no_update` in child processes; does nothing on its own.
#[test]
#[ignore = "helper process of racing_processes_lose_no_update"]
fn child_process_incrementer() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(3, '\n');
    let (store, key, times) = (
        PathBuf::from(parts.next().unwrap()),
        PathBuf::from(parts.next().unwrap()),
        parts.next().unwrap().parse::<u64>().unwrap(),
    );
    let backend = FileBackend::open(&config(&store, &key)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conflicts = rt.block_on(increment(&backend, times));
    println!("child done: {times} increments, {conflicts} conflicts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_processes_lose_no_update() {
    let f = fixture();
    f.backend
        .write("counter", &SlotRecord::new("counter", "p", "1"), None)
        .await
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let spec = format!("{}\n{}\n{}", f.store.display(), f.key.display(), 20);
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_incrementer",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, &spec)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // The parent races too, from its own process.
    increment(&f.backend, 20).await;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("child done: 20 increments"), "{stdout}");
    }
    let got = f.backend.read("counter").await.unwrap().unwrap();
    assert_eq!(got.record.generation, 60);
}

/// The decrypted file `<store>/<slot>.age`, as a holder of a break-glass key sees it.
fn open_plain(f: &Fixture, identity: &age::x25519::Identity, slot: &str) -> String {
    let bytes = std::fs::read(f.store.join(format!("{slot}.age"))).unwrap();
    String::from_utf8(age::decrypt(identity, &bytes).unwrap()).unwrap()
}

fn put_plain(f: &Fixture, slot: &str, plain: &str) {
    std::fs::write(
        f.store.join(format!("{slot}.age")),
        encrypt_to_fixture_key(&f.key, plain.as_bytes()),
    )
    .unwrap();
}

/// Issue 13 finding 3, at the backend: a break-glass recipient can read every record but not
/// make one. Each byte-level alteration that keeps the MAC (content, version, slot) or invents
/// one is `tampered` on read, and the record is never overwritten or removed by a write or
/// delete.
#[tokio::test]
async fn records_are_authenticated_and_a_break_glass_key_cannot_forge_one() {
    let f = fixture();
    let glass = age::x25519::Identity::generate();
    let mut cfg = config(&f.store, &f.key);
    cfg.recipients = vec![glass.to_public().to_string()];
    let backend = FileBackend::open(&cfg).unwrap();
    let v = backend.write("s1", &record("s1"), None).await.unwrap();
    backend.write("s2", &record("s2"), None).await.unwrap();
    let original = std::fs::read(f.store.join("s1.age")).unwrap();
    let genuine = open_plain(&f, &glass, "s1");
    let json: serde_json::Value = serde_json::from_str(&genuine).unwrap();
    let mac = json["mac"].as_str().expect("a MAC").to_string();
    assert_eq!(mac.len(), 64, "HMAC-SHA256, hex");
    let edit = |from: &str, to: &str| {
        assert!(genuine.contains(from), "{from}");
        genuine.replacen(from, to, 1)
    };
    for (what, slot, plain) in [
        ("content", "s1", edit("client-1", "client-9")),
        (
            "version",
            "s1",
            edit(
                &format!("\"version\":{v}"),
                &format!("\"version\":{}", v + 1),
            ),
        ),
        ("slot", "s2", edit("\"slot\":\"s1\"", "\"slot\":\"s2\"")),
        ("invented MAC", "s1", edit(&mac, &"0".repeat(64))),
        ("garbage MAC", "s1", edit(&mac, "not hex")),
    ] {
        put_plain(&f, slot, &plain);
        let before = std::fs::read(f.store.join(format!("{slot}.age"))).unwrap();
        let err = backend.read(slot).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Tampered, "{what}: {err}");
        assert!(err.to_string().contains("MAC mismatch"), "{what}: {err}");
        assert!(!err.to_string().contains("first-secret-value"));
        // Listed (so `status` shows it), never overwritten or removed.
        assert!(
            backend
                .list(&Default::default())
                .await
                .unwrap()
                .contains(&slot.to_string())
        );
        let err = backend
            .write(slot, &record(slot), Some(v))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Tampered, "{what}");
        let err = backend.write(slot, &record(slot), None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Tampered, "{what}");
        let err = backend.delete(slot, v).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Tampered, "{what}");
        assert_eq!(
            std::fs::read(f.store.join(format!("{slot}.age"))).unwrap(),
            before
        );
    }
    // No MAC at all (the previous version's envelope, or a downgrade attempt): tampered too,
    // with the way out named.
    let legacy = edit(&format!(",\"mac\":\"{mac}\""), "");
    put_plain(&f, "s1", &legacy);
    let err = backend.read("s1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tampered);
    assert!(err.to_string().contains("rekey store upgrade"), "{err}");
    // The untouched original still verifies.
    std::fs::write(f.store.join("s1.age"), original).unwrap();
    assert_eq!(backend.read("s1").await.unwrap().unwrap().version, v);
}

#[test]
fn a_store_directory_others_can_write_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("rekey.key");
    generate_identity(&key).unwrap();
    let store = tmp.path().join("store");
    std::fs::create_dir(&store).unwrap();
    for m in [0o770, 0o722, 0o1777] {
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(m)).unwrap();
        let err = FileBackend::open(&config(&store, &key)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{m:o}");
        assert!(
            err.to_string()
                .contains(&format!("run: chmod 700 {}", store.display())),
            "{err}"
        );
    }
    // Readable by others only warns (slot names are visible, contents are encrypted).
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    FileBackend::open(&config(&store, &key)).unwrap();
}

/// Issue 13 finding 9, at the backend: `check` removes `.SLOT.age.XXXXXX.tmp` files left by
/// killed writes, only while holding the slot's lock; a writer holding it keeps its file, and
/// names that are not rekey's pattern are never touched.
#[tokio::test]
async fn check_removes_stale_temp_files_only_under_the_slots_lock() {
    let f = fixture();
    f.backend.write("s1", &record("s1"), None).await.unwrap();
    f.backend
        .write("a.age.b", &record("a.age.b"), None)
        .await
        .unwrap();
    let put = |name: &str| std::fs::write(f.store.join(name), b"x").unwrap();
    put(".s1.age.Xy12ab.tmp");
    put(".gone.age.Qq34Rr.tmp"); // a slot with no record left
    put(".held.age.Zz99Yy.tmp");
    put(".s1.age.toolong7.tmp");
    put("s1.age.Xy12ab.tmp");
    put(".a.age.b.age.Mm56Nn.tmp"); // slot a.age.b's, not slot a's
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(f.store.join(".held.lock"))
        .unwrap();
    held.lock().unwrap();
    f.backend.check().await.unwrap();
    let mut left: Vec<String> = std::fs::read_dir(&f.store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            ".held.age.Zz99Yy.tmp",
            ".s1.age.toolong7.tmp",
            "s1.age.Xy12ab.tmp"
        ]
    );
    assert!(
        !f.store.join(".gone.lock").exists(),
        "no lock file left behind"
    );
    drop(held);
    f.backend.check().await.unwrap();
    assert!(!f.store.join(".held.age.Zz99Yy.tmp").exists());
    // The records are untouched.
    assert_eq!(
        f.backend.list(&Default::default()).await.unwrap(),
        vec!["a.age.b", "s1"]
    );
}
