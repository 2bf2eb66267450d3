//! The store queue: decoded messages on their way from the ingest path to
//! the store writer.
//!
//! It is a cache of the spool's tail, bounded in readings rather than
//! messages, so its memory does not depend on how many readings gateways
//! pack into one message. A message that finds no room stays in the spool
//! alone (it was appended before it was offered here), and the writer reads
//! it back in order; nothing is lost by overflow, which is only counted.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::metrics::Metrics;
use crate::reading::ReadingBatch;

/// A batch on its way to the writer, with its place in the spool.
#[derive(Debug)]
pub struct Spooled {
    /// Logical `(start, end)` in the spool; `None` when the spool could not
    /// be written (the disk is full), so the queue is its only copy.
    pub offsets: Option<(u64, u64)>,
    pub batch: Arc<ReadingBatch>,
    /// The batch's share of the queue's bound, given back once the writer
    /// is done with it.
    pub room: OwnedSemaphorePermit,
    /// Told once the batch is stored, for a batch the spool could not take
    /// whose source waits to acknowledge it (see [`super::Receipt`]).
    pub stored: Option<oneshot::Sender<()>>,
}

/// The ingest side of the queue. It never waits.
pub struct StoreQueue {
    sender: mpsc::Sender<Spooled>,
    room: Arc<Semaphore>,
    capacity_readings: u32,
    metrics: Arc<Metrics>,
}

/// The writer's side of the queue.
pub struct StoreQueueReceiver {
    receiver: mpsc::Receiver<Spooled>,
    metrics: Arc<Metrics>,
}

impl StoreQueue {
    /// A queue holding at most `capacity_readings` readings.
    pub fn new(capacity_readings: usize, metrics: Arc<Metrics>) -> (Self, StoreQueueReceiver) {
        let capacity_readings = u32::try_from(capacity_readings).unwrap_or(u32::MAX).max(1);
        // Every message carries at least one reading, so the channel never
        // fills before the readings bound does.
        let (sender, receiver) = mpsc::channel(capacity_readings as usize);
        let queue = Self {
            sender,
            room: Arc::new(Semaphore::new(capacity_readings as usize)),
            capacity_readings,
            metrics: metrics.clone(),
        };
        (queue, StoreQueueReceiver { receiver, metrics })
    }

    /// Hands the batch to the writer if the bound has room for its
    /// readings; false (and counted as overflow) when it must wait in the
    /// spool alone. A batch larger than the whole bound takes all of it: it
    /// then waits only while the writer is busy, and the writer reads the
    /// spool before it idles. Were it refused for good, it would sit in the
    /// spool until the next message arrived.
    pub fn try_push(
        &self,
        offsets: Option<(u64, u64)>,
        batch: &Arc<ReadingBatch>,
        stored: Option<oneshot::Sender<()>>,
    ) -> bool {
        let readings = u32::try_from(batch.readings.len())
            .unwrap_or(u32::MAX)
            .min(self.capacity_readings);
        // Counted before the send, so the writer's decrement can never run
        // first and show a negative depth.
        self.metrics.store_queue_depth.fetch_add(1, Relaxed);
        let pushed = self
            .room
            .clone()
            .try_acquire_many_owned(readings)
            .ok()
            .is_some_and(|room| {
                self.sender
                    .try_send(Spooled {
                        offsets,
                        batch: batch.clone(),
                        room,
                        stored,
                    })
                    .is_ok()
            });
        if !pushed {
            self.metrics.store_queue_depth.fetch_sub(1, Relaxed);
            self.metrics.store_queue_overflow.fetch_add(1, Relaxed);
        }
        pushed
    }
}

impl StoreQueueReceiver {
    /// Waits for at least one message, then takes up to `limit` of what is
    /// there; 0 once the ingest side is gone and the queue is empty.
    pub async fn recv_many(&mut self, into: &mut Vec<Spooled>, limit: usize) -> usize {
        let taken = self.receiver.recv_many(into, limit).await;
        self.metrics
            .store_queue_depth
            .fetch_sub(taken as i64, Relaxed);
        taken
    }

    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }
}
