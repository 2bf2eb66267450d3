//! The TimescaleDB path: `readings` as a hypertable with compression and
//! retention policies, the rollup tiers as continuous aggregates of the
//! plain path's names and columns, each built on the one below it
//! (hierarchical aggregates; the six-hour one on the yard's wall clock).
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

use super::{PassReport, REFRESH_LOCK, Tier, raw_horizon, sum_of};
use crate::config::HistoryConfig;
use crate::metrics::Metrics;

/// A reading this much older than the writer's clock may belong to a
/// materialised minute, so the writer marks it. The minute aggregate is
/// materialised at most up to a minute before now; the other 30 seconds
/// cover the time between the writer's check and its commit, and clock
/// skew between this host and the database.
pub const LATE_AFTER: TimeDelta = TimeDelta::seconds(30);

/// The continuous aggregates carry this comment (the six-hour one with its
/// zone); one without it (made by an earlier version: sums that could
/// overflow, fewer tiers, another zone) is replaced, with every coarser one.
const AGGREGATES_VERSION: &str = "trackside rollups 3: tiers, overflow-free sums";

/// Marked minutes closer than this are refreshed in one call.
const MERGE_GAP: TimeDelta = TimeDelta::hours(1);

/// One continuous aggregate: its tier, the relation it is built from, and
/// its policy's end offset (also where manual refreshes end) and schedule.
struct Aggregate {
    tier: Tier,
    source: &'static str,
    width_sql: &'static str,
    end_offset: TimeDelta,
    end_offset_sql: &'static str,
    schedule: &'static str,
}

/// Finest first: each is built on the one before it.
const AGGREGATES: [Aggregate; 5] = [
    Aggregate {
        tier: Tier::Minute,
        source: "readings",
        width_sql: "1 minute",
        end_offset: TimeDelta::minutes(1),
        end_offset_sql: "1 minute",
        schedule: "1 minute",
    },
    Aggregate {
        tier: Tier::FiveMinutes,
        source: "readings_1m",
        width_sql: "5 minutes",
        end_offset: TimeDelta::minutes(5),
        end_offset_sql: "5 minutes",
        schedule: "5 minutes",
    },
    Aggregate {
        tier: Tier::QuarterHour,
        source: "readings_5m",
        width_sql: "15 minutes",
        end_offset: TimeDelta::minutes(15),
        end_offset_sql: "15 minutes",
        schedule: "15 minutes",
    },
    Aggregate {
        tier: Tier::Hour,
        source: "readings_15m",
        width_sql: "1 hour",
        end_offset: TimeDelta::hours(1),
        end_offset_sql: "1 hour",
        schedule: "15 minutes",
    },
    Aggregate {
        tier: Tier::SixHours,
        source: "readings_1h",
        width_sql: "6 hours",
        end_offset: TimeDelta::hours(6),
        end_offset_sql: "6 hours",
        schedule: "1 hour",
    },
];

