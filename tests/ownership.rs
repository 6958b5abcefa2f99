//! Ownership, retire, prune and panics (issue 13, findings 1, 2, 5, 6), end to end: the real
//! binary against the emulator and the age file backend. rekey acts only on clients it can prove
//! are its own (docs/src/protocol.md, "Ownership of clients"): a second deployment on the same tenant, a foreign
//! client named like ours, a slot removed with prune on, absurd durations and a panicking slot
//! never cost a working pair or a client rekey did not make.

mod common;
use common::{CiscoWorld, World, actions, cisco_slot};
use rekey::config::{CiscoSettings, TaegisSettings};
use rekey::emulator::{FaultAction, Faults, OneShot};
use rekey::provider::cisco::CiscoProvider;
use rekey::provider::taegis::TaegisProvider;
use rekey::provider::{Bootstrap, ClientSpec, Provider};
use rekey::secret::{ClientPair, Secret};
use std::time::Duration;

fn slot(name: &str, provider: &str) -> String {
    format!("[[slots]]\nname = \"{name}\"\nprovider = \"{provider}\"\n")
}

/// The tenant's admin acting straight on the platform (not through rekey): makes the foreign
/// clients the tests expect rekey to leave alone.
fn taegis_admin(w: &World) -> TaegisProvider {
    let t = &w.tenants[0];
    let settings = TaegisSettings {
        base_url: w.emu.url(),
        environment: None,
        caller_chosen_secret: false,
    };
    let boot = Bootstrap::new(ClientPair {
        client_id: t.admin_id.clone(),
        secret: Secret::new(t.admin_secret.clone()),
    });
    TaegisProvider::new("admin", &settings, boot, 1000.0, Duration::from_secs(5)).unwrap()
}

fn cisco_admin(w: &CiscoWorld) -> CiscoProvider {
    let o = &w.orgs[0];
    let boot = Bootstrap::new(ClientPair {
        client_id: o.admin_id.clone(),
        secret: Secret::new(o.admin_password.clone()),
    });
    CiscoProvider::new(
        "admin",
        &CiscoSettings::with_url(w.emu.url()),
        boot,
        1000.0,
        Duration::from_secs(5),
    )
    .unwrap()
}

fn lost_create_answers() -> Faults {
    let drop = |op: &str| OneShot {
        operation: Some(op.into()),
        count: 1,
        action: FaultAction::DropAfterCommit,
        skip: 0,
    };
    Faults {
        fail_next: vec![drop("createClient"), drop("cisco.createClient")],
        ..Faults::default()
    }
}

