//! The fault campaign's short form (RELIABILITY.md): `scripts/fault_campaign.py --short` with
//! this build's `rekey` binary, against the real servers the script starts (the emulator with a
//! state file, OpenBao with persistent storage, moto). Every scenario (SIGKILLs at random
//! moments, backend and emulator restarts, lost answers, concurrent applies, slow providers)
//! ends with an independent check through the standard clients; the campaign must report zero
//! failures. A missing venv or `age` CLI fails the test (the script exits non-zero).

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
}
