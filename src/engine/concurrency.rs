//! `--concurrency auto`: how many slots are worked on at once, found while the run goes
//! (docs/src/scale.md, "Concurrency that finds the limit").
//!
//! Additive increase, multiplicative decrease, as TCP does with its window. The run is cut into
//! windows of about `current` slot completions (each slot in flight finished once, TCP's round
//! trip). At the end of each window, from what the platforms answered in it
//! (src/provider/load.rs) and how long its slots took:
//!
//! - any 429, 5xx or transport error, or a mean slot time above [`LATENCY_RISE`] × the lowest
//!   mean seen so far: halve (never below `min`), and leave slow start. The slot's whole time,
//!   not the platform's answer time alone: whatever saturates first (the platform, the backend,
//!   this machine's CPU), slots in flight beyond it only wait, and their time grows;
//! - requests mostly waiting for rekey's own rate limiter ([`Window::limiter_bound`]): hold, since
//!   more slots in flight would only queue at the limiter (the rate limit still applies: the
//!   controller never raises a rate, it only chooses how many slots wait on it);
//! - otherwise grow: double while in slow start (the start, until the first decrease), then +1
//!   (never above `max`).
//!
//! Slow start is TCP's too: from 8, growing by one per window would need thousands of slot
//! completions to reach 128, longer than most runs.

use crate::provider::load::Load;
use std::fmt;
use std::str::FromStr;

/// Where auto mode starts (then bounded by `concurrency_min` / `concurrency_max`).
pub const AUTO_START: usize = 8;
/// A window's mean answer time this many times the lowest seen counts as the platform slowing.
pub const LATENCY_RISE: f64 = 2.0;
/// Default bounds of auto mode.
pub const DEFAULT_MIN: usize = 1;
pub const DEFAULT_MAX: usize = 256;

/// `--concurrency N` or `--concurrency auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concurrency {
    Fixed(usize),
    Auto,
}

impl FromStr for Concurrency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(Concurrency::Auto);
        }
        match s.trim().parse::<usize>() {
            Ok(n) if (1..=100_000).contains(&n) => Ok(Concurrency::Fixed(n)),
            _ => Err(format!(
                "\"{s}\" is not a concurrency: give a number from 1 to 100000, or auto"
            )),
        }
    }
}

impl fmt::Display for Concurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Concurrency::Fixed(n) => write!(f, "{n}"),
            Concurrency::Auto => f.write_str("auto"),
        }
    }
}

/// What the platforms answered during one window, and how long its slots took.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    pub load: Load,
    pub slots: u64,
    pub slot_us: u64,
}

impl Window {
    fn mean_latency_us(&self) -> Option<f64> {
        (self.slots > 0 && self.load.requests > 0).then(|| self.slot_us as f64 / self.slots as f64)
    }

    /// Requests waited longer for rekey's rate limiter than for the platform's answer.
    pub fn limiter_bound(&self) -> bool {
        self.load.requests > 0 && self.load.wait_us > self.load.latency_us
    }
}

/// The controller: the number of slots in flight, and the state of the control law.
#[derive(Clone, Debug)]
pub struct Aimd {
    current: usize,
    min: usize,
    max: usize,
    slow_start: bool,
    lowest_latency_us: Option<f64>,
    completions: usize,
    window: Window,
    /// The lowest and highest `current` chosen, for the summary at the end.
    pub low: usize,
    pub high: usize,
}

impl Aimd {
    pub fn new(min: usize, max: usize) -> Aimd {
        let min = min.max(1);
        let max = max.max(min);
        let current = AUTO_START.clamp(min, max);
        Aimd {
            current,
            min,
            max,
            slow_start: true,
            lowest_latency_us: None,
            completions: 0,
            window: Window::default(),
            low: current,
            high: current,
        }
    }

    pub fn current(&self) -> usize {
        self.current
    }

    /// One slot finished after `took`; `load` is what the platforms answered since the
    /// previous call. Returns the new concurrency when it changed.
    pub fn completed(&mut self, load: Load, took: std::time::Duration) -> Option<usize> {
        self.completions += 1;
        self.window.load += load;
        self.window.slots += 1;
        self.window.slot_us += took.as_micros() as u64;
        if self.completions < self.current.max(4) {
            return None;
        }
        let window = std::mem::take(&mut self.window);
        self.completions = 0;
        self.decide(window)
    }

