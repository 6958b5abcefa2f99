//! Sharding as a Kubernetes Indexed Job runs it: N processes started at once over one inventory,
//! each with `JOB_COMPLETION_INDEX=i` and `REKEY_SHARD_COUNT=N`. Every slot must be handled by
//! exactly one of them, and the result must be as if one process had done it all.

mod common;
use common::World;
use std::collections::{BTreeMap, BTreeSet};

const SHARDS: usize = 3;
const SLOTS: usize = 30;

fn names() -> Vec<String> {
    (0..SLOTS).map(|i| format!("svc-{i:02}")).collect()
}

fn inventory(w: &World) {
    let slots: String = names()
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let strategy = if i % 3 == 0 { "in-place" } else { "alternate" };
            format!(
                "[[slots]]\nname = \"{n}\"\nprovider = \"p{}\"\nstrategy = \"{strategy}\"\n\n",
                i % 2
            )
        })
        .collect();
    w.inventory(&slots);
}

/// Runs `args` as the N shard processes at once; returns each one's run, by index.
async fn run_shards(w: &World, args: &[&str]) -> Vec<common::Run> {
    let shard = |i: usize| {
        let index = i.to_string();
        async move {
            w.rekey_env(
                args,
                &[
                    ("JOB_COMPLETION_INDEX", index.as_str()),
                    ("REKEY_SHARD_COUNT", "3"),
                ],
            )
            .await
        }
    };
    let (a, b, c) = tokio::join!(shard(0), shard(1), shard(2));
    vec![a, b, c]
}

#[tokio::test(flavor = "multi_thread")]
async fn an_indexed_job_handles_every_slot_exactly_once() {
    let w = World::new(2).await;
    inventory(&w);

    let runs = run_shards(&w, &["apply", "-c", "inventory.toml", "--output", "json"]).await;
    let mut shard_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_shard: Vec<BTreeSet<String>> = vec![BTreeSet::new(); SHARDS];
    for (i, run) in runs.iter().enumerate() {
        run.expect_code(0);
        w.assert_no_secrets(&run.all());
        for o in run.outcomes() {
            let slot = o["slot"].as_str().unwrap().to_string();
            assert_eq!(o["result"], "ok", "shard {i}: {o}");
            let actions = o["actions"].as_array().unwrap();
            assert_eq!(
                actions
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect::<Vec<_>>(),
                vec!["created g1", "promoted g1"],
                "shard {i}: {o}"
            );
            assert!(
                per_shard[i].insert(slot.clone()),
                "shard {i} reported {slot} twice"
            );
            if let Some(other) = shard_of.insert(slot.clone(), i) {
                panic!("{slot} handled by shards {other} and {i}");
            }
        }
    }
    let all: BTreeSet<String> = names().into_iter().collect();
    assert_eq!(
        shard_of.keys().cloned().collect::<BTreeSet<_>>(),
        all,
        "every slot handled"
    );
    for (i, s) in per_shard.iter().enumerate() {
        assert!(!s.is_empty(), "shard {i} got no slot");
        for slot in s {
            assert_eq!(
                rekey::shard::shard_of(slot, SHARDS as u64),
                i as u64,
                "{slot} in the documented shard"
            );
        }
    }
    for n in names() {
        let rec = w.record(&n).await.unwrap();
        assert_eq!(rec.current.as_ref().unwrap().generation, 1, "{n}");
        let tenant = &w.tenants[n[4..].parse::<usize>().unwrap() % 2].id;
        assert_eq!(w.managed_clients(tenant, &n).await.len(), 1, "{n}");
    }
    let expect: Vec<&str> = all.iter().map(String::as_str).collect();
    w.assert_consistent(&expect).await;

    // The same shards again: nothing to do, and each reports only its own slots.
    let again = run_shards(&w, &["apply", "-c", "inventory.toml", "--output", "json"]).await;
    for (i, run) in again.iter().enumerate() {
        run.expect_code(0);
        let slots: BTreeSet<String> = run
            .outcomes()
            .iter()
            .map(|o| {
                assert!(o["actions"].as_array().unwrap().is_empty(), "{o}");
                o["slot"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(slots, per_shard[i], "shard {i} reports the same slots");
    }

    // status per shard covers the inventory once, too.
    let status = run_shards(&w, &["status", "-c", "inventory.toml", "--output", "json"]).await;
    let mut seen = BTreeSet::new();
    for run in &status {
        run.expect_code(0);
        for o in run.outcomes() {
            assert!(seen.insert(o["slot"].as_str().unwrap().to_string()), "{o}");
        }
    }
    assert_eq!(seen, all);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shard_flag_wins_over_the_environment_and_bad_values_are_usage_errors() {
    let w = World::new(2).await;
    inventory(&w);
    let plan = w
        .rekey_env(
            &[
                "plan",
                "-c",
                "inventory.toml",
                "--shard",
                "1/3",
                "--output",
                "json",
            ],
            &[("JOB_COMPLETION_INDEX", "0"), ("REKEY_SHARD_COUNT", "3")],
        )
        .await;
    plan.expect_code(0);
    let planned: BTreeSet<String> = plan
        .outcomes()
        .iter()
        .map(|o| o["slot"].as_str().unwrap().to_string())
        .collect();
    let expect: BTreeSet<String> = names()
        .into_iter()
        .filter(|n| rekey::shard::shard_of(n, 3) == 1)
        .collect();
    assert_eq!(planned, expect);

    for bad in ["3/2", "x/y", "0/0", "1"] {
        let run = w
            .rekey(&["plan", "-c", "inventory.toml", "--shard", bad])
            .await;
        run.expect_code(2);
        assert!(run.stderr.contains("shard"), "{bad}: {}", run.stderr);
    }
    for env in [
        &[("JOB_COMPLETION_INDEX", "1")][..],
        &[("REKEY_SHARD_COUNT", "3")][..],
        &[("JOB_COMPLETION_INDEX", "3"), ("REKEY_SHARD_COUNT", "3")][..],
    ] {
        let run = w.rekey_env(&["plan", "-c", "inventory.toml"], env).await;
        run.expect_code(2);
        assert!(
            run.stderr.contains("REKEY_SHARD_COUNT"),
            "{env:?}: {}",
            run.stderr
        );
    }
    assert!(w.records().await.is_empty(), "plan changed nothing");
}
