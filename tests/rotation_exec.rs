//! End to end with the exec backend (the example plugin in examples/) as the primary: the real
//! binary against the emulator, the store read back through the plugin protocol.

mod common;

use common::{HasWorld, World, crash_windows, slots};
use rekey::backend::exec::{ExecBackend, ExecBackendConfig};
use std::time::Duration;

struct ExecWorld {
    w: World,
    backend: ExecBackend,
}

impl HasWorld for ExecWorld {
    fn world(&self) -> &World {
        &self.w
    }
}

impl ExecWorld {
    async fn new() -> ExecWorld {
        let w = World::new(1).await;
        let backend = ExecBackend::open(&ExecBackendConfig {
            name: "corp".into(),
            command: vec![
                plugin(),
                "--dir".into(),
                w.path().join("plugin-store").to_string_lossy().into_owned(),
            ],
            timeout: Duration::from_secs(20),
            pass_env: vec![],
        })
        .unwrap();
        ExecWorld { w, backend }
    }

    fn inventory(&self, slots: &str) {
        let section = format!(
            "[backends.corp]\ntype = \"exec\"\ncommand = [\"{}\", \"--dir\", \"plugin-store\"]\ntimeout = \"20s\"\n",
            plugin()
        );
        let header = self.w.header_with_backend("corp", &section);
        self.w.inventory_raw(&format!("{header}\n{slots}"));
    }
}

fn plugin() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/exec-plugin/dir_store.py")
        .to_string_lossy()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_rotate_grace_retire_with_exec_as_primary() {
    let e = ExecWorld::new().await;
    let w = &e.w;
    e.inventory(&slots(&[("alpha", "alternate"), ("beta", "in-place")]));
    w.apply(&[]).await.expect_code(0);
    e.w.assert_consistent_in(&e.backend, &["alpha", "beta"])
        .await;
    assert!(
        w.records().await.is_empty(),
        "nothing went to the file backend"
    );
    let g1 = w
        .record_in(&e.backend, "alpha")
        .await
        .unwrap()
        .current
        .unwrap();

    // Due after 31 days: both strategies rotate; the alternate g1 lives through its grace.
    w.apply_at("31d", &[]).await.expect_code(0);
    let rec = w.record_in(&e.backend, "alpha").await.unwrap();
    assert_eq!(rec.current.as_ref().unwrap().generation, 2);
    assert!(w.token_ok(&g1.client_id, g1.secret.expose()).await);
    w.apply_at("33d", &[]).await.expect_code(0);
    assert!(
        !w.token_ok(&g1.client_id, g1.secret.expose()).await,
        "deleted after grace"
    );
    e.w.assert_consistent_in(&e.backend, &["alpha", "beta"])
        .await;

    // Retire beta: its client and its entry in the plugin's store are gone.
    e.inventory(&format!(
        "{}[[slots]]\nname = \"beta\"\nprovider = \"p0\"\nretired = true\ngrace = \"0s\"\n",
        slots(&[("alpha", "alternate")])
    ));
    w.apply_at("33d", &[]).await.expect_code(0);
    assert!(w.record_in(&e.backend, "beta").await.is_none());
    assert!(w.managed_clients(&w.tenants[0].id, "beta").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_windows_and_concurrent_applies_with_exec_as_primary() {
    let points = [
        "after-op-recorded",
        "after-provider-create",
        "after-pending-written",
        // Exec promotion is one plugin call, but what the plugin does is unknown, so it is
        // recorded as `promoting` first.
        "after-promoting-recorded",
        "after-promote",
    ];
    let covered = crash_windows(
        &points,
        async |_| {
            let e = ExecWorld::new().await;
            e.inventory(&slots(&[("alpha", "alternate")]));
            e
        },
        async |e, crash| {
            e.w.rekey_env(&["apply", "-c", "inventory.toml"], crash)
                .await
        },
        async |e, point| {
            let healed = e.w.apply(&[]).await;
            healed.expect_code(0);
            e.w.assert_consistent_in(&e.backend, &["alpha"]).await;
            assert_eq!(
                e.w.managed_clients(&e.w.tenants[0].id, "alpha").await.len(),
                1,
                "{point}: no orphan"
            );
            vec![healed]
        },
    )
    .await;
    assert_eq!(covered, points.len());

    let e = ExecWorld::new().await;
    let names: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    e.inventory(&slots(
        &names
            .iter()
            .map(|n| (n.as_str(), "alternate"))
            .collect::<Vec<_>>(),
    ));
    let args = [
        "apply",
        "-c",
        "inventory.toml",
        "--output",
        "json",
        "--concurrency",
        "2",
    ];
    let (a, b) = tokio::join!(e.w.rekey(&args), e.w.rekey(&args));
    for r in [&a, &b] {
        assert!(
            matches!(r.code, Some(0) | Some(3)),
            "{:?}: {}",
            r.code,
            r.stderr
        );
    }
    for n in &names {
        let created = [&a, &b]
            .iter()
            .filter(|r| {
                r.outcomes().iter().any(|o| {
                    o["slot"] == n.as_str()
                        && o["actions"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|x| x == "created g1")
                })
            })
            .count();
        assert_eq!(created, 1, "slot {n} created exactly once");
    }
    e.w.apply(&[]).await.expect_code(0);
    e.w.assert_consistent_in(
        &e.backend,
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
}
