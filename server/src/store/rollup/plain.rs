//! The plain PostgreSQL path: rollup tables kept by a job from the dirty
//! marks the `readings` trigger leaves (migrations 2, 5, 6, 20261207100000
//! and 20261207473100).
//!
//! Why a pass is built the way it is: one pass claims thousands of marks
//! and recomputes them in a few set-based statements, which is what keeps
//! up with a large yard; but one statement is also one failure. A minute
//! that cannot be rolled up (a bug, a corrupt page, a constraint added by
//! hand) would fail every pass and stall the rollups of every channel. So
//! a failed statement is retried on halves of its minutes, down to the
//! minute that fails; that minute is logged, counted, put back among the
//! marks (readers keep answering it exactly, from raw rows) and set aside
//! with a growing delay, and every other minute is rolled up.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool};

use super::{PassReport, REFRESH_LOCK, raw_horizon};
use crate::config::HistoryConfig;
use crate::metrics::Metrics;
use crate::time::floor_to_hour;

/// Minutes set aside at most; beyond it a failing minute is retried with
/// every pass (costing a few statements each time) and still counted.
const QUARANTINE_LIMIT: usize = 10_000;

/// The longest a failing minute waits between attempts.
const RETRY_MAX: Duration = Duration::from_secs(600);

/// The longest a minute that keeps being written waits for its rollup.
const QUIET_AT_MOST: Duration = Duration::from_secs(60);

