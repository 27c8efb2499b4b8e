//! Cron expressions for rotation schedules: five fields (minute, hour, day of month, month, day of week) in UTC, as
//! in crontab(5) — `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, month and weekday names
//! (`JAN`, `MON`; weekday 7 is Sunday too), and the shorthands `@yearly`, `@annually`, `@monthly`, `@weekly`,
//! `@daily`, `@midnight`, `@hourly`. When both day fields are restricted a day matching either runs (as cron does).
//!
//! Rule: parsing is bounded (at most [`MAX_LEN`] bytes, each field checked against its range) and every error says
//! which field is wrong and why; [`Cron::next_after`] looks at most [`HORIZON_DAYS`] days ahead and answers `None`
//! for an expression that never fires in that time (`0 0 30 2 *`), which creating a schedule refuses.

use super::timefmt::civil;

/// The longest expression accepted, in bytes.
pub const MAX_LEN: usize = 256;
/// How far ahead the next run is looked for: eight years cover every date that exists (29 February).
pub const HORIZON_DAYS: i64 = 8 * 366;

/// A parsed expression: one bit per allowed value of each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Whether the day-of-month and day-of-week fields are `*` (then only the other one restricts).
    any_day: bool,
    any_weekday: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
    },
    Field {
        name: "day of week",
        min: 0,
        max: 7,
        names: &WEEKDAYS,
    },
];

impl Cron {
    /// Parses an expression; the error says what is wrong, for a 400 answer.
    pub fn parse(text: &str) -> Result<Cron, String> {
        if text.len() > MAX_LEN {
            return Err(format!("a cron expression has at most {MAX_LEN} bytes"));
        }
        let expanded = match text.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            t if t.starts_with('@') => return Err(format!("unknown cron shorthand {t:?}")),
            t => t,
        };
        let parts: Vec<&str> = expanded.split_ascii_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "a cron expression has 5 fields (minute hour day-of-month month day-of-week), not {}",
                parts.len()
            ));
        }
        let mut bits = [0u64; 5];
        for (i, (part, field)) in parts.iter().zip(FIELDS.iter()).enumerate() {
            bits[i] = parse_field(part, field)?;
        }
        // Weekday 7 is Sunday.
        let weekdays = (bits[4] | (bits[4] >> 7)) & 0x7f;
        Ok(Cron {
            minutes: bits[0],
            hours: bits[1] as u32,
            days: bits[2] as u32,
            months: bits[3] as u16,
            weekdays: weekdays as u8,
            any_day: parts[2] == "*",
            any_weekday: parts[4] == "*",
        })
    }

    fn day_matches(&self, days: i64) -> bool {
        let (_, month, day) = civil(days);
        if self.months & (1 << month) == 0 {
            return false;
        }
        let weekday = (days + 4).rem_euclid(7); // 1970-01-01 was a Thursday.
        let by_day = self.days & (1 << day) != 0;
        let by_weekday = self.weekdays & (1 << weekday) != 0;
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (false, true) => by_day,
            (true, false) => by_weekday,
            (false, false) => by_day || by_weekday,
        }
    }

    /// The first minute strictly after `after_ms` (Unix milliseconds) the expression names, in Unix milliseconds;
    /// `None` when there is none within [`HORIZON_DAYS`].
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let start_min = after_ms.div_euclid(60_000) + 1;
        let first_day = start_min.div_euclid(1440);
        for day in first_day..first_day + HORIZON_DAYS {
            if !self.day_matches(day) {
                continue;
            }
            let from = if day == first_day {
                start_min.rem_euclid(1440)
            } else {
                0
            };
            for hour in from / 60..24 {
                if self.hours & (1 << hour) == 0 {
                    continue;
                }
                let first_minute = if hour == from / 60 { from % 60 } else { 0 };
                if let Some(minute) = (first_minute..60).find(|m| self.minutes & (1 << m) != 0) {
                    return Some((day * 1440 + hour * 60 + minute) * 60_000);
                }
            }
        }
        None
    }

    /// The shortest gap between two runs, in minutes, over the next [`HORIZON_DAYS`] days' first few runs from
    /// `from_ms` (used to refuse expressions that fire more often than the server allows).
    pub fn min_gap_minutes(&self, from_ms: i64, runs: usize) -> Option<i64> {
        let mut at = self.next_after(from_ms)?;
        let mut gap = i64::MAX;
        for _ in 0..runs {
            let next = self.next_after(at)?;
            gap = gap.min((next - at) / 60_000);
            at = next;
        }
        Some(gap)
    }
}

