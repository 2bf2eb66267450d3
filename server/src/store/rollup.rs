//! Rollups behind the history API: per channel, per UTC minute and per UTC
//! hour, the min, max, sum, count, first and last reading.
//!
//! Two storage paths, chosen once at start-up by [`prepare`]:
//!
//! - **Plain PostgreSQL** (migrations 2, 5 and 6): tables `readings_1m`
//!   and `readings_1h` kept by this module, their aggregates defined once
//!   by the SQL functions `rollup_minutes` and `rollup_hours` (migration 6)
//!   that the job, [`rebuild`] and the exact views all call. A statement trigger on `readings`
//!   appends a mark to `rollup_dirty` for each (channel, minute) a write
//!   touched (a log, so a writer never waits for the job);
//!   [`refresh_dirty`] claims marks, recomputes those minutes
//!   from raw rows and their hours from minutes, in one transaction, so a
//!   failure leaves the marks for the next pass. [`run`] calls it about once
//!   a second and applies retention.
//! - **TimescaleDB**, when the database server has the extension:
//!   `readings` becomes a hypertable with compression and retention
//!   policies, and continuous aggregates of the same names replace the two
//!   tables (the views `history_1m` / `history_1h` become plain selects
//!   from them). The API's queries name only these relations, so they are
//!   the same on both paths.
//!
//! Either way an answer never depends on how far the rollup work is
//! behind: on the plain path the views read a dirty minute from raw rows,
//! and Timescale's real-time aggregation does the same for the newest
//! buckets.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::{HistoryConfig, TimescaleMode};
use crate::time::floor_to_hour;

/// Which storage path serves history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoragePath {
    Plain,
    Timescale,
}

impl StoragePath {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain PostgreSQL rollup tables",
            Self::Timescale => "TimescaleDB hypertable and continuous aggregates",
        }
    }
}

/// Most dirty minutes one [`refresh_dirty`] pass claims: enough for a
/// second of a large yard, small enough to keep each transaction short.
pub const REFRESH_BATCH: i64 = 20_000;

/// Every instance sharing a database takes this transaction-level advisory
/// lock before refreshing, so two jobs never recompute the same hour from
/// each other's uncommitted minutes. The value is arbitrary and fixed.
const REFRESH_LOCK: i64 = 0x7472_6b5f_726f_6c6c; // "trk_roll"

/// A rollup table: per-minute or per-hour aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Minute,
    Hour,
}

/// Where the exact range of a rollup read starts: the earliest dirty
/// minute of these channels in `[lo, hi)` (floored to its hour for the
/// hour tier), or `hi` when every rollup row is current. Before it a
/// reader may take rollup rows as they are; from it on it must read the
/// `history_1m`/`history_1h` views, which compute dirty buckets from raw
/// rows. Always `hi` on TimescaleDB, which keeps no marks.
pub async fn dirty_split(
    conn: &mut PgConnection,
    tier: Tier,
    ids: &[i32],
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
) -> sqlx::Result<DateTime<Utc>> {
    let earliest: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT min(minute) FROM rollup_dirty
         WHERE channel_id = ANY($1) AND minute >= $2 AND minute < $3",
    )
    .bind(ids)
    .bind(lo)
    .bind(hi)
    .fetch_one(conn)
    .await?;
    let split = match (earliest, tier) {
        (None, _) => hi,
        (Some(minute), Tier::Minute) => minute,
        (Some(minute), Tier::Hour) => floor_to_hour(minute).unwrap_or(minute),
    };
    Ok(split.clamp(lo, hi))
}