/// Finding 1. Two deployments on one tenant and one org, same prefix, same slot names, each
/// with its own store. Deployment B loses the answer to its createClient calls and resumes: it
/// finds only the client its own operation made, never deployment A's.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_deployment_that_loses_a_create_answer_never_takes_the_first_ones_client() {
    let w = World::new_with(1, 1).await;
    let slots = format!("{}\n{}", slot("alpha", "p0"), cisco_slot("beta", "c0"));
    w.inventory(&slots);
    let a = w.apply(&["--output", "json"]).await;
    a.expect_code(0);
    let a_alpha = w.record("alpha").await.unwrap().current.unwrap();
    let a_beta = w.record("beta").await.unwrap().current.unwrap();

    // Deployment B: the same inventory with another store directory.
    let header_b = w
        .header()
        .replacen("path = \"store\"", "path = \"store-b\"", 1);
    std::fs::write(
        w.path().join("inventory-b.toml"),
        format!("{header_b}\n{slots}"),
    )
    .unwrap();
    w.set_faults(lost_create_answers()).await;
    let b = w
        .rekey(&["apply", "-c", "inventory-b.toml", "--output", "json"])
        .await;
    b.expect_code(0);
    assert_eq!(
        w.emu.faults().await.fail_next,
        vec![],
        "both answers were lost"
    );
    w.assert_no_secrets(&b.all());

    // A's pairs still get a token and A's clients still exist.
    assert!(
        w.token_ok(&a_alpha.client_id, a_alpha.secret.expose())
            .await,
        "deployment A's Taegis pair was taken over by deployment B"
    );
    assert!(
        w.cisco_token_ok(&a_beta.client_id, a_beta.secret.expose())
            .await,
        "deployment A's Cisco pair was taken over by deployment B"
    );
    let tenant_ids: Vec<String> = w
        .platform_clients(&w.tenants[0].id)
        .await
        .into_iter()
        .map(|c| c.1)
        .collect();
    assert!(
        tenant_ids.contains(&a_alpha.client_id),
        "A's Taegis client deleted"
    );
    let org_ids: Vec<String> = w
        .platform_clients(&w.orgs[0].id)
        .await
        .into_iter()
        .map(|c| c.1)
        .collect();
    assert!(
        org_ids.contains(&a_beta.client_id),
        "A's Cisco client deleted"
    );

    // B's own pairs work too, on clients of its own.
    let backend_b = rekey::backend::file::FileBackend::open(&rekey::config::FileBackendConfig {
        name: "local".into(),
        path: w.path().join("store-b"),
        identity: rekey::config::ValueRef::File(w.path().join("rekey.key")),
        recipients: vec![],
    })
    .unwrap();
    let b_alpha = w
        .record_in(&backend_b, "alpha")
        .await
        .unwrap()
        .current
        .unwrap();
    let b_beta = w
        .record_in(&backend_b, "beta")
        .await
        .unwrap()
        .current
        .unwrap();
    assert_ne!(b_alpha.object_id, a_alpha.object_id);
    assert_ne!(b_beta.object_id, a_beta.object_id);
    assert!(
        w.token_ok(&b_alpha.client_id, b_alpha.secret.expose())
            .await
    );
    assert!(
        w.cisco_token_ok(&b_beta.client_id, b_beta.secret.expose())
            .await
    );
    assert_ne!(
        b_alpha.name, a_alpha.name,
        "each operation names its client"
    );
}

/// Finding 2. A client named like one of ours (`rekey-old-g7`) that rekey never made survives
/// the slot's retirement; the report and the audit trail name exactly the deleted client ids.
#[tokio::test(flavor = "multi_thread")]
async fn retire_deletes_only_the_clients_the_record_names() {
    let w = World::new(1).await;
    w.inventory(&format!("{}\n{}", slot("alpha", "p0"), slot("old", "p0")));
    w.apply(&[]).await.expect_code(0);
    let old = w.record("old").await.unwrap().current.unwrap();
    let tenant = w.tenants[0].id.clone();
    let admin = taegis_admin(&w);
    let mut foreign = Vec::new();
    for name in ["rekey-old-g7", "rekey-old-g1"] {
        let c = admin
            .create_client(
                &tenant,
                &ClientSpec {
                    name: name.into(),
                    roles: vec![],
                },
            )
            .await
            .unwrap();
        w.known_secrets
            .lock()
            .unwrap()
            .push(c.secret.expose().to_string());
        foreign.push(c);
    }

    w.inventory(&format!(
        "{}\n{}retired = true\ngrace = \"0s\"\n",
        slot("alpha", "p0"),
        slot("old", "p0")
    ));
    let r = w
        .apply(&["--output", "json", "--audit-log", "audit.jsonl"])
        .await;
    r.expect_code(0);
    assert_eq!(
        actions(&r, "old"),
        vec![
            "retiring".to_string(),
            format!("deleted client {} (g1)", old.client_id),
            "retired (1 client deleted)".to_string(),
        ]
    );
    assert!(w.record("old").await.is_none(), "entry removed");
    assert!(!w.token_ok(&old.client_id, old.secret.expose()).await);
    let left: Vec<String> = w
        .platform_clients(&tenant)
        .await
        .into_iter()
        .map(|c| c.1)
        .collect();
    for c in &foreign {
        assert!(
            left.contains(&c.client_id),
            "foreign client {} was deleted",
            c.name
        );
        assert!(w.token_ok(&c.client_id, c.secret.expose()).await);
    }
    let audit = std::fs::read_to_string(w.path().join("audit.jsonl")).unwrap();
    let deleted: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["slot"] == "old" && e["to"] == "absent")
        .collect();
    assert_eq!(deleted.len(), 1, "{audit}");
    assert_eq!(
        deleted[0]["deleted_client_ids"],
        serde_json::json!([old.client_id]),
        "{audit}"
    );
    w.assert_no_secrets(&r.all());
    w.assert_no_secrets(&audit);
}

