//! The webhook: a JSON POST of every exception transition to one URL.
//!
//! The engine only queues (bounded; a full queue is counted and logged, the
//! engine never waits). One sender delivers in order, retrying each
//! notification with exponential backoff; a receiver that stays down costs
//! the notifications that do not fit the queue, never the engine's pace.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use trackside_wire::ExceptionEvent;

use crate::metrics::Metrics;

const TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub struct Notifier {
    tx: mpsc::Sender<ExceptionEvent>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    pub fn notify(&self, event: ExceptionEvent) {
        if self.tx.try_send(event).is_err() {
            self.metrics.webhook_dropped.fetch_add(1, Relaxed);
            tracing::warn!("webhook queue full: a notification was dropped");
        }
    }
}

/// Starts the sender. It ends once the [`Notifier`] is dropped and the
/// queue is sent.
pub fn start(
    url: String,
    queue: usize,
    attempts: u32,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Notifier, JoinHandle<()>)> {
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .context("building the webhook's HTTP client")?;
    let (tx, rx) = mpsc::channel(queue);
    let task = tokio::spawn(run(client, url, rx, attempts, metrics.clone()));
    Ok((Notifier { tx, metrics }, task))
}

async fn run(
    client: reqwest::Client,
    url: String,
    mut queue: mpsc::Receiver<ExceptionEvent>,
    attempts: u32,
    metrics: Arc<Metrics>,
) {
    while let Some(event) = queue.recv().await {
        let mut delay = BACKOFF_FIRST;
        let mut attempt = 1;
        loop {
            let outcome = match client.post(&url).json(&event).send().await {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("HTTP {}", response.status())),
                Err(err) => Err(err.to_string()),
            };
            match outcome {
                Ok(()) => {
                    metrics.webhook_sent.fetch_add(1, Relaxed);
                    break;
                }
                Err(why) => {
                    metrics.webhook_failures.fetch_add(1, Relaxed);
                    if attempt >= attempts {
                        metrics.webhook_dropped.fetch_add(1, Relaxed);
                        tracing::error!(
                            %url,
                            exception = event.exception.id,
                            "webhook failed {attempt} times, giving up on this notification: {why}"
                        );
                        break;
                    }
                    tracing::warn!(%url, attempt, retry_in = ?delay, "webhook failed: {why}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(BACKOFF_MAX);
                    attempt += 1;
                }
            }
        }
    }
}
