//! Exceptions: rules over the readings, the lifecycle of what they raise,
//! storage, live push and notifications.
//!
//! The ingest path hands each decoded message to [`Feed`], which never
//! waits: a full queue is counted and the message skipped for the engine
//! only (it is still stored and sent live). One task owns the [`Engine`]:
//! it feeds it messages, ticks and acknowledgements, and never waits for
//! the database either, so alarms keep working while PostgreSQL is away:
//!
//! - each step's transitions become exception states in memory
//!   ([`lifecycle`]), numbered from ids reserved ahead;
//! - while nothing waits in the [`journal`], they are stored at once (one
//!   transaction, a short timeout) and then pushed live and to the
//!   webhooks, as stored;
//! - otherwise (the database is away, or earlier ones still wait) they go
//!   to the journal and are pushed at once, marked not yet stored; the
//!   journal's writer stores them in order when it can, and says so on
//!   `/ws`;
//! - an acknowledgement needs the database (it is an operator's record):
//!   while it is away the answer is a 503 within seconds.
//!
//! See ARCHITECTURE.md.

mod config;
pub mod defaults;
pub mod engine;
pub mod flood;
pub mod http;
pub mod journal;
pub mod lifecycle;
pub mod maintenance;
pub mod notify;
pub mod priority;
pub mod relay;
pub mod shelving;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use trackside_wire::{
    Check, ExceptionEvent, ExceptionInfo, Layout, Rule, Severity, TransitionInfo,
};

use crate::live::LiveHub;
use crate::metrics::Metrics;
use crate::reading::GatewayStatus;
use crate::reading::ReadingBatch;
use crate::yard::YardLayout;
use engine::{AckError, Engine, Key, Ms, Resumed, Transition};
use journal::Journal;
use priority::{AlarmPolicy, Criticalities, Escalation};

