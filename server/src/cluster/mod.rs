//! Which instance does the work that must happen once: the exception
//! engine, the rollup job, forecasting, notifications.
//!
//! Several Trackside instances may share one PostgreSQL (issue 19). Ingest
//! and HTTP scale out, but a job such as the exception engine needs every
//! reading of a channel in order and must raise an alarm once, so it runs
//! on one instance at a time. PostgreSQL already knows which processes are
//! alive: each instance keeps one dedicated connection (never a pooled one,
//! which the pool could hand to a query or close) and takes one session
//! advisory lock per [`Role`] on it. When the instance dies its session
//! ends, PostgreSQL releases the locks, and another instance's next try
//! takes them. No membership table, no heartbeat rows, no clock.
//!
//! A lone instance (embedded broker, or an external one without a shared
//! subscription) is alone on its database by the ingest lock, so it keeps
//! its roles through a database outage: the exception engine goes on
//! judging, as the durability design wants, and the locks are taken again
//! when the database returns.
//!
//! Fencing, with a shared subscription: the holder checks its connection
//! every [`CHECK_EVERY`]; when a check fails or takes longer than
//! [`CHECK_TIMEOUT`] it gives every role up at once (its jobs are cancelled) before PostgreSQL can have released
//! the lock, since the server only notices a silent peer after its TCP
//! keepalives (set to [`SERVER_KEEPALIVE_SECS`] on the session) run out.
//! So two instances never run a job at once, and the takeover time is:
//! a process that dies: its kernel closes the socket, the lock is free at
//! once, taken within [`TRY_EVERY`]; a host or network that goes silent:
//! the server's keepalive (about 9 s) plus [`TRY_EVERY`], under 11 s.
//!
//! A job joins with one line: add a [`Role`] and start it with
//! [`Cluster::run_while_held`], which runs it while the role is held,
//! cancels it when the role is lost and starts it again when it returns.
//! The lease also refuses unsafe mixes at start ([`Cluster::start`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::Context as _;
use sqlx::{ConnectOptions as _, Connection as _, PgConnection, PgPool};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Work that runs on one instance at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The exception engine and what it feeds: raising, clearing and
    /// acknowledging exceptions, the exception journal's replay and the
    /// notifications (the outbox is drained only where this role is held).
    /// Jobs whose output goes to the engine run under this role too (the
    /// forecaster, the occupation job): an engine standing by drops its
    /// inputs, so they must run where the engine does.
    Engine,
    /// The rollup job (minute and tier rollups, retention).
    Rollup,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Engine, Role::Rollup];

    /// The name on `/readyz` and in `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Engine => "engine",
            Role::Rollup => "rollup",
        }
    }

    /// The second key of the role's advisory lock. Never renumber one: two
    /// versions of Trackside may share a database during an upgrade.
    fn lock(self) -> i32 {
        match self {
            Role::Engine => 1,
            Role::Rollup => 2,
            // 3 was a forecast role of its own; never reuse it.
        }
    }
}

/// The first key of every advisory lock of this module ("trks"), apart
/// from the single-key locks elsewhere in Trackside.
const LOCK_CLASS: i32 = 0x7472_6b73;
/// The lock that says how an instance takes its readings (see [`Ingest`]).
const INGEST_LOCK: i32 = 100;

/// How often an instance tries to take the roles it does not hold.
pub const TRY_EVERY: Duration = Duration::from_secs(1);
/// How often the holder checks its lease connection.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A check slower than this gives the roles up.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// `tcp_keepalives_idle`, `_interval` and `_count` of the lease session:
/// the server frees a silent holder's locks after about 5 + 2 x 2 = 9 s,
/// later than the holder gives them up (at most `CHECK_EVERY +
/// CHECK_TIMEOUT`, 3 s). Unix-socket sessions have no keepalive: the
/// socket closes with the process.
pub const SERVER_KEEPALIVE_SECS: (u32, u32, u32) = (5, 2, 2);

/// How an instance takes readings, which decides who may share its
/// database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    /// The embedded broker: gateways connect to this instance only, and a
    /// second instance on the database would split them without anyone
    /// judging all of a channel's readings. Alone on its database.
    Embedded,
    /// An external broker without a shared subscription: each instance
    /// would take and store every reading. Alone on its database.
    External,
    /// An external broker's shared subscription: any number of instances.
    Shared,
}

/// This instance's lease: which roles it holds, kept on one connection.
pub struct Cluster {
    instance: String,
    roles: Vec<(Role, watch::Sender<bool>)>,
    /// Times a role was taken and given up on this instance.
    taken: AtomicU64,
    lost: AtomicU64,
}

