//! The exception journal: transitions judged while PostgreSQL could not
//! take them, kept in order on local disk until it can.
//!
//! The engine never waits for the database. When a step's transitions
//! cannot be stored at once (or earlier ones still wait), they go here and
//! are shown live at once, marked as not yet stored; [`run_writer`] writes
//! them in order when the database answers, and tells `/ws` they are
//! stored. The journal is a [`crate::durable::Log`], so it survives a
//! restart during the outage (the next start writes it before anything
//! else) and a power cut within its fsync window. When even the disk
//! refuses, steps wait in a bounded memory overflow behind it; beyond that
//! they are counted as lost.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use trackside_wire::ExceptionEvent;

use super::Outlets;
use super::engine::Key;
use super::store::{self, WriteError};
use crate::durable::{Log, LogConfig, WhenFull, frame};
use crate::metrics::Metrics;

/// The journal's bound on disk: some 100,000 transitions.
const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Transitions held in memory when the disk refuses them.
const OVERFLOW_EVENTS: usize = 10_000;
/// Transitions per journal record: well within a record's bound even with
/// the longest acknowledgement comments.
const EVENTS_PER_RECORD: usize = 256;
/// How long one write of journalled transitions may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

pub struct Journal {
    log: Log,
    overflow: Mutex<VecDeque<Vec<ExceptionEvent>>>,
    metrics: Arc<Metrics>,
    wake: Notify,
}

impl Journal {
    pub fn open(
        dir: &Path,
        fsync_window: Option<Duration>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let config = LogConfig {
            max_bytes: MAX_BYTES,
            segment_bytes: MAX_BYTES / 8,
            fsync_window,
            when_full: WhenFull::Refuse,
            // Written at once: a process crash keeps every transition.
            write_behind: false,
            units: |body| {
                serde_json::from_slice::<Vec<serde::de::IgnoredAny>>(body)
                    .map_or(0, |v| v.len() as u64)
            },
        };
        let (log, torn) = Log::open(dir, "journal", config, Arc::default()).map_err(|err| {
            anyhow::anyhow!("opening the exception journal in {}: {err}", dir.display())
        })?;
        if torn > 0 {
            tracing::warn!(
                torn_bytes = torn,
                "the exception journal ended in a torn record; cut off"
            );
        }
        Ok(Self {
            log,
            overflow: Mutex::new(VecDeque::new()),
            metrics,
            wake: Notify::new(),
        })
    }

    /// Nothing waits to be stored.
    pub fn is_empty(&self) -> bool {
        self.log.health().backlog == 0 && self.overflow().is_empty()
    }

    /// Keeps a step's events, after everything kept before; false (and
    /// counted) when neither the disk nor the memory overflow could.
    pub fn push(&self, events: &[ExceptionEvent]) -> bool {
        let mut overflow = self.overflow();
        let mut kept = true;
        for chunk in events.chunks(EVENTS_PER_RECORD) {
            // Behind anything already in memory, to keep the order.
            let on_disk = overflow.is_empty() && self.append(chunk);
            if !on_disk {
                let held: usize = overflow.iter().map(Vec::len).sum();
                if held + chunk.len() <= OVERFLOW_EVENTS {
                    overflow.push_back(chunk.to_vec());
                } else {
                    Metrics::add(&self.metrics.exception_transitions_lost, chunk.len());
                    tracing::error!(
                        transitions = chunk.len(),
                        "exception journal full on disk and in memory: transitions not kept (they were shown live)"
                    );
                    kept = false;
                    continue;
                }
            }
            self.metrics
                .exception_journal_pending
                .fetch_add(chunk.len() as i64, Relaxed);
        }
        self.wake.notify_one();
        kept
    }

    fn append(&self, events: &[ExceptionEvent]) -> bool {
        let Ok(body) = serde_json::to_vec(events) else {
            return false;
        };
        if body.len() > frame::MAX_BODY {
            return false;
        }
        let mut record = Vec::with_capacity(body.len() + frame::HEADER);
        frame::put(&mut record, &body);
        self.log
            .append(&record, events.len() as u64, |_, _| ())
            .is_ok()
    }

    fn overflow(&self) -> MutexGuard<'_, VecDeque<Vec<ExceptionEvent>>> {
        self.overflow.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes everything waiting, in order, until done or the database
    /// fails. Used at start (before the engine resumes) and by the writer.
    pub async fn drain(
        self: &Arc<Self>,
        pool: &PgPool,
        outlets: &Outlets,
        assigned: &mut HashMap<Key, i64>,
        learned: Option<&mpsc::Sender<(Key, i64)>>,
    ) -> Result<(), WriteError> {
        loop {
            let (from, to) = (self.log.consumed(), self.log.end());
            if from >= to {
                break;
            }
            let journal = self.clone();
            let read = tokio::task::spawn_blocking(move || {
                journal.log.read(from, to, frame::MAX_BODY as u64)
            })
            .await;
            let read = match read {
                Ok(Ok(read)) => read,
                Ok(Err(err)) => {
                    // The disk will not give it back: nothing to retry.
                    tracing::error!(
                        "cannot read the exception journal, skipping {from}..{to}: {err}"
                    );
                    let _ = self.log.consume(to);
                    break;
                }
                Err(err) => {
                    tracing::error!("exception journal read task failed: {err}");
                    break;
                }
            };
            for record in read.records {
                match serde_json::from_slice::<Vec<ExceptionEvent>>(&record.body) {
                    Ok(mut events) => {
                        self.write(pool, &mut events, outlets, assigned, learned)
                            .await?;
                    }
                    Err(err) => {
                        tracing::error!("undecodable exception journal record skipped: {err}");
                    }
                }
                if let Err(err) = self.log.consume(record.end) {
                    tracing::warn!("recording the exception journal's position failed: {err}");
                }
            }
            let _ = self.log.consume(read.reached);
        }
        loop {
            let Some(mut events) = self.overflow().front().cloned() else {
                break;
            };
            self.write(pool, &mut events, outlets, assigned, learned)
                .await?;
            self.overflow().pop_front();
        }
        Ok(())
    }

