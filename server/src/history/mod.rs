//! `GET /api/history`: channels over a time range at the resolution a chart
//! of about `points` pixels needs, answered from the cheapest stored data
//! that is fine enough.
//!
//! Resolution (see docs/design/history.md): the bucket width is the
//! smallest step of [`LADDER_MS`] that is at least `(to - from) / points`.
//! Widths of a minute or more read the minute rollup, an hour or more the
//! hour rollup, anything finer the readings; a channel with at most
//! `2 × points` readings in the range is sent as the readings themselves.
//! Buckets up to an hour wide are aligned to UTC; wider ones to the yard's
//! wall clock, so a day bucket runs from local midnight to local midnight.
//! Every bucket on the grid is in the answer, with `count` 0 when empty,
//! so a chart breaks its line at an outage.

mod plan;
mod sql;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Semaphore;
use trackside_wire::{
    ChannelName, History, HistorySeries, HistorySource, MAX_CHANNELS, MAX_POINTS, MAX_RANGE_DAYS,
    SeriesData,
};

use crate::config::HistoryConfig;
use crate::http::{AppError, AppState};
use crate::store::rollup;
use crate::time::{DAY_MS, MINUTE_MS, parse_time};

pub use plan::{LADDER_MS, Plan, utc_grid};
pub use sql::BucketQuery;

/// The `points` a request gets when it names none.
pub const DEFAULT_POINTS: u32 = 1_000;

/// A channel with at most this many times `points` readings in the range
/// is answered with the readings themselves. Bucketing sparser data would
/// leave empty buckets between readings, which would read as outages.
const READINGS_PER_POINT: i64 = 2;

/// Most raw rows one request may aggregate; beyond it the request is
/// answered from the minute rollup in one-minute buckets instead.
const RAW_ROW_BUDGET: i64 = 3_000_000;

/// Concurrent history requests; more wait their turn, so a few heavy
/// charts cannot take every database connection from the store writer.
const CONCURRENT_REQUESTS: usize = 4;

/// What the history handler needs beyond the shared state.
pub struct HistorySettings {
    pub config: HistoryConfig,
    /// The yard's zone when PostgreSQL knows it; wide buckets follow its
    /// wall clock. `None` aligns them to UTC.
    pub zone: Option<String>,
    permits: Semaphore,
}

impl HistorySettings {
    /// Checks the yard's zone against PostgreSQL's time-zone database: a
    /// typo in configuration must not make every wide history request fail.
    pub async fn new(pool: &PgPool, config: HistoryConfig, zone: &str) -> Arc<Self> {
        let known = sqlx::query("SELECT now() AT TIME ZONE $1")
            .bind(zone)
            .execute(pool)
            .await;
        let zone = match known {
            Ok(_) => Some(zone.to_owned()),
            Err(err) => {
                tracing::warn!(
                    zone,
                    "PostgreSQL does not know the yard's time zone ({err}); \
                     history buckets wider than an hour are aligned to UTC"
                );
                None
            }
        };
        Arc::new(Self {
            config,
            zone,
            permits: Semaphore::new(CONCURRENT_REQUESTS),
        })
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/api/history", get(history))
}

/// This area's routes in the OpenAPI description (`http::openapi`): a
/// handler with `#[utoipa::path]` is listed here.
#[derive(utoipa::OpenApi)]
#[openapi(paths(history))]
pub struct Api;

/// The query string. Times are RFC 3339 or integer Unix milliseconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Params {
    pub channels: String,
    pub from: String,
    pub to: String,
    pub points: Option<u32>,
}

/// A checked request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub channels: Vec<String>,
    pub from: i64,
    pub to: i64,
    pub points: u32,
}

