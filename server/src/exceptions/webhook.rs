//! The webhooks: a JSON POST of every exception transition to each
//! configured receiver, or, for a chat receiver (Slack, Mattermost,
//! Microsoft Teams incoming webhooks all take `{"text": ...}`), one line
//! for each announced transition only: a chat channel is for people, who
//! need what must be acted on, not every clear.
//!
//! The engine only queues (bounded per receiver; never waits). Each
//! receiver has its own sender, so a dead receiver costs the others
//! nothing, and within one sender nothing waits behind a failing event:
//!
//! - events of one exception are delivered in order (a clear never
//!   overtakes its raise), but events of different exceptions are
//!   independent: each exception's oldest event is attempted as soon as it
//!   is due, several at once;
//! - a failed attempt moves to a retry queue with exponential backoff, and
//!   retries may use only a few of the connections, so a new transition
//!   (the most severe first) is tried at once even while a receiver that
//!   never answers holds every retry for its whole timeout;
//! - `trackside_webhook_oldest_undelivered_seconds` shows how far behind
//!   delivery is.
//!
//! At shutdown a sender keeps going for a short grace period, then counts
//! what is left as dropped: the transitions themselves are stored (or in
//! the journal); only these notifications are lost.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use trackside_wire::{ExceptionEvent, Severity};

use crate::metrics::Metrics;

/// One attempt's bound: a receiver that accepts and never answers holds a
/// connection this long.
const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Attempts in flight per receiver, and how many of them retries may use:
/// the rest are kept for first attempts.
const IN_FLIGHT: usize = 8;
const RETRY_SLOTS: usize = 2;
/// How long senders keep delivering once shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// What a receiver is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Every transition as `ExceptionEvent` JSON.
    Json,
    /// Announced transitions only, as `{"text": "..."}`.
    Chat,
}

/// The engine's side: one bounded queue per receiver.
pub struct Notifier {
    queues: Vec<(Format, mpsc::Sender<ExceptionEvent>)>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    pub fn notify(&self, event: &ExceptionEvent) {
        for (format, queue) in &self.queues {
            if *format == Format::Chat && !event.announced {
                continue;
            }
            match queue.try_send(event.clone()) {
                Ok(()) => {
                    self.metrics.webhook_pending.fetch_add(1, Relaxed);
                }
                Err(_) => {
                    self.metrics.webhook_dropped.fetch_add(1, Relaxed);
                    tracing::warn!("webhook queue full: a notification was dropped");
                }
            }
        }
    }
}

/// Starts one sender per URL. Each ends once the [`Notifier`] is dropped
/// and its queue is delivered, or `SHUTDOWN_GRACE` after `shutdown`.
pub fn start(
    urls: &[(String, Format)],
    queue: usize,
    attempts: u32,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<(Notifier, Vec<JoinHandle<()>>)> {
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .context("building the webhook's HTTP client")?;
    let _ = metrics
        .webhook_oldest_ms
        .set(urls.iter().map(|_| AtomicI64::new(0)).collect());
    let mut queues = Vec::with_capacity(urls.len());
    let mut tasks = Vec::with_capacity(urls.len());
    for (index, (url, format)) in urls.iter().enumerate() {
        let (tx, rx) = mpsc::channel(queue);
        queues.push((*format, tx));
        let sender = Sender {
            client: client.clone(),
            url: url.clone(),
            format: *format,
            shown: shown(url),
            index,
            capacity: queue,
            attempts,
            metrics: metrics.clone(),
            chains: HashMap::new(),
            ready: BinaryHeap::new(),
            retries: BTreeSet::new(),
            in_flight: JoinSet::new(),
            retrying: 0,
            pending: 0,
            seq: 0,
        };
        tasks.push(tokio::spawn(sender.run(rx, shutdown.clone())));
    }
    Ok((Notifier { queues, metrics }, tasks))
}

/// One line a person reads in a chat channel: how urgent, where, what,
/// and what happened (times in UTC; the app shows the yard's zone).
pub fn chat_text(event: &ExceptionEvent) -> String {
    use trackside_wire::TransitionKind;
    let e = &event.exception;
    let place = e.circuit.as_deref().unwrap_or(&e.subject);
    let at = chrono::DateTime::from_timestamp_millis(event.transition.at)
        .map_or_else(String::new, |t| t.format("%H:%M:%S UTC").to_string());
    let what = match event.transition.kind {
        TransitionKind::Escalated => {
            format!("ESCALATED (level {}, not acknowledged): ", e.escalation)
        }
        TransitionKind::Released => "maintenance over, still active: ".to_owned(),
        TransitionKind::Unshelved => "unshelved, still unacknowledged: ".to_owned(),
        _ => String::new(),
    };
    format!(
        "[{}] {place} {}: {what}{} ({}, #{}, {at})",
        e.priority.label().to_uppercase(),
        e.kind.label(),
        e.message,
        e.severity.as_str(),
        e.id
    )
}

/// The URL as logs may show it: no credentials, no query (either may hold
/// a token).
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => format!(
            "{}://{}{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default(),
            url.path()
        ),
        Err(_) => "(unparsable webhook URL)".into(),
    }
}

