//! Trackside: real-time telemetry for railway-yard track circuits.
//!
//! The binary is glue (configuration, the private database, signals); this
//! library is the server. [`start`] wires one reading path:
//! MQTT broker link -> [`ingest::Pipeline`] -> live fan-out, store writer and
//! rejection store, and serves HTTP beside it. See ARCHITECTURE.md.

// Shared below every stage.
pub mod audit;
pub mod config;
pub mod durable;
pub mod metrics;
pub mod reading;
pub mod socket_table;
pub mod time;

// Which instance runs the work done once per database.
pub mod cluster;

// The reading path, in the order data flows.
pub mod exceptions;
pub mod ingest;
pub mod live;
pub mod store;

// The read path.
pub mod auth;
pub mod export;
pub mod forecast;
pub mod grafana;
pub mod health;
pub mod history;
pub mod http;
pub mod yard;

// Tools: the simulated yard, the demo and the fault drill.
pub mod sim;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use anyhow::Context as _;
use chrono::TimeDelta;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Applies the embedded migrations (idempotent; run at every start).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("../migrations")
        .run(pool)
        .await
        .context("applying database migrations")
}

/// The names in the TLS listener's certificate: the configured ones, or
/// those a gateway on this machine or the local network would use.
fn tls_server_names(configured: &[String]) -> Vec<String> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.push(host.to_owned());
        }
    }
    names
}

/// A running server. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    pub http_addr: SocketAddr,
    /// `https` when `http.tls_cert` is set, else `http`.
    pub http_scheme: &'static str,
    pub mqtt_addr: SocketAddr,
    pub mqtt_v5_addr: Option<SocketAddr>,
    pub mqtt_tls_addr: Option<SocketAddr>,
    pub metrics: Arc<metrics::Metrics>,
    /// The forecasting models and jobs: the demo trains its models here.
    pub forecast: Arc<forecast::Forecasting>,
    /// Which storage path serves history.
    pub storage: store::rollup::StoragePath,
    shutdown: CancellationToken,
    http: JoinHandle<()>,
    ingest: JoinHandle<()>,
    store: JoinHandle<()>,
    rejections: JoinHandle<()>,
    exceptions: JoinHandle<()>,
    journal: JoinHandle<()>,
    webhooks: Vec<JoinHandle<()>>,
    spool_watch: JoinHandle<()>,
    spool: Arc<store::spool::Spool>,
    rollup: JoinHandle<()>,
    occupations: JoinHandle<()>,
    forecaster: JoinHandle<()>,
    /// The roles this instance holds; released last at shutdown.
    pub cluster: Arc<cluster::Cluster>,
    release: CancellationToken,
    lease: JoinHandle<()>,
}

