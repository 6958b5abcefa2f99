//! Build script: records the git commit the binary was built from, for `rekey --version`
//! (README, *Building*). `REKEY_BUILD_COMMIT` in the build environment wins (a build without
//! `.git`, such as the Docker context); otherwise `git rev-parse`; otherwise `unknown`.
//! No dependencies: it only runs git.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=REKEY_BUILD_COMMIT");
    let commit = std::env::var("REKEY_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            // Rebuild when HEAD moves: the HEAD file and the ref it names (worktrees included).
            if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
                println!("cargo:rerun-if-changed={head}");
            }
            if let Some(name) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(r) = git(&["rev-parse", "--git-path", &name])
            {
                println!("cargo:rerun-if-changed={r}");
            }
            let c = git(&["rev-parse", "--short=12", "HEAD"])?;
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
            Some(if dirty { format!("{c}-dirty") } else { c })
        })
        .unwrap_or_else(|| "unknown".to_string());
    // Only printable ASCII goes into the binary.
    let commit: String = commit
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    println!("cargo:rustc-env=REKEY_GIT_COMMIT={commit}");
}