/// `INSERT INTO {table} ... {rows} ON CONFLICT ...`: stores recomputed
/// buckets, each replacing the stored one whole. `rows` yields the channel
/// id, then the columns of `rollup_minutes` or `rollup_hours` (migration 6,
/// the aggregates' one definition) in their order.
macro_rules! upsert_buckets {
    ($table:literal, $rows:literal) => {
        concat!(
            "INSERT INTO ",
            $table,
            " (channel_id, bucket, min, max, sum, count, first_ts, first, last_ts, last) ",
            $rows,
            " ON CONFLICT (channel_id, bucket) DO UPDATE SET
                min = EXCLUDED.min, max = EXCLUDED.max, sum = EXCLUDED.sum,
                count = EXCLUDED.count, first_ts = EXCLUDED.first_ts,
                first = EXCLUDED.first, last_ts = EXCLUDED.last_ts, last = EXCLUDED.last"
        )
    };
}

/// How often retention runs on the plain path.
const RETENTION_EVERY: Duration = Duration::from_secs(600);
/// Rows deleted per retention statement, so one pass never holds a long
/// lock or builds a huge transaction.
const RETENTION_CHUNK: i64 = 50_000;

/// Chooses the storage path, sets TimescaleDB up when it is there (every
/// start: each step is idempotent and follows configuration changes), and
/// logs which path serves history.
pub async fn prepare(pool: &PgPool, config: &HistoryConfig) -> anyhow::Result<StoragePath> {
    let path = choose_path(pool, config).await?;
    if path == StoragePath::Timescale {
        timescale::set_up(pool, config).await.context(
            "setting up TimescaleDB for history (history.timescaledb = \"off\" keeps plain \
             tables, as long as readings is not a hypertable yet)",
        )?;
    }
    tracing::info!(path = path.as_str(), "history storage");
    Ok(path)
}

async fn choose_path(pool: &PgPool, config: &HistoryConfig) -> anyhow::Result<StoragePath> {
    let (installed, available): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),
                EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
    )
    .fetch_one(pool)
    .await?;
    if installed && timescale::is_hypertable(pool).await? {
        if config.timescaledb == TimescaleMode::Off {
            tracing::warn!(
                "history.timescaledb is off, but readings is already a TimescaleDB hypertable; \
                 it cannot be turned back into a plain table, so TimescaleDB stays in use"
            );
        }
        return Ok(StoragePath::Timescale);
    }
    if config.timescaledb == TimescaleMode::Off || !available {
        return Ok(StoragePath::Plain);
    }
    // Listed as available is not loadable: the library must also be in
    // shared_preload_libraries, which only CREATE EXTENSION finds out.
    match sqlx::query("CREATE EXTENSION IF NOT EXISTS timescaledb")
        .execute(pool)
        .await
    {
        Ok(_) => Ok(StoragePath::Timescale),
        Err(err) => {
            tracing::warn!(
                "TimescaleDB is installed on the database server but cannot be loaded \
                 (is it in shared_preload_libraries?): {err}; using plain rollup tables"
            );
            Ok(StoragePath::Plain)
        }
    }
}

/// The oldest instant whose raw readings are kept, hour-aligned, or `None`
/// when raw readings are kept forever. Hour alignment keeps every hour
/// either wholly inside or wholly outside each retention window, so an
/// hour rollup is never recomputed from a partly deleted hour.
pub fn raw_horizon(config: &HistoryConfig, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    horizon(config.raw_retention_days, now)
}

/// As [`raw_horizon`], for minute rollups.
pub fn minute_horizon(config: &HistoryConfig, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    horizon(config.minute_retention_days, now)
}

fn horizon(days: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if days == 0 {
        return None;
    }
    floor_to_hour(now - TimeDelta::days(i64::from(days)))
}

