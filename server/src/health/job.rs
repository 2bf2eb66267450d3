//! The occupation job: derives each circuit's occupations from stored
//! readings behind a watermark, and hands new ones to the rule engine.
//!
//! Per circuit and pass, in one REPEATABLE READ transaction: claim the
//! circuit's marks (readings that landed since the last pass; each mark
//! commits with its readings, so the snapshot holds every reading a
//! claimed mark stands for), start at the watermark or, when a mark lies
//! behind it, at the stored occupation around the mark; derive up to a
//! minute before now (at most [`SPAN`] per pass); replace the stored
//! occupations of that stretch; move the watermark to where derivation
//! must start again (the start of an occupation still open, else the end).
//! A second instance running the same pass waits on the progress row's
//! lock and then finds nothing to do, or fails to serialise and tries
//! again: either way the rows are the same.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;
use trackside_wire::{
    Check, CircuitHealth, ExceptionKind, Occupation, OccupationClass, Rule, Severity,
};

use super::occupation::{self, Input, Ms, Settings};
use super::score::{self, HealthConfig, Inputs, Limits, OpenException};
use crate::exceptions::Feed;
use crate::metrics::Metrics;

/// Readings are taken as complete this long after their time (TimescaleDB
/// marks readings older than 30 s as late; anything later is marked).
pub const SETTLE_MS: Ms = 60_000;
/// The most one pass derives of one circuit.
const SPAN: Ms = 6 * 3_600_000;
/// Readings before the start read to know the relay's state and the
/// voltage before a drop (the relay state is re-sent every 10 s).
const LOOKBACK: Ms = 60_000;
/// A pass every this long while there is nothing to catch up.
const INTERVAL: Duration = Duration::from_secs(5);
/// Occupations the rules see per circuit: the newest and the baseline.
const WINDOW: i64 = 1_000;
/// The baseline the drift rule may look back over.
const WINDOW_DAYS: i64 = 14;
/// Occupations that ended longer ago than this when first derived are
/// stored but not judged: a history written in bulk (the demo's backfilled
/// week, a restored archive) must not raise a week of exceptions at once,
/// while a gateway's backlog after a day's outage still is.
const JUDGE_WITHIN: Ms = 24 * 3_600_000;
/// At most this many new occupations of one circuit are judged one by one
/// per pass; a bigger backlog is judged from its newest.
const JUDGE_EACH: usize = 20;

/// What the job is told at start.
#[derive(Debug, Clone)]
pub struct JobConfig {
    pub settings: Settings,
    pub health: HealthConfig,
    pub limits: Limits,
    /// The yard's IANA zone: health days are its days.
    pub timezone: String,
}

impl JobConfig {
    /// The score's limits are the rules' own, so health and the
    /// exceptions agree.
    pub fn new(health: HealthConfig, rules: &[Rule], timezone: &str) -> Self {
        let mut limits = Limits::default();
        for rule in rules {
            match &rule.check {
                Check::PoorShunt {
                    max_residual_fraction,
                    ..
                } => limits.max_residual_fraction = *max_residual_fraction,
                Check::UnstableOccupationCurrent {
                    max_relative_spread,
                    ..
                } => limits.max_relative_spread = *max_relative_spread,
                Check::DropPickDrift {
                    max_drift_fraction, ..
                } => limits.max_drift_fraction = *max_drift_fraction,
                Check::Limit { low_set, .. } if rule.target.ends_with("/relay_voltage") => {
                    limits.relay_low = *low_set;
                }
                _ => {}
            }
        }
        Self {
            settings: Settings::default(),
            health,
            limits,
            timezone: timezone.to_owned(),
        }
    }
}

