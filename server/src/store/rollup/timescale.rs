//! The TimescaleDB path: `readings` as a hypertable with compression and
//! retention policies, the rollups as continuous aggregates of the plain
//! path's names and columns (hours built on minutes).
//!
//! Why it keeps dirty marks like the plain path: a real-time continuous
//! aggregate computes only the buckets after its watermark from raw rows.
//! A reading for a bucket already materialised (a gateway's backlog after
//! an outage) is invisible until a refresh covers it, which is a minute
//! away for minutes, up to several for hours, and never for readings older
//! than the policies' window. So the store writer marks every reading
//! older than [`LATE_AFTER`] (its minute could be materialised), the
//! readers answer marked minutes from raw rows exactly as on the plain
//! path (the views `history_1m`/`history_1h` are the same), and
//! [`refresh_marked`] refreshes exactly the marked ranges, however old,
//! then drops the marks.
//!
//! Refreshes never reach into the newest buckets: every manual refresh
//! ends where the policies end (a minute, an hour before now), since a
//! materialised bucket that is still filling would show a partial count
//! until the policy passes it. The first refresh happens before the
//! policies are added, and set-up runs under an advisory lock
//! ([`super::prepare`]), so neither two starting instances nor a policy
//! job overlap it (TimescaleDB 2.28 fails overlapping refreshes at once
//! with 55P03).
//!
//! Known to work: TimescaleDB 2.28.3 on PostgreSQL 15.18 (docs/design/history.md).

use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool};

use super::{PassReport, REFRESH_LOCK, raw_horizon, sum_of};
use crate::config::HistoryConfig;
use crate::metrics::Metrics;
use crate::time::floor_to_hour;

/// A reading this much older than the writer's clock may belong to a
/// materialised minute, so the writer marks it. The minute aggregate is
/// materialised at most up to a minute before now; the other 30 seconds
/// cover the time between the writer's check and its commit, and clock
/// skew between this host and the database.
pub const LATE_AFTER: TimeDelta = TimeDelta::seconds(30);

/// The continuous aggregates carry this comment; one without it (made by
/// an earlier version, whose sums could overflow) is replaced.
const AGGREGATES_VERSION: &str = "trackside rollups 2: overflow-free sums";

/// Marked minutes closer than this are refreshed in one call.
const MERGE_GAP: TimeDelta = TimeDelta::hours(1);

/// One continuous aggregate: its name, its query, and its policy's end
/// offset and schedule. The end offset is also where manual refreshes end.
struct Aggregate {
    name: &'static str,
    query: &'static str,
    end_offset: TimeDelta,
    end_offset_sql: &'static str,
    schedule: &'static str,
}

/// Finest first: each is built on the one before it.
const AGGREGATES: [Aggregate; 2] = [
    Aggregate {
        name: "readings_1m",
        query: concat!(
            "SELECT channel_id, time_bucket(INTERVAL '1 minute', ts) AS bucket,
                    min(value) AS min, max(value) AS max, ",
            sum_of!("value"),
            " AS sum, count(*) AS count,
                    min(ts) AS first_ts, first(value, ts) AS first,
                    max(ts) AS last_ts, last(value, ts) AS last
             FROM readings
             GROUP BY channel_id, time_bucket(INTERVAL '1 minute', ts)"
        ),
        end_offset: TimeDelta::minutes(1),
        end_offset_sql: "1 minute",
        schedule: "1 minute",
    },
    Aggregate {
        name: "readings_1h",
        query: concat!(
            "SELECT channel_id, time_bucket(INTERVAL '1 hour', bucket) AS bucket,
                    min(min) AS min, max(max) AS max, ",
            sum_of!("sum"),
            " AS sum, sum(count)::bigint AS count,
                    min(first_ts) AS first_ts, first(first, first_ts) AS first,
                    max(last_ts) AS last_ts, last(last, last_ts) AS last
             FROM readings_1m
             GROUP BY channel_id, time_bucket(INTERVAL '1 hour', bucket)"
        ),
        end_offset: TimeDelta::hours(1),
        end_offset_sql: "1 hour",
        schedule: "5 minutes",
    },
];

pub async fn is_hypertable(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                        WHERE hypertable_name = 'readings')",
    )
    .fetch_one(conn)
    .await
}

