//! `[backends.NAME]` with `type = "exec"`: the settings and their parser.

use crate::backend::common::check_items;
use crate::check::Checker;
use crate::check::join;
use crate::check::tree::Table;
use std::path::PathBuf;
use std::time::Duration;

/// `[backends.NAME]` with `type = "exec"`.
#[derive(Clone, Debug)]
pub struct ExecBackendConfig {
    pub name: String,
    /// The program and its arguments; a relative program path is relative to the inventory.
    pub command: Vec<String>,
    /// Per-call time limit; the process is killed when it is exceeded (default 30s).
    pub timeout: Duration,
    /// Environment variables passed through to the plugin (everything else is cleared).
    pub pass_env: Vec<String>,
}

impl ExecBackendConfig {
    pub(crate) fn placeholder(name: &str) -> Self {
        ExecBackendConfig {
            name: name.to_string(),
            command: Vec::new(),
            timeout: Duration::from_secs(30),
            pass_env: Vec::new(),
        }
    }
}

/// Keys of an exec backend table.
const KEYS: &[&str] = &["type", "command", "timeout", "pass_env"];

/// Parses `[backends.NAME]` with `type = "exec"`, recording every problem in `c`.
pub(crate) fn parse_config(
    c: &mut Checker,
    name: &str,
    t: &Table,
    path: &str,
) -> ExecBackendConfig {
    let mut cfg = ExecBackendConfig::placeholder(name);
    c.known_keys(t, path, KEYS);
    match c.strings(t, path, "command") {
        Some((argv, line)) if argv.is_empty() || argv[0].trim().is_empty() => c.err(
            line,
            join(path, "command"),
            "must name a program: command = [\"/path/to/plugin\", \"arg\"]",
        ),
        Some((mut argv, _)) => {
            let program = PathBuf::from(&argv[0]);
            if program.components().count() > 1 && program.is_relative() {
                argv[0] = c.base_dir.join(program).to_string_lossy().into_owned();
            }
            cfg.command = argv;
        }
        None if t.get("command").is_none() => c.missing(
            t,
            path,
            "command",
            " (the plugin program and its arguments, e.g. command = [\"./store-plugin\"])",
        ),
        None => {}
    }
    if let Some((d, _)) = c.duration(t, path, "timeout", false) {
        cfg.timeout = d;
    }
    if let Some((names, _)) = c.strings(t, path, "pass_env") {
        check_items(
            c,
            t,
            path,
            "pass_env",
            &names,
            crate::check::is_env_name,
            |_| "not an environment variable name".to_string(),
        );
        cfg.pass_env = names;
    }
    cfg
}
