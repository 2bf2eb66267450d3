//! The spool: every decoded message, on local disk, from the moment it is
//! decoded until the store writer has it in PostgreSQL.
//!
//! The in-memory store queue is only a cache of the spool's tail. When the
//! queue is full (the database is down or slower than the gateways), a
//! message stays in the spool alone and ingest goes on; the writer notices
//! the gap in positions and reads it back, in order, once it can write
//! again. So a database outage costs disk, not readings.
//!
//! The file layer is [`crate::durable::Log`]: checksummed records in
//! segments, streamed at open and on replay, fsynced in groups, bounded.
//! This module adds what a record holds (one message's gateway and
//! readings, split into records of at most [`frame::MAX_BODY`]) and the
//! import of the spool format before it (`spool.log`).
//!
//! What each failure costs, and why (see also ARCHITECTURE.md):
//! - `kill -9`: nothing written. A restart replays from the last recorded
//!   position, up to a second of stored messages, which the readings key
//!   skips.
//! - Power loss: what was written in the last fsync window
//!   (`ingest.spool_fsync_ms`) plus the fsync itself. [`Spool::append`]
//!   hands back a ticket that resolves once its message is fsynced (or
//!   stored); external mode acknowledges to its broker only then.
//! - Disk full or failing: the failed write is cut off again, so nothing
//!   already in the spool is touched; the message goes to the store queue
//!   alone, and the next append tries the disk again.
//! - The bound (`ingest.spool_max_bytes`): with the embedded broker, which
//!   acknowledged the message before Trackside saw it, the oldest unstored
//!   segment is dropped and counted (the newest readings are the ones an
//!   operator needs); in external mode a full spool refuses, the message is
//!   not acknowledged, and the external broker keeps it.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::DateTime;
use trackside_wire::ChannelName;

use crate::durable::frame::{self, MAX_BODY};
use crate::durable::log::{Health, Read};
use crate::durable::{AppendError, Log, LogConfig, LogStats, Ticket, WhenFull};
use crate::reading::{DecodedReading, ReadingBatch};

/// The largest segment file; smaller when the bound is small, so that
/// dropping one at the bound costs a fraction of it.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// The smallest bound: several segments of whole records.
pub const MIN_MAX_BYTES: u64 = crate::durable::MIN_BOUND;

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub max_bytes: u64,
    pub fsync_window: Option<Duration>,
    pub when_full: WhenFull,
}

pub struct Spool {
    log: Log,
}

/// One record read back: its logical end offset and its batch (a part of
/// one message's readings).
pub struct SpoolRecord {
    pub end: u64,
    pub batch: ReadingBatch,
}