#[utoipa::path(
    get, path = "/api/history", tag = "history",
    summary = "Readings over an interval, for a chart",
    description = "Raw readings when few enough, otherwise min/max/mean buckets from the best rollup tier; at most `points` per series.",
    params(Params),
    responses(
        (status = 200, description = "One series per channel", body = trackside_wire::History),
        (status = 400, description = "A parameter is not valid", body = trackside_wire::ApiError),
        (status = 503, description = "The server is shutting down", body = trackside_wire::ApiError),
    )
)]
async fn history(
    State(state): State<AppState>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Json<History>, AppError> {
    let Query(params) = params.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let request = Request::parse(&params).map_err(AppError::BadRequest)?;
    let settings = &state.history;
    let _permit = settings
        .permits
        .acquire()
        .await
        .map_err(|_| AppError::Unavailable("the server is shutting down".into()))?;
    let answer = answer(&state.pool, settings, &request, Utc::now()).await?;
    Ok(Json(answer))
}

impl Request {
    pub fn parse(params: &Params) -> Result<Self, String> {
        let mut channels: Vec<String> = Vec::new();
        for name in params.channels.split(',').map(str::trim) {
            if name.is_empty() {
                continue;
            }
            ChannelName::parse(name).map_err(|e| format!("channel {name:?}: {e}"))?;
            if channels.iter().any(|c| c == name) {
                return Err(format!("channel {name:?} is listed twice"));
            }
            channels.push(name.to_owned());
        }
        if channels.is_empty() {
            return Err("channels is empty: name one or more, comma-separated, \
                        for example channels=T101/relay_voltage,T102/relay_voltage"
                .into());
        }
        if channels.len() > MAX_CHANNELS {
            return Err(format!(
                "{} channels requested; at most {MAX_CHANNELS} per request",
                channels.len()
            ));
        }
        let from = parse_time("from", &params.from)?;
        let to = parse_time("to", &params.to)?;
        if from >= to {
            return Err("from must be before to".into());
        }
        if to - from > MAX_RANGE_DAYS * DAY_MS {
            return Err(format!(
                "the range is longer than {MAX_RANGE_DAYS} days; ask for less"
            ));
        }
        let points = params.points.unwrap_or(DEFAULT_POINTS);
        if !(1..=MAX_POINTS).contains(&points) {
            return Err(format!("points must be between 1 and {MAX_POINTS}"));
        }
        Ok(Self {
            channels,
            from,
            to,
            points,
        })
    }
}

/// A channel as the request names it, with what the database says of it.
#[derive(Debug, Clone)]
struct Channel {
    name: String,
    id: i32,
    unit: Option<String>,
}

/// One bucket of one channel as SQL returns it.
type BucketRow = (
    i32,           // channel id
    DateTime<Utc>, // bucket start
    f64,           // min
    f64,           // max
    Option<f64>,   // avg (none once the readings of an overflowing sum are gone)
    i64,           // count
    f64,           // first
    f64,           // last
    DateTime<Utc>, // newest reading
);

/// Computes the answer. Every query runs in one read-only, repeatable-read
/// transaction, so the channels' figures come from one snapshot.
pub async fn answer(
    pool: &PgPool,
    settings: &HistorySettings,
    request: &Request,
    now: DateTime<Utc>,
) -> Result<History, AppError> {
    let raw_from = rollup::raw_horizon(&settings.config, now).map(|t| t.timestamp_millis());
    let minute_from = rollup::minute_horizon(&settings.config, now).map(|t| t.timestamp_millis());
    let mut plan = Plan::choose(
        request.from,
        request.to,
        request.points,
        raw_from,
        minute_from,
    );
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    // JIT compilation costs tens of milliseconds on these short queries
    // and never pays back; the timeout bounds a request gone wrong.
    // A custom plan per execution: the planner must see how many rows the
    // range and split really select, or it picks a sort that spills.
    sqlx::query(
        "SELECT set_config('jit', 'off', true),
                set_config('plan_cache_mode', 'force_custom_plan', true),
                set_config('statement_timeout', '20s', true)",
    )
    .execute(&mut *tx)
    .await?;
    let channels = resolve_channels(&mut tx, &request.channels).await?;

    let mut readings: Vec<(usize, Vec<(i64, f64)>)> = Vec::new();
    let mut bucketed: Vec<usize> = (0..channels.len()).collect();
    if plan.source == HistorySource::Raw {
        let cap = i64::from(request.points) * READINGS_PER_POINT;
        let counts = raw_counts(&mut tx, &channels, request.from, request.to).await?;
        let heavy: i64 = counts.iter().filter(|&&n| n > cap).sum();
        if heavy > RAW_ROW_BUDGET {
            plan = Plan::for_width(MINUTE_MS);
        } else {
            let sparse: Vec<usize> = (0..channels.len()).filter(|&i| counts[i] <= cap).collect();
            bucketed.retain(|i| !sparse.contains(i));
            readings = fetch_readings(&mut tx, &channels, &sparse, request, cap).await?;
        }
    }

    let (grid, grid_end) = if plan.follows_wall_clock()
        && let Some(zone) = &settings.zone
    {
        local_grid(&mut tx, request.from, request.to, plan.bucket_ms, zone).await?
    } else {
        utc_grid(request.from, request.to, plan.bucket_ms)
    };
    let ids: Vec<i32> = bucketed.iter().map(|&i| channels[i].id).collect();
    let rows = if ids.is_empty() {
        Vec::new()
    } else {
        let zone = settings.zone.as_deref();
        let query = BucketQuery::for_plan(plan, zone);
        bucket_rows(
            &mut tx,
            query,
            plan,
            &ids,
            grid[0],
            grid_end,
            zone.unwrap_or("UTC"),
        )
        .await?
    };
    tx.commit().await?;

    let mut series: Vec<Option<HistorySeries>> = vec![None; channels.len()];
    for (index, points) in readings {
        let channel = &channels[index];
        series[index] = Some(HistorySeries {
            channel: channel.name.clone(),
            unit: channel.unit.clone(),
            newest: points.last().map(|&(t, _)| t),
            data: readings_with_gaps(&points),
        });
    }
    let mut by_channel: HashMap<i32, Vec<&BucketRow>> = HashMap::new();
    for row in &rows {
        by_channel.entry(row.0).or_default().push(row);
    }
    for &index in &bucketed {
        let channel = &channels[index];
        let mine = by_channel.remove(&channel.id).unwrap_or_default();
        series[index] = Some(fill_grid(channel, &grid, mine.into_iter()));
    }
    Ok(History {
        from: request.from,
        to: request.to,
        source: plan.source,
        bucket_ms: plan.bucket_ms,
        series: series.into_iter().flatten().collect(),
    })
}

async fn resolve_channels(
    conn: &mut PgConnection,
    names: &[String],
) -> Result<Vec<Channel>, AppError> {
    let found: Vec<(String, i32, Option<String>)> =
        sqlx::query_as("SELECT name, id, unit FROM channels WHERE name = ANY($1)")
            .bind(names)
            .fetch_all(&mut *conn)
            .await?;
    let mut channels = Vec::with_capacity(names.len());
    let mut unknown = Vec::new();
    for name in names {
        match found.iter().find(|(n, _, _)| n == name) {
            Some((_, id, unit)) => channels.push(Channel {
                name: name.clone(),
                id: *id,
                unit: unit.clone(),
            }),
            None => unknown.push(name.as_str()),
        }
    }
    if !unknown.is_empty() {
        return Err(AppError::BadRequest(format!(
            "no such channel: {} (GET /api/channels lists them)",
            unknown.join(", ")
        )));
    }
    Ok(channels)
}

/// Readings per channel in `[from, to)`, or slightly more: counted from the
/// minute rollup over whole minutes, which costs one row per minute
/// instead of one per reading. Only compared with limits, never shown.
async fn raw_counts(
    conn: &mut PgConnection,
    channels: &[Channel],
    from: i64,
    to: i64,
) -> Result<Vec<i64>, AppError> {
    let ids: Vec<i32> = channels.iter().map(|c| c.id).collect();
    let lo = ms_to_time(from.div_euclid(MINUTE_MS) * MINUTE_MS)?;
    let hi = ms_to_time(to)?;
    let counts: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT channel_id, sum(count)::bigint FROM history_1m
         WHERE channel_id = ANY($1) AND bucket >= $2 AND bucket < $3
         GROUP BY channel_id",
    )
    .bind(&ids)
    .bind(lo)
    .bind(hi)
    .fetch_all(&mut *conn)
    .await?;
    Ok(channels
        .iter()
        .map(|c| {
            counts
                .iter()
                .find(|(id, _)| *id == c.id)
                .map_or(0, |&(_, n)| n)
        })
        .collect())
}