/// Starts the broker, the ingest path and HTTP on an already migrated pool.
pub async fn start(config: &Config, pool: PgPool) -> anyhow::Result<Running> {
    config.validate()?;
    let metrics = Arc::new(metrics::Metrics::default());
    let registry = Arc::new(
        live::registry::Registry::load(&pool)
            .await
            .context("loading channels")?,
    );
    let live = live::LiveHub::new(config.ingest.live_queue, metrics.clone());
    let shutdown = CancellationToken::new();
    let admission = Arc::new(
        ingest::admission::Admission::load(&config.ingest, &pool)
            .await
            .context("loading channel owners")?,
    );
    let release = CancellationToken::new();
    let (cluster, lease) = cluster::Cluster::start(
        &pool,
        instance_name(config),
        match &config.mqtt.external {
            None => cluster::Ingest::Embedded,
            Some(external) if external.share_group.is_none() => cluster::Ingest::External,
            Some(_) => cluster::Ingest::Shared,
        },
        release.clone(),
    )
    .await?;

    // Before the store writer, which marks late readings on TimescaleDB.
    let storage = store::rollup::prepare(&pool, &config.history, &config.yard.timezone).await?;
    let spool_dir = config.database.data_dir.join("spool");
    let spool_config = store::spool::SpoolConfig {
        max_bytes: config.ingest.spool_max_bytes,
        fsync_window: config
            .ingest
            .spool_fsync_ms
            .map(std::time::Duration::from_millis),
        // The embedded broker acknowledges a publish before Trackside sees
        // it: refusing at the bound would lose the newest readings, so the
        // oldest go. An external broker keeps what is not acknowledged.
        when_full: if config.mqtt.external.is_some() {
            durable::WhenFull::Refuse
        } else {
            durable::WhenFull::DropOldest
        },
    };
    let spool = Arc::new(
        tokio::task::spawn_blocking(move || {
            store::spool::Spool::open(&spool_dir, &spool_config, Arc::default())
        })
        .await
        .context("opening the spool")??,
    );
    let (store_queue, store_queue_rx) =
        store::queue::StoreQueue::new(config.ingest.store_queue_readings, metrics.clone());
    let store = tokio::spawn(
        store::writer::StoreWriter::new(
            pool.clone(),
            metrics.clone(),
            spool.clone(),
            shutdown.clone(),
            config.ingest.store_batch_rows,
            storage,
        )
        .run(store_queue_rx),
    );
    let (rejection_queue, rejection_queue_rx) =
        store::rejections::RejectionQueue::new(metrics.clone());
    tokio::spawn(store::rejections::run_retention(
        pool.clone(),
        config.ingest.rejected_retention_days,
        shutdown.clone(),
    ));
    let rejections = tokio::spawn(store::rejections::run_writer(
        pool.clone(),
        metrics.clone(),
        rejection_queue_rx,
        shutdown.clone(),
    ));

    // Before the exceptions: it names each circuit's criticality.
    let layout = {
        let known: std::collections::HashSet<String> = registry
            .list(chrono::Utc::now())
            .into_iter()
            .map(|c| c.circuit)
            .collect();
        let path = yard::layout_path(config.yard.layout.as_deref(), &config.database.data_dir);
        tokio::task::spawn_blocking(move || {
            yard::YardLayout::load(path, &|circuit| known.contains(circuit))
        })
        .await
        .context("loading the yard layout")?
    };
    let exceptions = exceptions::start(
        &config.exceptions,
        exceptions::Environment {
            pool: pool.clone(),
            live: live.clone(),
            metrics: metrics.clone(),
            data_dir: config.database.data_dir.clone(),
            fsync_window: config
                .ingest
                .spool_fsync_ms
                .map(std::time::Duration::from_millis),
            shutdown: shutdown.clone(),
            layout: layout.clone(),
            role: cluster.watch(cluster::Role::Engine),
            instance: cluster.instance().to_owned(),
            zone: config
                .yard
                .timezone
                .parse()
                .map_err(|err| anyhow::anyhow!("yard.timezone: {err}"))?,
            app_url: config.exceptions.email.app_url.clone().unwrap_or_else(|| {
                config
                    .http
                    .public_origins
                    .first()
                    .cloned()
                    .unwrap_or_else(|| {
                        let scheme = if config.http.tls_cert.is_some() {
                            "https"
                        } else {
                            "http"
                        };
                        let port = config.http.listen.port();
                        format!("{scheme}://localhost:{port}")
                    })
            }),
        },
    )
    .await
    .context("starting the exception engine")?;
    let spool_handle = spool.clone();
    let spool_watch = tokio::spawn(watch_spool(
        spool.clone(),
        exceptions.feed.clone(),
        config.mqtt.external.is_some(),
        shutdown.clone(),
    ));

    let forecast = forecast::Forecasting::new(
        pool.clone(),
        config.forecast.clone(),
        &config.database.data_dir,
    );
    let forecaster = {
        let (forecast, feed) = (forecast.clone(), exceptions.feed.clone());
        // It feeds the engine, so it runs where the engine does.
        cluster.run_while_held(cluster::Role::Engine, shutdown.clone(), move |stop| {
            forecast::run(forecast.clone(), feed.clone(), stop)
        })
    };

    // Occupation events and the rules judged on them, from stored readings;
    // it feeds the engine, so it runs where the engine does.
    let occupations = {
        let (pool, feed, metrics) = (pool.clone(), exceptions.feed.clone(), metrics.clone());
        let job = health::job::JobConfig::new(
            config.health.clone(),
            exceptions.handle.rules(),
            &config.yard.timezone,
        );
        cluster.run_while_held(cluster::Role::Engine, shutdown.clone(), move |stop| {
            health::job::run(
                pool.clone(),
                feed.clone(),
                job.clone(),
                metrics.clone(),
                stop,
            )
        })
    };

    tokio::spawn(
        admission
            .clone()
            .listen(registry.clone(), pool.clone(), shutdown.clone()),
    );
    let pipeline = Arc::new(ingest::Pipeline {
        admission: admission.clone(),
        registry: registry.clone(),
        live: live.clone(),
        metrics: metrics.clone(),
        spool: spool.clone(),
        store: store_queue,
        rejections: rejection_queue,
        max_future: TimeDelta::seconds(config.ingest.max_future_secs),
        exceptions: exceptions.feed,
        sparkplug: Arc::new(ingest::sparkplug::Sessions::new(
            config.ingest.sparkplug.clone(),
            metrics.clone(),
        )),
        redelivers: config.mqtt.external.is_some(),
    });
    let ingest_running = Arc::new(AtomicBool::new(true));
    let (ingest, mqtt) = match &config.mqtt.external {
        None => {
            start_embedded_ingest(
                config,
                &pool,
                &metrics,
                pipeline,
                &shutdown,
                &ingest_running,
            )
            .await?
        }
        Some(external) => {
            let (host, port) = external.host_port()?;
            let address = tokio::net::lookup_host((host, port))
                .await
                .ok()
                .and_then(|mut found| found.next())
                .with_context(|| format!("cannot resolve the external MQTT broker {host:?}"))?;
            let _ = metrics.mqtt_external.set(external.address.clone());
            let task = {
                let running = ingest_running.clone();
                let link = ingest::external::run_external_link(
                    external.clone(),
                    pipeline,
                    shutdown.clone(),
                );
                tokio::spawn(async move {
                    link.await;
                    running.store(false, Relaxed);
                })
            };
            tracing::info!(broker = %external.address, "taking readings from an external MQTT broker");
            (
                task,
                MqttAddresses {
                    plain: address,
                    v5: None,
                    tls: None,
                },
            )
        }
    };

    let rollup = {
        let (pool, history, metrics) = (pool.clone(), config.history.clone(), metrics.clone());
        cluster.run_while_held(cluster::Role::Rollup, shutdown.clone(), move |stop| {
            store::rollup::run(
                pool.clone(),
                history.clone(),
                storage,
                metrics.clone(),
                stop,
            )
        })
    };
    let history =
        history::HistorySettings::new(&pool, config.history.clone(), &config.yard.timezone).await;

    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http.listen))?;
    let http_addr = listener.local_addr()?;
    let listener = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => {
            http::tls::HttpListener::tls(listener, cert, key, metrics.clone(), shutdown.clone())
                .context("serving HTTPS")?
        }
        _ => http::tls::HttpListener::plain(listener)?,
    };
    let https = config.http.tls_cert.is_some();
    let origins = auth::origin::Origins::new(&config.http.public_origins, http_addr, https);
    let auth = Arc::new(auth::Auth {
        config: config.auth.clone(),
        pool: pool.clone(),
        secure_cookie: https || origins.all_https(),
        https,
        origins,
        trusted_proxies: config
            .http
            .trusted_proxies
            .iter()
            .map(|p| auth::address::IpRange::parse(p))
            .collect::<anyhow::Result<_>>()?,
        hasher: auth::password::Hasher::new(metrics.clone()),
        revocations: auth::revoke::Revocations::new(),
        scrapes: auth::tokens::RecentScrapes::default(),
        metrics: metrics.clone(),
    });
    auth.start(shutdown.clone());
    let state = http::AppState {
        pool,
        admission,
        registry,
        live,
        metrics: metrics.clone(),
        spool,
        yard: Arc::new(config.yard.clone()),
        ingest_running,
        redelivers: config.mqtt.external.is_some(),
        shutdown: shutdown.clone(),
        live_send_timeout: std::time::Duration::from_secs(config.ingest.live_send_timeout_secs),
        exceptions: exceptions.handle,
        history,
        export: export::ExportSettings::new(&config.yard.timezone),
        forecast: forecast.clone(),
        layout,
        auth,
        pki_dir: config.tls_dir(),
        cluster: cluster.clone(),
    };
    let app = http::router(state, &config.http.assets_dir)
        .into_make_service_with_connect_info::<http::tls::Peer>();
    let http = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(err) = served {
                tracing::error!("HTTP server failed: {err}");
            }
        })
    };
    let http_scheme = if https { "https" } else { "http" };
    tracing::info!(%http_addr, http_scheme, "HTTP listening");

    Ok(Running {
        http_addr,
        http_scheme,
        mqtt_addr: mqtt.plain,
        mqtt_v5_addr: mqtt.v5,
        mqtt_tls_addr: mqtt.tls,
        metrics,
        forecast,
        storage,
        shutdown,
        http,
        ingest,
        store,
        rejections,
        exceptions: exceptions.task,
        journal: exceptions.journal,
        webhooks: exceptions.webhooks,
        spool_watch,
        spool: spool_handle,
        rollup,
        occupations,
        forecaster,
        cluster,
        release,
        lease,
    })
}

