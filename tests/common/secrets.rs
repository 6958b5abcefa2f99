//! The leak scan's test side (scripts/test.sh runs the scan itself).
//!
//! - Every secret the tests make goes through `rekey::secret::Secret::generate` (or the
//!   emulator's Cisco passwords), which, in test builds, appends it to the file named by
//!   `REKEY_SECRET_REGISTRY`. [`register`] adds any other value a test wants checked.
//! - When `REKEY_TEST_LOG_DIR` is set, every `rekey` process a `World` starts runs at trace level
//!   (all crates) and its stdout and stderr are kept in `<dir>/<test binary>.<test name>.log`.
//!   `rekey get` is the one command whose stdout is meant to carry a secret; only its stderr is
//!   kept.
//!
//! Without the variables (a plain `cargo test`), nothing is recorded and processes log at debug.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Output;

/// Adds `value` to the registry the leak scan checks (a no-op outside scripts/test.sh).
pub fn register(value: &str) {
    rekey::secret::record_for_leak_scan(value);
}

fn log_dir() -> Option<PathBuf> {
    std::env::var_os("REKEY_TEST_LOG_DIR").map(PathBuf::from)
}

/// `RUST_LOG` for the `rekey` processes tests start: trace (every crate) under the leak scan,
/// so that nothing any layer logs escapes it; debug (rekey only) otherwise.
pub fn rust_log() -> &'static str {
    if log_dir().is_some() {
        "trace"
    } else {
        "rekey=debug"
    }
}

/// `<test binary>.<test name>`: libtest names each test's thread after the test.
fn label() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "test".into());
    // Cargo appends `-<hash>` to test binaries; the name is enough.
    let exe = exe
        .rsplit_once('-')
        .map(|(n, _)| n.to_string())
        .unwrap_or(exe);
    let test = std::thread::current()
        .name()
        .unwrap_or("main")
        .replace("::", ".");
    format!("{exe}.{test}")
}

/// Appends a `rekey` run's output to the test's log file (when the leak scan is on).
pub fn keep_output(args: &[&str], out: &Output) {
    let Some(dir) = log_dir() else { return };
    let path = dir.join(format!("{}.log", label()));
    let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
    else {
        return;
    };
    let mut text = format!("== rekey {}\n", args.join(" ")).into_bytes();
    if args.first() != Some(&"get") {
        text.extend_from_slice(&out.stdout);
    }
    text.extend_from_slice(&out.stderr);
    let _ = f.write_all(&text);
}
