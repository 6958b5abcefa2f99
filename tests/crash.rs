//! The protocol's crash windows: for each step of each strategy, a run that aborts right after
//! that step (test-only crash points, `REKEY_CRASH_AT`), then a normal run. Afterwards every
//! slot holds a working pair, nothing is in flight, and no client is orphaned at the platform.

mod common;
use common::{World, crash_windows};

struct Scenario {
    name: &'static str,
    strategy: &'static str,
    in_place_secret: &'static str,
    /// Runs before the crashing run, each with this clock offset (empty = real time).
    setup: &'static [&'static str],
    /// Clock offset and extra args of the crashing run (and of the healing run after it).
    offset: &'static str,
    force: bool,
    retire: bool,
    points: &'static [&'static str],
    /// Generation the slot must hold after healing.
    generation: u64,
    /// The victim has two mirrors (file backends `dr1`, `dr2`), written after the primary.
    mirrors: bool,
}

const CREATE_POINTS: &[&str] = &[
    "after-op-recorded",
    "after-provider-create",
    "after-pending-written",
    "after-verify",
    "after-promote",
];
// A rotation takes the slot's lease in the same write that records its operation, so it has
// no "after-lease" window of its own (delete-old and retire still claim the slot first).
const ROTATE_POINTS: &[&str] = &[
    "after-op-recorded",
    "after-provider-create",
    "after-pending-written",
    "after-verify",
    "after-promote",
];
const IN_PLACE_POINTS: &[&str] = &[
    "after-op-recorded",
    "after-provider-rotate",
    "after-pending-written",
    "after-verify",
    "after-promote",
];

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "create",
        strategy: "alternate",
        in_place_secret: "server",
        setup: &[],
        offset: "",
        force: false,
        retire: false,
        points: CREATE_POINTS,
        generation: 1,
        mirrors: false,
    },
    Scenario {
        name: "rotate-alternate",
        strategy: "alternate",
        in_place_secret: "server",
        setup: &[""],
        offset: "31d",
        force: false,
        retire: false,
        points: ROTATE_POINTS,
        generation: 2,
        mirrors: false,
    },
    Scenario {
        name: "delete-old",
        strategy: "alternate",
        in_place_secret: "server",
        setup: &["", "31d"],
        offset: "33d",
        force: false,
        retire: false,
        points: &["after-lease", "after-old-deleted"],
        generation: 2,
        mirrors: false,
    },
    Scenario {
        name: "in-place-server-secret",
        strategy: "in-place",
        in_place_secret: "server",
        setup: &[""],
        offset: "",
        force: true,
        retire: false,
        points: IN_PLACE_POINTS,
        generation: 2,
        mirrors: false,
    },
    Scenario {
        name: "in-place-caller-secret",
        strategy: "in-place",
        in_place_secret: "caller",
        setup: &[""],
        offset: "",
        force: true,
        retire: false,
        points: IN_PLACE_POINTS,
        generation: 2,
        mirrors: false,
    },
    Scenario {
        name: "retire",
        strategy: "alternate",
        in_place_secret: "server",
        setup: &[""],
        offset: "",
        force: false,
        retire: true,
        points: &["after-lease", "after-retire-delete"],
        generation: 0,
        mirrors: false,
    },
    Scenario {
        name: "rotate-with-mirrors",
        strategy: "alternate",
        in_place_secret: "server",
        setup: &[""],
        offset: "31d",
        force: false,
        retire: false,
        // The first mirror holds the new record, the second not yet.
        points: &["after-mirror-write"],
        generation: 2,
        mirrors: true,
    },
];

fn mirror(w: &World, name: &str) -> rekey::backend::file::FileBackend {
    rekey::backend::file::FileBackend::open(&rekey::config::FileBackendConfig {
        name: name.into(),
        path: w.path().join(name),
        identity: rekey::config::ValueRef::File(w.path().join("rekey.key")),
        recipients: vec![],
    })
    .unwrap()
}

fn inventory(w: &World, s: &Scenario, retire: bool) -> String {
    let header = w.header().replace(
        "rate_limit = 1000",
        &format!(
            "rate_limit = 1000\nin_place_secret = \"{}\"",
            s.in_place_secret
        ),
    );
    let header = if s.mirrors {
        format!(
            "{header}\n[backends.dr1]\ntype = \"file\"\npath = \"dr1\"\nidentity = {{ file = \"rekey.key\" }}\n\
             \n[backends.dr2]\ntype = \"file\"\npath = \"dr2\"\nidentity = {{ file = \"rekey.key\" }}\n"
        )
    } else {
        header
    };
    let mirrors = if s.mirrors {
        "mirrors = [\"dr1\", \"dr2\"]\n"
    } else {
        ""
    };
    let victim = if retire {
        "[[slots]]\nname = \"victim\"\nprovider = \"p0\"\nretired = true\ngrace = \"0s\"\n"
            .to_string()
    } else {
        format!(
            "[[slots]]\nname = \"victim\"\nprovider = \"p0\"\nstrategy = \"{}\"\n{mirrors}",
            s.strategy
        )
    };
    format!(
        "{header}\n{victim}\n[[slots]]\nname = \"bystander\"\nprovider = \"p0\"\nstrategy = \"{}\"\n",
        s.strategy
    )
}