/// Makes `readings` a hypertable with its policies and the rollups
/// continuous aggregates. Every step is idempotent and runs at each start,
/// on the connection that holds the start-up lock; statements run outside
/// a transaction block, as continuous aggregates require.
pub async fn set_up(conn: &mut PgConnection, config: &HistoryConfig) -> anyhow::Result<()> {
    // Hypertables do not support transition tables; the store writer marks
    // late readings instead (see the module doc).
    exec(
        conn,
        "DROP TRIGGER IF EXISTS readings_mark_dirty ON readings",
    )
    .await?;
    if !is_hypertable(conn).await? {
        tracing::info!(
            "converting readings into a TimescaleDB hypertable (existing rows are moved \
             into chunks; on a large table this takes a while)"
        );
        exec(
            conn,
            "SELECT create_hypertable('readings', 'ts',
                 chunk_time_interval => INTERVAL '1 day',
                 migrate_data => true, if_not_exists => true)",
        )
        .await?;
    }
    // Only once: with compressed chunks present, TimescaleDB refuses to
    // change (or even restate) the compression settings.
    let compressed: bool = sqlx::query_scalar(
        "SELECT compression_enabled FROM timescaledb_information.hypertables
         WHERE hypertable_name = 'readings'",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !compressed {
        exec(
            conn,
            "ALTER TABLE readings SET (timescaledb.compress,
                 timescaledb.compress_segmentby = 'channel_id',
                 timescaledb.compress_orderby = 'ts')",
        )
        .await?;
    }
    // Remove, then add: a policy added "if not exists" would keep an old
    // interval after the configuration changed.
    exec(
        conn,
        "SELECT remove_compression_policy('readings', if_exists => true)",
    )
    .await?;
    exec(
        conn,
        &format!(
            "SELECT add_compression_policy('readings', INTERVAL '{} days')",
            config.compress_after_days
        ),
    )
    .await?;
    retention_policy(conn, "readings", config.raw_retention_days).await?;

    if !aggregates_current(conn).await? {
        create_aggregates(conn).await?;
    }
    // The views are those of the plain path (one definition, migration
    // 20261207100000): rollup rows where no mark is, raw rows where one is.
    exec(conn, "CALL rollup_create_views()").await?;

    // Added only now, after any first refresh: a policy job overlapping
    // that refresh would fail it, or itself. The refresh window must end
    // before raw retention drops chunks: a refresh over a dropped range
    // would empty those buckets.
    let window_days = match config.raw_retention_days {
        0 => 30,
        days => days.saturating_sub(1).clamp(1, 30),
    };
    for aggregate in &AGGREGATES {
        exec(
            conn,
            &format!(
                "SELECT remove_continuous_aggregate_policy('{}', if_exists => true)",
                aggregate.name
            ),
        )
        .await?;
        exec(
            conn,
            &format!(
                "SELECT add_continuous_aggregate_policy('{}',
                     start_offset => INTERVAL '{window_days} days',
                     end_offset => INTERVAL '{}',
                     schedule_interval => INTERVAL '{}')",
                aggregate.name, aggregate.end_offset_sql, aggregate.schedule
            ),
        )
        .await?;
    }
    retention_policy(conn, "readings_1m", config.minute_retention_days).await?;
    Ok(())
}

/// Whether every aggregate exists with this version's definition.
async fn aggregates_current(conn: &mut PgConnection) -> anyhow::Result<bool> {
    let names: Vec<&str> = AGGREGATES.iter().map(|a| a.name).collect();
    let current: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM timescaledb_information.continuous_aggregates a
         WHERE a.view_name = ANY($1)
           AND obj_description(format('%I.%I', a.view_schema, a.view_name)::regclass, 'pg_class') = $2",
    )
    .bind(&names)
    .bind(AGGREGATES_VERSION)
    .fetch_one(&mut *conn)
    .await?;
    Ok(current == names.len() as i64)
}

