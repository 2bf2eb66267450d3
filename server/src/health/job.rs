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

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;
use trackside_wire::{Occupation, OccupationClass};

use super::occupation::{self, Input, Ms, Settings};
use crate::exceptions::Feed;

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
/// At most this many new occupations of one circuit are judged one by one
/// per pass; a bigger backlog is judged from its newest.
const JUDGE_EACH: usize = 20;

/// Runs passes until shutdown. Started once, in `crate::start`.
pub async fn run(pool: PgPool, feed: Feed, settings: Settings, shutdown: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let pause = match pass(&pool, &feed, &settings, Utc::now().timestamp_millis()).await {
            Ok(more) => {
                failures = 0;
                if more { Duration::ZERO } else { INTERVAL }
            }
            Err(err) => {
                failures += 1;
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
        let (again, judge) = derive_circuit(pool, circuit, settings, now)
            .await
            .with_context(|| format!("deriving the occupations of {}", circuit.circuit))?;
        more |= again;
        for window in judge {
            feed.occupations(&circuit.circuit, window).await;
        }
    }
    Ok(more)
}

fn ms(ts: DateTime<Utc>) -> Ms {
    ts.timestamp_millis()
}

fn ts(ms: Ms) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Derives one circuit's next stretch: whether more is waiting, and the
/// windows of occupations for the rules (one per new occupation, oldest
/// first).
async fn derive_circuit(
    pool: &PgPool,
    channels: &CircuitChannels,
    settings: &Settings,
    now: Ms,
) -> anyhow::Result<(bool, Vec<Vec<Occupation>>)> {
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
                    return Ok((false, Vec::new()));
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
        return Ok((false, Vec::new()));
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
        .filter(|o| judged_to.is_none_or(|j| o.end > j))
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
    Ok((to < limit, windows))
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
