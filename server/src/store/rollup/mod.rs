//! Rollups behind the history API and bucketed export: per channel and
//! bucket of each [`Tier`] (1 and 5 and 15 minutes and 1 hour in UTC, 6
//! hours on the yard's wall clock), the min, max, sum, count, first and
//! last reading.
//!
//! Why this module exists: a week of a channel is 600,000 readings but
//! 672 quarter hours, so every chart wider than a few hours reads rollups
//! (each tier built from the one below it, so every bucket width up to a
//! day takes at most four rows), and a rollup is only useful if it is
//! exact. Readers therefore never
//! trust a rollup row blindly: every write of a reading older than the
//! rollups' reach leaves a *dirty mark* (channel, minute) in
//! `rollup_dirty`, readers take rollup rows only before the earliest mark
//! of their request ([`dirty_split`]) and read the views `history_<tier>`
//! from there, which answer a marked bucket from the finer tier's view,
//! and a marked minute from raw rows. The background job ([`run`]) brings the
//! rollups up to date and removes the marks.
//!
//! Two storage paths, chosen once at start-up by [`prepare`]:
//!
//! - **Plain PostgreSQL** ([`plain`]): tables `readings_<tier>`, their
//!   aggregates defined once by the SQL functions `rollup_minutes`,
//!   `rollup_5m`, `rollup_15m`, `rollup_hours` and `rollup_6h` that the
//!   job, [`plain::rebuild`] and the views all call. A statement trigger on `readings` marks every
//!   minute a write touched; a pass claims marks and recomputes them, and a
//!   minute that cannot be recomputed is isolated and retried alone, so it
//!   never holds up the others.
//! - **TimescaleDB** ([`timescale`]): `readings` is a hypertable and the
//!   tiers are continuous aggregates of the same names, each on the one
//!   below. The store writer marks readings
//!   older than the aggregates' real-time reach (the trigger cannot run on
//!   a hypertable), and the job refreshes exactly the marked ranges, however
//!   old, so late readings are exact at once and reach the aggregates.
//!
//! The sums cannot overflow on either path (`rollup_sum`, migration
//! 20261207100000): any finite reading is rolled up without an error.

pub mod plain;
pub mod timescale;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::config::{HistoryConfig, TimescaleMode};
use crate::metrics::Metrics;
use crate::time::{HOUR_MS, MINUTE_MS, floor_to_hour};

pub use plain::{Refresher, apply_retention, rebuild, refresh_dirty, roll_up_written};

/// The overflow-free sum of a column, as an aggregate expression over the
/// rows being grouped: `rollup_sum` (migration 20261207100000) of the
/// ordinary values' plain sum and the large values' sum scaled by 2^-100.
/// Every statement that sums readings or rollup sums spells it this way,
/// as `rollup_minutes` and `rollup_hours` do.
macro_rules! sum_of {
    ($column:literal) => {
        concat!(
            "rollup_sum(sum(",
            $column,
            ") FILTER (WHERE abs(",
            $column,
            ") <= float8 '1e290'), sum(",
            $column,
            " * float8 '7.888609052210118e-31') FILTER (WHERE NOT abs(",
            $column,
            ") <= float8 '1e290'))"
        )
    };
}
pub(crate) use sum_of;

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

/// Most dirty minutes one pass claims: enough for a second of a large
/// yard, small enough to keep each transaction short.
pub const REFRESH_BATCH: i64 = 20_000;

/// Every instance sharing a database takes this advisory lock before
/// refreshing, so two jobs never recompute the same hour from each other's
/// uncommitted minutes. The value is arbitrary and fixed.
const REFRESH_LOCK: i64 = 0x7472_6b5f_726f_6c6c; // "trk_roll"

/// Start-up holds this session lock while it chooses the storage path and
/// sets TimescaleDB up, so instances starting together do it one at a time
/// (two `CREATE EXTENSION`s at once fail one of them).
const PREPARE_LOCK: i64 = 0x7472_6b5f_7473_6462; // "trk_tsdb"

