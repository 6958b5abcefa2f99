//! The project venv's Python (scripts/setup-python.sh), for the checks in tests/python/ that
//! hold the emulator to the platforms' official client libraries.

use std::path::{Path, PathBuf};

/// The venv's `python`; fails the test (never skips it) when the venv is missing.
pub fn venv_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-python.sh first",
        python.display()
    );
    python
}

/// A command running tests/python/`script` with the venv's python, straight to 127.0.0.1
/// (every proxy variable removed), killed if the test drops it.
pub fn python_script(script: &str) -> tokio::process::Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = tokio::process::Command::new(venv_python());
    cmd.arg(root.join("tests/python").join(script))
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd
}