fn parse_field(part: &str, f: &Field) -> Result<u64, String> {
    let mut bits = 0u64;
    for item in part.split(',') {
        let bad = |why: &str| format!("cron {} field {part:?}: {why}", f.name);
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|n| (1..=f.max).contains(n))
                    .ok_or_else(|| bad(&format!("the step must be a number from 1 to {}", f.max)))?;
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (f.min, if f.max == 7 { 6 } else { f.max })
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, f).map_err(|w| bad(&w))?, value(b, f).map_err(|w| bad(&w))?)
        } else {
            let v = value(range, f).map_err(|w| bad(&w))?;
            // `n/s` means from n to the end, every s.
            (v, if item.contains('/') { f.max } else { v })
        };
        if lo > hi {
            return Err(bad(&format!("the range {lo}-{hi} is empty")));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

fn value(text: &str, f: &Field) -> Result<u32, String> {
    if let Some(i) = f.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(i as u32 + if f.min == 1 { 1 } else { 0 });
    }
    match text.parse::<u32>() {
        Ok(n) if (f.min..=f.max).contains(&n) => Ok(n),
        _ => Err(format!("{text:?} is not a value from {} to {}", f.min, f.max)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::timefmt::{parse_rfc3339, rfc3339};

    fn next(expr: &str, after: &str) -> String {
        let c = Cron::parse(expr).unwrap();
        rfc3339(c.next_after(parse_rfc3339(after).unwrap()).unwrap())
    }

    #[test]
    fn next_runs_follow_crontab() {
        assert_eq!(next("0 0 * * *", "2026-11-30T16:10:00Z"), "2026-12-01T00:00:00.000Z");
        assert_eq!(next("@daily", "2026-12-01T00:00:00Z"), "2026-12-02T00:00:00.000Z");
        assert_eq!(next("*/15 * * * *", "2026-11-30T16:10:59Z"), "2026-11-30T16:15:00.000Z");
        assert_eq!(next("30 2 * * MON", "2026-11-30T16:10:00Z"), "2026-12-07T02:30:00.000Z");
        assert_eq!(next("0 12 29 2 *", "2026-03-01T00:00:00Z"), "2028-02-29T12:00:00.000Z");
        assert_eq!(
            next("0 0 1 jan-mar/2 *", "2026-01-01T00:00:00Z"),
            "2026-03-01T00:00:00.000Z"
        );
        // Both day fields restricted: either matches (13th, or a Friday).
        assert_eq!(next("0 0 13 * 5", "2026-11-30T00:00:00Z"), "2026-12-04T00:00:00.000Z");
        assert_eq!(next("0 0 * * 7", "2026-11-30T00:00:00Z"), "2026-12-06T00:00:00.000Z");
        assert_eq!(
            next("59 23 31 12 *", "2026-12-31T23:59:00Z"),
            "2027-12-31T23:59:00.000Z"
        );
        assert!(Cron::parse("0 0 30 2 *").unwrap().next_after(0).is_none());
        assert_eq!(Cron::parse("*/5 * * * *").unwrap().min_gap_minutes(0, 4), Some(5));
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (bad, says) in [
            ("", "5 fields"),
            ("* * * *", "5 fields"),
            ("* * * * * *", "5 fields"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day of month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day of week"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "empty"),
            ("a * * * *", "minute"),
            ("@every 5m", "shorthand"),
            ("１ * * * *", "minute"),
        ] {
            let e = Cron::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        assert!(Cron::parse(&"1,".repeat(200)).unwrap_err().contains("at most"));
    }

    #[test]
    fn timestamps_parse_strictly() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-30T17:00:00.5+01:00"),
            parse_rfc3339("2026-11-30T16:00:00.500Z")
        );
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-11-30 16:00:00Z",
            "2026-11-30T16:00:00",
            "x",
            "2026-11-30T24:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
