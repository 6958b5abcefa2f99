//! The alert rules in a real Prometheus (Debian `prometheus`, started here on 127.0.0.1). It
//! scrapes a real Pushgateway, fed by sharded `rekey apply` runs against the emulator, and a
//! `rekey run --metrics-listen`. The rules are deploy/prometheus-rules.yaml itself, with every
//! duration scaled from hours to seconds (`for: 6h` becomes 6 s, `3 * 3600` becomes 3): nothing
//! else of them changes. The test drives real scenarios (a slot that fails, a provider that is
//! down while credentials pass their max age, one shard that stops and then fails before any
//! slot) and asserts through Prometheus' HTTP API which alerts go pending and firing, and that
//! the others stay quiet. Then every query of the Grafana dashboard
//! (deploy/monitoring/grafana-dashboard.json) runs against that Prometheus and must return
//! data, and the paths deploy/service's probes and ServiceMonitor GET answer 200 on the
//! `rekey run` scraped here. Prometheus, the Pushgateway and promtool come from
//! scripts/setup-system.sh; the test fails, never skips, without them.

mod common;
use common::servers::{self, Server};
use common::{World, plain_slots};
use rekey::emulator::{FaultAction, Faults, OneShot};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// Hours become seconds.
const SCALE: u64 = 3600;

/// `deploy/prometheus-rules.yaml` with its time scaled down by [`SCALE`]: each rule's `for`,
/// and each `N * 3600` / `N * 86400` of an expression. Fails if a time literal is left over,
/// so a new rule cannot slip into the test unscaled.
fn scaled_rules() -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus-rules.yaml"),
    )
    .unwrap();
    let mut fors = 0;
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(d) = trimmed.strip_prefix("for: ") {
            let ms = duration_ms(d) / SCALE;
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}for: {ms}ms\n"));
            fors += 1;
            continue;
        }
        out.push_str(
            &line
                .replace(
                    &format!("* {}", 24 * 3600),
                    &format!("* {}", 24 * 3600 / SCALE),
                )
                .replace(&format!("* {}", 3600), &format!("* {}", 3600 / SCALE)),
        );
        out.push('\n');
    }
    let rules = text.matches("- alert: ").count();
    assert_eq!(fors, rules, "every rule has a `for` to scale");
    for literal in ["3600", "86400"] {
        assert!(
            !out.contains(literal),
            "an unscaled time literal ({literal}) is left:\n{out}"
        );
    }
    out
}

/// A Prometheus duration (`0m`, `15m`, `6h`, `1d`) in milliseconds.
fn duration_ms(d: &str) -> u64 {
    let split = d.find(|c: char| !c.is_ascii_digit()).unwrap();
    let (n, unit) = d.split_at(split);
    let n: u64 = n.parse().unwrap();
    n * match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => panic!("duration unit {other} in {d}"),
    }
}

/// One alert as Prometheus reports it: its name and the labels that tell it apart here.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Alert {
    name: String,
    job: String,
    instance: String,
    shard: String,
    slot: String,
}

fn alert(name: &str, instance: &str, shard: &str, slot: &str) -> Alert {
    Alert {
        name: name.into(),
        job: "rekey".into(),
        instance: instance.into(),
        shard: shard.into(),
        slot: slot.into(),
    }
}

/// Prometheus' view: alerts by state (`pending`, `firing`), and what the test saw over time.
struct Watch<'a> {
    prom: &'a Server,
    seen: BTreeMap<Alert, BTreeSet<String>>,
}

