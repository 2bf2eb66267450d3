//! Exceptions: rules over the readings, the lifecycle of what they raise,
//! storage, live push and notifications.
//!
//! The ingest path hands each decoded message to [`Feed`], which never
//! waits: a full queue is counted and the message skipped for the engine
//! only (it is still stored and sent live). One task owns the [`Engine`]:
//! it feeds it messages, ticks and acknowledgements, writes each step's
//! transitions in one transaction, then pushes them to the live hub and the
//! webhook. See ARCHITECTURE.md.

mod config;
pub mod defaults;
pub mod engine;
pub mod http;
pub mod priority;
pub mod store;
pub mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use trackside_wire::{ExceptionEvent, ExceptionInfo, Rule, TransitionInfo};

use crate::live::LiveHub;
use crate::metrics::Metrics;
use crate::reading::GatewayStatus;
use crate::reading::ReadingBatch;
use engine::{AckError, Engine, Key, Ms, Transition};

pub use config::ExceptionsConfig;

/// What the ingest path tells the engine.
#[derive(Debug)]
pub enum Input {
    Readings {
        batch: Arc<ReadingBatch>,
        received: Ms,
    },
    Status {
        gateway: String,
        online: bool,
        at: Ms,
    },
    /// A channel's new forecast: (step start, predicted mean).
    Forecast {
        channel: String,
        points: Vec<(Ms, f64)>,
        at: Ms,
    },
}

/// The ingest path's side of the engine's queue.
#[derive(Clone)]
pub struct Feed {
    tx: mpsc::Sender<Input>,
    metrics: Arc<Metrics>,
}

impl Feed {
    pub fn readings(&self, batch: &Arc<ReadingBatch>, received: DateTime<Utc>) {
        self.send(Input::Readings {
            batch: batch.clone(),
            received: received.timestamp_millis(),
        });
    }

    pub fn status(&self, gateway: &str, status: GatewayStatus, at: DateTime<Utc>) {
        self.send(Input::Status {
            gateway: gateway.to_owned(),
            online: status == GatewayStatus::Online,
            at: at.timestamp_millis(),
        });
    }

    /// From the forecaster, not the ingest path: it may wait for room.
    pub async fn forecast(&self, channel: &str, points: Vec<(Ms, f64)>, at: DateTime<Utc>) {
        let _ = self
            .tx
            .send(Input::Forecast {
                channel: channel.to_owned(),
                points,
                at: at.timestamp_millis(),
            })
            .await;
    }

    fn send(&self, input: Input) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(input) {
            let dropped = self.metrics.exception_events_dropped.fetch_add(1, Relaxed);
            // Once, then every thousandth: an overload must not flood the log.
            if dropped.is_multiple_of(1000) {
                tracing::warn!(
                    dropped = dropped + 1,
                    "exception engine queue full: message skipped for the rules (still stored and sent live)"
                );
            }
        }
    }
}

/// Why an acknowledgement was refused.
#[derive(Debug)]
pub enum AckFailure {
    NotFound,
    Closed,
    AlreadyAcknowledged(Option<String>),
    Internal(anyhow::Error),
}

enum Command {
    Ack {
        id: i64,
        by: String,
        comment: String,
        reply: oneshot::Sender<Result<ExceptionInfo, AckFailure>>,
    },
}

/// The HTTP side: the rules, and acknowledgements through the engine's task.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    rules: Arc<Vec<Rule>>,
}

