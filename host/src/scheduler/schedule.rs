//! Job schedules: a 5-field cron expression or a fixed interval.
//!
//! Cron expressions are evaluated in UTC, minute by minute: `minute hour
//! day-of-month month day-of-week`, each field `*`, a value, a range `a-b`,
//! a step `*/n`, `a-b/n` or `a/n`, or a comma-separated list of those.
//! Months may be named (`jan`-`dec`), weekdays too (`sun`-`sat`; as numbers
//! 0-7 with 0 and 7 both Sunday), in any case. As in classic cron, when both
//! day fields are restricted a day matching either counts. The macros
//! `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly` and `@yearly`
//! (`@annually`) stand for their 5-field forms.
//! Intervals are a positive number followed by `m`, `h` or `d` (`15m`, `1h`).

use chrono::{DateTime, Datelike, Duration, DurationRound, Timelike, Utc};

/// What the schedule field of a job must look like (for error messages).
pub const EXPECTED: &str = "expected a 5-field cron expression (e.g. \"*/15 * * * *\"), a macro (@hourly, @daily, @weekly, @monthly, @yearly) or an interval (e.g. \"15m\", \"1h\", \"1d\")";

/// The cron macros and the expressions they stand for.
const MACROS: [(&str, &str); 7] = [
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

const MONTH_NAMES: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// How far back a cron expression is searched for a slot (a year and a day).
const SEARCH_MINUTES: i64 = 366 * 24 * 60;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every so many seconds after the last run.
    Every(u64),
    Cron(Cron),
}

/// A parsed cron expression: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

impl Schedule {
    /// Parses a schedule; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with('@') {
            let lower = text.to_ascii_lowercase();
            return match MACROS.iter().find(|(name, _)| *name == lower) {
                Some((_, expr)) => Schedule::parse(expr),
                None => Err(format!("{text:?} is not a known macro; {EXPECTED}")),
            };
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() == 5 {
            return Cron::parse(&fields).map(Schedule::Cron);
        }
        if fields.len() == 1
            && let Some(unit) = text.chars().last()
            && let Some(per) = match unit {
                'm' => Some(60),
                'h' => Some(3600),
                'd' => Some(86_400),
                _ => None,
            }
            && let Ok(n) = text[..text.len() - 1].parse::<u64>()
        {
            if n == 0 {
                return Err(format!("{text:?} is a zero interval; {EXPECTED}"));
            }
            return Ok(Schedule::Every(n.saturating_mul(per)));
        }
        Err(format!("{text:?} is not a schedule; {EXPECTED}"))
    }

    /// Whether a job with this schedule is due at `now`, given when it last
    /// ran and when the scheduler first saw it. Missed slots collapse: a
    /// job is due once however many of its slots passed since its last run.
    /// A job that never ran: an interval job is due at once; a cron job at
    /// its first slot in or after the minute the scheduler first saw it.
    pub fn is_due(&self, last_run: Option<DateTime<Utc>>, first_seen: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        match (self, last_run) {
            (Schedule::Every(_), None) => true,
            (Schedule::Every(secs), Some(last)) => {
                now >= last + Duration::seconds(i64::try_from(*secs).unwrap_or(i64::MAX / 2_000))
            }
            (Schedule::Cron(cron), Some(last)) => cron.latest_slot(last, now).is_some(),
            (Schedule::Cron(cron), None) => {
                let minute = first_seen.duration_trunc(Duration::minutes(1)).unwrap_or(first_seen);
                cron.latest_slot(minute - Duration::seconds(1), now).is_some()
            }
        }
    }

    /// When a job with this schedule is next due, at or after `now`: `now`
    /// itself when it is due already, else its next slot (cron: the next
    /// matching minute within a year and a day; `None` when there is none).
    pub fn next_due(
        &self,
        last_run: Option<DateTime<Utc>>,
        first_seen: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if self.is_due(last_run, first_seen, now) {
            return Some(now);
        }
        match (self, last_run) {
            (Schedule::Every(secs), Some(last)) => {
                Some(last + Duration::seconds(i64::try_from(*secs).unwrap_or(i64::MAX / 2_000)))
            }
            (Schedule::Every(_), None) => Some(now),
            (Schedule::Cron(cron), _) => cron.next_slot(now),
        }
    }
}

