//! The fault campaign's short form (RELIABILITY.md): `scripts/fault_campaign.py --short` with
//! this build's `rekey` binary, against the real servers the script starts (the emulator with a
//! state file, OpenBao with persistent storage, moto). Every scenario (SIGKILLs at random
//! moments, backend and emulator restarts, lost answers, concurrent applies, slow providers)
//! ends with an independent check through the standard clients; the campaign must report zero
//! failures. A missing venv or `age` CLI fails the test (the script exits non-zero).

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The short form takes about a minute here; this is only a backstop against a hang.
const DEADLINE: Duration = Duration::from_secs(15 * 60);

#[test]
fn short_campaign_finds_no_failure() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "no Python venv at {}: run scripts/setup-python.sh",
        python.display()
    );
    let mut child = Command::new(&python)
        .arg(root.join("scripts/fault_campaign.py"))
        .args(["--short", "--binary", env!("CARGO_BIN_EXE_rekey")])
        .env_remove("REKEY_CRASH_AT")
        .env_remove("REKEY_TEST_CLOCK_OFFSET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the campaign");
    // Read both pipes on threads so neither can fill up and stall the campaign.
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill(); // by pid: the campaign's servers die with it (PDEATHSIG)
            let _ = child.wait();
            panic!("the campaign did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    // The campaign prints no secret (it scans its own log for every secret it saw).
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(status.success(), "the campaign failed ({status})");

    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("campaign: seed") && l.contains("failures:"))
        .expect("a summary line");
    assert!(summary.ends_with("failures: 0"), "{summary}");
    let figures: serde_json::Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("figures: "))
        .map(|j| serde_json::from_str(j).expect("figures are JSON"))
        .expect("a figures line");
    let n = |k: &str| figures[k].as_u64().unwrap_or_else(|| panic!("figure {k}"));
    assert_eq!(n("failures"), 0);
    // Every kind of scenario ran, in every world, and each ended in a check of every slot.
    assert!(n("kill_scenarios") >= 6, "{figures}");
    assert!(n("sigkills") >= 1, "{figures}");
    assert!(n("concurrent_trials") >= 3, "{figures}");
    assert!(n("lost_answer_scenarios") >= 6, "{figures}");
    assert!(n("emulator_restarts") >= 3, "{figures}");
    assert!(
        n("backend_restarts") + n("backend_freezes") >= 2,
        "{figures}"
    );
    assert!(n("slow_scenarios") >= 3, "{figures}");
    assert_eq!(n("slots_checked"), n("checks") * 6, "{figures}");
    assert!(n("faults_injected") > 0, "{figures}");
    // Usage-aware draining: consumers used some previous clients past their grace; none of
    // those was deleted, and the unused ones were.
    assert!(n("drain_trials") >= 3, "{figures}");
    assert!(n("drain_used") >= 3, "{figures}");
    assert_eq!(n("used_deleted"), 0, "{figures}");
    assert!(n("drain_unused_deleted") >= 1, "{figures}");
}

/// Found by the fault campaign: `apply` and `apply --force` launched together on a loaded
/// machine; the forced one reached its engine ~300 ms late, after the other had rotated an
/// in-place slot, took that fresh credential for one "issued before this run started" and
/// rotated it again. A run's start is now its process's start. Here the forced run is
/// launched first and held (SIGSTOP) before it even execs rekey, while a normal run rotates.
#[tokio::test(flavor = "multi_thread")]
async fn a_forced_run_never_rotates_what_a_run_launched_beside_it_issued() {
    let w = common::World::new(1).await;
    w.inventory("[[slots]]\nname = \"alpha\"\nprovider = \"p0\"\nstrategy = \"in-place\"\n");
    w.apply(&[]).await.expect_code(0);
    let later = [("REKEY_TEST_CLOCK_OFFSET", "31d")];

    // The shell stops itself, then (continued) execs rekey in the same process.
    let forced = Command::new("sh")
        .args(["-c", "kill -STOP $$; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_rekey"))
        .args(["apply", "-c", "inventory.toml", "--force"])
        .current_dir(w.path())
        .env("REKEY_TEST_CLOCK_OFFSET", "31d")
        .env_remove("REKEY_CRASH_AT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sh");
    let pid = forced.id();
    let stopped = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('T')))
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !stopped() {
        assert!(Instant::now() < deadline, "the forced run never stopped");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Meanwhile a normal run finds the slot due (31 days later) and rotates it: g1 -> g2.
    w.rekey_env(&["apply", "-c", "inventory.toml"], &later)
        .await
        .expect_code(0);
    assert_eq!(w.record("alpha").await.unwrap().generation, 2);

    unsafe {
        libc::kill(pid as i32, libc::SIGCONT);
    }
    let out = forced.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "forced run: {:?}\n{stderr}",
        out.status
    );
    w.assert_no_secrets(&format!("{}{stderr}", String::from_utf8_lossy(&out.stdout)));
    let rec = w.record("alpha").await.unwrap();
    assert_eq!(
        rec.generation, 2,
        "the forced run rotated a credential issued after it was launched"
    );
    w.assert_consistent(&["alpha"]).await;
}