fn prune_header(w: &World, extra_settings: &str) -> String {
    w.header().replacen(
        "[settings]\n",
        &format!("[settings]\nprune = true\n{extra_settings}"),
        1,
    )
}

/// Finding 5. A slot removed from the inventory with prune = true keeps its grace: its client
/// still works after the apply and dies only once the grace is over.
#[tokio::test(flavor = "multi_thread")]
async fn a_pruned_slot_keeps_its_grace() {
    let w = World::new(1).await;
    let header = prune_header(&w, "").replacen("[defaults]\n", "[defaults]\ngrace = \"24h\"\n", 1);
    let keep = format!("{}\n{}", slot("alpha", "p0"), slot("beta", "p0"));
    w.inventory_raw(&format!("{header}\n{keep}\n{}", slot("old", "p0")));
    w.apply(&[]).await.expect_code(0);
    let old = w.record("old").await.unwrap().current.unwrap();

    // Renamed away: `old` left the inventory.
    w.inventory_raw(&format!("{header}\n{keep}"));
    let plan = w.rekey(&["plan", "-c", "inventory.toml"]).await;
    plan.expect_code(0);
    assert!(plan.stdout.contains("retire"), "{}", plan.stdout);
    let r = w.apply(&["--output", "json"]).await;
    r.expect_code(0);
    assert_eq!(actions(&r, "old"), vec!["retiring"]);
    assert!(
        w.token_ok(&old.client_id, old.secret.expose()).await,
        "the removed slot's client works during its grace"
    );
    assert!(w.record("old").await.unwrap().retiring.is_some());
    let plan = w
        .rekey(&["plan", "-c", "inventory.toml", "--output", "json"])
        .await;
    let rows = plan.rows();
    let row = rows.iter().find(|r| r["slot"] == "old").unwrap();
    assert!(
        row["reason"].as_str().unwrap().contains("retiring"),
        "{row}"
    );

    let inside = w.apply_at("23h", &["--output", "json"]).await;
    inside.expect_code(0);
    assert!(w.token_ok(&old.client_id, old.secret.expose()).await);

    let after = w.apply_at("25h", &["--output", "json"]).await;
    after.expect_code(0);
    assert_eq!(
        actions(&after, "old"),
        vec![
            format!("deleted client {} (g1)", old.client_id),
            "retired (1 client deleted)".to_string()
        ]
    );
    assert!(!w.token_ok(&old.client_id, old.secret.expose()).await);
    assert!(w.record("old").await.is_none());
    w.assert_consistent(&["alpha", "beta"]).await;
}