/// `INSERT INTO {table} ... {rows} ON CONFLICT ...`: stores recomputed
/// buckets, each replacing the stored one whole. `rows` yields the channel
/// id, then the columns of a tier's `rollup_*` function (the aggregates'
/// one definition) in their order.
macro_rules! upsert_buckets {
    ($table:literal, $rows:expr) => {
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

/// The minutes `$1` (channels) × `$2` (minute starts) recomputed from raw
/// rows; yields how many of them have a sum beyond the double range.
const UPSERT_MINUTES: &str = concat!(
    "WITH up AS (",
    upsert_buckets!(
        "readings_1m",
        "SELECT d.channel_id, r.*
         FROM unnest($1::integer[], $2::timestamptz[]) AS d (channel_id, minute)
         CROSS JOIN LATERAL rollup_minutes(d.channel_id, d.minute, d.minute + interval '1 minute') r"
    ),
    " RETURNING sum)
    SELECT count(*) FILTER (WHERE NOT (sum > float8 '-Infinity' AND sum < float8 'Infinity'))
    FROM up"
);

/// The buckets of a UTC tier holding the minutes `$1` × `$2`, recomputed
/// from the finer tier's fresh rows; except a bucket that still holds a
/// dirty minute from `$3` (the raw horizon) on that this pass did not
/// take. The pass that takes its last one recomputes it, and until then no
/// reader reads it (they read a tier only up to the bucket of the earliest
/// dirty minute). A mark before the horizon is dropped unrecomputed when
/// taken, so it holds nothing back. Recomputing it now
/// would read that minute, through every finer tier's exact view, from raw
/// rows, once per pass: with a writer committing chunk after chunk, most
/// of the job's time.
macro_rules! upsert_tier {
    ($table:literal, $width:literal, $function:literal) => {
        upsert_buckets!(
            $table,
            concat!(
                "SELECT d.channel_id, r.*
                 FROM (
                     SELECT DISTINCT channel_id,
                            date_bin(interval '",
                $width,
                "', minute, timestamptz 'epoch') AS b
                     FROM unnest($1::integer[], $2::timestamptz[]) AS u (channel_id, minute)
                 ) d
                 CROSS JOIN LATERAL (SELECT d.b + interval '",
                $width,
                "' AS e) w
                 CROSS JOIN LATERAL ",
                $function,
                "(d.channel_id, d.b, w.e) r
                 WHERE NOT EXISTS (
                     SELECT 1 FROM rollup_dirty x
                     WHERE x.channel_id = d.channel_id AND x.minute >= d.b AND x.minute < w.e
                       AND x.minute >= coalesce($3, timestamptz '-infinity'))"
            )
        )
    };
}

/// Coarser tiers, finest first: each reads the one before it.
const UPSERT_COARSER: [&str; 3] = [
    upsert_tier!("readings_5m", "5 minutes", "rollup_5m"),
    upsert_tier!("readings_15m", "15 minutes", "rollup_15m"),
    upsert_tier!("readings_1h", "1 hour", "rollup_hours"),
];

/// The six-hour buckets (on the wall clock of zone `$3`) holding the
/// minutes `$1` × `$2`, recomputed from fresh hours; except, as in
/// `upsert_tier!`, one that still holds a dirty minute from `$4` on.
const UPSERT_6H: &str = upsert_buckets!(
    "readings_6h",
    "SELECT d.channel_id, r.*
     FROM (
         SELECT DISTINCT channel_id, rollup_6h_start(minute, $3) AS b
         FROM unnest($1::integer[], $2::timestamptz[]) AS u (channel_id, minute)
     ) d
     CROSS JOIN LATERAL (SELECT rollup_6h_end(d.b, $3) AS e) w
     CROSS JOIN LATERAL rollup_6h(d.channel_id, d.b, w.e, $3) r
     WHERE NOT EXISTS (
         SELECT 1 FROM rollup_dirty x
         WHERE x.channel_id = d.channel_id AND x.minute >= d.b AND x.minute < w.e
           AND x.minute >= coalesce($4, timestamptz '-infinity'))"
);

/// No JIT for this transaction. The tiers' statements go through nested
/// views whose estimates exceed `jit_above_cost` by far, so PostgreSQL
/// compiled each one: half a second per statement that runs in under a
/// millisecond (EXPLAIN ANALYZE of a 5-minute rebuild of 101 channels:
/// 519 ms with JIT, 0.4 ms without), five statements per pass and per
/// rebuilt hour. The history API and export turn it off the same way.
const NO_JIT: &str = "SELECT set_config('jit', 'off', true)";

/// A channel's minute: the unit a pass can isolate.
type Unit = (i32, DateTime<Utc>);

/// A minute set aside after failing.
#[derive(Debug, Clone, Copy)]
struct SetAside {
    failures: u32,
    retry_at: DateTime<Utc>,
}

/// The plain path's job state: the minutes set aside after failing.
pub struct Refresher {
    config: HistoryConfig,
    metrics: Arc<Metrics>,
    set_aside: HashMap<Unit, SetAside>,
    quiet: Duration,
}

impl Refresher {
    /// A refresher that takes every committed mark (for `settle` and tools).
    pub fn new(config: HistoryConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            config,
            metrics,
            set_aside: HashMap::new(),
            quiet: Duration::ZERO,
        }
    }

    /// Leaves a minute to a later pass while it has a mark younger than
    /// `quiet` (but never once its oldest mark is a minute old): a minute
    /// still being written is then recomputed once, not once per pass
    /// (migration 20261207490000).
    pub fn waiting_for_quiet(mut self, quiet: Duration) -> Self {
        self.quiet = quiet.min(QUIET_AT_MOST);
        self
    }

    /// One pass: claims up to `limit` dirty marks (not those of minutes set
    /// aside and not yet due), recomputes their minutes from raw rows and
    /// their hours from minute rows, and commits, all in one transaction
    /// under an advisory lock. A minute that fails is isolated and its mark
    /// kept; an error that is not a minute's own (the connection, a
    /// timeout) rolls the whole pass back and is returned.
    ///
    /// Marks older than the raw horizon are dropped without recomputing:
    /// those raw rows are being deleted, and the rollup made while they
    /// existed is the better record.
    pub async fn pass(&mut self, pool: &PgPool, limit: i64) -> anyhow::Result<PassReport> {
        let mut tx = pool.begin().await?;
        match self.pass_in(&mut tx, limit).await {
            Ok((report, failed)) => {
                tx.commit().await?;
                self.after_commit(report, &failed);
                Ok(report)
            }
            Err(err) => {
                // Roll back now: a dropped transaction only queues its
                // ROLLBACK until the connection is next used, and meanwhile
                // it would hold the claimed marks and the advisory lock.
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!("rolling back a failed rollup pass: {rollback}");
                }
                Err(err)
            }
        }
    }

    async fn pass_in(
        &self,
        tx: &mut PgConnection,
        limit: i64,
    ) -> anyhow::Result<(PassReport, Vec<(Unit, String)>)> {
        // One snapshot for the whole pass. Each coarser tier is computed
        // from the fresh rows of the one below (`history_1m` at the
        // bottom), and marks that writers append while the pass runs would
        // otherwise send each of their minutes back to raw rows, to be
        // recomputed again by the next pass. Only refreshers write the
        // rollup tables, and they hold REFRESH_LOCK, so this isolation
        // costs no serialization failures.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await?;
        sqlx::query(NO_JIT).execute(&mut *tx).await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(REFRESH_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            // Another instance is refreshing; its pass covers these marks.
            return Ok((PassReport::default(), Vec::new()));
        }
        let now = Utc::now();
        let (held_channels, held_minutes): (Vec<i32>, Vec<DateTime<Utc>>) = self
            .set_aside
            .iter()
            .filter(|(_, s)| s.retry_at > now)
            .map(|(unit, _)| *unit)
            .unzip();
        // Marks are appended by each writer's statement and become visible
        // when it commits, so every mark claimed here stands for rows this
        // pass's statements can see. A minute may be marked several times;
        // it is recomputed once.
        //
        // A mark is taken once its minute has had no mark for `quiet`, or
        // once it is older than QUIET_AT_MOST; the check for younger marks
        // probes the (channel, minute) index, and only the last moments'
        // marks are young, so it stays cheap however long the backlog.
        let mut claimed: Vec<Unit> = sqlx::query_as(
            "DELETE FROM rollup_dirty
             WHERE ctid = ANY (ARRAY (
                 SELECT d.ctid FROM rollup_dirty d
                 WHERE d.marked_at <= now() - make_interval(secs => $4)
                   AND (d.marked_at < now() - make_interval(secs => $5)
                        OR NOT EXISTS (
                            SELECT 1 FROM rollup_dirty y
                            WHERE y.channel_id = d.channel_id AND y.minute = d.minute
                              AND y.marked_at > now() - make_interval(secs => $4)))
                   AND NOT EXISTS (
                     SELECT 1 FROM unnest($2::integer[], $3::timestamptz[]) AS h (channel_id, minute)
                     WHERE h.channel_id = d.channel_id AND h.minute = d.minute)
                 LIMIT $1 FOR UPDATE OF d SKIP LOCKED))
             RETURNING channel_id, minute",
        )
        .bind(limit)
        .bind(&held_channels)
        .bind(&held_minutes)
        .bind(self.quiet.as_secs_f64())
        .bind(QUIET_AT_MOST.as_secs_f64())
        .fetch_all(&mut *tx)
        .await?;
        let mut report = PassReport {
            claimed: claimed.len(),
            ..PassReport::default()
        };
        if claimed.is_empty() {
            return Ok((report, Vec::new()));
        }
        claimed.sort_unstable();
        claimed.dedup();
        let zone: String = sqlx::query_scalar("SELECT zone FROM rollup_settings")
            .fetch_one(&mut *tx)
            .await?;
        let horizon = raw_horizon(&self.config, now);
        let units: Vec<Unit> = claimed
            .into_iter()
            .filter(|(_, minute)| horizon.is_none_or(|h| *minute >= h))
            .collect();

        // All units at once, and on a failure that is some unit's own,
        // halves of the failing set until single failing units remain.
        let mut failed: Vec<(Unit, String)> = Vec::new();
        let mut pending: Vec<&[Unit]> = vec![&units];
        while let Some(part) = pending.pop() {
            if part.is_empty() {
                continue;
            }
            sqlx::raw_sql("SAVEPOINT rollup_part")
                .execute(&mut *tx)
                .await?;
            match recompute(tx, part, &zone, horizon).await {
                Ok(overflowed) => {
                    report.overflowed += overflowed;
                    sqlx::raw_sql("RELEASE SAVEPOINT rollup_part")
                        .execute(&mut *tx)
                        .await?;
                }
                Err(err) if is_a_units_own(&err) => {
                    sqlx::raw_sql(
                        "ROLLBACK TO SAVEPOINT rollup_part; RELEASE SAVEPOINT rollup_part",
                    )
                    .execute(&mut *tx)
                    .await?;
                    if let [unit] = part {
                        failed.push((*unit, err.to_string()));
                    } else {
                        let (left, right) = part.split_at(part.len() / 2);
                        pending.push(right);
                        pending.push(left);
                    }
                }
                Err(err) => return Err(err).context("recomputing rollups"),
            }
        }
        if !failed.is_empty() {
            // Marked again, so readers keep answering these minutes from
            // raw rows while they are set aside.
            let (channels, minutes): (Vec<i32>, Vec<DateTime<Utc>>) =
                failed.iter().map(|(unit, _)| *unit).unzip();
            sqlx::query(
                "INSERT INTO rollup_dirty (channel_id, minute)
                 SELECT * FROM unnest($1::integer[], $2::timestamptz[])",
            )
            .bind(&channels)
            .bind(&minutes)
            .execute(&mut *tx)
            .await?;
        }
        report.failed = failed.len();
        report.kept = failed.len();
        Ok((report, failed))
    }

    /// Counts the pass and updates the minutes set aside.
    fn after_commit(&mut self, report: PassReport, failed: &[(Unit, String)]) {
        let now = Utc::now();
        // A due minute that failed no more was rolled up, or its marks are
        // gone: either way it is no longer set aside.
        self.set_aside
            .retain(|unit, s| s.retry_at > now || failed.iter().any(|(f, _)| f == unit));
        for (unit, _) in failed {
            let failures = self.set_aside.get(unit).map_or(0, |s| s.failures) + 1;
            let delay = Duration::from_millis(self.config.rollup_interval_ms)
                .saturating_mul(1 << failures.min(16))
                .min(RETRY_MAX);
            if self.set_aside.len() < QUARANTINE_LIMIT || self.set_aside.contains_key(unit) {
                self.set_aside.insert(
                    *unit,
                    SetAside {
                        failures,
                        retry_at: now + TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX),
                    },
                );
            }
        }
        if let Some(((channel, minute), err)) = failed.first() {
            tracing::error!(
                failed = failed.len(),
                channel_id = channel,
                %minute,
                "rollup: minutes that cannot be rolled up are set aside and retried alone \
                 (history answers them from raw readings meanwhile); the first failed with: {err}"
            );
        }
        Metrics::add(&self.metrics.rollup_failed_minutes, failed.len());
        self.metrics
            .rollup_overflows
            .fetch_add(report.overflowed, Relaxed);
        self.metrics
            .rollup_set_aside
            .store(self.set_aside.len() as i64, Relaxed);
    }
}

/// The minutes of `units` and the buckets of every coarser tier holding
/// them (see `upsert_tier!` for those left to a later pass; `horizon` is
/// the raw horizon, if any). Returns how many minutes have a sum beyond
/// the double range.
async fn recompute(
    tx: &mut PgConnection,
    units: &[Unit],
    zone: &str,
    horizon: Option<DateTime<Utc>>,
) -> sqlx::Result<u64> {
    let (channels, minutes): (Vec<i32>, Vec<DateTime<Utc>>) = units.iter().copied().unzip();
    // Each statement sees what the earlier ones wrote (same transaction)
    // and every reading committed before it started, which includes every
    // writer whose mark this pass claimed.
    let overflowed: i64 = sqlx::query_scalar(UPSERT_MINUTES)
        .bind(&channels)
        .bind(&minutes)
        .fetch_one(&mut *tx)
        .await?;
    for statement in UPSERT_COARSER {
        sqlx::query(statement)
            .bind(&channels)
            .bind(&minutes)
            .bind(horizon)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(UPSERT_6H)
        .bind(&channels)
        .bind(&minutes)
        .bind(zone)
        .bind(horizon)
        .execute(&mut *tx)
        .await?;
    Ok(overflowed.max(0) as u64)
}

/// Whether an error belongs to the data being rolled up (a data exception,
/// a constraint, a limit, a raised error, an internal error such as a
/// corrupt page), so that halving the work can isolate it. Anything else
/// (the connection, resources, a timeout, a lock, a bug in a statement)
/// would fail every unit alike and aborts the pass instead.
fn is_a_units_own(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| matches!(code.get(..2), Some("22" | "23" | "54" | "P0" | "XX")))
}

/// One pass with a fresh job state; returns what it did. For tests and
/// tools: the server's job keeps its state between passes.
pub async fn refresh_dirty(
    pool: &PgPool,
    config: &HistoryConfig,
    limit: i64,
) -> anyhow::Result<PassReport> {
    Refresher::new(config.clone(), Arc::new(Metrics::default()))
        .pass(pool, limit)
        .await
}

/// Rows deleted per retention statement, so one pass never holds a long
/// lock or builds a huge transaction.
const RETENTION_CHUNK: i64 = 50_000;

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
    if let Some(horizon) = super::minute_horizon(config, now) {
        // Tiers finer than an hour follow the minutes' retention.
        for statement in [
            "DELETE FROM readings_1m WHERE ctid = ANY (ARRAY (
                 SELECT ctid FROM readings_1m WHERE bucket < $1 LIMIT $2))",
            "DELETE FROM readings_5m WHERE ctid = ANY (ARRAY (
                 SELECT ctid FROM readings_5m WHERE bucket < $1 LIMIT $2))",
            "DELETE FROM readings_15m WHERE ctid = ANY (ARRAY (
                 SELECT ctid FROM readings_15m WHERE bucket < $1 LIMIT $2))",
        ] {
            let deleted = delete_before(pool, statement, horizon)
                .await
                .context("deleting sub-hour rollups past retention")?;
            if deleted > 0 {
                tracing::info!(deleted, %horizon, "deleted sub-hour rollups past retention");
            }
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
/// hour of all channels per statement (every tier's buckets holding that
/// hour), and drops the dirty marks in that range. For bulk loads that
/// bypass the trigger (the benchmark seeds this way) and for repairs; the
/// running job never needs it. After a bulk load, `VACUUM ANALYZE
/// readings` first: until vacuum summarises the new BRIN ranges, every
/// hour's scan reads the whole table.
///
/// The tier tables are analysed every day of hours: their statements are
/// prepared once, and a plan made while a table was empty scans it whole
/// (each hour of a year took seconds before).
pub async fn rebuild(pool: &PgPool, from: DateTime<Utc>, to: DateTime<Utc>) -> anyhow::Result<()> {
    let hour = TimeDelta::hours(1);
    let mut start = floor_to_hour(from).context("rebuild start")?;
    let mut hours = 0u32;
    while start < to {
        if hours.is_multiple_of(24) {
            sqlx::query("ANALYZE readings_1m, readings_5m, readings_15m, readings_1h, readings_6h")
                .execute(pool)
                .await?;
        }
        hours += 1;
        let end = start + hour;
        let mut tx = pool.begin().await?;
        sqlx::query(NO_JIT).execute(&mut *tx).await?;
        sqlx::query(upsert_buckets!(
            "readings_1m",
            "SELECT c.id, r.* FROM channels c CROSS JOIN LATERAL rollup_minutes(c.id, $1, $2) r"
        ))
        .bind(start)
        .bind(end)
        .execute(&mut *tx)
        .await
        .context("rebuilding minute rollups")?;
        // The minutes are current now; without their marks, the coarser
        // tiers are built from the minute rows instead of from raw rows.
        sqlx::query("DELETE FROM rollup_dirty WHERE minute >= $1 AND minute < $2")
            .bind(start)
            .bind(end)
            .execute(&mut *tx)
            .await?;
        for statement in [
            upsert_buckets!(
                "readings_5m",
                "SELECT c.id, r.* FROM channels c CROSS JOIN LATERAL rollup_5m(c.id, $1, $2) r"
            ),
            upsert_buckets!(
                "readings_15m",
                "SELECT c.id, r.* FROM channels c CROSS JOIN LATERAL rollup_15m(c.id, $1, $2) r"
            ),
            upsert_buckets!(
                "readings_1h",
                "SELECT c.id, r.* FROM channels c CROSS JOIN LATERAL rollup_hours(c.id, $1, $2) r"
            ),
        ] {
            sqlx::query(statement)
                .bind(start)
                .bind(end)
                .execute(&mut *tx)
                .await
                .context("rebuilding rollups")?;
        }
        // The whole six-hour bucket holding this hour, from its hours.
        sqlx::query(upsert_buckets!(
            "readings_6h",
            "SELECT c.id, r.* FROM channels c, rollup_settings s,
                    LATERAL rollup_6h(c.id, rollup_6h_start($1, s.zone),
                                      rollup_6h_end(rollup_6h_start($1, s.zone), s.zone),
                                      s.zone) r"
        ))
        .bind(start)
        .execute(&mut *tx)
        .await
        .context("rebuilding six-hour rollups")?;
        tx.commit().await?;
        start = end;
    }
    Ok(())
}

/// Rolls up `[from, to)` of `channels`, every tier, inside the transaction
/// that wrote their readings, and drops the dirty marks that write made: a
/// bulk load (the demo's history) then leaves the rollup job no backlog.
/// `from` and `to` are whole minutes. Plain path only (on TimescaleDB the
/// aggregates refresh themselves).
pub async fn roll_up_written(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    channels: &[i32],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(NO_JIT).execute(&mut **tx).await?;
    // The marks go first, as in a pass: the coarser tiers then read the
    // minutes recomputed here instead of raw rows.
    sqlx::query(
        "DELETE FROM rollup_dirty
         WHERE channel_id = ANY($1) AND minute >= $2 AND minute < $3",
    )
    .bind(channels)
    .bind(from)
    .bind(to)
    .execute(&mut **tx)
    .await?;
    let zone: String = sqlx::query_scalar("SELECT zone FROM rollup_settings")
        .fetch_one(&mut **tx)
        .await?;
    let mut units: Vec<Unit> = Vec::new();
    let mut minute = from;
    while minute < to {
        units.extend(channels.iter().map(|&channel| (channel, minute)));
        minute += TimeDelta::minutes(1);
    }
    recompute(tx, &units, &zone, None)
        .await
        .context("rolling up the written minutes")?;
    Ok(())
}

/// Makes `zone` the six-hour tier's and the views': when it is not yet,
/// rebuilds the tier from the hour rollups (one statement, a few seconds
/// per million hours) and recreates the views, in one transaction.
pub async fn set_zone(conn: &mut PgConnection, zone: &str) -> anyhow::Result<()> {
    let current: String = sqlx::query_scalar("SELECT zone FROM rollup_settings")
        .fetch_one(&mut *conn)
        .await?;
    if current == zone {
        return Ok(());
    }
    tracing::info!(
        from = current,
        to = zone,
        "the yard's time zone changed: rebuilding the six-hour rollups"
    );
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query("UPDATE rollup_settings SET zone = $1")
        .bind(zone)
        .execute(&mut *tx)
        .await?;
    sqlx::query("CALL rollup_create_views($1)")
        .bind(zone)
        .execute(&mut *tx)
        .await?;
    sqlx::query("TRUNCATE readings_6h")
        .execute(&mut *tx)
        .await?;
    sqlx::query(upsert_buckets!(
        "readings_6h",
        "SELECT c.id, r.* FROM channels c
         CROSS JOIN LATERAL rollup_6h(c.id, '-infinity', 'infinity', $1) r"
    ))
    .bind(zone)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
