//! Rejected payloads, kept for inspection by the people who integrate
//! gateways.
//!
//! Their queue is small and separate from the readings': a flood of garbage
//! is counted, and what does not fit is not kept, but it never delays good
//! readings. What one gateway may have kept is bounded too (a byte budget
//! per gateway, [`BUDGET_BYTES`] refilled at [`REFILL_BYTES_PER_S`]), and
//! kept rejections are deleted after `ingest.rejected_retention_days`: a
//! gateway sending garbage without pause fills neither the disk nor the
//! table. Past its budget a rejection is counted, not kept.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// What one gateway's kept rejections may cost at once, in bytes.
pub const BUDGET_BYTES: f64 = 1024.0 * 1024.0;
/// The budget's refill: about 170 MB a day at most per gateway.
pub const REFILL_BYTES_PER_S: f64 = 2048.0;
/// What a rejection costs at least, however short its payload (so about
/// 8 a second are kept at most, sustained, per gateway).
const MIN_COST: usize = 256;
/// Gateways whose budgets are tracked; past this, idle ones are forgotten
/// (a forgotten budget is full again, which is what idleness earns).
const BUDGETS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Budget {
    bytes: f64,
    at: Instant,
}

/// The ingest side of the rejection queue. It never waits.
#[derive(Clone)]
pub struct RejectionQueue {
    sender: mpsc::Sender<Rejection>,
    metrics: Arc<Metrics>,
    budgets: Arc<Mutex<HashMap<String, Budget>>>,
}

impl RejectionQueue {
    pub fn new(metrics: Arc<Metrics>) -> (Self, mpsc::Receiver<Rejection>) {
        let (sender, receiver) = mpsc::channel(REJECTION_QUEUE);
        let budgets = Arc::default();
        (
            Self {
                sender,
                metrics,
                budgets,
            },
            receiver,
        )
    }

    /// Queues the rejection for keeping; past its gateway's budget, or
    /// with the queue full, it is counted as not kept.
    pub fn keep(&self, rejection: Rejection) {
        if !self.within_budget(&rejection, Instant::now()) {
            self.metrics.rejected_over_budget.fetch_add(1, Relaxed);
            return;
        }
        if self.sender.try_send(rejection).is_err() {
            self.metrics.rejected_not_kept.fetch_add(1, Relaxed);
        }
    }

    fn within_budget(&self, rejection: &Rejection, now: Instant) -> bool {
        let cost = (rejection.payload.len() + rejection.reason.len()).max(MIN_COST) as f64;
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let key = rejection.gateway.as_deref().unwrap_or_default();
        if !budgets.contains_key(key) && budgets.len() >= BUDGETS {
            budgets.retain(|_, b| refilled(*b, now) < BUDGET_BYTES);
            if budgets.len() >= BUDGETS {
                return false;
            }
        }
        let budget = budgets.entry(key.to_owned()).or_insert(Budget {
            bytes: BUDGET_BYTES,
            at: now,
        });
        let bytes = refilled(*budget, now);
        if bytes < cost {
            return false;
        }
        *budget = Budget {
            bytes: bytes - cost,
            at: now,
        };
        true
    }
}

fn refilled(budget: Budget, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(budget.at).as_secs_f64();
    (budget.bytes + elapsed * REFILL_BYTES_PER_S).min(BUDGET_BYTES)
}

/// How often rejections past their retention are deleted.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Deletes kept rejections older than `days` (0 keeps them), once an hour
/// until `shutdown`.
pub async fn run_retention(pool: PgPool, days: u32, shutdown: CancellationToken) {
    if days == 0 {
        return;
    }
    let mut every = tokio::time::interval(RETENTION_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let deleted = sqlx::query(
            "DELETE FROM rejected_messages WHERE received_at < now() - make_interval(days => $1)",
        )
        .bind(days as i32)
        .execute(&pool)
        .await;
        match deleted {
            Ok(done) if done.rows_affected() > 0 => {
                tracing::info!(
                    deleted = done.rows_affected(),
                    days,
                    "old rejected messages deleted"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!("cannot delete old rejected messages: {err}"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::RejectionKind;

    fn rejection(gateway: &str, bytes: usize) -> Rejection {
        Rejection {
            topic: "t".into(),
            gateway: Some(gateway.into()),
            payload: vec![b'x'; bytes],
            reason: String::new(),
            kind: RejectionKind::Payload,
        }
    }

    #[test]
    fn each_gateway_keeps_within_its_byte_budget() {
        let (queue, _rx) = RejectionQueue::new(Arc::default());
        let start = Instant::now();
        let big = 256 * 1024;
        for _ in 0..4 {
            assert!(queue.within_budget(&rejection("gw1", big), start));
        }
        assert!(!queue.within_budget(&rejection("gw1", big), start));
        // Another gateway has its own budget.
        assert!(queue.within_budget(&rejection("gw2", big), start));
        // The budget refills at REFILL_BYTES_PER_S.
        let later = start + Duration::from_secs(10);
        assert!(queue.within_budget(&rejection("gw1", 20 * 1024), later));
        assert!(!queue.within_budget(&rejection("gw1", 1024), later));
    }
}
