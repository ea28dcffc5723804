//! Cron schedules of `[[trigger.cron]]`: 5 fields (minute first) or 6 (seconds first), in an
//! IANA time zone. Parsing is croner's (POSIX/Vixie semantics, `L`, `W`, `#`, nicknames such as
//! `@daily`); time zones and daylight-saving shifts are chrono-tz's.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    /// Parses `expression` in `timezone`. The error is a sentence for the user.
    pub fn parse(expression: &str, timezone: &str) -> Result<Schedule, String> {
        let fields = expression.split_whitespace().count();
        if !expression.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "\"{expression}\" has {fields} field(s); use 5 (minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\") or 6 with seconds first (e.g. \"*/10 * * * * *\")"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| format!("\"{expression}\" is not a valid cron expression: {e}"))?;
        let tz: Tz = timezone.parse().map_err(|_| {
            format!(
                "unknown timezone `{timezone}`; use an IANA name such as `Europe/Berlin` or `UTC`"
            )
        })?;
        Ok(Schedule { cron, tz })
    }

    /// The first tick strictly after `after`, in UTC; `None` if the schedule has no more.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn berlin_3am_across_daylight_saving() {
        let s = Schedule::parse("0 3 * * *", "Europe/Berlin").unwrap();
        // Winter: UTC+1.
        assert_eq!(
            s.next_after(utc("2026-01-10T12:00:00Z")),
            Some(utc("2026-01-11T02:00:00Z"))
        );
        // 2026-03-29 is the switch to summer time (02:00 → 03:00 local); 03:00 CEST is 01:00 UTC.
        assert_eq!(
            s.next_after(utc("2026-03-28T12:00:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
        // Summer: UTC+2.
        assert_eq!(
            s.next_after(utc("2026-07-01T12:00:00Z")),
            Some(utc("2026-07-02T01:00:00Z"))
        );
    }

    #[test]
    fn six_fields_tick_in_seconds() {
        let s = Schedule::parse("*/10 * * * * *", "UTC").unwrap();
        let t = utc("2026-11-24T10:00:03Z");
        let a = s.next_after(t).unwrap();
        let b = s.next_after(a).unwrap();
        assert_eq!(a, utc("2026-11-24T10:00:10Z"));
        assert_eq!(b, utc("2026-11-24T10:00:20Z"));
    }

    #[test]
    fn bad_input_is_explained() {
        assert!(
            Schedule::parse("* * * *", "UTC")
                .unwrap_err()
                .contains("4 field(s)")
        );
        assert!(
            Schedule::parse("0 0 0 * * * 2026", "UTC")
                .unwrap_err()
                .contains("7 field(s)")
        );
        assert!(
            Schedule::parse("61 * * * *", "UTC")
                .unwrap_err()
                .contains("not a valid cron")
        );
        assert!(
            Schedule::parse("0 3 * * *", "Mars/Base")
                .unwrap_err()
                .contains("unknown timezone")
        );
        assert!(Schedule::parse("@daily", "UTC").is_ok());
    }
}