/// Runs passes until shutdown. Started once, in `crate::start`.
pub async fn run(
    pool: PgPool,
    feed: Feed,
    config: JobConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    let mut next_score = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_score {
            next_score += Duration::from_secs(config.health.every_s);
            if let Err(err) = score_all(&pool, &feed, &config, Utc::now().timestamp_millis()).await
            {
                tracing::warn!(error = %format!("{err:#}"), "scoring circuit health failed; trying again next time");
            }
        }
        let pause = match pass(
            &pool,
            &feed,
            &config.settings,
            &metrics,
            Utc::now().timestamp_millis(),
        )
        .await
        {
            Ok(more) => {
                failures = 0;
                if let Err(err) = measure_lag(&pool, &metrics).await {
                    tracing::debug!("measuring the occupation job's lag: {err:#}");
                }
                if more { Duration::ZERO } else { INTERVAL }
            }
            Err(err) => {
                failures += 1;
                metrics.occupation_job_failures.fetch_add(1, Relaxed);
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(error = %format!("{err:#}"), failures, "occupation job failed; retrying");
                }
                INTERVAL * failures.min(12)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

struct CircuitChannels {
    circuit: String,
    relay_state: i32,
    relay_voltage: Option<i32>,
    feed_current: Option<i32>,
}

/// One pass over every circuit as of `now`; true when a circuit has more
/// to derive at once.
pub async fn pass(
    pool: &PgPool,
    feed: &Feed,
    settings: &Settings,
    metrics: &Metrics,
    now: Ms,
) -> anyhow::Result<bool> {
    let circuits: Vec<CircuitChannels> = sqlx::query(
        "SELECT circuit,
                max(id) FILTER (WHERE parameter = 'relay_state') AS relay_state,
                max(id) FILTER (WHERE parameter = 'relay_voltage') AS relay_voltage,
                max(id) FILTER (WHERE parameter = 'feed_current') AS feed_current
         FROM channels GROUP BY circuit
         HAVING max(id) FILTER (WHERE parameter = 'relay_state') IS NOT NULL
         ORDER BY circuit",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|row| CircuitChannels {
        circuit: row.get("circuit"),
        relay_state: row.get("relay_state"),
        relay_voltage: row.get("relay_voltage"),
        feed_current: row.get("feed_current"),
    })
    .collect();
    let mut more = false;
    for circuit in &circuits {
        let (again, derived, judge) = derive_circuit(pool, circuit, settings, now)
            .await
            .with_context(|| format!("deriving the occupations of {}", circuit.circuit))?;
        more |= again;
        Metrics::add(&metrics.occupations_derived, derived);
        for window in judge {
            feed.occupations(&circuit.circuit, window).await;
        }
    }
    Ok(more)
}

/// How far the circuit furthest behind is from now: a job that has stopped
/// keeping up shows here before occupations go missing from the screens.
async fn measure_lag(pool: &PgPool, metrics: &Metrics) -> sqlx::Result<()> {
    let lag_s: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM now() - min(derived_to))::float8 FROM occupation_progress",
    )
    .fetch_one(pool)
    .await?;
    metrics
        .occupation_lag_seconds
        .store(lag_s.map_or(0, |s| s.max(0.0).round() as i64), Relaxed);
    Ok(())
}

fn ms(ts: DateTime<Utc>) -> Ms {
    ts.timestamp_millis()
}