/// Replaces the rollup relations (plain tables, or aggregates of an
/// earlier version) with continuous aggregates and fills them once, up to
/// the policies' end offsets.
async fn create_aggregates(conn: &mut PgConnection) -> anyhow::Result<()> {
    tracing::info!(
        "creating the continuous aggregates for history (existing readings are aggregated \
         once; on a large table this takes a while)"
    );
    for statement in [
        "DROP VIEW IF EXISTS history_1h",
        "DROP VIEW IF EXISTS history_1m",
    ] {
        exec(conn, statement).await?;
    }
    for aggregate in AGGREGATES.iter().rev() {
        let kind: Option<String> = sqlx::query_scalar(
            "SELECT CASE WHEN EXISTS (
                        SELECT 1 FROM timescaledb_information.continuous_aggregates
                        WHERE view_name = $1) THEN 'MATERIALIZED VIEW'
                    WHEN to_regclass($1) IS NOT NULL THEN 'TABLE' END",
        )
        .bind(aggregate.name)
        .fetch_one(&mut *conn)
        .await?;
        if let Some(kind) = kind {
            exec(
                conn,
                &format!("DROP {kind} IF EXISTS {} CASCADE", aggregate.name),
            )
            .await?;
        }
    }
    // Everything is aggregated from raw rows below; marks of the plain
    // path are about the tables just dropped. Marks a writer commits from
    // here on are kept and refreshed by the job.
    exec(conn, "TRUNCATE rollup_dirty").await?;
    for aggregate in &AGGREGATES {
        // Real-time: buckets after the watermark are computed from raw rows
        // at query time (TimescaleDB 2.13 turned this off by default).
        exec(
            conn,
            &format!(
                "CREATE MATERIALIZED VIEW {}
                 WITH (timescaledb.continuous, timescaledb.materialized_only = false)
                 AS {}
                 WITH NO DATA",
                aggregate.name, aggregate.query
            ),
        )
        .await?;
        exec(
            conn,
            &format!(
                "COMMENT ON VIEW {} IS '{AGGREGATES_VERSION}'",
                aggregate.name
            ),
        )
        .await?;
    }
    for aggregate in &AGGREGATES {
        // All of history, but not the buckets still filling: a refresh
        // ending at now would freeze the current hour at a partial count.
        exec(
            conn,
            &format!(
                "CALL refresh_continuous_aggregate('{}', NULL, now() - INTERVAL '{}')",
                aggregate.name, aggregate.end_offset_sql
            ),
        )
        .await?;
    }
    Ok(())
}

async fn retention_policy(
    conn: &mut PgConnection,
    relation: &str,
    days: u32,
) -> anyhow::Result<()> {
    exec(
        conn,
        &format!("SELECT remove_retention_policy('{relation}', if_exists => true)"),
    )
    .await?;
    if days > 0 {
        exec(
            conn,
            &format!("SELECT add_retention_policy('{relation}', INTERVAL '{days} days')"),
        )
        .await?;
    }
    Ok(())
}

/// One pass of the TimescaleDB job: takes up to `limit` marks of minutes
/// old enough to be materialised, refreshes the aggregates over the marked
/// ranges (merged when close) and drops the marks of every range that
/// refreshed. A range that fails keeps its marks for the next pass and
/// holds up no other; the usual cause is a policy job refreshing the same
/// aggregate at that moment.
pub async fn refresh_marked(
    pool: &PgPool,
    config: &HistoryConfig,
    metrics: &Arc<Metrics>,
    limit: i64,
) -> anyhow::Result<PassReport> {
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(REFRESH_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(PassReport::default());
    }
    let result = refresh_locked(&mut conn, config, limit).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(REFRESH_LOCK)
        .execute(&mut *conn)
        .await;
    let report = result?;
    unlocked?;
    Metrics::add(&metrics.rollup_failed_minutes, report.failed);
    metrics
        .rollup_overflows
        .fetch_add(report.overflowed, std::sync::atomic::Ordering::Relaxed);
    Ok(report)
}

async fn refresh_locked(
    conn: &mut PgConnection,
    config: &HistoryConfig,
    limit: i64,
) -> anyhow::Result<PassReport> {
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *conn)
        .await?;
    // Minutes from here on are not materialised (the policy ends a minute
    // before now); readers compute them from raw rows anyway.
    let minute_cap = floor_to_minute(now - AGGREGATES[0].end_offset);
    let marks: Vec<(String, i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT ctid::text, channel_id, minute FROM rollup_dirty WHERE minute < $1 LIMIT $2",
    )
    .bind(minute_cap)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut report = PassReport {
        claimed: marks.len(),
        ..PassReport::default()
    };
    if marks.is_empty() {
        return Ok(report);
    }
    // Marks older than the raw horizon are dropped: those chunks are being
    // dropped, and a refresh there would empty the buckets.
    let horizon = raw_horizon(config, now);
    let mut minutes: Vec<DateTime<Utc>> = marks
        .iter()
        .map(|&(_, _, minute)| minute)
        .filter(|m| horizon.is_none_or(|h| *m >= h))
        .collect();
    minutes.sort_unstable();
    minutes.dedup();

    let mut failed_windows: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for (lo, hi) in windows(&minutes) {
        let refreshed = match refresh_window(conn, lo, hi, now).await {
            Ok(()) => overflowing_minutes(conn, lo, hi).await,
            Err(err) => Err(err),
        };
        match refreshed {
            Ok(overflowed) => report.overflowed += overflowed,
            Err(err) => {
                let lock_conflict = err
                    .downcast_ref::<sqlx::Error>()
                    .and_then(|e| e.as_database_error())
                    .and_then(|e| e.code())
                    .is_some_and(|code| code == "55P03");
                if lock_conflict {
                    tracing::debug!(%lo, %hi, "a policy job is refreshing; retrying later: {err:#}");
                } else {
                    tracing::warn!(%lo, %hi, "refreshing marked rollups failed; retrying later: {err:#}");
                    report.failed += 1;
                }
                failed_windows.push((lo, hi));
            }
        }
    }
    let done: Vec<String> = marks
        .into_iter()
        .filter(|&(_, _, minute)| {
            !failed_windows
                .iter()
                .any(|&(lo, hi)| minute >= lo && minute < hi)
        })
        .map(|(ctid, _, _)| ctid)
        .collect();
    report.kept = report.claimed - done.len();
    sqlx::query("DELETE FROM rollup_dirty WHERE ctid = ANY ($1::text[]::tid[])")
        .bind(&done)
        .execute(&mut *conn)
        .await?;
    Ok(report)
}

