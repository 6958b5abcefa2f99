//! Test-only crash points: with the `test-hooks` feature, `REKEY_CRASH_AT=<point>` makes the
//! process abort (like SIGKILL: no unwinding, no cleanup) when it reaches that named step of the
//! rotation protocol. Without the feature this compiles to nothing.

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
            eprintln!("rekey: test crash point reached: {name}");
            std::process::abort();
        }
    }
    let _ = name;
}
