//! The embedded MQTT broker (rumqttd) and the in-process link Trackside reads
//! the telemetry through.
//!
//! rumqttd runs its router and each listener on threads of its own, with
//! their own single-threaded runtimes; Trackside only talks to it through the
//! link. Every router setting is chosen here on purpose: rumqttd's defaults
//! are zeros (which silently drop every connection), and its per-filter
//! in-memory log is sized by `segment_bytes * segment_count`.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rumqttd::alerts::AlertsLink;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::meters::MetersLink;
use rumqttd::{
    Broker, ConnectionSettings, Meter, MetricSettings, MetricType, RouterConfig, ServerSettings,
};

use rumqttd::Notification;
use tokio_util::sync::CancellationToken;

use super::Pipeline;
use super::decode::ingest_filters;
use crate::config::MqttConfig;
use crate::metrics::Metrics;
use crate::socket_table::is_listening;

/// rumqttd's in-flight window per connection behind the front.
const BROKER_INFLIGHT: usize = 100;

pub struct EmbeddedBroker {
    /// The loopback listeners (3.1.1 and 5) only the MQTT front connects
    /// to, and the password it logs in with.
    pub backend: super::front::Backend,
    pub link_tx: LinkTx,
    pub link_rx: LinkRx,
    /// The router's counters, pushed once a second while there is traffic.
    pub meters: MetersLink,
    /// The router's alerts (a subscriber that skipped part of its log).
    pub alerts: AlertsLink,
}

/// The link's client id, made unguessable per process: a client that took
/// it (with `mqtt.allow_anonymous` anyone may pick any id) would displace
/// the link and end ingest until a restart. Gateway ids with this prefix
/// are refused as well (`credentials::RESERVED_PREFIX`).
static INGEST_LINK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use rand::distr::{Alphanumeric, SampleString as _};
    format!(
        "{}-{}",
        super::credentials::RESERVED_PREFIX,
        Alphanumeric.sample_string(&mut rand::rng(), 20)
    )
});

/// Starts the broker on its own thread and returns the subscribed link.
/// It listens on loopback only, behind the MQTT front (`ingest::front`),
/// which authenticates gateways and logs in here with a per-process
/// secret, so no other local process can open a session.
pub fn start(config: &MqttConfig) -> anyhow::Result<EmbeddedBroker> {
    // rumqttd binds inside its own thread and only logs a failure there, so
    // free loopback ports are found here, where an error reaches the
    // operator.
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let listen = reserve(loopback).context("MQTT loopback listener")?;
    let listen_v5 = reserve(loopback).context("MQTT 5 loopback listener")?;
    let secret: std::sync::Arc<str> = {
        use rand::distr::{Alphanumeric, SampleString as _};
        Alphanumeric.sample_string(&mut rand::rng(), 32).into()
    };

    let mut connections = ConnectionSettings {
        connection_timeout_ms: config.connect_timeout_ms,
        max_payload_size: config.max_payload_bytes,
        // Only status, wills and subscriptions reach rumqttd (readings go
        // from the front to the pipeline), and rumqttd sizes its per
        // connection buffers by this, so it stays small.
        max_inflight_count: config.max_inflight.min(BROKER_INFLIGHT),
        auth: None,
        external_auth: None,
        // No effect in rumqttd 0.20; false states what actually happens.
        dynamic_filters: false,
    };
    let expected = secret.clone();
    connections.set_auth_handler(move |_client_id, _username, password| {
        let matches = same_secret(password.as_bytes(), expected.as_bytes());
        async move { matches }
    });
    let server = |name: &str, listen: SocketAddr| ServerSettings {
        name: name.to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections: connections.clone(),
    };
    let v4 = HashMap::from([("mqtt".to_owned(), server("mqtt-v4", listen))]);
    // The interval is only settable through serde: its field is private.
    let metrics = ["meters", "alerts"]
        .into_iter()
        .map(|kind| {
            let kind: MetricType = serde_json::from_value(serde_json::json!(kind))?;
            let every_second: MetricSettings =
                serde_json::from_value(serde_json::json!({ "push_interval": 1 }))?;
            Ok((kind, every_second))
        })
        .collect::<Result<HashMap<_, _>, serde_json::Error>>()
        .context("broker metrics settings")?;
    let broker_config = rumqttd::Config {
        id: 0,
        router: RouterConfig {
            max_connections: config.max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: config.segment_bytes,
            max_segment_count: config.segment_count,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(v4),
        v5: Some(HashMap::from([(
            "mqtt5".to_owned(),
            server("mqtt-v5", listen_v5),
        )])),
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: Some(metrics),
    };

    let mut broker = Broker::new(broker_config);
    let (mut link_tx, link_rx) = broker
        .link(&INGEST_LINK)
        .context("opening the broker's ingest link")?;
    for filter in ingest_filters() {
        link_tx
            .subscribe(filter)
            .context("subscribing the ingest link")?;
    }
    let meters = broker.meters().context("opening the broker's meters")?;
    let alerts = broker.alerts().context("opening the broker's alerts")?;
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(err) = broker.start() {
                tracing::error!("MQTT broker stopped: {err}");
            }
        })
        .context("starting the MQTT broker thread")?;
    for addr in [listen, listen_v5] {
        wait_until_listening(addr.port())?;
    }
    tracing::info!(%listen, %listen_v5, "MQTT broker listening on loopback, behind the front");
    Ok(EmbeddedBroker {
        backend: super::front::Backend {
            v4: listen,
            v5: listen_v5,
            secret,
        },
        link_tx,
        link_rx,
        meters,
        alerts,
    })
}

