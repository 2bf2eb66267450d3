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
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Broker, ConnectionSettings, RouterConfig, ServerSettings};

use crate::config::MqttConfig;
use crate::credentials::Checker;
use crate::decode::TOPIC_ROOT;

pub struct EmbeddedBroker {
    /// The MQTT 3.1.1 address gateways connect to.
    pub listen: SocketAddr,
    pub listen_v5: Option<SocketAddr>,
    pub link_tx: LinkTx,
    pub link_rx: LinkRx,
}

/// The link's client id; gateways must not use it.
const INGEST_LINK: &str = "trackside-ingest";

/// Starts the broker on its own thread and returns the subscribed link.
/// Without a `checker` every client is accepted (`mqtt.allow_anonymous`).
pub fn start(config: &MqttConfig, checker: Option<Checker>) -> anyhow::Result<EmbeddedBroker> {
    // rumqttd binds inside its own thread and only logs a failure there, so
    // check the addresses here where the error can reach the operator. Port
    // 0 is resolved to a free port the same way (tests use it).
    let listen = reserve(config.listen).context("MQTT listener")?;
    let listen_v5 = config
        .listen_v5
        .map(|addr| reserve(addr).context("MQTT 5 listener"))
        .transpose()?;

    let mut connections = ConnectionSettings {
        connection_timeout_ms: config.connect_timeout_ms,
        max_payload_size: config.max_payload_bytes,
        max_inflight_count: config.max_inflight,
        auth: None,
        external_auth: None,
        // No effect in rumqttd 0.20; false states what actually happens.
        dynamic_filters: false,
    };
    if let Some(checker) = checker {
        // rumqttd sends a refused client no CONNACK; it closes the socket.
        connections.set_auth_handler(move |client_id, username, password| {
            let checker = checker.clone();
            async move { checker.check(client_id, username, password).await }
        });
    }
    let server = |name: &str, listen: SocketAddr| ServerSettings {
        name: name.to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: connections.clone(),
    };
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
        v4: Some(HashMap::from([(
            "mqtt".to_owned(),
            server("mqtt-v4", listen),
        )])),
        v5: listen_v5.map(|addr| HashMap::from([("mqtt5".to_owned(), server("mqtt-v5", addr))])),
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };

    let mut broker = Broker::new(broker_config);
    let (mut link_tx, link_rx) = broker
        .link(INGEST_LINK)
        .context("opening the broker's ingest link")?;
    link_tx
        .subscribe(format!("{TOPIC_ROOT}/#"))
        .context("subscribing the ingest link")?;
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(err) = broker.start() {
                tracing::error!("MQTT broker stopped: {err}");
            }
        })
        .context("starting the MQTT broker thread")?;
    for addr in std::iter::once(listen).chain(listen_v5) {
        wait_until_listening(addr.port())?;
    }
    tracing::info!(%listen, ?listen_v5, "MQTT broker listening");
    Ok(EmbeddedBroker {
        listen,
        listen_v5,
        link_tx,
        link_rx,
    })
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

/// Whether a TCP socket of this machine listens on `port`, from
/// /proc/net/tcp{,6}: local address `ADDR:PORT` in hex, state `0A` = LISTEN.
fn is_listening(port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                let mut fields = line.split_whitespace();
                let local = fields.nth(1).unwrap_or_default();
                let state = fields.nth(1).unwrap_or_default();
                state == "0A" && local.ends_with(&wanted)
            })
        })
    })
}

fn reserve(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let probe = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    Ok(probe.local_addr()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sees_a_listening_port_in_the_socket_table() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(super::is_listening(port));
        drop(listener);
        assert!(!super::is_listening(port));
    }
}
