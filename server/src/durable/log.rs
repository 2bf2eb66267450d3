//! A segmented append-only log of framed records, with group commit, a
//! bound, and a position below which everything is consumed.
//!
//! Positions are logical byte offsets that only grow. The log is a run of
//! segment files `{name}-{base:020}.log`, each holding the bytes from its
//! base on; a segment wholly below the consumed position is deleted, so the
//! disk holds what is still needed plus at most one segment. The consumed
//! position is recorded in `{name}.position` at most once a second (and at
//! close); a crash replays from the last recorded one, which only repeats
//! consumed records, because the bases in the file names, not the position
//! file, say where bytes live.
//!
//! Opening scans only the last segment, for a torn tail: a crash can tear
//! only the record being written. Damage anywhere else is found, skipped
//! and counted when it is read.
//!
//! Durability: appends are written at once (a process crash loses nothing
//! written) and a syncer thread fsyncs them in groups, `fsync_window` after
//! the first unsynced append. [`Log::ticket`] gives a caller a future that
//! resolves once its append is fsynced, or consumed (then the consumer
//! holds it). After a failed fsync Linux may have dropped the dirty pages
//! and reports success next time, so bytes up to a failed fsync count as
//! durable only once consumed.
//!
//! With [`LogConfig::write_behind`] an append is only copied into memory,
//! and the syncer writes what gathered just before its fsync, never while
//! one runs. The caller's thread (an async worker, for the spool) then does
//! no file system call of its own: a 57-byte append to a file whose
//! fdatasync was running blocked for 0.3 to 3 ms on ext4 (`perf trace`
//! under the ingest bench), and under the log's lock it stalled every other
//! appender too. The price is that a process crash loses what was appended
//! since the syncer's last write (at most one window), which is fine for a
//! caller that tells its source nothing until the ticket resolves. Reads
//! see the unwritten tail from memory; if the syncer cannot write, appends
//! are refused until it can, and what it holds is kept for the retry.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::frame::{Item, Scanner};

/// What the log does when an append would take it past `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Delete the oldest segment, unconsumed or not, and count what it held:
    /// for a source that was told the data was safe before it reached the
    /// log, so refusing would lose the newest instead.
    DropOldest,
    /// Refuse the append: for a source that waits for the log before it
    /// acknowledges, and so keeps what is refused.
    Refuse,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The bound on the segment files' total size.
    pub max_bytes: u64,
    /// A new segment begins once the current one would pass this.
    pub segment_bytes: u64,
    /// Group commit: how long the syncer gathers appends before one fsync
    /// covers them all. `None`: never fsync (an append is "durable" once
    /// written, which survives a process crash but not a power cut).
    pub fsync_window: Option<Duration>,
    pub when_full: WhenFull,
    /// Appends are copied into memory and written by the syncer before its
    /// fsync (see the module docs); only with an `fsync_window`.
    pub write_behind: bool,
    /// How many units (readings, transitions) a record body carries, for
    /// counting what a dropped segment held.
    pub units: fn(&[u8]) -> u64,
}

/// Counters, read by `/metrics`.
#[derive(Debug, Default)]
pub struct LogStats {
    pub write_errors: AtomicU64,
    pub fsyncs: AtomicU64,
    pub fsync_errors: AtomicU64,
    pub fsync_micros: AtomicU64,
    /// Unconsumed bytes and units deleted with the oldest segment at the
    /// bound.
    pub dropped_bytes: AtomicU64,
    pub dropped_units: AtomicU64,
    /// Appends refused at the bound.
    pub refused: AtomicU64,
    /// Bytes that were not whole records: skipped by reads, or cut off the
    /// end at open.
    pub damaged_bytes: AtomicU64,
}

#[derive(Debug)]
pub enum AppendError {
    /// At the bound, under [`WhenFull::Refuse`] (or a single append larger
    /// than the bound).
    Full {
        max_bytes: u64,
    },
    Io(io::Error),
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppendError::Full { max_bytes } => write!(f, "full (bound {max_bytes} bytes)"),
            AppendError::Io(err) => write!(f, "{err}"),
        }
    }
}

/// The state of the log for `/readyz`, `/metrics` and the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// Bytes in the segment files.
    pub bytes: u64,
    pub max_bytes: u64,
    /// Appended but not yet consumed.
    pub backlog: u64,
    /// The last write or fsync failed, and nothing has succeeded since.
    pub error: Option<String>,
    /// The last append met the bound (dropped the oldest or was refused).
    pub at_bound: bool,
}

impl Health {
    pub fn fill(&self) -> f64 {
        self.bytes as f64 / self.max_bytes.max(1) as f64
    }
}

/// A record read back: its end position and body.
pub struct Record {
    pub end: u64,
    pub body: Vec<u8>,
}

pub struct Read {
    pub records: Vec<Record>,
    /// Everything before this was read or skipped: where the next read starts.
    pub reached: u64,
}

/// Resolves once an append is durable: fsynced, or consumed.
pub struct Ticket {
    end: u64,
    durable: watch::Receiver<u64>,
}

impl Ticket {
    /// True once durable; false if the log closed first.
    pub async fn wait(mut self) -> bool {
        let end = self.end;
        self.durable.wait_for(|d| *d >= end).await.is_ok()
    }

    pub fn is_durable(&self) -> bool {
        *self.durable.borrow() >= self.end
    }
}

pub struct Log {
    inner: Arc<Inner>,
    syncer: Option<JoinHandle<()>>,
}

