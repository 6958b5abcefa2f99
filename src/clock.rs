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

/// How long ago the kernel started this process: on Linux, `/proc/self/stat`'s start time
/// against `/proc/uptime`; zero where that cannot be read. A run counts as started when its
/// process was, not when it got round to building its engine: under load, runs launched
/// together can reach that point hundreds of milliseconds apart, and `--force` must not rotate
/// what a run launched beside it has just issued (found by the fault campaign).
pub fn process_age() -> std::time::Duration {
    process_age_linux().unwrap_or_default()
}

#[cfg(target_os = "linux")]
fn process_age_linux() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces; field 22 is the start
    // time in clock ticks since boot, the 20th field after the name.
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let start_ticks: f64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks_per_sec <= 0 {
        return None;
    }
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let age = uptime - start_ticks / ticks_per_sec as f64;
    (age.is_finite() && age >= 0.0).then(|| std::time::Duration::from_secs_f64(age))
}

#[cfg(not(target_os = "linux"))]
fn process_age_linux() -> Option<std::time::Duration> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_started_a_moment_ago() {
        let age = super::process_age();
        // A test process is seconds old, never days; on Linux it is read, elsewhere zero.
        assert!(age < std::time::Duration::from_secs(3600), "{age:?}");
    }
}