/// A rollup tier, finest first. Each is built from the one before it, and
/// each bucket width of the history ladder divides into whole buckets of
/// one tier: at most four rows per bucket up to a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Minute,
    FiveMinutes,
    QuarterHour,
    Hour,
    /// On the yard's wall clock: from local 00:00, 06:00, 12:00 and 18:00.
    SixHours,
}

impl Tier {
    pub const ALL: [Tier; 5] = [
        Tier::Minute,
        Tier::FiveMinutes,
        Tier::QuarterHour,
        Tier::Hour,
        Tier::SixHours,
    ];

    /// The table (or continuous aggregate) holding the tier.
    pub fn table(self) -> &'static str {
        match self {
            Self::Minute => "readings_1m",
            Self::FiveMinutes => "readings_5m",
            Self::QuarterHour => "readings_15m",
            Self::Hour => "readings_1h",
            Self::SixHours => "readings_6h",
        }
    }

    /// The exact view of the tier.
    pub fn view(self) -> &'static str {
        match self {
            Self::Minute => "history_1m",
            Self::FiveMinutes => "history_5m",
            Self::QuarterHour => "history_15m",
            Self::Hour => "history_1h",
            Self::SixHours => "history_6h",
        }
    }

    /// The nominal bucket width (a six-hour bucket is five or seven hours
    /// long across a daylight-saving change).
    pub fn width_ms(self) -> i64 {
        match self {
            Self::Minute => MINUTE_MS,
            Self::FiveMinutes => 5 * MINUTE_MS,
            Self::QuarterHour => 15 * MINUTE_MS,
            Self::Hour => HOUR_MS,
            Self::SixHours => 6 * HOUR_MS,
        }
    }
}
/// What one pass of the job did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    /// Dirty marks taken (several may name one minute).
    pub claimed: usize,
    /// Units of work (a channel's minute, or a refresh window on
    /// TimescaleDB) that failed and were set aside.
    pub failed: usize,
    /// Marks of failed units, kept for a later retry.
    pub kept: usize,
    /// Minute rollups whose sum is beyond the double range (±Infinity).
    pub overflowed: u64,
}

/// Where the exact range of a rollup read starts: the start of the tier's
/// bucket holding the earliest dirty minute of these channels in
/// `[lo, hi)`, or `hi` when every rollup row is current. Before it a
/// reader may take the tier's rows as they are; from it on it must read
/// the tier's exact view, which computes dirty buckets from finer data.
/// `zone` places six-hour buckets. Both storage paths keep marks.
pub async fn dirty_split(
    conn: &mut PgConnection,
    tier: Tier,
    ids: &[i32],
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
    zone: &str,
) -> sqlx::Result<DateTime<Utc>> {
    // Readers' ranges start on a bucket of the tier: a mark before `lo`
    // is in a bucket they do not read.
    let earliest: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT min(minute) FROM rollup_dirty
         WHERE channel_id = ANY($1) AND minute >= $2 AND minute < $3",
    )
    .bind(ids)
    .bind(lo)
    .bind(hi)
    .fetch_one(&mut *conn)
    .await?;
    let Some(minute) = earliest else {
        return Ok(hi);
    };
    let split = match tier {
        Tier::SixHours => {
            sqlx::query_scalar("SELECT rollup_6h_start($1, $2)")
                .bind(minute)
                .bind(zone)
                .fetch_one(&mut *conn)
                .await?
        }
        utc => {
            let width = utc.width_ms();
            DateTime::from_timestamp_millis(minute.timestamp_millis().div_euclid(width) * width)
                .unwrap_or(minute)
        }
    };
    Ok(split.clamp(lo, hi))
}

/// Chooses the storage path, sets TimescaleDB up when it is there (every
/// start: each step is idempotent and follows configuration changes),
/// builds the six-hour tier for the yard's `zone` (again when it changed),
/// and logs which path serves history. Runs before the store writer
/// starts, which needs to know the path.
pub async fn prepare(
    pool: &PgPool,
    config: &HistoryConfig,
    zone: &str,
) -> anyhow::Result<StoragePath> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(PREPARE_LOCK)
        .execute(&mut *conn)
        .await?;
    let prepared = prepare_locked(&mut conn, config, zone).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(PREPARE_LOCK)
        .execute(&mut *conn)
        .await;
    let path = prepared?;
    unlocked?;
    tracing::info!(path = path.as_str(), "history storage");
    Ok(path)
}

