//! Notifications: webhooks, chat lines and e-mail, through one durable
//! outbox.
//!
//! Why an outbox: an alarm that reaches nobody because the mail server
//! was restarting, or because Trackside itself was, is the failure this
//! part exists to prevent. Every notification is a row of
//! `notification_outbox` until it is sent or given up, so a restart (or a
//! takeover by another instance) resumes where the last one stopped.
//!
//! Why the engine never waits for it: the engine only queues (bounded per
//! receiver, [`Notifier::notify`] never waits, overflow counted). Each
//! receiver has its own sender task, so a dead receiver costs the others
//! nothing, and within one sender nothing waits behind a failing
//! notification:
//!
//! - notifications of one exception to one target are delivered in order
//!   (a clear never overtakes its raise); others are independent, several
//!   in flight at once;
//! - a failed attempt is retried with exponential backoff, and retries may
//!   use only a few of the connections, so a new notification (the most
//!   severe first) goes at once even while a dead receiver holds every
//!   retry for its whole timeout;
//! - the sender writes rows and outcomes between deliveries, under a short
//!   timeout: while the database is away it delivers from memory and
//!   writes what it owes once it is back (a crash in between loses those
//!   rows; ARCHITECTURE.md, "what can be lost").
//!
//! Bounds: per receiver `exceptions.webhook_queue` in memory (the one
//! retried longest goes first); `exceptions.outbox_rows` pending rows
//! over all receivers (beyond, new ones are sent from memory only,
//! counted); rows older than `exceptions.outbox_max_age_s` are given up
//! (counted); finished rows are deleted after a week.
//!
//! Scale-out: senders run on every instance, but only the instance holding
//! the engine role decides transitions, and a sender loads a receiver's
//! pending rows only while this instance holds that role (and drops them
//! from memory when it is lost), so one instance sends. A takeover may
//! send again what the old holder sent but had not yet marked: delivery
//! is at least once.

pub mod email;
pub mod outbox;
pub mod routes;
pub mod summary;
pub mod webhook;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use sha2::Digest as _;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use trackside_wire::{ExceptionEvent, Severity};

use crate::metrics::{Metrics, NotifyChannel, NotifyOutcome};
use outbox::Outcome;
pub use summary::{FloodSummary, SummaryKind};
pub use webhook::Format;

/// What a sender is handed: an exception's transition, or a flood's
/// summary.
#[derive(Debug, Clone)]
pub enum Notice {
    Exception(Box<ExceptionEvent>),
    Flood(Arc<FloodSummary>),
}

impl Notice {
    /// The chain it is delivered in order within (per target).
    fn chain(&self) -> i64 {
        match self {
            Notice::Exception(event) => event.exception.id,
            Notice::Flood(summary) => summary.chain(),
        }
    }

    fn severity(&self) -> Severity {
        match self {
            Notice::Exception(event) => event.exception.severity,
            Notice::Flood(summary) => summary.severity(),
        }
    }
}

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
/// The outbox's statements' bound, and the pause after one failed.
const DB_TIMEOUT: Duration = Duration::from_secs(2);
const DB_RETRY: Duration = Duration::from_secs(5);
/// How often old rows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often the e-mail sender reads the users' routes again.
const ROUTES_EVERY: Duration = Duration::from_secs(5);
/// Finished rows are kept this long (what was sent to whom, for a week).
const KEEP_FINISHED_S: u64 = 7 * 86_400;

/// Where one sender delivers.
pub enum Receiver {
    Webhook { url: String, format: Format },
    Email(Arc<email::Mailer>),
}

impl Receiver {
    fn channel(&self) -> NotifyChannel {
        match self {
            Receiver::Webhook {
                format: Format::Json,
                ..
            } => NotifyChannel::Webhook,
            Receiver::Webhook {
                format: Format::Chat,
                ..
            } => NotifyChannel::Chat,
            Receiver::Email(_) => NotifyChannel::Email,
        }
    }

    /// The key of its rows: never the URL itself, which may hold a token.
    fn key(&self) -> String {
        match self {
            Receiver::Webhook { url, .. } => {
                let digest = sha2::Sha256::digest(url.as_bytes());
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("{}:{hex}", self.channel().as_str())
            }
            Receiver::Email(_) => "email".into(),
        }
    }

