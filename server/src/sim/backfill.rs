//! The demo yard's history: days of the same simulated yard written
//! straight into `readings`, so History's week and month have something to
//! show and forecasting has something to learn from at the first start.
//!
//! It is written as a logger would have kept it: analogue values every
//! [`ANALOGUE_EVERY_S`] seconds (a week at the live rate would be a hundred
//! million rows), relay states at every change to the second and re-sent
//! every [`STATE_EVERY_S`] seconds as the live gateways do. Each hour is one
//! binary `COPY` (the store writer's encoding) and one row in
//! `demo_backfill`, in one transaction: an interrupted backfill resumes
//! where it stopped, and a second start writes only the gap since the last
//! run. The same transaction rolls the hour up and drops the marks the
//! rollup trigger made, so a week of history leaves the rollup job no
//! backlog (at its pace of a few thousand minutes a second it would take
//! many minutes to work through a week of every channel).

use std::collections::HashMap;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sqlx::PgPool;
use trackside_wire::ChannelName;

use super::{SlowSag, Yard, ballast_factor};
use crate::store::rollup::StoragePath;
use crate::store::rollup::roll_up_written;
use crate::store::writer::{Chunk, copy, register_channel, register_gateway};
use crate::time::{HOUR_MS, MINUTE_MS};

/// Seconds between analogue readings in the history.
pub const ANALOGUE_EVERY_S: i64 = 15;
/// Seconds between re-sent relay states, as the live gateways send them.
pub const STATE_EVERY_S: i64 = 10;
/// A gap shorter than this since the last run is not filled.
const MIN_GAP_MS: i64 = 60_000;

/// What a start has to write, and the demo's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The demo's first start (Unix ms): slow sags are planned from it.
    pub epoch: i64,
    /// `[from, to)` still to write, in whole seconds; `None` when the
    /// history is complete.
    pub range: Option<(i64, i64)>,
}

/// Progress after each hour written.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub written_to: i64,
    pub readings: u64,
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// What is still to write for `span_ms` of history before `now`: from the
/// later of `now - span_ms`, the end of what earlier backfills wrote, and
/// the yard's newest stored relay state (the last live run).
pub async fn plan(pool: &PgPool, yard: &Yard, now: i64, span_ms: i64) -> anyhow::Result<Plan> {
    let (epoch, covered): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT min(epoch), max(to_ts) FROM demo_backfill")
            .fetch_one(pool)
            .await
            .context("reading what the demo has written")?;
    let epoch = epoch.map_or(now, |e| e.timestamp_millis());
    let relay_channels: Vec<String> = (0..yard.circuit_count())
        .map(|i| format!("{}/relay_state", yard.circuit_name(i)))
        .collect();
    let (newest,): (Option<DateTime<Utc>>,) = sqlx::query_as(
        "SELECT max(r.ts) FROM channels c
         CROSS JOIN LATERAL (
             SELECT ts FROM readings WHERE channel_id = c.id ORDER BY ts DESC LIMIT 1
         ) r
         WHERE c.name = ANY($1)",
    )
    .bind(&relay_channels)
    .fetch_one(pool)
    .await
    .context("reading the yard's newest reading")?;
    let mut from = now - span_ms;
    if let Some(covered) = covered {
        from = from.max(covered.timestamp_millis());
    }
    if let Some(newest) = newest {
        from = from.max(newest.timestamp_millis() + 1);
    }
    // Whole seconds: relay states land on them.
    let from = from.div_euclid(1000) * 1000 + if from % 1000 == 0 { 0 } else { 1000 };
    let to = now.div_euclid(1000) * 1000;
    let range = (to - from >= MIN_GAP_MS).then_some((from, to));
    Ok(Plan { epoch, range })
}