impl Aggregate {
    fn name(&self) -> &'static str {
        self.tier.table()
    }

    /// The bucket expression: UTC, or the six-hour tier on `zone`'s wall
    /// clock (`time_bucket` with a zone binds as `rollup_6h_start` does).
    fn bucket(&self, column: &str, zone: &str) -> String {
        match self.tier {
            Tier::SixHours => format!(
                "time_bucket(INTERVAL '{}', {column}, '{}')",
                self.width_sql,
                zone.replace('\'', "''")
            ),
            _ => format!("time_bucket(INTERVAL '{}', {column})", self.width_sql),
        }
    }

    /// The aggregate's query: from readings for minutes, else from the tier
    /// below, with the aggregates of the plain path's `rollup_*` functions.
    fn query(&self, zone: &str) -> String {
        if self.tier == Tier::Minute {
            let bucket = self.bucket("ts", zone);
            return format!(
                "SELECT channel_id, {bucket} AS bucket,
                        min(value) AS min, max(value) AS max, {} AS sum, count(*) AS count,
                        min(ts) AS first_ts, first(value, ts) AS first,
                        max(ts) AS last_ts, last(value, ts) AS last
                 FROM readings
                 GROUP BY channel_id, {bucket}",
                sum_of!("value")
            );
        }
        let bucket = self.bucket("bucket", zone);
        format!(
            "SELECT channel_id, {bucket} AS bucket,
                    min(min) AS min, max(max) AS max, {} AS sum,
                    sum(count)::bigint AS count,
                    min(first_ts) AS first_ts, first(first, first_ts) AS first,
                    max(last_ts) AS last_ts, last(last, last_ts) AS last
             FROM {}
             GROUP BY channel_id, {bucket}",
            sum_of!("sum"),
            self.source
        )
    }

    fn version(&self, zone: &str) -> String {
        match self.tier {
            Tier::SixHours => format!("{AGGREGATES_VERSION}; zone {zone}"),
            _ => AGGREGATES_VERSION.to_owned(),
        }
    }
}

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
pub async fn set_up(
    conn: &mut PgConnection,
    config: &HistoryConfig,
    zone: &str,
) -> anyhow::Result<()> {
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

    sqlx::query("UPDATE rollup_settings SET zone = $1")
        .bind(zone)
        .execute(&mut *conn)
        .await?;
    if let Some(first) = first_stale(conn, zone).await? {
        create_aggregates(conn, first, zone).await?;
    }
    // The views are those of the plain path (one definition, migration
    // 20261207473100): rollup rows where no mark is, finer data where one is.
    sqlx::query("CALL rollup_create_views($1)")
        .bind(zone)
        .execute(&mut *conn)
        .await?;
    // Replacing the rollup tables dropped the grafana views on them; the
    // reader role's default privileges grant it the new ones.
    exec(conn, "CALL grafana_create_views()").await?;

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
                aggregate.name()
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
                aggregate.name(),
                aggregate.end_offset_sql,
                aggregate.schedule
            ),
        )
        .await?;
    }
    // Tiers finer than an hour follow the minutes' retention.
    for tier in [Tier::Minute, Tier::FiveMinutes, Tier::QuarterHour] {
        retention_policy(conn, tier.table(), config.minute_retention_days).await?;
    }
    Ok(())
}

/// The finest aggregate that is missing or not of this version's
/// definition (and zone), if any: it and every coarser one are replaced.
async fn first_stale(conn: &mut PgConnection, zone: &str) -> anyhow::Result<Option<usize>> {
    for (index, aggregate) in AGGREGATES.iter().enumerate() {
        let comment: Option<String> = sqlx::query_scalar(
            "SELECT obj_description(format('%I.%I', view_schema, view_name)::regclass, 'pg_class')
             FROM timescaledb_information.continuous_aggregates WHERE view_name = $1",
        )
        .bind(aggregate.name())
        .fetch_optional(&mut *conn)
        .await?
        .flatten();
        if comment.as_deref() != Some(aggregate.version(zone).as_str()) {
            return Ok(Some(index));
        }
    }
    Ok(None)
}