async fn prepare_locked(
    conn: &mut PgConnection,
    config: &HistoryConfig,
    zone: &str,
) -> anyhow::Result<StoragePath> {
    // A zone PostgreSQL does not know aligns wide buckets to UTC, as the
    // history API does (`HistorySettings`).
    let zone = if sqlx::query("SELECT now() AT TIME ZONE $1")
        .bind(zone)
        .execute(&mut *conn)
        .await
        .is_ok()
    {
        zone
    } else {
        "UTC"
    };
    let path = choose_path(conn, config).await?;
    match path {
        StoragePath::Plain => plain::set_zone(conn, zone)
            .await
            .context("building the six-hour rollups for the yard's time zone")?,
        StoragePath::Timescale => timescale::set_up(conn, config, zone).await.context(
            "setting up TimescaleDB for history (history.timescaledb = \"off\" keeps plain \
             tables, as long as readings is not a hypertable yet)",
        )?,
    }
    Ok(path)
}

async fn choose_path(
    conn: &mut PgConnection,
    config: &HistoryConfig,
) -> anyhow::Result<StoragePath> {
    let (installed, available): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),
                EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
    )
    .fetch_one(&mut *conn)
    .await?;
    if installed && timescale::is_hypertable(conn).await? {
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
        .execute(&mut *conn)
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

/// How often retention runs on the plain path.
const RETENTION_EVERY: Duration = Duration::from_secs(600);

/// The job until `shutdown`: every `rollup_interval_ms` (at once again
/// while a backlog remains) a pass over the dirty marks, and on the plain
/// path retention every ten minutes (TimescaleDB runs its own policies).
pub async fn run(
    pool: PgPool,
    config: HistoryConfig,
    path: StoragePath,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let interval = Duration::from_millis(config.rollup_interval_ms);
    let mut next_retention = tokio::time::Instant::now();
    let mut failures = 0u32;
    // Two intervals: a minute written by every writer commit is quiet once
    // the writes have moved on for a whole pass.
    let mut refresher =
        Refresher::new(config.clone(), metrics.clone()).waiting_for_quiet(interval * 2);
    loop {
        let pass = match path {
            StoragePath::Plain => refresher.pass(&pool, REFRESH_BATCH).await,
            StoragePath::Timescale => {
                timescale::refresh_marked(&pool, &config, &metrics, REFRESH_BATCH).await
            }
        };
        let pause = match pass {
            Ok(report) => {
                failures = 0;
                if report.claimed as i64 >= REFRESH_BATCH {
                    Duration::ZERO
                } else {
                    interval
                }
            }
            Err(err) => {
                failures += 1;
                // Nothing was lost (the marks are still there); wait longer
                // each time so a broken database is not hammered.
                let pause = interval * failures.min(30);
                tracing::error!(retry_in = ?pause, "rollup refresh failed: {err:#}");
                pause
            }
        };
        if path == StoragePath::Plain && tokio::time::Instant::now() >= next_retention {
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

/// Runs passes of the job for `path` until one takes no mark: every mark
/// that can be settled now is. For tests and tools; the server's job does
/// this continuously. On TimescaleDB marks of the last minute stay until
/// the minute is old enough to be materialised.
pub async fn settle(
    pool: &PgPool,
    config: &HistoryConfig,
    path: StoragePath,
) -> anyhow::Result<PassReport> {
    let metrics = Arc::new(Metrics::default());
    let mut refresher = Refresher::new(config.clone(), metrics.clone());
    let mut total = PassReport::default();
    loop {
        let report = match path {
            StoragePath::Plain => refresher.pass(pool, REFRESH_BATCH).await?,
            StoragePath::Timescale => {
                timescale::refresh_marked(pool, config, &metrics, REFRESH_BATCH).await?
            }
        };
        total.claimed += report.claimed;
        total.failed += report.failed;
        total.kept += report.kept;
        total.overflowed += report.overflowed;
        if report.claimed == report.kept {
            return Ok(total);
        }
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