async fn fetch_readings(
    conn: &mut PgConnection,
    channels: &[Channel],
    which: &[usize],
    request: &Request,
    cap: i64,
) -> Result<Vec<(usize, Vec<(i64, f64)>)>, AppError> {
    if which.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i32> = which.iter().map(|&i| channels[i].id).collect();
    // The LIMIT guards against readings stored after the count: the
    // answer stays bounded whatever arrives meanwhile.
    let rows: Vec<(i32, DateTime<Utc>, f64)> = sqlx::query_as(
        "SELECT c.id, r.ts, r.value
         FROM unnest($1::integer[]) AS c (id)
         CROSS JOIN LATERAL (
             SELECT ts, value FROM readings
             WHERE channel_id = c.id AND ts >= $2 AND ts < $3
             ORDER BY ts LIMIT $4
         ) r",
    )
    .bind(&ids)
    .bind(ms_to_time(request.from)?)
    .bind(ms_to_time(request.to)?)
    .bind(cap)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_channel: HashMap<i32, Vec<(i64, f64)>> = HashMap::new();
    for (id, ts, value) in rows {
        by_channel
            .entry(id)
            .or_default()
            .push((ts.timestamp_millis(), value));
    }
    Ok(which
        .iter()
        .map(|&i| (i, by_channel.remove(&channels[i].id).unwrap_or_default()))
        .collect())
}

