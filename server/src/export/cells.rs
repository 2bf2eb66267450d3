//! CSV cells as the export writes them: RFC 4180 quoting, formula
//! neutralisation for text, shortest round-trip numbers, and timestamps in
//! UTC and a zone's wall clock with its offset.
//!
//! Written by hand rather than through a CSV crate: the export's cost is
//! almost all here, text cells are encoded once per channel (not per row),
//! and numbers and times need no quoting check at all.

use chrono::{Offset, TimeZone};
use chrono_tz::Tz;

/// Appends `text` as one CSV cell. A cell a spreadsheet would run as a
/// formula (first character `=`, `+`, `-`, `@`, tab or carriage return) gets
/// a leading `'`, which spreadsheets show as text and hide; a cell holding
/// a comma, quote or line break is quoted, its quotes doubled.
pub fn text(out: &mut Vec<u8>, text: &str) {
    let neutralise = matches!(
        text.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    );
    let quote = text
        .bytes()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if quote {
        out.push(b'"');
    }
    if neutralise {
        out.push(b'\'');
    }
    for &b in text.as_bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    if quote {
        out.push(b'"');
    }
}

/// Appends a float in its shortest form that parses back to the same bits;
/// whole numbers without `.0` (a relay state reads `1`, not `1.0`).
pub fn float(out: &mut Vec<u8>, buffer: &mut ryu::Buffer, value: f64) {
    let text = buffer.format(value);
    let text = text.strip_suffix(".0").unwrap_or(text);
    out.extend_from_slice(text.as_bytes());
}

/// Formats instants as RFC 3339 in UTC (`2026-11-28T09:00:00.250Z`) and on
/// a zone's wall clock with its offset (`2026-11-28T10:00:00.250+01:00`),
/// which stays unambiguous in the hour a clock repeats. Fractions are
/// milliseconds, or microseconds when the instant has them, so every
/// stored timestamp (microsecond precision) comes back exactly.
///
/// Rows arrive in time order and many share a second, so the date-and-time
/// text of the last second is kept and only the fraction is new.
pub struct Clock {
    zone: Tz,
    second: i64,
    utc: [u8; 19],
    local: [u8; 19],
    offset: [u8; 6],
}

impl Clock {
    pub fn new(zone: Tz) -> Self {
        let mut clock = Self {
            zone,
            second: 0,
            utc: [0; 19],
            local: [0; 19],
            offset: [0; 6],
        };
        clock.set_second(0);
        clock
    }

    fn set_second(&mut self, second: i64) {
        self.second = second;
        civil_text(second, &mut self.utc);
        let offset = chrono::DateTime::from_timestamp(second, 0)
            .map(|t| {
                self.zone
                    .offset_from_utc_datetime(&t.naive_utc())
                    .fix()
                    .local_minus_utc()
            })
            .unwrap_or(0);
        civil_text(second + i64::from(offset), &mut self.local);
        let sign = if offset < 0 { b'-' } else { b'+' };
        let minutes = offset.unsigned_abs() / 60;
        let (h, m) = (minutes / 60, minutes % 60);
        self.offset = [
            sign,
            b'0' + (h / 10) as u8,
            b'0' + (h % 10) as u8,
            b':',
            b'0' + (m / 10) as u8,
            b'0' + (m % 10) as u8,
        ];
    }

    /// Appends `utc,local` for an instant in Unix microseconds.
    pub fn both(&mut self, out: &mut Vec<u8>, micros: i64) {
        let second = micros.div_euclid(1_000_000);
        let fraction = micros.rem_euclid(1_000_000);
        if second != self.second {
            self.set_second(second);
        }
        out.extend_from_slice(&self.utc);
        push_fraction(out, fraction);
        out.extend_from_slice(b"Z,");
        out.extend_from_slice(&self.local);
        push_fraction(out, fraction);
        out.extend_from_slice(&self.offset);
    }
}

