//! End to end with the vault backend as the primary: the real binary against the emulator and
//! a real OpenBao dev server, logged in with a token bound to `examples/vault-policy.hcl`.
//! Checks read the store through the vault backend and what consumers see with `bao kv get`.

mod common;
mod openbao;

use common::providers::token_fault;
use common::{
    HasWorld, Run, World, actions, assert_each_promoted_once, crash_windows, slots, strategies,
};
use openbao::{EXAMPLE_POLICY, OpenBao, random_hex};
use rekey::backend::Backend;
use rekey::backend::vault::{VaultAuth, VaultBackend, VaultBackendConfig};
use rekey::config::ValueRef;
use std::time::Duration;

struct VaultWorld {
    w: World,
    bao: OpenBao,
    backend: VaultBackend,
    prefix: String,
}

impl HasWorld for VaultWorld {
    fn world(&self) -> &World {
        &self.w
    }
}

impl VaultWorld {
    async fn new() -> VaultWorld {
        let w = World::new(1).await;
        let bao = OpenBao::start().await;
        bao.put_policy("rekey", EXAMPLE_POLICY).await;
        let token = bao.token(&["rekey"], "1h").await;
        let token_file = w.path().join("vault-token");
        std::fs::write(&token_file, &token).unwrap();
        // rekey refuses a secret file others can read.
        std::fs::set_permissions(
            &token_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let prefix = format!("rekey/e2e-{}/", random_hex(8));
        let backend = VaultBackend::open(&VaultBackendConfig {
            name: "vault".into(),
            address: bao.addr.clone(),
            mount: "secret".into(),
            path_prefix: prefix.clone(),
            namespace: None,
            ca_cert: None,
            auth: VaultAuth::Token {
                token: ValueRef::File(token_file),
            },
            timeout: Duration::from_secs(10),
        })
        .unwrap();
        w.known_secrets.lock().unwrap().push(token.clone());
        VaultWorld {
            w,
            bao,
            backend,
            prefix,
        }
    }

    fn header(&self) -> String {
        let section = format!(
            "[backends.vault]\ntype = \"vault\"\naddress = \"{}\"\nmount = \"secret\"\npath_prefix = \"{}\"\n\
             auth = {{ method = \"token\", token = {{ file = \"vault-token\" }} }}\ntimeout = \"10s\"\n",
            self.bao.addr, self.prefix
        );
        self.w.header_with_backend("vault", &section)
    }

    fn inventory(&self, slots: &str) {
        self.w.inventory_raw(&format!("{}\n{slots}", self.header()));
    }

    async fn record(&self, slot: &str) -> Option<rekey::record::SlotRecord> {
        self.w.record_in(&self.backend, slot).await
    }

    async fn assert_consistent(&self, slots: &[&str]) {
        self.w.assert_consistent_in(&self.backend, slots).await;
        // Consumers see exactly each slot's current pair.
        for s in slots {
            let cur = self.record(s).await.unwrap().current.unwrap();
            let (code, out, err) = self
                .bao
                .cli(
                    &self.bao.root,
                    &[
                        "kv",
                        "get",
                        "-format=json",
                        "-mount=secret",
                        &format!("{}{s}", self.prefix),
                    ],
                )
                .await;
            assert_eq!(code, Some(0), "{err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["data"]["data"]["client_id"], cur.client_id.as_str());
            assert_eq!(v["data"]["data"]["client_secret"], cur.secret.expose());
            assert_eq!(v["data"]["data"]["generation"], cur.generation);
        }
    }

    async fn apply_at(&self, offset: &str, extra: &[&str]) -> Run {
        let mut args = vec!["apply", "-c", "inventory.toml", "--output", "json"];
        args.extend_from_slice(extra);
        let env: Vec<(&str, &str)> = if offset.is_empty() {
            vec![]
        } else {
            vec![("REKEY_TEST_CLOCK_OFFSET", offset)]
        };
        self.w.rekey_env(&args, &env).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_alternate_grace_and_in_place_rotation() {
    let v = VaultWorld::new().await;
    v.inventory(&slots(&[("alpha", "alternate"), ("beta", "in-place")]));
    let first = v.apply_at("", &[]).await;
    first.expect_code(0);
    for s in ["alpha", "beta"] {
        assert_eq!(actions(&first, s), vec!["created g1", "promoted g1"]);
    }
    v.assert_consistent(&["alpha", "beta"]).await;
    let second = v.apply_at("", &[]).await;
    second.expect_code(0);
    assert!(actions(&second, "alpha").is_empty());
    let a1 = v.record("alpha").await.unwrap().current.unwrap();
    let b1 = v.record("beta").await.unwrap().current.unwrap();

    let due = v.apply_at("31d", &[]).await;
    due.expect_code(0);
    assert_eq!(actions(&due, "alpha"), vec!["created g2", "promoted g2"]);
    assert_eq!(
        actions(&due, "beta"),
        vec!["rotated g2 in place", "promoted g2"]
    );
    let b2 = v.record("beta").await.unwrap().current.unwrap();
    assert_eq!(b2.client_id, b1.client_id);
    assert!(!v.w.token_ok(&b1.client_id, b1.secret.expose()).await);
    assert!(
        v.w.token_ok(&a1.client_id, a1.secret.expose()).await,
        "old alternate pair alive during grace"
    );
    v.assert_consistent(&["alpha", "beta"]).await;

    let after = v.apply_at("32d 1h", &[]).await;
    after.expect_code(0);
    assert_eq!(actions(&after, "alpha"), vec!["deleted g1"]);
    assert!(!v.w.token_ok(&a1.client_id, a1.secret.expose()).await);
    v.assert_consistent(&["alpha", "beta"]).await;
    for r in [&first, &second, &due, &after] {
        v.w.assert_no_secrets(&r.all());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retire_soft_deletes_both_entries_after_grace() {
    let v = VaultWorld::new().await;
    v.inventory(&slots(&[("alpha", "alternate"), ("old", "alternate")]));
    v.apply_at("", &[]).await.expect_code(0);
    let old = v.record("old").await.unwrap().current.unwrap();
    v.inventory(&format!(
        "{}\n[[slots]]\nname = \"old\"\nprovider = \"p0\"\nretired = true\ngrace = \"1h\"\n",
        slots(&[("alpha", "alternate")])
    ));
    let r = v.apply_at("", &[]).await;
    r.expect_code(0);
    assert_eq!(actions(&r, "old"), vec!["retiring"]);
    let r = v.apply_at("2h", &[]).await;
    r.expect_code(0);
    assert_eq!(
        actions(&r, "old"),
        vec![
            format!("deleted client {} (g1)", old.client_id),
            "retired (1 client deleted)".to_string()
        ]
    );
    assert!(v.record("old").await.is_none());
    assert!(!v.w.token_ok(&old.client_id, old.secret.expose()).await);
    assert_eq!(
        v.backend.list(&Default::default()).await.unwrap(),
        vec!["alpha".to_string()],
        "only live slots are listed"
    );
    // Soft-deleted: no data, metadata (and the managed_by mark) kept for `kv undelete`.
    let (s, m) = v
        .bao
        .api("GET", &format!("secret/metadata/{}old", v.prefix), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(m["data"]["custom_metadata"]["managed_by"], "rekey");
    v.assert_consistent(&["alpha"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_windows_heal_on_the_next_run() {
    let points = [
        "after-op-recorded",
        "after-provider-create",
        "after-pending-written",
        "after-verify",
        // The promotion's two writes: `promoting` recorded, then the consumer entry, then the
        // state entry.
        "after-promoting-recorded",
        "vault-after-consumer-write",
        "after-promote",
    ];
    let covered = crash_windows(
        &points,
        async |_| {
            let v = VaultWorld::new().await;
            v.inventory(&slots(&[
                ("victim", "alternate"),
                ("bystander", "alternate"),
            ]));
            v.apply_at("", &[]).await.expect_code(0);
            v
        },
        async |v, crash| {
            v.w.rekey_env(
                &["apply", "-c", "inventory.toml", "--only", "victim"],
                &[crash, &[("REKEY_TEST_CLOCK_OFFSET", "31d")]].concat(),
            )
            .await
        },
        async |v, point| {
            // Whatever the crash left, consumers still read a working pair.
            let shown = v.record("victim").await.unwrap().current.unwrap();
            assert!(v.w.token_ok(&shown.client_id, shown.secret.expose()).await);
            let healed = v.apply_at("31d", &[]).await;
            healed.expect_code(0);
            let rec = v.record("victim").await.unwrap();
            assert_eq!(rec.current.as_ref().unwrap().generation, 2, "{point}");
            v.assert_consistent(&["victim", "bystander"]).await;
            assert_eq!(
                v.w.managed_clients(&v.w.tenants[0].id, "victim")
                    .await
                    .len(),
                1 + rec.draining.len(),
                "{point}: no orphaned client"
            );
            vec![healed]
        },
    )
    .await;
    assert_eq!(covered, points.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_concurrent_applies_rotate_each_slot_exactly_once() {
    let v = VaultWorld::new().await;
    let names: Vec<String> = (0..8).map(|i| format!("s{i:02}")).collect();
    let list = strategies(&names, |n| n.ends_with('1'));
    v.inventory(&slots(&list));
    v.apply_at("", &[]).await.expect_code(0);
    let args = ["--concurrency", "3"];
    let (a, b) = tokio::join!(v.apply_at("31d", &args), v.apply_at("31d", &args));
    assert_each_promoted_once(&a, &b, &names);
    for n in &names {
        let rec = v.record(n).await.unwrap();
        assert_eq!(
            rec.current.as_ref().unwrap().generation,
            2,
            "slot {n} rotated once"
        );
    }
    v.apply_at("33d", &[]).await.expect_code(0);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    v.assert_consistent(&refs).await;
}

/// What a consumer reads at the slot's consumer entry: (client_id, client_secret, generation).
async fn consumer_entry(v: &VaultWorld, slot: &str) -> (String, String, u64) {
    let (code, out, err) = v
        .bao
        .cli(
            &v.bao.root,
            &[
                "kv",
                "get",
                "-format=json",
                "-mount=secret",
                &format!("{}{slot}", v.prefix),
            ],
        )
        .await;
    assert_eq!(code, Some(0), "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let d = &j["data"]["data"];
    (
        d["client_id"].as_str().unwrap().to_string(),
        d["client_secret"].as_str().unwrap().to_string(),
        d["generation"].as_u64().unwrap(),
    )
}

/// Issue 13 finding 8: a run killed right after the consumer entry shows g2 (the state entry
/// still says pending g2), then three runs with the platform's token endpoint answering 503.
/// Consumers keep a pair that gets a token, nothing discards g2 or deletes its client, and
/// `rekey verify` checks the pair consumers read.
#[tokio::test(flavor = "multi_thread")]
async fn a_pair_consumers_saw_is_never_discarded() {
    use rekey::emulator::{FaultAction, Faults};
    let v = VaultWorld::new().await;
    // One verification attempt per run: each 503 is retried with its Retry-After already.
    v.w.inventory_raw(
        &format!("{}\n{}", v.header(), slots(&[("victim", "alternate")]))
            .replace("verify_attempts = 3", "verify_attempts = 1"),
    );
    v.apply_at("", &[]).await.expect_code(0);
    let crashed =
        v.w.rekey_env(
            &["apply", "-c", "inventory.toml", "--only", "victim"],
            &[
                ("REKEY_CRASH_AT", "vault-after-consumer-write"),
                ("REKEY_TEST_CLOCK_OFFSET", "31d"),
            ],
        )
        .await;
    assert_eq!(crashed.signal, Some(6), "{}", crashed.stderr);
    let (seen_id, seen_secret, seen_gen) = consumer_entry(&v, "victim").await;
    assert_eq!(
        seen_gen, 2,
        "consumers read g2 before the state entry says so"
    );

    // The token endpoint answers 503 to everything but each run's preflight.
    for run in 1..=3 {
        v.w.set_faults(token_fault(FaultAction::Status(503))).await;
        let r = v.apply_at("31d", &[]).await;
        assert!(
            !actions(&r, "victim")
                .iter()
                .any(|a| a.starts_with("discarded")),
            "run {run}: {}",
            r.stdout
        );
    }
    v.w.set_faults(Faults::default()).await;
    let (id, secret, generation) = consumer_entry(&v, "victim").await;
    assert!(
        v.w.token_ok(&id, &secret).await,
        "the pair consumers read (g{generation}) no longer gets a token"
    );
    assert_eq!((id.as_str(), generation), (seen_id.as_str(), seen_gen));
    assert_eq!(secret, seen_secret);

    // `verify` checks what consumers read.
    let r =
        v.w.rekey(&["verify", "-c", "inventory.toml", "--output", "json"])
            .await;
    r.expect_code(0);
    let row = r.row("victim");
    assert_eq!(row["client_id"], id.as_str());
    assert_eq!(row["generation"], generation);
    assert_eq!(row["ok"], true);
    v.apply_at("31d", &[]).await.expect_code(0);
    v.assert_consistent(&["victim"]).await;
    v.w.assert_no_secrets(&r.all());
}

/// Issue 13 finding 8, the defence behind the `promoting` phase: a record an older rekey left
/// in `pending` while the consumer entry already shows that pair, whose verification then fails
/// definitively for the last allowed time. The pair is promoted, never discarded: its client
/// lives and consumers keep a working pair.
#[tokio::test(flavor = "multi_thread")]
async fn a_discard_never_deletes_the_pair_consumers_read() {
    use rekey::emulator::{FaultAction, Faults};
    let v = VaultWorld::new().await;
    v.inventory(&slots(&[("victim", "alternate")]));
    v.apply_at("", &[]).await.expect_code(0);
    let crashed =
        v.w.rekey_env(
            &["apply", "-c", "inventory.toml"],
            &[
                ("REKEY_CRASH_AT", "vault-after-consumer-write"),
                ("REKEY_TEST_CLOCK_OFFSET", "31d"),
            ],
        )
        .await;
    assert_eq!(crashed.signal, Some(6), "{}", crashed.stderr);
    // What a rekey without the `promoting` phase left: pending g2, two failures counted.
    let stored = v.backend.read("victim").await.unwrap().unwrap();
    let mut rec = stored.record.clone();
    let op = rec.op.as_mut().unwrap();
    op.phase = rekey::record::Phase::Pending;
    op.verify_failures = 2;
    rec.lease = None;
    v.backend
        .write("victim", &rec, Some(stored.version))
        .await
        .unwrap();
    let (id, secret, generation) = consumer_entry(&v, "victim").await;
    assert_eq!(generation, 2);

    v.w.set_faults(token_fault(FaultAction::EmptyToken)).await;
    let r = v.apply_at("31d", &[]).await;
    v.w.set_faults(Faults::default()).await;
    let acts = actions(&r, "victim");
    assert!(!acts.iter().any(|a| a.starts_with("discarded")), "{acts:?}");
    assert!(
        acts.iter().any(|a| a.contains("not discarding it")),
        "{acts:?}"
    );
    assert!(v.w.token_ok(&id, &secret).await, "consumers' pair works");
    let rec = v.record("victim").await.unwrap();
    assert_eq!(rec.current.as_ref().unwrap().client_id, id);
    assert!(rec.op.is_none());
    v.assert_consistent(&["victim"]).await;
    v.w.assert_no_secrets(&r.all());
}

/// `rekey rollback` on a vault slot: consumers read the restored pair. The consumer entry never
/// moves back to a lower generation for a stale writer; a rollback is the one writer that may
/// move it back, and it proves it by listing the newer pair it demotes among the draining ones.
/// Before, the consumer entry kept the newer pair, which drains and is deleted at its grace end.
#[tokio::test(flavor = "multi_thread")]
async fn rollback_moves_consumers_back_to_the_restored_pair() {
    let v = VaultWorld::new().await;
    v.inventory(&slots(&[("alpha", "alternate")]));
    v.apply_at("", &[]).await.expect_code(0);
    let g1 = v.record("alpha").await.unwrap().current.unwrap();
    v.apply_at("31d", &[]).await.expect_code(0);
    assert_eq!(consumer_entry(&v, "alpha").await.2, 2);

    v.w.rekey_env(
        &["rollback", "-c", "inventory.toml", "alpha"],
        &[("REKEY_TEST_CLOCK_OFFSET", "31d 1h")],
    )
    .await
    .expect_code(0);
    let (id, secret, generation) = consumer_entry(&v, "alpha").await;
    assert_eq!(
        (id.as_str(), generation),
        (g1.client_id.as_str(), 1),
        "consumers must read the restored pair"
    );
    assert_eq!(secret, g1.secret.expose());
    assert!(v.w.token_ok(&id, &secret).await);
    // `verify` checks what consumers read, and it is the record's current pair.
    v.w.rekey_env(
        &["verify", "-c", "inventory.toml"],
        &[("REKEY_TEST_CLOCK_OFFSET", "31d 1h")],
    )
    .await
    .expect_code(0);
    v.assert_consistent(&["alpha"]).await;
    // After g2's grace it is deleted; consumers are on g1, which still works.
    v.apply_at("33d", &[]).await.expect_code(0);
    let (id, secret, _) = consumer_entry(&v, "alpha").await;
    assert!(v.w.token_ok(&id, &secret).await);
}
