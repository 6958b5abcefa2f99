//! Process hardening applied by `main` before anything reads a secret.
//!
//! - **No core dumps.** A crash (or `REKEY_CRASH_AT`'s abort) must not write the process memory,
//!   secrets included, to disk. `RLIMIT_CORE` is set to 0 (soft and hard, so nothing in the
//!   process can raise it again) and, on Linux, the process is made non-dumpable
//!   (`PR_SET_DUMPABLE` 0). The latter also keeps other processes of the same user from
//!   attaching with ptrace or reading `/proc/<pid>/mem` and `/proc/<pid>/environ`.
//! - **No root in the container.** The image sets `REKEY_IN_CONTAINER=1` and runs as user 65532;
//!   if something overrides that user with root, rekey refuses to start (exit 2) unless told
//!   with `--allow-root` or `REKEY_ALLOW_ROOT=1`. Outside a container, root is the operator's
//!   choice and is not refused.

use crate::error::{Error, Result};

/// What [`disable_core_dumps`] managed to set; each failure is logged, none is fatal (a
/// sandbox may forbid the calls, and refusing to rotate credentials over it helps no one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreDumps {
    pub rlimit_zero: bool,
    pub non_dumpable: bool,
}

/// Sets `RLIMIT_CORE` to 0 and, on Linux, `PR_SET_DUMPABLE` to 0.
pub fn disable_core_dumps() -> CoreDumps {
    let limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads a valid, initialised struct; no memory is shared.
    let rlimit_zero = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) } == 0;
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes plain integers and touches no memory of ours.
    let non_dumpable = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == 0;
    #[cfg(not(target_os = "linux"))]
    let non_dumpable = false;
    CoreDumps {
        rlimit_zero,
        non_dumpable,
    }
}

/// Logs what [`disable_core_dumps`] did (called once logging is set up).
pub fn log_core_dumps(c: CoreDumps) {
    if !c.rlimit_zero {
        tracing::warn!(
            "could not set RLIMIT_CORE to 0: a crash may write a core dump holding secrets"
        );
    }
    if cfg!(target_os = "linux") && !c.non_dumpable {
        tracing::warn!("could not make the process non-dumpable (PR_SET_DUMPABLE)");
    }
    tracing::debug!(
        rlimit_core_zero = c.rlimit_zero,
        non_dumpable = c.non_dumpable,
        "core dumps disabled"
    );
}

/// The effective user id. With the `test-hooks` feature, `REKEY_TEST_EUID` stands in for it,
/// so the root refusal can be tested without root.
fn effective_uid() -> u32 {
    #[cfg(feature = "test-hooks")]
    if let Some(uid) = std::env::var("REKEY_TEST_EUID")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return uid;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn env_flag(name: &str) -> bool {
    matches!(
        std::env::var(name).ok().as_deref().map(str::trim),
        Some("1" | "true" | "yes")
    )
}

/// Refuses to run as root inside the container image (`REKEY_IN_CONTAINER=1`) unless
/// `allow_root` (`--allow-root` / `REKEY_ALLOW_ROOT=1`). The error is a configuration error:
/// exit 2, and nothing has been read or changed yet.
pub fn check_not_root(allow_root: bool) -> Result<()> {
    if allow_root || !env_flag("REKEY_IN_CONTAINER") || effective_uid() != 0 {
        return Ok(());
    }
    Err(Error::config(
        "refusing to run as root in a container (REKEY_IN_CONTAINER=1): run as the image's \
         user 65532 (securityContext.runAsUser / runAsNonRoot), or pass --allow-root \
         (REKEY_ALLOW_ROOT=1) if you really mean it",
    ))
}

/// Refuses a file holding a secret (or rekey's state) that users other than its owner can read
/// or write: a configuration error naming the file, its mode and the fix.
pub fn check_private_file(path: &std::path::Path, what: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::config(format!("cannot read {what} {}", path.display())).with_source(e)
    })?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::config(format!(
            "{what} {p} is accessible to other users (mode {mode:03o}); run: chmod 600 {p}",
            p = path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_dumps_are_off_after_the_call() {
        let c = disable_core_dumps();
        assert!(c.rlimit_zero);
        let mut now = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        // SAFETY: getrlimit writes into a valid struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut now) }, 0);
        assert_eq!((now.rlim_cur, now.rlim_max), (0, 0));
        #[cfg(target_os = "linux")]
        {
            assert!(c.non_dumpable);
            // SAFETY: PR_GET_DUMPABLE takes no pointers.
            assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 0);
        }
    }
}
