//! End to end with Cisco slots: the real binary against the emulator's IROH endpoints and the
//! age file backend. Create, rotate by alternate (Cisco has no password reset), retire, the
//! crash windows, the org's hourly budget running out mid-run, and an inventory that mixes
//! Taegis and Cisco slots in one apply.

mod common;
use common::{CiscoWorld, World, actions, cisco_slot, crash_windows};
use rekey::emulator::Faults;

async fn managed(w: &CiscoWorld, slot: &str) -> Vec<String> {
    w.managed_clients(&w.orgs[0].id, slot).await
}

#[tokio::test(flavor = "multi_thread")]
async fn create_rotate_by_alternate_and_retire() {
    let w = World::new_with(0, 1).await;
    w.inventory(&format!(
        "{}\n{}",
        cisco_slot("alpha", "c0"),
        cisco_slot("beta", "c0")
    ));

    let first = w.apply(&["--output", "json"]).await;
    first.expect_code(0);
    assert_eq!(actions(&first, "alpha"), vec!["created g1", "promoted g1"]);
    let g1 = w.record("alpha").await.unwrap();
    assert_eq!(
        g1.tenant, "org",
        "Cisco slots without a tenant record the org"
    );
    let g1 = g1.current.unwrap();
    assert!(g1.client_id.starts_with("client-"), "{}", g1.client_id);
    assert!(w.cisco_token_ok(&g1.client_id, g1.secret.expose()).await);
    assert_eq!(managed(&w, "alpha").await, vec![g1.name.clone()]);
    assert!(g1.name.starts_with("rekey-alpha-g1-"), "{}", g1.name);
    w.assert_consistent(&["alpha", "beta"]).await;

    // Forced rotation: a new client next to the old one; both work during grace.
    let rotated = w
        .apply(&["--output", "json", "--force", "--only", "alpha"])
        .await;
    rotated.expect_code(0);
    assert_eq!(
        actions(&rotated, "alpha"),
        vec!["created g2", "promoted g2"]
    );
    let rec = w.record("alpha").await.unwrap();
    let g2 = rec.current.clone().unwrap();
    assert_ne!(g2.client_id, g1.client_id);
    assert_eq!(rec.draining.len(), 1);
    assert!(w.cisco_token_ok(&g1.client_id, g1.secret.expose()).await);
    assert!(w.cisco_token_ok(&g2.client_id, g2.secret.expose()).await);

    // Grace over: the old client is deleted at the platform.
    let after = w.apply_at("25h", &["--output", "json"]).await;
    after.expect_code(0);
    assert_eq!(actions(&after, "alpha"), vec!["deleted g1"]);
    assert!(!w.cisco_token_ok(&g1.client_id, g1.secret.expose()).await);
    assert_eq!(managed(&w, "alpha").await, vec![g2.name.clone()]);
    w.assert_consistent(&["alpha", "beta"]).await;

    // Retire beta: its client and its entry go.
    let beta = w.record("beta").await.unwrap().current.unwrap();
    w.inventory(&format!(
        "{}\n[[slots]]\nname = \"beta\"\nprovider = \"c0\"\nscopes = [\"enrich:read\"]\nretired = true\ngrace = \"0s\"\n",
        cisco_slot("alpha", "c0")
    ));
    let r = w.apply(&["--output", "json"]).await;
    r.expect_code(0);
    assert_eq!(
        actions(&r, "beta"),
        vec![
            "retiring".to_string(),
            format!("deleted client {} (g1)", beta.client_id),
            "retired (1 client deleted)".to_string()
        ]
    );
    assert!(w.record("beta").await.is_none());
    assert!(
        !w.cisco_token_ok(&beta.client_id, beta.secret.expose())
            .await
    );
    assert!(managed(&w, "beta").await.is_empty());
    w.assert_consistent(&["alpha"]).await;

    for run in [&first, &rotated, &after, &r] {
        w.assert_no_secrets(&run.all());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_place_is_refused_for_cisco_slots_with_the_line() {
    let w = World::new_with(0, 1).await;
    w.inventory(
        "[[slots]]\nname = \"alpha\"\nprovider = \"c0\"\nscopes = [\"enrich:read\"]\nstrategy = \"in-place\"\n",
    );
    let r = w.rekey(&["plan", "-c", "inventory.toml"]).await;
    r.expect_code(2);
    assert!(
        r.stderr.contains("slots[0].strategy") && r.stderr.contains("no password reset"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("inventory.toml:"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_taegis_and_cisco_inventory_in_one_apply() {
    let w = World::new_with(1, 1).await;
    w.inventory(&format!(
        "[[slots]]\nname = \"tg\"\nprovider = \"p0\"\n\n{}\n{}",
        cisco_slot("cs1", "c0"),
        cisco_slot("cs2", "c0")
    ));
    let r = w.apply(&["--output", "json"]).await;
    r.expect_code(0);
    for s in ["tg", "cs1", "cs2"] {
        assert_eq!(actions(&r, s), vec!["created g1", "promoted g1"], "{s}");
    }
    w.assert_consistent(&["tg", "cs1", "cs2"]).await;
    // The Cisco pairs are Cisco clients: the Taegis token endpoint does not know them.
    let cs1 = w.record("cs1").await.unwrap().current.unwrap();
    assert!(!w.token_ok(&cs1.client_id, cs1.secret.expose()).await);

    let forced = w.apply(&["--output", "json", "--force"]).await;
    forced.expect_code(0);
    for s in ["tg", "cs1", "cs2"] {
        assert_eq!(
            actions(&forced, s),
            vec!["created g2", "promoted g2"],
            "{s}"
        );
    }
    w.assert_consistent(&["tg", "cs1", "cs2"]).await;
    w.assert_no_secrets(&r.all());
    w.assert_no_secrets(&forced.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn org_budget_spent_mid_run_then_a_later_run_completes() {
    let w = World::new_with(0, 1).await;
    let names = ["s1", "s2", "s3", "s4", "s5", "s6"];
    let slots: Vec<String> = names.iter().map(|n| cisco_slot(n, "c0")).collect();
    w.inventory(&slots.join("\n"));
    // Other clients of the org have spent most of the hour: room for a few requests only.
    w.set_faults(Faults {
        cisco_hourly_budget: Some(6),
        ..Faults::default()
    })
    .await;
    let started = std::time::Instant::now();
    let short = w.apply(&["--output", "json"]).await;
    // Deferred, not failed: a spent budget pages no one (docs/src/scale.md).
    short.expect_code(3);
    for o in short.outcomes() {
        assert_ne!(o["result"], "failed", "{o}");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "a spent hourly budget must not hold the run for the hour"
    );
    let done = w
        .records()
        .await
        .iter()
        .filter(|r| r.current.is_some())
        .count();
    assert!(done < names.len(), "the budget allowed everything?");
    assert!(
        short.all().contains("deferred to the next run"),
        "{}",
        short.all()
    );
    assert!(w.emu.stats().await.rate_limited > 0);

    // The hour moves on (the budget is back): the next run finishes every slot.
    w.set_faults(Faults::default()).await;
    let later = w.apply(&["--output", "json"]).await;
    later.expect_code(0);
    w.assert_consistent(&names).await;
    for n in names {
        assert_eq!(managed(&w, n).await.len(), 1, "{n}");
    }
    w.assert_no_secrets(&short.all());
    w.assert_no_secrets(&later.all());
}

struct Scenario {
    name: &'static str,
    setup: &'static [&'static str],
    offset: &'static str,
    retire: bool,
    points: &'static [&'static str],
    generation: u64,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "create",
        setup: &[],
        offset: "",
        retire: false,
        points: &[
            "after-op-recorded",
            "after-provider-create",
            "after-pending-written",
            "after-verify",
            "after-promote",
        ],
        generation: 1,
    },
    Scenario {
        name: "rotate-alternate",
        setup: &[""],
        offset: "31d",
        retire: false,
        // The lease is taken in the write that records the operation: no window between.
        points: &[
            "after-op-recorded",
            "after-provider-create",
            "after-pending-written",
            "after-verify",
            "after-promote",
        ],
        generation: 2,
    },
    Scenario {
        name: "delete-old",
        setup: &["", "31d"],
        offset: "33d",
        retire: false,
        points: &["after-lease", "after-old-deleted"],
        generation: 2,
    },
    Scenario {
        name: "retire",
        setup: &[""],
        offset: "",
        retire: true,
        points: &["after-lease", "after-retire-delete"],
        generation: 0,
    },
];

fn crash_inventory(w: &CiscoWorld, retire: bool) -> String {
    let victim = if retire {
        "[[slots]]\nname = \"victim\"\nprovider = \"c0\"\nscopes = [\"enrich:read\"]\nretired = true\ngrace = \"0s\"\n".to_string()
    } else {
        cisco_slot("victim", "c0")
    };
    format!(
        "{}\n{victim}\n{}",
        w.header(),
        cisco_slot("bystander", "c0")
    )
}

async fn run_scenario(s: &Scenario) -> usize {
    // The clock of the crashing run, and of the healing run after it.
    let offset: Vec<(&str, &str)> = if s.offset.is_empty() {
        vec![]
    } else {
        vec![("REKEY_TEST_CLOCK_OFFSET", s.offset)]
    };
    crash_windows(
        s.points,
        async |_| {
            let w = World::new_with(0, 1).await;
            w.inventory_raw(&crash_inventory(&w, false));
            for offset in s.setup {
                w.apply_at(offset, &[]).await.expect_code(0);
            }
            if s.retire {
                w.inventory_raw(&crash_inventory(&w, true));
            }
            w
        },
        async |w, crash| {
            w.rekey_env(
                &["apply", "-c", "inventory.toml", "--only", "victim"],
                &[crash, &offset].concat(),
            )
            .await
        },
        async |w, point| {
            let healed = w.apply_at(s.offset, &["--output", "json"]).await;
            healed.expect_code(0);
            if s.retire {
                assert!(w.record("victim").await.is_none(), "{}: {point}", s.name);
                assert!(managed(w, "victim").await.is_empty(), "{}: {point}", s.name);
                w.assert_consistent(&["bystander"]).await;
            } else {
                let rec = w.record("victim").await.unwrap();
                assert_eq!(
                    rec.current.as_ref().unwrap().generation,
                    s.generation,
                    "{}: {point}",
                    s.name
                );
                w.assert_consistent(&["victim", "bystander"]).await;
                // Exactly the clients the record knows: current plus any still in grace.
                let clients = managed(w, "victim").await;
                assert_eq!(
                    clients.len(),
                    1 + rec.draining.len(),
                    "{}: {point}: {clients:?}",
                    s.name
                );
            }
            vec![healed]
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn cisco_crash_windows_create() {
    assert_eq!(run_scenario(&SCENARIOS[0]).await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn cisco_crash_windows_rotate_alternate() {
    assert_eq!(run_scenario(&SCENARIOS[1]).await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn cisco_crash_windows_delete_old_and_retire() {
    assert_eq!(run_scenario(&SCENARIOS[2]).await, 2);
    assert_eq!(run_scenario(&SCENARIOS[3]).await, 2);
}
