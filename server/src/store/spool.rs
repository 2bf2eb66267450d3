//! The spool: an append-only log of every decoded message, written before
//! the message is queued for the store writer.
//!
//! The in-memory store queue is only a cache of the spool's tail. When the
//! queue is full (the database is down or slower than the gateways), a
//! message stays in the spool alone and ingest goes on; the writer notices
//! the gap in offsets and reads it back from the file, in order, once it can
//! write again. The writer tells the spool how far it is stored after each
//! commit; the spool records that in `spool.committed` at most once a second
//! (and at every truncation and when it closes), and a restart replays from
//! there. Recording every commit cost a file creation and rename per write,
//! hundreds a second under load; a crash instead replays up to a second of
//! stored messages, which the readings key skips. So a database outage costs
//! disk, not readings, and `kill -9` loses only what had not reached the file
//! yet: the message being decoded.
//!
//! Records: `[len u32][crc32 u32][body]`, body = gateway and readings in a
//! small fixed binary layout. A torn record at the end (the process died
//! mid-write) fails its checksum and is cut off at open.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::DateTime;
use trackside_wire::ChannelName;

use crate::reading::{DecodedReading, ReadingBatch};

/// Truncate the file once everything in it is stored and it is this big, so
/// a long-running server does not keep an ever-growing file.
const TRUNCATE_AT: u64 = 64 * 1024 * 1024;
const HEADER: usize = 8;
/// How often the stored position is recorded on disk while it moves.
const RECORD_EVERY: Duration = Duration::from_secs(1);

/// Positions are logical byte offsets that keep growing across truncations:
/// file position = logical - base.
pub struct Spool {
    dir: PathBuf,
    file: Mutex<Tail>,
}

struct Tail {
    file: File,
    base: u64,
    end: u64,
    committed: u64,
    /// The stored position `spool.committed` holds, and when it was written.
    recorded: u64,
    recorded_at: Instant,
}

/// One record read back: its logical end offset and its batch.
pub struct SpoolRecord {
    pub end: u64,
    pub batch: ReadingBatch,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, cutting off a torn last record.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating spool directory {}", dir.display()))?;
        let path = dir.join("spool.log");
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let (base, committed) = read_committed(dir)?;
        let valid = valid_length(&mut file)?;
        let length = file.metadata()?.len();
        if valid < length {
            tracing::warn!(
                torn_bytes = length - valid,
                "spool ends in a torn record (the process died mid-write); cutting it off"
            );
            file.set_len(valid)?;
        }
        let end = base + valid;
        let committed = committed.clamp(base, end);
        if committed < end {
            tracing::info!(
                bytes = end - committed,
                "spool holds messages not yet stored; they will be written first"
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            file: Mutex::new(Tail {
                file,
                base,
                end,
                committed,
                recorded: committed,
                recorded_at: Instant::now(),
            }),
        })
    }

    /// Appends one batch and returns its logical `(start, end)`. `then` runs
    /// while the spool is still locked, so whatever it queues is queued in
    /// spool order.
    pub fn append<T>(
        &self,
        batch: &ReadingBatch,
        then: impl FnOnce(u64, u64) -> T,
    ) -> io::Result<T> {
        let record = encode(batch);
        let mut tail = self.lock();
        tail.file.write_all(&record)?;
        let start = tail.end;
        tail.end += record.len() as u64;
        let end = tail.end;
        Ok(then(start, end))
    }

    /// Where the stored part of the spool ends (the writer's starting point).
    pub fn committed(&self) -> u64 {
        self.lock().committed
    }

    pub fn end(&self) -> u64 {
        self.lock().end
    }

    /// Bytes written but not yet stored.
    pub fn backlog(&self) -> u64 {
        let tail = self.lock();
        tail.end - tail.committed
    }

    /// Reads the records in `[from, to)`, stopping after about `max_bytes`.
    /// Only the store writer reads, and only it truncates, so the range
    /// cannot move underneath.
    pub fn read(&self, from: u64, to: u64, max_bytes: u64) -> anyhow::Result<Vec<SpoolRecord>> {
        let base = self.lock().base;
        anyhow::ensure!(
            from >= base && from <= to,
            "spool range {from}..{to} is outside the file"
        );
        let mut file = File::open(self.dir.join("spool.log"))?;
        file.seek(SeekFrom::Start(from - base))?;
        let want = (to - from).min(max_bytes.max(1));
        let mut records = Vec::new();
        let mut position = from;
        let mut header = [0u8; HEADER];
        while position < to && position - from < want {
            file.read_exact(&mut header)?;
            let (len, crc) = split_header(header);
            let mut body = vec![0u8; len];
            file.read_exact(&mut body)?;
            anyhow::ensure!(
                crc32fast::hash(&body) == crc,
                "spool record at {position} is corrupt"
            );
            position += (HEADER + len) as u64;
            records.push(SpoolRecord {
                end: position,
                batch: decode_body(&body)
                    .with_context(|| format!("spool record at {position} is unreadable"))?,
            });
        }
        Ok(records)
    }

    /// Records that everything before `upto` is stored; truncates the file
    /// when nothing in it is waiting any more and it has grown large.
    pub fn commit(&self, upto: u64) -> anyhow::Result<()> {
        let mut tail = self.lock();
        tail.committed = tail.committed.max(upto);
        let truncate = tail.committed == tail.end && tail.end - tail.base >= TRUNCATE_AT;
        if truncate {
            // Pointer first, then truncate: a crash in between replays a few
            // stored messages (skipped by the key), never skips unstored ones.
            let end = tail.end;
            self.record(&mut tail, end)?;
            tail.file.set_len(0)?;
            tail.base = end;
        } else if tail.recorded_at.elapsed() >= RECORD_EVERY {
            let base = tail.base;
            self.record(&mut tail, base)?;
        }
        Ok(())
    }

    /// Records the stored position now if it moved since it was last
    /// recorded: at shutdown, so a clean restart replays nothing.
    pub fn record_position(&self) -> anyhow::Result<()> {
        let mut tail = self.lock();
        if tail.recorded != tail.committed {
            let base = tail.base;
            self.record(&mut tail, base)?;
        }
        Ok(())
    }

    fn record(&self, tail: &mut Tail, base: u64) -> anyhow::Result<()> {
        write_committed(&self.dir, base, tail.committed)?;
        tail.recorded = tail.committed;
        tail.recorded_at = Instant::now();
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(err) = self.record_position() {
            // Costs a replay of stored readings at the next start.
            tracing::warn!("recording the spool's stored position failed: {err:#}");
        }
    }
}

