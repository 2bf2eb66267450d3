//! Clocks and time formatting.
//!
//! The board measures every age against the *server's* clock: a control-room
//! PC whose clock drifts by a minute would otherwise show every value as
//! stale, or none. Readings carry Unix milliseconds (UTC); the yard's local
//! time comes from the browser's `Intl` tables, since a time-zone database
//! compiled into the wasm module would outweigh the whole app.

use std::cell::RefCell;

use js_sys::{Array, Date, Function, Intl, Object, Reflect};
use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue};

/// A reading older than this is marked stale on the board.
pub const STALE_AFTER_MS: i64 = 30_000;

/// The server's "now", refreshed once a second.
#[derive(Clone, Copy)]
pub struct Clock {
    now: RwSignal<i64>,
    /// Server clock minus browser clock, in milliseconds.
    offset: RwSignal<i64>,
}

impl Clock {
    /// Starts the ticking. Ticks come four times a second but the signal
    /// changes only when the second does, so the displayed clock turns over
    /// at most a quarter second late without waking every age four times.
    pub fn start() -> Self {
        let clock = Self {
            now: RwSignal::new(Date::now() as i64),
            offset: RwSignal::new(0),
        };
        set_interval(move || clock.tick(), std::time::Duration::from_millis(250));
        clock
    }

    /// The current server time in Unix milliseconds (tracked: a reactive
    /// closure that calls it re-runs every second).
    pub fn now(&self) -> i64 {
        self.now.get()
    }

    /// The current server time, read without subscribing to the tick.
    pub fn now_untracked(&self) -> i64 {
        self.now.get_untracked()
    }

    /// Aligns the clock with a server timestamp taken "just now" (the HTTP
    /// or WebSocket latency, milliseconds, is well under the display's
    /// one-second resolution).
    pub fn sync(&self, server_time: i64) {
        self.offset.set(server_time - Date::now() as i64);
        self.tick();
    }

    fn tick(&self) {
        let now = Date::now() as i64 + self.offset.get_untracked();
        if now.div_euclid(1000) != self.now.get_untracked().div_euclid(1000) {
            self.now.set(now);
        }
    }
}