/// The name an instance goes by among those sharing a database: its
/// external session's client id (distinct per instance, docs/scaling.md),
/// else the host's name.
fn instance_name(config: &Config) -> String {
    if let Some(external) = &config.mqtt.external {
        return external.client_id.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|host| host.trim().to_owned())
        .ok()
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "trackside".to_owned())
}

/// Tells the exception engine how full the spool is, once a second, until
/// shutdown.
async fn watch_spool(
    spool: Arc<store::spool::Spool>,
    feed: exceptions::Feed,
    external: bool,
    shutdown: CancellationToken,
) {
    let at_bound_policy = if external {
        "new messages are left unacknowledged at the external broker"
    } else {
        "the oldest unstored readings are dropped"
    };
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let health = spool.health();
        let state = exceptions::SpoolState {
            fill: health.fill(),
            bytes: health.bytes,
            max_bytes: health.max_bytes,
            error: health.error,
            at_bound_policy,
        };
        feed.spool(state, chrono::Utc::now());
    }
}

/// Where gateways connect: the embedded broker's listeners, or the external
/// broker's address.
struct MqttAddresses {
    plain: SocketAddr,
    v5: Option<SocketAddr>,
    tls: Option<SocketAddr>,
}

/// Starts the embedded broker and the task that reads its ingest link.
async fn start_embedded_ingest(
    config: &Config,
    pool: &PgPool,
    metrics: &Arc<metrics::Metrics>,
    pipeline: Arc<ingest::Pipeline>,
    shutdown: &CancellationToken,
    running: &Arc<AtomicBool>,
) -> anyhow::Result<(JoinHandle<()>, MqttAddresses)> {
    let mqtt_config = config.mqtt.clone();
    let checker = (!config.mqtt.allow_anonymous)
        .then(|| ingest::credentials::spawn_checker(pool.clone(), metrics.clone()));
    let tls_dir = config.tls_dir();
    let server_names = tls_server_names(&config.mqtt.tls_server_names);
    let (broker, tls_files) = tokio::task::spawn_blocking(move || {
        let tls_files = mqtt_config
            .tls_listen
            .map(|_| ingest::pki::prepare(&tls_dir, &server_names))
            .transpose()
            .context("preparing the MQTT TLS certificates")?;
        anyhow::Ok((ingest::broker::start(&mqtt_config)?, tls_files))
    })
    .await
    .context("starting the MQTT broker")??;
    // Gateways connect to the front; the broker listens on loopback only.
    let front = ingest::front::start(
        &config.mqtt,
        tls_files,
        checker,
        pipeline.clone(),
        broker.backend.clone(),
        shutdown.clone(),
    )
    .await?;
    let _ = metrics.mqtt_listeners.set(
        [
            Some(("mqtt", front.plain)),
            front.v5.map(|addr| ("mqtt5", addr)),
            front.tls.map(|addr| ("mqtts", addr)),
        ]
        .into_iter()
        .flatten()
        .map(|(name, addr)| (name, addr.port()))
        .collect(),
    );
    tokio::spawn(ingest::broker::follow_meters(
        broker.meters,
        broker.alerts,
        metrics.clone(),
    ));
    let ingest = {
        let running = running.clone();
        let shutdown = shutdown.clone();
        // The link's sending half must outlive the reader, or the router
        // drops the subscription; meanwhile it sends Sparkplug commands.
        let stop_sending = shutdown.child_token();
        let sender = tokio::spawn(ingest::broker::send_commands(
            broker.link_tx,
            pipeline.sparkplug.take_commands(),
            stop_sending.clone(),
        ));
        tokio::spawn(async move {
            ingest::broker::run_embedded_link(broker.link_rx, pipeline, shutdown).await;
            running.store(false, Relaxed);
            stop_sending.cancel();
            drop(sender.await);
        })
    };
    let addresses = MqttAddresses {
        plain: front.plain,
        v5: front.v5,
        tls: front.tls,
    };
    Ok((ingest, addresses))
}

