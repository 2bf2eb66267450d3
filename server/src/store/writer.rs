//! The store writer: the only code that writes readings to PostgreSQL.
//!
//! It drains whatever its queue holds (so batches grow by themselves under
//! load and a lone reading is written at once when idle), registers unknown
//! gateways and channels, and writes each chunk of rows with one binary
//! `COPY`: one round trip and one commit for thousands of rows, at close to
//! what PostgreSQL can take. A re-sent reading makes that `COPY` fail on the
//! key as a whole; the chunk is then written again with `INSERT ... ON
//! CONFLICT DO NOTHING`, which skips what is already stored. Re-sends are
//! rare (a gateway retrying, a replay after a crash), so the slower statement
//! is paid only then. A failed write is retried, with backoff, until it
//! succeeds.
//!
//! On TimescaleDB the writer also leaves the dirty marks that the plain
//! path's trigger leaves (a hypertable cannot run it), for readings old
//! enough to belong to a materialised minute only: one comparison per
//! reading, and a mark per late (channel, minute), committed together with
//! the rows, so a reader never sees late rows without their marks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use trackside_wire::{ChannelName, parameter_info};

use super::queue::{Spooled, StoreQueueReceiver};
use super::rollup::{StoragePath, timescale};
use super::spool::Spool;
use crate::metrics::Metrics;
use crate::reading::{DecodedReading, ReadingBatch};

pub struct StoreWriter {
    pool: PgPool,
    metrics: Arc<Metrics>,
    spool: Arc<Spool>,
    shutdown: CancellationToken,
    batch_rows: usize,
    gateways: HashSet<String>,
    channel_ids: HashMap<String, i32>,
    /// Where the spool is stored up to: the next message the writer expects.
    stored_to: u64,
    /// The spool ranges and readings of the queued batches being written.
    held: Vec<(u64, u64, u64)>,
    /// Whether this writer marks late readings (TimescaleDB).
    marks_late: bool,
}

/// The writer stopped retrying because the server is shutting down; what it
/// held is in the spool and is written at the next start.
struct Abandoned;

/// How much of the spool one catch-up step reads into memory.
const CATCH_UP_BYTES: u64 = 8 * 1024 * 1024;

pub(super) const RETRY_FIRST: Duration = Duration::from_millis(100);
pub(super) const RETRY_MAX: Duration = Duration::from_secs(5);

impl StoreWriter {
    pub fn new(
        pool: PgPool,
        metrics: Arc<Metrics>,
        spool: Arc<Spool>,
        shutdown: CancellationToken,
        batch_rows: usize,
        storage: StoragePath,
    ) -> Self {
        let stored_to = spool.committed();
        Self {
            pool,
            metrics,
            spool,
            shutdown,
            batch_rows,
            gateways: HashSet::new(),
            channel_ids: HashMap::new(),
            stored_to,
            held: Vec::new(),
            marks_late: storage == StoragePath::Timescale,
        }
    }

    /// Writes what an earlier run left in the spool, then runs until the
    /// queue is closed and everything the spool holds is stored (or, during
    /// shutdown, until the database refuses and the rest must wait).
    pub async fn run(mut self, mut queue: StoreQueueReceiver) {
        let outcome = self.run_inner(&mut queue).await;
        if let Err(err) = self.spool.record_position() {
            tracing::warn!("recording the spool's stored position failed: {err:#}");
        }
        if outcome.is_err() {
            tracing::warn!(
                unstored_bytes = self.spool.backlog(),
                "store writer stopped with the database unreachable; the spool keeps the rest for the next start"
            );
        } else {
            tracing::info!("store writer drained and stopped");
        }
    }