fn ts(ms: Ms) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Derives one circuit's next stretch: whether more is waiting, how many
/// occupations were (re)derived, and the windows of occupations for the rules (one per new occupation, oldest
/// first).
async fn derive_circuit(
    pool: &PgPool,
    channels: &CircuitChannels,
    settings: &Settings,
    now: Ms,
) -> anyhow::Result<(bool, usize, Vec<Vec<Occupation>>)> {
    let circuit = channels.circuit.as_str();
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    let earliest_mark: Option<DateTime<Utc>> = sqlx::query_scalar(
        "WITH claimed AS (DELETE FROM occupation_marks WHERE circuit = $1 RETURNING minute)
         SELECT min(minute) FROM claimed",
    )
    .bind(circuit)
    .fetch_one(&mut *tx)
    .await?;
    let progress: Option<(DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT derived_to, judged_to FROM occupation_progress WHERE circuit = $1 FOR UPDATE",
    )
    .bind(circuit)
    .fetch_optional(&mut *tx)
    .await?;
    let (derived_to, judged_to) = match progress {
        Some((derived, judged)) => (ms(derived), judged.map(ms)),
        None => {
            let first: Option<DateTime<Utc>> =
                sqlx::query_scalar("SELECT min(ts) FROM readings WHERE channel_id = $1")
                    .bind(channels.relay_state)
                    .fetch_one(&mut *tx)
                    .await?;
            match first {
                Some(first) => (ms(first), None),
                None => {
                    tx.commit().await?;
                    return Ok((false, 0, Vec::new()));
                }
            }
        }
    };
    let mut from = derived_to;
    if let Some(mark) = earliest_mark.map(ms).filter(|m| *m < derived_to) {
        // Back to the start of the stored occupation the mark falls in.
        let around: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT start_ts FROM occupations
             WHERE circuit = $1 AND start_ts <= $2 AND end_ts >= $3
             ORDER BY start_ts DESC LIMIT 1",
        )
        .bind(circuit)
        .bind(ts(mark))
        .bind(ts(mark - settings.value_gap_ms))
        .fetch_optional(&mut *tx)
        .await?;
        from = around.map_or(mark, |s| ms(s).min(mark));
    }
    let limit = now - SETTLE_MS;
    let mut to = limit.min(from + SPAN);
    if to <= from {
        tx.commit().await?;
        return Ok((false, 0, Vec::new()));
    }
    let ids: Vec<i32> = [
        Some(channels.relay_state),
        channels.relay_voltage,
        channels.feed_current,
    ]
    .into_iter()
    .flatten()
    .collect();
    let (mut derived, mut resume) =
        read_and_derive(&mut tx, channels, &ids, settings, from, to).await?;
    if resume <= from && to < limit {
        // An occupation longer than a span: read on to now at once, or
        // the job would read the same span again and again.
        to = limit;
        (derived, resume) = read_and_derive(&mut tx, channels, &ids, settings, from, to).await?;
    }
    let derived: Vec<Occupation> = derived.into_iter().filter(|o| o.start >= from).collect();
    sqlx::query("DELETE FROM occupations WHERE circuit = $1 AND start_ts >= $2 AND start_ts < $3")
        .bind(circuit)
        .bind(ts(from))
        .bind(ts(resume.max(from)))
        .execute(&mut *tx)
        .await?;
    insert(&mut tx, &derived).await?;
    let fresh: Vec<&Occupation> = derived
        .iter()
        .filter(|o| judged_to.is_none_or(|j| o.end > j) && o.end > now - JUDGE_WITHIN)
        .collect();
    let judged = fresh.iter().map(|o| o.end).max().or(judged_to);
    sqlx::query(
        "INSERT INTO occupation_progress (circuit, derived_to, judged_to) VALUES ($1, $2, $3)
         ON CONFLICT (circuit) DO UPDATE SET derived_to = $2, judged_to = $3",
    )
    .bind(circuit)
    .bind(ts(resume.max(from)))
    .bind(judged.map(ts))
    .execute(&mut *tx)
    .await?;
    let windows = if fresh.is_empty() {
        Vec::new()
    } else {
        let newest = fresh.iter().map(|o| o.start).max().unwrap_or(from);
        let window = list(
            &mut *tx,
            circuit,
            newest - WINDOW_DAYS * crate::time::DAY_MS,
            newest + 1,
            WINDOW,
            true,
        )
        .await?;
        // One window per new occupation, the last JUDGE_EACH of them.
        let starts: Vec<Ms> = fresh.iter().map(|o| o.start).collect();
        let skip = starts.len().saturating_sub(JUDGE_EACH);
        starts[skip..]
            .iter()
            .map(|start| {
                let upto = window.partition_point(|o| o.start <= *start);
                window[..upto].to_vec()
            })
            .filter(|w| !w.is_empty())
            .collect()
    };
    tx.commit().await?;
    Ok((to < limit, derived.len(), windows))
}