/// The plain path's background work until `shutdown`: roll up dirty
/// minutes about every `rollup_interval_ms` (at once again while a backlog
/// remains), apply retention every ten minutes.
pub async fn run(pool: PgPool, config: HistoryConfig, shutdown: CancellationToken) {
    let interval = Duration::from_millis(config.rollup_interval_ms);
    let mut next_retention = tokio::time::Instant::now();
    let mut failures = 0u32;
    loop {
        let pause = match refresh_dirty(&pool, &config, REFRESH_BATCH).await {
            Ok(claimed) => {
                failures = 0;
                if claimed as i64 >= REFRESH_BATCH {
                    Duration::ZERO
                } else {
                    interval
                }
            }
            Err(err) => {
                failures += 1;
                // The marks are still there (the transaction rolled back);
                // wait longer each time so a broken database is not hammered.
                let pause = interval * failures.min(30);
                tracing::error!(retry_in = ?pause, "rollup refresh failed: {err:#}");
                pause
            }
        };
        if tokio::time::Instant::now() >= next_retention {
            if let Err(err) = apply_retention(&pool, &config, Utc::now()).await {
                tracing::error!("history retention failed: {err:#}");
            }
            next_retention = tokio::time::Instant::now() + RETENTION_EVERY;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// One pass of the plain path's rollup: claims up to `limit` dirty-minute
/// marks, recomputes their minutes from raw rows and their hours from minute
/// rows, and returns how many marks it claimed. All in one transaction: if any step
/// fails, the claimed marks are restored by the rollback.
///
/// Marks older than the raw horizon are dropped without recomputing: those
/// raw rows are being deleted, and the rollup made while they existed is
/// the better record.
pub async fn refresh_dirty(
    pool: &PgPool,
    config: &HistoryConfig,
    limit: i64,
) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    match refresh_in(&mut tx, config, limit).await {
        Ok(claimed) => {
            tx.commit().await?;
            Ok(claimed)
        }
        Err(err) => {
            // Roll back now: a dropped transaction only queues its ROLLBACK
            // until the connection is next used, and meanwhile it would
            // hold the claimed marks and the advisory lock.
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!("rolling back a failed rollup pass: {rollback}");
            }
            Err(err)
        }
    }
}

async fn refresh_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    config: &HistoryConfig,
    limit: i64,
) -> anyhow::Result<usize> {
    // One snapshot for the whole pass. Hours are computed from fresh
    // minutes (`rollup_hours` reads `history_1m`), and marks that writers
    // append while the pass runs would otherwise send each of their
    // minutes back to raw rows, to be recomputed again by the next pass.
    // Only refreshers write the rollup tables, and they hold REFRESH_LOCK,
    // so this isolation costs no serialization failures.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut **tx)
        .await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(REFRESH_LOCK)
        .fetch_one(&mut **tx)
        .await?;
    if !locked {
        // Another instance is refreshing; its pass covers these marks.
        return Ok(0);
    }
    // Marks are appended by each writer's statement and become visible when
    // it commits, so every mark claimed here stands for rows this pass's
    // statements can see. A minute may be marked several times; it is
    // recomputed once.
    let mut claimed: Vec<(i32, DateTime<Utc>)> = sqlx::query_as(
        "DELETE FROM rollup_dirty
         WHERE ctid = ANY (ARRAY (
             SELECT ctid FROM rollup_dirty LIMIT $1 FOR UPDATE SKIP LOCKED))
         RETURNING channel_id, minute",
    )
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    let marks = claimed.len();
    if marks == 0 {
        return Ok(0);
    }
    claimed.sort_unstable();
    claimed.dedup();
    let horizon = raw_horizon(config, Utc::now());
    let (channels, minutes): (Vec<i32>, Vec<DateTime<Utc>>) = claimed
        .iter()
        .filter(|(_, minute)| horizon.is_none_or(|h| *minute >= h))
        .copied()
        .unzip();
    // Each statement below sees what the earlier ones wrote (same
    // transaction) and every reading committed before the pass's snapshot,
    // which includes every writer whose mark this pass claimed: a mark
    // becomes visible together with its writer's rows.
    sqlx::query(upsert_buckets!(
        "readings_1m",
        "SELECT d.channel_id, r.*
         FROM unnest($1::integer[], $2::timestamptz[]) AS d (channel_id, minute)
         CROSS JOIN LATERAL rollup_minutes(d.channel_id, d.minute, d.minute + interval '1 minute') r"
    ))
    .bind(&channels)
    .bind(&minutes)
    .execute(&mut **tx)
    .await
    .context("recomputing minute rollups")?;
    sqlx::query(upsert_buckets!(
        "readings_1h",
        "SELECT d.channel_id, r.*
         FROM (
             SELECT DISTINCT channel_id,
                    date_bin('1 hour', minute, timestamptz 'epoch') AS hour
             FROM unnest($1::integer[], $2::timestamptz[]) AS u (channel_id, minute)
         ) d
         CROSS JOIN LATERAL rollup_hours(d.channel_id, d.hour, d.hour + interval '1 hour') r"
    ))
    .bind(&channels)
    .bind(&minutes)
    .execute(&mut **tx)
    .await
    .context("recomputing hour rollups")?;
    Ok(marks)
}