/// How long [`Running::shutdown`] lets the writers drain before it stops
/// waiting. Whatever is not stored by then is in the spool (readings) or
/// the journal (exception transitions), and the next start writes it.
pub const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

impl Running {
    /// Stops taking new messages, then waits until everything decoded so far
    /// is written, or for [`SHUTDOWN_DRAIN`] at most, so a dead database or
    /// a webhook receiver that never answers cannot hold a shutdown. The
    /// broker thread stays until the process exits: rumqttd has no stop.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.forecast.stop_training();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_DRAIN;
        // The pipeline (and with it the queues' senders) is dropped when the
        // ingest task ends, which lets the writers drain and finish.
        finish("ingest", self.ingest, deadline).await;
        finish("HTTP", self.http, deadline).await;
        finish("store writer", self.store, deadline).await;
        finish("rejection writer", self.rejections, deadline).await;
        // The forecaster, the spool watch and the occupation job hold feeds of the engine: they
        // end first.
        finish("forecaster", self.forecaster, deadline).await;
        finish("spool watch", self.spool_watch, deadline).await;
        finish("occupation job", self.occupations, deadline).await;
        // The engine stops once every feed is gone; its journal's writer
        // after it, and the webhooks within their grace period.
        finish("exception engine", self.exceptions, deadline).await;
        finish("exception journal", self.journal, deadline).await;
        for webhook in self.webhooks {
            finish("webhook", webhook, deadline).await;
        }
        finish("rollup", self.rollup, deadline).await;
        // Every singleton job has stopped: another instance may take over.
        self.release.cancel();
        finish("cluster lease", self.lease, deadline).await;
        // What the spool holds is on disk before the process goes, unless
        // the disk takes longer than a shutdown may.
        let spool = self.spool;
        let flushed = tokio::task::spawn_blocking(move || spool.flush());
        match tokio::time::timeout(std::time::Duration::from_secs(2), flushed).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!("flushing the spool at shutdown failed: {err}"),
            Err(_) => tracing::error!(
                "the spool's last fsync did not finish within 2 s; leaving it to the page cache"
            ),
        }
    }
}

/// Waits for a task until `deadline`, then stops it.
async fn finish(what: &str, mut task: JoinHandle<()>, deadline: tokio::time::Instant) {
    if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
        tracing::warn!(
            "{what} did not stop within {} s of shutdown; stopped (what it held is in the spool or the journal)",
            SHUTDOWN_DRAIN.as_secs()
        );
        task.abort();
        let _ = task.await;
    }
}