fn push_fraction(out: &mut Vec<u8>, micros: i64) {
    let (digits, value) = if micros % 1_000 == 0 {
        (3, micros / 1_000)
    } else {
        (6, micros)
    };
    out.push(b'.');
    let start = out.len();
    out.resize(start + digits, b'0');
    let mut rest = value;
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix second (years 0 to 9999; the request
/// check keeps exports inside them).
fn civil_text(second: i64, out: &mut [u8; 19]) {
    let days = second.div_euclid(86_400);
    let of_day = second.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let two = |out: &mut [u8], at: usize, v: i64| {
        out[at] = b'0' + (v / 10) as u8;
        out[at + 1] = b'0' + (v % 10) as u8;
    };
    let year = year.clamp(0, 9999);
    two(out, 0, year / 100);
    two(out, 2, year % 100);
    out[4] = b'-';
    two(out, 5, month);
    out[7] = b'-';
    two(out, 8, day);
    out[10] = b'T';
    two(out, 11, of_day / 3600);
    out[13] = b':';
    two(out, 14, of_day / 60 % 60);
    out[16] = b':';
    two(out, 17, of_day % 60);
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(s: &str) -> String {
        let mut out = Vec::new();
        text(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_is_quoted_and_neutralised() {
        assert_eq!(cell("T1/relay_voltage"), "T1/relay_voltage");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(cell("=1+2"), "'=1+2");
        assert_eq!(cell("+41"), "'+41");
        assert_eq!(cell("-T1"), "'-T1");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("\tx"), "'\tx");
        assert_eq!(cell("\rx"), "\"'\rx\"");
        assert_eq!(
            cell("=HYPERLINK(\"x\",\"y\")"),
            "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\""
        );
        assert_eq!(cell("a=b"), "a=b");
        assert_eq!(cell(""), "");
    }

    #[test]
    fn floats_round_trip_in_shortest_form() {
        let mut buffer = ryu::Buffer::new();
        let mut check = |v: f64, expected: &str| {
            let mut out = Vec::new();
            float(&mut out, &mut buffer, v);
            let s = String::from_utf8(out).unwrap();
            assert_eq!(s, expected);
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{s}");
        };
        check(1.0, "1");
        check(0.0, "0");
        check(-0.0, "-0");
        check(1.82, "1.82");
        check(0.1 + 0.2, "0.30000000000000004");
        check(-12.5, "-12.5");
        check(1e-7, "1e-7");
        check(123456789.0, "123456789");
        check(f64::MAX, "1.7976931348623157e308");
    }

    fn stamp(zone: Tz, micros: i64) -> String {
        let mut out = Vec::new();
        Clock::new(zone).both(&mut out, micros);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn times_in_utc_and_the_zone() {
        // 2026-11-28T09:00:00Z
        let t = 1_795_856_400_000_000;
        assert_eq!(
            stamp(Tz::Europe__Berlin, t),
            "2026-11-28T09:00:00.000Z,2026-11-28T10:00:00.000+01:00"
        );
        assert_eq!(
            stamp(Tz::America__New_York, t + 250_000),
            "2026-11-28T09:00:00.250Z,2026-11-28T04:00:00.250-05:00"
        );
        assert_eq!(
            stamp(Tz::Asia__Kolkata, t + 7),
            "2026-11-28T09:00:00.000007Z,2026-11-28T14:30:00.000007+05:30"
        );
        assert_eq!(
            stamp(Tz::UTC, 0),
            "1970-01-01T00:00:00.000Z,1970-01-01T00:00:00.000+00:00"
        );
        // Leap day, and the last instant before a new year.
        assert_eq!(
            &stamp(Tz::UTC, 1_709_208_000_000_000)[..24],
            "2024-02-29T12:00:00.000Z"
        );
        assert_eq!(
            &stamp(Tz::UTC, 1_767_225_599_999_999)[..27],
            "2025-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn every_day_matches_chrono() {
        let mut clock = Clock::new(Tz::Australia__Lord_Howe);
        // Every 7 hours 13 minutes 1.001 seconds over 60 years.
        let step = (7 * 3600 + 13 * 60 + 1) * 1_000_000 + 1_000;
        let mut t: i64 = 0;
        while t < 60 * 365 * 86_400_000_000 {
            let mut out = Vec::new();
            clock.both(&mut out, t);
            let text = String::from_utf8(out).unwrap();
            let (utc, local) = text.split_once(',').unwrap();
            let instant = chrono::DateTime::from_timestamp_micros(t).unwrap();
            assert_eq!(chrono::DateTime::parse_from_rfc3339(utc).unwrap(), instant);
            let parsed = chrono::DateTime::parse_from_rfc3339(local).unwrap();
            assert_eq!(parsed, instant, "{local}");
            assert_eq!(
                parsed.offset().local_minus_utc(),
                instant
                    .with_timezone(&Tz::Australia__Lord_Howe)
                    .offset()
                    .fix()
                    .local_minus_utc()
            );
            t += step;
        }
    }
}