impl Cron {
    fn parse(fields: &[&str]) -> Result<Self, String> {
        let names = ["minute", "hour", "day-of-month", "month", "day-of-week"];
        let ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
        let names_of: [&[&str]; 5] = [&[], &[], &[], &MONTH_NAMES, &WEEKDAY_NAMES];
        let mut bits = [0u64; 5];
        for i in 0..5 {
            bits[i] = parse_field(fields[i], ranges[i].0, ranges[i].1, names_of[i])
                .map_err(|e| format!("{} field {:?}: {e}; {EXPECTED}", names[i], fields[i]))?;
        }
        let mut weekdays = bits[4];
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        Ok(Cron {
            minutes: bits[0],
            hours: bits[1],
            days: bits[2],
            months: bits[3],
            weekdays,
            days_restricted: fields[2] != "*",
            weekdays_restricted: fields[4] != "*",
        })
    }

    /// Whether the minute containing `t` is a slot.
    pub fn matches(&self, t: DateTime<Utc>) -> bool {
        let has = |bits: u64, v: u32| bits & (1u64 << v) != 0;
        let day = has(self.days, t.day());
        let weekday = has(self.weekdays, t.weekday().num_days_from_sunday());
        let day_ok = match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day || weekday,
            _ => day && weekday,
        };
        has(self.minutes, t.minute()) && has(self.hours, t.hour()) && has(self.months, t.month()) && day_ok
    }

    /// The first slot (a whole minute) strictly after `after`, within a year
    /// and a day.
    pub fn next_slot(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut minute = after.duration_trunc(Duration::minutes(1)).ok()? + Duration::minutes(1);
        for _ in 0..SEARCH_MINUTES {
            if self.matches(minute) {
                return Some(minute);
            }
            minute += Duration::minutes(1);
        }
        None
    }

    /// The latest slot (a whole minute) in `(after, upto]`, if any.
    pub fn latest_slot(&self, after: DateTime<Utc>, upto: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut minute = upto.duration_trunc(Duration::minutes(1)).ok()?;
        for _ in 0..SEARCH_MINUTES {
            if minute <= after {
                return None;
            }
            if self.matches(minute) {
                return Some(minute);
            }
            minute -= Duration::minutes(1);
        }
        None
    }
}

