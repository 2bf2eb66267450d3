//! How a request is answered: the bucket width from a fixed ladder, and
//! the data that serves it (raw readings, or the coarsest rollup tier the
//! width is a whole number of buckets of).
//!
//! The width is the smallest step of [`LADDER_MS`] that is at least
//! `(to - from) / points`. Each width reads the coarsest tier that divides
//! it, at most four rows per bucket: 1 and 2 minutes the minute tier, 5 and
//! 10 the 5-minute tier, 15 and 30 the 15-minute tier, 1 to 3 hours the
//! hour tier, 6 and 12 hours and a day the 6-hour tier; anything finer
//! than a minute the readings.
//! Buckets up to an hour wide are aligned to UTC; wider ones follow the
//! yard's wall clock. See docs/design/history.md.

use trackside_wire::HistorySource;

use crate::time::{DAY_MS, HOUR_MS, MINUTE_MS};

/// The bucket widths a chart can get, in milliseconds. Each divides the
/// next larger unit (second, minute, hour, day), so buckets line up with
/// the clock and every rollup-backed width is a whole number of rollup
/// buckets.
pub const LADDER_MS: &[i64] = &[
    10, 20, 50, 100, 200, 500, // sub-second
    1_000, 2_000, 5_000, 10_000, 15_000, 30_000, // seconds
    60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, // minutes
    3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, // hours
    86_400_000, // a day
];

/// How a request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub bucket_ms: i64,
    pub source: HistorySource,
}

impl Plan {
    /// Chooses the width and the source. `raw_from` and `minute_from` are
    /// the retention horizons (Unix ms): a range reaching before one is
    /// answered from the next coarser data, which still exists there.
    pub fn choose(
        from: i64,
        to: i64,
        points: u32,
        raw_from: Option<i64>,
        minute_from: Option<i64>,
    ) -> Self {
        let points = i64::from(points.max(1));
        // Ceiling division; the range is positive.
        let ideal = (to - from + points - 1) / points;
        let width = LADDER_MS
            .iter()
            .copied()
            .find(|&w| w >= ideal)
            .unwrap_or(DAY_MS);
        let mut plan = Self::for_width(width);
        if plan.source == HistorySource::Raw && raw_from.is_some_and(|h| from < h) {
            plan = Self::for_width(MINUTE_MS);
        }
        // Tiers finer than an hour follow the minutes' retention.
        let sub_hour = matches!(
            plan.source,
            HistorySource::Minute | HistorySource::FiveMinute | HistorySource::QuarterHour
        );
        if sub_hour && minute_from.is_some_and(|h| from < h) {
            plan = Self::for_width(plan.bucket_ms.max(HOUR_MS));
        }
        plan
    }

    pub(super) fn for_width(bucket_ms: i64) -> Self {
        let source = if bucket_ms >= 6 * HOUR_MS {
            HistorySource::SixHour
        } else if bucket_ms >= HOUR_MS {
            HistorySource::Hour
        } else if bucket_ms >= 15 * MINUTE_MS {
            HistorySource::QuarterHour
        } else if bucket_ms >= 5 * MINUTE_MS {
            HistorySource::FiveMinute
        } else if bucket_ms >= MINUTE_MS {
            HistorySource::Minute
        } else {
            HistorySource::Raw
        };
        Self { bucket_ms, source }
    }

    /// Buckets wider than an hour follow the yard's wall clock. Narrower
    /// ones cannot: in the hour a clock repeats in autumn, two stretches of
    /// time would share one local bucket.
    pub fn follows_wall_clock(&self) -> bool {
        self.bucket_ms > HOUR_MS
    }
}

/// Bucket starts from `from` (its bucket included) to before `to`, on the
/// UTC grid of `width`, plus the end of the last bucket.
pub fn utc_grid(from: i64, to: i64, width: i64) -> (Vec<i64>, i64) {
    let first = from.div_euclid(width) * width;
    let starts: Vec<i64> = (0..)
        .map(|i| first + i * width)
        .take_while(|&t| t < to)
        .collect();
    let end = starts.last().map_or(first, |last| last + width);
    (starts, end)
}