/// The wall-clock grid: bucket starts in the yard's zone from the bucket
/// holding `from` to before `to`, as UTC instants, plus the end of the
/// last bucket. PostgreSQL's time-zone database places them, the same one
/// that assigns readings to buckets in [`bucket_rows`], so the two agree.
async fn local_grid(
    conn: &mut PgConnection,
    from: i64,
    to: i64,
    width: i64,
    zone: &str,
) -> Result<(Vec<i64>, i64), AppError> {
    let starts: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT DISTINCT g AT TIME ZONE $4
         FROM generate_series(
             date_bin($3 * interval '1 millisecond', $1 AT TIME ZONE $4, timestamp '2000-01-01'),
             ($2 AT TIME ZONE $4) + $3 * interval '1 millisecond',
             $3 * interval '1 millisecond') AS g
         ORDER BY 1",
    )
    .bind(ms_to_time(from)?)
    .bind(ms_to_time(to)?)
    .bind(width)
    .bind(zone)
    .fetch_all(&mut *conn)
    .await?;
    let mut starts: Vec<i64> = starts.iter().map(DateTime::timestamp_millis).collect();
    let end_index = starts.iter().position(|&t| t >= to).unwrap_or(starts.len());
    let end = starts.get(end_index).copied();
    starts.truncate(end_index);
    let end = end.unwrap_or_else(|| starts.last().map_or(to, |&t| t + width));
    Ok((starts, end))
}

async fn bucket_rows(
    conn: &mut PgConnection,
    query: BucketQuery,
    plan: Plan,
    ids: &[i32],
    lo: i64,
    hi: i64,
    zone: &str,
) -> Result<Vec<BucketRow>, AppError> {
    let (lo, hi) = (ms_to_time(lo)?, ms_to_time(hi)?);
    let split = match query.tier() {
        None => None,
        Some(tier) => Some(rollup::dirty_split(&mut *conn, tier, ids, lo, hi, zone).await?),
    };
    let mut statement = sqlx::query_as(query.sql())
        .bind(ids)
        .bind(lo)
        .bind(hi)
        .bind(plan.bucket_ms);
    if let Some(split) = split {
        statement = statement.bind(split);
    }
    if query.takes_zone() {
        statement = statement.bind(zone);
    }
    Ok(statement.fetch_all(conn).await?)
}

fn ms_to_time(ms: i64) -> Result<DateTime<Utc>, AppError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| AppError::BadRequest(format!("{ms} is outside the supported time range")))
}

/// One channel's buckets on the grid, empty ones explicit.
fn fill_grid<'a>(
    channel: &Channel,
    grid: &[i64],
    rows: impl Iterator<Item = &'a BucketRow>,
) -> HistorySeries {
    let n = grid.len();
    let mut count = vec![0u64; n];
    let (mut min, mut max, mut avg) = (vec![None; n], vec![None; n], vec![None; n]);
    let (mut first, mut last) = (vec![None; n], vec![None; n]);
    let mut newest: Option<i64> = None;
    for &(_, b, lo, hi, mean, n_readings, f, l, latest) in rows {
        let Ok(i) = grid.binary_search(&b.timestamp_millis()) else {
            // Cannot happen while the grid and the query bin alike; a
            // bucket off the grid is left out rather than misplaced.
            tracing::warn!(channel = channel.name, bucket = %b, "history bucket off the grid");
            continue;
        };
        count[i] = n_readings.max(0) as u64;
        min[i] = Some(lo);
        max[i] = Some(hi);
        // Rounding may put a mean a hair outside its extremes.
        avg[i] = mean.filter(|m| m.is_finite()).map(|m| m.max(lo).min(hi));
        first[i] = Some(f);
        last[i] = Some(l);
        let latest = latest.timestamp_millis();
        newest = Some(newest.map_or(latest, |n| n.max(latest)));
    }
    HistorySeries {
        channel: channel.name.clone(),
        unit: channel.unit.clone(),
        newest,
        data: SeriesData::Buckets {
            t: grid.to_vec(),
            count,
            min,
            max,
            avg,
            first,
            last,
        },
    }
}

