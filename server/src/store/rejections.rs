//! Rejected payloads, kept for inspection by the people who integrate
//! gateways.
//!
//! Their queue is small and separate from the readings': a flood of garbage
//! is counted, and what does not fit is not kept, but it never delays good
//! readings.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::writer::{RETRY_FIRST, RETRY_MAX};
use crate::metrics::Metrics;
use crate::reading::Rejection;

/// Rejections waiting for their writer.
pub const REJECTION_QUEUE: usize = 1024;
/// Rejections written by one statement.
const REJECTIONS_PER_INSERT: usize = 256;

/// The ingest side of the rejection queue. It never waits.
#[derive(Clone)]
pub struct RejectionQueue {
    sender: mpsc::Sender<Rejection>,
    metrics: Arc<Metrics>,
}

impl RejectionQueue {
    pub fn new(metrics: Arc<Metrics>) -> (Self, mpsc::Receiver<Rejection>) {
        let (sender, receiver) = mpsc::channel(REJECTION_QUEUE);
        (Self { sender, metrics }, receiver)
    }

    /// Queues the rejection for keeping; a full queue counts it as not kept.
    pub fn keep(&self, rejection: Rejection) {
        if self.sender.try_send(rejection).is_err() {
            self.metrics.rejected_not_kept.fetch_add(1, Relaxed);
        }
    }
}

/// Keeps rejected payloads until the queue closes. During shutdown a
/// failed write is not retried: those rejections are counted as not kept
/// (they are inspection material, not readings).
pub async fn run_writer(
    pool: PgPool,
    metrics: Arc<Metrics>,
    mut queue: mpsc::Receiver<Rejection>,
    shutdown: CancellationToken,
) {
    let mut pending = Vec::new();
    while queue.recv_many(&mut pending, REJECTIONS_PER_INSERT).await > 0 {
        let mut delay = RETRY_FIRST;
        loop {
            match insert_rejections(&pool, &pending).await {
                Ok(()) => break,
                Err(err) => {
                    metrics.store_errors.fetch_add(1, Relaxed);
                    if shutdown.is_cancelled() {
                        Metrics::add(&metrics.rejected_not_kept, pending.len() + queue.len());
                        tracing::warn!(
                            rejections = pending.len() + queue.len(),
                            "shutting down with the database unreachable: rejected messages not kept"
                        );
                        return;
                    }
                    tracing::error!(retry_in = ?delay, "storing rejected messages failed: {err:#}");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => {}
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
        pending.clear();
    }
}

async fn insert_rejections(pool: &PgPool, rejections: &[Rejection]) -> sqlx::Result<()> {
    let topics: Vec<&str> = rejections.iter().map(|r| r.topic.as_str()).collect();
    let gateways: Vec<Option<&str>> = rejections.iter().map(|r| r.gateway.as_deref()).collect();
    let payloads: Vec<&[u8]> = rejections.iter().map(|r| r.payload.as_slice()).collect();
    let reasons: Vec<&str> = rejections.iter().map(|r| r.reason.as_str()).collect();
    sqlx::query(
        "INSERT INTO rejected_messages (topic, gateway_id, payload, reason)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::text[])",
    )
    .bind(topics)
    .bind(gateways)
    .bind(payloads)
    .bind(reasons)
    .execute(pool)
    .await?;
    Ok(())
}
