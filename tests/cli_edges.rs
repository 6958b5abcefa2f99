//! The command line at its edges, on the real binary: stdout closed early (`| head`) or full
//! (`> file` on a full disk), `rekey check` against providers that refuse connections, and the
//! cron macros of `rekey run --schedule`.

mod common;

use common::World;
use std::process::Stdio;
use std::time::Duration;

/// Runs the real binary in `w` with stdout going to `stdout`, stderr captured. `close_stdout`:
/// stdout is a pipe whose reading end is closed before rekey writes (a reader that went away).
async fn run_with_stdout(
    w: &World,
    args: &[&str],
    stdout: Stdio,
    close_stdout: bool,
) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rekey"));
    cmd.args(args)
        .current_dir(w.path())
        .env("REKEY_LOG_FORMAT", "human")
        .env("NO_COLOR", "1")
        .env_remove("REKEY_CRASH_AT")
        .env_remove("REKEY_TEST_CLOCK_OFFSET")
        .stdin(Stdio::null())
        .stdout(if close_stdout { Stdio::piped() } else { stdout })
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Dropped at once: rekey is still reading its inventory, so its first write meets EPIPE.
    drop(child.stdout.take());
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("rekey finished in time")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_goes_away_ends_no_command_with_a_panic() {
    let w = World::new(1).await;
    let names: Vec<String> = (0..200).map(|i| format!("app-{i:03}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    w.inventory(&common::plain_slots(&names));

    // `plan -o json | head -c 300` on 200 slots, and the table too: exit 0 as if read whole.
    for args in [
        &["plan", "-c", "inventory.toml", "--output", "json"][..],
        &["plan", "-c", "inventory.toml"][..],
        &["plan", "-c", "inventory.toml", "--detailed-exitcode"][..],
    ] {
        let (code, stderr) = run_with_stdout(&w, args, Stdio::null(), true).await;
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let want = if args.contains(&"--detailed-exitcode") {
            5
        } else {
            0
        };
        assert_eq!(
            code,
            Some(want),
            "{args:?}: the command's own exit code: {stderr}"
        );
    }

    // `apply | head`: the work is done, and the report to a closed reader is no failure.
    let (code, stderr) =
        run_with_stdout(&w, &["apply", "-c", "inventory.toml"], Stdio::null(), true).await;
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(w.records().await.len(), 200, "every slot was rotated");

    // `get | head -c 1`: exit 0, nothing else said.
    let (code, stderr) = run_with_stdout(
        &w,
        &["get", "-c", "inventory.toml", "app-007"],
        Stdio::null(),
        true,
    )
    .await;
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(code, Some(0), "{stderr}");
}

/// A JSON report is serialized straight to stdout, in pieces (src/app/output.rs): a reader that
/// leaves after its first bytes, or a disk that fills after the first piece, is handled as when
/// the report was written at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_report_cut_off_midway_is_handled_like_one_written_at_once() {
    use tokio::io::AsyncReadExt;
    let w = World::new(1).await;
    // About 200 KB of JSON: several of the writer's 64 KiB pieces.
    let names: Vec<String> = (0..2000).map(|i| format!("app-{i:04}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    w.inventory(&common::plain_slots(&names));
    let args = ["plan", "-c", "inventory.toml", "--output", "json"];

    // `| head -c 300`: the reader takes the first bytes and goes; exit 0 as if read whole.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rekey"))
        .args(args)
        .current_dir(w.path())
        .env("REKEY_LOG_FORMAT", "human")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = vec![0u8; 300];
    stdout.read_exact(&mut first).await.unwrap();
    assert!(
        first.starts_with(b"{\"format_version\":1,\"command\":\"plan\""),
        "{}",
        String::from_utf8_lossy(&first)
    );
    drop(stdout);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("rekey finished in time")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    // `> /dev/full`: exit 1, and it says the output is incomplete.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let (code, stderr) = run_with_stdout(&w, &args, Stdio::from(full), false).await;
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(code, Some(1), "a documented failure, not 0: {stderr}");
    assert!(
        stderr.contains("cannot write to stdout: No space left on device")
            && stderr.contains("the output is incomplete"),
        "{stderr}"
    );
}

/// `rekey plan 2>&1 | head -1` with a bad inventory, or any stderr whose reader went away: the
/// final error cannot be told, and the exit code still says what happened (it was 101, a
/// panic in `eprintln!`).
#[test]
fn an_error_told_to_a_stderr_nobody_reads_still_ends_with_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[[slots]]\nname = 7\n").unwrap();
    for (args, want) in [
        (&["plan", "-c", "missing.toml"][..], 2),
        (&["plan", "-c", "bad.toml"][..], 2),
        (&["plan", "-c", "bad.toml", "--no-such-flag"][..], 2),
    ] {
        // The reading end is closed before rekey starts: its first write to stderr is EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_rekey"))
            .args(args)
            .current_dir(dir.path())
            .env("REKEY_LOG_FORMAT", "human")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(writer))
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(want), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn get_into_a_full_disk_fails_and_does_not_quote_the_secret() {
    let w = World::new(1).await;
    w.inventory("[[slots]]\nname = \"app\"\nprovider = \"p0\"\n");
    w.apply(&[]).await.expect_code(0);
    let cur = w.record("app").await.unwrap().current.unwrap();
    for format in ["env", "json"] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let (code, stderr) = run_with_stdout(
            &w,
            &["get", "-c", "inventory.toml", "app", "--format", format],
            Stdio::from(full),
            false,
        )
        .await;
        assert!(!stderr.contains("panicked"), "{format}: {stderr}");
        assert_eq!(
            code,
            Some(1),
            "{format}: a documented failure, not 0: {stderr}"
        );
        assert!(
            stderr.contains("cannot write to stdout") && stderr.contains("No space left on device"),
            "{format}: says what failed: {stderr}"
        );
        assert!(stderr.contains("the output is incomplete"), "{stderr}");
        assert!(
            !stderr.contains(cur.secret.expose()),
            "{format}: the secret is not quoted"
        );
        assert!(
            !stderr.contains(&cur.client_id),
            "{format}: nor the client id"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_every_provider_it_cannot_reach() {
    let w = World::new(1).await;
    // A loopback port nobody listens on: each connection is refused at once.
    let refused = format!("http://127.0.0.1:{}", common::servers::free_port());
    let mut text = String::from(
        "[backends.local]\ntype = \"file\"\npath = \"store\"\nidentity = { file = \"rekey.key\" }\n",
    );
    let names: Vec<String> = (0..20).map(|i| format!("down-{i:02}")).collect();
    for name in &names {
        text.push_str(&format!(
            "\n[providers.{name}]\ntype = \"taegis\"\nurl = \"{refused}\"\ntenant = \"1\"\ntimeout = \"5s\"\n\
             bootstrap = {{ client_id = {{ file = \"boot-0.id\" }}, client_secret = {{ file = \"boot-0.secret\" }} }}\n"
        ));
    }
    text.push_str("\n[[slots]]\nname = \"app\"\nprovider = \"down-00\"\n");
    w.inventory_raw(&text);

    // A hang guard, not a benchmark: the rotation's retries (about 40 s a provider, one after
    // the other) would take many minutes here.
    let run = tokio::time::timeout(
        Duration::from_secs(60),
        w.rekey(&["check", "-c", "inventory.toml", "--output", "json"]),
    )
    .await
    .expect("rekey check answered within 60 s");
    run.expect_code(4);
    let rows = run.rows();
    for name in &names {
        let row = rows
            .iter()
            .find(|r| r["kind"] == "provider" && r["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} is in the report: {}", run.stdout));
        assert_eq!(row["ok"], false, "{row}");
        assert_eq!(row["error_kind"], "unavailable", "{row}");
    }
    let backend = rows.iter().find(|r| r["kind"] == "backend").unwrap();
    assert_eq!(backend["ok"], true, "the file backend is fine: {backend}");

    // The table names each of them too.
    let table = w.rekey(&["check", "-c", "inventory.toml"]).await;
    table.expect_code(4);
    for name in &names {
        assert!(
            table
                .stdout
                .lines()
                .any(|l| l.contains(name.as_str()) && l.contains("FAILED")),
            "{name}: {}",
            table.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_reads_the_cron_macros_a_cronjob_reads() {
    let w = World::new(1).await;
    w.inventory("[[slots]]\nname = \"app\"\nprovider = \"p0\"\n");
    for schedule in [
        "@midnight",
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
    ] {
        let run = w
            .rekey(&[
                "run",
                "-c",
                "inventory.toml",
                "--once",
                "--schedule",
                schedule,
            ])
            .await;
        run.expect_code(0);
    }
    let bad = w
        .rekey(&[
            "run",
            "-c",
            "inventory.toml",
            "--once",
            "--schedule",
            "@reboot",
        ])
        .await;
    bad.expect_code(2);
    assert!(
        bad.stderr.contains("@reboot") && bad.stderr.contains("@midnight"),
        "{}",
        bad.stderr
    );
}