    /// What a notice becomes for this receiver: (target, body) for each
    /// notification, none for one it does not take.
    fn render(&self, notice: &Notice) -> Vec<(String, serde_json::Value)> {
        let event = match notice {
            Notice::Exception(event) => event,
            Notice::Flood(summary) => return self.render_summary(summary),
        };
        match self {
            Receiver::Webhook {
                url,
                format: Format::Json,
            } => match serde_json::to_value(event) {
                Ok(body) => vec![(webhook::shown(url), body)],
                Err(_) => Vec::new(),
            },
            Receiver::Webhook {
                url,
                format: Format::Chat,
            } if event.announced => vec![(
                webhook::shown(url),
                serde_json::json!({ "text": webhook::chat_text(event) }),
            )],
            Receiver::Webhook { .. } => Vec::new(),
            Receiver::Email(mailer) if event.announced => mailer
                .recipients(event)
                .into_iter()
                .map(|address| (address, mailer.render(event)))
                .collect(),
            Receiver::Email(_) => Vec::new(),
        }
    }
}

impl Receiver {
    /// A flood's summary for this receiver: the same words everywhere.
    fn render_summary(&self, summary: &FloodSummary) -> Vec<(String, serde_json::Value)> {
        match self {
            Receiver::Webhook {
                url,
                format: Format::Json,
            } => vec![(
                webhook::shown(url),
                serde_json::json!({ "flood_summary": summary }),
            )],
            Receiver::Webhook {
                url,
                format: Format::Chat,
            } => vec![(
                webhook::shown(url),
                serde_json::json!({ "text": summary.chat_text() }),
            )],
            Receiver::Email(mailer) => mailer
                .summary_recipients(summary)
                .into_iter()
                .map(|address| (address, mailer.render_summary(summary)))
                .collect(),
        }
    }
}

/// The engine's side: one bounded queue per receiver.
pub struct Notifier {
    queues: Vec<(NotifyChannel, mpsc::Sender<Notice>)>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    pub fn notify(&self, event: &ExceptionEvent) {
        self.send(Notice::Exception(Box::new(event.clone())));
    }

    /// A flood's summary, to every receiver.
    pub fn notify_flood(&self, summary: FloodSummary) {
        self.send(Notice::Flood(Arc::new(summary)));
    }

    fn send(&self, notice: Notice) {
        for (channel, queue) in &self.queues {
            if queue.try_send(notice.clone()).is_err() {
                self.metrics.webhook_dropped.fetch_add(1, Relaxed);
                self.metrics
                    .count_notification(*channel, NotifyOutcome::Dropped, 1);
                tracing::warn!("notification queue full: a notification was dropped");
            }
        }
    }
}

/// The outbox's settings, from `[exceptions]`.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Notifications in memory per receiver.
    pub queue: usize,
    pub attempts: u32,
    pub outbox_rows: u64,
    pub outbox_max_age_s: u64,
}

/// Starts one sender per receiver. Each ends once the [`Notifier`] is
/// dropped and its queue is delivered, or `SHUTDOWN_GRACE` after
/// `shutdown` (what is left stays in the outbox for the next start).
pub fn start(
    receivers: Vec<Receiver>,
    bounds: Bounds,
    pool: PgPool,
    role: watch::Receiver<bool>,
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
        .set(receivers.iter().map(|_| AtomicI64::new(0)).collect());
    let mut queues = Vec::with_capacity(receivers.len());
    let mut tasks = Vec::with_capacity(receivers.len());
    for (index, receiver) in receivers.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel(bounds.queue);
        queues.push((receiver.channel(), tx));
        let shown = match &receiver {
            Receiver::Webhook { url, .. } => webhook::shown(url),
            Receiver::Email(mailer) => mailer.shown(),
        };
        let sender = Sender {
            client: client.clone(),
            key: receiver.key(),
            channel: receiver.channel(),
            receiver,
            shown,
            index,
            bounds,
            pool: pool.clone(),
            metrics: metrics.clone(),
            chains: HashMap::new(),
            ready: BinaryHeap::new(),
            retries: BTreeSet::new(),
            in_flight: JoinSet::new(),
            retrying: 0,
            pending: 0,
            seq: 0,
            outcomes: Vec::new(),
            db_after: None,
            next_prune: Instant::now(),
            next_routes: Instant::now(),
            loaded: false,
        };
        tasks.push(tokio::spawn(sender.run(rx, role.clone(), shutdown.clone())));
    }
    Ok((Notifier { queues, metrics }, tasks))
}

