//! The MQTT front: Trackside accepts every gateway connection itself, on
//! every network listener, and the embedded rumqttd listens on loopback
//! only, behind it.
//!
//! Why: rumqttd (used as published, never patched) cannot do three things
//! a yard needs. It has no topic ACL hook and forwards publishes without
//! their publisher, so on its plain listeners any gateway could publish as
//! another or subscribe to `#`. It does TLS handshakes inside its accept
//! loop without a deadline, so one idle TCP connection stopped every TLS
//! connect. And it acknowledges a QoS 1 publish once it is in its memory
//! log, which a burst overruns: acknowledged readings were lost.
//!
//! So each connection is a task of its own here ([`session`]): the TLS
//! handshake under a deadline, the CONNECT checked against the client
//! certificate and the password (`credentials::Checker`), then every packet
//! read with rumqttc's codec ([`codec`]). A PUBLISH or SUBSCRIBE outside the
//! gateway's own topics ([`acl`]) is refused. A reading publish goes
//! straight to `ingest::Pipeline`, and its PUBACK is sent only once the
//! receipt says the reading is durable, so a gateway's in-flight window
//! throttles it while ingest is behind. The rest (status and last wills,
//! subscriptions and what is delivered to them, pings) goes through to
//! rumqttd over a loopback connection per gateway; readings never do, so
//! none is ingested twice.

pub mod acl;
mod codec;
mod session;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Pipeline;
use super::credentials::Checker;
use super::pki::ListenerFiles;
use crate::config::MqttConfig;
use crate::metrics::Metrics;

/// Where the front's listeners are.
pub struct Listeners {
    pub plain: SocketAddr,
    pub v5: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
}

/// The embedded broker's loopback listeners and the password the front
/// logs in with there.
#[derive(Clone)]
pub struct Backend {
    pub v4: SocketAddr,
    pub v5: SocketAddr,
    pub secret: Arc<str>,
}

/// What every session shares.
struct Shared {
    pipeline: Arc<Pipeline>,
    checker: Option<Checker>,
    metrics: Arc<Metrics>,
    backend: Backend,
    /// The largest packet read from a gateway or the broker.
    max_packet: usize,
    /// QoS 1 and 2 reading publishes awaiting durability per connection;
    /// past it the front stops reading that connection.
    max_inflight: usize,
    /// For the TLS handshake, and again for the CONNECT.
    connect_timeout: Duration,
    shutdown: CancellationToken,
}

/// Binds the listeners and serves them until shutdown.
pub async fn start(
    config: &MqttConfig,
    tls_files: Option<ListenerFiles>,
    checker: Option<Checker>,
    pipeline: Arc<Pipeline>,
    backend: Backend,
    shutdown: CancellationToken,
) -> anyhow::Result<Listeners> {
    let metrics = pipeline.metrics.clone();
    let shared = Arc::new(Shared {
        pipeline,
        checker,
        metrics,
        backend,
        max_packet: config.max_payload_bytes + MAX_HEADERS,
        max_inflight: config.max_inflight.max(1),
        connect_timeout: Duration::from_millis(u64::from(config.connect_timeout_ms.max(100))),
        shutdown: shutdown.clone(),
    });
    // Every connection, whatever its listener, holds one slot.
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for MQTT on {addr}"))
    };
    let plain = bind(config.listen).await?;
    let listeners = Listeners {
        plain: plain.local_addr()?,
        v5: None,
        tls: None,
    };
    let mut listeners = listeners;
    tokio::spawn(accept(plain, "mqtt", None, shared.clone(), slots.clone()));
    if let Some(addr) = config.listen_v5 {
        let listener = bind(addr).await?;
        listeners.v5 = Some(listener.local_addr()?);
        tokio::spawn(accept(
            listener,
            "mqtt5",
            None,
            shared.clone(),
            slots.clone(),
        ));
    }
    if let Some(addr) = config.tls_listen {
        let files = tls_files.context("the MQTT TLS listener needs its certificates")?;
        let acceptor = Arc::new(tls::Acceptor::new(files)?);
        let listener = bind(addr).await?;
        listeners.tls = Some(listener.local_addr()?);
        tokio::spawn(accept(listener, "mqtts", Some(acceptor), shared, slots));
    }
    tracing::info!(
        plain = %listeners.plain,
        v5 = ?listeners.v5,
        tls = ?listeners.tls,
        "MQTT front listening"
    );
    Ok(listeners)
}

/// Room for the fixed header, topic and properties beyond the payload.
const MAX_HEADERS: usize = 64 * 1024;

async fn accept(
    listener: TcpListener,
    name: &'static str,
    tls: Option<Arc<tls::Acceptor>>,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shared.shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, usually: wait, do not spin.
                tracing::warn!(listener = name, "cannot accept an MQTT connection: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            shared.metrics.mqtt_front_full.fetch_add(1, Relaxed);
            tracing::warn!(listener = name, %peer, "MQTT connection refused: mqtt.max_connections reached");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        // Everything, the handshake included, happens in the connection's
        // own task: a client that stalls delays nobody else.
        tokio::spawn(async move {
            serve(stream, peer, name, tls, shared).await;
            drop(slot);
        });
    }
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: &'static str,
    tls: Option<Arc<tls::Acceptor>>,
    shared: Arc<Shared>,
) {
    let Some(acceptor) = tls else {
        session::run(stream, peer, listener, None, &shared).await;
        return;
    };
    let handshake = match acceptor.acceptor() {
        Ok(acceptor) => tokio::time::timeout(shared.connect_timeout, acceptor.accept(stream)).await,
        Err(err) => {
            tracing::error!("MQTT TLS listener cannot load its certificates: {err:#}");
            return;
        }
    };
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            shared.metrics.mqtt_handshake_failures.fetch_add(1, Relaxed);
            tracing::warn!(%peer, "MQTT TLS handshake failed: {err}");
            return;
        }
        Err(_) => {
            shared.metrics.mqtt_handshake_failures.fetch_add(1, Relaxed);
            tracing::warn!(%peer, "MQTT TLS handshake not finished in time; connection dropped");
            return;
        }
    };
    let certified = stream.get_ref().1.peer_certificates().and_then(|chain| {
        chain
            .first()
            .and_then(|cert| tls::gateway_of(cert.as_ref()))
    });
    let Some(gateway) = certified else {
        shared.metrics.mqtt_refused_connects.fetch_add(1, Relaxed);
        tracing::warn!(%peer, "MQTT TLS client certificate names no gateway (Organization); refused");
        return;
    };
    session::run(stream, peer, listener, Some(gateway), &shared).await;
}
