//! Replays every fuzz seed and every kept crash input (fuzz/seeds/<target>/ and
//! fuzz/regressions/<target>/) through the same functions the fuzz targets call, on stable
//! Rust without a sanitizer, so a fixed crash stays fixed in the normal test run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

type Target = fn(&[u8]);

/// Each fuzz target (fuzz/fuzz_targets/<name>.rs) and the function it calls.
const TARGETS: &[(&str, Target)] = &[
    ("inventory", rekey::fuzzing::inventory),
    ("taegis", rekey::fuzzing::taegis),
    ("cisco", rekey::fuzzing::cisco),
    ("exec", rekey::fuzzing::exec_plugin),
];

/// Every file of `dir`, sorted (an absent directory has none).
fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every input of every target; returns the inputs that panicked.
fn replay(kind: &str) -> (usize, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind);
    let mut ran = 0;
    let mut failed = Vec::new();
    for (target, run) in TARGETS {
        for file in inputs(&root.join(target)) {
            let data = std::fs::read(&file).expect("readable input");
            ran += 1;
            if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
                failed.push(file.display().to_string());
            }
        }
    }
    (ran, failed)
}

#[test]
fn every_seed_decodes_without_a_panic_or_a_leaked_secret() {
    for (target, _) in TARGETS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target);
        assert!(
            !inputs(&dir).is_empty(),
            "fuzz target {target} has no seed inputs in {}",
            dir.display()
        );
    }
    let (ran, failed) = replay("seeds");
    assert!(
        failed.is_empty(),
        "{} of {ran} seeds failed: {failed:?}",
        failed.len()
    );
}

#[test]
fn every_crash_the_fuzzer_found_stays_fixed() {
    let (_, failed) = replay("regressions");
    assert!(failed.is_empty(), "regressions failed again: {failed:?}");
}
