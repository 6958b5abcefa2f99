//! Test-only crash points: with the `test-hooks` feature, `REKEY_CRASH_AT=<point>` makes the
//! process abort (like SIGKILL: no unwinding, no cleanup) when it reaches that named step of the
//! rotation protocol. Without the feature this compiles to nothing.
//!
//! `REKEY_STOP_AT=<point>` (same feature) makes the process stop itself with SIGSTOP at a named
//! fence (see [`stop_point`]), as a host paused by a hypervisor or a debugger would: a test then
//! lets another run take the slot over and resumes this one with SIGCONT.

/// Every named step of the protocol, in the order a rotation passes them. Tests iterate this.
pub const POINTS: &[&str] = &[
    "after-lease",
    "after-op-recorded",
    "after-provider-create",
    "after-pending-written",
    "after-verify",
    "after-promote",
    "after-old-deleted",
    "after-provider-rotate",
    "after-retire-delete",
    "after-mirror-write",
];

/// Test-only: with the `test-hooks` feature, `REKEY_PANIC_AT=<slot>` makes the work on that slot
/// panic right after its operation is recorded (with its lease held), a stand-in for a bug, so
/// tests can show that a panic fails only its slot and releases the lease. Without the feature
/// this compiles to nothing.
#[inline]
pub fn panic_point(slot: &str) {
    #[cfg(feature = "test-hooks")]
    if std::env::var("REKEY_PANIC_AT").is_ok_and(|want| want == slot) {
        panic!("test panic point reached for slot {slot}");
    }
    let _ = slot;
}

/// Crash points inside a backend's writes or only passed with some backends, each covered by
/// that backend's crash tests (tests/crash.rs checks every name is used by one of them).
pub const BACKEND_POINTS: &[&str] = &[
    // Engine, backends whose promotion is not one atomic write (vault, aws, exec): the
    // `promoting` phase is recorded, no consumer-visible write has happened yet.
    "after-promoting-recorded",
    // vault: the consumer entry shows the new pair, the state entry is not written yet.
    "vault-after-consumer-write",
    // aws: AWSCURRENT moved onto the new pair, the record is not committed yet.
    "aws-after-current-view",
    "aws-after-record-put",
    "aws-after-record-commit",
];

/// Names of the fences before provider mutations, for `REKEY_STOP_AT`.
pub const STOP_POINTS: &[&str] = &[
    "before-provider-create",
    "before-provider-rotate",
    "before-provider-delete",
];

/// With `test-hooks` and `REKEY_STOP_AT=<name>`: the process sends itself SIGSTOP here (once)
/// and carries on when it gets SIGCONT.
#[inline]
pub fn stop_point(name: &'static str) {
    #[cfg(feature = "test-hooks")]
    if std::env::var("REKEY_STOP_AT").is_ok_and(|want| want == name) {
        use std::sync::atomic::{AtomicBool, Ordering};
        static DONE: AtomicBool = AtomicBool::new(false);
        if !DONE.swap(true, Ordering::SeqCst) {
            crate::errln!("rekey: test stop point reached: {name}");
            // SAFETY: raise only sends a signal to this process.
            unsafe {
                libc::raise(libc::SIGSTOP);
            }
        }
    }
    let _ = name;
}

#[inline]
pub fn point(name: &'static str) {
    #[cfg(feature = "test-hooks")]
    if let Ok(want) = std::env::var("REKEY_CRASH_AT") {
        // `name`, or `name#N`: the N-th time this process reaches the point (a point such as
        // `aws-after-record-commit` is passed by every write of a rotation).
        let hit = match want.split_once('#') {
            None => want == name,
            Some((point, n)) if point == name => {
                use std::sync::atomic::{AtomicU32, Ordering};
                static SEEN: AtomicU32 = AtomicU32::new(0);
                let seen = SEEN.fetch_add(1, Ordering::SeqCst) + 1;
                n.parse::<u32>().is_ok_and(|n| n == seen)
            }
            Some(_) => false,
        };
        if hit {
            crate::errln!("rekey: test crash point reached: {name}");
            std::process::abort();
        }
    }
    let _ = name;
}