/// How long ago a reading was taken, as an operator reads it: "4 s ago".
/// A reading from the future (clock skew between gateway and server) reads
/// "just now" rather than a negative age.
pub fn format_age(age_ms: i64) -> String {
    let s = age_ms.max(0) / 1000;
    match s {
        0 => "just now".to_owned(),
        1..60 => format!("{s} s ago"),
        60..3_600 => format!("{} min ago", s / 60),
        3_600..172_800 => format!("{} h ago", s / 3_600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// `14:03:07` in UTC.
pub fn utc_time(ms: i64) -> String {
    let (_, time) = civil_utc(ms);
    format!("{:02}:{:02}:{:02}", time.0, time.1, time.2)
}

/// `2026-11-28 14:03:07.123 UTC`: the full timestamp of a reading.
pub fn utc_timestamp(ms: i64) -> String {
    let ((y, mo, d), (h, mi, s)) = civil_utc(ms);
    let millis = ms.rem_euclid(1000);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{millis:03} UTC")
}

type Date3 = (i64, u32, u32);
type Time3 = (u32, u32, u32);

/// Splits Unix milliseconds into a proleptic Gregorian UTC date and time,
/// with Howard Hinnant's days-to-civil algorithm.
fn civil_utc(ms: i64) -> (Date3, Time3) {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    ((year, month, day), (sod / 3_600, sod / 60 % 60, sod % 60))
}

/// The time in the yard's zone, in pieces the header lays out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZonedTime {
    /// `14:03:07`, 24-hour.
    pub time: String,
    /// `Sat 28 Nov`.
    pub date: String,
    /// The zone's short name at that instant, `GMT` or `BST`, `CET` or
    /// `GMT+1`, as the browser knows it.
    pub abbreviation: String,
}

thread_local! {
    /// One formatter per zone: building an `Intl.DateTimeFormat` costs far
    /// more than using one, and the header formats every second.
    static FORMATTER: RefCell<Option<(String, Intl::DateTimeFormat)>> = const { RefCell::new(None) };
}

/// Formats `ms` in the IANA zone `zone`, or `None` when the browser does not
/// know the zone (a typo in the server's configuration must not take the
/// board down).
pub fn zoned_time(ms: i64, zone: &str) -> Option<ZonedTime> {
    FORMATTER.with_borrow_mut(|cached| {
        if cached.as_ref().is_none_or(|(z, _)| z != zone) {
            *cached = Some((zone.to_owned(), zone_formatter(zone)?));
        }
        let (_, formatter) = cached.as_ref()?;
        let parts = formatter.format_to_parts(&Date::new(&JsValue::from_f64(ms as f64)));
        let part = |kind: &str| -> String {
            parts
                .iter()
                .find(|p| {
                    Reflect::get(p, &"type".into())
                        .ok()
                        .and_then(|t| t.as_string())
                        .as_deref()
                        == Some(kind)
                })
                .and_then(|p| Reflect::get(&p, &"value".into()).ok())
                .and_then(|v| v.as_string())
                .unwrap_or_default()
        };
        Some(ZonedTime {
            time: format!("{}:{}:{}", part("hour"), part("minute"), part("second")),
            date: format!("{} {} {}", part("weekday"), part("day"), part("month")),
            abbreviation: part("timeZoneName"),
        })
    })
}

fn zone_formatter(zone: &str) -> Option<Intl::DateTimeFormat> {
    let options = Intl::DateTimeFormatOptions::new();
    options.set_time_zone(zone);
    options.set_hour_cycle(Intl::HourCycle::H23);
    options.set_hour(Intl::NumericFormat::TwoDigit);
    options.set_minute(Intl::NumericFormat::TwoDigit);
    options.set_second(Intl::NumericFormat::TwoDigit);
    options.set_weekday(Intl::WeekdayFormat::Short);
    options.set_day(Intl::DayFormat::Numeric);
    options.set_month(Intl::MonthFormat::Short);
    options.set_time_zone_name(Intl::TimeZoneNameFormat::Short);
    construct_formatter(options)
}

/// An `Intl.DateTimeFormat` in en-GB with these options, or `None` when the
/// browser rejects them (an unknown zone).
fn construct_formatter(options: Intl::DateTimeFormatOptions) -> Option<Intl::DateTimeFormat> {
    // The stable binding's constructor does not catch the RangeError an
    // unknown zone throws, so construct through Reflect, which does.
    let constructor: Function = Reflect::get(&js_sys::global(), &"Intl".into())
        .and_then(|intl| Reflect::get(&intl, &"DateTimeFormat".into()))
        .ok()?
        .dyn_into()
        .ok()?;
    let args = Array::of2(&"en-GB".into(), &Object::from(options).into());
    Reflect::construct(&constructor, &args)
        .ok()
        .map(JsCast::unchecked_into)
}

/// `Sat 28 Nov 14:03:07 GMT`: an instant in the yard's zone, as the history
/// page labels it; `None` when the browser does not know the zone.
pub fn zoned_stamp(ms: i64, zone: &str) -> Option<String> {
    zoned_time(ms, zone).map(|t| format!("{} {} {}", t.date, t.time, t.abbreviation))
}

/// `2026-11-28 14:03:07 UTC`: the UTC beside a yard time.
pub fn utc_beside(ms: i64) -> String {
    let ((y, mo, d), (h, mi, s)) = civil_utc(ms);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// An instant on the yard's clock, or in UTC before the zone is known.
pub fn yard_time(ms: i64, zone: Option<&str>) -> String {
    zone.and_then(|z| zoned_stamp(ms, z))
        .unwrap_or_else(|| utc_beside(ms))
}

/// Unix milliseconds of a proleptic Gregorian UTC date and time (Howard
/// Hinnant's days-from-civil, the inverse of [`civil_utc`]).
pub fn civil_to_ms(date: Date3, time: Time3) -> i64 {
    let (y, m, d) = date;
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let (h, mi, s) = time;
    (days * 86_400 + i64::from(h) * 3_600 + i64::from(mi) * 60 + i64::from(s)) * 1000
}

/// Reads a `datetime-local` value, `2026-11-28T14:03` (seconds optional).
pub fn parse_wall(text: &str) -> Option<(Date3, Time3)> {
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let y = d.next()?.parse::<i64>().ok()?;
    let mo = d.next()?.parse::<u32>().ok()?;
    let day = d.next()?.parse::<u32>().ok()?;
    let mut t = time.splitn(3, ':');
    let h = t.next()?.parse::<u32>().ok()?;
    let mi = t.next()?.parse::<u32>().ok()?;
    let sec = t
        .next()
        .map_or(Some(0), |s| s.split('.').next()?.parse::<u32>().ok())?;
    let valid = (1..=12).contains(&mo) && (1..=31).contains(&day) && h < 24 && mi < 60 && sec < 60;
    valid.then_some(((y, mo, day), (h, mi, sec)))
}

/// A `datetime-local` value for `ms` on the yard's wall clock.
pub fn wall_input(ms: i64, zone: &str) -> Option<String> {
    let ((y, mo, d), (h, mi, _)) = zoned_civil(ms, zone)?;
    Some(format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}"))
}

/// The instant a wall-clock time in the yard's zone names. A time the
/// autumn change repeats is the first of the two; a time the spring change
/// skips is read with the offset before the change (as PostgreSQL reads
/// it), which lands an hour later on the clock.
pub fn wall_to_utc(text: &str, zone: &str) -> Option<i64> {
    let (date, time) = parse_wall(text)?;
    let wall = civil_to_ms(date, time);
    // Offsets change at most once in a day: the offsets twelve hours either
    // side give every candidate.
    let before = wall - zone_offset_ms(wall - 43_200_000, zone)?;
    let after = wall - zone_offset_ms(wall + 43_200_000, zone)?;
    let fits = |instant: i64| zone_offset_ms(instant, zone) == Some(wall - instant);
    Some(match (fits(before), fits(after)) {
        (true, true) => before.min(after),
        (true, false) => before,
        (false, true) => after,
        (false, false) => before,
    })
}

/// How far the yard's wall clock is ahead of UTC at `ms`.
fn zone_offset_ms(ms: i64, zone: &str) -> Option<i64> {
    let (date, time) = zoned_civil(ms, zone)?;
    Some(civil_to_ms(date, time) - (ms - ms.rem_euclid(1000)))
}

thread_local! {
    static NUMERIC: RefCell<Option<(String, Intl::DateTimeFormat)>> = const { RefCell::new(None) };
}

/// Date and time on the yard's wall clock, as numbers.
fn zoned_civil(ms: i64, zone: &str) -> Option<(Date3, Time3)> {
    NUMERIC.with_borrow_mut(|cached| {
        if cached.as_ref().is_none_or(|(z, _)| z != zone) {
            let options = Intl::DateTimeFormatOptions::new();
            options.set_time_zone(zone);
            options.set_hour_cycle(Intl::HourCycle::H23);
            options.set_year(Intl::YearFormat::Numeric);
            options.set_month(Intl::MonthFormat::Numeric);
            options.set_day(Intl::DayFormat::Numeric);
            options.set_hour(Intl::NumericFormat::Numeric);
            options.set_minute(Intl::NumericFormat::Numeric);
            options.set_second(Intl::NumericFormat::Numeric);
            *cached = Some((zone.to_owned(), construct_formatter(options)?));
        }
        let (_, formatter) = cached.as_ref()?;
        let parts = formatter.format_to_parts(&Date::new(&JsValue::from_f64(ms as f64)));
        let part = |kind: &str| -> Option<i64> {
            parts
                .iter()
                .find(|p| {
                    Reflect::get(p, &"type".into())
                        .ok()
                        .and_then(|t| t.as_string())
                        .as_deref()
                        == Some(kind)
                })
                .and_then(|p| Reflect::get(&p, &"value".into()).ok())
                .and_then(|v| v.as_string())
                .and_then(|v| v.parse().ok())
        };
        let date = (part("year")?, part("month")? as u32, part("day")? as u32);
        let time = (
            part("hour")? as u32,
            part("minute")? as u32,
            part("second")? as u32,
        );
        Some((date, time))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        let cases = [
            (-5_000, "just now"),
            (0, "just now"),
            (999, "just now"),
            (1_000, "1 s ago"),
            (2_400, "2 s ago"),
            (59_999, "59 s ago"),
            (60_000, "1 min ago"),
            (3_599_000, "59 min ago"),
            (3_600_000, "1 h ago"),
            (47 * 3_600_000, "47 h ago"),
            (3 * 86_400_000, "3 d ago"),
        ];
        for (age, expected) in cases {
            assert_eq!(format_age(age), expected, "{age} ms");
        }
    }

    #[test]
    fn civil_dates_round_trip() {
        for ms in [
            0,
            1_700_000_000_000,
            1_709_164_800_000,
            -86_400_000,
            4_102_444_800_000,
        ] {
            let (date, time) = civil_utc(ms);
            assert_eq!(civil_to_ms(date, time), ms, "{ms}");
        }
    }

    #[test]
    fn wall_times_parse() {
        assert_eq!(
            parse_wall("2026-10-25T01:30"),
            Some(((2026, 10, 25), (1, 30, 0)))
        );
        assert_eq!(
            parse_wall("2026-10-25T01:30:59.5"),
            Some(((2026, 10, 25), (1, 30, 59)))
        );
        assert_eq!(parse_wall("2026-13-25T01:30"), None);
        assert_eq!(parse_wall("2026-10-25 01:30"), None);
        assert_eq!(parse_wall(""), None);
    }

    #[test]
    fn utc_formatting() {
        let cases = [
            (0, "1970-01-01 00:00:00.000 UTC"),
            (1_700_000_000_123, "2023-11-14 22:13:20.123 UTC"),
            // leap day, and the last millisecond of a year
            (1_709_164_800_000, "2024-02-29 00:00:00.000 UTC"),
            (1_735_689_599_999, "2024-12-31 23:59:59.999 UTC"),
            // before the epoch rounds towards the past, not towards zero
            (-1, "1969-12-31 23:59:59.999 UTC"),
        ];
        for (ms, expected) in cases {
            assert_eq!(utc_timestamp(ms), expected, "{ms}");
        }
        assert_eq!(utc_time(1_700_000_000_123), "22:13:20");
    }
}
