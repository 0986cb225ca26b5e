//! Time windows: days of the week and wall-clock ranges in one IANA time zone.
//!
//! The caller passes the time as Unix seconds; the zone's offset at that instant (from the tz
//! database bundled into the binary by `jiff`, so a machine without `/usr/share/zoneinfo`
//! behaves the same) gives the local weekday and minute. Windows are wall-clock: on a day when
//! clocks move, `01:00-04:00` lasts two or four real hours, and a time that does not exist
//! that day (02:30 in Berlin on the last Sunday of March) is simply never seen.

use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::Timestamp;

use super::Weekday;

const MINUTES_PER_DAY: u16 = 24 * 60;

/// The local weekday (0 = Monday) and minute of the day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LocalTime {
    weekday: u8,
    minute: u16,
}

/// Looks up an IANA zone name (or `UTC`) in the bundled database.
pub(crate) fn time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZoneDatabase::bundled()
        .get(name)
        .map_err(|_| format!("{name:?} is not an IANA time zone name (like \"Europe/Berlin\")"))
}

/// The wall-clock time in `tz` at `now_unix`, or `None` past the year 9999.
pub(crate) fn local_time(tz: &TimeZone, now_unix: u64) -> Option<LocalTime> {
    let ts = Timestamp::from_second(i64::try_from(now_unix).ok()?).ok()?;
    let local = now_unix as i64 + i64::from(tz.to_offset(ts).seconds());
    let day = local.div_euclid(86_400);
    Some(LocalTime {
        // 1970-01-01 was a Thursday (3 counting from Monday = 0).
        weekday: (day + 3).rem_euclid(7) as u8,
        minute: (local.rem_euclid(86_400) / 60) as u16,
    })
}

/// One window: a set of days and a `[start, end)` range of minutes starting on those days. A
/// range whose end is not after its start runs past midnight into the next day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// Bit `i` set: the window starts on weekday `i` (0 = Monday).
    days: u8,
    start: u16,
    end: u16,
}

impl Window {
    pub(crate) fn new(days: &[Weekday], range: Option<(u16, u16)>) -> Window {
        let days = if days.is_empty() {
            0x7f
        } else {
            days.iter().fold(0, |m, d| m | 1 << d.index())
        };
        let (start, end) = range.unwrap_or((0, MINUTES_PER_DAY));
        Window { days, start, end }
    }

    pub(crate) fn contains(&self, t: LocalTime) -> bool {
        let on = |weekday: u8| self.days & (1 << weekday) != 0;
        if self.start < self.end {
            on(t.weekday) && self.start <= t.minute && t.minute < self.end
        } else {
            let yesterday = (t.weekday + 6) % 7;
            (on(t.weekday) && t.minute >= self.start) || (on(yesterday) && t.minute < self.end)
        }
    }
}

/// Parses `HH:MM-HH:MM` into minutes of the day. `24:00` is allowed as an end; equal ends are
/// refused (ambiguous: leave the range out for the whole day).
pub(crate) fn parse_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{text:?} is not a time range like \"09:00-17:30\" or \"22:00-06:00\"");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let start = parse_clock(a.trim()).ok_or_else(bad)?;
    let end = parse_clock(b.trim()).ok_or_else(bad)?;
    if start == MINUTES_PER_DAY {
        return Err(format!("{text:?}: a range cannot start at 24:00"));
    }
    if start == end {
        return Err(format!(
            "{text:?} is empty: leave `times` out for the whole day, or write \"00:00-24:00\""
        ));
    }
    Ok((start, end))
}

fn parse_clock(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    match (h, m) {
        (24, 0) => Some(MINUTES_PER_DAY),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges() {
        assert_eq!(parse_range("09:00-17:30"), Ok((540, 1050)));
        assert_eq!(parse_range("22:00-06:00"), Ok((1320, 360)));
        assert_eq!(parse_range("00:00-24:00"), Ok((0, 1440)));
        assert_eq!(parse_range(" 9:05 - 10:00 "), Ok((545, 600)));
        for bad in [
            "9-17",
            "09:00",
            "09:00-17:60",
            "25:00-26:00",
            "24:00-01:00",
            "10:00-10:00",
            "00:00-00:00",
            "a:00-b:00",
            "09:000-10:00",
            "-01:00-02:00",
        ] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weekday_and_minute_in_utc() {
        let utc = time_zone("UTC").unwrap();
        assert_eq!(
            local_time(&utc, 0),
            Some(LocalTime {
                weekday: 3,
                minute: 0
            })
        );
        // 2024-01-01T23:59:00Z was a Monday.
        assert_eq!(
            local_time(&utc, 1_704_153_540),
            Some(LocalTime {
                weekday: 0,
                minute: 1439
            })
        );
        assert_eq!(local_time(&utc, u64::MAX), None);
    }

    #[test]
    fn unknown_zone_is_refused() {
        assert!(time_zone("Mars/Olympus_Mons").is_err());
        assert!(time_zone("Europe/Berlin").is_ok());
    }

    #[test]
    fn window_across_midnight_belongs_to_its_start_day() {
        // Fridays 22:00 until Saturday 02:00.
        let w = Window::new(&[Weekday::Fri], Some((1320, 120)));
        let at = |weekday, minute| w.contains(LocalTime { weekday, minute });
        assert!(at(4, 1320));
        assert!(at(4, 1439));
        assert!(at(5, 0));
        assert!(at(5, 119));
        assert!(!at(5, 120));
        assert!(!at(4, 1319));
        assert!(!at(4, 60), "Friday 01:00 belongs to Thursday's window");
        assert!(!at(5, 1380), "Saturday night is not Friday night");
        // Sunday night runs into Monday.
        let w = Window::new(&[Weekday::Sun], Some((1380, 60)));
        assert!(w.contains(LocalTime {
            weekday: 0,
            minute: 30
        }));
    }

    #[test]
    fn whole_days() {
        let w = Window::new(&[Weekday::Sat, Weekday::Sun], None);
        for minute in [0, 720, 1439] {
            assert!(w.contains(LocalTime { weekday: 5, minute }));
            assert!(w.contains(LocalTime { weekday: 6, minute }));
            assert!(!w.contains(LocalTime { weekday: 0, minute }));
        }
        let every = Window::new(&[], Some((0, 1440)));
        assert!((0..7).all(|weekday| every.contains(LocalTime {
            weekday,
            minute: 1439
        })));
    }
}