/// Records read back, and where the next read starts.
pub struct Replay {
    pub records: Vec<SpoolRecord>,
    pub reached: u64,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`: cuts a torn record off its
    /// end, and imports a spool of the earlier format.
    pub fn open(dir: &Path, config: &SpoolConfig, stats: Arc<LogStats>) -> anyhow::Result<Self> {
        let log_config = LogConfig {
            max_bytes: config.max_bytes,
            segment_bytes: (config.max_bytes / 8).clamp(MAX_BODY as u64, SEGMENT_BYTES),
            fsync_window: config.fsync_window,
            when_full: config.when_full,
            // Nobody is told a reading is safe before its ticket resolves,
            // and the ingest path's async workers must never wait on the
            // file system.
            write_behind: true,
            units: readings_in,
        };
        let (log, torn) = Log::open(dir, "spool", log_config, stats)
            .with_context(|| format!("opening the spool in {}", dir.display()))?;
        if torn > 0 {
            tracing::warn!(
                torn_bytes = torn,
                "the spool ended in a torn record (the process or the machine stopped mid-write); cut off"
            );
        }
        let spool = Self { log };
        import_earlier_format(dir, &spool)?;
        let backlog = spool.backlog();
        if backlog > 0 {
            tracing::info!(
                bytes = backlog,
                "spool holds messages not yet stored; they will be written first"
            );
        }
        Ok(spool)
    }

    /// Appends one message's batch and returns what `then(start, end)`
    /// returns, with a ticket that resolves once it is fsynced. `then` runs
    /// while the spool is locked, so whatever it queues is queued in spool
    /// order.
    pub fn append<T>(
        &self,
        batch: &ReadingBatch,
        then: impl FnOnce(u64, u64) -> T,
    ) -> Result<(T, Ticket), AppendError> {
        let bytes = encode(batch);
        let mut end = 0;
        let value = self
            .log
            .append(&bytes, batch.readings.len() as u64, |s, e| {
                end = e;
                then(s, e)
            })?;
        Ok((value, self.log.ticket(end)))
    }

    /// Reads the records in `[from, to)`, stopping after about `max_bytes`.
    /// Damaged stretches are skipped and counted; only the store writer
    /// reads.
    pub fn read(&self, from: u64, to: u64, max_bytes: u64) -> io::Result<Replay> {
        let Read { records, reached } = self.log.read(from, to, max_bytes)?;
        let mut replay = Replay {
            records: Vec::with_capacity(records.len()),
            reached,
        };
        for record in records {
            match decode_body(&record.body) {
                Ok(batch) => replay.records.push(SpoolRecord {
                    end: record.end,
                    batch,
                }),
                // Its CRC matched, so this was written so: a bug, not damage.
                Err(err) => {
                    self.log.stats().damaged_bytes.fetch_add(
                        record.body.len() as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    tracing::error!(
                        end = record.end,
                        "undecodable spool record skipped: {err:#}"
                    );
                }
            }
        }
        Ok(replay)
    }

    /// Records that everything before `upto` is stored.
    pub fn commit(&self, upto: u64) -> io::Result<()> {
        self.log.consume(upto)
    }

    /// Where the stored part of the spool ends (the writer's starting point).
    pub fn committed(&self) -> u64 {
        self.log.consumed()
    }

    pub fn end(&self) -> u64 {
        self.log.end()
    }

    /// Records that everything before `upto` is stored, `held` among it:
    /// the `(start, end, readings)` of batches stored from the store queue,
    /// which a full spool may have dropped (and counted) meanwhile.
    pub fn commit_stored(&self, upto: u64, held: &[(u64, u64, u64)]) -> io::Result<()> {
        self.log.consume_holding(upto, held)
    }

    /// Bytes written but not yet stored.
    pub fn backlog(&self) -> u64 {
        self.log.health().backlog
    }

    pub fn health(&self) -> Health {
        self.log.health()
    }

    pub fn stats(&self) -> &Arc<LogStats> {
        self.log.stats()
    }

    /// Fsyncs everything appended so far and records the stored position:
    /// the last thing a shutdown does.
    pub fn flush(&self) {
        if let Err(err) = self.log.flush() {
            tracing::error!("fsyncing the spool failed: {err}");
        }
        if let Err(err) = self.log.record_position() {
            tracing::warn!("recording the spool's stored position failed: {err}");
        }
    }

    /// Records the stored position now: at shutdown, so a clean restart
    /// replays nothing.
    pub fn record_position(&self) -> io::Result<()> {
        self.log.record_position()
    }
}

/// Readings in a record body, read from its count field.
fn readings_in(body: &[u8]) -> u64 {
    let mut cursor = body;
    take_str(&mut cursor)
        .and_then(|_| take::<4>(&mut cursor))
        .map_or(0, |count| u32::from_le_bytes(count) as u64)
}

/// One message as records: its gateway and as many readings as fit one
/// record body, repeated until every reading is in.
fn encode(batch: &ReadingBatch) -> Vec<u8> {
    let mut records = Vec::with_capacity(64 + batch.readings.len() * 48);
    let mut body = Vec::new();
    let mut readings = batch.readings.as_slice();
    loop {
        body.clear();
        put_str(&mut body, &batch.gateway);
        let count_at = body.len();
        body.extend_from_slice(&0u32.to_le_bytes());
        let mut count = 0u32;
        while let Some((reading, rest)) = readings.split_first() {
            let size = 2 + reading.channel.as_str().len() + 16;
            if count > 0 && body.len() + size > MAX_BODY {
                break;
            }
            put_str(&mut body, reading.channel.as_str());
            body.extend_from_slice(&reading.ts.timestamp_micros().to_le_bytes());
            body.extend_from_slice(&reading.value.to_le_bytes());
            count += 1;
            readings = rest;
        }
        body[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
        frame::put(&mut records, &body);
        if readings.is_empty() {
            return records;
        }
    }
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    // Gateway ids and channel names are at most 129 bytes (validated on
    // decode), far below u16.
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn decode_body(body: &[u8]) -> anyhow::Result<ReadingBatch> {
    let mut cursor = body;
    let gateway = take_str(&mut cursor)?.to_owned();
    let count = u32::from_le_bytes(take(&mut cursor)?) as usize;
    let mut readings = Vec::with_capacity(count.min(body.len() / 20));
    for _ in 0..count {
        let channel = ChannelName::parse(take_str(&mut cursor)?)?;
        let micros = i64::from_le_bytes(take(&mut cursor)?);
        let value = f64::from_le_bytes(take(&mut cursor)?);
        let ts = DateTime::from_timestamp_micros(micros).context("timestamp out of range")?;
        readings.push(DecodedReading { channel, ts, value });
    }
    Ok(ReadingBatch { gateway, readings })
}

fn take<const N: usize>(cursor: &mut &[u8]) -> anyhow::Result<[u8; N]> {
    anyhow::ensure!(cursor.len() >= N, "record ends early");
    let (head, rest) = cursor.split_at(N);
    *cursor = rest;
    let mut bytes = [0u8; N];
    bytes.copy_from_slice(head);
    Ok(bytes)
}

fn take_str<'a>(cursor: &mut &'a [u8]) -> anyhow::Result<&'a str> {
    let len = u16::from_le_bytes(take(cursor)?) as usize;
    anyhow::ensure!(cursor.len() >= len, "record ends early");
    let (text, rest) = cursor.split_at(len);
    *cursor = rest;
    Ok(std::str::from_utf8(text)?)
}

/// The spool before segments: one `spool.log` of `[len u32][crc32 u32]
/// [body]` records (the same body) and `spool.committed` holding `base
/// stored`. What it holds past the stored position is appended to the new
/// spool, then both files go. A record longer than this is damage.
const EARLIER_MAX_BODY: usize = 64 * 1024 * 1024;

fn import_earlier_format(dir: &Path, spool: &Spool) -> anyhow::Result<()> {
    let path = dir.join("spool.log");
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).context("opening the earlier spool.log"),
    };
    let pointer = dir.join("spool.committed");
    let (base, stored) = std::fs::read_to_string(&pointer)
        .ok()
        .and_then(|text| {
            let mut numbers = text.split_whitespace().map(str::parse::<u64>);
            match (numbers.next(), numbers.next()) {
                (Some(Ok(base)), Some(Ok(stored))) => Some((base, stored)),
                _ => None,
            }
        })
        .unwrap_or((0, 0));
    file.seek(SeekFrom::Start(stored.saturating_sub(base)))?;
    let mut reader = io::BufReader::new(file);
    let (mut messages, mut readings) = (0u64, 0u64);
    loop {
        let mut header = [0u8; 8];
        if reader.read_exact(&mut header).is_err() {
            break;
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > EARLIER_MAX_BODY {
            break;
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() || crc32fast::hash(&body) != crc {
            break;
        }
        let Ok(batch) = decode_body(&body) else {
            break;
        };
        readings += batch.readings.len() as u64;
        messages += 1;
        spool
            .append(&batch, |_, _| ())
            .map_err(|err| anyhow::anyhow!("importing the earlier spool: {err}"))?;
    }
    tracing::info!(
        messages,
        readings,
        "imported the unstored part of a spool of the earlier format"
    );
    std::fs::remove_file(&path).context("removing the imported spool.log")?;
    let _ = std::fs::remove_file(&pointer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SpoolConfig {
        SpoolConfig {
            max_bytes: 1 << 30,
            fsync_window: Some(Duration::from_millis(1)),
            when_full: WhenFull::Refuse,
        }
    }

    fn open(dir: &Path) -> Spool {
        Spool::open(dir, &config(), Arc::default()).unwrap()
    }

    fn batch(gateway: &str, values: &[f64]) -> ReadingBatch {
        ReadingBatch {
            gateway: gateway.to_owned(),
            readings: values
                .iter()
                .enumerate()
                .map(|(i, &value)| DecodedReading {
                    channel: ChannelName::parse("T101/relay_voltage").unwrap(),
                    ts: DateTime::from_timestamp_micros(1_800_000_000_000_000 + i as i64).unwrap(),
                    value,
                })
                .collect(),
        }
    }

    fn values(records: &[SpoolRecord]) -> Vec<f64> {
        records
            .iter()
            .flat_map(|r| r.batch.readings.iter().map(|r| r.value))
            .collect()
    }

    #[test]
    fn appended_batches_read_back_in_order_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let spool = open(dir.path());
        let ((s1, e1), _) = spool
            .append(&batch("gw1", &[1.0, 2.0]), |s, e| (s, e))
            .unwrap();
        let ((s2, e2), _) = spool.append(&batch("gw2", &[3.0]), |s, e| (s, e)).unwrap();
        assert_eq!((s1, s2), (0, e1));
        let replay = spool.read(0, e2, u64::MAX).unwrap();
        assert_eq!(values(&replay.records), [1.0, 2.0, 3.0]);
        assert_eq!(replay.reached, e2);
        assert_eq!(replay.records[1].batch.gateway, "gw2");
        assert_eq!(
            replay.records[0].batch.readings[1].ts.timestamp_micros(),
            1_800_000_000_000_001
        );

        spool.commit(e1).unwrap();
        drop(spool);
        let reopened = open(dir.path());
        assert_eq!(reopened.committed(), e1);
        assert_eq!(reopened.end(), e2);
        assert_eq!(
            values(&reopened.read(e1, e2, u64::MAX).unwrap().records),
            [3.0]
        );
    }

    /// Between recordings a crash replays stored messages (the readings key
    /// skips them); it never skips one that was not stored.
    #[test]
    fn a_crash_replays_from_the_last_recorded_position() {
        let dir = tempfile::tempdir().unwrap();
        let spool = open(dir.path());
        let (e1, _) = spool.append(&batch("gw1", &[1.0]), |_, e| e).unwrap();
        let (e2, safe) = spool.append(&batch("gw1", &[2.0]), |_, e| e).unwrap();
        spool.commit(e1).unwrap();
        // Until its ticket resolves nobody was told it is safe, and the
        // syncer may not have written it yet.
        let waited = std::time::Instant::now();
        while !safe.is_durable() {
            assert!(waited.elapsed() < Duration::from_secs(5), "never fsynced");
            std::thread::sleep(Duration::from_millis(1));
        }
        // kill -9: no shutdown, no drop.
        std::mem::forget(spool);
        let reopened = open(dir.path());
        assert_eq!((reopened.committed(), reopened.end()), (0, e2));

        reopened.commit(e2).unwrap();
        reopened.record_position().unwrap();
        std::mem::forget(reopened);
        assert_eq!(open(dir.path()).committed(), e2);
    }

    #[test]
    fn a_message_larger_than_a_record_is_split_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let spool = open(dir.path());
        let big: Vec<f64> = (0..100_000).map(f64::from).collect();
        let (end, _) = spool.append(&batch("gw", &big), |_, e| e).unwrap();
        let replay = spool.read(0, end, u64::MAX).unwrap();
        assert!(replay.records.len() > 1);
        assert_eq!(values(&replay.records), big);
        assert_eq!(
            readings_in(&{
                let mut body = Vec::new();
                put_str(&mut body, "gw");
                body.extend_from_slice(&7u32.to_le_bytes());
                body
            }),
            7
        );
    }

    #[test]
    fn reads_stop_near_the_byte_limit() {
        let dir = tempfile::tempdir().unwrap();
        let spool = open(dir.path());
        for i in 0..10 {
            spool.append(&batch("gw", &[i as f64]), |_, _| ()).unwrap();
        }
        let first = spool.read(0, spool.end(), 1).unwrap();
        assert_eq!(first.records.len(), 1);
        let rest = spool.read(first.reached, spool.end(), u64::MAX).unwrap();
        assert_eq!(rest.records.len(), 9);
    }

    #[tokio::test]
    async fn a_ticket_says_when_the_message_is_safe_against_power_loss() {
        let dir = tempfile::tempdir().unwrap();
        let spool = open(dir.path());
        let ((), ticket) = spool.append(&batch("gw", &[1.0]), |_, _| ()).unwrap();
        assert!(
            tokio::time::timeout(Duration::from_secs(5), ticket.wait())
                .await
                .unwrap()
        );
        assert!(
            spool
                .stats()
                .fsyncs
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 1
        );
    }

    #[test]
    fn a_spool_of_the_earlier_format_is_imported_from_its_stored_position() {
        let dir = tempfile::tempdir().unwrap();
        let mut earlier = Vec::new();
        let mut stored = 0;
        for (i, value) in [1.0, 2.0, 3.0].into_iter().enumerate() {
            let mut body = Vec::new();
            put_str(&mut body, "gw");
            body.extend_from_slice(&1u32.to_le_bytes());
            put_str(&mut body, "T101/relay_voltage");
            body.extend_from_slice(&(1_800_000_000_000_000i64 + i as i64).to_le_bytes());
            body.extend_from_slice(&f64::to_le_bytes(value));
            earlier.extend_from_slice(&(body.len() as u32).to_le_bytes());
            earlier.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            earlier.extend_from_slice(&body);
            if i == 0 {
                stored = earlier.len();
            }
        }
        std::fs::write(dir.path().join("spool.log"), &earlier).unwrap();
        std::fs::write(
            dir.path().join("spool.committed"),
            format!("1000 {}\n", 1000 + stored),
        )
        .unwrap();
        let spool = open(dir.path());
        let replay = spool
            .read(spool.committed(), spool.end(), u64::MAX)
            .unwrap();
        assert_eq!(values(&replay.records), [2.0, 3.0]);
        assert!(!dir.path().join("spool.log").exists());
    }
}
