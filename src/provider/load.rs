//! What the platforms' answers say about load, for `--concurrency auto` (src/engine/concurrency.rs):
//! per API request, how long the platform took to answer (the time waiting for rekey's own rate
//! limiter left out), how long it waited for that limiter, and whether the answer asked rekey to
//! slow down (429, 5xx). Counted process-wide, since every provider shares the machine and the
//! concurrency is the run's; the engine reads differences between two [`snapshot`]s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static REQUESTS: AtomicU64 = AtomicU64::new(0);
static THROTTLED: AtomicU64 = AtomicU64::new(0);
static LATENCY_US: AtomicU64 = AtomicU64::new(0);
static WAIT_US: AtomicU64 = AtomicU64::new(0);

/// The counters at one moment; subtract two to get what happened between them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// API requests answered (any status, transport errors included).
    pub requests: u64,
    /// Of those, answers that ask for less: 429, 5xx, and transport errors.
    pub throttled: u64,
    /// Sum of the platforms' answer times, in microseconds.
    pub latency_us: u64,
    /// Sum of the waits for rekey's own rate limiters before sending, in microseconds.
    pub wait_us: u64,
}

impl std::ops::Sub for Load {
    type Output = Load;
    fn sub(self, earlier: Load) -> Load {
        Load {
            requests: self.requests.saturating_sub(earlier.requests),
            throttled: self.throttled.saturating_sub(earlier.throttled),
            latency_us: self.latency_us.saturating_sub(earlier.latency_us),
            wait_us: self.wait_us.saturating_sub(earlier.wait_us),
        }
    }
}

impl std::ops::AddAssign for Load {
    fn add_assign(&mut self, other: Load) {
        self.requests += other.requests;
        self.throttled += other.throttled;
        self.latency_us += other.latency_us;
        self.wait_us += other.wait_us;
    }
}

/// Records one answered request.
pub fn record(latency: Duration, waited: Duration, throttled: bool) {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    if throttled {
        THROTTLED.fetch_add(1, Ordering::Relaxed);
    }
    LATENCY_US.fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    WAIT_US.fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
}

pub fn snapshot() -> Load {
    Load {
        requests: REQUESTS.load(Ordering::Relaxed),
        throttled: THROTTLED.load(Ordering::Relaxed),
        latency_us: LATENCY_US.load(Ordering::Relaxed),
        wait_us: WAIT_US.load(Ordering::Relaxed),
    }
}