    async fn run_inner(&mut self, queue: &mut StoreQueueReceiver) -> Result<(), Abandoned> {
        self.catch_up(self.spool.end()).await?;
        let mut pending: Vec<Spooled> = Vec::new();
        // Enough messages to fill a statement when each carries a few readings.
        let drain_limit = self.batch_rows.max(64);
        let mut run: Vec<Arc<ReadingBatch>> = Vec::new();
        let mut held_room = Vec::new();
        let mut waiting = Vec::new();
        while queue.recv_many(&mut pending, drain_limit).await > 0 {
            let mut run_end = None;
            for item in pending.drain(..) {
                waiting.extend(item.stored);
                if let Some((start, end)) = item.offsets {
                    if end <= self.stored_to {
                        // A catch-up already read this one from the spool.
                        continue;
                    }
                    self.held
                        .push((start, end, item.batch.readings.len() as u64));
                    if start > self.stored_to.max(run_end.unwrap_or(0)) {
                        // Messages between here and `start` overflowed the
                        // queue and live only in the spool: they go first.
                        self.flush(&mut run, run_end.take()).await?;
                        self.catch_up(start).await?;
                    }
                    run_end = Some(end);
                }
                run.push(item.batch);
                held_room.push(item.room);
            }
            self.flush(&mut run, run_end).await?;
            held_room.clear();
            // Batches the spool could not take are safe now.
            for stored in waiting.drain(..) {
                let _ = stored.send(());
            }
            if queue.is_empty() {
                // Overflow only happens while the queue is full, so once it
                // is empty whatever lives in the spool alone is behind us:
                // store it before waiting for more.
                self.catch_up(self.spool.end()).await?;
            }
        }
        self.catch_up(self.spool.end()).await
    }

    /// Writes `run` and records the spool as stored up to `end`.
    async fn flush(
        &mut self,
        run: &mut Vec<Arc<ReadingBatch>>,
        end: Option<u64>,
    ) -> Result<(), Abandoned> {
        if !run.is_empty() {
            self.write_with_retry(run).await?;
            run.clear();
        }
        if let Some(end) = end {
            self.mark_stored(end);
        }
        Ok(())
    }

    /// Reads the spool from where it is stored up to `to` and writes it.
    /// A failed write reads again before it retries rather than hold what
    /// it read: while the database is away a full spool may drop it, and
    /// then it must be gone, as counted.
    async fn catch_up(&mut self, to: u64) -> Result<(), Abandoned> {
        let mut delay = RETRY_FIRST;
        while self.stored_to < to {
            let spool = self.spool.clone();
            let from = self.stored_to;
            let read =
                tokio::task::spawn_blocking(move || spool.read(from, to, CATCH_UP_BYTES)).await;
            let replay = match read {
                Ok(Ok(replay)) => replay,
                Ok(Err(err)) => {
                    // Damaged records are skipped by the read itself; this
                    // is the disk refusing to read. Retrying would stall
                    // ingest for good, so skip to what arrives next.
                    tracing::error!(
                        "cannot read the spool between {from} and {to}, skipping it: {err}"
                    );
                    self.metrics.spool_errors.fetch_add(1, Relaxed);
                    self.mark_stored(to);
                    return Ok(());
                }
                Err(err) => {
                    tracing::error!("spool read task failed: {err}");
                    return Ok(());
                }
            };
            if replay.reached <= from {
                return Ok(());
            }
            let readings: usize = replay.records.iter().map(|r| r.batch.readings.len()).sum();
            let batches: Vec<Arc<ReadingBatch>> = replay
                .records
                .into_iter()
                .map(|r| Arc::new(r.batch))
                .collect();
            if !batches.is_empty()
                && let Err(err) = self.write(&batches).await
            {
                self.failed(err, &mut delay).await?;
                continue;
            }
            delay = RETRY_FIRST;
            Metrics::add(&self.metrics.readings_replayed, readings);
            self.mark_stored(replay.reached);
        }
        Ok(())
    }

    fn mark_stored(&mut self, end: u64) {
        self.stored_to = self.stored_to.max(end);
        // Queued batches just stored may lie in a segment a full spool has
        // dropped meanwhile (and counted): the spool takes them off the count.
        let held = std::mem::take(&mut self.held);
        if let Err(err) = self.spool.commit_stored(self.stored_to, &held) {
            // Only costs a replay of stored readings at the next start.
            tracing::warn!("recording the spool's stored position failed: {err:#}");
        }
    }

    async fn write_with_retry(&mut self, batches: &[Arc<ReadingBatch>]) -> Result<(), Abandoned> {
        let mut delay = RETRY_FIRST;
        loop {
            match self.write(batches).await {
                Ok(()) => return Ok(()),
                Err(err) => self.failed(err, &mut delay).await?,
            }
        }
    }

    /// Counts a failed write and waits before the next try, unless the
    /// server is shutting down.
    async fn failed(&mut self, err: anyhow::Error, delay: &mut Duration) -> Result<(), Abandoned> {
        self.metrics.store_errors.fetch_add(1, Relaxed);
        if self.shutdown.is_cancelled() {
            return Err(Abandoned);
        }
        tracing::error!(retry_in = ?*delay, "store write failed, will retry: {err:#}");
        tokio::select! {
            () = tokio::time::sleep(*delay) => {}
            () = self.shutdown.cancelled() => {}
        }
        *delay = (*delay * 2).min(RETRY_MAX);
        Ok(())
    }