pub use engine::SpoolState;

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
    /// The server's spool, sampled.
    Spool { state: SpoolState, at: Ms },
    /// A circuit's recent occupations, oldest first, after new ones were
    /// derived (`health`).
    Occupations {
        circuit: String,
        occupations: Vec<trackside_wire::Occupation>,
    },
    /// A circuit's health score and its worst cause, in words.
    Health {
        circuit: String,
        score: f64,
        worst: String,
        at: Ms,
    },
    /// A gateway's estimated clock offset changed (by a whole second).
    Clock {
        gateway: String,
        offset_ms: i64,
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

    pub fn clock(&self, gateway: &str, offset_ms: i64, at: DateTime<Utc>) {
        self.send(Input::Clock {
            gateway: gateway.to_owned(),
            offset_ms,
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

    /// From the health job, not the ingest path: it may wait for room.
    pub async fn occupations(&self, circuit: &str, occupations: Vec<trackside_wire::Occupation>) {
        let _ = self
            .tx
            .send(Input::Occupations {
                circuit: circuit.to_owned(),
                occupations,
            })
            .await;
    }

    /// A circuit's new health score, from the health job.
    pub async fn health(&self, circuit: &str, score: f64, worst: String, at: Ms) {
        let _ = self
            .tx
            .send(Input::Health {
                circuit: circuit.to_owned(),
                score,
                worst,
                at,
            })
            .await;
    }

    /// The spool's state, sampled about once a second.
    pub fn spool(&self, state: SpoolState, at: DateTime<Utc>) {
        self.send(Input::Spool {
            state,
            at: at.timestamp_millis(),
        });
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
    /// The database is unreachable: nothing was recorded (or, when the
    /// message says so, it was kept and is stored once it is back).
    Unavailable(String),
    Internal(anyhow::Error),
}

enum Command {
    Ack {
        id: i64,
        by: String,
        comment: String,
        /// Started later than this, it could not finish within
        /// [`ACK_DEADLINE`]: refused unrecorded.
        start_by: tokio::time::Instant,
        reply: oneshot::Sender<Result<ExceptionInfo, AckFailure>>,
    },
    /// A stored maintenance window, planned or begun.
    AddWindow(engine::Window),
    /// A stored window ended (or cancelled) at `at`: what it suppressed and
    /// is still active is raised normally.
    EndWindow { id: i64, at: Ms },
    /// A stored shelf: answers how many open exceptions it hides now.
    Shelve {
        shelf: engine::Shelf,
        reply: oneshot::Sender<Result<usize, engine::ShelveError>>,
    },
    /// A stored shelf ended by `by`: what it hid is shown again.
    Unshelve { id: i64, by: String, at: Ms },
}

/// How long an acknowledgement may take, whatever the database does: the
/// engine's check and store take at most `2 * STORE_WAIT`, and it starts
/// one only while that still fits.
const ACK_DEADLINE: Duration = Duration::from_secs(6);
/// How long the engine waits for the database before it journals a step,
/// and how long the check before an acknowledgement may take.
const STORE_WAIT: Duration = Duration::from_secs(2);

/// The HTTP side: the rules, and acknowledgements through the engine's task.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    rules: Arc<Vec<Rule>>,
    shelve_max_s: u64,
}

impl Handle {
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The longest a shelf may hold, in seconds.
    pub fn shelve_max_s(&self) -> u64 {
        self.shelve_max_s
    }

    /// Acknowledges through the engine; answers within [`ACK_DEADLINE`].
    pub async fn acknowledge(
        &self,
        id: i64,
        by: String,
        comment: String,
    ) -> Result<ExceptionInfo, AckFailure> {
        let (reply, answer) = oneshot::channel();
        let gone = || AckFailure::Internal(anyhow::anyhow!("the exception engine has stopped"));
        let start_by = tokio::time::Instant::now() + ACK_DEADLINE - 2 * STORE_WAIT;
        let asked = async {
            self.commands
                .send(Command::Ack {
                    id,
                    by,
                    comment,
                    start_by,
                    reply,
                })
                .await
                .map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        };
        // The engine answers within the deadline; this is the backstop.
        match tokio::time::timeout(ACK_DEADLINE + Duration::from_secs(1), asked).await {
            Ok(answer) => answer,
            Err(_) => Err(AckFailure::Unavailable(format!(
                "the exception engine did not answer within {} s (is the database slow?); \
                 reload the exception to see whether the acknowledgement was recorded",
                ACK_DEADLINE.as_secs()
            ))),
        }
    }
}

impl Handle {
    /// Tells the engine of a stored maintenance window.
    pub async fn add_window(&self, window: &store::PlannedWindow) -> anyhow::Result<()> {
        self.commands
            .send(Command::AddWindow(window_of(window)))
            .await
            .map_err(|_| anyhow::anyhow!("the exception engine has stopped"))
    }

    /// Tells the engine a stored window ended at `at`.
    pub async fn end_window(&self, id: i64, at: Ms) -> anyhow::Result<()> {
        self.commands
            .send(Command::EndWindow { id, at })
            .await
            .map_err(|_| anyhow::anyhow!("the exception engine has stopped"))
    }
}

impl Handle {
    /// Tells the engine of a stored shelf; answers how many open
    /// exceptions it hides now.
    pub async fn shelve(&self, shelf: &trackside_wire::ShelfInfo) -> anyhow::Result<usize> {
        let (reply, answer) = oneshot::channel();
        let gone = || anyhow::anyhow!("the exception engine has stopped");
        self.commands
            .send(Command::Shelve {
                shelf: shelf_of(shelf)?,
                reply,
            })
            .await
            .map_err(|_| gone())?;
        answer
            .await
            .map_err(|_| gone())?
            .map_err(|err| anyhow::anyhow!("the engine refused shelf {}: {err:?}", shelf.id))
    }

    /// Tells the engine `by` ended a stored shelf at `at`.
    pub async fn unshelve(&self, id: i64, by: String, at: Ms) -> anyhow::Result<()> {
        self.commands
            .send(Command::Unshelve { id, by, at })
            .await
            .map_err(|_| anyhow::anyhow!("the exception engine has stopped"))
    }
}

fn shelf_of(s: &trackside_wire::ShelfInfo) -> anyhow::Result<engine::Shelf> {
    let scope = match (&s.subject, &s.circuit) {
        (Some(subject), _) => engine::ShelfScope::Subject(subject.clone()),
        (None, Some(circuit)) => engine::ShelfScope::Circuit(circuit.clone()),
        (None, None) => anyhow::bail!("shelf {} names neither a subject nor a circuit", s.id),
    };
    Ok(engine::Shelf {
        id: s.id,
        rule: s.rule.clone(),
        scope,
        until: s.until,
        by: s.created_by.clone(),
        reason: s.reason.clone(),
    })
}

fn window_of(w: &store::PlannedWindow) -> engine::Window {
    engine::Window {
        id: w.id,
        circuits: w.circuits.clone(),
        gateway: w.gateway.clone(),
        starts: w.starts_at,
        ends: w.ends_at,
    }
}

pub struct Started {
    pub feed: Feed,
    pub handle: Handle,
    pub task: JoinHandle<()>,
    /// Writes the journal; ends after the engine's task.
    pub journal: JoinHandle<()>,
    pub webhooks: Vec<JoinHandle<()>>,
}

/// Where a transition goes once decided: the live view, the other
/// instances' live views and the webhooks.
pub struct Outlets {
    pub live: LiveHub,
    pub webhook: Option<notify::Notifier>,
    pub relay: Option<relay::Relay>,
}

impl Outlets {
    fn push(&self, event: &ExceptionEvent) {
        self.live.publish_exception(event);
        if let Some(relay) = &self.relay {
            relay.publish(event);
        }
        if let Some(webhook) = &self.webhook {
            webhook.notify(event);
        }
    }
}

/// The rule every server has for its own spool when the configuration
/// names none.
fn spool_rule() -> Rule {
    Rule {
        id: "server-spool".into(),
        target: engine::SPOOL_SUBJECT.into(),
        exclude: Vec::new(),
        severity: Severity::Warning,
        realarm_after_s: None,
        escalate_after_s: None,
        check: Check::Spool { fill_percent: 80.0 },
    }
}

/// Ids reserved ahead, and the level below which more are taken.
pub const RESERVE: usize = 2_048;
const RESERVE_LOW: usize = 1_024;
/// How often a reserve below its low level is topped up at most.
const RESERVE_RETRY: Duration = Duration::from_secs(10);

/// What the exceptions need from the rest of the server.
pub struct Environment {
    pub pool: PgPool,
    pub live: LiveHub,
    pub metrics: Arc<Metrics>,
    /// Where the journal lives.
    pub data_dir: std::path::PathBuf,
    pub fsync_window: Option<Duration>,
    pub shutdown: CancellationToken,
    /// Names each circuit's criticality, which ranks its exceptions.
    pub layout: Arc<YardLayout>,
    /// True while this instance holds the engine role (`cluster`): the
    /// engine runs only then, resuming from the database each time.
    pub role: watch::Receiver<bool>,
    /// This instance's name, to tell its own relayed transitions apart.
    pub instance: String,
    /// The yard's zone, for the times in e-mail.
    pub zone: chrono_tz::Tz,
    /// The app's address, for the link in e-mail.
    pub app_url: String,
}

/// Builds the engine: writes what an earlier run left in the journal,
/// resumes from the open exceptions in the database, and starts its task
/// and the journal's writer. The task ends when every [`Feed`] is dropped.
pub async fn start(config: &ExceptionsConfig, env: Environment) -> anyhow::Result<Started> {
    let Environment {
        pool,
        live,
        metrics,
        data_dir,
        fsync_window,
        shutdown,
        layout,
        mut role,
        instance,
        zone,
        app_url,
    } = env;
    let mut rules = config.rules.clone();
    if !rules.iter().any(|r| matches!(r.check, Check::Spool { .. })) {
        rules.push(spool_rule());
    }
    // Checked once here; each tenure builds its engine from the same rules.
    Engine::new(rules.clone(), config.realarm_after_s).map_err(anyhow::Error::msg)?;

    let mut receivers: Vec<notify::Receiver> = config
        .webhook_urls
        .iter()
        .map(|url| notify::Receiver::Webhook {
            url: url.clone(),
            format: notify::Format::Json,
        })
        .chain(
            config
                .chat_webhook_urls
                .iter()
                .map(|url| notify::Receiver::Webhook {
                    url: url.clone(),
                    format: notify::Format::Chat,
                }),
        )
        .collect();
    let app_url_for_links = app_url.trim_end_matches('/').to_owned();
    if let Some(mailer) =
        notify::email::Mailer::new(&config.email, &config.notify_groups, &rules, zone, app_url)?
    {
        receivers.push(notify::Receiver::Email(Arc::new(mailer)));
    }
    let (webhook, webhooks) = if receivers.is_empty() {
        (None, Vec::new())
    } else {
        let (notifier, tasks) = notify::start(
            receivers,
            notify::Bounds {
                queue: config.webhook_queue,
                attempts: config.webhook_attempts,
                outbox_rows: config.outbox_rows,
                outbox_max_age_s: config.outbox_max_age_s,
            },
            pool.clone(),
            role.clone(),
            metrics.clone(),
            shutdown.clone(),
        )?;
        (Some(notifier), tasks)
    };
    let (tx, mut inputs) = mpsc::channel(config.queue);
    let (commands_tx, mut commands) = mpsc::channel(COMMAND_QUEUE);
    let relay = relay::Relay::start(
        pool.clone(),
        instance,
        live.clone(),
        metrics.clone(),
        role.clone(),
        commands_tx.clone(),
        shutdown.clone(),
    );
    let outlets = Arc::new(Outlets {
        live,
        webhook,
        relay: Some(relay.clone()),
    });

    let journal_dir = data_dir.join("exceptions");
    let journal = {
        let metrics = metrics.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || Journal::open(&journal_dir, fsync_window, metrics))
                .await??,
        )
    };
    if !journal.is_empty() {
        tracing::info!("writing exception transitions an earlier run journalled");
        journal
            .drain(&pool, &outlets, &mut HashMap::new(), None)
            .await
            .map_err(|err| anyhow::anyhow!("writing the exception journal: {err}"))?;
    }
    let tenure = Tenure {
        flood: config.flood.policy(),
        app_url: app_url_for_links,
        rules: rules.clone(),
        realarm_after_s: config.realarm_after_s,
        layout,
        escalation: config.escalation(),
        pool: pool.clone(),
        outlets: outlets.clone(),
        metrics: metrics.clone(),
        journal: journal.clone(),
    };
    // Held at start (a lone instance always is): resumed before `start`
    // returns, as without a cluster, so a database away fails the start.
    let first = if *role.borrow_and_update() {
        Some(tenure.begin().await?)
    } else {
        tracing::info!("another instance runs the exception engine; standing by");
        None
    };

    let (learned_tx, mut learned) = mpsc::channel(LEARNED_QUEUE);
    let engine_done = CancellationToken::new();
    let journal_task = tokio::spawn(journal::run_writer(
        journal,
        pool,
        outlets,
        learned_tx,
        engine_done.clone(),
        shutdown,
    ));
    let tick = Duration::from_millis(config.tick_ms);
    let task = tokio::spawn(async move {
        let mut service = first;
        loop {
            if let Some(running) = service.take() {
                match running
                    .run(&mut inputs, &mut commands, &mut learned, tick, &mut role)
                    .await
                {
                    Ended::Closed => break,
                    Ended::Lost => {
                        tracing::warn!("exception engine role lost: standing by");
                    }
                }
            }
            if !stand_by(&mut inputs, &mut commands, &mut learned, &mut role, &relay).await {
                break;
            }
            match tenure.begin().await {
                Ok(running) => service = Some(running),
                Err(err) => {
                    tracing::error!("taking the exception engine over failed, retrying: {err:#}");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        engine_done.cancel();
    });
    Ok(Started {
        feed: Feed { tx, metrics },
        handle: Handle {
            commands: commands_tx,
            rules: Arc::new(rules),
            shelve_max_s: config.shelve_max_s,
        },
        task,
        journal: journal_task,
        webhooks,
    })
}

/// Why [`Service::run`] returned.
enum Ended {
    /// Every feed is gone: the server is stopping.
    Closed,
    /// The engine role was lost: another instance may take it.
    Lost,
}

/// While another instance holds the engine: inputs are dropped (the holder
/// has its own complete feed), acknowledgements are relayed to it. Returns
/// true once the role is held here, false when every feed is gone.
async fn stand_by(
    inputs: &mut mpsc::Receiver<Input>,
    commands: &mut mpsc::Receiver<Command>,
    learned: &mut mpsc::Receiver<(Key, i64)>,
    role: &mut watch::Receiver<bool>,
    relay: &relay::Relay,
) -> bool {
    let mut pending = Vec::new();
    let mut role_open = true;
    loop {
        tokio::select! {
            biased;
            open = crate::cluster::until(role, true), if role_open => {
                if open {
                    return true;
                }
                role_open = false;
            }
            received = inputs.recv_many(&mut pending, INPUTS_PER_STEP) => {
                if received == 0 {
                    return false;
                }
                pending.clear();
            }
            Some(command) = commands.recv() => match command {
                Command::Ack { id, by, comment, start_by, reply } => {
                    let relay = relay.clone();
                    let deadline = start_by + 2 * STORE_WAIT;
                    tokio::spawn(async move {
                        let _ = reply.send(relay.ask(id, by, comment, deadline).await);
                    });
                }
                Command::AddWindow(window) => {
                    let relay = relay.clone();
                    tokio::spawn(async move { relay.pass_on(relay::EngineChange::AddWindow(window)).await });
                }
                Command::EndWindow { id, at } => {
                    let relay = relay.clone();
                    tokio::spawn(async move { relay.pass_on(relay::EngineChange::EndWindow { id, at }).await });
                }
                Command::Shelve { shelf, reply } => {
                    let relay = relay.clone();
                    tokio::spawn(async move {
                        let hidden = relay.hidden_by(&shelf).await;
                        relay.pass_on(relay::EngineChange::Shelve(shelf)).await;
                        let _ = reply.send(Ok(hidden));
                    });
                }
                Command::Unshelve { id, by, at } => {
                    let relay = relay.clone();
                    tokio::spawn(async move { relay.pass_on(relay::EngineChange::Unshelve { id, by, at }).await });
                }
            },
            // Ids for exceptions this instance no longer holds.
            Some(_) = learned.recv() => {}
        }
    }
}

/// What each tenure of the engine is built from.
struct Tenure {
    /// Alarm floods: when raises are grouped and summarised.
    flood: Option<flood::FloodPolicy>,
    /// The app's address, for the links in flood summaries.
    app_url: String,
    rules: Vec<Rule>,
    realarm_after_s: Option<f64>,
    pool: PgPool,
    outlets: Arc<Outlets>,
    metrics: Arc<Metrics>,
    journal: Arc<Journal>,
    /// Names each circuit's criticality, which ranks its exceptions.
    layout: Arc<YardLayout>,
    escalation: Escalation,
}

impl Tenure {
    /// A new engine resumed from the open exceptions in the database, so a
    /// takeover carries every open exception on (one per rule and subject:
    /// the engine raises none it already holds open).
    async fn begin(&self) -> anyhow::Result<Service> {
        let ranked_by = self.layout.layout();
        let mut engine = Engine::new(self.rules.clone(), self.realarm_after_s)
            .map_err(anyhow::Error::msg)?
            .with_policy(AlarmPolicy {
                criticalities: ranked_by
                    .as_deref()
                    .map(Criticalities::from_layout)
                    .unwrap_or_default(),
                escalation: self.escalation.clone(),
            });
        if let Some(policy) = self.flood {
            engine = engine.with_floods(policy);
            if let Some(flood) = store::running_flood(&self.pool).await? {
                tracing::info!(
                    flood = flood.id,
                    raises = flood.total,
                    "an alarm flood is still on: resumed"
                );
                engine.resume_flood(flood, Utc::now().timestamp_millis());
            }
        }
        let windows = store::open_windows(&self.pool, Utc::now().timestamp_millis()).await?;
        let shelves = store::open_shelves(&self.pool, Utc::now().timestamp_millis()).await?;
        engine.restore(
            shelves
                .iter()
                .map(shelf_of)
                .collect::<anyhow::Result<Vec<_>>>()?,
            windows.iter().map(window_of).collect(),
        );
        let open = store::load_open(&self.pool).await?;
        tracing::info!(
            open = open.len(),
            maintenance_windows = windows.len(),
            shelves = shelves.len(),
            "exception engine resumes"
        );
        let mut out = Vec::new();
        engine.resume(
            open.iter()
                .map(|e| Resumed {
                    key: Key {
                        rule: e.rule.clone(),
                        subject: e.subject.clone(),
                    },
                    active: e.active,
                    acked_at: e.acked_at,
                    alarm: engine::AlarmState::resumed(e),
                })
                .collect(),
            Utc::now().timestamp_millis(),
            &mut out,
        );
        let ids = store::reserve_ids(&self.pool, RESERVE).await?;
        let engine_flood = engine.flood().map_or(0, |f| f.id);
        let mut service = Service {
            engine,
            pool: self.pool.clone(),
            outlets: self.outlets.clone(),
            metrics: self.metrics.clone(),
            open: open
                .into_iter()
                .map(|e| {
                    let key = Key {
                        rule: e.rule.clone(),
                        subject: e.subject.clone(),
                    };
                    (key, e)
                })
                .collect(),
            ids: ids.into(),
            reserve_tried: std::time::Instant::now(),
            journal: self.journal.clone(),
            journalling: false,
            layout: self.layout.clone(),
            ranked_by,
            app_url: self.app_url.clone(),
            floods_unstored: std::collections::BTreeMap::new(),
            last_flood: engine_flood,
        };
        service.count_open();
        service.commit(out).await;
        service
            .metrics
            .flood_on
            .store(i64::from(service.engine.flood().is_some()), Relaxed);
        Ok(service)
    }
}

struct Service {
    engine: Engine,
    pool: PgPool,
    outlets: Arc<Outlets>,
    metrics: Arc<Metrics>,
    /// Every open exception as last pushed, stored or not.
    open: HashMap<Key, ExceptionInfo>,
    /// Ids taken from the database's sequence ahead of need.
    ids: std::collections::VecDeque<i64>,
    reserve_tried: std::time::Instant,
    journal: Arc<Journal>,
    /// Steps are going to the journal (logged when it starts and ends).
    journalling: bool,
    layout: Arc<YardLayout>,
    /// The layout the engine's criticalities come from.
    ranked_by: Option<Arc<Layout>>,
    /// The app's address, for the links in flood summaries.
    app_url: String,
    /// Floods whose latest state the database did not take yet, by id
    /// (retried at every tick; a later state replaces an earlier one).
    floods_unstored: std::collections::BTreeMap<i64, trackside_wire::FloodInfo>,
    /// The latest flood seen, to count each once.
    last_flood: i64,
}

/// Acknowledgements waiting for the engine's task. A full queue makes the
/// HTTP request wait, never the ingest path.
const COMMAND_QUEUE: usize = 64;
/// Ids the journal's writer gave exceptions that had none.
const LEARNED_QUEUE: usize = 1_024;
/// Floods whose latest state waits for the database, at most.
const FLOODS_UNSTORED: usize = 16;
/// Inputs judged in one engine step, whose transitions are stored in one
/// transaction.
const INPUTS_PER_STEP: usize = 256;

impl Service {
    async fn run(
        mut self,
        inputs: &mut mpsc::Receiver<Input>,
        commands: &mut mpsc::Receiver<Command>,
        learned: &mut mpsc::Receiver<(Key, i64)>,
        tick: Duration,
        role: &mut watch::Receiver<bool>,
    ) -> Ended {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending = Vec::new();
        loop {
            let mut out = Vec::new();
            tokio::select! {
                biased;
                Some((key, id)) = learned.recv() => {
                    if let Some(open) = self.open.get_mut(&key)
                        && open.id == 0
                    {
                        open.id = id;
                    }
                    continue;
                }
                true = crate::cluster::until(role, false) => return Ended::Lost,
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
                            Input::Spool { state, at } => {
                                self.engine.spool(&state, at, &mut out);
                            }
                            Input::Occupations { circuit, occupations } => {
                                self.engine.occupations(&circuit, &occupations, &mut out);
                            }
                            Input::Health { circuit, score, worst, at } => {
                                self.engine.health(&circuit, score, &worst, at, &mut out);
                            }
                            Input::Clock { gateway, offset_ms, at } => {
                                self.engine.clock(&gateway, offset_ms, at, &mut out);
                            }
                        }
                    }
                }
                Some(command) = commands.recv() => match command {
                    Command::Ack { id, by, comment, start_by, reply } => {
                        let answer = if tokio::time::Instant::now() > start_by || reply.is_closed() {
                            self.metrics.exception_acks_refused.fetch_add(1, Relaxed);
                            Err(AckFailure::Unavailable(
                                "the exception engine is busy (is the database slow?): nothing \
                                 was recorded, try again"
                                    .into(),
                            ))
                        } else {
                            self.acknowledge(id, &by, &comment).await
                        };
                        let _ = reply.send(answer);
                        continue;
                    }
                    Command::AddWindow(window) => self.engine.add_window(window),
                    Command::EndWindow { id, at } => {
                        self.engine.end_window(id, at, &mut out);
                    }
                    Command::Shelve { shelf, reply } => {
                        let at = Utc::now().timestamp_millis();
                        let _ = reply.send(self.engine.shelve(shelf, at, &mut out));
                    }
                    Command::Unshelve { id, by, at } => {
                        self.engine.unshelve(id, &by, at, &mut out);
                    }
                },
                _ = ticker.tick() => {
                    self.follow_layout();
                    self.engine.tick(Utc::now().timestamp_millis(), &mut out);
                    self.top_up_ids().await;
                    self.store_floods().await;
                }
            }
            self.commit(out).await;
            self.floods_changed().await;
        }
        tracing::info!("exception engine stopped");
        Ended::Closed
    }

    async fn acknowledge(
        &mut self,
        id: i64,
        by: &str,
        comment: &str,
    ) -> Result<ExceptionInfo, AckFailure> {
        let away = || {
            AckFailure::Unavailable(
                "the database is unreachable, so the acknowledgement cannot be recorded now: \
                 nothing was changed. Alarms are still raised and shown; acknowledge once the \
                 database is back."
                    .into(),
            )
        };
        if !self.journal.is_empty() {
            self.metrics.exception_acks_refused.fetch_add(1, Relaxed);
            return Err(away());
        }
        let found = self
            .open
            .iter()
            .find(|(_, e)| e.id == id)
            .map(|(k, e)| (k.clone(), e.acked_by.clone()));
        let Some((key, acked_by)) = found else {
            return match tokio::time::timeout(STORE_WAIT, store::get(&self.pool, id)).await {
                Ok(Ok(Some(_))) => Err(AckFailure::Closed),
                Ok(Ok(None)) => Err(AckFailure::NotFound),
                _ => {
                    self.metrics.exception_acks_refused.fetch_add(1, Relaxed);
                    Err(away())
                }
            };
        };
        // The engine cannot take an acknowledgement back: make sure the
        // database answers before it is given one.
        let probe = sqlx::query("SELECT 1").execute(&self.pool);
        if !matches!(tokio::time::timeout(STORE_WAIT, probe).await, Ok(Ok(_))) {
            self.metrics.exception_acks_refused.fetch_add(1, Relaxed);
            return Err(away());
        }
        let mut out = Vec::new();
        let at = Utc::now().timestamp_millis();
        match self.engine.acknowledge(&key, by, comment, at, &mut out) {
            Ok(()) => {}
            Err(AckError::NotOpen) => return Err(AckFailure::Closed),
            Err(AckError::AlreadyAcknowledged) => {
                return Err(AckFailure::AlreadyAcknowledged(acked_by));
            }
        }
        let events = self.commit(out).await;
        let info = events
            .into_iter()
            .rev()
            .find(|e| e.exception.id == id)
            .map(|e| e.exception)
            .ok_or_else(|| AckFailure::Internal(anyhow::anyhow!("acknowledgement not recorded")))?;
        if info.stored {
            Ok(info)
        } else {
            Err(AckFailure::Unavailable(
                "the database stopped answering while the acknowledgement was stored: it is \
                 kept and will be stored when the database is back"
                    .into(),
            ))
        }
    }

    /// Turns one step's transitions into exception states, stores them if
    /// the database takes them now (else journals them), then pushes them.
    async fn commit(&mut self, out: Vec<Transition>) -> Vec<ExceptionEvent> {
        if out.is_empty() {
            return Vec::new();
        }
        let mut events = Vec::with_capacity(out.len());
        for transition in &out {
            let previous = self.open.get(&transition.key);
            let described = previous
                .map(|p| (p.kind, p.severity))
                .or_else(|| self.engine.describe_rule(&transition.key.rule));
            let Some((kind, severity)) = described else {
                tracing::error!(rule = %transition.key.rule, "transition of an unknown rule dropped");
                continue;
            };
            let id = match previous {
                Some(p) => p.id,
                None => self.ids.pop_front().unwrap_or(0),
            };
            let info = lifecycle::advance(previous, transition, id, kind, severity);
            if transition.closes {
                self.open.remove(&transition.key);
            } else {
                self.open.insert(transition.key.clone(), info.clone());
            }
            events.push(ExceptionEvent {
                transition: transition_info(transition),
                exception: info,
                announced: transition.announce.is_some(),
            });
        }

        let stored = self.journal.is_empty()
            && events.iter().all(|e| e.exception.id != 0)
            && self.store_now(&mut events).await;
        if stored {
            if self.journalling {
                tracing::info!("exception transitions are stored at once again");
                self.journalling = false;
            }
        } else {
            if !self.journalling {
                tracing::warn!(
                    "the database is not taking exception transitions: journalling them and \
                     showing them live as not yet stored"
                );
                self.journalling = true;
            }
            for event in &mut events {
                event.exception.stored = false;
            }
            self.journal.push(&events);
        }

        for event in &events {
            let transition = &event.transition;
            if transition.kind == trackside_wire::TransitionKind::Raised
                && event.transition.at == event.exception.raised_at
                && !event.exception.suppressed
            {
                self.metrics.exceptions_raised_by_priority[event.exception.base_priority as usize]
                    .fetch_add(1, Relaxed);
            }
            use trackside_wire::TransitionKind as K;
            let counter = match transition.kind {
                K::Raised => Some(&self.metrics.exceptions_raised),
                K::Cleared => Some(&self.metrics.exceptions_cleared),
                K::Acknowledged => Some(&self.metrics.exceptions_acknowledged),
                K::Realarmed => Some(&self.metrics.exceptions_realarmed),
                K::Escalated => Some(&self.metrics.exceptions_escalated),
                K::Released => Some(&self.metrics.exceptions_released),
                // Operators' actions: counted in the audit trail.
                K::Shelved | K::Unshelved => None,
                // Counted by `trackside_flood_*`.
                K::Grouped => None,
            };
            if let Some(counter) = counter {
                counter.fetch_add(1, Relaxed);
            }
            tracing::info!(
                id = event.exception.id,
                rule = %event.exception.rule,
                subject = %event.exception.subject,
                transition = transition.kind.as_str(),
                stored = event.exception.stored,
                "{}",
                transition.message
            );
            // Without an id it is shown once the journal's writer has
            // stored (and numbered) it.
            if event.exception.id != 0 {
                self.outlets.push(event);
            }
        }
        self.count_open();
        events
    }

    /// Stores, shows and notifies what changed of a flood in the step just
    /// committed (after its transitions, so a summary never precedes the
    /// raises it counts).
    async fn floods_changed(&mut self) {
        for change in self.engine.take_flood_changes() {
            let flood = change.flood;
            if flood.id > self.last_flood {
                self.last_flood = flood.id;
                self.metrics.floods_started.fetch_add(1, Relaxed);
            }
            for notice in &change.notices {
                let summary = match notice {
                    flood::Notice::Group { key, update } => {
                        let Some(group) = flood.groups.iter().find(|g| &g.key == key) else {
                            continue;
                        };
                        let kind = if *update {
                            notify::SummaryKind::Update
                        } else {
                            notify::SummaryKind::Formed
                        };
                        notify::FloodSummary::new(
                            kind,
                            flood.clone(),
                            Some(group.clone()),
                            &self.app_url,
                        )
                    }
                    flood::Notice::Ended => notify::FloodSummary::new(
                        notify::SummaryKind::Ended,
                        flood.clone(),
                        None,
                        &self.app_url,
                    ),
                };
                tracing::warn!(flood = flood.id, "{}", summary.text);
                self.metrics.flood_summaries.fetch_add(1, Relaxed);
                if let Some(webhook) = &self.outlets.webhook {
                    webhook.notify_flood(summary);
                }
            }
            self.outlets.live.publish_flood(&flood);
            self.floods_unstored.insert(flood.id, flood);
            // A database away for days: the oldest floods' final states
            // give way (they were shown and notified).
            while self.floods_unstored.len() > FLOODS_UNSTORED {
                if let Some((id, _)) = self.floods_unstored.pop_first() {
                    tracing::error!(
                        flood = id,
                        "the alarm flood's row could not be stored and is given up"
                    );
                }
            }
        }
        self.metrics
            .flood_on
            .store(i64::from(self.engine.flood().is_some()), Relaxed);
        self.metrics
            .flood_raises_grouped
            .fetch_add(self.engine.take_grouped(), Relaxed);
        if !self.floods_unstored.is_empty() {
            self.store_floods().await;
        }
    }

    /// Writes the floods' latest states the database has not taken yet.
    async fn store_floods(&mut self) {
        while let Some((&id, flood)) = self.floods_unstored.first_key_value() {
            match tokio::time::timeout(STORE_WAIT, store::write_flood(&self.pool, flood)).await {
                Ok(Ok(())) => {
                    self.floods_unstored.remove(&id);
                }
                Ok(Err(err)) => {
                    tracing::warn!(
                        flood = id,
                        "storing the alarm flood failed, retrying: {err:#}"
                    );
                    return;
                }
                Err(_) => {
                    tracing::warn!(flood = id, "storing the alarm flood timed out, retrying");
                    return;
                }
            }
        }
    }

    /// Ranks new exceptions by the layout in force, once it changed.
    fn follow_layout(&mut self) {
        let current = self.layout.layout();
        let same = match (&current, &self.ranked_by) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.engine.set_criticalities(
                current
                    .as_deref()
                    .map(Criticalities::from_layout)
                    .unwrap_or_default(),
            );
            self.ranked_by = current;
        }
    }

    /// The open-exception gauges, by priority.
    fn count_open(&self) {
        let mut by_priority = [0i64; 3];
        let (mut suppressed, mut shelved) = (0, 0);
        for exception in self.open.values() {
            by_priority[exception.priority as usize] += 1;
            suppressed += i64::from(exception.suppressed);
            shelved += i64::from(exception.shelf.is_some());
        }
        let metrics = &self.metrics;
        metrics
            .exceptions_open
            .store(self.open.len() as i64, Relaxed);
        for (gauge, count) in metrics.exceptions_open_by_priority.iter().zip(by_priority) {
            gauge.store(count, Relaxed);
        }
        metrics
            .exceptions_open_suppressed
            .store(suppressed, Relaxed);
        metrics.exceptions_open_shelved.store(shelved, Relaxed);
    }

    /// Stores a step now, or says it could not within [`STORE_WAIT`].
    async fn store_now(&mut self, events: &mut [ExceptionEvent]) -> bool {
        let mut assigned = HashMap::new();
        match tokio::time::timeout(STORE_WAIT, store::write(&self.pool, events, &mut assigned))
            .await
        {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                self.metrics.exception_store_errors.fetch_add(1, Relaxed);
                tracing::error!("storing exception transitions failed: {err}");
                false
            }
            Err(_) => {
                self.metrics.exception_store_errors.fetch_add(1, Relaxed);
                tracing::error!(
                    "storing exception transitions took longer than {} s",
                    STORE_WAIT.as_secs()
                );
                false
            }
        }
    }

    /// Takes more ids while the database answers and the reserve runs low.
    async fn top_up_ids(&mut self) {
        if self.ids.len() >= RESERVE_LOW
            || self.reserve_tried.elapsed() < RESERVE_RETRY
            || !self.journal.is_empty()
        {
            return;
        }
        self.reserve_tried = std::time::Instant::now();
        let wanted = RESERVE - self.ids.len();
        match tokio::time::timeout(STORE_WAIT, store::reserve_ids(&self.pool, wanted)).await {
            Ok(Ok(ids)) => self.ids.extend(ids),
            Ok(Err(err)) => tracing::warn!("reserving exception ids failed: {err:#}"),
            Err(_) => tracing::warn!("reserving exception ids timed out"),
        }
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
