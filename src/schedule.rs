//! `rekey run`'s schedule: a cron expression (5 fields, 6 with seconds first, or one of the
//! macros a Kubernetes CronJob reads: `@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`,
//! `@yearly`, `@annually`, see [`MACROS`]) evaluated in
//! an explicit time zone (UTC by default), plus a random delay (jitter) to spread load when many
//! instances share a schedule. Each cycle is an `apply`; the per-slot max age decides what is
//! rotated, so a frequent schedule only costs reads.

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The default: every hour, on the hour (UTC).
pub const DEFAULT_SCHEDULE: &str = "0 * * * *";

/// The cron macros, as a CronJob (and Vixie cron) read them, with the 5 fields each stands for,
/// so that the chart's `schedule` means the same in mode cronjob and mode run.
pub const MACROS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// The 5 fields `expr` stands for when it is a macro (case and surrounding blanks aside).
fn expand_macro(expr: &str) -> Result<Option<&'static str>> {
    let word = expr.trim();
    if !word.starts_with('@') {
        return Ok(None);
    }
    match MACROS.iter().find(|(m, _)| m.eq_ignore_ascii_case(word)) {
        Some((_, fields)) => Ok(Some(fields)),
        None => Err(Error::config(format!(
            "schedule \"{expr}\": not a cron macro rekey reads (those are {}; `@reboot` has no \
             meaning for a scheduler that is already running)",
            MACROS
                .iter()
                .map(|(m, _)| *m)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

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
        // read it. A macro is read as its 5 fields; `expr` stays as given (logs show it).
        let fields = expand_macro(expr)?.unwrap_or(expr);
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .sloppy_ranges(true)
            .build()
            .parse(fields)
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

    #[test]
    fn the_cron_macros_are_their_five_fields() {
        // Monday 2026-01-05 10:17:30 UTC.
        let t: DateTime<Utc> = "2026-01-05T10:17:30Z".parse().unwrap();
        let next = |expr: &str| {
            Schedule::parse(expr, "UTC", Duration::ZERO)
                .unwrap_or_else(|e| panic!("{expr}: {e}"))
                .next_after(t)
                .unwrap()
                .to_rfc3339()
        };
        assert_eq!(next("@hourly"), "2026-01-05T11:00:00+00:00");
        assert_eq!(next("@daily"), "2026-01-06T00:00:00+00:00");
        assert_eq!(next("@midnight"), "2026-01-06T00:00:00+00:00");
        assert_eq!(next(" @Midnight "), "2026-01-06T00:00:00+00:00");
        assert_eq!(next("@weekly"), "2026-01-11T00:00:00+00:00");
        assert_eq!(next("@monthly"), "2026-02-01T00:00:00+00:00");
        assert_eq!(next("@yearly"), "2027-01-01T00:00:00+00:00");
        assert_eq!(next("@annually"), "2027-01-01T00:00:00+00:00");
        // In the schedule's time zone, like any expression: midnight in Berlin is 23:00 UTC.
        let berlin = Schedule::parse("@midnight", "Europe/Berlin", Duration::ZERO).unwrap();
        assert_eq!(
            berlin.next_after(t).unwrap().to_rfc3339(),
            "2026-01-05T23:00:00+00:00"
        );
        assert_eq!(berlin.expr, "@midnight", "logs show the schedule as given");
        for bad in ["@reboot", "@fortnightly", "@"] {
            let e = Schedule::parse(bad, "UTC", Duration::ZERO).unwrap_err();
            assert!(e.to_string().contains("@midnight"), "{bad}: {e}");
        }
    }
}
