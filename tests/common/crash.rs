//! The crash-window loop (tests/crash.rs and each backend's and platform's end-to-end file):
//! for each named crash point, a fresh world, a run that aborts right at that point
//! (`REKEY_CRASH_AT`, a test hook), then the normal runs that must heal it, and the checks.

use super::{CiscoWorld, Run, World};

/// The signal `std::process::abort` ends a process with.
pub const SIGABRT: i32 = 6;

/// A world the crash loop can drive: the [`World`] its runs go through.
pub trait HasWorld {
    fn world(&self) -> &World;
}

impl HasWorld for World {
    fn world(&self) -> &World {
        self
    }
}

/// A world with what the checks need beside it (a backend's target, a server).
impl<T> HasWorld for (World, T) {
    fn world(&self) -> &World {
        &self.0
    }
}

impl HasWorld for CiscoWorld {
    fn world(&self) -> &World {
        &self.w
    }
}

/// For each of `points`:
/// 1. `fresh(point)` makes a new world, brought to the state the crashing run starts from;
/// 2. `crash(&world, env)` runs rekey with `env` (`REKEY_CRASH_AT=point`; it adds its own
///    variables), which must abort at that very point (SIGABRT, and the point named on stderr);
/// 3. `heal(&world, point)` runs rekey normally, asserts the slot healed and the store and the
///    platform are consistent, and returns its runs.
///
/// No output of any of those runs may hold a secret the world knows. Returns how many points
/// were covered (all of them, or it panics).
pub async fn crash_windows<W: HasWorld>(
    points: &[&str],
    mut fresh: impl AsyncFnMut(&str) -> W,
    mut crash: impl AsyncFnMut(&W, &[(&str, &str)]) -> Run,
    mut heal: impl AsyncFnMut(&W, &str) -> Vec<Run>,
) -> usize {
    let mut covered = 0;
    for point in points {
        let world = fresh(point).await;
        let crashed = crash(&world, &[("REKEY_CRASH_AT", point)]).await;
        assert_aborted_at(&crashed, point);
        let healed = heal(&world, point).await;
        let w = world.world();
        w.assert_no_secrets(&crashed.all());
        for run in &healed {
            w.assert_no_secrets(&run.all());
        }
        covered += 1;
    }
    covered
}

/// Asserts `run` aborted at crash point `point` (`name` or `name#N`).
#[track_caller]
pub fn assert_aborted_at(run: &Run, point: &str) {
    let name = point.split('#').next().unwrap();
    assert!(
        run.signal == Some(SIGABRT)
            && run
                .stderr
                .contains(&format!("test crash point reached: {name}")),
        "{point} was not reached: exit {:?}, signal {:?}\n{}\n{}",
        run.code,
        run.signal,
        run.stdout,
        run.stderr
    );
}

/// `env` without `REKEY_CRASH_AT`: the environment of the runs after a crash.
pub fn without_crash<'a>(env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    env.iter()
        .filter(|(k, _)| *k != "REKEY_CRASH_AT")
        .copied()
        .collect()
}