fn read_committed(dir: &Path) -> anyhow::Result<(u64, u64)> {
    match std::fs::read_to_string(dir.join("spool.committed")) {
        Ok(text) => {
            let mut numbers = text.split_whitespace().map(str::parse::<u64>);
            match (numbers.next(), numbers.next()) {
                (Some(Ok(base)), Some(Ok(committed))) => Ok((base, committed)),
                // Written by rename, so never half-written; if it is
                // unreadable anyway, replaying everything is safe.
                _ => Ok((0, 0)),
            }
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok((0, 0)),
        Err(err) => Err(err).context("reading spool.committed"),
    }
}

fn write_committed(dir: &Path, base: u64, committed: u64) -> anyhow::Result<()> {
    let temporary = dir.join("spool.committed.tmp");
    std::fs::write(&temporary, format!("{base} {committed}\n"))?;
    std::fs::rename(&temporary, dir.join("spool.committed"))?;
    Ok(())
}

/// The length of the file's prefix made of whole, intact records.
fn valid_length(file: &mut File) -> io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let mut position = 0;
    while bytes.len() - position >= HEADER {
        let mut header = [0u8; HEADER];
        header.copy_from_slice(&bytes[position..position + HEADER]);
        let (len, crc) = split_header(header);
        let Some(body) = bytes.get(position + HEADER..position + HEADER + len) else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        position += HEADER + len;
    }
    Ok(position as u64)
}

fn split_header(header: [u8; HEADER]) -> (usize, u32) {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    (len, crc)
}