/// Readings with a gap marker (a `null` 1 ms after a reading) wherever the
/// next reading is more than three median spacings away.
pub fn readings_with_gaps(points: &[(i64, f64)]) -> SeriesData {
    let mut spacings: Vec<i64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let threshold = if spacings.len() >= 2 {
        let middle = spacings.len() / 2;
        let (_, median, _) = spacings.select_nth_unstable(middle);
        Some((*median).max(1) * 3)
    } else {
        None
    };
    let mut t = Vec::with_capacity(points.len());
    let mut value = Vec::with_capacity(points.len());
    for (i, &(ts, v)) in points.iter().enumerate() {
        t.push(ts);
        value.push(Some(v));
        if let (Some(threshold), Some(&(next, _))) = (threshold, points.get(i + 1))
            && next - ts > threshold
        {
            t.push(ts + 1);
            value.push(None);
        }
    }
    SeriesData::Readings { t, value }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::HOUR_MS;

    fn params(channels: &str, from: &str, to: &str, points: Option<u32>) -> Params {
        Params {
            channels: channels.into(),
            from: from.into(),
            to: to.into(),
            points,
        }
    }

    fn check_rejected(p: Params, expected: &str) {
        let err = Request::parse(&p).unwrap_err();
        assert!(
            err.contains(expected),
            "{err:?} should mention {expected:?}"
        );
    }

    #[test]
    fn requests_are_checked() {
        let ok = Request::parse(&params(
            "T1/relay_voltage, T2/feed_current",
            "2026-11-28T09:00:00Z",
            "1795860000000", // 10:00:00Z
            None,
        ))
        .unwrap();
        assert_eq!(ok.channels, ["T1/relay_voltage", "T2/feed_current"]);
        assert_eq!(ok.from, 1_795_860_000_000 - HOUR_MS);
        assert_eq!(ok.points, DEFAULT_POINTS);

        let day = "2026-11-28T00:00:00Z";
        let later = "2026-11-28T01:00:00+01:00"; // the same instant
        check_rejected(params("", day, "1795860000000", None), "channels is empty");
        check_rejected(params("T1", day, "1795860000000", None), "channel \"T1\"");
        check_rejected(params("T1/a,T1/a", day, "1795860000000", None), "twice");
        check_rejected(params("T1/a", day, later, None), "from must be before to");
        check_rejected(params("T1/a", "yesterday", day, None), "from=\"yesterday\"");
        check_rejected(params("T1/a", "0", "1000", Some(0)), "points");
        check_rejected(params("T1/a", "0", "1000", Some(5001)), "points");
        check_rejected(params("T1/a", "0", "1795860000000", None), "longer than");
        check_rejected(params("T1/a", "-5", "5", None), "after 1970");
        let many: Vec<String> = (0..101).map(|i| format!("T{i}/relay_state")).collect();
        check_rejected(params(&many.join(","), "0", "1", None), "at most 100");
    }

    #[test]
    fn the_width_picks_the_source() {
        let check = |range_ms: i64, points: u32, width: i64, source: HistorySource| {
            let plan = Plan::choose(0, range_ms, points, None, None);
            assert_eq!(
                (plan.bucket_ms, plan.source),
                (width, source),
                "{range_ms} ms at {points} points"
            );
        };
        check(15 * MINUTE_MS, 1000, 1_000, HistorySource::Raw);
        check(HOUR_MS, 1000, 5_000, HistorySource::Raw);
        check(6 * HOUR_MS, 1000, 30_000, HistorySource::Raw);
        check(24 * HOUR_MS, 1000, 120_000, HistorySource::Minute);
        check(3 * DAY_MS, 1000, 300_000, HistorySource::FiveMinute);
        check(5 * DAY_MS, 1000, 600_000, HistorySource::FiveMinute);
        check(7 * DAY_MS, 1000, 900_000, HistorySource::QuarterHour);
        check(14 * DAY_MS, 1000, 1_800_000, HistorySource::QuarterHour);
        check(7 * DAY_MS, 168, HOUR_MS, HistorySource::Hour);
        check(30 * DAY_MS, 1000, HOUR_MS, HistorySource::Hour);
        check(30 * DAY_MS, 300, 3 * HOUR_MS, HistorySource::Hour);
        check(90 * DAY_MS, 1000, 3 * HOUR_MS, HistorySource::Hour);
        check(180 * DAY_MS, 1000, 6 * HOUR_MS, HistorySource::SixHour);
        check(365 * DAY_MS, 1000, 12 * HOUR_MS, HistorySource::SixHour);
        check(30 * DAY_MS, 10, DAY_MS, HistorySource::SixHour);
        check(3_000 * DAY_MS, 1, DAY_MS, HistorySource::SixHour);
        check(1_000, 1000, 10, HistorySource::Raw);
        // exactly on a step stays on it
        check(MINUTE_MS * 1000, 1000, MINUTE_MS, HistorySource::Minute);
    }

    #[test]
    fn retention_moves_a_range_to_coarser_data() {
        let (from, to) = (10 * DAY_MS, 10 * DAY_MS + HOUR_MS);
        let plan = Plan::choose(from, to, 1000, Some(from + 1), None);
        assert_eq!(
            (plan.bucket_ms, plan.source),
            (MINUTE_MS, HistorySource::Minute)
        );
        let plan = Plan::choose(from, to, 1000, Some(from + 1), Some(from + 1));
        assert_eq!(
            (plan.bucket_ms, plan.source),
            (HOUR_MS, HistorySource::Hour)
        );
        // Five- and fifteen-minute tiers follow the minutes' retention.
        let week = (from, from + 7 * DAY_MS);
        let plan = Plan::choose(week.0, week.1, 1000, None, Some(from + 1));
        assert_eq!(
            (plan.bucket_ms, plan.source),
            (HOUR_MS, HistorySource::Hour)
        );
        let plan = Plan::choose(from, to, 1000, Some(from), None);
        assert_eq!(
            plan.source,
            HistorySource::Raw,
            "the horizon itself is kept"
        );
    }

    #[test]
    fn the_utc_grid_covers_the_range_with_whole_buckets() {
        assert_eq!(
            utc_grid(1_500, 4_000, 1_000),
            (vec![1_000, 2_000, 3_000], 4_000)
        );
        assert_eq!(
            utc_grid(1_000, 4_001, 1_000),
            (vec![1_000, 2_000, 3_000, 4_000], 5_000)
        );
        assert_eq!(utc_grid(0, 1, 60_000), (vec![0], 60_000));
    }

    #[test]
    fn gaps_are_marked_after_a_long_silence() {
        let points = [
            (0, 1.0),
            (1_000, 2.0),
            (2_000, 3.0),
            (9_000, 4.0),
            (10_000, 5.0),
        ];
        let SeriesData::Readings { t, value } = readings_with_gaps(&points) else {
            panic!("readings");
        };
        assert_eq!(t, [0, 1_000, 2_000, 2_001, 9_000, 10_000]);
        assert_eq!(
            value,
            [Some(1.0), Some(2.0), Some(3.0), None, Some(4.0), Some(5.0)]
        );
        // Two readings have no median to compare with: no marker.
        let SeriesData::Readings { t, .. } = readings_with_gaps(&[(0, 1.0), (50_000, 1.0)]) else {
            panic!("readings");
        };
        assert_eq!(t, [0, 50_000]);
    }

    #[test]
    fn every_rollup_width_is_at_most_four_buckets_of_its_tier() {
        for &width in LADDER_MS.iter().filter(|&&w| w >= MINUTE_MS) {
            let query = BucketQuery::for_plan(Plan::for_width(width), Some("Europe/London"));
            let tier = query.tier().expect("a rollup tier");
            assert_eq!(width % tier.width_ms(), 0, "{width} ms from {tier:?}");
            assert!(width / tier.width_ms() <= 4, "{width} ms from {tier:?}");
        }
    }

    #[test]
    fn every_ladder_step_divides_its_unit() {
        for &w in LADDER_MS {
            let unit = [1_000, MINUTE_MS, HOUR_MS, DAY_MS, DAY_MS * 2]
                .into_iter()
                .find(|&u| u > w)
                .unwrap_or(DAY_MS * 2);
            let unit = if w == DAY_MS { DAY_MS } else { unit };
            assert_eq!(unit % w, 0, "{w} ms does not divide {unit} ms");
        }
        assert!(LADDER_MS.windows(2).all(|p| p[0] < p[1]));
    }
}
