//! Trackside: real-time telemetry for railway-yard track circuits.
//!
//! The binary is glue (configuration, the private database, signals); this
//! library is the server. [`start`] wires one reading path:
//! MQTT broker link -> [`ingest::Pipeline`] -> live fan-out, store writer and
//! rejection store, and serves HTTP beside it. See ARCHITECTURE.md.

// Shared below every stage.
pub mod audit;
pub mod config;
pub mod metrics;
pub mod reading;
pub mod socket_table;
pub mod time;

// The reading path, in the order data flows.
pub mod exceptions;
pub mod ingest;
pub mod live;
pub mod store;

// The read path.
pub mod auth;
pub mod export;
pub mod forecast;
pub mod history;
pub mod http;

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
    /// Which storage path serves history.
    pub storage: store::rollup::StoragePath,
    shutdown: CancellationToken,
    http: JoinHandle<()>,
    ingest: JoinHandle<()>,
    store: JoinHandle<()>,
    rejections: JoinHandle<()>,
    exceptions: JoinHandle<()>,
    webhook: Option<JoinHandle<()>>,
    rollup: JoinHandle<()>,
    forecaster: JoinHandle<()>,
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

    // Before the store writer, which marks late readings on TimescaleDB.
    let storage = store::rollup::prepare(&pool, &config.history, &config.yard.timezone).await?;
    let spool_dir = config.database.data_dir.join("spool");
    let spool = Arc::new(
        tokio::task::spawn_blocking(move || store::spool::Spool::open(&spool_dir))
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
    let rejections = tokio::spawn(store::rejections::run_writer(
        pool.clone(),
        metrics.clone(),
        rejection_queue_rx,
    ));

    let exceptions = exceptions::start(
        &config.exceptions,
        pool.clone(),
        live.clone(),
        metrics.clone(),
    )
    .await
    .context("starting the exception engine")?;

    let forecast = forecast::Forecasting::new(
        pool.clone(),
        config.forecast.clone(),
        &config.database.data_dir,
    );
    let forecaster = tokio::spawn(forecast::run(
        forecast.clone(),
        exceptions.feed.clone(),
        shutdown.clone(),
    ));

    let pipeline = Arc::new(ingest::Pipeline {
        registry: registry.clone(),
        live: live.clone(),
        metrics: metrics.clone(),
        spool: spool.clone(),
        store: store_queue,
        rejections: rejection_queue,
        max_future: TimeDelta::seconds(config.ingest.max_future_secs),
        exceptions: exceptions.feed,
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

    let rollup = tokio::spawn(store::rollup::run(
        pool.clone(),
        config.history.clone(),
        storage,
        metrics.clone(),
        shutdown.clone(),
    ));
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
        metrics: metrics.clone(),
    });
    auth.start(shutdown.clone());
    let state = http::AppState {
        pool,
        registry,
        live,
        metrics: metrics.clone(),
        spool,
        yard: Arc::new(config.yard.clone()),
        ingest_running,
        shutdown: shutdown.clone(),
        live_send_timeout: std::time::Duration::from_secs(config.ingest.live_send_timeout_secs),
        exceptions: exceptions.handle,
        history,
        export: export::ExportSettings::new(&config.yard.timezone),
        forecast,
        auth,
        pki_dir: config.tls_dir(),
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
        storage,
        shutdown,
        http,
        ingest,
        store,
        rejections,
        exceptions: exceptions.task,
        webhook: exceptions.webhook,
        rollup,
        forecaster,
    })
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
    let broker = tokio::task::spawn_blocking(move || {
        let tls_files = mqtt_config
            .tls_listen
            .map(|_| ingest::pki::prepare(&tls_dir, &server_names))
            .transpose()
            .context("preparing the MQTT TLS certificates")?;
        ingest::broker::start(&mqtt_config, tls_files.as_ref(), checker)
    })
    .await
    .context("starting the MQTT broker")??;
    let _ = metrics.mqtt_listeners.set(
        [
            Some(("mqtt", broker.listen)),
            broker.listen_v5.map(|addr| ("mqtt5", addr)),
            broker.listen_tls.map(|addr| ("mqtts", addr)),
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
        // drops the subscription.
        let link_tx = broker.link_tx;
        tokio::spawn(async move {
            ingest::broker::run_embedded_link(broker.link_rx, pipeline, shutdown).await;
            running.store(false, Relaxed);
            drop(link_tx);
        })
    };
    let addresses = MqttAddresses {
        plain: broker.listen,
        v5: broker.listen_v5,
        tls: broker.listen_tls,
    };
    Ok((ingest, addresses))
}

impl Running {
    /// Stops taking new messages, then waits until everything decoded so far
    /// is written. The broker thread stays until the process exits: rumqttd
    /// has no stop.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        // The pipeline (and with it the queues' senders) is dropped when the
        // ingest task ends, which lets the writers drain and finish.
        let _ = self.ingest.await;
        let _ = self.http.await;
        let _ = self.store.await;
        let _ = self.rejections.await;
        // The forecaster holds a feed of the engine: it must end first.
        let _ = self.forecaster.await;
        // The engine stops once the pipeline (its feed) is gone, after
        // storing what it decided; then the webhook sends what it holds.
        let _ = self.exceptions.await;
        if let Some(webhook) = self.webhook {
            let _ = webhook.await;
        }
        let _ = self.rollup.await;
    }
}