struct Pending {
    event: ExceptionEvent,
    queued: i64,
    /// Attempts made so far.
    attempts: u32,
    seq: u64,
}

/// An exception whose oldest event may be attempted now. The heap's
/// greatest goes first: a first attempt before a retry, then the most
/// severe, then the oldest.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Ready {
    first: bool,
    severity: Severity,
    seq: Reverse<u64>,
    exception: i64,
}

struct Sender {
    client: reqwest::Client,
    url: String,
    format: Format,
    shown: String,
    index: usize,
    capacity: usize,
    attempts: u32,
    metrics: Arc<Metrics>,
    /// Each exception's undelivered events, oldest first; only the first is
    /// ever in flight.
    chains: HashMap<i64, VecDeque<Pending>>,
    ready: BinaryHeap<Ready>,
    /// (due, seq, exception): chains whose first event waits to be retried.
    retries: BTreeSet<(Instant, u64, i64)>,
    in_flight: JoinSet<(i64, Result<(), String>)>,
    /// Retries among `in_flight`.
    retrying: usize,
    pending: usize,
    seq: u64,
}

impl Sender {
    async fn run(mut self, mut queue: mpsc::Receiver<ExceptionEvent>, shutdown: CancellationToken) {
        tracing::info!(receiver = %self.shown, "webhook sender started");
        let mut open = true;
        let mut deadline: Option<Instant> = None;
        loop {
            self.dispatch();
            self.publish_oldest();
            if !open && self.pending == 0 {
                break;
            }
            let next_retry = self.retries.first().map(|(due, _, _)| *due);
            tokio::select! {
                event = queue.recv(), if open => match event {
                    Some(event) => self.enqueue(event),
                    None => open = false,
                },
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    if let Ok((exception, outcome)) = done {
                        self.finished(exception, outcome);
                    }
                }
                () = sleep_until(next_retry), if next_retry.is_some() => self.due_retries(),
                () = shutdown.cancelled(), if deadline.is_none() => {
                    deadline = Some(Instant::now() + SHUTDOWN_GRACE);
                }
                () = sleep_until(deadline), if deadline.is_some() => break,
            }
        }
        if self.pending > 0 {
            tracing::warn!(
                receiver = %self.shown,
                notifications = self.pending,
                "shutting down with webhook notifications undelivered (the transitions are stored)"
            );
            Metrics::add(&self.metrics.webhook_dropped, self.pending);
            self.metrics
                .webhook_pending
                .fetch_sub(self.pending as i64, Relaxed);
        }
        self.in_flight.abort_all();
        self.pending = 0;
        self.chains.clear();
        self.publish_oldest();
    }

    fn enqueue(&mut self, event: ExceptionEvent) {
        if self.pending >= self.capacity {
            // Full: the notification that has waited longest in retries
            // goes, so a new one is never refused behind a dead receiver.
            let Some(&oldest) = self.retries.first() else {
                self.metrics.webhook_dropped.fetch_add(1, Relaxed);
                self.metrics.webhook_pending.fetch_sub(1, Relaxed);
                tracing::warn!(receiver = %self.shown, "webhook queue full: a notification was dropped");
                return;
            };
            self.retries.remove(&oldest);
            tracing::warn!(
                receiver = %self.shown,
                exception = oldest.2,
                "webhook queue full: dropped the notification retried longest"
            );
            self.give_up_front(oldest.2);
        }
        self.seq += 1;
        let exception = event.exception.id;
        let severity = event.exception.severity;
        let chain = self.chains.entry(exception).or_default();
        chain.push_back(Pending {
            event,
            queued: chrono::Utc::now().timestamp_millis(),
            attempts: 0,
            seq: self.seq,
        });
        self.pending += 1;
        if chain.len() == 1 {
            self.ready.push(Ready {
                first: true,
                severity,
                seq: Reverse(self.seq),
                exception,
            });
        }
    }

    /// Starts attempts while there is room: first attempts up to
    /// `IN_FLIGHT`, retries up to `RETRY_SLOTS` of them.
    fn dispatch(&mut self) {
        while self.in_flight.len() < IN_FLIGHT {
            let Some(top) = self.ready.peek() else {
                return;
            };
            if !top.first && self.retrying >= RETRY_SLOTS {
                return;
            }
            let Some(Ready {
                exception, first, ..
            }) = self.ready.pop()
            else {
                return;
            };
            let Some(front) = self.chains.get_mut(&exception).and_then(|c| c.front_mut()) else {
                continue;
            };
            front.attempts += 1;
            if !first {
                self.retrying += 1;
            }
            let request = match self.format {
                Format::Json => self.client.post(&self.url).json(&front.event),
                Format::Chat => self
                    .client
                    .post(&self.url)
                    .json(&serde_json::json!({ "text": chat_text(&front.event) })),
            };
            self.in_flight.spawn(async move {
                let outcome = match request.send().await {
                    Ok(response) if response.status().is_success() => Ok(()),
                    Ok(response) => Err(format!("HTTP {}", response.status())),
                    Err(err) if err.is_timeout() => {
                        Err(format!("no answer within {} s", TIMEOUT.as_secs()))
                    }
                    Err(err) => Err(without_url(&err)),
                };
                (exception, outcome)
            });
        }
    }

    fn finished(&mut self, exception: i64, outcome: Result<(), String>) {
        let Some(front) = self.chains.get(&exception).and_then(|c| c.front()) else {
            return;
        };
        if front.attempts > 1 {
            self.retrying = self.retrying.saturating_sub(1);
        }
        match outcome {
            Ok(()) => {
                self.metrics.webhook_sent.fetch_add(1, Relaxed);
                self.pop_front(exception);
            }
            Err(why) => {
                self.metrics.webhook_failures.fetch_add(1, Relaxed);
                let attempts = front.attempts;
                if attempts >= self.attempts {
                    tracing::error!(
                        receiver = %self.shown,
                        exception,
                        "webhook failed {attempts} times, giving up on this notification: {why}"
                    );
                    self.give_up_front(exception);
                } else {
                    let delay = backoff(attempts);
                    tracing::warn!(receiver = %self.shown, exception, attempt = attempts, retry_in = ?delay, "webhook failed: {why}");
                    self.seq += 1;
                    self.retries
                        .insert((Instant::now() + delay, self.seq, exception));
                }
            }
        }
    }

    fn due_retries(&mut self) {
        let now = Instant::now();
        while let Some(&(due, _, exception)) = self.retries.first() {
            if due > now {
                break;
            }
            self.retries.pop_first();
            if let Some(front) = self.chains.get(&exception).and_then(|c| c.front()) {
                self.ready.push(Ready {
                    first: false,
                    severity: front.event.exception.severity,
                    seq: Reverse(front.seq),
                    exception,
                });
            }
        }
    }

    fn give_up_front(&mut self, exception: i64) {
        self.metrics.webhook_dropped.fetch_add(1, Relaxed);
        self.pop_front(exception);
    }

    /// The exception's oldest event is done with: the next one, if any,
    /// is ready at once.
    fn pop_front(&mut self, exception: i64) {
        let Some(chain) = self.chains.get_mut(&exception) else {
            return;
        };
        chain.pop_front();
        self.pending -= 1;
        self.metrics.webhook_pending.fetch_sub(1, Relaxed);
        match chain.front() {
            Some(next) => self.ready.push(Ready {
                first: next.attempts == 0,
                severity: next.event.exception.severity,
                seq: Reverse(next.seq),
                exception,
            }),
            None => {
                self.chains.remove(&exception);
            }
        }
    }

    fn publish_oldest(&self) {
        let oldest = self
            .chains
            .values()
            .filter_map(|c| c.front().map(|p| p.queued))
            .min()
            .unwrap_or(0);
        if let Some(slot) = self
            .metrics
            .webhook_oldest_ms
            .get()
            .and_then(|slots| slots.get(self.index))
        {
            slot.store(oldest, Relaxed);
        }
    }
}

fn backoff(attempts: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(BACKOFF_MAX)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A request error without the URL, which may hold a token.
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "(webhook)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_show_no_credentials_or_query() {
        assert_eq!(
            shown("http://user:secret@alerts.local:9000/hook?token=abc"),
            "http://alerts.local:9000/hook"
        );
    }

    #[test]
    fn backoff_doubles_to_its_ceiling() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(20), BACKOFF_MAX);
    }

    #[test]
    fn first_attempts_go_before_retries_and_the_most_severe_first() {
        let mut heap = BinaryHeap::new();
        let ready = |first, severity, seq| Ready {
            first,
            severity,
            seq: Reverse(seq),
            exception: seq as i64,
        };
        heap.push(ready(false, Severity::Critical, 1));
        heap.push(ready(true, Severity::Warning, 2));
        heap.push(ready(true, Severity::Critical, 4));
        heap.push(ready(true, Severity::Critical, 3));
        let order: Vec<i64> = std::iter::from_fn(|| heap.pop().map(|r| r.exception)).collect();
        assert_eq!(order, [3, 4, 2, 1]);
    }
}