/// Deletes raw readings and minute rollups past their horizons, a chunk
/// at a time (plain path; TimescaleDB has its own retention policies).
pub async fn apply_retention(
    pool: &PgPool,
    config: &HistoryConfig,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    if let Some(horizon) = raw_horizon(config, now) {
        let deleted = delete_before(
            pool,
            "DELETE FROM readings WHERE ctid = ANY (ARRAY (
                 SELECT ctid FROM readings WHERE ts < $1 LIMIT $2))",
            horizon,
        )
        .await
        .context("deleting raw readings past retention")?;
        if deleted > 0 {
            tracing::info!(deleted, %horizon, "deleted raw readings past retention");
        }
    }
    if let Some(horizon) = minute_horizon(config, now) {
        let deleted = delete_before(
            pool,
            "DELETE FROM readings_1m WHERE ctid = ANY (ARRAY (
                 SELECT ctid FROM readings_1m WHERE bucket < $1 LIMIT $2))",
            horizon,
        )
        .await
        .context("deleting minute rollups past retention")?;
        if deleted > 0 {
            tracing::info!(deleted, %horizon, "deleted minute rollups past retention");
        }
    }
    Ok(())
}

async fn delete_before(
    pool: &PgPool,
    statement: &'static str,
    horizon: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let mut total = 0;
    loop {
        let deleted = sqlx::query(statement)
            .bind(horizon)
            .bind(RETENTION_CHUNK)
            .execute(pool)
            .await?
            .rows_affected();
        total += deleted;
        if deleted < RETENTION_CHUNK as u64 {
            return Ok(total);
        }
    }
}

/// Recomputes the plain path's rollups for `[from, to)` from raw rows, an
/// hour of all channels per statement, and drops the dirty marks in that
/// range. For bulk loads that bypass the trigger (the benchmark seeds this
/// way) and for repairs; the running job never needs it. After a bulk load,
/// `VACUUM ANALYZE readings` first: until vacuum summarises the new BRIN
/// ranges, every hour's scan reads the whole table.
pub async fn rebuild(pool: &PgPool, from: DateTime<Utc>, to: DateTime<Utc>) -> anyhow::Result<()> {
    let hour = TimeDelta::hours(1);
    let mut start = floor_to_hour(from).context("rebuild start")?;
    while start < to {
        let end = start + hour;
        let mut tx = pool.begin().await?;
        sqlx::query(upsert_buckets!(
            "readings_1m",
            "SELECT c.id, r.* FROM channels c CROSS JOIN LATERAL rollup_minutes(c.id, $1, $2) r"
        ))
        .bind(start)
        .bind(end)
        .execute(&mut *tx)
        .await
        .context("rebuilding minute rollups")?;
        // The minutes are current now; without their marks, the hours are
        // built from the minute rows instead of from raw rows again.
        sqlx::query("DELETE FROM rollup_dirty WHERE minute >= $1 AND minute < $2")
            .bind(start)
            .bind(end)
            .execute(&mut *tx)
            .await?;
        sqlx::query(upsert_buckets!(
            "readings_1h",
            "SELECT c.id, r.* FROM channels c CROSS JOIN LATERAL rollup_hours(c.id, $1, $2) r"
        ))
        .bind(start)
        .bind(end)
        .execute(&mut *tx)
        .await
        .context("rebuilding hour rollups")?;
        tx.commit().await?;
        start = end;
    }
    Ok(())
}

