//! Sparkplug B edge nodes through real MQTT: a rumqttc client speaking
//! Sparkplug B (protobuf births, data by alias, death as its will) against
//! the embedded broker and against Mosquitto; what is stored is read back
//! from PostgreSQL, the gateway's status from `/api/gateways`.

use std::time::Duration;

use prost::Message as _;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use trackside::ingest::sparkplug::proto::{Metric, Payload, Value, datatype};
use trackside_wire::GatewayInfo;

use crate::external::external_config;
use crate::harness::{Mosquitto, TestServer, eventually};

const T0: i64 = 1_795_850_000_000; // 2026-11-28T07:13:20Z
const GROUP: &str = "millbrook";

/// An edge node: a real MQTT session whose will is its NDEATH, and the
/// commands it receives (`spBv1.0/{group}/NCMD/{node}`).
struct EdgeNode {
    client: AsyncClient,
    acks: mpsc::UnboundedReceiver<()>,
    commands: mpsc::UnboundedReceiver<Payload>,
    eventloop: tokio::task::JoinHandle<()>,
    seq: u64,
}

fn topic(kind: &str, node: &str) -> String {
    format!("spBv1.0/{GROUP}/{kind}/{node}")
}

fn bd_seq(value: u64) -> Metric {
    Metric {
        name: Some("bdSeq".into()),
        datatype: Some(datatype::UINT64),
        value: Some(Value::LongValue(value)),
        ..Metric::default()
    }
}

fn double(name: Option<&str>, alias: u64, ts: i64, value: f64) -> Metric {
    Metric {
        name: name.map(str::to_owned),
        alias: Some(alias),
        timestamp: Some(ts as u64),
        datatype: name.map(|_| datatype::DOUBLE),
        value: Some(Value::DoubleValue(value)),
        ..Metric::default()
    }
}

fn boolean(name: Option<&str>, alias: u64, ts: i64, value: bool) -> Metric {
    Metric {
        name: name.map(str::to_owned),
        alias: Some(alias),
        timestamp: Some(ts as u64),
        datatype: name.map(|_| datatype::BOOLEAN),
        value: Some(Value::BooleanValue(value)),
        ..Metric::default()
    }
}