/// Writes `[from, to)` of `yard` (whose second 0 is `zero`, Unix ms), an
/// hour per transaction with its rollups (on TimescaleDB the aggregates
/// are refreshed over the whole range at the end); returns how many
/// readings were written.
pub async fn write(
    pool: &PgPool,
    storage: StoragePath,
    yard: &Yard,
    plan: Plan,
    zero: i64,
    seed: u64,
    mut progress: impl FnMut(Progress),
) -> anyhow::Result<u64> {
    let Some((from, to)) = plan.range else {
        return Ok(0);
    };
    let channels = register(pool, yard).await?;
    let channel_ids: Vec<i32> = channels.values().copied().collect();
    let mut generator = Generator {
        yard,
        zero,
        last_state: vec![None; yard.circuit_count()],
        rng: StdRng::seed_from_u64(seed.wrapping_add(from as u64)),
    };
    let mut written = 0u64;
    let mut chunk = Chunk::default();
    let mut start = from;
    while start < to {
        let end = (start.div_euclid(HOUR_MS) + 1) * HOUR_MS;
        let end = end.min(to);
        chunk.clear();
        generator.hour(start, end, &channels, &mut chunk);
        let rows = chunk.len() as u64;
        let mut tx = pool.begin().await?;
        copy(&mut tx, &chunk)
            .await
            .with_context(|| format!("writing the demo history from {}", time(start)))?;
        // Whole minutes only: the last one may be shared with the live
        // yard's first readings, whose writer marks it for the rollup job.
        let (minute_from, minute_to) = (
            start.div_euclid(MINUTE_MS) * MINUTE_MS,
            end.div_euclid(MINUTE_MS) * MINUTE_MS,
        );
        if minute_from < minute_to && storage == StoragePath::Plain {
            roll_up_written(&mut tx, &channel_ids, time(minute_from), time(minute_to)).await?;
        }
        sqlx::query(
            "INSERT INTO demo_backfill (epoch, from_ts, to_ts, readings) VALUES ($1, $2, $3, $4)",
        )
        .bind(time(plan.epoch))
        .bind(time(start))
        .bind(time(end))
        .bind(rows as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        written += rows;
        progress(Progress {
            written_to: end,
            readings: written,
        });
        start = end;
    }
    if storage == StoragePath::Timescale {
        crate::store::rollup::timescale::refresh_range(pool, time(from), time(to)).await?;
    }
    Ok(written)
}

/// Registers the yard's gateways and channels; their ids by channel name.
async fn register(pool: &PgPool, yard: &Yard) -> anyhow::Result<HashMap<String, i32>> {
    let mut ids = HashMap::new();
    for gateway in yard.gateway_names() {
        register_gateway(pool, &gateway).await?;
    }
    for (index, circuit) in yard.circuits.iter().enumerate() {
        let gateway = yard.gateway_of(index);
        let mut rng = StdRng::seed_from_u64(0);
        let parameters = std::iter::once("relay_state").chain(
            circuit
                .sample(false, 1.0, &mut rng)
                .into_iter()
                .map(|(p, _)| p),
        );
        for parameter in parameters {
            let name = ChannelName::from_parts(&circuit.name, parameter)
                .with_context(|| format!("channel {}/{parameter}", circuit.name))?;
            let id = register_channel(pool, &gateway, &name).await?;
            ids.insert(name.as_str().to_owned(), id);
        }
    }
    Ok(ids)
}

struct Generator<'a> {
    yard: &'a Yard,
    zero: i64,
    last_state: Vec<Option<bool>>,
    rng: StdRng,
}

impl Generator<'_> {
    /// Every reading of `[start, end)` into `chunk`.
    fn hour(&mut self, start: i64, end: i64, ids: &HashMap<String, i32>, chunk: &mut Chunk) {
        let seconds = |ms: i64| (ms - self.zero) as f64 / 1000.0;
        for (index, circuit) in self.yard.circuits.iter().enumerate() {
            let relay = ids.get(&format!("{}/relay_state", circuit.name)).copied();
            if let Some(id) = relay {
                let mut at = start;
                while at < end {
                    let occupied = self.yard.trains.occupies(index, seconds(at));
                    let refresh = (at / 1000) % STATE_EVERY_S == 0;
                    if refresh || self.last_state[index] != Some(occupied) {
                        chunk.push(id, time(at), if occupied { 0.0 } else { 1.0 });
                        self.last_state[index] = Some(occupied);
                    }
                    at += 1000;
                }
            }
            let step = ANALOGUE_EVERY_S * 1000;
            let mut at = start.div_euclid(step) * step;
            if at < start {
                at += step;
            }
            while at < end {
                let s = seconds(at);
                let occupied = self.yard.trains.occupies(index, s);
                let factor = ballast_factor(s) * self.yard.sag_factor(index, s);
                for (parameter, value) in circuit.sample(occupied, factor, &mut self.rng) {
                    if let Some(&id) = ids.get(&format!("{}/{parameter}", circuit.name)) {
                        chunk.push(id, time(at), value);
                    }
                }
                at += step;
            }
        }
    }
}

/// The demo's slow sags, in seconds from `zero` (this start), planned from
/// the demo's `epoch` so every start simulates the same yard: one sag every
/// other day or so over the `days` before the epoch, and one that began
/// eight hours before it and crosses the relay-voltage limit about two hours
/// after, so a freshly trained forecast has an exceedance to predict.
pub fn demo_sags(yard: &Yard, epoch: i64, zero: i64, days: u32, seed: u64) -> Vec<SlowSag> {
    let circuits = yard.circuit_count();
    let shift = (epoch - zero) as f64 / 1000.0;
    // A running line near the platforms: T104 in the demo yard.
    let ongoing = 3.min(circuits.saturating_sub(1));
    let span_s = f64::from(days) * 86_400.0;
    let mut sags: Vec<SlowSag> = SlowSag::plan(circuits, span_s, (days as usize).div_ceil(2), seed)
        .into_iter()
        .filter(|s| s.circuit != ongoing)
        .map(|s| SlowSag {
            start_s: s.start_s - span_s + shift,
            ..s
        })
        .collect();
    sags.push(SlowSag {
        circuit: ongoing,
        start_s: shift - 8.0 * 3_600.0,
        ramp_s: 14.0 * 3_600.0,
        hold_s: 3.0 * 3_600.0,
        floor: 0.35,
    });
    sags
}