impl Handle {
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub async fn acknowledge(
        &self,
        id: i64,
        by: String,
        comment: String,
    ) -> Result<ExceptionInfo, AckFailure> {
        let (reply, answer) = oneshot::channel();
        let gone = || AckFailure::Internal(anyhow::anyhow!("the exception engine has stopped"));
        self.commands
            .send(Command::Ack {
                id,
                by,
                comment,
                reply,
            })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

pub struct Started {
    pub feed: Feed,
    pub handle: Handle,
    pub task: JoinHandle<()>,
    pub webhook: Option<JoinHandle<()>>,
}

/// Builds the engine, resumes it from the open exceptions in the database,
/// and starts its task. The task ends when every [`Feed`] is dropped.
pub async fn start(
    config: &ExceptionsConfig,
    pool: PgPool,
    live: LiveHub,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Started> {
    let mut engine =
        Engine::new(config.rules.clone(), config.realarm_after_s).map_err(anyhow::Error::msg)?;
    let open = store::load_open(&pool).await?;
    let mut ids = HashMap::with_capacity(open.len());
    let mut resumed = Vec::with_capacity(open.len());
    for (id, entry) in open {
        ids.insert(entry.key.clone(), id);
        resumed.push(entry);
    }
    tracing::info!(open = resumed.len(), "exception engine resumes");
    let mut out = Vec::new();
    engine.resume(resumed, Utc::now().timestamp_millis(), &mut out);

    let (webhook, webhook_task) = match &config.webhook_url {
        Some(url) => {
            let (notifier, task) = webhook::start(
                url.clone(),
                config.webhook_queue,
                config.webhook_attempts,
                metrics.clone(),
            )?;
            (Some(notifier), Some(task))
        }
        None => (None, None),
    };
    let (tx, inputs) = mpsc::channel(config.queue);
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let mut service = Service {
        engine,
        pool,
        live,
        metrics: metrics.clone(),
        webhook,
        ids,
    };
    service
        .metrics
        .exceptions_open
        .store(service.engine.open_count() as i64, Relaxed);
    service.commit(out).await;
    let tick = Duration::from_millis(config.tick_ms);
    let task = tokio::spawn(service.run(inputs, commands, tick));
    Ok(Started {
        feed: Feed { tx, metrics },
        handle: Handle {
            commands: commands_tx,
            rules: Arc::new(config.rules.clone()),
        },
        task,
        webhook: webhook_task,
    })
}

struct Service {
    engine: Engine,
    pool: PgPool,
    live: LiveHub,
    metrics: Arc<Metrics>,
    webhook: Option<webhook::Notifier>,
    /// Database id of every open exception.
    ids: HashMap<Key, i64>,
}

const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Acknowledgements waiting for the engine's task. A full queue makes the
/// HTTP request wait, never the ingest path.
const COMMAND_QUEUE: usize = 64;
/// Inputs judged in one engine step, whose transitions are stored in one
/// transaction.
const INPUTS_PER_STEP: usize = 256;

impl Service {
    async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut commands: mpsc::Receiver<Command>,
        tick: Duration,
    ) {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending = Vec::new();
        loop {
            let mut out = Vec::new();
            tokio::select! {
                received = inputs.recv_many(&mut pending, INPUTS_PER_STEP) => {
                    if received == 0 {
                        break;
                    }
                    for input in pending.drain(..) {
                        match input {
                            Input::Readings { batch, received } => {
                                self.engine.readings(&batch.gateway, &batch.readings, received, &mut out);
                            }
                            Input::Status { gateway, online, at } => {
                                self.engine.gateway_status(&gateway, online, at, &mut out);
                            }
                            Input::Forecast { channel, points, at } => {
                                self.engine.forecast(&channel, &points, at, &mut out);
                            }
                        }
                    }
                }
                Some(command) = commands.recv() => match command {
                    Command::Ack { id, by, comment, reply } => {
                        let answer = self.acknowledge(id, &by, &comment).await;
                        let _ = reply.send(answer);
                        continue;
                    }
                },
                _ = ticker.tick() => self.engine.tick(Utc::now().timestamp_millis(), &mut out),
            }
            self.commit(out).await;
        }
        tracing::info!("exception engine stopped");
    }

    async fn acknowledge(
        &mut self,
        id: i64,
        by: &str,
        comment: &str,
    ) -> Result<ExceptionInfo, AckFailure> {
        let Some(key) = self
            .ids
            .iter()
            .find(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
        else {
            return match store::get(&self.pool, id).await {
                Ok(Some(_)) => Err(AckFailure::Closed),
                Ok(None) => Err(AckFailure::NotFound),
                Err(err) => Err(AckFailure::Internal(err)),
            };
        };
        let mut out = Vec::new();
        let at = Utc::now().timestamp_millis();
        match self.engine.acknowledge(&key, by, comment, at, &mut out) {
            Ok(()) => {}
            Err(AckError::NotOpen) => return Err(AckFailure::Closed),
            Err(AckError::AlreadyAcknowledged) => {
                let by = store::get(&self.pool, id)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|d| d.exception.acked_by);
                return Err(AckFailure::AlreadyAcknowledged(by));
            }
        }
        let events = self.commit(out).await;
        events
            .into_iter()
            .rev()
            .find(|e| e.exception.id == id)
            .map(|e| e.exception)
            .ok_or_else(|| AckFailure::Internal(anyhow::anyhow!("acknowledgement not stored")))
    }

    /// Stores one step's transitions in one transaction (retrying until the
    /// database takes them), then pushes them live and to the webhook.
    async fn commit(&mut self, out: Vec<Transition>) -> Vec<ExceptionEvent> {
        if out.is_empty() {
            return Vec::new();
        }
        let mut delay = RETRY_FIRST;
        let events = loop {
            match store::apply(&self.pool, &self.engine, &self.ids, &out).await {
                Ok(events) => break events,
                Err(err) => {
                    self.metrics.exception_store_errors.fetch_add(1, Relaxed);
                    tracing::error!(retry_in = ?delay, "storing exception transitions failed: {err:#}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        };
        for (transition, event) in out.iter().zip(&events) {
            if transition.closes {
                self.ids.remove(&transition.key);
            } else {
                self.ids.insert(transition.key.clone(), event.exception.id);
            }
            let counter = match transition.kind {
                trackside_wire::TransitionKind::Raised => &self.metrics.exceptions_raised,
                trackside_wire::TransitionKind::Cleared => &self.metrics.exceptions_cleared,
                trackside_wire::TransitionKind::Acknowledged => {
                    &self.metrics.exceptions_acknowledged
                }
                trackside_wire::TransitionKind::Realarmed => &self.metrics.exceptions_realarmed,
            };
            counter.fetch_add(1, Relaxed);
            tracing::info!(
                id = event.exception.id,
                rule = %transition.key.rule,
                subject = %transition.key.subject,
                transition = transition.kind.as_str(),
                "{}",
                transition.message
            );
            self.live.publish_exception(event);
            if let Some(webhook) = &self.webhook {
                webhook.notify(event.clone());
            }
        }
        self.metrics
            .exceptions_open
            .store(self.ids.len() as i64, Relaxed);
        events
    }
}

fn transition_info(t: &Transition) -> TransitionInfo {
    TransitionInfo {
        at: t.at,
        kind: t.kind,
        value: t.value,
        message: t.message.clone(),
        by: t.by.clone(),
        comment: t.comment.clone(),
    }
}