    /// The control law, at the end of a window.
    pub fn decide(&mut self, w: Window) -> Option<usize> {
        let before = self.current;
        let mean = w.mean_latency_us()?;
        let lowest = *self.lowest_latency_us.get_or_insert(mean);
        self.lowest_latency_us = Some(lowest.min(mean));
        let slowing = mean > LATENCY_RISE * lowest;
        if w.load.throttled > 0 || slowing {
            self.current = (self.current / 2).max(self.min);
            self.slow_start = false;
        } else if w.limiter_bound() {
            // The rate limit, not the platform, is what holds the run: hold.
        } else if self.slow_start {
            self.current = (self.current * 2).min(self.max);
        } else {
            self.current = (self.current + 1).min(self.max);
        }
        self.low = self.low.min(self.current);
        self.high = self.high.max(self.current);
        (self.current != before).then_some(self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `requests` answers in `latency_ms` each, `throttled` of them 429 or 5xx, each waiting
    /// `wait_ms` for the own limiter; slots of `latency_ms` x 4 each.
    fn window(requests: u64, latency_ms: u64, throttled: u64, wait_ms: u64) -> Window {
        Window {
            load: Load {
                requests,
                throttled,
                latency_us: requests * latency_ms * 1000,
                wait_us: requests * wait_ms * 1000,
            },
            slots: requests / 4,
            slot_us: requests / 4 * latency_ms * 4000,
        }
    }

    #[test]
    fn parses_a_number_or_auto() {
        assert_eq!("auto".parse(), Ok(Concurrency::Auto));
        assert_eq!(" AUTO ".parse(), Ok(Concurrency::Auto));
        assert_eq!("32".parse(), Ok(Concurrency::Fixed(32)));
        for bad in ["0", "-1", "x", "", "100001"] {
            assert!(bad.parse::<Concurrency>().is_err(), "{bad}");
        }
    }

    #[test]
    fn slow_start_doubles_until_the_first_decrease_then_grows_by_one() {
        let mut c = Aimd::new(1, 256);
        assert_eq!(c.current(), 8);
        assert_eq!(c.decide(window(40, 20, 0, 0)), Some(16));
        assert_eq!(c.decide(window(80, 20, 0, 0)), Some(32));
        assert_eq!(c.decide(window(80, 21, 2, 0)), Some(16), "a 429 halves");
        assert_eq!(c.decide(window(80, 20, 0, 0)), Some(17), "then +1 only");
        assert_eq!(c.decide(window(80, 20, 0, 0)), Some(18));
        assert_eq!((c.low, c.high), (8, 32));
    }

    #[test]
    fn rising_latency_halves_and_the_bounds_hold() {
        let mut c = Aimd::new(4, 20);
        assert_eq!(c.decide(window(10, 20, 0, 0)), Some(16));
        assert_eq!(c.decide(window(10, 20, 0, 0)), Some(20), "capped at max");
        assert_eq!(c.decide(window(10, 20, 0, 0)), None);
        assert_eq!(
            c.decide(window(10, 39, 0, 0)),
            None,
            "under 2x the lowest: fine"
        );
        assert_eq!(c.decide(window(10, 41, 0, 0)), Some(10), "over 2x: halve");
        assert_eq!(c.decide(window(10, 90, 0, 0)), Some(5));
        assert_eq!(c.decide(window(10, 90, 0, 0)), Some(4), "never below min");
        assert_eq!(c.decide(window(10, 90, 0, 0)), None);
    }

    #[test]
    fn waiting_on_the_own_rate_limit_holds() {
        let mut c = Aimd::new(1, 256);
        assert_eq!(c.decide(window(10, 20, 0, 50)), None);
        assert_eq!(c.current(), 8);
        assert_eq!(c.decide(window(0, 0, 0, 0)), None, "no answers: no change");
    }

    #[test]
    fn a_window_is_about_current_completions() {
        let mut c = Aimd::new(1, 256);
        let one = window(5, 20, 0, 0).load;
        let took = std::time::Duration::from_millis(80);
        for _ in 0..7 {
            assert_eq!(c.completed(one, took), None);
        }
        assert_eq!(c.completed(one, took), Some(16));
    }
}
