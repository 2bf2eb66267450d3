//! The bucket statements, one per source, written as `macro_rules!`
//! fragments so that each is one `&'static str` the benchmark can run bare.
//!
//! Sums are `sum_of!` (overflow-free for any finite reading), and a
//! bucket's average is `rollup_avg`: sum / count, or the raw readings' mean
//! where the sum is beyond the double range (migration 20261207100000).

use super::plan::Plan;
use crate::store::rollup::{Tier, sum_of};
use trackside_wire::HistorySource;

/// The head of `bucket_query!` and `tier_rows_query!`: per channel `c.id`
/// of `$1`, the columns a bucket query returns, read from a lateral
/// subquery `s` the caller completes (its rows: b, min, max, sum, count,
/// first, last, newest).
macro_rules! per_channel_buckets {
    () => {
        "SELECT c.id, s.b, s.min, s.max,
       rollup_avg(s.sum, s.count, c.id, s.b, s.b + $4 * interval '1 millisecond'),
       s.count, s.first, s.last, s.newest
FROM unnest($1::integer[]) AS c (id)
CROSS JOIN LATERAL (
"
    };
}

/// The bucket query for raw readings: per channel (so each channel's rows
/// arrive in index order and its plan stays small whatever the channel
/// count), its readings binned into `b`, with `first` and `last` taken from
/// the rows that open and close each bin. `{rows}` yields, for channel `c.id`, the columns
/// bucket (row time), min, max, sum, count, first, last, last_ts and b.
macro_rules! bucket_query {
    ($rows:expr) => {
        concat!(
            per_channel_buckets!(),
            "    SELECT b, min(min) AS min, max(max) AS max, ",
            sum_of!("sum"),
            " AS sum,
           sum(count)::bigint AS count,
           max(first) FILTER (WHERE opens) AS first,
           max(last) FILTER (WHERE closes) AS last,
           max(last_ts) AS newest
    FROM (
        SELECT *, b IS DISTINCT FROM lag(b) OVER w AS opens,
                  b IS DISTINCT FROM lead(b) OVER w AS closes
        FROM (",
            $rows,
            ") AS x
        WINDOW w AS (ORDER BY bucket)
    ) AS y
    GROUP BY b
) AS s"
        )
    };
}

/// Bins on the UTC grid (`$4` ms wide, aligned to the epoch).
macro_rules! utc_bin {
    ($column:literal) => {
        concat!(
            "date_bin($4 * interval '1 millisecond', ",
            $column,
            ", timestamptz 'epoch')"
        )
    };
}

/// Bins on the wall clock of zone `$6`: from local midnight, `$4` ms wide.
macro_rules! local_bin {
    ($column:literal) => {
        concat!(
            "(date_bin($4 * interval '1 millisecond', ",
            $column,
            " AT TIME ZONE $6, timestamp '2000-01-01') AT TIME ZONE $6)"
        )
    };
}

/// The end of the UTC bin starting at `g.b`.
macro_rules! utc_bin_end {
    () => {
        "g.b + $4 * interval '1 millisecond'"
    };
}

/// The end of the wall-clock bin starting at `g.b`: its local start plus
/// the width on the wall clock (a day bucket may be 23 or 25 hours long).
macro_rules! local_bin_end {
    () => {
        "((g.b AT TIME ZONE $6) + $4 * interval '1 millisecond') AT TIME ZONE $6"
    };
}

/// Rollup rows of channel `c.id` in `[$2, $3)`, with each row's width
/// `res`. Before `$5` (the start of the tier's bucket holding the earliest
/// dirty minute of the request, or `$3`) the tier's table is current and
/// read directly; from `$5` on, the minutes' exact view, which reads dirty
/// minutes from raw rows. Bins are whole tier buckets, so a bin may hold
/// both. (Reading the range through the tier's own exact view would
/// recompute each dirty bucket through every finer tier's view: fine on
/// plain tables, tens of times slower over TimescaleDB's aggregates.)
macro_rules! rollup_rows {
    ($table:literal, $resolution_ms:literal, $bin:expr) => {
        concat!(
            "SELECT bucket, ",
            $resolution_ms,
            " AS res, min, max, sum, count, first, last, last_ts, ",
            $bin,
            " AS b FROM ",
            $table,
            " WHERE channel_id = c.id AND bucket >= $2 AND bucket < $5
            UNION ALL
            SELECT bucket, 60000 AS res, min, max, sum, count, first, last, last_ts, ",
            $bin,
            " AS b FROM history_1m WHERE channel_id = c.id AND bucket >= $5 AND bucket < $3"
        )
    };
}

/// The bucket query for a rollup tier: per channel, its rows binned into
/// `b`. `first` and `last` come from the rows that open the bin and close
/// it (at `b`, and ending at `b` plus the width), a cheap filter; only
/// where data has a hole at a bin's edge (or a wall-clock bin is not its
/// nominal width) is the real first or last row looked up, one index probe
/// in the table (before `$5`) or the minutes' view. (A window over every
/// row to find the edges cost twice as much; see docs/design/history.md.)
macro_rules! rollup_query {
    ($table:literal, $resolution_ms:literal, $bin:expr, $bin_end:expr) => {
        concat!(
            "SELECT c.id, g.b, g.min, g.max, rollup_avg(g.sum, g.count, c.id, g.b, ",
            $bin_end,
            "), g.count,
       coalesce(g.first_nominal,
           CASE WHEN g.first_at < $5
                THEN (SELECT t.first FROM ",
            $table,
            " AS t WHERE t.channel_id = c.id AND t.bucket = g.first_at)
                ELSE (SELECT m.first FROM history_1m AS m
                      WHERE m.channel_id = c.id AND m.bucket = g.first_at) END),
       coalesce(g.last_nominal,
           CASE WHEN g.last_at < $5
                THEN (SELECT t.last FROM ",
            $table,
            " AS t WHERE t.channel_id = c.id AND t.bucket = g.last_at)
                ELSE (SELECT m.last FROM history_1m AS m
                      WHERE m.channel_id = c.id AND m.bucket = g.last_at) END),
       g.newest
FROM unnest($1::integer[]) AS c (id)
CROSS JOIN LATERAL (
    SELECT b, min(min) AS min, max(max) AS max, ",
            sum_of!("sum"),
            " AS sum,
           sum(count)::bigint AS count,
           min(bucket) AS first_at, max(bucket) AS last_at,
           max(first) FILTER (WHERE bucket = b) AS first_nominal,
           max(last) FILTER (WHERE bucket + (res - $4) * interval '1 millisecond' = b)
               AS last_nominal,
           max(last_ts) AS newest
    FROM (",
            rollup_rows!($table, $resolution_ms, $bin),
            ") AS x
    GROUP BY b
) AS g"
        )
    };
}

/// The bucket query for a width equal to a UTC tier's own: each settled
/// bucket is one row of the tier's table, read as it is (no binning, no
/// grouping: the bulk of a many-channel week), and only from `$5` on,
/// where minutes are dirty, are the minutes' exact rows binned and grouped.
/// Answers exactly as `rollup_query!` over the same tier.
macro_rules! tier_rows_query {
    ($table:literal) => {
        concat!(
            per_channel_buckets!(),
            "    SELECT bucket AS b, min, max, sum, count, first, last, last_ts AS newest
    FROM ",
            $table,
            " WHERE channel_id = c.id AND bucket >= $2 AND bucket < $5
    UNION ALL
    SELECT b, min(min), max(max), ",
            sum_of!("sum"),
            ", sum(count)::bigint,
           (array_agg(first ORDER BY bucket))[1],
           (array_agg(last ORDER BY bucket DESC))[1],
           max(last_ts)
    FROM (
        SELECT *, ",
            utc_bin!("bucket"),
            " AS b FROM history_1m
        WHERE channel_id = c.id AND bucket >= $5 AND bucket < $3
    ) AS m
    GROUP BY b
) AS s"
        )
    };
}

const FROM_READINGS: &str = bucket_query!(concat!(
    "SELECT ts AS bucket, value AS min, value AS max, value AS sum, 1::bigint AS count,
            value AS first, value AS last, ts AS last_ts, ",
    utc_bin!("ts"),
    " AS b FROM readings WHERE channel_id = c.id AND ts >= $2 AND ts < $3"
));
const FROM_MINUTES: &str =
    rollup_query!("readings_1m", "60000", utc_bin!("bucket"), utc_bin_end!());
const FROM_5M: &str = rollup_query!("readings_5m", "300000", utc_bin!("bucket"), utc_bin_end!());
const FROM_15M: &str = rollup_query!("readings_15m", "900000", utc_bin!("bucket"), utc_bin_end!());
const FROM_HOURS: &str =
    rollup_query!("readings_1h", "3600000", utc_bin!("bucket"), utc_bin_end!());
const FROM_HOURS_WALL_CLOCK: &str = rollup_query!(
    "readings_1h",
    "3600000",
    local_bin!("bucket"),
    local_bin_end!()
);
const MINUTE_ROWS: &str = tier_rows_query!("readings_1m");
const FIVE_MINUTE_ROWS: &str = tier_rows_query!("readings_5m");
const QUARTER_HOUR_ROWS: &str = tier_rows_query!("readings_15m");
const HOUR_ROWS: &str = tier_rows_query!("readings_1h");
/// The six-hour tier is on the wall clock of the zone it was built for,
/// which is the yard's (or UTC when PostgreSQL does not know that).
const FROM_6H: &str = rollup_query!(
    "readings_6h",
    "21600000",
    local_bin!("bucket"),
    local_bin_end!()
);

/// Which bucket query a plan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketQuery {
    /// `$1` ids, `$2` from, `$3` to, `$4` width ms.
    Readings,
    /// As `Readings`, plus `$5` the start of the exact (dirty) range.
    Minutes,
    FiveMinutes,
    QuarterHours,
    Hours,
    /// As `Hours`, plus `$6` the zone.
    HoursWallClock,
    SixHours,
    /// A tier's rows as the buckets, for a width equal to the tier's own on
    /// the UTC grid; parameters as `Minutes`.
    MinuteRows,
    FiveMinuteRows,
    QuarterHourRows,
    HourRows,
    /// The minute rollup for any width of whole minutes: what answered
    /// every width from a minute to an hour before the finer tiers. Not
    /// planned; the benchmark runs it to show what the tiers save.
    MinutesOnly,
}

impl BucketQuery {
    pub fn for_plan(plan: Plan, zone: Option<&str>) -> Self {
        let whole_tier = |tier: Tier| plan.bucket_ms == tier.width_ms();
        match plan.source {
            HistorySource::Minute if whole_tier(Tier::Minute) => Self::MinuteRows,
            HistorySource::FiveMinute if whole_tier(Tier::FiveMinutes) => Self::FiveMinuteRows,
            HistorySource::QuarterHour if whole_tier(Tier::QuarterHour) => Self::QuarterHourRows,
            HistorySource::Hour if whole_tier(Tier::Hour) && !plan.follows_wall_clock() => {
                Self::HourRows
            }
            HistorySource::Raw => Self::Readings,
            HistorySource::Minute => Self::Minutes,
            HistorySource::FiveMinute => Self::FiveMinutes,
            HistorySource::QuarterHour => Self::QuarterHours,
            HistorySource::Hour if plan.follows_wall_clock() && zone.is_some() => {
                Self::HoursWallClock
            }
            HistorySource::Hour => Self::Hours,
            HistorySource::SixHour => Self::SixHours,
        }
    }

    /// The rollup tier read, if any.
    pub fn tier(self) -> Option<Tier> {
        match self {
            Self::Readings => None,
            Self::Minutes | Self::MinuteRows | Self::MinutesOnly => Some(Tier::Minute),
            Self::FiveMinutes | Self::FiveMinuteRows => Some(Tier::FiveMinutes),
            Self::QuarterHours | Self::QuarterHourRows => Some(Tier::QuarterHour),
            Self::Hours | Self::HourRows | Self::HoursWallClock => Some(Tier::Hour),
            Self::SixHours => Some(Tier::SixHours),
        }
    }

    /// Whether the statement takes the zone as `$6`.
    pub fn takes_zone(self) -> bool {
        matches!(self, Self::HoursWallClock | Self::SixHours)
    }

    /// The statement, exactly as the API runs it (the benchmark runs it
    /// bare to measure what the API adds).
    pub fn sql(self) -> &'static str {
        match self {
            Self::Readings => FROM_READINGS,
            Self::Minutes | Self::MinutesOnly => FROM_MINUTES,
            Self::FiveMinutes => FROM_5M,
            Self::QuarterHours => FROM_15M,
            Self::Hours => FROM_HOURS,
            Self::HoursWallClock => FROM_HOURS_WALL_CLOCK,
            Self::SixHours => FROM_6H,
            Self::MinuteRows => MINUTE_ROWS,
            Self::FiveMinuteRows => FIVE_MINUTE_ROWS,
            Self::QuarterHourRows => QUARTER_HOUR_ROWS,
            Self::HourRows => HOUR_ROWS,
        }
    }
}
