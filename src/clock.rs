//! Time, injected: grace periods and max ages are decided against a [`Clock`], so tests move
//! time forward instead of waiting for it.

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock shifted by a fixed offset from real time; tests use it (through the `test-hooks`
/// feature's `REKEY_TEST_CLOCK_OFFSET`) to stand "three days later" without waiting.
pub struct OffsetClock(pub chrono::Duration);

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.0
    }
}

/// The clock a command should use: the system clock, unless the test hooks are compiled in and
/// `REKEY_TEST_CLOCK_OFFSET` (a duration such as `3d` or `-1h`) asks for a shifted one.
pub fn from_env() -> Box<dyn Clock> {
    #[cfg(feature = "test-hooks")]
    if let Ok(v) = std::env::var("REKEY_TEST_CLOCK_OFFSET") {
        let (neg, v) = match v.strip_prefix('-') {
            Some(rest) => (true, rest.to_string()),
            None => (false, v),
        };
        if let Ok(d) = humantime::parse_duration(&v) {
            let d = chrono::Duration::from_std(d).unwrap_or_default();
            return Box::new(OffsetClock(if neg { -d } else { d }));
        }
    }
    Box::new(SystemClock)
}