/// The TimescaleDB path. It cannot be installed on the machines this is
/// developed on, so it is kept correct by reading: every statement is
/// idempotent, runs outside a transaction block (continuous aggregates
/// require that), and leaves the views with exactly the columns and types
/// of the plain path's.
mod timescale {
    use super::*;

    pub async fn is_hypertable(pool: &PgPool) -> sqlx::Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                            WHERE hypertable_name = 'readings')",
        )
        .fetch_one(pool)
        .await
    }

    pub async fn set_up(pool: &PgPool, config: &HistoryConfig) -> anyhow::Result<()> {
        // Hypertables do not support transition tables, and the continuous
        // aggregates track changes themselves (an invalidation log).
        exec(
            pool,
            "DROP TRIGGER IF EXISTS readings_mark_dirty ON readings",
        )
        .await?;
        if !is_hypertable(pool).await? {
            tracing::info!(
                "converting readings into a TimescaleDB hypertable (existing rows are moved \
                 into chunks; on a large table this takes a while)"
            );
            exec(
                pool,
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
        .fetch_one(pool)
        .await?;
        if !compressed {
            exec(
                pool,
                "ALTER TABLE readings SET (timescaledb.compress,
                     timescaledb.compress_segmentby = 'channel_id',
                     timescaledb.compress_orderby = 'ts')",
            )
            .await?;
        }
        // Remove, then add: a policy added "if not exists" would keep an old
        // interval after the configuration changed.
        exec(
            pool,
            "SELECT remove_compression_policy('readings', if_exists => true)",
        )
        .await?;
        exec(
            pool,
            &format!(
                "SELECT add_compression_policy('readings', INTERVAL '{} days')",
                config.compress_after_days
            ),
        )
        .await?;
        retention_policy(pool, "readings", config.raw_retention_days).await?;

        // The API reads `readings_1m` / `readings_1h` for settled ranges and
        // the views for the rest: here both names become continuous
        // aggregates, replacing the plain tables (and the views over them).
        let created = !is_aggregate(pool, "readings_1m").await?;
        if created {
            for statement in [
                "DROP VIEW IF EXISTS history_1h",
                "DROP VIEW IF EXISTS history_1m",
                "DROP TABLE IF EXISTS readings_1h",
                "DROP TABLE IF EXISTS readings_1m",
            ] {
                exec(pool, statement).await?;
            }
            create_aggregate(
                pool,
                "readings_1m",
                "SELECT channel_id, time_bucket(INTERVAL '1 minute', ts) AS bucket,
                        min(value) AS min, max(value) AS max, sum(value) AS sum,
                        count(*) AS count,
                        min(ts) AS first_ts, first(value, ts) AS first,
                        max(ts) AS last_ts, last(value, ts) AS last
                 FROM readings
                 GROUP BY channel_id, time_bucket(INTERVAL '1 minute', ts)",
            )
            .await?;
            // Hierarchical: hours from minutes (TimescaleDB 2.9 and later).
            create_aggregate(
                pool,
                "readings_1h",
                "SELECT channel_id, time_bucket(INTERVAL '1 hour', bucket) AS bucket,
                        min(min) AS min, max(max) AS max, sum(sum) AS sum,
                        sum(count)::bigint AS count,
                        min(first_ts) AS first_ts, first(first, first_ts) AS first,
                        max(last_ts) AS last_ts, last(last, last_ts) AS last
                 FROM readings_1m
                 GROUP BY channel_id, time_bucket(INTERVAL '1 hour', bucket)",
            )
            .await?;
        }
        // The refresh window must end before raw retention drops chunks: a
        // refresh over a dropped range would empty those buckets.
        let window_days = match config.raw_retention_days {
            0 => 30,
            days => days.saturating_sub(1).clamp(1, 30),
        };
        refresh_policy(pool, "readings_1m", window_days, "1 minute", "1 minute").await?;
        refresh_policy(pool, "readings_1h", window_days, "1 hour", "5 minutes").await?;
        retention_policy(pool, "readings_1m", config.minute_retention_days).await?;
        if created {
            // Created WITH NO DATA over existing readings: fill them once,
            // all of history (the policies then keep the recent window).
            exec(
                pool,
                "CALL refresh_continuous_aggregate('readings_1m', NULL, NULL)",
            )
            .await?;
            exec(
                pool,
                "CALL refresh_continuous_aggregate('readings_1h', NULL, NULL)",
            )
            .await?;
        }
        // With no dirty marks the API reads these views only over an empty
        // range, but they must exist with the plain path's columns.
        exec(
            pool,
            "CREATE OR REPLACE VIEW history_1m AS
             SELECT channel_id, bucket, min, max, sum, count, first_ts, first, last_ts, last
             FROM readings_1m",
        )
        .await?;
        exec(
            pool,
            "CREATE OR REPLACE VIEW history_1h AS
             SELECT channel_id, bucket, min, max, sum, count, first_ts, first, last_ts, last
             FROM readings_1h",
        )
        .await?;
        exec(pool, "TRUNCATE rollup_dirty").await?;
        Ok(())
    }

    async fn is_aggregate(pool: &PgPool, name: &str) -> sqlx::Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates
                            WHERE view_name = $1)",
        )
        .bind(name)
        .fetch_one(pool)
        .await
    }

    /// Creates a real-time continuous aggregate: its newest buckets, not
    /// yet materialised, are computed from raw rows at query time, so an
    /// answer includes the latest readings (TimescaleDB 2.13 turned this
    /// off by default).
    async fn create_aggregate(pool: &PgPool, name: &str, query: &str) -> anyhow::Result<()> {
        exec(
            pool,
            &format!(
                "CREATE MATERIALIZED VIEW {name}
                 WITH (timescaledb.continuous, timescaledb.materialized_only = false)
                 AS {query}
                 WITH NO DATA"
            ),
        )
        .await
    }

    async fn refresh_policy(
        pool: &PgPool,
        view: &str,
        window_days: u32,
        end_offset: &str,
        every: &str,
    ) -> anyhow::Result<()> {
        exec(
            pool,
            &format!("SELECT remove_continuous_aggregate_policy('{view}', if_exists => true)"),
        )
        .await?;
        exec(
            pool,
            &format!(
                "SELECT add_continuous_aggregate_policy('{view}',
                     start_offset => INTERVAL '{window_days} days',
                     end_offset => INTERVAL '{end_offset}',
                     schedule_interval => INTERVAL '{every}')"
            ),
        )
        .await
    }

    async fn retention_policy(pool: &PgPool, relation: &str, days: u32) -> anyhow::Result<()> {
        exec(
            pool,
            &format!("SELECT remove_retention_policy('{relation}', if_exists => true)"),
        )
        .await?;
        if days > 0 {
            exec(
                pool,
                &format!("SELECT add_retention_policy('{relation}', INTERVAL '{days} days')"),
            )
            .await?;
        }
        Ok(())
    }

    /// One statement over the simple protocol, outside any transaction
    /// block. The text is built only from constants and numbers in this
    /// module.
    async fn exec(pool: &PgPool, statement: &str) -> anyhow::Result<()> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(pool)
            .await
            .with_context(|| format!("TimescaleDB set-up failed at: {statement}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizons_are_whole_hours_and_zero_keeps_everything() {
        let now = DateTime::parse_from_rfc3339("2026-11-28T10:42:17Z")
            .unwrap()
            .to_utc();
        let mut config = HistoryConfig::default();
        assert_eq!(raw_horizon(&config, now), None);
        config.raw_retention_days = 30;
        config.minute_retention_days = 90;
        assert_eq!(
            raw_horizon(&config, now).map(|h| h.to_rfc3339()),
            Some("2026-10-29T10:00:00+00:00".to_owned())
        );
        assert_eq!(
            minute_horizon(&config, now).map(|h| h.to_rfc3339()),
            Some("2026-08-30T10:00:00+00:00".to_owned())
        );
    }
}
