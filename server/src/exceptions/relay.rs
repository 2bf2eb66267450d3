//! The exceptions between instances sharing a database (issue 19): only the
//! instance holding the engine role decides transitions, yet a browser on
//! any instance sees every one, and an operator acknowledges on whichever
//! instance the proxy sent them to.
//!
//! Both travel by PostgreSQL `NOTIFY`, which every instance already reaches
//! and which needs no broker topic of our own: transitions are rare (an
//! alarm, not a reading), so one notification each costs nothing
//! measurable. A notification is lost while a listener reconnects; a
//! browser then has what it missed from `GET /api/exceptions`, which reads
//! the table, and the next transition of the exception brings it up to
//! date. An acknowledgement relayed to the holder is answered through a
//! reply on a second channel, or refused with a 503 within the deadline.
//! A maintenance window or a shelf made or ended on an instance without the
//! engine is stored there and passed to the holder on a third channel; a
//! holder that misses it takes it from the database at its next takeover.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use trackside_wire::{ExceptionEvent, ExceptionInfo};

use super::{AckFailure, Command};
use crate::live::LiveHub;
use crate::metrics::Metrics;

const EVENTS: &str = "trackside_exception_events";
const ACKS: &str = "trackside_exception_acks";
const REPLIES: &str = "trackside_exception_ack_replies";
const CHANGES: &str = "trackside_engine_changes";
/// Transitions waiting to be sent to the other instances. Full: the
/// transition is not relayed (counted); browsers elsewhere see it on their
/// next list refresh.
pub const RELAY_QUEUE: usize = 1_024;
/// Connections for listening: the relay's own, and acknowledgements
/// relayed at once (more wait their turn, within their deadline).
const LISTENERS: u32 = 4;
/// PostgreSQL refuses a notification payload of 8,000 bytes or more.
const MAX_PAYLOAD: usize = 7_999;

#[derive(Serialize, Deserialize)]
struct Relayed {
    from: String,
    event: ExceptionEvent,
}

#[derive(Serialize, Deserialize)]
struct AckAsk {
    request: u64,
    id: i64,
    by: String,
    comment: String,
}

/// A maintenance window or a shelf made or ended on an instance without
/// the engine, for the holder's engine (it is already stored; a holder
/// that misses this takes it from the database at its next takeover).
#[derive(Serialize, Deserialize)]
pub(super) enum EngineChange {
    AddWindow(super::engine::Window),
    EndWindow {
        id: i64,
        at: super::engine::Ms,
    },
    Shelve(super::engine::Shelf),
    Unshelve {
        id: i64,
        by: String,
        at: super::engine::Ms,
    },
}

#[derive(Serialize, Deserialize)]
struct AckReply {
    request: u64,
    answer: Answer,
}

#[derive(Serialize, Deserialize)]
enum Answer {
    Ok(Box<ExceptionInfo>),
    NotFound,
    Closed,
    AlreadyAcknowledged(Option<String>),
    Unavailable(String),
    Internal(String),
}

impl From<Result<ExceptionInfo, AckFailure>> for Answer {
    fn from(result: Result<ExceptionInfo, AckFailure>) -> Self {
        match result {
            Ok(info) => Answer::Ok(Box::new(info)),
            Err(AckFailure::NotFound) => Answer::NotFound,
            Err(AckFailure::Closed) => Answer::Closed,
            Err(AckFailure::AlreadyAcknowledged(by)) => Answer::AlreadyAcknowledged(by),
            Err(AckFailure::Unavailable(why)) => Answer::Unavailable(why),
            Err(AckFailure::Internal(err)) => Answer::Internal(format!("{err:#}")),
        }
    }
}

impl From<Answer> for Result<ExceptionInfo, AckFailure> {
    fn from(answer: Answer) -> Self {
        match answer {
            Answer::Ok(info) => Ok(*info),
            Answer::NotFound => Err(AckFailure::NotFound),
            Answer::Closed => Err(AckFailure::Closed),
            Answer::AlreadyAcknowledged(by) => Err(AckFailure::AlreadyAcknowledged(by)),
            Answer::Unavailable(why) => Err(AckFailure::Unavailable(why)),
            Answer::Internal(why) => Err(AckFailure::Internal(anyhow::anyhow!(
                "the instance running the exception engine failed: {why}"
            ))),
        }
    }
}