impl EdgeNode {
    async fn connect(port: u16, node: &str, bd: u64) -> Self {
        let mut options = MqttOptions::new(node, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        let death = Payload {
            metrics: vec![bd_seq(bd)],
            ..Payload::default()
        };
        options.set_last_will(LastWill::new(
            topic("NDEATH", node),
            death.encode_to_vec(),
            QoS::AtLeastOnce,
            false,
        ));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (acks_tx, acks) = mpsc::unbounded_channel();
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (connected_tx, connected) = tokio::sync::oneshot::channel();
        let eventloop = tokio::spawn(async move {
            let mut connected_tx = Some(connected_tx);
            while let Ok(event) = eventloop.poll().await {
                match event {
                    Event::Incoming(Packet::ConnAck(_)) => {
                        if let Some(tx) = connected_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Event::Incoming(Packet::PubAck(_) | Packet::SubAck(_)) => {
                        let _ = acks_tx.send(());
                    }
                    Event::Incoming(Packet::Publish(publish)) => {
                        if let Ok(payload) = Payload::decode(publish.payload.as_ref()) {
                            let _ = commands_tx.send(payload);
                        }
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), connected)
            .await
            .expect("CONNACK within 10 s")
            .expect("connected");
        let mut node_ = Self {
            client,
            acks,
            commands,
            eventloop,
            seq: 0,
        };
        node_
            .client
            .subscribe(topic("NCMD", node), QoS::AtLeastOnce)
            .await
            .expect("subscribing to NCMD");
        node_.acked().await;
        node_
    }

    async fn acked(&mut self) {
        tokio::time::timeout(Duration::from_secs(10), self.acks.recv())
            .await
            .expect("acknowledged within 10 s")
            .expect("event loop alive");
    }

    async fn publish_raw(&mut self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("queueing a publish");
        self.acked().await;
    }

    /// NBIRTH with seq 0, as every session begins.
    async fn birth(&mut self, node: &str, bd: u64, metrics: Vec<Metric>) {
        self.seq = 0;
        let mut all = vec![bd_seq(bd)];
        all.extend(metrics);
        let payload = Payload {
            timestamp: Some(T0 as u64),
            metrics: all,
            seq: Some(0),
            ..Payload::default()
        };
        self.publish_raw(&topic("NBIRTH", node), payload.encode_to_vec())
            .await;
    }

    /// NDATA with the next seq (or `seq` to break the count).
    async fn data(&mut self, node: &str, seq: Option<u64>, metrics: Vec<Metric>) {
        self.seq = seq.unwrap_or((self.seq + 1) % 256);
        let payload = Payload {
            timestamp: Some(T0 as u64),
            metrics,
            seq: Some(self.seq),
            ..Payload::default()
        };
        self.publish_raw(&topic("NDATA", node), payload.encode_to_vec())
            .await;
    }

    /// Drops the connection without DISCONNECT: the broker sends the will.
    fn kill(self) {
        self.eventloop.abort();
    }
}

async fn gateway(server: &TestServer, id: &str) -> Option<GatewayInfo> {
    let list: Vec<GatewayInfo> = server
        .get(server.url("/api/gateways"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    list.into_iter().find(|g| g.id == id)
}

async fn wait_online(server: &TestServer, id: &str, online: bool) {
    eventually(&format!("gateway {id} online = {online}"), || async {
        (gateway(server, id).await?.online == Some(online)).then_some(())
    })
    .await;
}

async fn wait_stored(server: &TestServer, channel: &str, want: &[(i64, f64)]) {
    let got = eventually(
        &format!("{} readings of {channel} stored", want.len()),
        || async {
            let got = server.stored(channel).await;
            (got.len() >= want.len()).then_some(got)
        },
    )
    .await;
    assert_eq!(got, want, "{channel}");
}

async fn rejections(server: &TestServer, node: &str) -> Vec<(String, String, Vec<u8>)> {
    sqlx::query_as(
        "SELECT topic, reason, payload FROM rejected_messages WHERE gateway_id = $1 ORDER BY id",
    )
    .bind(node)
    .fetch_all(&server.pool)
    .await
    .expect("reading rejected_messages")
}

#[tokio::test]
async fn an_edge_node_is_born_sends_data_dies_and_is_born_again_with_new_aliases() {
    let server = TestServer::start().await;
    let port = server.running.mqtt_addr.port();
    let name = "sp-node1";
    let mut node = EdgeNode::connect(port, name, 0).await;

    node.birth(
        name,
        0,
        vec![
            double(Some("T301/relay_voltage"), 1, T0, 1.5),
            boolean(Some("T301/relay_state"), 2, T0, true),
        ],
    )
    .await;
    wait_online(&server, name, true).await;
    node.data(
        name,
        None,
        vec![
            double(None, 1, T0 + 1_000, 1.25),
            boolean(None, 2, T0 + 1_000, false),
        ],
    )
    .await;
    wait_stored(
        &server,
        "T301/relay_voltage",
        &[(T0, 1.5), (T0 + 1_000, 1.25)],
    )
    .await;
    wait_stored(&server, "T301/relay_state", &[(T0, 1.0), (T0 + 1_000, 0.0)]).await;

    // Bad payloads: rejected and kept, and ingest goes on.
    node.publish_raw(&topic("NDATA", name), b"\xff\x00 not protobuf".to_vec())
        .await;
    node.data(name, None, vec![double(None, 9, T0 + 2_000, 7.0)])
        .await;
    // Three messages lost: counted, kept, the node asked to rebirth, and
    // the message's own reading kept.
    let seq = node.seq + 4;
    node.data(name, Some(seq), vec![double(None, 1, T0 + 3_000, 1.75)])
        .await;
    let request = tokio::time::timeout(Duration::from_secs(10), node.commands.recv())
        .await
        .expect("a rebirth request within 10 s")
        .expect("event loop alive");
    assert_eq!(
        request.metrics[0].name.as_deref(),
        Some("Node Control/Rebirth")
    );
    assert_eq!(request.metrics[0].value, Some(Value::BooleanValue(true)));
    wait_stored(
        &server,
        "T301/relay_voltage",
        &[(T0, 1.5), (T0 + 1_000, 1.25), (T0 + 3_000, 1.75)],
    )
    .await;
    let kept = eventually("three rejections kept", || async {
        let kept = rejections(&server, name).await;
        (kept.len() >= 3).then_some(kept)
    })
    .await;
    let reasons: Vec<&str> = kept.iter().map(|(_, reason, _)| reason.as_str()).collect();
    assert!(
        reasons[0].contains("not a Sparkplug B payload"),
        "{reasons:?}"
    );
    assert_eq!(kept[0].2, b"\xff\x00 not protobuf");
    assert!(
        reasons[1].contains("alias 9 was not declared at birth"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].contains("seq 6 where 3 was due: 3 messages lost"),
        "{reasons:?}"
    );
    assert!(
        kept.iter()
            .all(|(topic, _, _)| topic == &self::topic("NDATA", name))
    );
    assert_eq!(
        server
            .metric("trackside_sparkplug_sequence_gaps_total")
            .await,
        1.0
    );
    assert_eq!(
        server
            .metric("trackside_rejections_total{reason=\"sequence\"}")
            .await,
        1.0
    );

    // Death: the broker publishes the will, the gateway goes offline.
    node.kill();
    wait_online(&server, name, false).await;

    // Born again, with other aliases: data by the new ones is stored, by
    // the old ones rejected.
    let mut node = EdgeNode::connect(port, name, 1).await;
    node.birth(
        name,
        1,
        vec![
            double(Some("T301/relay_voltage"), 41, T0 + 10_000, 1.5),
            boolean(Some("T301/relay_state"), 42, T0 + 10_000, true),
        ],
    )
    .await;
    wait_online(&server, name, true).await;
    node.data(
        name,
        None,
        vec![
            double(None, 41, T0 + 11_000, 1.125),
            double(None, 1, T0 + 11_000, 9.0),
        ],
    )
    .await;
    wait_stored(
        &server,
        "T301/relay_voltage",
        &[
            (T0, 1.5),
            (T0 + 1_000, 1.25),
            (T0 + 3_000, 1.75),
            (T0 + 10_000, 1.5),
            (T0 + 11_000, 1.125),
        ],
    )
    .await;
    wait_stored(
        &server,
        "T301/relay_state",
        &[(T0, 1.0), (T0 + 1_000, 0.0), (T0 + 10_000, 1.0)],
    )
    .await;
    let kept = eventually("the old alias rejected", || async {
        let kept = rejections(&server, name).await;
        (kept.len() >= 4).then_some(kept)
    })
    .await;
    assert!(
        kept[3].1.contains("alias 1 was not declared at birth"),
        "{kept:?}"
    );
    node.kill();
}

#[tokio::test]
async fn an_edge_node_cannot_write_another_gateways_channels() {
    let server = TestServer::start().await;
    let mut owner = server.gateway("gw-owner").await;
    owner
        .publish_readings("gw-owner", &[("T401/relay_voltage", T0, 1.0)])
        .await;
    wait_stored(&server, "T401/relay_voltage", &[(T0, 1.0)]).await;

    let name = "sp-intruder";
    let mut node = EdgeNode::connect(server.running.mqtt_addr.port(), name, 0).await;
    node.birth(
        name,
        0,
        vec![
            double(Some("T401/relay_voltage"), 1, T0 + 1_000, 5.0),
            double(Some("T402/relay_voltage"), 2, T0 + 1_000, 2.0),
        ],
    )
    .await;
    wait_stored(&server, "T402/relay_voltage", &[(T0 + 1_000, 2.0)]).await;
    let kept = eventually("the refusal kept", || async {
        let kept = rejections(&server, name).await;
        (!kept.is_empty()).then_some(kept)
    })
    .await;
    assert!(
        kept[0]
            .1
            .contains("channel T401/relay_voltage belongs to gateway `gw-owner`"),
        "{kept:?}"
    );
    assert_eq!(server.stored("T401/relay_voltage").await, [(T0, 1.0)]);
    node.kill();
}

#[tokio::test]
async fn sparkplug_through_an_external_broker() {
    let mosquitto = Mosquitto::start().await;
    let server = TestServer::start_with(external_config(&mosquitto, "trackside-sp")).await;
    server.external_session_up().await;
    let name = "sp-ext";
    let mut node = EdgeNode::connect(mosquitto.port, name, 3).await;

    // Data before any birth: rejected, and the node is asked to rebirth
    // through the external broker.
    node.data(name, Some(5), vec![double(None, 1, T0, 1.0)])
        .await;
    let request = tokio::time::timeout(Duration::from_secs(10), node.commands.recv())
        .await
        .expect("a rebirth request within 10 s")
        .expect("event loop alive");
    assert_eq!(
        request.metrics[0].name.as_deref(),
        Some("Node Control/Rebirth")
    );

    node.birth(name, 3, vec![double(Some("T501/feed_voltage"), 1, T0, 9.5)])
        .await;
    node.data(name, None, vec![double(None, 1, T0 + 500, 9.25)])
        .await;
    wait_stored(&server, "T501/feed_voltage", &[(T0, 9.5), (T0 + 500, 9.25)]).await;
    wait_online(&server, name, true).await;
    let kept = rejections(&server, name).await;
    assert!(
        kept[0].1.contains("before the edge node's NBIRTH"),
        "{kept:?}"
    );
    node.kill();
    wait_online(&server, name, false).await;
}

/// `trackside simulate --sparkplug`: the demo yard's gateways as edge
/// nodes; their readings are stored with nothing rejected.
#[tokio::test]
async fn the_simulated_yard_publishes_as_sparkplug_b() {
    let server = TestServer::start().await;
    let options = trackside::sim::YardOptions {
        host: "127.0.0.1".into(),
        port: server.running.mqtt_addr.port(),
        circuits: 0,
        gateways: 2,
        rate_hz: 4.0,
        seed: 1,
        password: None,
        faults: false,
        start_at_s: 0.0,
        sags: Vec::new(),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let yard = tokio::spawn(trackside::sim::sparkplug::run(
        options,
        "millbrook".into(),
        stop.clone(),
    ));
    eventually("simulated readings stored", || async {
        let (stored,): (i64,) = sqlx::query_as("SELECT count(*) FROM readings")
            .fetch_one(&server.pool)
            .await
            .ok()?;
        (stored > 100).then_some(())
    })
    .await;
    wait_online(&server, "yard-gw01", true).await;
    wait_online(&server, "yard-gw02", true).await;
    stop.cancel();
    yard.await.expect("the yard task").expect("the yard ran");
    // The clean goodbye is an NDEATH.
    wait_online(&server, "yard-gw01", false).await;
    let (rejected,): (i64,) = sqlx::query_as("SELECT count(*) FROM rejected_messages")
        .fetch_one(&server.pool)
        .await
        .expect("counting rejections");
    assert_eq!(rejected, 0);
}
