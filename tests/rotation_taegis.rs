//! End to end with Taegis slots: the real binary against the emulator and the age file backend.
//! Each test asserts what a user would check: the stored pair gets a token, old clients die only
//! after grace, retired slots leave nothing behind, a second apply changes nothing.

mod common;
use common::{World, actions, assert_each_promoted_once, slots, strategies};

#[tokio::test(flavor = "multi_thread")]
async fn create_then_second_apply_is_a_no_op() {
    let w = World::new(1).await;
    w.inventory(&slots(&[
        ("alpha", "alternate"),
        ("beta", "in-place"),
        ("gamma", "alternate"),
    ]));
    let plan = w.rekey(&["plan", "-c", "inventory.toml"]).await;
    plan.expect_code(0);
    assert!(
        plan.stdout.contains("create") && plan.stdout.contains("no credential yet"),
        "{}",
        plan.stdout
    );
    assert!(w.records().await.is_empty(), "plan changed nothing");

    let first = w.apply(&["--output", "json"]).await;
    first.expect_code(0);
    for s in ["alpha", "beta", "gamma"] {
        assert_eq!(actions(&first, s), vec!["created g1", "promoted g1"]);
        let rec = w.record(s).await.unwrap();
        // `<prefix><slot>-g<gen>-<op>`: the operation that made it is part of the name.
        let name = &rec.current.as_ref().unwrap().name;
        let op = name
            .strip_prefix(&format!("rekey-{s}-g1-"))
            .unwrap_or_default();
        assert!(
            op.len() == 8 && op.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}"
        );
    }
    w.assert_consistent(&["alpha", "beta", "gamma"]).await;

    let second = w.apply(&["--output", "json"]).await;
    second.expect_code(0);
    for o in second.outcomes() {
        assert!(
            o["actions"].as_array().unwrap().is_empty(),
            "second apply acted: {o}"
        );
    }
    w.assert_no_secrets(&first.all());
    w.assert_no_secrets(&second.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn alternate_rotation_keeps_the_old_pair_alive_for_grace() {
    let w = World::new(1).await;
    w.inventory(&slots(&[("alpha", "alternate")]));
    w.apply(&[]).await.expect_code(0);
    let g1 = w.record("alpha").await.unwrap().current.unwrap();

    // 31 days later the credential is due.
    let later = w.apply_at("31d", &["--output", "json"]).await;
    later.expect_code(0);
    assert_eq!(actions(&later, "alpha"), vec!["created g2", "promoted g2"]);
    let rec = w.record("alpha").await.unwrap();
    let g2 = rec.current.clone().unwrap();
    assert_eq!(g2.generation, 2);
    assert_ne!(g2.client_id, g1.client_id, "alternate makes a new client");
    assert_eq!(rec.draining.len(), 1);
    assert!(
        w.token_ok(&g1.client_id, g1.secret.expose()).await,
        "old pair still works during grace"
    );
    assert!(w.token_ok(&g2.client_id, g2.secret.expose()).await);

    // Still inside the grace period: nothing is deleted.
    let inside = w.apply_at("31d 23h", &["--output", "json"]).await;
    inside.expect_code(0);
    assert!(actions(&inside, "alpha").is_empty());
    assert!(w.token_ok(&g1.client_id, g1.secret.expose()).await);

    // Grace over: the old client is deleted, the new one keeps working.
    let after = w.apply_at("32d 1h", &["--output", "json"]).await;
    after.expect_code(0);
    assert_eq!(actions(&after, "alpha"), vec!["deleted g1"]);
    assert!(
        !w.token_ok(&g1.client_id, g1.secret.expose()).await,
        "old pair dead after grace"
    );
    assert!(w.record("alpha").await.unwrap().draining.is_empty());
    w.assert_consistent(&["alpha"]).await;
    assert_eq!(
        w.managed_clients(&w.tenants[0].id, "alpha").await,
        vec![g2.name.clone()]
    );
    assert!(g2.name.starts_with("rekey-alpha-g2-"), "{}", g2.name);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_place_rotation_keeps_the_client_and_kills_the_old_secret() {
    for chooser in ["server", "caller"] {
        let w = World::new(1).await;
        let header = w.header().replace(
            "rate_limit = 1000",
            &format!("rate_limit = 1000\nin_place_secret = \"{chooser}\""),
        );
        w.inventory_raw(&format!("{header}\n{}", slots(&[("beta", "in-place")])));
        w.apply(&[]).await.expect_code(0);
        let g1 = w.record("beta").await.unwrap().current.unwrap();
        let r = w.apply(&["--force", "--output", "json"]).await;
        r.expect_code(0);
        assert_eq!(
            actions(&r, "beta"),
            vec!["rotated g2 in place", "promoted g2"],
            "{chooser}"
        );
        let g2 = w.record("beta").await.unwrap().current.unwrap();
        assert_eq!(g2.client_id, g1.client_id, "same client");
        assert_ne!(g2.secret, g1.secret);
        assert!(
            !w.token_ok(&g1.client_id, g1.secret.expose()).await,
            "old secret dead"
        );
        w.assert_consistent(&["beta"]).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retire_deletes_client_and_entry_after_grace() {
    let w = World::new(1).await;
    w.inventory(&slots(&[("alpha", "alternate"), ("old", "alternate")]));
    w.apply(&[]).await.expect_code(0);
    let old = w.record("old").await.unwrap().current.unwrap();

    w.inventory(&format!(
        "{}\n[[slots]]\nname = \"old\"\nprovider = \"p0\"\nretired = true\ngrace = \"1h\"\n",
        slots(&[("alpha", "alternate")])
    ));
    let plan = w.rekey(&["plan", "-c", "inventory.toml"]).await;
    assert!(plan.stdout.contains("retire"), "{}", plan.stdout);
    let r = w.apply(&["--output", "json"]).await;
    r.expect_code(0);
    assert_eq!(actions(&r, "old"), vec!["retiring"]);
    assert!(
        w.token_ok(&old.client_id, old.secret.expose()).await,
        "still usable during grace"
    );

    let r = w.apply_at("2h", &["--output", "json"]).await;
    r.expect_code(0);
    assert_eq!(
        actions(&r, "old"),
        vec![
            format!("deleted client {} (g1)", old.client_id),
            "retired (1 client deleted)".to_string()
        ]
    );
    assert!(w.record("old").await.is_none(), "entry removed");
    assert!(
        !w.token_ok(&old.client_id, old.secret.expose()).await,
        "client deleted"
    );
    assert!(w.managed_clients(&w.tenants[0].id, "old").await.is_empty());
    w.assert_consistent(&["alpha"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removal_from_inventory_deletes_nothing_unless_prune() {
    let w = World::new(1).await;
    w.inventory(&slots(&[("alpha", "alternate"), ("gone", "alternate")]));
    w.apply(&[]).await.expect_code(0);
    let gone = w.record("gone").await.unwrap().current.unwrap();

    w.inventory(&slots(&[("alpha", "alternate")]));
    let plan = w.rekey(&["plan", "-c", "inventory.toml"]).await;
    assert!(plan.stdout.contains("set prune = true"), "{}", plan.stdout);
    w.apply(&[]).await.expect_code(0);
    assert!(w.record("gone").await.is_some(), "kept without prune");
    assert!(w.token_ok(&gone.client_id, gone.secret.expose()).await);

    let header = w
        .header()
        .replace("[settings]\n", "[settings]\nprune = true\n");
    w.inventory_raw(&format!("{header}\n{}", slots(&[("alpha", "alternate")])));
    let r = w.apply(&["--output", "json"]).await;
    r.expect_code(0);
    // A slot that left the inventory retires with the default grace (24h): alive until then.
    assert_eq!(actions(&r, "gone"), vec!["retiring"]);
    assert!(w.token_ok(&gone.client_id, gone.secret.expose()).await);
    let r = w.apply_at("25h", &[]).await;
    r.expect_code(0);
    assert!(w.record("gone").await.is_none());
    assert!(!w.token_ok(&gone.client_id, gone.secret.expose()).await);
    w.assert_consistent(&["alpha"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_verify_report_and_exit_codes() {
    let w = World::new(1).await;
    w.inventory(&slots(&[("alpha", "alternate"), ("beta", "in-place")]));
    // Nothing stored yet: status says missing, exit 1.
    let st = w.rekey(&["status", "-c", "inventory.toml"]).await;
    st.expect_code(1);
    assert!(st.stdout.contains("MISSING"), "{}", st.stdout);
    w.apply(&[]).await.expect_code(0);
    let st = w.rekey(&["status", "-c", "inventory.toml"]).await;
    st.expect_code(0);
    assert!(
        st.stdout.contains("alpha") && st.stdout.contains(" ok "),
        "{}",
        st.stdout
    );
    let v = w.rekey(&["verify", "-c", "inventory.toml"]).await;
    v.expect_code(0);
    assert!(
        v.stdout.contains("2 pairs checked, 0 failed"),
        "{}",
        v.stdout
    );
    // 31 days later: overdue.
    let st = w
        .rekey_env(
            &["status", "-c", "inventory.toml"],
            &[("REKEY_TEST_CLOCK_OFFSET", "31d")],
        )
        .await;
    st.expect_code(1);
    assert!(st.stdout.contains("OVERDUE"), "{}", st.stdout);
    // Someone deletes alpha's client behind rekey's back: verify fails with exit 1.
    let alpha = w.record("alpha").await.unwrap().current.unwrap();
    let all = w.platform_clients(&w.tenants[0].id).await;
    assert!(all.iter().any(|c| c.1 == alpha.client_id));
    for o in [&st, &v] {
        w.assert_no_secrets(&o.all());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn get_prints_the_current_pair_only_when_asked() {
    let w = World::new(1).await;
    w.inventory(&slots(&[("alpha", "alternate")]));
    w.apply(&[]).await.expect_code(0);
    let cur = w.record("alpha").await.unwrap().current.unwrap();
    let env = w.rekey(&["get", "-c", "inventory.toml", "alpha"]).await;
    env.expect_code(0);
    assert_eq!(
        env.stdout,
        format!(
            "CLIENT_ID={}\nCLIENT_SECRET={}\n",
            cur.client_id,
            cur.secret.expose()
        )
    );
    let json = w
        .rekey(&["get", "-c", "inventory.toml", "alpha", "--format", "json"])
        .await;
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["client_id"], cur.client_id.as_str());
    assert_eq!(v["generation"], 1);
    let missing = w.rekey(&["get", "-c", "inventory.toml", "nope"]).await;
    missing.expect_code(2);
    assert!(
        missing.stderr.contains("slot nope is not in"),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rekey_rotates_its_own_bootstrap_credential_last() {
    let w = World::new(1).await;
    let t = &w.tenants[0];
    let header = w.header().replace(
        "bootstrap = { client_id = { file = \"boot-0.id\" }, client_secret = { file = \"boot-0.secret\" } }",
        "bootstrap = { slot = \"admin\", seed = { client_id = { file = \"boot-0.id\" }, client_secret = { file = \"boot-0.secret\" } } }",
    );
    let inv = format!(
        "{header}\n[[slots]]\nname = \"admin\"\nprovider = \"p0\"\nroles = [\"{}\"]\ngrace = \"1h\"\n\n{}",
        common::ADMIN_ROLE,
        slots(&[("alpha", "alternate"), ("beta", "alternate")])
    );
    w.inventory_raw(&inv);
    let r = w.apply(&["--output", "json"]).await;
    r.expect_code(0);
    let order: Vec<String> = r
        .outcomes()
        .iter()
        .map(|o| o["slot"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        order.last().unwrap(),
        "admin",
        "bootstrap slot last: {order:?}"
    );
    assert!(actions(&r, "admin").contains(&"switched bootstrap".to_string()));
    let admin1 = w.record("admin").await.unwrap().current.unwrap();

    // From now on rekey authenticates as its own g1. Take the seed away to prove it.
    std::fs::remove_file(w.path().join("boot-0.secret")).unwrap();
    let r = w.apply(&["--force", "--output", "json"]).await;
    r.expect_code(0);
    let admin2 = w.record("admin").await.unwrap().current.unwrap();
    assert_eq!(admin2.generation, 2);
    assert!(
        w.token_ok(&admin1.client_id, admin1.secret.expose()).await,
        "old bootstrap alive during grace"
    );

    // After grace, g1 is deleted by a run that authenticates with g2.
    let r = w.apply_at("2h", &["--output", "json"]).await;
    r.expect_code(0);
    assert!(
        actions(&r, "admin").contains(&"deleted g1".to_string()),
        "{:?}",
        r.outcomes()
    );
    assert!(!w.token_ok(&admin1.client_id, admin1.secret.expose()).await);
    assert!(w.token_ok(&admin2.client_id, admin2.secret.expose()).await);
    w.assert_consistent(&["admin", "alpha", "beta"]).await;
    assert!(
        w.token_ok(&t.admin_id, &t.admin_secret).await,
        "the seed client is not rekey's: never deleted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_concurrent_applies_rotate_each_slot_exactly_once() {
    let w = World::new(1).await;
    let names: Vec<String> = (0..12).map(|i| format!("s{i:02}")).collect();
    let list = strategies(&names, |n| n.ends_with('1'));
    w.inventory(&slots(&list));
    w.apply(&[]).await.expect_code(0);
    let before: Vec<_> = futures_lite_records(&w, &names).await;

    let env = [("REKEY_TEST_CLOCK_OFFSET", "31d")];
    let args = [
        "apply",
        "-c",
        "inventory.toml",
        "--output",
        "json",
        "--concurrency",
        "3",
    ];
    let (a, b) = tokio::join!(w.rekey_env(&args, &env), w.rekey_env(&args, &env));
    // Across both runs, each slot was rotated exactly once; a slot one run found held was
    // skipped (exit 3) or found already done.
    assert_each_promoted_once(&a, &b, &names);
    for (n, g) in names.iter().zip(before) {
        let rec = w.record(n).await.unwrap();
        assert_eq!(
            rec.current.as_ref().unwrap().generation,
            g + 1,
            "slot {n} rotated once"
        );
    }
    let env2 = [("REKEY_TEST_CLOCK_OFFSET", "33d")];
    w.rekey_env(&["apply", "-c", "inventory.toml"], &env2)
        .await
        .expect_code(0);
    w.assert_consistent(&names.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
}

async fn futures_lite_records(w: &World, names: &[String]) -> Vec<u64> {
    let mut out = Vec::new();
    for n in names {
        out.push(w.record(n).await.unwrap().current.unwrap().generation);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_under_platform_faults_loses_nothing() {
    use rekey::emulator::Faults;
    let w = World::new(1).await;
    let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    let list = strategies(&names, |n| n.ends_with('3'));
    w.inventory(&slots(&list));
    let faults = Faults {
        latency_ms: 2,
        latency_jitter_ms: 20,
        rate_limit_per_sec: Some(150.0),
        error_rate: 0.15,
        drop_after_commit_rate: 0.25,
        fault_seed: Some(7),
        ..Faults::default()
    };
    // Create, then rotate, each under faults: runs may fail some slots (exit 1) but must never
    // lose a pair; repeated runs converge.
    for offset in ["0s", "31d"] {
        w.set_faults(faults.clone()).await;
        let mut converged = false;
        for _ in 0..8 {
            let r = w.apply_at(offset, &[]).await;
            assert!(
                matches!(r.code, Some(0) | Some(1) | Some(4)),
                "exit {:?}: {}",
                r.code,
                r.stderr
            );
            w.assert_no_secrets(&r.all());
            if r.code == Some(0) {
                converged = true;
                break;
            }
        }
        assert!(
            converged,
            "apply did not converge under faults at offset {offset}"
        );
        let stats = w.emu.stats().await;
        assert!(
            !stats.faults_injected.is_empty(),
            "faults were injected: {stats:?}"
        );
        w.set_faults(Faults::default()).await;
        // Old generations drained, then everything checked without faults.
        w.apply_at("40d", &[]).await.expect_code(0);
        w.assert_consistent(&names.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
    }
    for n in &names {
        assert_eq!(
            w.record(n).await.unwrap().current.unwrap().generation,
            2,
            "{n}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_logs_never_contain_a_secret() {
    let w = World::new(1).await;
    w.inventory(&slots(&[("alpha", "alternate"), ("beta", "in-place")]));
    let env = [("RUST_LOG", "trace"), ("REKEY_LOG_FORMAT", "human")];
    let mut outputs = Vec::new();
    for args in [
        vec!["apply", "-c", "inventory.toml", "-vvv"],
        vec!["apply", "-c", "inventory.toml", "--force", "-vvv"],
        vec!["verify", "-c", "inventory.toml", "-vvv"],
        vec!["status", "-c", "inventory.toml", "--output", "json"],
        vec![
            "plan",
            "-c",
            "inventory.toml",
            "--force",
            "--output",
            "json",
        ],
    ] {
        let r = w.rekey_env(&args, &env).await;
        assert!(r.code == Some(0), "{args:?}: {:?}\n{}", r.code, r.stderr);
        outputs.push(r.all());
    }
    assert!(outputs[0].contains("TRACE"), "trace logging was on");
    w.records().await; // learn every stored secret, current and draining
    for o in &outputs {
        w.assert_no_secrets(o);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_pair_that_never_verifies_is_discarded_after_max_failures() {
    use rekey::emulator::{FaultAction, Faults, OneShot};
    let w = World::new(1).await;
    let header = w
        .header()
        .replace("[settings]\n", "[settings]\nmax_verify_failures = 2\n");
    w.inventory_raw(&format!("{header}\n{}", slots(&[("alpha", "alternate")])));
    w.apply(&[]).await.expect_code(0);
    let g1 = w.record("alpha").await.unwrap().current.unwrap();

    // The first `skip` token requests pass (the preflight's, whose token the run then reuses
    // for its GraphQL calls), then the 3 verify attempts fail.
    let refuse_verification = |skip: u32| Faults {
        fail_next: vec![OneShot {
            operation: Some("token".into()),
            skip,
            count: 3,
            action: FaultAction::Status(401),
        }],
        ..Faults::default()
    };
    let env = [("REKEY_TEST_CLOCK_OFFSET", "31d")];
    w.set_faults(refuse_verification(1)).await;
    let r = w
        .rekey_env(&["apply", "-c", "inventory.toml", "--output", "json"], &env)
        .await;
    r.expect_code(1);
    let rec = w.record("alpha").await.unwrap();
    let g2 = rec
        .pending
        .clone()
        .expect("g2 kept as pending for the next run");
    assert_eq!(rec.op.as_ref().unwrap().verify_failures, 1);
    assert_eq!(
        rec.current.as_ref().unwrap().generation,
        1,
        "g1 stays current"
    );
    assert!(w.token_ok(&g1.client_id, g1.secret.expose()).await);
    let st = w.rekey_env(&["status", "-c", "inventory.toml"], &env).await;
    st.expect_code(1);
    assert!(
        st.stdout.contains("INTERRUPTED") && st.stdout.contains("does not work yet (1/2)"),
        "{}",
        st.stdout
    );

    // Second failing run (a resume): discarded.
    w.set_faults(refuse_verification(1)).await;
    let r = w
        .rekey_env(&["apply", "-c", "inventory.toml", "--output", "json"], &env)
        .await;
    r.expect_code(1);
    assert!(
        actions(&r, "alpha").contains(&"discarded g2".to_string()),
        "{:?}",
        r.outcomes()
    );
    let rec = w.record("alpha").await.unwrap();
    assert!(rec.pending.is_none() && rec.op.is_none());
    assert!(
        !w.token_ok(&g2.client_id, g2.secret.expose()).await,
        "the discarded client is deleted"
    );

    // The next run issues a new generation and succeeds.
    w.set_faults(Faults::default()).await;
    let r = w
        .rekey_env(&["apply", "-c", "inventory.toml", "--output", "json"], &env)
        .await;
    r.expect_code(0);
    assert_eq!(actions(&r, "alpha"), vec!["created g3", "promoted g3"]);
    w.assert_consistent(&["alpha"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mirrors_follow_the_primary_and_a_failed_mirror_fails_visibly() {
    use rekey::backend::Backend;
    let w = World::new(1).await;
    // The mirror: the example exec plugin, behind a switch that makes it fail.
    let plugin =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/exec-plugin/dir_store.py");
    let wrapper = w.path().join("mirror.sh");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nif [ -e \"$0.down\" ]; then echo 'mirror store is down' >&2; exit 1; fi\nexec python3 {} --dir \"$(dirname \"$0\")/mirror-store\"\n", plugin.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let header = format!(
        "{}\n[backends.dr]\ntype = \"exec\"\ncommand = [\"./mirror.sh\"]\n",
        w.header()
    );
    let inv = format!(
        "{header}\n[[slots]]\nname = \"alpha\"\nprovider = \"p0\"\nmirrors = [\"dr\"]\n\n[[slots]]\nname = \"solo\"\nprovider = \"p0\"\n"
    );
    w.inventory_raw(&inv);
    let dr = rekey::backend::exec::ExecBackend::open(&rekey::backend::exec::ExecBackendConfig {
        name: "dr".into(),
        command: vec![wrapper.to_string_lossy().into_owned()],
        timeout: std::time::Duration::from_secs(20),
        pass_env: vec![],
    })
    .unwrap();

    let r = w.apply(&["--output", "json"]).await;
    r.expect_code(0);
    assert_eq!(
        actions(&r, "alpha"),
        vec!["created g1", "promoted g1", "mirrored to dr"]
    );
    let primary = w.record("alpha").await.unwrap();
    let mirrored = dr.read("alpha").await.unwrap().unwrap().record;
    assert_eq!(
        mirrored.current, primary.current,
        "the mirror holds the current pair"
    );
    assert!(
        dr.read("solo").await.unwrap().is_none(),
        "only slots that name the mirror"
    );

    // The mirror goes down during a rotation: the primary rotates, the slot fails visibly.
    std::fs::write(w.path().join("mirror.sh.down"), "").unwrap();
    let r = w.apply(&["--force", "--output", "json"]).await;
    r.expect_code(1);
    let alpha = r
        .outcomes()
        .into_iter()
        .find(|o| o["slot"] == "alpha")
        .unwrap();
    assert_eq!(alpha["result"], "failed");
    assert!(
        alpha["detail"].as_str().unwrap().contains("mirror dr"),
        "{alpha}"
    );
    assert!(
        !alpha["detail"].as_str().unwrap().contains(
            w.record("alpha")
                .await
                .unwrap()
                .current
                .unwrap()
                .secret
                .expose()
        )
    );
    assert_eq!(
        w.record("alpha").await.unwrap().current.unwrap().generation,
        2
    );

    // Back up: the next run (nothing else due) brings the mirror up to date.
    std::fs::remove_file(w.path().join("mirror.sh.down")).unwrap();
    assert_eq!(
        dr.read("alpha")
            .await
            .unwrap()
            .unwrap()
            .record
            .current
            .unwrap()
            .generation,
        1,
        "stale, and said so"
    );
    let r = w.apply(&["--output", "json"]).await;
    r.expect_code(0);
    assert_eq!(actions(&r, "alpha"), vec!["mirrored to dr"]);
    assert_eq!(
        dr.read("alpha").await.unwrap().unwrap().record.current,
        w.record("alpha").await.unwrap().current
    );

    // Retiring the slot removes it from the mirror too.
    w.inventory_raw(&inv.replace(
        "mirrors = [\"dr\"]\n",
        "mirrors = [\"dr\"]\nretired = true\ngrace = \"0s\"\n",
    ));
    let r = w.apply(&["--output", "json"]).await;
    r.expect_code(0);
    assert!(
        actions(&r, "alpha").contains(&"removed from mirror dr".to_string()),
        "{:?}",
        actions(&r, "alpha")
    );
    assert!(dr.read("alpha").await.unwrap().is_none());
    assert!(w.record("alpha").await.is_none());
}