/// This instance's end of the relay.
#[derive(Clone)]
pub struct Relay {
    pool: PgPool,
    /// Listening connections, apart from `pool`: a listener holds its
    /// connection for ever, which must not starve requests or keep the
    /// request pool from closing.
    listeners: PgPool,
    instance: Arc<str>,
    events: mpsc::Sender<ExceptionEvent>,
    metrics: Arc<Metrics>,
}

impl Relay {
    /// Starts the sender of this instance's transitions and the listener
    /// that shows the others' live and answers relayed acknowledgements
    /// while `role` (the engine's) is held here.
    pub(super) fn start(
        pool: PgPool,
        instance: String,
        live: LiveHub,
        metrics: Arc<Metrics>,
        role: watch::Receiver<bool>,
        commands: mpsc::Sender<Command>,
        shutdown: CancellationToken,
    ) -> Relay {
        let (events, queued) = mpsc::channel(RELAY_QUEUE);
        let listeners = sqlx::postgres::PgPoolOptions::new()
            .max_connections(LISTENERS)
            .connect_lazy_with((*pool.connect_options()).clone());
        let relay = Relay {
            listeners,
            pool,
            instance: instance.into(),
            events,
            metrics,
        };
        tokio::spawn(relay.clone().send(queued, shutdown.clone()));
        tokio::spawn(relay.clone().listen(live, role, commands, shutdown));
        relay
    }

    /// Offers a transition decided here to the other instances; never waits.
    pub fn publish(&self, event: &ExceptionEvent) {
        if self.events.try_send(event.clone()).is_err() {
            self.metrics.exception_relay_dropped.fetch_add(1, Relaxed);
        }
    }

