//! `--concurrency auto`: how many slots are worked on at once, found while the run goes
//! (docs/src/scale.md, "Concurrency that finds the limit").
//!
//! Additive increase, multiplicative decrease, as TCP does with its window. The run is cut into
//! windows of about `current` slot completions (each slot in flight finished once, TCP's round
//! trip). At the end of each window, from what the platforms answered in it
//! (src/provider/load.rs) and how long its slots took:
//!
//! - any 429, 5xx or transport error: halve (never below `min`), and leave slow start;
//! - requests mostly waiting for rekey's own rate limiter ([`Window::limiter_bound`]): hold, since
//!   more slots in flight would only queue at the limiter (the rate limit still applies: the
//!   controller never raises a rate, it only chooses how many slots wait on it);
//! - a mean slot time within [`LATENCY_RISE`] x the lowest seen: grow, doubling while in slow
//!   start (until the first decrease), then +1 (never above `max`);
//! - slower than that, slots queue somewhere (the platform, the backend, this machine's CPU).
//!   By Little's law the throughput is `current / mean slot time`:
//!   - more than [`RATE_GAIN`] above the best seen: what saturates still gives more for more in
//!     flight (a backend that groups its writes, CPU left on this machine): grow;
//!   - otherwise decrease, in proportion to the rise: to `current x LATENCY_RISE x lowest /
//!     mean`, the number in flight at which slots would take `LATENCY_RISE` x the lowest at
//!     this throughput. That is twice the pipe's own depth (throughput x lowest slot time), the
//!     number BBR keeps in flight: enough that nothing waits for a slot to start, not so many
//!     that most of them queue.
//!
//! The slot's whole time is used, not the platform's answer time alone: whatever saturates
//! first, slots in flight beyond it only wait, and their time grows. The throughput comes from
//! the slot times, not from counting completions per second: slots started together finish
//! together, and a window that ends in such a burst would read as a leap in throughput.
//! Halving on a slot time above twice the lowest cut too deep: the run spent most of its time
//! growing back (docs/src/scale.md, "Measured").
//!
//! A window counts only slots started since the last change, as TCP judges a window by the
//! segments sent under it: a slot started under the previous number ran with that many beside
//! it, and its time says nothing about the new one. Without that, the slots still in flight
//! after a decrease read as a further rise and cut it again, down to `min`.
//!
//! Slow start is TCP's too: from 8, growing by one per window would need thousands of slot
//! completions to reach 128, longer than most runs.

use crate::provider::load::Load;
use std::fmt;
use std::str::FromStr;
use std::time::Instant;