async fn read_and_derive(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    channels: &CircuitChannels,
    ids: &[i32],
    settings: &Settings,
    from: Ms,
    to: Ms,
) -> sqlx::Result<(Vec<Occupation>, Ms)> {
    let rows: Vec<(i32, DateTime<Utc>, f64)> = sqlx::query_as(
        "SELECT channel_id, ts, value FROM readings
         WHERE channel_id = ANY($1) AND ts >= $2 AND ts <= $3",
    )
    .bind(ids)
    .bind(ts(from - LOOKBACK))
    .bind(ts(to))
    .fetch_all(&mut **tx)
    .await?;
    let readings: Vec<(Input, Ms, f64)> = rows
        .into_iter()
        .map(|(id, at, value)| {
            let input = if id == channels.relay_state {
                Input::RelayState
            } else if Some(id) == channels.relay_voltage {
                Input::RelayVoltage
            } else {
                Input::FeedCurrent
            };
            (input, ms(at), value)
        })
        .collect();
    Ok(occupation::derive(
        &channels.circuit,
        settings,
        readings,
        to,
    ))
}

async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    occupations: &[Occupation],
) -> sqlx::Result<()> {
    for chunk in occupations.chunks(1_000) {
        let mut builder = sqlx::QueryBuilder::new(
            "INSERT INTO occupations (circuit, start_ts, end_ts, class, drop_value, pick_value, \
             residual_min, residual_max, current_mean, current_sd, missing_readings, readings) ",
        );
        builder.push_values(chunk, |mut row, o| {
            row.push_bind(&o.circuit)
                .push_bind(ts(o.start))
                .push_bind(ts(o.end))
                .push_bind(o.class.as_str())
                .push_bind(o.drop_value)
                .push_bind(o.pick_value)
                .push_bind(o.residual_min)
                .push_bind(o.residual_max)
                .push_bind(o.current_mean)
                .push_bind(o.current_sd)
                .push_bind(o.missing_readings)
                .push_bind(o.readings);
        });
        // A second instance may have stored the same stretch: the same rows.
        builder.push(" ON CONFLICT (circuit, start_ts) DO NOTHING");
        builder.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// A circuit's occupations starting in `[from, to)`, oldest first; with
/// `newest`, the last `limit` of them, else the first.
pub async fn list<'e, E>(
    executor: E,
    circuit: &str,
    from: Ms,
    to: Ms,
    limit: i64,
    newest: bool,
) -> sqlx::Result<Vec<Occupation>>
where
    E: sqlx::PgExecutor<'e>,
{
    let statement = if newest {
        "SELECT circuit, start_ts, end_ts, class, drop_value, pick_value, residual_min,
                residual_max, current_mean, current_sd, missing_readings, readings
         FROM occupations WHERE circuit = $1 AND start_ts >= $2 AND start_ts < $3
         ORDER BY start_ts DESC LIMIT $4"
    } else {
        "SELECT circuit, start_ts, end_ts, class, drop_value, pick_value, residual_min,
                residual_max, current_mean, current_sd, missing_readings, readings
         FROM occupations WHERE circuit = $1 AND start_ts >= $2 AND start_ts < $3
         ORDER BY start_ts LIMIT $4"
    };
    let rows = sqlx::query(statement)
        .bind(circuit)
        .bind(ts(from))
        .bind(ts(to))
        .bind(limit)
        .fetch_all(executor)
        .await?;
    let mut list: Vec<Occupation> = rows
        .into_iter()
        .map(|row| {
            let start = ms(row.get("start_ts"));
            let end = ms(row.get("end_ts"));
            let class: String = row.get("class");
            Occupation {
                circuit: row.get("circuit"),
                start,
                end,
                duration_ms: end - start,
                class: OccupationClass::parse(&class).unwrap_or(OccupationClass::Normal),
                drop_value: row.get("drop_value"),
                pick_value: row.get("pick_value"),
                residual_min: row.get("residual_min"),
                residual_max: row.get("residual_max"),
                current_mean: row.get("current_mean"),
                current_sd: row.get("current_sd"),
                missing_readings: row.get("missing_readings"),
                readings: row.get("readings"),
            }
        })
        .collect();
    if newest {
        list.reverse();
    }
    Ok(list)
}

/// Where a circuit's occupations are exact up to.
pub async fn derived_to(pool: &PgPool, circuit: &str) -> sqlx::Result<Option<Ms>> {
    let at: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT derived_to FROM occupation_progress WHERE circuit = $1")
            .bind(circuit)
            .fetch_optional(pool)
            .await?;
    Ok(at.map(ms))
}

/// Scores every circuit with a relay state as of `now`, stores the score
/// and the day's, and tells the engine.
pub async fn score_all(
    pool: &PgPool,
    feed: &Feed,
    config: &JobConfig,
    now: Ms,
) -> anyhow::Result<()> {
    let circuits: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT circuit FROM channels WHERE parameter = 'relay_state' ORDER BY circuit",
    )
    .fetch_all(pool)
    .await?;
    let open: Vec<(String, String, String, bool)> = sqlx::query_as(
        "SELECT circuit, kind, severity, active FROM exceptions WHERE open AND circuit IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    for circuit in circuits {
        let occupations = list(
            pool,
            &circuit,
            now - WINDOW_DAYS * crate::time::DAY_MS,
            now + 1,
            WINDOW,
            true,
        )
        .await?;
        let exceptions: Vec<OpenException> = open
            .iter()
            .filter(|(c, ..)| *c == circuit)
            .filter_map(|(_, kind, severity, active)| {
                Some(OpenException {
                    kind: ExceptionKind::parse(kind)?,
                    severity: Severity::parse(severity)?,
                    active: *active,
                })
            })
            .collect();
        let health = score::score(
            &circuit,
            &Inputs {
                occupations: &occupations,
                open: &exceptions,
            },
            &config.limits,
            &config.health,
            now,
        );
        store_score(pool, &health, &config.timezone).await?;
        let worst = health
            .deductions
            .first()
            .map_or_else(|| "nothing".to_owned(), |d| d.detail.clone());
        feed.health(&circuit, health.score, worst, now).await;
    }
    Ok(())
}