/// Finding 5. A run that would start retiring most of a backend's slots refuses before any
/// change (exit 2, naming them); `--allow-mass-retire` lets it through.
#[tokio::test(flavor = "multi_thread")]
async fn mass_retire_is_refused_unless_allowed() {
    let w = World::new(1).await;
    let header = prune_header(&w, "");
    let names = ["s1", "s2", "s3", "s4"];
    let all: String = names
        .iter()
        .map(|n| slot(n, "p0"))
        .collect::<Vec<_>>()
        .join("\n");
    w.inventory_raw(&format!("{header}\n{all}"));
    w.apply(&[]).await.expect_code(0);
    let before = w.records().await;

    w.inventory_raw(&format!("{header}\n{}", slot("s1", "p0")));
    let r = w.apply(&["--output", "json"]).await;
    r.expect_code(2);
    for n in ["s2", "s3", "s4"] {
        assert!(r.stderr.contains(n), "refusal names {n}: {}", r.stderr);
    }
    assert!(r.stderr.contains("--allow-mass-retire"), "{}", r.stderr);
    let after = w.records().await;
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.retiring, a.retiring, "nothing written");
        assert_eq!(b.current, a.current);
        assert!(a.lease.is_none());
    }
    w.assert_consistent(&names).await;

    let ok = w.apply(&["--output", "json", "--allow-mass-retire"]).await;
    ok.expect_code(0);
    for n in ["s2", "s3", "s4"] {
        assert_eq!(actions(&ok, n), vec!["retiring"]);
        let cur = w.record(n).await.unwrap().current.unwrap();
        assert!(w.token_ok(&cur.client_id, cur.secret.expose()).await);
    }
}

/// Finding 5. An inventory with no `[[slots]]` and prune = true is refused (exit 2): it never
/// prunes, and every client lives on.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_inventory_never_prunes() {
    let w = World::new(1).await;
    let header = prune_header(&w, "");
    w.inventory_raw(&format!(
        "{header}\n{}\n{}",
        slot("a", "p0"),
        slot("b", "p0")
    ));
    w.apply(&[]).await.expect_code(0);
    w.inventory_raw(&header);
    for flag in [None, Some("--allow-mass-retire")] {
        let mut args = vec!["--output", "json"];
        args.extend(flag);
        let r = w.apply(&args).await;
        r.expect_code(2);
        assert!(r.stderr.contains("settings.prune"), "{}", r.stderr);
        assert!(r.stderr.contains("no [[slots]]"), "{}", r.stderr);
    }
    w.inventory_raw(&format!(
        "{header}\n{}\n{}",
        slot("a", "p0"),
        slot("b", "p0")
    ));
    w.assert_consistent(&["a", "b"]).await;
    for s in ["a", "b"] {
        assert!(w.record(s).await.unwrap().retiring.is_none());
    }
}