    /// Stores one record's events; a refusal for good costs only the events
    /// refused. Then pushes what was not shown yet, and marks the rest
    /// stored.
    async fn write(
        &self,
        pool: &PgPool,
        events: &mut [ExceptionEvent],
        outlets: &Outlets,
        assigned: &mut HashMap<Key, i64>,
        learned: Option<&mpsc::Sender<(Key, i64)>>,
    ) -> Result<(), WriteError> {
        // Numbered here: not shown yet, for want of an id.
        let unshown: Vec<bool> = events.iter().map(|e| e.exception.id == 0).collect();
        let written =
            match tokio::time::timeout(WRITE_TIMEOUT, store::write(pool, events, assigned)).await {
                Ok(result) => result,
                Err(_) => Err(WriteError::Unreachable(sqlx::Error::PoolTimedOut)),
            };
        let mut refused = vec![false; events.len()];
        match written {
            Ok(()) => {}
            Err(WriteError::Unreachable(err)) => return Err(WriteError::Unreachable(err)),
            Err(WriteError::Refused(err)) => {
                tracing::error!(
                    "the database refuses journalled exception transitions ({err}); writing them one by one"
                );
                for (event, refused) in events.iter_mut().zip(&mut refused) {
                    match store::write(pool, std::slice::from_mut(event), assigned).await {
                        Ok(()) => {}
                        Err(WriteError::Refused(err)) => {
                            tracing::error!(
                                exception = event.exception.id,
                                rule = %event.exception.rule,
                                subject = %event.exception.subject,
                                "transition refused for good, not stored: {err}"
                            );
                            self.metrics
                                .exception_transitions_lost
                                .fetch_add(1, Relaxed);
                            *refused = true;
                        }
                        Err(err) => return Err(err),
                    }
                }
            }
        }
        let mut stored = Vec::new();
        for ((event, unshown), refused) in events.iter_mut().zip(unshown).zip(refused) {
            if refused {
                continue;
            }
            event.exception.stored = true;
            if unshown {
                if let Some(learned) = learned {
                    let key = Key {
                        rule: event.exception.rule.clone(),
                        subject: event.exception.subject.clone(),
                    };
                    let _ = learned.send((key, event.exception.id)).await;
                }
                outlets.push(event);
            } else {
                stored.push(event.exception.clone());
            }
        }
        outlets.live.publish_stored(stored);
        // Saturating: what an earlier run journalled was never counted here.
        let written = events.len() as i64;
        let _ = self
            .metrics
            .exception_journal_pending
            .fetch_update(Relaxed, Relaxed, |n| Some((n - written).max(0)));
        Ok(())
    }
}

/// Writes the journal whenever something is in it, retrying with backoff
/// while the database is away. Ends once `engine_done` is cancelled and the
/// journal is empty, or, during shutdown, at the first failure: what is
/// left stays on disk for the next start.
pub async fn run_writer(
    journal: Arc<Journal>,
    pool: PgPool,
    outlets: Arc<Outlets>,
    learned: mpsc::Sender<(Key, i64)>,
    engine_done: CancellationToken,
    shutdown: CancellationToken,
) {
    let mut assigned = HashMap::new();
    let mut delay = RETRY_FIRST;
    let mut failing = false;
    loop {
        let outcome = journal
            .drain(&pool, &outlets, &mut assigned, Some(&learned))
            .await;
        match outcome {
            Ok(()) => {
                if failing {
                    tracing::info!(
                        "exception journal written: the database takes transitions again"
                    );
                }
                failing = false;
                delay = RETRY_FIRST;
            }
            Err(err) => {
                if !failing {
                    tracing::error!(
                        "storing journalled exception transitions failed, will retry: {err}"
                    );
                }
                failing = true;
            }
        }
        let done = engine_done.is_cancelled();
        if done && (journal.is_empty() || shutdown.is_cancelled()) {
            break;
        }
        if failing {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled(), if !shutdown.is_cancelled() => {}
            }
            delay = (delay * 2).min(RETRY_MAX);
        } else {
            tokio::select! {
                () = journal.wake.notified() => {}
                () = engine_done.cancelled(), if !done => {}
            }
        }
    }
    // What waits in memory goes to disk for the next start, if it can.
    let left: Vec<Vec<ExceptionEvent>> = journal.overflow().drain(..).collect();
    for events in left {
        if !journal.append(&events) {
            Metrics::add(&journal.metrics.exception_transitions_lost, events.len());
            tracing::error!(
                transitions = events.len(),
                "exception transitions lost at shutdown: neither the database nor the journal took them"
            );
        }
    }
    if !journal.is_empty() {
        tracing::warn!(
            "exception transitions not yet stored stay in the journal; the next start writes them"
        );
    }
}