/// Parses one field into a bit set; `names` are the field's value names in
/// order from `min` (months from 1, weekdays from 0), matched in any case.
fn parse_field(field: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let mut bits = 0u64;
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().map_err(|_| format!("step {step:?} is not a number"))?;
                if step == 0 {
                    return Err("a step of 0".into());
                }
                (range, step)
            }
            None => (item, 1),
        };
        let number = |s: &str| -> Result<u32, String> {
            let named = names.iter().position(|name| name.eq_ignore_ascii_case(s));
            let n: u32 = match named {
                Some(i) => min + u32::try_from(i).unwrap_or(0),
                None if names.is_empty() => s.parse().map_err(|_| format!("{s:?} is not a number"))?,
                None => s.parse().map_err(|_| format!("{s:?} is neither a number nor one of {}", names.join(", ")))?,
            };
            if n < min || n > max {
                return Err(format!("{n} is out of range {min}-{max}"));
            }
            Ok(n)
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            _ => match range.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None if item.contains('/') => (number(range)?, max),
                None => {
                    let n = number(range)?;
                    (n, n)
                }
            },
        };
        if lo > hi {
            return Err(format!("range {lo}-{hi} is backwards"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1u64 << v;
            v += step;
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn schedules_parse_or_say_what_was_expected() {
        assert_eq!(Schedule::parse("15m"), Ok(Schedule::Every(900)));
        assert_eq!(Schedule::parse("1h"), Ok(Schedule::Every(3600)));
        assert_eq!(Schedule::parse("2d"), Ok(Schedule::Every(172_800)));
        assert!(matches!(Schedule::parse("*/15 0-6,22 1 * 1-5"), Ok(Schedule::Cron(_))));
        for bad in ["", "0m", "15", "1w", "* * * *", "61 * * * *", "*/0 * * * *", "5-1 * * * *", "a * * * *"] {
            let e = Schedule::parse(bad).unwrap_err();
            assert!(e.contains("expected a 5-field cron expression"), "{bad}: {e}");
        }
    }

    #[test]
    fn cron_fields_match_as_in_classic_cron() {
        let Schedule::Cron(c) = Schedule::parse("*/15 9-17 * * 1-5").unwrap() else { panic!() };
        assert!(c.matches(t("2026-11-25T09:45:00Z"))); // a Wednesday
        assert!(!c.matches(t("2026-11-25T09:46:00Z")));
        assert!(!c.matches(t("2026-11-29T09:45:00Z"))); // a Sunday
        let Schedule::Cron(c) = Schedule::parse("0 0 1 * 0").unwrap() else { panic!() };
        assert!(c.matches(t("2026-11-29T00:00:00Z")), "Sunday, either day field");
        assert!(c.matches(t("2026-12-01T00:00:00Z")), "the 1st, either day field");
        let Schedule::Cron(c) = Schedule::parse("0 0 * * 7").unwrap() else { panic!() };
        assert!(c.matches(t("2026-11-29T00:00:00Z")), "7 is Sunday");
    }

    #[test]
    fn macros_and_names_stand_for_their_numbers() {
        assert_eq!(Schedule::parse("@hourly"), Schedule::parse("0 * * * *"));
        assert_eq!(Schedule::parse("@DAILY"), Schedule::parse("0 0 * * *"));
        assert_eq!(Schedule::parse("@midnight"), Schedule::parse("0 0 * * *"));
        assert_eq!(Schedule::parse("@weekly"), Schedule::parse("0 0 * * 0"));
        assert_eq!(Schedule::parse("@monthly"), Schedule::parse("0 0 1 * *"));
        assert_eq!(Schedule::parse("@annually"), Schedule::parse("0 0 1 1 *"));
        assert_eq!(Schedule::parse("0 9 * jan-Mar MON-fri"), Schedule::parse("0 9 * 1-3 1-5"));
        assert_eq!(Schedule::parse("0 9 * dec sun,sat"), Schedule::parse("0 9 * 12 0,6"));
        let e = Schedule::parse("@sometimes").unwrap_err();
        assert!(e.contains("not a known macro") && e.contains("@hourly"), "{e}");
        let e = Schedule::parse("0 0 * foo *").unwrap_err();
        assert!(e.contains("month field") && e.contains("jan, feb"), "{e}");
        let e = Schedule::parse("mon * * * *").unwrap_err();
        assert!(e.contains("minute field") && e.contains("is not a number"), "{e}");
    }

    #[test]
    fn next_due_is_now_when_due_else_the_next_slot() {
        let hourly = Schedule::parse("@hourly").unwrap();
        let seen = t("2026-11-25T09:30:00Z");
        assert_eq!(hourly.next_due(None, seen, t("2026-11-25T09:40:00Z")), Some(t("2026-11-25T10:00:00Z")));
        let now = t("2026-11-25T14:30:00Z");
        assert_eq!(hourly.next_due(None, seen, now), Some(now), "missed slots: due now");
        assert_eq!(hourly.next_due(Some(now), seen, now), Some(t("2026-11-25T15:00:00Z")));
        let every = Schedule::parse("15m").unwrap();
        assert_eq!(every.next_due(None, seen, seen), Some(seen));
        assert_eq!(every.next_due(Some(seen), seen, seen), Some(t("2026-11-25T09:45:00Z")));
        let never = Schedule::parse("0 0 31 2 *").unwrap();
        assert_eq!(never.next_due(None, seen, seen), None);
    }

    #[test]
    fn missed_slots_collapse_into_one_due_run() {
        let hourly = Schedule::parse("0 * * * *").unwrap();
        let seen = t("2026-11-25T09:30:00Z");
        assert!(!hourly.is_due(None, seen, t("2026-11-25T09:59:00Z")));
        assert!(hourly.is_due(None, seen, t("2026-11-25T14:30:00Z")));
        // Ran at 14:30 after five missed slots: not due again until 15:00.
        assert!(!hourly.is_due(Some(t("2026-11-25T14:30:00Z")), seen, t("2026-11-25T14:59:59Z")));
        assert!(hourly.is_due(Some(t("2026-11-25T14:30:00Z")), seen, t("2026-11-25T15:00:10Z")));
        // A slot in the minute the job was first seen counts.
        assert!(hourly.is_due(None, t("2026-11-25T10:00:30Z"), t("2026-11-25T10:00:30Z")));
        let every = Schedule::parse("1h").unwrap();
        assert!(every.is_due(None, seen, seen));
        assert!(!every.is_due(Some(seen), seen, t("2026-11-25T10:29:59Z")));
        assert!(every.is_due(Some(seen), seen, t("2026-11-25T10:30:00Z")));
        let never = Schedule::parse("0 0 31 2 *").unwrap();
        assert!(!never.is_due(None, seen, t("2027-11-25T09:30:00Z")));
    }
}