/// Counts what the router reports: publishes it refused, and each time the
/// ingest link fell a whole log behind (rumqttd's `cursor_jump` alert).
pub async fn follow_meters(meters: MetersLink, alerts: AlertsLink, metrics: Arc<Metrics>) {
    loop {
        tokio::select! {
            reports = meters.next() => {
                let Ok(reports) = reports else { return };
                for report in reports {
                    if let Meter::Router(_, router) = report
                        && router.failed_publishes > 0
                    {
                        tracing::warn!(
                            refused = router.failed_publishes,
                            "the MQTT broker refused publishes and closed their connections"
                        );
                        Metrics::add(&metrics.mqtt_refused_publishes, router.failed_publishes);
                    }
                }
            }
            reports = alerts.next() => {
                let Ok(reports) = reports else { return };
                for alert in reports {
                    if alert.client_id == *INGEST_LINK && alert.kind.name() == "cursor_jump" {
                        tracing::error!(
                            detail = %alert.kind.description(),
                            "ingest fell a whole MQTT log behind; the skipped publishes are lost"
                        );
                        metrics.mqtt_log_overruns.fetch_add(1, Relaxed);
                    }
                }
            }
        }
    }
}

/// rumqttd binds on its own thread some time after `start`; gateways (and
/// tests) that connect before then would be refused. The kernel's socket
/// table says when the port listens. A probe connection would say it too,
/// but rumqttd logs every probe as a failed client at error level.
fn wait_until_listening(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !is_listening(port) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the MQTT broker did not start listening on port {port} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Compares without stopping at the first difference.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

fn reserve(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let probe = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    Ok(probe.local_addr()?)
}

/// Reads the embedded broker's link until shutdown.
pub async fn run_embedded_link(
    mut link_rx: LinkRx,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
) {
    loop {
        let notification = tokio::select! {
            next = link_rx.next() => next,
            () = shutdown.cancelled() => break,
        };
        match notification {
            Ok(Some(Notification::Forward(forward))) => {
                pipeline
                    .handle(&forward.publish.topic, &forward.publish.payload)
                    .await;
            }
            // The router pauses a link whose buffer filled up and waits to be
            // told it is being read again; without this the link stalls for
            // good after a few hundred messages.
            Ok(Some(Notification::Unschedule)) => {
                if let Err(err) = link_rx.wake().await {
                    tracing::error!("MQTT ingest link lost: {err}");
                    break;
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::error!("MQTT ingest link lost: {err}");
                break;
            }
        }
    }
}

/// Publishes Trackside's Sparkplug B commands (rebirth requests) through
/// the embedded broker's link until `stop`, then hands the link's sending
/// half back: it must outlive the reader, or the router drops the
/// subscription.
pub async fn send_commands(
    mut link_tx: LinkTx,
    commands: Option<tokio::sync::mpsc::Receiver<super::sparkplug::Command>>,
    stop: CancellationToken,
) -> LinkTx {
    let Some(mut commands) = commands else {
        stop.cancelled().await;
        return link_tx;
    };
    loop {
        let command = tokio::select! {
            command = commands.recv() => command,
            () = stop.cancelled() => break,
        };
        let Some(command) = command else {
            stop.cancelled().await;
            break;
        };
        if let Err(err) = link_tx.try_publish(command.topic.clone(), command.payload) {
            tracing::warn!(topic = %command.topic, "cannot publish a Sparkplug B command: {err}");
        }
    }
    link_tx
}