impl Cluster {
    /// Opens the lease connection, refuses an unsafe mix of instances, and
    /// tries every role once before returning, so a lone instance holds
    /// them all when `start` goes on. Then keeps trying and checking until
    /// `release` is cancelled, which gives the roles back at once (cancel
    /// it once the jobs have stopped, and await the task).
    pub async fn start(
        pool: &PgPool,
        instance: String,
        ingest: Ingest,
        release: CancellationToken,
    ) -> anyhow::Result<(Arc<Cluster>, JoinHandle<()>)> {
        let cluster = Arc::new(Cluster {
            instance,
            roles: Role::ALL
                .iter()
                .map(|&role| (role, watch::Sender::new(false)))
                .collect(),
            taken: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        });
        let options = (*pool.connect_options()).clone();
        let mut conn = cluster.connect(&options, ingest).await?;
        cluster.try_roles(&mut conn).await;
        let task = tokio::spawn(cluster.clone().keep(conn, options, ingest, release));
        Ok((cluster, task))
    }

    /// The name this instance goes by in `pg_stat_activity`, logs and
    /// `/metrics`.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Whether this instance holds `role` now, and a way to hear changes.
    pub fn watch(&self, role: Role) -> watch::Receiver<bool> {
        self.sender(role).subscribe()
    }

    pub fn holds(&self, role: Role) -> bool {
        *self.sender(role).borrow()
    }