/// Which exception's notifications to which target: delivered in order.
type ChainKey = (i64, String);

struct Pending {
    target: String,
    body: serde_json::Value,
    severity: Severity,
    /// Unix ms it was queued, for the oldest-undelivered gauge.
    queued: i64,
    /// Attempts made so far.
    attempts: u32,
    seq: u64,
    /// Its outbox row, once written.
    row: Option<i64>,
    /// Never to be written: the outbox was full when it came.
    memory_only: bool,
}

/// A chain whose oldest notification may be attempted now. The heap's
/// greatest goes first: a first attempt before a retry, then the most
/// severe, then the oldest.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Ready {
    first: bool,
    severity: Severity,
    seq: Reverse<u64>,
    key: ChainKey,
}

struct Sender {
    client: reqwest::Client,
    receiver: Receiver,
    key: String,
    channel: NotifyChannel,
    shown: String,
    index: usize,
    bounds: Bounds,
    pool: PgPool,
    metrics: Arc<Metrics>,
    /// Each chain's undelivered notifications, oldest first; only the first
    /// is ever in flight.
    chains: HashMap<ChainKey, VecDeque<Pending>>,
    ready: BinaryHeap<Ready>,
    /// (due, seq, chain): chains whose first notification waits for a retry.
    retries: BTreeSet<(Instant, u64, ChainKey)>,
    in_flight: JoinSet<(ChainKey, Result<(), String>)>,
    /// Retries among `in_flight`.
    retrying: usize,
    pending: usize,
    seq: u64,
    /// Outcomes not yet written to their rows.
    outcomes: Vec<(i64, Outcome)>,
    /// The database failed: leave it alone until then.
    db_after: Option<Instant>,
    next_prune: Instant,
    /// When the users' e-mail routes are read again.
    next_routes: Instant,
    /// The receiver's pending rows are in memory (this instance holds the
    /// engine role and has loaded them).
    loaded: bool,
}