async fn store_score(pool: &PgPool, health: &CircuitHealth, timezone: &str) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO circuit_health (circuit, score, at, deductions, occupations)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (circuit) DO UPDATE
         SET score = $2, at = $3, deductions = $4, occupations = $5",
    )
    .bind(&health.circuit)
    .bind(health.score)
    .bind(ts(health.at))
    .bind(sqlx::types::Json(&health.deductions))
    .bind(health.occupations as i32)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO circuit_health_daily (circuit, day, lowest, last)
         VALUES ($1, ($2 AT TIME ZONE $3)::date, $4, $4)
         ON CONFLICT (circuit, day) DO UPDATE
         SET lowest = least(circuit_health_daily.lowest, $4), last = $4",
    )
    .bind(&health.circuit)
    .bind(ts(health.at))
    .bind(timezone)
    .bind(health.score)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

type HealthRow = (
    String,
    f64,
    DateTime<Utc>,
    sqlx::types::Json<Vec<trackside_wire::HealthDeduction>>,
    i32,
);

/// Every circuit's latest health, worst first.
pub async fn health_list(pool: &PgPool) -> sqlx::Result<Vec<CircuitHealth>> {
    let rows: Vec<HealthRow> = sqlx::query_as(
        "SELECT circuit, score, at, deductions, occupations FROM circuit_health
             ORDER BY score, circuit",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(circuit, score, at, deductions, occupations)| CircuitHealth {
                circuit,
                score,
                at: ms(at),
                deductions: deductions.0,
                occupations: occupations.max(0) as u32,
            },
        )
        .collect())
}

/// One circuit's health day by day, oldest first, over the last `days`.
pub async fn health_days(
    pool: &PgPool,
    circuit: &str,
    days: i32,
) -> sqlx::Result<Vec<trackside_wire::HealthDay>> {
    let rows: Vec<(chrono::NaiveDate, f64, f64)> = sqlx::query_as(
        "SELECT day, lowest, last FROM (
             SELECT day, lowest, last FROM circuit_health_daily
             WHERE circuit = $1 ORDER BY day DESC LIMIT $2
         ) d ORDER BY day",
    )
    .bind(circuit)
    .bind(i64::from(days))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(day, lowest, last)| trackside_wire::HealthDay {
            day: day.format("%Y-%m-%d").to_string(),
            lowest,
            last,
        })
        .collect())
}