async fn run_scenario(s: &Scenario) -> usize {
    let mut args = vec!["apply", "-c", "inventory.toml", "--only", "victim"];
    if s.force {
        args.push("--force");
    }
    // The clock of the crashing run, and of the healing run after it.
    let offset: Vec<(&str, &str)> = if s.offset.is_empty() {
        vec![]
    } else {
        vec![("REKEY_TEST_CLOCK_OFFSET", s.offset)]
    };
    crash_windows(
        s.points,
        async |_| {
            let w = World::new(1).await;
            w.inventory_raw(&inventory(&w, s, false));
            for offset in s.setup {
                w.apply_at(offset, &[]).await.expect_code(0);
            }
            if s.retire {
                w.inventory_raw(&inventory(&w, s, true));
            }
            w
        },
        async |w, crash| w.rekey_env(&args, &[crash, &offset].concat()).await,
        // The next normal run heals the slot (forced runs are not repeated: the in-flight
        // operation is resumed, not a new one started).
        async |w, point| {
            let healed = w.apply_at(s.offset, &["--output", "json"]).await;
            healed.expect_code(0);
            if s.retire {
                assert!(
                    w.record("victim").await.is_none(),
                    "{}: {point}: retired entry still there",
                    s.name
                );
                assert!(
                    w.managed_clients(&w.tenants[0].id, "victim")
                        .await
                        .is_empty(),
                    "{}: {point}: client left",
                    s.name
                );
                w.assert_consistent(&["bystander"]).await;
            } else {
                let rec = w.record("victim").await.unwrap();
                // A forced run that died before recording its operation left nothing to resume.
                let expected = if s.force && point == "after-lease" {
                    s.generation - 1
                } else {
                    s.generation
                };
                assert_eq!(
                    rec.current.as_ref().unwrap().generation,
                    expected,
                    "{}: {point}",
                    s.name
                );
                w.assert_consistent(&["victim", "bystander"]).await;
                if s.mirrors {
                    for m in ["dr1", "dr2"] {
                        let copy = w.record_in(&mirror(w, m), "victim").await.unwrap();
                        assert_eq!(copy.current, rec.current, "{}: {point}: mirror {m}", s.name);
                    }
                }
                if s.strategy == "alternate" {
                    // Exactly the clients the record knows: current plus any still in grace.
                    let clients = w.managed_clients(&w.tenants[0].id, "victim").await;
                    assert_eq!(
                        clients.len(),
                        1 + rec.draining.len(),
                        "{}: {point}: {clients:?}",
                        s.name
                    );
                }
            }
            vec![healed]
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_windows_create() {
    assert_eq!(run_scenario(&SCENARIOS[0]).await, CREATE_POINTS.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_windows_rotate_alternate() {
    assert_eq!(run_scenario(&SCENARIOS[1]).await, ROTATE_POINTS.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_windows_delete_old() {
    assert_eq!(run_scenario(&SCENARIOS[2]).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_windows_in_place_server_secret() {
    assert_eq!(run_scenario(&SCENARIOS[3]).await, IN_PLACE_POINTS.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_windows_in_place_caller_secret() {
    assert_eq!(run_scenario(&SCENARIOS[4]).await, IN_PLACE_POINTS.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_windows_retire() {
    assert_eq!(run_scenario(&SCENARIOS[5]).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_windows_between_mirror_writes() {
    assert_eq!(run_scenario(&SCENARIOS[6]).await, 1);
}

/// The points inside backends' writes are exercised by each backend's crash tests.
#[test]
fn every_backend_crash_point_is_exercised() {
    let sources = [
        include_str!("rotation_vault.rs"),
        include_str!("rotation_aws.rs"),
        include_str!("rotation_exec.rs"),
    ];
    for p in rekey::crash::BACKEND_POINTS {
        let quoted = format!("\"{p}");
        assert!(
            sources.iter().any(|s| s.contains(&quoted)),
            "crash point {p} has no backend crash test"
        );
    }
}

#[test]
fn every_named_crash_point_is_exercised() {
    let used: std::collections::BTreeSet<&str> = SCENARIOS
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    for p in rekey::crash::POINTS {
        assert!(used.contains(p), "crash point {p} has no scenario");
    }
}