/// Finding 6. Absurd durations are refused at validation with file, line and key (exit 2),
/// before anything is created; none panics.
#[tokio::test(flavor = "multi_thread")]
async fn absurd_durations_are_refused_with_file_line_and_key() {
    let w = World::new(1).await;
    let cases = [
        ("settings", "lease_ttl", "1000000y"),
        ("settings", "lease_ttl", "2d"),
        ("settings", "verify_delay", "1000000y"),
        ("settings", "jitter", "1000000y"),
        ("defaults", "grace", "1000000y"),
        ("defaults", "max_age", "1000000y"),
        ("slot", "grace", "1000000y"),
        ("slot", "max_age", "20y"),
        ("provider", "timeout", "1000000y"),
    ];
    for (table, key, value) in cases {
        let header = w.header();
        let text = match table {
            "settings" if header.contains("verify_delay = \"50ms\"") && key == "verify_delay" => {
                let h = header.replacen(
                    "verify_delay = \"50ms\"",
                    &format!("{key} = \"{value}\""),
                    1,
                );
                format!("{h}\n{}", slot("alpha", "p0"))
            }
            "settings" => {
                let h = header.replacen(
                    "[settings]\n",
                    &format!("[settings]\n{key} = \"{value}\"\n"),
                    1,
                );
                format!("{h}\n{}", slot("alpha", "p0"))
            }
            "defaults" => {
                let h = header.replacen(
                    "[defaults]\n",
                    &format!("[defaults]\n{key} = \"{value}\"\n"),
                    1,
                );
                format!("{h}\n{}", slot("alpha", "p0"))
            }
            "provider" => {
                let h = header.replacen("timeout = \"5s\"", &format!("{key} = \"{value}\""), 1);
                format!("{h}\n{}", slot("alpha", "p0"))
            }
            _ => format!("{header}\n{}{key} = \"{value}\"\n", slot("alpha", "p0")),
        };
        w.inventory_raw(&text);
        let line = text
            .lines()
            .position(|l| l == format!("{key} = \"{value}\""))
            .unwrap()
            + 1;
        let r = w.apply(&[]).await;
        assert_eq!(
            r.code,
            Some(2),
            "{table}.{key} = {value}: exit code\n{}\n{}",
            r.stdout,
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert!(
            r.stderr.contains(&format!("inventory.toml:{line}:")) && r.stderr.contains(key),
            "{table}.{key} = {value}: file, line and key: {}",
            r.stderr
        );
        assert!(w.records().await.is_empty(), "nothing stored");
        assert!(
            w.managed_clients(&w.tenants[0].id, "alpha")
                .await
                .is_empty(),
            "nothing created"
        );
    }
}

/// Finding 6. A panic inside one slot's work (test hook `REKEY_PANIC_AT`) fails that slot only:
/// the others complete, the lease is released, and the next run finishes the slot.
#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_slot_fails_alone_and_releases_its_lease() {
    let w = World::new(1).await;
    let names = ["alpha", "beta", "gamma"];
    w.inventory(
        &names
            .iter()
            .map(|n| slot(n, "p0"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let r = w
        .rekey_env(
            &["apply", "-c", "inventory.toml", "--output", "json"],
            &[("REKEY_PANIC_AT", "beta")],
        )
        .await;
    r.expect_code(1);
    for n in ["alpha", "gamma"] {
        assert_eq!(r.outcome(n)["result"], "ok", "{n}");
    }
    let beta = r.outcome("beta");
    assert_eq!(beta["result"], "failed");
    assert!(
        beta["detail"].as_str().unwrap().contains("panicked"),
        "{beta}"
    );
    assert!(r.stderr.contains("panicked"), "a log line says so");
    let rec = w.record("beta").await.unwrap();
    assert!(
        rec.lease.is_none(),
        "the panicking slot's lease is released"
    );

    // The next run (at once: no lease to wait for) finishes the slot.
    let next = w.apply(&["--output", "json"]).await;
    next.expect_code(0);
    assert_eq!(next.outcome("beta")["result"], "ok");
    w.assert_consistent(&names).await;
}

/// Finding 1, upgrade. An operation recorded by an older rekey names no client: its resume never
/// adopts a client by the legacy name (which another deployment may own). It issues a fresh,
/// properly named client and reports the legacy name as a possible orphan, leaving it alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_operation_never_adopts_a_client_by_name() {
    let w = World::new(1).await;
    w.inventory(&slot("alpha", "p0"));
    let crash = w
        .rekey_env(
            &["apply", "-c", "inventory.toml"],
            &[("REKEY_CRASH_AT", "after-op-recorded")],
        )
        .await;
    assert_eq!(crash.code, None, "crashed: {}", crash.stderr);
    // Make the record look like one an older version wrote: no client name in the operation.
    let backend = rekey::backend::file::FileBackend::open(&rekey::config::FileBackendConfig {
        name: "local".into(),
        path: w.path().join("store"),
        identity: rekey::config::ValueRef::File(w.path().join("rekey.key")),
        recipients: vec![],
    })
    .unwrap();
    use rekey::backend::Backend;
    let v = backend.read("alpha").await.unwrap().unwrap();
    let mut json = serde_json::to_value(&v.record).unwrap();
    json["op"].as_object_mut().unwrap().remove("client_name");
    json["lease"] = serde_json::Value::Null;
    let legacy: rekey::record::SlotRecord = serde_json::from_value(json).unwrap();
    backend
        .write("alpha", &legacy, Some(v.version))
        .await
        .unwrap();
    // A client with the legacy managed name: maybe this slot's lost one, maybe another's.
    let other = taegis_admin(&w)
        .create_client(
            &w.tenants[0].id,
            &ClientSpec {
                name: "rekey-alpha-g1".into(),
                roles: vec![],
            },
        )
        .await
        .unwrap();
    w.known_secrets
        .lock()
        .unwrap()
        .push(other.secret.expose().to_string());

    let r = w.apply(&["--output", "json"]).await;
    r.expect_code(0);
    let cur = w.record("alpha").await.unwrap().current.unwrap();
    assert_ne!(
        cur.object_id, other.object_id,
        "the legacy-named client was adopted"
    );
    assert!(
        w.token_ok(&other.client_id, other.secret.expose()).await,
        "the legacy-named client was rotated or deleted"
    );
    assert!(w.token_ok(&cur.client_id, cur.secret.expose()).await);
    assert!(
        r.stdout.contains("rekey-alpha-g1") && r.stdout.contains("orphan"),
        "the possible legacy orphan is reported by name: {}",
        r.stdout
    );
    w.assert_no_secrets(&r.all());
}

/// Finding 1, Cisco: a foreign client named like a rekey client of this slot is never deleted by
/// a retire either (Cisco has no in-place rotation, so taking over meant deleting).
#[tokio::test(flavor = "multi_thread")]
async fn cisco_retire_leaves_foreign_clients_alone() {
    let w = World::new_with(0, 1).await;
    w.inventory(&cisco_slot("old", "c0"));
    w.apply(&[]).await.expect_code(0);
    let foreign = cisco_admin(&w)
        .create_client(
            "org",
            &ClientSpec {
                name: "rekey-old-g7".into(),
                roles: vec!["enrich:read".into()],
            },
        )
        .await
        .unwrap();
    w.known_secrets
        .lock()
        .unwrap()
        .push(foreign.secret.expose().to_string());
    w.inventory(&format!(
        "{}retired = true\ngrace = \"0s\"\n",
        cisco_slot("old", "c0")
    ));
    let r = w.apply(&["--output", "json"]).await;
    r.expect_code(0);
    assert_eq!(
        actions(&r, "old").last().unwrap(),
        "retired (1 client deleted)"
    );
    assert!(
        w.cisco_token_ok(&foreign.client_id, foreign.secret.expose())
            .await,
        "the foreign Cisco client was deleted"
    );
}

/// The instance setting is part of managed names; the old client a rotation leaves draining is
/// deleted after its grace, and the audit event of that change names its client id.
#[tokio::test(flavor = "multi_thread")]
async fn instance_names_clients_and_the_audit_names_deleted_old_clients() {
    let w = World::new(1).await;
    let header = w
        .header()
        .replacen("[settings]\n", "[settings]\ninstance = \"eu-prod\"\n", 1);
    w.inventory_raw(&format!("{header}\n{}", slot("alpha", "p0")));
    w.apply(&[]).await.expect_code(0);
    let g1 = w.record("alpha").await.unwrap().current.unwrap();
    assert!(
        g1.name.starts_with("rekey-eu-prod-alpha-g1-"),
        "{}",
        g1.name
    );
    w.apply(&["--force"]).await.expect_code(0);
    let g2 = w.record("alpha").await.unwrap().current.unwrap();
    assert!(
        g2.name.starts_with("rekey-eu-prod-alpha-g2-"),
        "{}",
        g2.name
    );
    let r = w.apply_at("25h", &["--audit-log", "audit.jsonl"]).await;
    r.expect_code(0);
    assert!(!w.token_ok(&g1.client_id, g1.secret.expose()).await);
    let audit = std::fs::read_to_string(w.path().join("audit.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(
        events[0]["deleted_client_ids"],
        serde_json::json!([g1.client_id]),
        "{audit}"
    );
    w.assert_consistent(&["alpha"]).await;
}