/// Replaces the rollup relations from `AGGREGATES[first]` up (plain tables,
/// or aggregates of an earlier version or zone) with continuous
/// aggregates and fills them once, up to the policies' end offsets.
async fn create_aggregates(
    conn: &mut PgConnection,
    first: usize,
    zone: &str,
) -> anyhow::Result<()> {
    tracing::info!(
        from = AGGREGATES[first].name(),
        "creating continuous aggregates for history (existing data is aggregated once; \
         on a large table this takes a while)"
    );
    for tier in Tier::ALL.iter().rev() {
        exec(conn, &format!("DROP VIEW IF EXISTS {}", tier.view())).await?;
    }
    for aggregate in AGGREGATES[first..].iter().rev() {
        let kind: Option<String> = sqlx::query_scalar(
            "SELECT CASE WHEN EXISTS (
                        SELECT 1 FROM timescaledb_information.continuous_aggregates
                        WHERE view_name = $1) THEN 'MATERIALIZED VIEW'
                    WHEN to_regclass($1) IS NOT NULL THEN 'TABLE' END",
        )
        .bind(aggregate.name())
        .fetch_one(&mut *conn)
        .await?;
        if let Some(kind) = kind {
            exec(
                conn,
                &format!("DROP {kind} IF EXISTS {} CASCADE", aggregate.name()),
            )
            .await?;
        }
    }
    if first == 0 {
        // Everything is aggregated from raw rows below; marks of the plain
        // path are about the tables just dropped. Marks a writer commits
        // from here on are kept and refreshed by the job.
        exec(conn, "TRUNCATE rollup_dirty").await?;
    }
    for aggregate in &AGGREGATES[first..] {
        // Real-time: buckets after the watermark are computed from finer
        // data at query time (TimescaleDB 2.13 turned this off by default).
        exec(
            conn,
            &format!(
                "CREATE MATERIALIZED VIEW {}
                 WITH (timescaledb.continuous, timescaledb.materialized_only = false)
                 AS {}
                 WITH NO DATA",
                aggregate.name(),
                aggregate.query(zone)
            ),
        )
        .await?;
        exec(
            conn,
            &format!(
                "COMMENT ON VIEW {} IS '{}'",
                aggregate.name(),
                aggregate.version(zone).replace('\'', "''")
            ),
        )
        .await?;
    }
    for aggregate in &AGGREGATES[first..] {
        // All of history, but not the buckets still filling: a refresh
        // ending at now would freeze the current hour at a partial count.
        exec(
            conn,
            &format!(
                "CALL refresh_continuous_aggregate('{}', NULL, now() - INTERVAL '{}')",
                aggregate.name(),
                aggregate.end_offset_sql
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
    let minute_cap = floor_to(now - AGGREGATES[0].end_offset, Tier::Minute);
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

    let zone: String = sqlx::query_scalar("SELECT zone FROM rollup_settings")
        .fetch_one(&mut *conn)
        .await?;
    let mut failed_windows: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for (lo, hi) in windows(&minutes) {
        let refreshed = match refresh_window(conn, lo, hi, now, &zone).await {
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
    let zone: String = sqlx::query_scalar("SELECT zone FROM rollup_settings")
        .fetch_one(&mut *conn)
        .await?;
    refresh_window(&mut conn, lo, hi, Utc::now(), &zone).await
}

/// Refreshes every aggregate, finest first, over `[lo, hi)` widened to its
/// buckets, but not past its policy's end offset. A bucket past it is not
/// materialised: its real-time part reads the finer tier just refreshed.
async fn refresh_window(
    conn: &mut PgConnection,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
    now: DateTime<Utc>,
    zone: &str,
) -> anyhow::Result<()> {
    for aggregate in &AGGREGATES {
        let (start, end, cap) = match aggregate.tier {
            Tier::SixHours => {
                sqlx::query_as(
                    "SELECT rollup_6h_start($1, $4),
                            rollup_6h_end(rollup_6h_start($2 - interval '1 microsecond', $4), $4),
                            rollup_6h_start($3, $4)",
                )
                .bind(lo)
                .bind(hi)
                .bind(now - aggregate.end_offset)
                .bind(zone)
                .fetch_one(&mut *conn)
                .await?
            }
            tier => (
                floor_to(lo, tier),
                floor_to(hi - TimeDelta::microseconds(1), tier)
                    + TimeDelta::milliseconds(tier.width_ms()),
                floor_to(now - aggregate.end_offset, tier),
            ),
        };
        refresh(conn, aggregate.name(), start, end.min(cap)).await?;
    }
    Ok(())
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
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
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

/// The start of the UTC bucket of `tier` holding `t`.
fn floor_to(t: DateTime<Utc>, tier: Tier) -> DateTime<Utc> {
    let width = tier.width_ms();
    DateTime::from_timestamp_millis(t.timestamp_millis().div_euclid(width) * width).unwrap_or(t)
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