    /// The roles this instance holds, by name.
    pub fn held(&self) -> Vec<&'static str> {
        self.roles
            .iter()
            .filter(|(_, held)| *held.borrow())
            .map(|(role, _)| role.name())
            .collect()
    }

    /// Runs `job` while this instance holds `role`: started when the role
    /// is taken, its token cancelled when the role is lost or at shutdown
    /// (it must then end promptly), started again when the role returns.
    pub fn run_while_held<F, Fut>(
        self: &Arc<Self>,
        role: Role,
        shutdown: CancellationToken,
        mut job: F,
    ) -> JoinHandle<()>
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut held = self.watch(role);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    open = until(&mut held, true) => if !open { return },
                    () = shutdown.cancelled() => return,
                }
                let tenure = shutdown.child_token();
                let run = job(tenure.clone());
                tokio::pin!(run);
                tokio::select! {
                    () = &mut run => {
                        // The job ended by itself (shutdown): nothing to restart.
                        return;
                    }
                    _ = until(&mut held, false) => {
                        tracing::warn!(role = role.name(), "role lost: stopping its job");
                        tenure.cancel();
                        run.await;
                    }
                }
            }
        })
    }

    /// `/metrics` lines: one gauge per role, 1 where held.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP trackside_cluster_role_held 1 while this instance holds the role (one instance per database holds each).\n\
             # TYPE trackside_cluster_role_held gauge"
        );
        for (role, held) in &self.roles {
            let _ = writeln!(
                out,
                "trackside_cluster_role_held{{role=\"{}\",instance=\"{}\"}} {}",
                role.name(),
                self.instance.escape_default(),
                u8::from(*held.borrow())
            );
        }
        let _ = writeln!(
            out,
            "# HELP trackside_cluster_roles_taken_total Roles this instance took.\n\
             # TYPE trackside_cluster_roles_taken_total counter\n\
             trackside_cluster_roles_taken_total {}\n\
             # HELP trackside_cluster_roles_lost_total Roles this instance gave up because its lease connection failed.\n\
             # TYPE trackside_cluster_roles_lost_total counter\n\
             trackside_cluster_roles_lost_total {}",
            self.taken.load(Relaxed),
            self.lost.load(Relaxed)
        );
    }

    fn sender(&self, role: Role) -> &watch::Sender<bool> {
        // Every role is in `roles` (built from `Role::ALL`).
        &self
            .roles
            .iter()
            .find(|(r, _)| *r == role)
            .expect("every role has a sender")
            .1
    }

    /// A new lease connection with the ingest lock taken.
    async fn connect(
        &self,
        options: &sqlx::postgres::PgConnectOptions,
        ingest: Ingest,
    ) -> anyhow::Result<PgConnection> {
        let options = options
            .clone()
            .application_name(&format!("trackside lease {}", self.instance))
            .disable_statement_logging();
        let mut conn = options
            .connect()
            .await
            .context("opening the cluster lease connection")?;
        let (idle, interval, count) = SERVER_KEEPALIVE_SECS;
        sqlx::query(
            "SELECT set_config('tcp_keepalives_idle', $1, false), \
             set_config('tcp_keepalives_interval', $2, false), \
             set_config('tcp_keepalives_count', $3, false)",
        )
        .bind(idle.to_string())
        .bind(interval.to_string())
        .bind(count.to_string())
        .execute(&mut conn)
        .await
        .context("setting the lease connection's keepalive")?;
        let exclusive = ingest != Ingest::Shared;
        let sql = if exclusive {
            "SELECT pg_try_advisory_lock($1, $2)"
        } else {
            "SELECT pg_try_advisory_lock_shared($1, $2)"
        };
        let got: bool = sqlx::query_scalar(sql)
            .bind(LOCK_CLASS)
            .bind(INGEST_LOCK)
            .fetch_one(&mut conn)
            .await
            .context("taking the ingest lock")?;
        if !got {
            let _ = conn.close().await;
            anyhow::bail!("{}", refusal(ingest));
        }
        Ok(conn)
    }

    /// Tries to take every role not held; marks each one taken.
    async fn try_roles(&self, conn: &mut PgConnection) {
        for (role, held) in &self.roles {
            if *held.borrow() {
                continue;
            }
            let got = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1, $2)")
                .bind(LOCK_CLASS)
                .bind(role.lock())
                .fetch_one(&mut *conn);
            match tokio::time::timeout(CHECK_TIMEOUT, got).await {
                Ok(Ok(true)) => {
                    tracing::info!(role = role.name(), instance = %self.instance, "role taken");
                    self.taken.fetch_add(1, Relaxed);
                    held.send_replace(true);
                }
                Ok(Ok(false)) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }

    /// On a new lease connection: takes the locks of the roles still held
    /// (a lone instance keeps them through an outage); gives up any that
    /// another instance took meanwhile. False if the connection failed
    /// (try again on a new one).
    async fn retake(&self, conn: &mut PgConnection) -> bool {
        for (role, held) in &self.roles {
            if !*held.borrow() {
                continue;
            }
            let got = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1, $2)")
                .bind(LOCK_CLASS)
                .bind(role.lock())
                .fetch_one(&mut *conn)
                .await;
            match got {
                Ok(true) => {}
                Ok(false) => {
                    self.lost.fetch_add(1, Relaxed);
                    held.send_replace(false);
                    tracing::error!(
                        role = role.name(),
                        "role taken by another instance while the database was away: given up"
                    );
                }
                Err(_) => return false,
            }
        }
        true
    }

    /// Gives every held role up (the connection is gone or silent).
    fn give_up(&self, why: &str) {
        for (role, held) in &self.roles {
            if held.send_replace(false) {
                self.lost.fetch_add(1, Relaxed);
                tracing::error!(role = role.name(), instance = %self.instance, "role given up: {why}");
            }
        }
    }

    async fn keep(
        self: Arc<Self>,
        conn: PgConnection,
        options: sqlx::postgres::PgConnectOptions,
        ingest: Ingest,
        shutdown: CancellationToken,
    ) {
        let mut conn = Some(conn);
        let mut every = tokio::time::interval(TRY_EVERY.min(CHECK_EVERY));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = shutdown.cancelled() => break,
            }
            let Some(c) = conn.as_mut() else {
                match self.connect(&options, ingest).await {
                    Ok(mut c) => {
                        if self.retake(&mut c).await {
                            conn = Some(c);
                        }
                    }
                    Err(err) => {
                        tracing::warn!("cluster lease: {err:#}");
                        // Another instance took the database while it was
                        // away: a lone instance is no longer alone.
                        if err.to_string().contains("another Trackside instance") {
                            self.give_up("another instance uses the database");
                        }
                    }
                }
                continue;
            };
            let ping = sqlx::query("SELECT 1").execute(&mut *c);
            let failed = match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
                Ok(Ok(_)) => {
                    self.try_roles(c).await;
                    None
                }
                Ok(Err(err)) => Some(format!("lease connection failed: {err}")),
                Err(_) => Some(format!(
                    "lease connection silent for {} s",
                    CHECK_TIMEOUT.as_secs()
                )),
            };
            if let Some(why) = failed {
                conn = None;
                if ingest == Ingest::Shared {
                    self.give_up(&why);
                } else {
                    tracing::warn!("{why}: alone on the database, keeping the roles");
                }
            }
        }
        // The jobs see shutdown themselves; closing releases the locks at
        // once so another instance takes over without waiting.
        self.give_up_quietly();
        if let Some(conn) = conn {
            let _ = tokio::time::timeout(CHECK_TIMEOUT, conn.close()).await;
        }
    }

    fn give_up_quietly(&self) {
        for (_, held) in &self.roles {
            held.send_replace(false);
        }
    }
}

/// Waits until a role's state is `state`; false if the lease is gone (it
/// then never changes again).
pub async fn until(role: &mut watch::Receiver<bool>, state: bool) -> bool {
    role.wait_for(|held| *held == state).await.is_ok()
}

/// What an instance refused at start is told.
fn refusal(ingest: Ingest) -> &'static str {
    match ingest {
        Ingest::Embedded => {
            "another Trackside instance already uses this database, and this one runs the \
             embedded MQTT broker: gateways would be split between the instances and no one \
             would judge all of a channel's readings. Give this instance its own database \
             ([database] url), or run every instance against one external broker with a \
             shared subscription ([mqtt.external] with share_group; see docs/scaling.md)"
        }
        Ingest::External => {
            "another Trackside instance already uses this database, and this one subscribes to \
             its external broker without a shared subscription: both would take and judge \
             every reading. Set [mqtt.external] share_group (the same on every instance, with \
             a distinct client_id each; see docs/scaling.md)"
        }
        Ingest::Shared => {
            "a Trackside instance running the embedded MQTT broker, or an external broker \
             without a shared subscription, already uses this database: stop it, or move it \
             to [mqtt.external] with the same share_group as this one (see docs/scaling.md)"
        }
    }
}