impl Watch<'_> {
    async fn alerts(&mut self) -> BTreeMap<Alert, String> {
        let v: serde_json::Value =
            serde_json::from_str(&self.prom.get("/api/v1/alerts").await).unwrap();
        let mut now = BTreeMap::new();
        for a in v["data"]["alerts"].as_array().unwrap() {
            let l = &a["labels"];
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            let key = Alert {
                name: s("alertname"),
                job: s("job"),
                instance: s("instance"),
                shard: s("shard"),
                slot: s("slot"),
            };
            let state = a["state"].as_str().unwrap().to_string();
            self.seen
                .entry(key.clone())
                .or_default()
                .insert(state.clone());
            now.insert(key, state);
        }
        now
    }

    /// Polls until exactly `want` are firing (and anything else at most pending), or fails
    /// after `secs` showing what is firing. `between` runs before each poll (a run that keeps
    /// the other shards reporting, say).
    async fn until_firing<F, Fut>(&mut self, want: &[Alert], secs: u64, mut between: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let want: BTreeSet<&Alert> = want.iter().collect();
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            between().await;
            let now = self.alerts().await;
            let firing: BTreeSet<&Alert> = now
                .iter()
                .filter(|(_, s)| *s == "firing")
                .map(|(a, _)| a)
                .collect();
            if firing == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "firing: {firing:#?}\nwanted: {want:#?}\nall: {now:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The value of an instant query that returns one sample.
    async fn value(&self, query: &str) -> Option<f64> {
        let url = format!("/api/v1/query?query={}", urlencode(query));
        let v: serde_json::Value = serde_json::from_str(&self.prom.get(&url).await).unwrap();
        let r = v["data"]["result"].as_array()?;
        assert!(r.len() <= 1, "{query}: {r:?}");
        r.first()?["value"][1].as_str()?.parse().ok()
    }
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `rekey run` every second, serving /metrics on `listen`; killed when dropped.
fn spawn_run(w: &World, listen: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_rekey"))
        .args(["run", "-c", "inventory.toml", "--schedule", "* * * * * *"])
        .args(["--metrics-listen", listen])
        .current_dir(w.path())
        .env("REKEY_LOG_FORMAT", "json")
        .env_remove("REKEY_CRASH_AT")
        .env_remove("REKEY_TEST_CLOCK_OFFSET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The world's inventory, with its provider's URL pointing at a platform that is down.
fn inventory_down(w: &World, down: &str, slots: &[&str]) {
    let text = format!(
        "{}{}",
        w.header().replace(&w.emu.url(), down),
        plain_slots(slots)
    );
    std::fs::write(w.path().join("inventory-down.toml"), text).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_fire_in_a_real_prometheus_for_real_runs_and_only_those() {
    let started = Instant::now();
    let gw = servers::pushgateway().await;
    let run_port = servers::free_port();
    let rules = scaled_rules();
    let config = format!(
        "global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\nrule_files: [rules.yaml]\n\
         scrape_configs:\n\
         - job_name: pushgateway\n  honor_labels: true\n  static_configs: [{{targets: ['{}']}}]\n\
         - job_name: rekey-run\n  static_configs: [{{targets: ['127.0.0.1:{run_port}']}}]\n",
        gw.url.trim_start_matches("http://")
    );
    let prom = servers::prometheus(&config, &[("rules.yaml", &rules)]).await;
    let mut watch = Watch {
        prom: &prom,
        seen: BTreeMap::new(),
    };
    let push = ["--pushgateway", gw.url.as_str()];
    let down = servers::down_platform().await;

    // A healthy scheduler, scraped directly.
    let served = World::new(1).await;
    served.inventory(&plain_slots(&["r0", "r1"]));
    let _run = spawn_run(&served, &format!("127.0.0.1:{run_port}"));

    // Three shards of one deployment, all fine.
    let shards = World::new(1).await;
    let names: Vec<String> = (0..9).map(|i| format!("s{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    shards.inventory(&plain_slots(&refs));
    inventory_down(&shards, &down, &refs);
    let shard_run = |i: u64| {
        let shard = format!("{i}/3");
        let shards = &shards;
        async move {
            shards
                .apply(&[
                    push[0],
                    push[1],
                    "--metrics-instance",
                    "shards",
                    "--shard",
                    &shard,
                ])
                .await
        }
    };
    for r in futures_util::future::join_all((0..3).map(shard_run)).await {
        r.expect_code(0);
    }

    // A deployment where one slot fails (its client cannot be created: 403).
    let failing = World::new(1).await;
    failing.inventory(&plain_slots(&["f0", "f1"]));
    failing
        .set_faults(Faults {
            fail_next: vec![OneShot {
                operation: Some("createClient".into()),
                count: 1,
                action: FaultAction::Status(403),
                skip: 0,
            }],
            ..Faults::default()
        })
        .await;
    failing
        .apply(&[push[0], push[1], "--metrics-instance", "failing"])
        .await
        .expect_code(1);

    // A deployment whose provider is down a month later: its credentials are past max age.
    let late = World::new(1).await;
    late.inventory(&plain_slots(&["d0", "d1"]));
    late.apply(&[push[0], push[1], "--metrics-instance", "down"])
        .await
        .expect_code(0);
    inventory_down(&late, &down, &["d0", "d1"]);
    late.rekey_env(
        &[
            "apply",
            "-c",
            "inventory-down.toml",
            push[0],
            push[1],
            "--metrics-instance",
            "down",
        ],
        &[("REKEY_TEST_CLOCK_OFFSET", "31d")],
    )
    .await
    .expect_code(4);

    let failed_slot = alert("RekeyRotationFailed", "failing", "0/1", "");
    let down_run = alert("RekeyRunFailed", "down", "0/1", "");
    let overdue: Vec<Alert> = ["d0", "d1"]
        .iter()
        .map(|s| alert("RekeyCredentialOverdue", "down", "0/1", s))
        .collect();
    // The failed create leaves the slot's operation in flight (`rekey status`: interrupted),
    // and no later run of that deployment resumes it: after the scaled 2 hours it is stuck.
    let stuck = alert("RekeySlotStuck", "failing", "0/1", "");
    let mut want = vec![failed_slot.clone(), down_run.clone(), stuck];
    want.extend(overdue.iter().cloned());
    watch.until_firing(&want, 30, || async {}).await;
    for o in &overdue {
        assert!(
            watch.seen[o].contains("pending"),
            "{o:?} went pending for its `for` before firing: {:?}",
            watch.seen[o]
        );
    }

    // Shard 2 stops; shards 0 and 1 go on running. Shard 2 falls behind and is reported.
    let stopped = alert("RekeyShardNotReporting", "shards", "2/3", "");
    let mut want2 = want.clone();
    want2.push(stopped.clone());
    watch
        .until_firing(&want2, 30, || async {
            for r in futures_util::future::join_all((0..2).map(shard_run)).await {
                r.expect_code(0);
            }
        })
        .await;

    // Shard 2 comes back but its provider is down: it fails before any slot. The run-failed
    // alert fires for it, it no longer lags, and its slots are still in Prometheus.
    shards
        .rekey(&[
            "apply",
            "-c",
            "inventory-down.toml",
            push[0],
            push[1],
            "--metrics-instance",
            "shards",
            "--shard",
            "2/3",
        ])
        .await
        .expect_code(4);
    let mut want3 = want.clone();
    want3.push(alert("RekeyRunFailed", "shards", "2/3", ""));
    watch.until_firing(&want3, 30, || async {}).await;
    let mine = names
        .iter()
        .filter(|s| rekey::shard::shard_of(s, 3) == 2)
        .count();
    assert_eq!(
        watch
            .value(r#"rekey_slots{job="rekey",instance="shards",shard="2/3",state="ok"}"#)
            .await,
        Some(mine as f64),
        "the failed shard's slots are still reported"
    );
    assert_eq!(
        watch
            .value(
                r#"count(rekey_credential_age_seconds{job="rekey",instance="shards",shard="2/3"})"#
            )
            .await,
        Some(mine as f64)
    );
    assert_eq!(
        watch
            .value(r#"rekey_last_run_exit_code{job="rekey",instance="shards",shard="2/3"}"#)
            .await,
        Some(4.0)
    );
    // The scheduler was scraped the whole time and raised nothing.
    assert_eq!(watch.value(r#"up{job="rekey-run"}"#).await, Some(1.0));
    assert_eq!(
        watch
            .value(r#"rekey_last_run_failed{job="rekey-run"}"#)
            .await,
        Some(0.0)
    );
    assert!(
        watch
            .value(r#"rekey_runs_total{job="rekey-run",result="success"}"#)
            .await
            >= Some(1.0)
    );
    let quiet = ["RekeyNoMetrics", "RekeyNoRecentSuccess"];
    for (a, states) in &watch.seen {
        assert!(
            !(quiet.contains(&a.name.as_str()) && states.contains("firing")),
            "{a:?} fired: {states:?}"
        );
        assert!(
            a.job != "rekey-run" || !states.contains("firing"),
            "{a:?} fired for the healthy scheduler"
        );
    }
    assert!(
        !watch
            .seen
            .keys()
            .any(|a| a.name == "RekeyShardNotReporting" && a.shard != "2/3"),
        "only the stopped shard was reported: {:#?}",
        watch.seen
    );
    eprintln!(
        "alerts_prometheus: scenarios done in {:?}",
        started.elapsed()
    );

    // The Grafana dashboard over what the scenarios left: every query of it returns data.
    dashboard_queries_return_data(&prom).await;
    // What deploy/service's probes and ServiceMonitor GET, the scheduler here serves.
    deploy_service_paths_answer(run_port).await;
    for w in [&served, &shards, &failing, &late] {
        w.assert_no_secrets(&gw.get("/metrics").await);
    }
}

/// What Grafana puts for its built-in interval variables. Prometheus here scrapes every
/// 500 ms, so 10 s holds enough samples for `rate()` and `increase()`, as Grafana's
/// `$__rate_interval` (at least 4 scrape intervals) would.
const GRAFANA_INTERVALS: [(&str, &str); 3] = [
    ("$__rate_interval", "10s"),
    ("$__interval", "10s"),
    ("$__range", "5m"),
];

/// Every PromQL query of deploy/monitoring/grafana-dashboard.json, as (where, query): each
/// panel target's `expr` (panels inside rows too) and each query variable's
/// `label_values(METRIC, LABEL)` as `count by (LABEL) (METRIC)`. Grafana's variables are
/// replaced as Grafana does with "All" selected (a variable's `allValue`) and the intervals by
/// [`GRAFANA_INTERVALS`]. Fails on a variable it cannot replace, on a panel with no query, or
/// on a query not sent to the `${datasource}` variable, so a new panel cannot slip past.
fn dashboard_queries() -> Vec<(String, String)> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring/grafana-dashboard.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let vars = dash["templating"]["list"].as_array().unwrap();
    let mut all_values: Vec<(String, String)> = Vec::new();
    let mut queries = Vec::new();
    for v in vars {
        let name = v["name"].as_str().unwrap();
        if v["type"] == "datasource" {
            assert_eq!(v["query"], "prometheus", "variable {name}");
            continue;
        }
        assert_eq!(
            v["type"], "query",
            "variable {name}: only query variables are checked"
        );
        assert_eq!(v["includeAll"], true, "variable {name} has an All value");
        let all = v["allValue"].as_str().unwrap().to_string();
        let def = v["definition"].as_str().unwrap();
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: {def} is not label_values(METRIC, LABEL)"));
        let (metric, label) = inner.rsplit_once(',').unwrap();
        queries.push((
            format!("variable {name}"),
            format!("count by ({}) ({})", label.trim(), metric.trim()),
        ));
        all_values.push((format!("${{{name}}}"), all.clone()));
        all_values.push((format!("${name}"), all));
    }
    // Longest names first, so `$instance` is not read as `$in` + `stance`.
    all_values.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    let mut panels: Vec<&serde_json::Value> = dash["panels"].as_array().unwrap().iter().collect();
    let mut i = 0;
    while i < panels.len() {
        if let Some(inner) = panels[i]["panels"].as_array() {
            panels.extend(inner.iter());
        }
        i += 1;
    }
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().unwrap();
        let targets = p["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for t in targets {
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "panel {title:?} queries the data source chosen in the variable"
            );
            let expr = t["expr"].as_str().unwrap();
            queries.push((
                format!("panel {title:?} query {}", t["refId"].as_str().unwrap()),
                expr.to_string(),
            ));
        }
    }
    for (_, q) in &mut queries {
        for (k, v) in GRAFANA_INTERVALS.iter().chain(
            all_values
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>()
                .iter(),
        ) {
            *q = q.replace(k, v);
        }
        assert!(!q.contains('$'), "a Grafana variable is left in {q}");
    }
    queries
}

/// Runs each dashboard query as an instant query (what a panel shows last): every one must
/// succeed and return at least one series. Lists all that do not, then fails.
async fn dashboard_queries_return_data(prom: &Server) {
    let queries = dashboard_queries();
    let mut empty = Vec::new();
    for (what, q) in &queries {
        let body = prom
            .get(&format!("/api/v1/query?query={}", urlencode(q)))
            .await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let n = v["data"]["result"].as_array().map_or(0, Vec::len);
        if v["status"] != "success" || n == 0 {
            empty.push(format!("{what}: {q}\n  -> {body}"));
        }
        eprintln!("dashboard: {n:>3} series  {what}");
    }
    assert!(
        empty.is_empty(),
        "{} of {} dashboard queries return no data:\n{}",
        empty.len(),
        queries.len(),
        empty.join("\n")
    );
    eprintln!("dashboard: all {} queries return data", queries.len());
}

/// Each `path: /...` of deploy/service/deployment.yaml (its probes) and servicemonitor.yaml (the
/// scrape) answers 200 on the running `rekey run` at `port`: the Deployment's probes and scrape
/// point at what rekey serves (the chart's probes are checked equal to these by
/// scripts/chart_tests/test_mode_run.py).
async fn deploy_service_paths_answer(port: u16) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/service");
    let mut paths = Vec::new();
    for f in ["deployment.yaml", "servicemonitor.yaml"] {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        paths.extend(
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("path: "))
                .map(str::to_string),
        );
    }
    assert_eq!(
        paths.len(),
        3,
        "{paths:?}: the liveness and readiness probes and the scrape"
    );
    for p in &paths {
        let r = rekey::http::client()
            .get(format!("http://127.0.0.1:{port}{p}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "GET {p} on rekey run");
    }
}