struct Inner {
    dir: PathBuf,
    name: &'static str,
    config: LogConfig,
    state: Mutex<State>,
    /// Wakes the syncer: appended, or closing.
    wake: Condvar,
    /// The durable position: fsynced or consumed, whichever is further.
    durable: watch::Sender<u64>,
    stats: Arc<LogStats>,
}

struct Segment {
    base: u64,
    len: u64,
    /// Units appended to it by this process; `None` for a segment found
    /// at open, whose count is taken by reading it if it is ever dropped.
    units: Option<u64>,
    path: PathBuf,
}

impl Segment {
    fn end(&self) -> u64 {
        self.base + self.len
    }
}

struct State {
    segments: VecDeque<Segment>,
    /// The last segment's append handle.
    active: Option<Arc<File>>,
    end: u64,
    total: u64,
    /// Everything before this is consumed or dropped: reads start here.
    consumed: u64,
    /// What the consumer said it holds (for tickets; dropping does not count).
    stored: u64,
    /// The end of the last segment dropped at the bound.
    dropped_mark: u64,
    recorded: u64,
    recorded_at: Instant,
    error: Option<String>,
    at_bound: bool,
    // The syncer's bookkeeping.
    /// Files of segments closed since the last fsync.
    unsynced: Vec<Arc<File>>,
    dir_dirty: bool,
    /// The end position the last fsync attempt covered.
    sync_attempted: u64,
    /// Fsynced and believed.
    synced: u64,
    /// Bytes up to here were written before a failed fsync.
    poisoned: u64,
    /// The last successful fsync's position, believed once `stored` passes
    /// `poisoned`.
    synced_unbelieved: u64,
    closing: bool,
    /// Write-behind: appended to the active segment, counted in its length
    /// and in `end`, not yet written to its file.
    pending: Vec<u8>,
    /// The syncer's last write of `pending` failed: appends are refused
    /// until one succeeds.
    write_failed: bool,
    /// The syncer waits on `wake` for an append. Appends notify only then:
    /// a notify is a system call, and while the syncer gathers or fsyncs it
    /// would be one per append for nothing.
    syncer_waiting: bool,
    /// The syncer has returned.
    syncer_done: bool,
}

impl State {
    fn durable(&self) -> u64 {
        self.stored.max(self.synced)
    }

    fn after_store(&mut self) {
        if self.stored >= self.poisoned && self.synced_unbelieved > self.synced {
            self.synced = self.synced_unbelieved;
        }
    }
}

/// How often the consumed position is written to disk while it moves.
const RECORD_EVERY: Duration = Duration::from_secs(1);
/// How long closing waits for the last fsync.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Write-behind bytes an append lets gather before it writes them itself:
/// the bound on memory while the syncer is stuck in a long fsync.
const PENDING_MAX: usize = 8 << 20;