/// Minutes in `[lo, hi)` whose sum is beyond the double range, as the
/// minute aggregate now holds them.
async fn overflowing_minutes(
    conn: &mut PgConnection,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM readings_1m
         WHERE bucket >= $1 AND bucket < $2
           AND NOT (sum > float8 '-Infinity' AND sum < float8 'Infinity')",
    )
    .bind(lo)
    .bind(hi)
    .fetch_one(&mut *conn)
    .await?;
    Ok(n.max(0) as u64)
}

/// Sorted distinct minutes as `[first, last + 1 minute)` ranges, merging
/// minutes less than [`MERGE_GAP`] apart.
fn windows(minutes: &[DateTime<Utc>]) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let minute = TimeDelta::minutes(1);
    let mut out: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for &m in minutes {
        match out.last_mut() {
            Some((_, hi)) if m - *hi < MERGE_GAP => *hi = (*hi).max(m + minute),
            _ => out.push((m, m + minute)),
        }
    }
    out
}

/// Refreshes the aggregates over `[lo, hi)` now, for readings written
/// behind the policies' backs (the demo's history); the policies keep
/// what is newer.
pub async fn refresh_range(
    pool: &PgPool,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    refresh_window(&mut conn, floor_to_minute(lo), hi, Utc::now()).await
}

/// Refreshes every aggregate over `[lo, hi)` widened to its buckets, but
/// not past its policy's end offset.
async fn refresh_window(
    conn: &mut PgConnection,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let minute_cap = floor_to_minute(now - AGGREGATES[0].end_offset);
    refresh(conn, AGGREGATES[0].name, lo, hi.min(minute_cap)).await?;
    let hour_cap = floor_to_hour(now - AGGREGATES[1].end_offset).unwrap_or(now);
    let hour_lo = floor_to_hour(lo).unwrap_or(lo);
    let hour_hi = floor_to_hour(hi + TimeDelta::minutes(59)).unwrap_or(hi);
    // An hour past the cap is not materialised: its real-time part reads
    // the minutes just refreshed.
    refresh(conn, AGGREGATES[1].name, hour_lo, hour_hi.min(hour_cap)).await
}

async fn refresh(
    conn: &mut PgConnection,
    aggregate: &str,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
) -> anyhow::Result<()> {
    if hi <= lo {
        return Ok(());
    }
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    exec(
        conn,
        &format!(
            "CALL refresh_continuous_aggregate('{aggregate}', timestamptz '{}', timestamptz '{}')",
            time(lo),
            time(hi)
        ),
    )
    .await
}

fn floor_to_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    let ms = t.timestamp_millis().div_euclid(60_000) * 60_000;
    DateTime::from_timestamp_millis(ms).unwrap_or(t)
}

/// One statement over the simple protocol, outside any transaction
/// block. The text is built only from constants, numbers and times in this
/// module.
async fn exec(conn: &mut PgConnection, statement: &str) -> anyhow::Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(conn)
        .await
        .with_context(|| format!("TimescaleDB statement failed: {statement}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn close_minutes_share_a_refresh() {
        let minutes = [
            t("2026-11-01T10:00:00Z"),
            t("2026-11-01T10:01:00Z"),
            t("2026-11-01T10:50:00Z"),
            t("2026-11-01T12:00:00Z"),
        ];
        assert_eq!(
            windows(&minutes),
            [
                (t("2026-11-01T10:00:00Z"), t("2026-11-01T10:51:00Z")),
                (t("2026-11-01T12:00:00Z"), t("2026-11-01T12:01:00Z")),
            ]
        );
        assert!(windows(&[]).is_empty());
    }
}
