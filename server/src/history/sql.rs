//! The bucket statements, one per source, written as `macro_rules!`
//! fragments so that each is one `&'static str` the benchmark can run bare.
//!
//! Sums are `sum_of!` (overflow-free for any finite reading), and a
//! bucket's average is `rollup_avg`: sum / count, or the raw readings' mean
//! where the sum is beyond the double range (migration 20261207100000).

use super::plan::Plan;
use crate::store::rollup::sum_of;
use trackside_wire::HistorySource;

/// The bucket query for raw readings: per channel (so each channel's rows
/// arrive in index order and its plan stays small whatever the channel
/// count), its readings binned into `b`, with `first` and `last` taken from
/// the rows that open and close each bin. `{rows}` yields, for channel `c.id`, the columns
/// bucket (row time), min, max, sum, count, first, last, last_ts and b.
macro_rules! bucket_query {
    ($rows:expr) => {
        concat!(
            "SELECT c.id, s.b, s.min, s.max,
       rollup_avg(s.sum, s.count, c.id, s.b, s.b + $4 * interval '1 millisecond'),
       s.count, s.first, s.last, s.newest
FROM unnest($1::integer[]) AS c (id)
CROSS JOIN LATERAL (
    SELECT b, min(min) AS min, max(max) AS max, ",
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

/// Rollup rows of channel `c.id` in `[$2, $3)`. Before `$5` (the earliest
/// dirty minute of the request, or `$3`) the rollup table is current and
/// read directly; from `$5` on, the exact view, which reads dirty minutes
/// from raw rows. Reading the whole range through the view would cost an
/// anti-join per row.
macro_rules! rollup_rows {
    ($table:literal, $view:literal, $bin:expr) => {
        concat!(
            "SELECT bucket, min, max, sum, count, first, last, last_ts, ",
            $bin,
            " AS b FROM ",
            $table,
            " WHERE channel_id = c.id AND bucket >= $2 AND bucket < $5
            UNION ALL
            SELECT bucket, min, max, sum, count, first, last, last_ts, ",
            $bin,
            " AS b FROM ",
            $view,
            " WHERE channel_id = c.id AND bucket >= $5 AND bucket < $3"
        )
    };
}

/// The bucket query for a rollup: per channel, its rows binned into `b`.
/// `first` and `last` come from the rows at the bin's nominal first and
/// last minute (or hour), a cheap filter; only where data has a hole at a
/// bin's edge is the real first or last row looked up, one index probe in
/// the exact view. (A window over every row to find the edges cost twice
/// as much; see docs/design/history.md.)
macro_rules! rollup_query {
    ($table:literal, $view:literal, $resolution_ms:literal, $bin:expr, $bin_end:expr) => {
        concat!(
            "SELECT c.id, g.b, g.min, g.max, rollup_avg(g.sum, g.count, c.id, g.b, ",
            $bin_end,
            "), g.count,
       CASE WHEN g.first_at = g.b THEN g.first_nominal
            ELSE (SELECT v.first FROM ",
            $view,
            " AS v WHERE v.channel_id = c.id AND v.bucket = g.first_at) END,
       CASE WHEN g.last_at = g.b + ($4 - ",
            $resolution_ms,
            ") * interval '1 millisecond' THEN g.last_nominal
            ELSE (SELECT v.last FROM ",
            $view,
            " AS v WHERE v.channel_id = c.id AND v.bucket = g.last_at) END,
       g.newest
FROM unnest($1::integer[]) AS c (id)
CROSS JOIN LATERAL (
    SELECT b, min(min) AS min, max(max) AS max, ",
            sum_of!("sum"),
            " AS sum,
           sum(count)::bigint AS count,
           min(bucket) AS first_at, max(bucket) AS last_at,
           max(first) FILTER (WHERE bucket = b) AS first_nominal,
           max(last) FILTER (WHERE bucket = b + ($4 - ",
            $resolution_ms,
            ") * interval '1 millisecond') AS last_nominal,
           max(last_ts) AS newest
    FROM (",
            rollup_rows!($table, $view, $bin),
            ") AS x
    GROUP BY b
) AS g"
        )
    };
}

const FROM_READINGS: &str = bucket_query!(concat!(
    "SELECT ts AS bucket, value AS min, value AS max, value AS sum, 1::bigint AS count,
            value AS first, value AS last, ts AS last_ts, ",
    utc_bin!("ts"),
    " AS b FROM readings WHERE channel_id = c.id AND ts >= $2 AND ts < $3"
));
const FROM_MINUTES: &str = rollup_query!(
    "readings_1m",
    "history_1m",
    "60000",
    utc_bin!("bucket"),
    utc_bin_end!()
);
const FROM_HOURS: &str = rollup_query!(
    "readings_1h",
    "history_1h",
    "3600000",
    utc_bin!("bucket"),
    utc_bin_end!()
);
const FROM_HOURS_WALL_CLOCK: &str = rollup_query!(
    "readings_1h",
    "history_1h",
    "3600000",
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
    Hours,
    /// As `Hours`, plus `$6` the yard's zone.
    HoursWallClock,
}

impl BucketQuery {
    pub fn for_plan(plan: Plan, zone: Option<&str>) -> Self {
        match plan.source {
            HistorySource::Raw => Self::Readings,
            HistorySource::Minute => Self::Minutes,
            HistorySource::Hour if plan.follows_wall_clock() && zone.is_some() => {
                Self::HoursWallClock
            }
            HistorySource::Hour => Self::Hours,
        }
    }

    /// The statement, exactly as the API runs it (the benchmark runs it
    /// bare to measure what the API adds).
    pub fn sql(self) -> &'static str {
        match self {
            Self::Readings => FROM_READINGS,
            Self::Minutes => FROM_MINUTES,
            Self::Hours => FROM_HOURS,
            Self::HoursWallClock => FROM_HOURS_WALL_CLOCK,
        }
    }
}
