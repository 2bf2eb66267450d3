//! Times as the API and the rollups count them: Unix milliseconds, and the
//! request parameters that name them.

use chrono::{DateTime, Utc};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// RFC 3339 (`2026-11-28T14:00:00Z`, any offset) or integer Unix
/// milliseconds.
pub fn parse_time(name: &str, text: &str) -> Result<i64, String> {
    let text = text.trim();
    let ms = if !text.is_empty()
        && text
            .trim_start_matches('-')
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        text.parse::<i64>().ok()
    } else {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_millis())
    };
    ms.filter(|&ms| DateTime::from_timestamp_millis(ms).is_some() && ms >= 0)
        .ok_or_else(|| {
            format!(
                "{name}={text:?} is not a time: give RFC 3339 (2026-11-28T14:00:00Z) \
                 or Unix milliseconds, after 1970"
            )
        })
}

/// The start of the UTC hour holding `t`.
pub fn floor_to_hour(t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(t.timestamp_millis().div_euclid(HOUR_MS) * HOUR_MS)
}
