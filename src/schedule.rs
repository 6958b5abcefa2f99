//! `rekey run`'s schedule: a cron expression (5 fields, or 6 with seconds first) evaluated in
//! an explicit time zone (UTC by default), plus a random delay (jitter) to spread load when many
//! instances share a schedule. Each cycle is an `apply`; the per-slot max age decides what is
//! rotated, so a frequent schedule only costs reads.

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The default: every hour, on the hour (UTC).
pub const DEFAULT_SCHEDULE: &str = "0 * * * *";

#[derive(Clone, Debug)]
pub struct Schedule {
    cron: croner::Cron,
    pub expr: String,
    pub tz: chrono_tz::Tz,
    pub jitter: Duration,
}

impl Schedule {
    pub fn parse(expr: &str, tz: &str, jitter: Duration) -> Result<Schedule> {
        // 5 fields, or 6 with seconds first; no year field; `0/10` is `0-59/10`, as croner 2
        // read it.
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .sloppy_ranges(true)
            .build()
            .parse(expr)
            .map_err(|e| Error::config(format!("schedule \"{expr}\": {e}")))?;
        let tz: chrono_tz::Tz = tz.parse().map_err(|_| {
            Error::config(format!(
                "time zone \"{tz}\" is not an IANA name (such as UTC or Europe/Berlin)"
            ))
        })?;
        Ok(Schedule {
            cron,
            expr: expr.to_string(),
            tz,
            jitter,
        })
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .map(|n| n.with_timezone(&Utc))
            .map_err(|e| Error::config(format!("schedule \"{}\": {e}", self.expr)))
    }

    /// A random delay in `0..=jitter`.
    pub fn jitter_delay(&self) -> Duration {
        if self.jitter.is_zero() {
            return Duration::ZERO;
        }
        use rand::Rng;
        let ms = rand::rng().random_range(0..=self.jitter.as_millis() as u64);
        Duration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_fields_in_a_time_zone() {
        let t: DateTime<Utc> = "2026-01-05T10:17:30Z".parse().unwrap();
        let hourly = Schedule::parse("0 * * * *", "UTC", Duration::ZERO).unwrap();
        assert_eq!(
            hourly.next_after(t).unwrap().to_rfc3339(),
            "2026-01-05T11:00:00+00:00"
        );
        let every_second = Schedule::parse("* * * * * *", "UTC", Duration::ZERO).unwrap();
        assert_eq!(
            every_second.next_after(t).unwrap().to_rfc3339(),
            "2026-01-05T10:17:31+00:00"
        );
        // 03:00 in Berlin (UTC+1 in January) is 02:00 UTC.
        let berlin = Schedule::parse("0 3 * * *", "Europe/Berlin", Duration::ZERO).unwrap();
        assert_eq!(
            berlin.next_after(t).unwrap().to_rfc3339(),
            "2026-01-06T02:00:00+00:00"
        );
        assert!(Schedule::parse("61 * * * *", "UTC", Duration::ZERO).is_err());
        assert!(Schedule::parse("0 * * * *", "Mars/Olympus", Duration::ZERO).is_err());
    }
}