/// Where auto mode starts (then bounded by `concurrency_min` / `concurrency_max`).
pub const AUTO_START: usize = 8;
/// A window's mean slot time above this many times the lowest seen means slots queue somewhere.
pub const LATENCY_RISE: f64 = 2.0;
/// Throughput this much above the best seen: more in flight still pays, even with slower slots.
pub const RATE_GAIN: f64 = 0.10;
/// The fewest completions a window has, so that its mean slot time means something.
const MIN_WINDOW: usize = 8;
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
    /// The highest throughput of any window (slots per second, by Little's law).
    best_rate: f64,
    completions: usize,
    window: Window,
    /// When `current` last changed: slots started before it are left out of the windows.
    changed_at: Option<Instant>,
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
            best_rate: 0.0,
            completions: 0,
            window: Window::default(),
            changed_at: None,
            low: current,
            high: current,
        }
    }

    pub fn current(&self) -> usize {
        self.current
    }

    /// One slot, started at `started`, finished at `now`; `load` is what the platforms answered
    /// since the previous call. Returns the new concurrency when it changed.
    pub fn completed(&mut self, load: Load, started: Instant, now: Instant) -> Option<usize> {
        if self.changed_at.is_some_and(|changed| started < changed) {
            return None;
        }
        self.completions += 1;
        self.window.load += load;
        self.window.slots += 1;
        self.window.slot_us += now.saturating_duration_since(started).as_micros() as u64;
        if self.completions < self.current.max(MIN_WINDOW) {
            return None;
        }
        let window = std::mem::take(&mut self.window);
        self.completions = 0;
        let changed = self.decide(window);
        if changed.is_some() {
            self.changed_at = Some(now);
        }
        changed
    }

    /// The control law, at the end of a window.
    pub fn decide(&mut self, w: Window) -> Option<usize> {
        let before = self.current;
        let mean = w.mean_latency_us()?;
        let lowest = self.lowest_latency_us.unwrap_or(mean).min(mean);
        self.lowest_latency_us = Some(lowest);
        // Little's law: slots in flight = throughput x slot time.
        let rate = self.current as f64 / (mean / 1e6);
        let best = self.best_rate;
        self.best_rate = best.max(rate);
        if w.load.throttled > 0 {
            self.current = (self.current / 2).max(self.min);
            self.slow_start = false;
        } else if w.limiter_bound() {
            // The rate limit, not the platform, is what holds the run: hold.
        } else if mean <= LATENCY_RISE * lowest || rate > best * (1.0 + RATE_GAIN) {
            self.current = if self.slow_start {
                self.current * 2
            } else {
                self.current + 1
            }
            .min(self.max);
        } else {
            let target = self.current as f64 * LATENCY_RISE * lowest / mean;
            self.current = (target.floor() as usize).clamp(self.min, self.current);
            self.slow_start = false;
        }
        self.low = self.low.min(self.current);
        self.high = self.high.max(self.current);
        (self.current != before).then_some(self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
    fn slower_slots_are_judged_by_the_throughput_they_buy() {
        let mut c = Aimd::new(4, 256);
        // 8 in flight, 80 ms a slot: the lowest, 100 slots/s.
        assert_eq!(c.decide(window(40, 20, 0, 0)), Some(16));
        assert_eq!(
            c.decide(window(40, 39, 0, 0)),
            Some(32),
            "156 ms: under 2x the lowest, grow"
        );
        assert_eq!(
            c.decide(window(40, 30, 0, 0)),
            Some(64),
            "32 at 120 ms: 267/s"
        );
        assert_eq!(
            c.decide(window(40, 45, 0, 0)),
            Some(128),
            "64 at 180 ms: over 2x the lowest, but 356/s, a third more: still worth it"
        );
        assert_eq!(
            c.decide(window(40, 100, 0, 0)),
            Some(51),
            "128 at 400 ms, 320/s, no gain: down to where slots would take 160 ms, 128 x 160/400"
        );
        assert_eq!(
            c.decide(window(40, 50, 0, 0)),
            Some(40),
            "51 at 200 ms: 51 x 160/200, out of slow start"
        );
        assert_eq!(c.decide(window(40, 30, 0, 0)), Some(41), "healthy: +1");
        assert_eq!((c.low, c.high), (8, 128));
    }

    #[test]
    fn the_bounds_hold() {
        let mut c = Aimd::new(4, 20);
        assert_eq!(c.decide(window(10, 20, 0, 0)), Some(16));
        assert_eq!(c.decide(window(10, 20, 0, 0)), Some(20), "capped at max");
        assert_eq!(c.decide(window(10, 20, 0, 0)), None);
        for want in [Some(10), Some(5), Some(4), None] {
            assert_eq!(
                c.decide(window(10, 20, 1, 0)),
                want,
                "halved, never below min"
            );
        }
        let mut c = Aimd::new(4, 256);
        assert_eq!(c.decide(window(40, 20, 0, 0)), Some(16));
        assert_eq!(
            c.decide(window(40, 200, 0, 0)),
            Some(4),
            "10x slower for less: 16 x 160/800 is 3, never below min"
        );
        assert_eq!(c.decide(window(40, 200, 0, 0)), None);
    }

    #[test]
    fn waiting_on_the_own_rate_limit_holds() {
        let mut c = Aimd::new(1, 256);
        assert_eq!(c.decide(window(10, 20, 0, 50)), None);
        assert_eq!(c.current(), 8);
        assert_eq!(c.decide(window(0, 0, 0, 0)), None, "no answers: no change");
    }

    #[test]
    fn a_window_is_about_current_completions_started_since_the_last_change() {
        let mut c = Aimd::new(1, 256);
        let one = window(5, 20, 0, 0).load;
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        for _ in 0..7 {
            assert_eq!(c.completed(one, t0, ms(80)), None);
        }
        assert_eq!(c.completed(one, t0, ms(80)), Some(16));
        // Slots started before the change, however slow, are not the new window's.
        for _ in 0..40 {
            assert_eq!(c.completed(one, t0, ms(2000)), None);
        }
        for _ in 0..15 {
            assert_eq!(c.completed(one, ms(100), ms(180)), None);
        }
        assert_eq!(c.completed(one, ms(100), ms(180)), Some(32));
    }
}