impl Log {
    /// Opens (or creates) the log `name` in `dir`, cutting a torn record off
    /// the end. Returns it and the number of bytes cut off.
    pub fn open(
        dir: &Path,
        name: &'static str,
        config: LogConfig,
        stats: Arc<LogStats>,
    ) -> io::Result<(Self, u64)> {
        fs::create_dir_all(dir)?;
        let mut segments = VecDeque::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            if let Some(base) = file_name
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('-'))
                .and_then(|rest| rest.strip_suffix(".log"))
                .and_then(|digits| digits.parse::<u64>().ok())
            {
                segments.push_back(Segment {
                    base,
                    len: entry.metadata()?.len(),
                    units: None,
                    path: entry.path(),
                });
            }
        }
        segments.make_contiguous().sort_by_key(|s| s.base);
        let mut torn = 0;
        let active = match segments.back_mut() {
            Some(last) => {
                let file = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .open(&last.path)?;
                let valid = whole_records_end(&file)?;
                if valid < last.len {
                    torn = last.len - valid;
                    file.set_len(valid)?;
                    last.len = valid;
                }
                // After a process crash the last appends may still be only
                // in the page cache: make what is there durable, as the
                // state below says it is.
                file.sync_all()?;
                Some(Arc::new(file))
            }
            None => None,
        };
        let recorded = read_position(&dir.join(format!("{name}.position")));
        let end = segments.back().map_or(recorded, Segment::end);
        let first = segments.front().map_or(end, |s| s.base);
        let consumed = recorded.clamp(first, end);
        stats.damaged_bytes.fetch_add(torn, Relaxed);
        let total = segments.iter().map(|s| s.len).sum();
        let (durable, _) = watch::channel(end);
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            name,
            state: Mutex::new(State {
                segments,
                active,
                end,
                total,
                consumed,
                stored: consumed,
                dropped_mark: 0,
                recorded,
                recorded_at: Instant::now(),
                error: None,
                at_bound: false,
                unsynced: Vec::new(),
                dir_dirty: false,
                // Fsynced above.
                sync_attempted: end,
                synced: end,
                poisoned: 0,
                synced_unbelieved: end,
                closing: false,
                pending: Vec::new(),
                write_failed: false,
                syncer_waiting: false,
                syncer_done: false,
            }),
            wake: Condvar::new(),
            durable,
            stats,
            config,
        });
        inner.delete_consumed(&mut inner.lock());
        let syncer = match inner.config.fsync_window {
            Some(window) => {
                let inner = inner.clone();
                Some(
                    std::thread::Builder::new()
                        .name(format!("{name}-fsync"))
                        .spawn(move || inner.sync_loop(window))?,
                )
            }
            None => None,
        };
        Ok((Self { inner, syncer }, torn))
    }

    /// Appends `bytes` (whole framed records, carrying `units` units) and
    /// returns what `then(start, end)` returns. `then` runs under the log's
    /// lock, so whatever it queues is queued in log order.
    pub fn append<T>(
        &self,
        bytes: &[u8],
        units: u64,
        then: impl FnOnce(u64, u64) -> T,
    ) -> Result<T, AppendError> {
        let inner = &self.inner;
        let mut state = inner.lock();
        let size = bytes.len() as u64;
        let written = inner.make_room(&mut state, size).and_then(|()| {
            if !inner.writes_behind() {
                return inner.write(&mut state, bytes);
            }
            if state.write_failed {
                let error = state.error.clone().unwrap_or_default();
                return Err(AppendError::Io(io::Error::other(error)));
            }
            if state.pending.len() + bytes.len() > PENDING_MAX {
                inner.write_pending(&mut state)?;
            }
            state.pending.extend_from_slice(bytes);
            Ok(())
        });
        match written {
            Ok(()) => {
                if let Some(segment) = state.segments.back_mut() {
                    segment.len += size;
                    if let Some(count) = &mut segment.units {
                        *count += units;
                    }
                }
                let start = state.end;
                state.end += size;
                state.total += size;
                if !inner.writes_behind()
                    && let Some(err) = state.error.take()
                {
                    tracing::info!(
                        log = inner.name,
                        "{} writable again (it failed: {err})",
                        inner.name
                    );
                }
                if inner.config.fsync_window.is_none() {
                    state.synced = state.end;
                    state.synced_unbelieved = state.end;
                    inner.publish(&state);
                } else if state.syncer_waiting {
                    inner.wake.notify_all();
                }
                Ok(then(start, state.end))
            }
            Err(err) => {
                match &err {
                    // A failed write behind noted itself, and the appends
                    // refused after it are not writes.
                    AppendError::Io(io) if !state.write_failed => {
                        inner.note_write_error(&mut state, io);
                    }
                    AppendError::Io(_) => {}
                    AppendError::Full { .. } => {
                        inner.stats.refused.fetch_add(1, Relaxed);
                    }
                }
                Err(err)
            }
        }
    }

    /// A future that resolves once everything up to `end` is durable.
    pub fn ticket(&self, end: u64) -> Ticket {
        Ticket {
            end,
            durable: self.inner.durable.subscribe(),
        }
    }

    /// Reads the records in `[from, to)`, stopping after about `max_bytes`
    /// of bodies; skips (and counts) damage, and anything dropped or
    /// deleted before `from`.
    pub fn read(&self, from: u64, to: u64, max_bytes: u64) -> io::Result<Read> {
        let (segments, written, unwritten) = {
            let state = self.inner.lock();
            // Files hold everything before `written`; the rest is `pending`.
            let written = state.end - state.pending.len() as u64;
            let segments: Vec<(u64, u64, PathBuf)> = state
                .segments
                .iter()
                .filter(|s| s.end() > from && s.base < to.min(written))
                .map(|s| (s.base, s.end().min(written), s.path.clone()))
                .collect();
            let unwritten = (to > written && from < state.end).then(|| state.pending.clone());
            (segments, written, unwritten)
        };
        let mut read = Read {
            records: Vec::new(),
            reached: from,
        };
        let mut bytes = 0;
        for (base, end, path) in segments {
            let start = read.reached.max(base);
            let stop = to.min(end);
            if start >= stop {
                continue;
            }
            let mut file = match File::open(&path) {
                Ok(file) => file,
                // Dropped at the bound since the list was taken.
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    read.reached = stop;
                    continue;
                }
                Err(err) => return Err(err),
            };
            file.seek(SeekFrom::Start(start - base))?;
            let mut scanner = Scanner::new(file.take(stop - start), start);
            while let Some(item) = scanner.next_item()? {
                match item {
                    Item::Record { end, body, .. } => {
                        bytes += body.len() as u64;
                        read.records.push(Record {
                            end,
                            body: body.to_vec(),
                        });
                        read.reached = end;
                    }
                    Item::Damage { start, end } => {
                        self.inner
                            .stats
                            .damaged_bytes
                            .fetch_add(end - start, Relaxed);
                        tracing::error!(
                            log = self.inner.name,
                            file = %path.display(),
                            from = start - base,
                            bytes = end - start,
                            "damaged bytes in the {} skipped; the records around them are kept",
                            self.inner.name
                        );
                        read.reached = end;
                    }
                }
                if bytes >= max_bytes {
                    return Ok(read);
                }
            }
            read.reached = stop;
        }
        if let Some(unwritten) = unwritten {
            let start = read.reached.max(from).max(written);
            let stop = to.min(written + unwritten.len() as u64);
            if start < stop {
                let slice = &unwritten[(start - written) as usize..(stop - written) as usize];
                let mut scanner = Scanner::new(slice, start);
                while let Some(item) = scanner.next_item()? {
                    if let Item::Record { end, body, .. } = item {
                        bytes += body.len() as u64;
                        read.records.push(Record {
                            end,
                            body: body.to_vec(),
                        });
                        read.reached = end;
                        if bytes >= max_bytes {
                            return Ok(read);
                        }
                    }
                }
            }
        }
        // Nothing (left) in the range: a stretch dropped at the bound or
        // deleted as consumed.
        read.reached = read.reached.max(to.min(self.end()));
        Ok(read)
    }

    /// Everything before `upto` is consumed: its segments may go.
    pub fn consume(&self, upto: u64) -> io::Result<()> {
        self.consume_holding(upto, &[])
    }

    /// Like [`Log::consume`], where the consumer stored `held` (`(start,
    /// end, units)`) from copies of its own: any of them in a segment
    /// dropped at the bound were counted as dropped, and are not lost.
    /// Under the log's lock, so a drop cannot slip between the check and
    /// the consumption.
    pub fn consume_holding(&self, upto: u64, held: &[(u64, u64, u64)]) -> io::Result<()> {
        let inner = &self.inner;
        let mut state = inner.lock();
        let (mut bytes, mut units) = (0, 0);
        for &(start, end, count) in held {
            if end <= state.dropped_mark && start >= state.stored {
                bytes += end - start;
                units += count;
            }
        }
        if units > 0 {
            let less = |by: u64| move |n: u64| Some(n.saturating_sub(by));
            let stats = &inner.stats;
            let _ = stats
                .dropped_bytes
                .fetch_update(Relaxed, Relaxed, less(bytes));
            let _ = stats
                .dropped_units
                .fetch_update(Relaxed, Relaxed, less(units));
        }
        let upto = upto.min(state.end);
        state.stored = state.stored.max(upto);
        state.consumed = state.consumed.max(upto);
        state.after_store();
        inner.publish(&state);
        inner.delete_consumed(&mut state);
        if state.recorded_at.elapsed() >= RECORD_EVERY && state.recorded != state.consumed {
            inner.record(&mut state)?;
        }
        Ok(())
    }

    /// Writes the consumed position now, if it moved: at shutdown, so a
    /// clean restart replays nothing.
    pub fn record_position(&self) -> io::Result<()> {
        let inner = &self.inner;
        let mut state = inner.lock();
        if state.recorded != state.consumed {
            inner.record(&mut state)?;
        }
        Ok(())
    }

    pub fn consumed(&self) -> u64 {
        self.inner.lock().consumed
    }

    pub fn end(&self) -> u64 {
        self.inner.lock().end
    }

    pub fn health(&self) -> Health {
        let state = self.inner.lock();
        Health {
            bytes: state.total,
            max_bytes: self.inner.config.max_bytes,
            backlog: state.end - state.consumed,
            error: state.error.clone(),
            // Until the next append says otherwise, or consuming made room.
            at_bound: state.at_bound
                && state.total + self.inner.config.segment_bytes > self.inner.config.max_bytes,
        }
    }

    pub fn stats(&self) -> &Arc<LogStats> {
        &self.inner.stats
    }

    /// Fsyncs everything written so far, now, on the caller's thread.
    pub fn flush(&self) -> io::Result<()> {
        let inner = &self.inner;
        let (target, files) = {
            let mut state = inner.lock();
            inner.write_pending(&mut state).map_err(|err| match err {
                AppendError::Io(err) => err,
                full @ AppendError::Full { .. } => io::Error::other(full.to_string()),
            })?;
            let mut files = std::mem::take(&mut state.unsynced);
            files.extend(state.active.clone());
            (state.end, files)
        };
        for file in &files {
            file.sync_data()?;
        }
        File::open(&inner.dir)?.sync_all()?;
        let mut state = inner.lock();
        if state.stored >= state.poisoned {
            state.synced = state.synced.max(target);
            state.synced_unbelieved = state.synced_unbelieved.max(target);
        }
        inner.publish(&state);
        Ok(())
    }

    /// Fsyncs what is written, stops the syncer and records the position.
    /// Dropping the log does the same. An fsync can hang on a sick disk
    /// (minutes were seen under heavy shared I/O): the syncer gets
    /// [`CLOSE_WAIT`], then is left to finish on its own.
    pub fn close(&mut self) {
        if let Some(syncer) = self.syncer.take() {
            let state = self.inner.lock();
            let mut state = state;
            state.closing = true;
            self.inner.wake.notify_all();
            let (state, _) = self
                .inner
                .wake
                .wait_timeout_while(state, CLOSE_WAIT, |s| !s.syncer_done)
                .unwrap_or_else(|e| e.into_inner());
            let done = state.syncer_done;
            drop(state);
            if !done {
                tracing::error!(
                    log = self.inner.name,
                    "the last fsync did not finish within {} s; leaving it (what was written is in the page cache)",
                    CLOSE_WAIT.as_secs()
                );
            } else if syncer.join().is_err() {
                tracing::error!(log = self.inner.name, "the fsync thread panicked");
            }
        }
        if let Err(err) = self.record_position() {
            // Costs a replay of consumed records at the next start.
            tracing::warn!(
                log = self.inner.name,
                "recording the position failed: {err}"
            );
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.close();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a failed write and keeps its error for `/readyz`, logging
    /// only the first of a run of them.
    fn note_write_error(&self, state: &mut State, err: &io::Error) {
        self.stats.write_errors.fetch_add(1, Relaxed);
        if state.error.is_none() {
            tracing::error!(
                log = self.name,
                dir = %self.dir.display(),
                "cannot write the {}: {err}",
                self.name
            );
        }
        state.error = Some(err.to_string());
    }

    fn writes_behind(&self) -> bool {
        self.config.write_behind && self.config.fsync_window.is_some()
    }

    /// Writes what write-behind gathered to the active segment. On failure
    /// the partial write is cut off and the bytes stay pending for the next
    /// try, with appends refused meanwhile; if even the cut fails, they are
    /// given up (counted as dropped; durable only once the consumer stores
    /// them from its own copies) and the next append begins a new segment,
    /// so no later record follows the remains.
    fn write_pending(&self, state: &mut State) -> Result<(), AppendError> {
        if state.pending.is_empty() {
            return Ok(());
        }
        let (Some(file), Some(segment)) = (state.active.clone(), state.segments.back()) else {
            return Err(AppendError::Io(io::Error::other("no active segment")));
        };
        let on_disk = segment.len - state.pending.len() as u64;
        let Err(err) = (&*file).write_all(&state.pending) else {
            state.pending.clear();
            if state.write_failed {
                state.write_failed = false;
                if let Some(err) = state.error.take() {
                    tracing::info!(
                        log = self.name,
                        "{} writable again (it failed: {err})",
                        self.name
                    );
                }
            }
            return Ok(());
        };
        self.note_write_error(state, &err);
        if let Err(cut) = file.set_len(on_disk) {
            let bytes = state.pending.len() as u64;
            let units = count_units_in(&state.pending[..], self.config.units).unwrap_or(0);
            tracing::error!(
                log = self.name,
                bytes,
                "cannot cut a failed {} write off ({cut}): its unwritten records are given up",
                self.name
            );
            self.stats.dropped_bytes.fetch_add(bytes, Relaxed);
            self.stats.dropped_units.fetch_add(units, Relaxed);
            state.pending.clear();
            state.poisoned = state.poisoned.max(state.end);
            if let Some(closed) = state.active.take() {
                state.unsynced.push(closed);
            }
            state.write_failed = false;
            return Err(AppendError::Io(err));
        }
        state.write_failed = true;
        Err(AppendError::Io(err))
    }

    fn publish(&self, state: &State) {
        let durable = state.durable();
        self.durable.send_if_modified(|d| {
            let moved = durable > *d;
            if moved {
                *d = durable;
            }
            moved
        });
    }

    fn segment_path(&self, base: u64) -> PathBuf {
        self.dir.join(format!("{}-{base:020}.log", self.name))
    }

    /// Begins a new segment when the current one is full, and applies the
    /// bound.
    fn make_room(&self, state: &mut State, size: u64) -> Result<(), AppendError> {
        let rolls = state
            .segments
            .back()
            .is_none_or(|s| s.len > 0 && s.len + size > self.config.segment_bytes);
        if rolls || state.active.is_none() {
            // What is pending belongs to the segment being closed.
            self.write_pending(state)?;
            let base = state.end;
            let path = self.segment_path(base);
            let file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&path)
                .map_err(AppendError::Io)?;
            if let Some(closed) = state.active.replace(Arc::new(file)) {
                state.unsynced.push(closed);
            }
            // A reopened empty segment is reused, not listed twice.
            if state.segments.back().is_none_or(|s| s.base != base) {
                state.segments.push_back(Segment {
                    base,
                    len: 0,
                    units: Some(0),
                    path,
                });
            }
            state.dir_dirty = true;
        }
        let mut dropped = false;
        if self.config.when_full == WhenFull::DropOldest {
            while state.total + size > self.config.max_bytes && state.segments.len() > 1 {
                self.drop_oldest(state);
                dropped = true;
            }
        }
        if state.total + size > self.config.max_bytes {
            state.at_bound = true;
            return Err(AppendError::Full {
                max_bytes: self.config.max_bytes,
            });
        }
        if dropped {
            // Until consuming makes a segment's room (see `health`).
            state.at_bound = true;
        }
        Ok(())
    }

    fn drop_oldest(&self, state: &mut State) {
        let Some(segment) = state.segments.pop_front() else {
            return;
        };
        let from = state.consumed.max(segment.base);
        let (bytes, units) = if from >= segment.end() {
            (0, 0)
        } else {
            let units = match segment.units {
                Some(units) if from == segment.base => units,
                _ => count_units(&segment, from, self.config.units).unwrap_or(0),
            };
            (segment.end() - from, units)
        };
        if let Err(err) = fs::remove_file(&segment.path) {
            tracing::error!(file = %segment.path.display(), "cannot delete a {} segment: {err}", self.name);
        }
        state.total -= segment.len;
        state.consumed = state.consumed.max(segment.end());
        state.dropped_mark = state.dropped_mark.max(segment.end());
        self.stats.dropped_bytes.fetch_add(bytes, Relaxed);
        self.stats.dropped_units.fetch_add(units, Relaxed);
        if bytes > 0 {
            tracing::error!(
                log = self.name,
                bytes,
                units,
                "{} at its bound of {} bytes: dropped its oldest unconsumed segment",
                self.name,
                self.config.max_bytes
            );
        }
    }

    /// Writes `bytes` at the end of the active segment. A failed write is
    /// cut off again, so a later append never follows half a record; if
    /// even that fails, the segment's length is taken from the file and the
    /// reader skips the remains as damage.
    fn write(&self, state: &mut State, bytes: &[u8]) -> Result<(), AppendError> {
        let (Some(file), Some(segment)) = (state.active.clone(), state.segments.back_mut()) else {
            return Err(AppendError::Io(io::Error::other("no active segment")));
        };
        match (&*file).write_all(bytes) {
            Ok(()) => Ok(()),
            Err(err) => {
                if let Err(cut) = file.set_len(segment.len) {
                    tracing::error!(
                        "cannot cut a failed {} write off ({cut}); readers will skip it",
                        self.name
                    );
                    if let Ok(meta) = file.metadata() {
                        let grown = meta.len().saturating_sub(segment.len);
                        segment.len += grown;
                        state.end += grown;
                        state.total += grown;
                    }
                }
                Err(AppendError::Io(err))
            }
        }
    }

    /// Deletes segments wholly consumed, except the one being appended to.
    fn delete_consumed(&self, state: &mut State) {
        while state.segments.len() > 1
            && state
                .segments
                .front()
                .is_some_and(|s| s.end() <= state.consumed)
        {
            let Some(segment) = state.segments.pop_front() else {
                break;
            };
            if let Err(err) = fs::remove_file(&segment.path) {
                tracing::warn!(file = %segment.path.display(), "cannot delete a consumed {} segment: {err}", self.name);
            }
            state.total -= segment.len;
        }
    }

    fn record(&self, state: &mut State) -> io::Result<()> {
        let path = self.dir.join(format!("{}.position", self.name));
        let temporary = path.with_extension("position.tmp");
        // Never past what the files hold: after a crash, appends resume at
        // the files' end, and a position beyond it would pass over them.
        let position = state.consumed.min(state.end - state.pending.len() as u64);
        fs::write(&temporary, format!("{position}\n"))?;
        fs::rename(&temporary, &path)?;
        state.recorded = position;
        state.recorded_at = Instant::now();
        Ok(())
    }

    /// The syncer: waits for appends, lets `window` pass so later ones join,
    /// then one fsync covers them all.
    fn sync_loop(&self, window: Duration) {
        let mut state = self.lock();
        loop {
            while !state.closing && !has_unsynced(&state) {
                state.syncer_waiting = true;
                state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                state.syncer_waiting = false;
            }
            if !has_unsynced(&state) {
                state.syncer_done = true;
                self.wake.notify_all();
                return;
            }
            if !state.closing && !window.is_zero() {
                // Appends do not cut the window short; closing does.
                state = self
                    .wake
                    .wait_timeout_while(state, window, |s| !s.closing)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            // Written here, between fsyncs, so no write waits on one.
            if self.write_pending(&mut state).is_err() {
                if state.closing {
                    tracing::error!(
                        log = self.name,
                        bytes = state.pending.len(),
                        "closing with appends the {} could not write",
                        self.name
                    );
                    state.syncer_done = true;
                    self.wake.notify_all();
                    return;
                }
                // Retried after a window; appends are refused meanwhile.
                drop(state);
                std::thread::sleep(window.max(Duration::from_millis(100)));
                state = self.lock();
                continue;
            }
            let target = state.end;
            let mut files = std::mem::take(&mut state.unsynced);
            files.extend(state.active.clone());
            let dir_dirty = std::mem::take(&mut state.dir_dirty);
            drop(state);

            let started = Instant::now();
            let result = files.iter().try_for_each(|f| f.sync_data()).and_then(|()| {
                if dir_dirty {
                    File::open(&self.dir)?.sync_all()?;
                }
                Ok(())
            });
            self.stats.fsyncs.fetch_add(1, Relaxed);
            self.stats
                .fsync_micros
                .fetch_add(started.elapsed().as_micros() as u64, Relaxed);

            state = self.lock();
            state.sync_attempted = target;
            match result {
                Ok(()) => {
                    state.synced_unbelieved = target;
                    state.after_store();
                    if state.stored >= state.poisoned {
                        state.synced = target;
                    }
                    self.publish(&state);
                }
                Err(err) => {
                    self.stats.fsync_errors.fetch_add(1, Relaxed);
                    tracing::error!(
                        log = self.name,
                        "fsync failed: {err}; what was written before it counts as safe only once consumed"
                    );
                    state.poisoned = state.poisoned.max(target);
                    state.error = Some(format!("fsync failed: {err}"));
                    if dir_dirty {
                        state.dir_dirty = true;
                    }
                }
            }
        }
    }
}

fn has_unsynced(state: &State) -> bool {
    state.end > state.sync_attempted
        || !state.unsynced.is_empty()
        || state.dir_dirty
        || !state.pending.is_empty()
}

/// The end of the last whole record in `file`: what survives a torn tail.
/// Damage before it stays (a read skips it).
fn whole_records_end(file: &File) -> io::Result<u64> {
    let mut reader = file;
    reader.seek(SeekFrom::Start(0))?;
    let mut scanner = Scanner::new(reader, 0);
    let mut valid = 0;
    while let Some(item) = scanner.next_item()? {
        if let Item::Record { end, .. } = item {
            valid = end;
        }
    }
    Ok(valid)
}

fn count_units(segment: &Segment, from: u64, units: fn(&[u8]) -> u64) -> io::Result<u64> {
    let mut file = File::open(&segment.path)?;
    file.seek(SeekFrom::Start(from - segment.base))?;
    count_units_in(file, units)
}

fn count_units_in(records: impl io::Read, units: fn(&[u8]) -> u64) -> io::Result<u64> {
    let mut scanner = Scanner::new(records, 0);
    let mut count = 0;
    while let Some(item) = scanner.next_item()? {
        if let Item::Record { body, .. } = item {
            count += units(body);
        }
    }
    Ok(count)
}

fn read_position(path: &Path) -> u64 {
    // Written by rename, so never half-written; an unreadable one only
    // means replaying from the first segment, which is safe.
    fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::super::frame;
    use super::*;

    fn config(max_bytes: u64, segment_bytes: u64, when_full: WhenFull) -> LogConfig {
        LogConfig {
            max_bytes,
            segment_bytes,
            fsync_window: Some(Duration::from_millis(2)),
            when_full,
            write_behind: false,
            units: |body| body.len() as u64,
        }
    }

    fn open(dir: &Path, config: LogConfig) -> Log {
        Log::open(dir, "test", config, Arc::default()).unwrap().0
    }

    fn append(log: &Log, body: &[u8]) -> (u64, u64) {
        let mut bytes = Vec::new();
        frame::put(&mut bytes, body);
        log.append(&bytes, body.len() as u64, |s, e| (s, e))
            .unwrap()
    }

    fn bodies(log: &Log, from: u64) -> Vec<Vec<u8>> {
        let read = log.read(from, log.end(), u64::MAX).unwrap();
        assert_eq!(read.reached, log.end());
        read.records.into_iter().map(|r| r.body).collect()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn records_survive_reopening_and_reads_start_where_they_are_consumed() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), config(1 << 20, 1 << 16, WhenFull::Refuse));
        let (s1, e1) = append(&log, b"one");
        let (s2, _) = append(&log, b"two");
        assert_eq!((s1, s2), (0, e1));
        assert_eq!(bodies(&log, 0), [b"one", b"two"]);
        log.consume(e1).unwrap();
        drop(log);
        let log = open(dir.path(), config(1 << 20, 1 << 16, WhenFull::Refuse));
        assert_eq!(log.consumed(), e1);
        assert_eq!(bodies(&log, log.consumed()), [b"two"]);
    }

    /// The test: cut the log at every byte of its last record; it
    /// reopens with every whole record and nothing else, and appends go on
    /// after them.
    #[test]
    fn a_cut_anywhere_in_the_last_record_keeps_every_whole_record() {
        let source = tempfile::tempdir().unwrap();
        let (last_start, last_end) = {
            let log = open(source.path(), config(1 << 20, 1 << 16, WhenFull::Refuse));
            append(&log, b"first record");
            append(&log, b"second record");
            append(&log, b"the last record, torn")
        };
        let file = segment_files(source.path()).remove(0);
        let bytes = fs::read(&file).unwrap();
        for cut in last_start..last_end {
            let dir = tempfile::tempdir().unwrap();
            let copy = dir.path().join(file.file_name().unwrap());
            fs::write(&copy, &bytes[..cut as usize]).unwrap();
            let stats = Arc::new(LogStats::default());
            let (log, torn) = Log::open(
                dir.path(),
                "test",
                config(1 << 20, 1 << 16, WhenFull::Refuse),
                stats,
            )
            .unwrap();
            assert_eq!(torn, cut - last_start, "cut at {cut}");
            assert_eq!(log.end(), last_start, "cut at {cut}");
            assert_eq!(
                bodies(&log, 0),
                [&b"first record"[..], b"second record"],
                "cut at {cut}"
            );
            let (start, _) = append(&log, b"after");
            assert_eq!(start, last_start);
            assert_eq!(bodies(&log, 0).len(), 3);
        }
    }

    #[test]
    fn a_zeroed_block_in_the_middle_costs_only_the_records_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        let mut ends = Vec::new();
        {
            let log = open(dir.path(), config(1 << 20, 1 << 20, WhenFull::Refuse));
            for i in 0..100u32 {
                ends.push(append(&log, format!("record {i:03}").as_bytes()));
            }
        }
        // A lost 512-byte block, zero-filled, from byte 1000.
        let file = segment_files(dir.path()).remove(0);
        let mut bytes = fs::read(&file).unwrap();
        bytes[1000..1512].fill(0);
        fs::write(&file, &bytes).unwrap();

        let stats = Arc::new(LogStats::default());
        let (log, torn) = Log::open(
            dir.path(),
            "test",
            config(1 << 20, 1 << 20, WhenFull::Refuse),
            stats.clone(),
        )
        .unwrap();
        assert_eq!(torn, 0, "damage in the middle is not a torn tail");
        let expected: Vec<Vec<u8>> = ends
            .iter()
            .enumerate()
            .filter(|(_, (s, e))| *e <= 1000 || *s >= 1512)
            .map(|(i, _)| format!("record {i:03}").into_bytes())
            .collect();
        assert_eq!(bodies(&log, 0), expected);
        let lost = ends.iter().filter(|(s, e)| *e > 1000 && *s < 1512).count();
        assert!(lost >= 512 / 22, "{lost}");
        let first_hit = ends.iter().find(|(_, e)| *e > 1000).unwrap().0;
        let first_after = ends.iter().find(|(s, _)| *s >= 1512).unwrap().0;
        assert_eq!(stats.damaged_bytes.load(Relaxed), first_after - first_hit);
        // Reopening again keeps everything after the block.
        drop(log);
        let log = open(dir.path(), config(1 << 20, 1 << 20, WhenFull::Refuse));
        assert_eq!(bodies(&log, 0), expected);
    }

    #[test]
    fn consumed_segments_are_deleted_and_positions_keep_growing() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), config(1 << 20, 100, WhenFull::Refuse));
        let mut end = 0;
        for _ in 0..10 {
            end = append(&log, &[1; 40]).1;
        }
        // One 52-byte record per 100-byte segment.
        assert_eq!(segment_files(dir.path()).len(), 10);
        log.consume(end).unwrap();
        assert_eq!(segment_files(dir.path()).len(), 1, "the active one stays");
        assert_eq!(log.health().backlog, 0);
        let (start, _) = append(&log, b"next");
        assert_eq!(start, end);
        drop(log);
        let log = open(dir.path(), config(1 << 20, 100, WhenFull::Refuse));
        assert_eq!(bodies(&log, log.consumed()), [b"next"]);
    }

    #[test]
    fn at_the_bound_drop_oldest_keeps_the_newest_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), config(400, 100, WhenFull::DropOldest));
        for i in 0..20u8 {
            append(&log, &[i; 40]);
        }
        let health = log.health();
        assert!(health.bytes <= 400, "{health:?}");
        assert!(health.at_bound);
        let kept = bodies(&log, log.consumed());
        assert_eq!(kept.last().unwrap(), &vec![19u8; 40]);
        let stats = log.stats();
        // One 52-byte record per 100-byte segment.
        assert_eq!(
            kept.len() as u64 + stats.dropped_units.load(Relaxed) / 40,
            20
        );
        assert_eq!(
            stats.dropped_bytes.load(Relaxed),
            (20 - kept.len() as u64) * 52
        );
        // A reader behind the dropped segments skips to the oldest kept one.
        let read = log.read(0, log.end(), u64::MAX).unwrap();
        assert_eq!(read.records.len(), kept.len());
    }

    #[test]
    fn at_the_bound_refuse_keeps_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), config(400, 100, WhenFull::Refuse));
        let mut refused = 0;
        for i in 0..20u8 {
            let mut bytes = Vec::new();
            frame::put(&mut bytes, &[i; 40]);
            if let Err(AppendError::Full { .. }) = log.append(&bytes, 40, |_, _| ()) {
                refused += 1;
            }
        }
        assert!(refused > 0);
        assert_eq!(bodies(&log, 0)[0], vec![0u8; 40]);
        assert_eq!(log.stats().refused.load(Relaxed), refused);
        // Consuming makes room again.
        log.consume(log.end()).unwrap();
        append(&log, b"room again");
    }

    fn behind(segment_bytes: u64, window: Duration) -> LogConfig {
        LogConfig {
            fsync_window: Some(window),
            write_behind: true,
            ..config(1 << 20, segment_bytes, WhenFull::Refuse)
        }
    }

    /// Within a window, write-behind appends are only in memory, yet read
    /// back whole; closing writes them.
    #[test]
    fn write_behind_appends_read_back_before_they_are_written_and_survive_a_close() {
        let dir = tempfile::tempdir().unwrap();
        let long = Duration::from_secs(600);
        let log = open(dir.path(), behind(1 << 16, long));
        let (_, e1) = append(&log, b"one");
        let (_, e2) = append(&log, b"two");
        let file = segment_files(dir.path()).remove(0);
        assert_eq!(fs::metadata(&file).unwrap().len(), 0, "written early");
        assert_eq!(bodies(&log, 0), [b"one", b"two"]);
        assert_eq!(bodies(&log, e1), [b"two"]);
        let first = log.read(0, e2, 1).unwrap();
        assert_eq!((first.records.len(), first.reached), (1, e1));
        // Consumed before it is written: the recorded position stays
        // within the files, where appends resume after a crash.
        log.consume(e1).unwrap();
        log.record_position().unwrap();
        assert_eq!(read_position(&dir.path().join("test.position")), 0);
        let closing = Instant::now();
        drop(log);
        assert!(
            closing.elapsed() < Duration::from_secs(2),
            "waited the window"
        );
        assert_eq!(fs::metadata(&file).unwrap().len(), e2);
        let log = open(dir.path(), behind(1 << 16, long));
        assert_eq!((log.consumed(), log.end()), (e1, e2));
        assert_eq!(bodies(&log, e1), [b"two"]);
    }

    /// A crash before the syncer's write loses the appends it had not
    /// written, and only those: their tickets never resolved.
    #[test]
    fn a_crash_before_the_write_loses_only_appends_never_called_safe() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), behind(1 << 16, Duration::from_secs(600)));
        let (_, end) = append(&log, b"in memory");
        let ticket = log.ticket(end);
        assert!(!ticket.is_durable());
        // kill -9: no close. The syncer is left waiting out its window.
        std::mem::forget(log);
        let log = open(dir.path(), behind(1 << 16, Duration::from_millis(2)));
        assert_eq!(log.end(), 0);
        assert!(!ticket.is_durable());
    }

    #[tokio::test]
    async fn write_behind_rolls_segments_in_order_and_tickets_mean_written() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), behind(100, Duration::from_millis(2)));
        let ends: Vec<u64> = (0..20u8).map(|i| append(&log, &[i; 40]).1).collect();
        let expected: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 40]).collect();
        assert_eq!(bodies(&log, 0), expected);
        let last = *ends.last().unwrap();
        tokio::time::timeout(Duration::from_secs(5), log.ticket(last).wait())
            .await
            .unwrap();
        let on_disk: u64 = segment_files(dir.path())
            .iter()
            .map(|f| fs::metadata(f).unwrap().len())
            .sum();
        assert_eq!(on_disk, last);
        drop(log);
        let log = open(dir.path(), behind(100, Duration::from_millis(2)));
        assert_eq!(bodies(&log, 0), expected);
    }

    #[tokio::test]
    async fn a_ticket_resolves_once_its_append_is_fsynced() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(1 << 20, 1 << 20, WhenFull::Refuse);
        config.fsync_window = Some(Duration::from_millis(50));
        let log = open(dir.path(), config);
        let (_, end) = append(&log, b"safe soon");
        let ticket = log.ticket(end);
        assert!(!ticket.is_durable(), "not before the window has passed");
        tokio::time::timeout(Duration::from_secs(5), ticket.wait())
            .await
            .unwrap();
        assert!(log.stats().fsyncs.load(Relaxed) >= 1);
        // Many appends within one window share an fsync.
        let before = log.stats().fsyncs.load(Relaxed);
        let ends: Vec<u64> = (0..100).map(|_| append(&log, b"grouped").1).collect();
        for end in ends {
            assert!(log.ticket(end).wait().await);
        }
        assert!(log.stats().fsyncs.load(Relaxed) - before <= 3);
    }

    #[tokio::test]
    async fn without_fsync_an_append_is_durable_once_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(1 << 20, 1 << 20, WhenFull::Refuse);
        config.fsync_window = None;
        let log = open(dir.path(), config);
        let (_, end) = append(&log, b"x");
        assert!(log.ticket(end).is_durable());
    }
}