impl Sender {
    async fn run(
        mut self,
        mut queue: mpsc::Receiver<Notice>,
        mut role: watch::Receiver<bool>,
        shutdown: CancellationToken,
    ) {
        tracing::info!(receiver = %self.shown, channel = self.channel.as_str(), "notification sender started");
        let mut open = true;
        let mut role_open = true;
        let mut deadline: Option<Instant> = None;
        loop {
            let held = *role.borrow_and_update();
            // Rows set aside when memory was full are taken back once
            // there is room (and no outcome is unwritten, which a reload
            // could send again).
            if held
                && self.loaded
                && Instant::now() >= self.next_prune
                && self.outcomes.is_empty()
                && self.pending < self.bounds.queue / 2
            {
                self.loaded = false;
            }
            if held && !self.loaded && self.db_ready() {
                self.load().await;
            } else if !held && self.loaded {
                self.let_go();
            }
            self.write_back().await;
            self.dispatch();
            self.publish_oldest();
            if !open && self.pending == 0 && self.outcomes.is_empty() {
                break;
            }
            let next_retry = self.retries.first().map(|(due, _, _)| *due);
            // Wake for the database when something waits on it.
            let db_wake = if self.unsaved_count() > 0
                || !self.outcomes.is_empty()
                || (held && !self.loaded)
            {
                Some(
                    self.db_after
                        .unwrap_or_else(Instant::now)
                        .max(Instant::now() + Duration::from_millis(200)),
                )
            } else {
                None
            }
            .map(|at| at.min(self.next_prune))
            .or(Some(self.next_prune))
            .map(|at| match self.receiver {
                Receiver::Email(_) => at.min(self.next_routes),
                Receiver::Webhook { .. } => at,
            });
            tokio::select! {
                event = queue.recv(), if open => match event {
                    Some(event) => {
                        self.enqueue(&event);
                        // Take what else is queued, to write rows together.
                        while let Ok(event) = queue.try_recv() {
                            self.enqueue(&event);
                        }
                    }
                    None => open = false,
                },
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    if let Ok((key, outcome)) = done {
                        self.finished(key, outcome);
                    }
                }
                () = sleep_until(next_retry), if next_retry.is_some() => self.due_retries(),
                () = sleep_until(db_wake) => {}
                changed = role.changed(), if role_open => {
                    if changed.is_err() {
                        role_open = false;
                    }
                }
                () = shutdown.cancelled(), if deadline.is_none() => {
                    deadline = Some(Instant::now() + SHUTDOWN_GRACE);
                }
                () = sleep_until(deadline), if deadline.is_some() => break,
            }
        }
        self.write_back().await;
        let lost = self
            .chains
            .values()
            .flatten()
            .filter(|p| p.row.is_none())
            .count();
        if self.pending > 0 {
            tracing::warn!(
                receiver = %self.shown,
                notifications = self.pending,
                not_in_outbox = lost,
                "shutting down with notifications undelivered; those in the outbox go at the next start"
            );
            self.count(NotifyOutcome::Dropped, lost);
        }
        self.in_flight.abort_all();
        self.metrics
            .webhook_pending
            .fetch_sub(self.pending as i64, Relaxed);
        self.pending = 0;
        self.chains.clear();
        self.publish_oldest();
    }

    fn db_ready(&self) -> bool {
        self.db_after.is_none_or(|at| Instant::now() >= at)
    }

    fn db_failed(&mut self, what: &str, err: &dyn std::fmt::Display) {
        tracing::warn!(receiver = %self.shown, "notification outbox: {what} failed, delivering from memory: {err}");
        self.db_after = Some(Instant::now() + DB_RETRY);
    }

    fn count(&self, outcome: NotifyOutcome, n: usize) {
        self.metrics.count_notification(self.channel, outcome, n);
    }

    /// Notifications in memory whose row is not written (nor will be).
    fn unsaved_count(&self) -> usize {
        self.chains
            .values()
            .flatten()
            .filter(|p| p.row.is_none() && !p.memory_only)
            .count()
    }

    /// Takes the receiver's pending rows from the outbox (a restart or a
    /// takeover), giving up those past their age first.
    async fn load(&mut self) {
        let pool = self.pool.clone();
        let (max_age, limit, key) = (
            self.bounds.outbox_max_age_s,
            self.bounds.queue,
            self.key.clone(),
        );
        let loaded = tokio::time::timeout(DB_TIMEOUT * 5, async move {
            let expired = outbox::prune(&pool, max_age, KEEP_FINISHED_S).await?;
            let rows = outbox::load(&pool, &key, limit).await?;
            Ok::<_, sqlx::Error>((expired, rows))
        })
        .await;
        let (expired, rows) = match loaded {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(err)) => return self.db_failed("loading pending rows", &err),
            Err(_) => return self.db_failed("loading pending rows", &"timed out"),
        };
        self.metrics
            .notify_outbox_expired
            .fetch_add(expired, Relaxed);
        self.loaded = true;
        self.next_prune = Instant::now() + PRUNE_EVERY;
        let known: HashSet<i64> = self
            .chains
            .values()
            .flatten()
            .filter_map(|p| p.row)
            .collect();
        let mut taken = 0;
        for row in rows.into_iter().filter(|r| !known.contains(&r.id)) {
            let severity = serde_json::from_value(serde_json::Value::String(row.severity))
                .unwrap_or(Severity::Warning);
            let due = (row.next_attempt_at - Utc::now())
                .to_std()
                .ok()
                .map(|wait| Instant::now() + wait);
            let pending = Pending {
                target: row.target,
                body: row.body,
                severity,
                queued: row.created_at.timestamp_millis(),
                attempts: row.attempts.max(0) as u32,
                seq: 0,
                row: Some(row.id),
                memory_only: false,
            };
            self.push(row.exception, pending, due);
            taken += 1;
        }
        if taken > 0 {
            tracing::info!(receiver = %self.shown, notifications = taken, "resuming notifications from the outbox");
        }
    }

    /// The engine role went elsewhere: what is in the outbox is the new
    /// holder's to send.
    fn let_go(&mut self) {
        self.loaded = false;
        self.in_flight.abort_all();
        self.retrying = 0;
        self.ready.clear();
        self.retries.clear();
        let mut kept = 0;
        for chain in self.chains.values_mut() {
            chain.retain(|p| p.row.is_none());
            kept += chain.len();
        }
        self.chains.retain(|_, chain| !chain.is_empty());
        let gone = self.pending - kept;
        self.metrics.webhook_pending.fetch_sub(gone as i64, Relaxed);
        self.pending = kept;
        let keys: Vec<ChainKey> = self.chains.keys().cloned().collect();
        for key in keys {
            self.make_ready(key);
        }
        tracing::info!(receiver = %self.shown, "engine role lost: the outbox's notifications are the new holder's");
    }

    /// Writes new rows and outcomes, then prunes when due. Never waits
    /// longer than `DB_TIMEOUT` per statement group.
    async fn write_back(&mut self) {
        if !self.db_ready() {
            return;
        }
        if let Receiver::Email(mailer) = &self.receiver
            && Instant::now() >= self.next_routes
        {
            self.next_routes = Instant::now() + ROUTES_EVERY;
            match tokio::time::timeout(DB_TIMEOUT, routes::all_routes(&self.pool)).await {
                Ok(Ok(routes)) => mailer.set_user_routes(routes),
                Ok(Err(err)) => return self.db_failed("reading users' routes", &err),
                Err(_) => return self.db_failed("reading users' routes", &"timed out"),
            }
        }
        if self.unsaved_count() > 0 {
            self.save_rows().await;
        }
        if !self.outcomes.is_empty() && self.db_ready() {
            let outcomes = std::mem::take(&mut self.outcomes);
            match tokio::time::timeout(DB_TIMEOUT, outbox::record(&self.pool, &outcomes)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    self.outcomes = outcomes;
                    self.db_failed("recording outcomes", &err);
                }
                Err(_) => {
                    self.outcomes = outcomes;
                    self.db_failed("recording outcomes", &"timed out");
                }
            }
        }
        if self.loaded && Instant::now() >= self.next_prune && self.db_ready() {
            self.next_prune = Instant::now() + PRUNE_EVERY;
            let pruned = tokio::time::timeout(
                DB_TIMEOUT,
                outbox::prune(&self.pool, self.bounds.outbox_max_age_s, KEEP_FINISHED_S),
            )
            .await;
            match pruned {
                Ok(Ok(expired)) => {
                    self.metrics
                        .notify_outbox_expired
                        .fetch_add(expired, Relaxed);
                }
                Ok(Err(err)) => self.db_failed("pruning", &err),
                Err(_) => self.db_failed("pruning", &"timed out"),
            }
        }
    }

    async fn save_rows(&mut self) {
        let pending_rows =
            match tokio::time::timeout(DB_TIMEOUT, outbox::pending_count(&self.pool)).await {
                Ok(Ok(n)) => n.max(0) as u64,
                Ok(Err(err)) => return self.db_failed("counting rows", &err),
                Err(_) => return self.db_failed("counting rows", &"timed out"),
            };
        let room = self.bounds.outbox_rows.saturating_sub(pending_rows) as usize;
        let channel = self.channel.as_str();
        let mut keys = Vec::new();
        let mut overflow = 0;
        for (key, chain) in &mut self.chains {
            for (at, p) in chain.iter_mut().enumerate() {
                if p.row.is_some() || p.memory_only {
                    continue;
                }
                if keys.len() >= room {
                    p.memory_only = true;
                    overflow += 1;
                    continue;
                }
                keys.push((key.clone(), at));
            }
        }
        if overflow > 0 {
            crate::metrics::Metrics::add(&self.metrics.notify_outbox_overflow, overflow);
            tracing::warn!(receiver = %self.shown, notifications = overflow, "notification outbox full: sending from memory only");
        }
        if keys.is_empty() {
            return;
        }
        let rows: Vec<outbox::NewRow<'_>> = keys
            .iter()
            .filter_map(|(key, at)| {
                let p = self.chains.get(key)?.get(*at)?;
                Some(outbox::NewRow {
                    channel,
                    receiver: &self.key,
                    target: &p.target,
                    exception: key.0,
                    severity: p.severity.as_str(),
                    body: &p.body,
                })
            })
            .collect();
        let inserted = tokio::time::timeout(DB_TIMEOUT, outbox::insert(&self.pool, &rows)).await;
        drop(rows);
        let ids = match inserted {
            Ok(Ok(ids)) => ids,
            Ok(Err(err)) => return self.db_failed("writing rows", &err),
            Err(_) => return self.db_failed("writing rows", &"timed out"),
        };
        for ((key, at), id) in keys.into_iter().zip(ids) {
            if let Some(p) = self.chains.get_mut(&key).and_then(|c| c.get_mut(at)) {
                p.row = Some(id);
                // An attempt already made while the row was being written.
                if p.attempts > 0 {
                    self.outcomes.push((
                        id,
                        Outcome::Retry {
                            attempts: p.attempts,
                            next: Utc::now(),
                            error: "retrying".into(),
                        },
                    ));
                }
            }
        }
    }

    fn enqueue(&mut self, notice: &Notice) {
        for (target, body) in self.receiver.render(notice) {
            if self.pending >= self.bounds.queue {
                // Full: the notification that has waited longest in
                // retries goes (it stays in the outbox if written), so a
                // new one is never refused behind a dead receiver.
                let Some(oldest) = self.retries.first().cloned() else {
                    self.count(NotifyOutcome::Dropped, 1);
                    self.metrics.webhook_dropped.fetch_add(1, Relaxed);
                    tracing::warn!(receiver = %self.shown, "notification queue full: a notification was dropped");
                    continue;
                };
                self.retries.remove(&oldest);
                tracing::warn!(
                    receiver = %self.shown,
                    exception = oldest.2.0,
                    "notification queue full: set aside the notification retried longest"
                );
                let written = self
                    .chains
                    .get(&oldest.2)
                    .and_then(|c| c.front())
                    .is_some_and(|p| p.row.is_some());
                if !written {
                    self.count(NotifyOutcome::Dropped, 1);
                    self.metrics.webhook_dropped.fetch_add(1, Relaxed);
                }
                // A written one is still in the outbox: the next start
                // or takeover sends it.
                self.pop_front(&oldest.2);
            }
            let pending = Pending {
                target,
                body,
                severity: notice.severity(),
                queued: Utc::now().timestamp_millis(),
                attempts: 0,
                seq: 0,
                row: None,
                memory_only: false,
            };
            self.push(notice.chain(), pending, None);
        }
    }

    /// Adds a notification to its chain; `due` is a retry's time.
    fn push(&mut self, exception: i64, mut pending: Pending, due: Option<Instant>) {
        self.seq += 1;
        pending.seq = self.seq;
        let key = (exception, pending.target.clone());
        let chain = self.chains.entry(key.clone()).or_default();
        let first = chain.is_empty();
        let attempts = pending.attempts;
        chain.push_back(pending);
        self.pending += 1;
        self.metrics.webhook_pending.fetch_add(1, Relaxed);
        if first {
            match due {
                Some(due) if attempts > 0 => {
                    self.retries.insert((due, self.seq, key));
                }
                _ => self.make_ready(key),
            }
        }
    }

    fn make_ready(&mut self, key: ChainKey) {
        if let Some(front) = self.chains.get(&key).and_then(|c| c.front()) {
            self.ready.push(Ready {
                first: front.attempts == 0,
                severity: front.severity,
                seq: Reverse(front.seq),
                key,
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
            let Some(Ready { key, first, .. }) = self.ready.pop() else {
                return;
            };
            let Some(front) = self.chains.get_mut(&key).and_then(|c| c.front_mut()) else {
                continue;
            };
            front.attempts += 1;
            if !first {
                self.retrying += 1;
            }
            let (target, body) = (front.target.clone(), front.body.clone());
            match &self.receiver {
                Receiver::Webhook { url, .. } => {
                    let request = self.client.post(url).json(&body);
                    self.in_flight.spawn(async move {
                        let outcome = match request.send().await {
                            Ok(response) if response.status().is_success() => Ok(()),
                            Ok(response) => Err(format!("HTTP {}", response.status())),
                            Err(err) if err.is_timeout() => {
                                Err(format!("no answer within {} s", TIMEOUT.as_secs()))
                            }
                            Err(err) => Err(webhook::without_url(&err)),
                        };
                        (key, outcome)
                    });
                }
                Receiver::Email(mailer) => {
                    let mailer = mailer.clone();
                    self.in_flight.spawn(async move {
                        let outcome = mailer.send(&target, &body).await;
                        (key, outcome)
                    });
                }
            }
        }
    }

    fn finished(&mut self, key: ChainKey, outcome: Result<(), String>) {
        let Some(front) = self.chains.get(&key).and_then(|c| c.front()) else {
            return;
        };
        if front.attempts > 1 {
            self.retrying = self.retrying.saturating_sub(1);
        }
        let (attempts, row) = (front.attempts, front.row);
        let is_webhook = self.channel != NotifyChannel::Email;
        match outcome {
            Ok(()) => {
                self.count(NotifyOutcome::Sent, 1);
                if is_webhook {
                    self.metrics.webhook_sent.fetch_add(1, Relaxed);
                }
                if let Some(row) = row {
                    self.outcomes.push((row, Outcome::Sent { attempts }));
                }
                self.pop_front(&key);
            }
            Err(why) => {
                if is_webhook {
                    self.metrics.webhook_failures.fetch_add(1, Relaxed);
                }
                if attempts >= self.bounds.attempts {
                    tracing::error!(
                        receiver = %self.shown,
                        exception = key.0,
                        "notification failed {attempts} times, giving up on it: {why}"
                    );
                    self.count(NotifyOutcome::GivenUp, 1);
                    if is_webhook {
                        self.metrics.webhook_dropped.fetch_add(1, Relaxed);
                    }
                    if let Some(row) = row {
                        self.outcomes.push((
                            row,
                            Outcome::GaveUp {
                                attempts,
                                error: why,
                            },
                        ));
                    }
                    self.pop_front(&key);
                } else {
                    let delay = backoff(attempts);
                    tracing::warn!(receiver = %self.shown, exception = key.0, attempt = attempts, retry_in = ?delay, "notification failed: {why}");
                    self.count(NotifyOutcome::Retried, 1);
                    if let Some(row) = row {
                        let next =
                            Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                        self.outcomes.push((
                            row,
                            Outcome::Retry {
                                attempts,
                                next,
                                error: why,
                            },
                        ));
                    }
                    self.seq += 1;
                    self.retries.insert((Instant::now() + delay, self.seq, key));
                }
            }
        }
    }

    fn due_retries(&mut self) {
        let now = Instant::now();
        while let Some((due, _, _)) = self.retries.first() {
            if *due > now {
                break;
            }
            if let Some((_, _, key)) = self.retries.pop_first() {
                self.make_ready(key);
            }
        }
    }

    /// The chain's oldest notification is done with: the next one, if
    /// any, is ready at once.
    fn pop_front(&mut self, key: &ChainKey) {
        let Some(chain) = self.chains.get_mut(key) else {
            return;
        };
        chain.pop_front();
        self.pending -= 1;
        self.metrics.webhook_pending.fetch_sub(1, Relaxed);
        if chain.is_empty() {
            self.chains.remove(key);
        } else {
            self.make_ready(key.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

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
            key: (seq as i64, String::new()),
        };
        heap.push(ready(false, Severity::Critical, 1));
        heap.push(ready(true, Severity::Warning, 2));
        heap.push(ready(true, Severity::Critical, 4));
        heap.push(ready(true, Severity::Critical, 3));
        let order: Vec<i64> = std::iter::from_fn(|| heap.pop().map(|r| r.key.0)).collect();
        assert_eq!(order, [3, 4, 2, 1]);
    }

    #[test]
    fn a_webhook_row_key_hides_the_url() {
        let hook = Receiver::Webhook {
            url: "http://a.local/hook?token=secret".into(),
            format: Format::Json,
        };
        let chat = Receiver::Webhook {
            url: "http://a.local/hook?token=secret".into(),
            format: Format::Chat,
        };
        assert!(hook.key().starts_with("webhook:"));
        assert!(chat.key().starts_with("chat:"));
        assert!(!hook.key().contains("secret"));
        assert_ne!(hook.key(), chat.key());
    }
}