    async fn send(self, mut queued: mpsc::Receiver<ExceptionEvent>, shutdown: CancellationToken) {
        loop {
            let event = tokio::select! {
                event = queued.recv() => match event { Some(e) => e, None => return },
                () = shutdown.cancelled() => return,
            };
            let relayed = Relayed {
                from: self.instance.to_string(),
                event,
            };
            if !self.notify(EVENTS, &relayed).await {
                self.metrics.exception_relay_dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Sends one notification; false if it could not be sent.
    async fn notify<T: Serialize>(&self, channel: &str, what: &T) -> bool {
        let Ok(payload) = serde_json::to_string(what) else {
            return false;
        };
        if payload.len() > MAX_PAYLOAD {
            tracing::warn!(
                bytes = payload.len(),
                "a notification to the other instances is too long for PostgreSQL; not sent"
            );
            return false;
        }
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool);
        match tokio::time::timeout(Duration::from_secs(2), sent).await {
            Ok(Ok(_)) => true,
            Ok(Err(err)) => {
                tracing::warn!("notifying the other instances failed: {err}");
                false
            }
            Err(_) => false,
        }
    }

    async fn listen(
        self,
        live: LiveHub,
        role: watch::Receiver<bool>,
        commands: mpsc::Sender<Command>,
        shutdown: CancellationToken,
    ) {
        let mut listener = loop {
            match PgListener::connect_with(&self.listeners).await {
                Ok(mut listener) => match listener.listen_all([EVENTS, ACKS, CHANGES]).await {
                    Ok(()) => break listener,
                    Err(err) => tracing::warn!("listening for other instances' exceptions: {err}"),
                },
                Err(err) => tracing::warn!("listening for other instances' exceptions: {err}"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
                () = shutdown.cancelled() => return,
            }
        };
        loop {
            let notification = tokio::select! {
                n = listener.recv() => n,
                () = shutdown.cancelled() => return,
            };
            let notification = match notification {
                Ok(n) => n,
                Err(err) => {
                    // PgListener reconnects on the next recv.
                    tracing::warn!("listening for other instances' exceptions: {err}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            match notification.channel() {
                EVENTS => match serde_json::from_str::<Relayed>(notification.payload()) {
                    Ok(relayed) if *relayed.from != *self.instance => {
                        live.publish_exception(&relayed.event);
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!("a relayed exception could not be read: {err}"),
                },
                ACKS if *role.borrow() => {
                    match serde_json::from_str::<AckAsk>(notification.payload()) {
                        Ok(ask) => {
                            let relay = self.clone();
                            let commands = commands.clone();
                            tokio::spawn(async move { relay.answer(ask, commands).await });
                        }
                        Err(err) => {
                            tracing::warn!("a relayed acknowledgement could not be read: {err}")
                        }
                    }
                }
                CHANGES if *role.borrow() => {
                    match serde_json::from_str::<EngineChange>(notification.payload()) {
                        Ok(change) => {
                            let command = match change {
                                EngineChange::AddWindow(window) => Command::AddWindow(window),
                                EngineChange::EndWindow { id, at } => Command::EndWindow { id, at },
                                // The operator was answered by the instance they used.
                                EngineChange::Shelve(shelf) => Command::Shelve {
                                    shelf,
                                    reply: oneshot::channel().0,
                                },
                                EngineChange::Unshelve { id, by, at } => {
                                    Command::Unshelve { id, by, at }
                                }
                            };
                            let commands = commands.clone();
                            tokio::spawn(async move { commands.send(command).await });
                        }
                        Err(err) => {
                            tracing::warn!("a relayed window or shelf could not be read: {err}")
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// On an instance without the engine: passes a window's or a shelf's
    /// change on to the holder.
    pub(super) async fn pass_on(&self, change: EngineChange) {
        if !self.notify(CHANGES, &change).await {
            tracing::warn!(
                "a maintenance window or shelf could not be passed to the engine's instance; \
                 it takes it from the database at its next takeover"
            );
        }
    }

    /// On an instance without the engine: how many open exceptions `shelf`
    /// hides, from the table the holder keeps (0 if it cannot be read).
    pub(super) async fn hidden_by(&self, shelf: &super::engine::Shelf) -> usize {
        let (subject, circuit) = match &shelf.scope {
            super::engine::ShelfScope::Subject(s) => (Some(s.as_str()), None),
            super::engine::ShelfScope::Circuit(c) => (None, Some(c.as_str())),
        };
        let counted: sqlx::Result<i64> = sqlx::query_scalar(
            "SELECT count(*) FROM exceptions
             WHERE open AND rule_id = $1
               AND (subject = $2 OR split_part(subject, '/', 1) = $3)",
        )
        .bind(&shelf.rule)
        .bind(subject)
        .bind(circuit)
        .fetch_one(&self.pool)
        .await;
        counted.map_or(0, |n| usize::try_from(n).unwrap_or(0))
    }

    /// On the holder: has the engine acknowledge, and replies.
    async fn answer(self, ask: AckAsk, commands: mpsc::Sender<Command>) {
        let (reply, answer) = oneshot::channel();
        let start_by = tokio::time::Instant::now() + super::ACK_DEADLINE - 2 * super::STORE_WAIT;
        let command = Command::Ack {
            id: ask.id,
            by: ask.by,
            comment: ask.comment,
            start_by,
            reply,
        };
        if commands.send(command).await.is_err() {
            return;
        }
        let Ok(result) = answer.await else { return };
        let reply = AckReply {
            request: ask.request,
            answer: result.into(),
        };
        self.notify(REPLIES, &reply).await;
    }

    /// On an instance without the engine: asks the holder to acknowledge
    /// and waits for its answer until `deadline`.
    pub async fn ask(
        &self,
        id: i64,
        by: String,
        comment: String,
        deadline: tokio::time::Instant,
    ) -> Result<ExceptionInfo, AckFailure> {
        let unavailable = |why: &str| {
            AckFailure::Unavailable(format!(
                "this instance does not run the exception engine and {why}: nothing was \
                 recorded; try again in a few seconds (an instance takes the engine over \
                 within 10 s of losing its holder)"
            ))
        };
        let asked = async {
            let mut listener = PgListener::connect_with(&self.listeners)
                .await
                .map_err(|_| unavailable("cannot reach the database"))?;
            listener
                .listen(REPLIES)
                .await
                .map_err(|_| unavailable("cannot reach the database"))?;
            let request = rand::random::<u64>();
            let ask = AckAsk {
                request,
                id,
                by,
                comment,
            };
            if !self.notify(ACKS, &ask).await {
                return Err(unavailable("cannot reach the database"));
            }
            loop {
                let notification = listener
                    .recv()
                    .await
                    .map_err(|_| unavailable("lost the database while waiting"))?;
                if let Ok(reply) = serde_json::from_str::<AckReply>(notification.payload())
                    && reply.request == request
                {
                    return reply.answer.into();
                }
            }
        };
        match tokio::time::timeout_at(deadline, asked).await {
            Ok(answer) => answer,
            Err(_) => Err(unavailable(
                "no instance running it answered in time (one may be taking it over)",
            )),
        }
    }
}