    /// Writes the batches in chunks of `batch_rows`, up to
    /// [`CONCURRENT_CHUNKS`] at once on their own connections, and returns
    /// once every chunk has committed (or the first failure, after the
    /// others have finished: the retry sends them all again).
    async fn write(&mut self, batches: &[Arc<ReadingBatch>]) -> anyhow::Result<()> {
        let late_before = self
            .marks_late
            .then(|| (Utc::now() - timescale::LATE_AFTER).timestamp_micros());
        let new_chunk = || Chunk {
            late_before,
            ..Chunk::default()
        };
        self.register_new(batches).await?;
        let mut in_flight = tokio::task::JoinSet::new();
        let mut outcome = Ok(());
        let mut chunk = new_chunk();
        'batches: for batch in batches {
            for reading in &batch.readings {
                let channel_id = match self.channel_id(&batch.gateway, reading).await {
                    Ok(id) => id,
                    Err(err) => {
                        outcome = Err(err);
                        break 'batches;
                    }
                };
                chunk.push(channel_id, reading.ts, reading.value);
                if chunk.len() == self.batch_rows {
                    if in_flight.len() >= CONCURRENT_CHUNKS
                        && let Some(done) = in_flight.join_next().await
                    {
                        outcome = joined(done);
                        if outcome.is_err() {
                            break 'batches;
                        }
                    }
                    let full = std::mem::replace(&mut chunk, new_chunk());
                    in_flight.spawn(store(self.pool.clone(), self.metrics.clone(), full));
                }
            }
        }
        if outcome.is_ok() && chunk.len() > 0 {
            in_flight.spawn(store(self.pool.clone(), self.metrics.clone(), chunk));
        }
        while let Some(done) = in_flight.join_next().await {
            let result = joined(done);
            if outcome.is_ok() {
                outcome = result;
            }
        }
        outcome
    }

    /// Registers the drain's new gateways and channels up front, the
    /// channels with one statement per [`REGISTER_AT_ONCE`]: a gateway's
    /// burst of new names (up to `ingest.max_channels_per_gateway`) costs
    /// the writer a few round trips, not one per channel.
    async fn register_new(&mut self, batches: &[Arc<ReadingBatch>]) -> anyhow::Result<()> {
        let mut new: Vec<(&str, &ChannelName)> = Vec::new();
        let mut seen = HashSet::new();
        for batch in batches {
            for reading in &batch.readings {
                let name = reading.channel.as_str();
                if !self.channel_ids.contains_key(name) && seen.insert(name) {
                    new.push((batch.gateway.as_str(), &reading.channel));
                }
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        for (gateway, _) in &new {
            if !self.gateways.contains(*gateway) {
                register_gateway(&self.pool, gateway).await?;
                self.gateways.insert((*gateway).to_owned());
            }
        }
        for part in new.chunks(REGISTER_AT_ONCE) {
            let names: Vec<&str> = part.iter().map(|(_, c)| c.as_str()).collect();
            let circuits: Vec<&str> = part.iter().map(|(_, c)| c.circuit()).collect();
            let parameters: Vec<&str> = part.iter().map(|(_, c)| c.parameter()).collect();
            let units: Vec<Option<&str>> = part
                .iter()
                .map(|(_, c)| parameter_info(c.parameter()).and_then(|(_, p)| p.unit))
                .collect();
            let gateways: Vec<&str> = part.iter().map(|(g, _)| *g).collect();
            // As in register_channel: DO UPDATE so that RETURNING also
            // names channels another instance registered first.
            let ids: Vec<(String, i32)> = sqlx::query_as(
                "INSERT INTO channels (name, circuit, parameter, unit, gateway_id)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                 ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
                 RETURNING name, id",
            )
            .bind(names)
            .bind(circuits)
            .bind(parameters)
            .bind(units)
            .bind(gateways)
            .fetch_all(&self.pool)
            .await?;
            tracing::info!(channels = ids.len(), "registered channels");
            self.channel_ids.extend(ids);
        }
        Ok(())
    }

    /// The channel's id, registering the gateway and the channel on first
    /// sight. Cached: after warm-up this is a hash lookup per reading.
    async fn channel_id(&mut self, gateway: &str, reading: &DecodedReading) -> anyhow::Result<i32> {
        if let Some(&id) = self.channel_ids.get(reading.channel.as_str()) {
            return Ok(id);
        }
        if !self.gateways.contains(gateway) {
            register_gateway(&self.pool, gateway).await?;
            self.gateways.insert(gateway.to_owned());
        }
        let id = register_channel(&self.pool, gateway, &reading.channel).await?;
        tracing::info!(channel = %reading.channel, gateway, id, "registered channel");
        self.channel_ids
            .insert(reading.channel.as_str().to_owned(), id);
        Ok(id)
    }
}

/// Chunks written at once, each on its own connection. PostgreSQL runs a
/// `COPY` in one backend on one core, and each chunk ends in a commit and
/// the rollup trigger's statement; with two in flight one chunk's rows
/// stream while the other's commit and trigger run.
const CONCURRENT_CHUNKS: usize = 2;

/// A chunk's write task's outcome; a panicked task counts as a failure.
fn joined(done: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    done.map_err(|err| anyhow::anyhow!("a chunk's write task failed: {err}"))?
}

/// Writes one chunk, on its own connection, and counts it.
async fn store(pool: PgPool, metrics: Arc<Metrics>, chunk: Chunk) -> anyhow::Result<()> {
    let started = Instant::now();
    let stored = if chunk.late.is_empty() {
        let mut conn = pool.acquire().await?;
        write_rows(&mut conn, &chunk, false).await?
    } else {
        // Late rows and their marks commit together.
        let mut tx = pool.begin().await?;
        let stored = write_rows(&mut tx, &chunk, true).await?;
        let (channels, minutes): (Vec<i32>, Vec<i64>) = chunk.late.iter().copied().unzip();
        sqlx::query(
            "INSERT INTO rollup_dirty (channel_id, minute)
             SELECT c, timestamptz 'epoch' + us * interval '1 microsecond'
             FROM unnest($1::integer[], $2::bigint[]) AS m (c, us)",
        )
        .bind(channels)
        .bind(minutes)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        stored
    };
    // Each chunk is atomic. When another chunk of the same drain fails,
    // the retry sends the committed chunks again; they go through the
    // key-skipping insert and count as duplicates.
    Metrics::add(&metrics.readings_stored, stored);
    Metrics::add(&metrics.readings_duplicate, chunk.len() - stored);
    metrics.store_batches.fetch_add(1, Relaxed);
    Metrics::add(
        &metrics.store_batch_micros,
        started.elapsed().as_micros() as usize,
    );
    Ok(())
}

/// New channels registered by one statement.
const REGISTER_AT_ONCE: usize = 1_000;

/// Registers a gateway on first sight (idempotent).
pub(crate) async fn register_gateway(pool: &PgPool, gateway: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO gateways (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
        .bind(gateway)
        .execute(pool)
        .await?;
    Ok(())
}

/// A channel's id, registering it (as the gateway's) if it is new. The
/// gateway must be registered.
pub(crate) async fn register_channel(
    pool: &PgPool,
    gateway: &str,
    channel: &ChannelName,
) -> sqlx::Result<i32> {
    let unit = parameter_info(channel.parameter()).and_then(|(_, p)| p.unit);
    // DO UPDATE (to itself) rather than DO NOTHING, so RETURNING also
    // yields the id of a channel another instance registered first.
    let (id,): (i32,) = sqlx::query_as(
        "INSERT INTO channels (name, circuit, parameter, unit, gateway_id)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
         RETURNING id",
    )
    .bind(channel.as_str())
    .bind(channel.circuit())
    .bind(channel.parameter())
    .bind(unit)
    .bind(gateway)
    .fetch_one(pool)
    .await?;
    Ok(id)
}

/// Writes the chunk's rows with one binary `COPY`, or, when a row is
/// already stored, those not stored yet; returns how many were stored.
/// Inside a transaction (`in_transaction`) a savepoint keeps the failed
/// `COPY` from aborting it.
async fn write_rows(
    conn: &mut PgConnection,
    chunk: &Chunk,
    in_transaction: bool,
) -> anyhow::Result<usize> {
    if in_transaction {
        sqlx::raw_sql("SAVEPOINT copy").execute(&mut *conn).await?;
    }
    match copy(conn, chunk).await {
        Ok(stored) => Ok(stored),
        Err(err) if is_unique_violation(&err) => {
            if in_transaction {
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT copy")
                    .execute(&mut *conn)
                    .await?;
            }
            insert_new(conn, chunk).await
        }
        Err(err) => Err(err.into()),
    }
}

/// One binary `COPY` of the chunk; fails whole on a reading already
/// stored. The demo's backfill writes its hours with it too.
pub(crate) async fn copy(conn: &mut PgConnection, chunk: &Chunk) -> Result<usize, sqlx::Error> {
    let mut copy = conn
        .copy_in_raw("COPY readings (channel_id, ts, value) FROM STDIN (FORMAT binary)")
        .await?;
    copy.send(chunk.binary_copy.as_slice()).await?;
    copy.send(COPY_TRAILER.as_slice()).await?;
    Ok(copy.finish().await? as usize)
}

/// The chunk's rows not stored yet; returns how many that was. The
/// columns are read back from the `COPY` stream: this path is rare, and
/// keeping them beside it would cost every reading.
async fn insert_new(conn: &mut PgConnection, chunk: &Chunk) -> anyhow::Result<usize> {
    let (channel_ids, micros, values) = chunk.columns();
    let stored = sqlx::query(
        "INSERT INTO readings (channel_id, ts, value)
         SELECT id, timestamptz '2000-01-01 00:00:00+00' + us * interval '1 microsecond', v
         FROM UNNEST($1::integer[], $2::bigint[], $3::double precision[]) AS r (id, us, v)
         ON CONFLICT DO NOTHING",
    )
    .bind(channel_ids)
    .bind(micros)
    .bind(values)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(stored as usize)
}

/// Rows on their way to `readings`, as a binary `COPY` stream.
#[derive(Default)]
pub(crate) struct Chunk {
    binary_copy: Vec<u8>,
    rows: usize,
    /// On TimescaleDB: readings before this (Unix microseconds) are late.
    late_before: Option<i64>,
    /// The (channel, minute in Unix microseconds) of late readings.
    late: HashSet<(i32, i64)>,
}

/// PostgreSQL's binary `COPY` signature, flags and header extension length.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// A field count of -1 ends the stream.
const COPY_TRAILER: [u8; 2] = (-1i16).to_be_bytes();
/// `timestamptz` counts microseconds from 2000-01-01 00:00 UTC.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// A row: field count, then each field's length and value (i32, i64, f64).
const COPY_ROW_BYTES: usize = 2 + (4 + 4) + (4 + 8) + (4 + 8);

impl Chunk {
    pub(crate) fn push(&mut self, channel_id: i32, ts: DateTime<Utc>, value: f64) {
        if self.binary_copy.is_empty() {
            self.binary_copy.extend_from_slice(COPY_HEADER);
        }
        let micros = ts.timestamp_micros();
        if self.late_before.is_some_and(|before| micros < before) {
            self.late
                .insert((channel_id, micros.div_euclid(60_000_000) * 60_000_000));
        }
        let row = &mut self.binary_copy;
        row.extend_from_slice(&3i16.to_be_bytes());
        row.extend_from_slice(&4i32.to_be_bytes());
        row.extend_from_slice(&channel_id.to_be_bytes());
        row.extend_from_slice(&8i32.to_be_bytes());
        row.extend_from_slice(&(micros - POSTGRES_EPOCH_MICROS).to_be_bytes());
        row.extend_from_slice(&8i32.to_be_bytes());
        row.extend_from_slice(&value.to_bits().to_be_bytes());
        self.rows += 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    pub(crate) fn clear(&mut self) {
        self.binary_copy.clear();
        self.rows = 0;
        self.late.clear();
    }

    /// The rows as columns: channel ids, microseconds from PostgreSQL's
    /// epoch, values.
    fn columns(&self) -> (Vec<i32>, Vec<i64>, Vec<f64>) {
        let rows = self.binary_copy[COPY_HEADER.len().min(self.binary_copy.len())..]
            .chunks_exact(COPY_ROW_BYTES);
        let field = |row: &[u8], at: usize| -> [u8; 8] {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(&row[at..at + 8]);
            bytes
        };
        let mut columns = (
            Vec::with_capacity(self.rows),
            Vec::with_capacity(self.rows),
            Vec::with_capacity(self.rows),
        );
        for row in rows {
            let mut id = [0; 4];
            id.copy_from_slice(&row[6..10]);
            columns.0.push(i32::from_be_bytes(id));
            columns.1.push(i64::from_be_bytes(field(row, 14)));
            columns
                .2
                .push(f64::from_bits(u64::from_be_bytes(field(row, 26))));
        }
        columns
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|err| err.code().as_deref() == Some("23505"))
}