fn encode(batch: &ReadingBatch) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + batch.readings.len() * 40);
    put_str(&mut body, &batch.gateway);
    body.extend_from_slice(&(batch.readings.len() as u32).to_le_bytes());
    for reading in &batch.readings {
        put_str(&mut body, reading.channel.as_str());
        body.extend_from_slice(&reading.ts.timestamp_micros().to_le_bytes());
        body.extend_from_slice(&reading.value.to_le_bytes());
    }
    let mut record = Vec::with_capacity(HEADER + body.len());
    record.extend_from_slice(&(body.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    record.extend_from_slice(&body);
    record
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

#[cfg(test)]
mod tests {
    use super::*;

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

    fn values(records: &[SpoolRecord]) -> Vec<Vec<f64>> {
        records
            .iter()
            .map(|r| r.batch.readings.iter().map(|r| r.value).collect())
            .collect()
    }

    #[test]
    fn appended_batches_read_back_in_order_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let (s1, e1) = spool
            .append(&batch("gw1", &[1.0, 2.0]), |s, e| (s, e))
            .unwrap();
        let (s2, e2) = spool.append(&batch("gw2", &[3.0]), |s, e| (s, e)).unwrap();
        assert_eq!((s1, s2), (0, e1));
        let records = spool.read(0, e2, u64::MAX).unwrap();
        assert_eq!(values(&records), vec![vec![1.0, 2.0], vec![3.0]]);
        assert_eq!(records[1].batch.gateway, "gw2");
        assert_eq!(
            records[0].batch.readings[1].ts.timestamp_micros(),
            1_800_000_000_000_001
        );

        spool.commit(e1).unwrap();
        drop(spool);
        let reopened = Spool::open(dir.path()).unwrap();
        assert_eq!(reopened.committed(), e1);
        assert_eq!(reopened.end(), e2);
        assert_eq!(
            values(&reopened.read(e1, e2, u64::MAX).unwrap()),
            vec![vec![3.0]]
        );
    }

    /// Between recordings a crash replays stored messages (the readings key
    /// skips them); it never skips one that was not stored.
    #[test]
    fn a_crash_replays_from_the_last_recorded_position() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let (_, e1) = spool.append(&batch("gw1", &[1.0]), |s, e| (s, e)).unwrap();
        let (_, e2) = spool.append(&batch("gw1", &[2.0]), |s, e| (s, e)).unwrap();
        spool.commit(e1).unwrap();
        // kill -9: no shutdown, no drop.
        std::mem::forget(spool);
        let reopened = Spool::open(dir.path()).unwrap();
        assert_eq!((reopened.committed(), reopened.end()), (0, e2));

        reopened.commit(e2).unwrap();
        reopened.record_position().unwrap();
        std::mem::forget(reopened);
        assert_eq!(Spool::open(dir.path()).unwrap().committed(), e2);
    }

    #[test]
    fn a_torn_last_record_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let (_, end) = spool.append(&batch("gw1", &[1.0]), |s, e| (s, e)).unwrap();
        spool.append(&batch("gw1", &[2.0, 3.0]), |_, _| ()).unwrap();
        drop(spool);
        // The process died halfway through writing the second record.
        let path = dir.path().join("spool.log");
        let length = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(length - 5)
            .unwrap();

        let reopened = Spool::open(dir.path()).unwrap();
        assert_eq!(reopened.end(), end);
        assert_eq!(
            values(&reopened.read(0, end, u64::MAX).unwrap()),
            vec![vec![1.0]]
        );
        // Appending goes on after the last intact record.
        let (start, _) = reopened
            .append(&batch("gw1", &[4.0]), |s, e| (s, e))
            .unwrap();
        assert_eq!(start, end);
    }

    #[test]
    fn reads_stop_near_the_byte_limit() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        for i in 0..10 {
            spool.append(&batch("gw", &[i as f64]), |_, _| ()).unwrap();
        }
        let first = spool.read(0, spool.end(), 1).unwrap();
        assert_eq!(first.len(), 1);
        let rest = spool.read(first[0].end, spool.end(), u64::MAX).unwrap();
        assert_eq!(rest.len(), 9);
    }

    #[test]
    fn a_fully_stored_large_spool_is_truncated_and_offsets_keep_growing() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let big = batch("gw", &vec![1.0; 100_000]);
        let mut end = 0;
        while end < TRUNCATE_AT {
            end = spool.append(&big, |_, e| e).unwrap();
        }
        spool.commit(end).unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join("spool.log"))
                .unwrap()
                .len(),
            0
        );
        let (start, next) = spool.append(&batch("gw", &[7.0]), |s, e| (s, e)).unwrap();
        assert_eq!(start, end);
        assert_eq!(
            values(&spool.read(start, next, u64::MAX).unwrap()),
            vec![vec![7.0]]
        );
        drop(spool);
        let reopened = Spool::open(dir.path()).unwrap();
        assert_eq!((reopened.committed(), reopened.end()), (end, next));
    }
}
