//! The MQTT front (issue 14, item 4): every gateway connection is accepted
//! by Trackside itself, with a deadline on the TLS handshake, a topic ACL on
//! every listener, and a PUBACK only once the reading is durable. Real
//! rumqttc clients (3.1.1 and 5) over TCP and TLS.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use crate::harness::{Gateway, TestServer, eventually, test_config, tls_transport};

/// A 3.1.1 client whose every incoming packet the test reads.
async fn client(
    port: u16,
    id: &str,
    transport: rumqttc::Transport,
) -> (AsyncClient, mpsc::UnboundedReceiver<Packet>) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_transport(transport);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(packet) = event
                && tx.send(packet).is_err()
            {
                return;
            }
        }
        // The connection ended: the channel closes.
    });
    (client, rx)
}

async fn next_packet(rx: &mut mpsc::UnboundedReceiver<Packet>, what: &str) -> Option<Packet> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} within 10 s"))
}

fn reading(value: f64) -> String {
    serde_json::json!({"readings": [{"channel": "T1/relay_voltage", "value": value}]}).to_string()
}

/// Issue 14's item 4: one idle TCP connection to 8883 stopped every
/// gateway's TLS connect, because rumqttd shakes hands in its accept loop.
#[tokio::test]
async fn a_held_open_connection_to_the_tls_port_does_not_delay_a_gateway() {
    let server = TestServer::start().await;
    let tls_port = server.running.mqtt_tls_addr.expect("TLS listener").port();
    let cert =
        trackside::ingest::pki::issue_gateway(&server.config.tls_dir(), "north", 30).unwrap();
    // Two stalled clients: one silent, one that starts a ClientHello.
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", tls_port))
        .await
        .unwrap();
    let mut partial = tokio::net::TcpStream::connect(("127.0.0.1", tls_port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut partial, &[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let mut gateway = Gateway::connect_tls(tls_port, "north", "unused", &cert).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "the gateway's TLS connect took {took:?} behind stalled connections"
    );
    gateway
        .publish("trackside/north/readings", reading(1.25))
        .await;
    eventually("the reading over TLS stored", || async {
        (server.stored("T1/relay_voltage").await.len() == 1).then_some(())
    })
    .await;
}

/// A gateway reads only its own topics: `#` and another gateway's topics
/// are refused with a failure SUBACK, its own are granted.
#[tokio::test]
async fn a_subscription_outside_the_gateways_topics_is_refused() {
    let server = TestServer::start().await;
    let port = server.running.mqtt_addr.port();
    let (client, mut incoming) = client(port, "gw-sub", rumqttc::Transport::Tcp).await;
    for (filter, allowed) in [
        ("#", false),
        ("trackside/+/readings", false),
        ("trackside/gw-other/#", false),
        ("trackside/gw-sub/commands", true),
    ] {
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let suback = loop {
            match next_packet(&mut incoming, "SUBACK").await {
                Some(Packet::SubAck(suback)) => break suback,
                Some(_) => continue,
                None => panic!("the connection closed on subscribing to {filter}"),
            }
        };
        let granted = matches!(
            suback.return_codes.as_slice(),
            [rumqttc::SubscribeReasonCode::Success(_)]
        );
        assert_eq!(granted, allowed, "{filter}: {suback:?}");
    }
    assert_eq!(
        server
            .metric("trackside_mqtt_acl_refusals_total{kind=\"subscribe\"}")
            .await,
        3.0
    );
}

/// On MQTT 3.1.1 a publish outside the gateway's topics cannot be refused
/// in an acknowledgement, so the front closes the connection; nothing of
/// it is stored. The gateway's own publishes before it were.
#[tokio::test]
async fn a_publish_to_another_gateways_topic_closes_a_3_1_1_connection() {
    let server = TestServer::start().await;
    let port = server.running.mqtt_addr.port();
    let (client, mut incoming) = client(port, "gw-a", rumqttc::Transport::Tcp).await;
    client
        .publish(
            "trackside/gw-a/readings",
            QoS::AtLeastOnce,
            false,
            reading(1.0),
        )
        .await
        .unwrap();
    client
        .publish(
            "trackside/gw-b/readings",
            QoS::AtLeastOnce,
            false,
            reading(2.0),
        )
        .await
        .unwrap();
    let mut acks = 0;
    while let Some(packet) = tokio::time::timeout(Duration::from_secs(10), incoming.recv())
        .await
        .expect("the connection closes within 10 s")
    {
        if let Packet::PubAck(_) = packet {
            acks += 1;
        }
    }
    assert_eq!(acks, 1, "only the gateway's own publish is acknowledged");
    eventually("the own reading stored", || async {
        (server.stored("T1/relay_voltage").await.len() == 1).then_some(())
    })
    .await;
    let gateways: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT c.gateway_id FROM readings r JOIN channels c ON c.id = r.channel_id",
    )
    .fetch_all(&server.pool)
    .await
    .unwrap();
    assert_eq!(gateways, ["gw-a"]);
    assert_eq!(
        server
            .metric("trackside_mqtt_acl_refusals_total{kind=\"publish\"}")
            .await,
        1.0
    );
}

/// MQTT 5 over mutual TLS, end to end: the certificate and password admit
/// the gateway, its reading is stored and acknowledged, and a publish to
/// another gateway's topic gets PUBACK "not authorized" on a connection
/// that stays up.
#[tokio::test]
async fn mqtt_5_works_over_tls_and_refuses_in_the_puback() {
    use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PubAckReason};
    use rumqttc::v5::{Event as Event5, MqttOptions as Options5};

    let mut config = test_config();
    config.mqtt.allow_anonymous = false;
    let server = TestServer::start_with(config).await;
    let tls_port = server.running.mqtt_tls_addr.expect("TLS listener").port();
    let password = trackside::ingest::credentials::add(&server.pool, "east5", None)
        .await
        .unwrap();
    let cert =
        trackside::ingest::pki::issue_gateway(&server.config.tls_dir(), "east5", 30).unwrap();

    let mut options = Options5::new("east5", "127.0.0.1", tls_port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_transport(tls_transport(&cert));
    options.set_credentials("east5", password);
    let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 64);
    let (tx, mut incoming) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event5::Incoming(packet) = event
                && tx.send(packet).is_err()
            {
                return;
            }
        }
    });
    let wait_for_ack = async |incoming: &mut mpsc::UnboundedReceiver<Packet5>| loop {
        match tokio::time::timeout(Duration::from_secs(10), incoming.recv()).await {
            Ok(Some(Packet5::PubAck(ack))) => return ack,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the MQTT 5 connection closed"),
            Err(_) => panic!("no PUBACK within 10 s"),
        }
    };
    client
        .publish(
            "trackside/east5/readings",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            reading(3.5),
        )
        .await
        .unwrap();
    let ack = wait_for_ack(&mut incoming).await;
    assert_eq!(ack.reason, PubAckReason::Success);
    // Acknowledged means durable: in the spool or stored already.
    eventually("the MQTT 5 reading stored", || async {
        (server.stored("T1/relay_voltage").await.len() == 1).then_some(())
    })
    .await;

    client
        .publish(
            "trackside/west/readings",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            reading(9.0),
        )
        .await
        .unwrap();
    let ack = wait_for_ack(&mut incoming).await;
    assert_eq!(ack.reason, PubAckReason::NotAuthorized);
    client
        .publish(
            "trackside/east5/readings",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            reading(4.5),
        )
        .await
        .unwrap();
    assert_eq!(
        wait_for_ack(&mut incoming).await.reason,
        PubAckReason::Success
    );
    eventually("both own readings stored, none of the other", || async {
        let stored: Vec<(String, f64)> = sqlx::query_as(
            "SELECT c.gateway_id, r.value FROM readings r JOIN channels c ON c.id = r.channel_id
             ORDER BY r.value",
        )
        .fetch_all(&server.pool)
        .await
        .unwrap();
        (stored == [("east5".to_owned(), 3.5), ("east5".to_owned(), 4.5)]).then_some(())
    })
    .await;
}

/// Issue 14's item 6: a burst of acknowledged QoS 1 readings lost when
/// ingest fell a broker log behind. Here the broker's log is tiny (the old
/// path overran it within a few hundred messages), one client publishes
/// as fast as PUBACKs come back, and every acknowledged reading is stored.
#[tokio::test]
async fn an_acknowledged_qos1_reading_is_never_lost_to_a_burst() {
    const BURST: usize = 20_000;
    let mut config = test_config();
    config.mqtt.segment_bytes = 16 * 1024;
    config.mqtt.segment_count = 2;
    let server = TestServer::start_with(config).await;
    let port = server.running.mqtt_addr.port();

    let mut options = MqttOptions::new("gw-burst", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    let acked = tokio::spawn(async move {
        let mut acked = 0;
        while acked < BURST {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(err) => panic!("the burst's connection failed after {acked} PUBACKs: {err}"),
            }
        }
        acked
    });
    let base = chrono::Utc::now().timestamp_millis() - 3_600_000;
    for n in 0..BURST {
        let payload = serde_json::json!({"readings": [
            {"channel": "T1/relay_voltage", "value": n as f64, "ts": base + n as i64}
        ]})
        .to_string();
        client
            .publish(
                "trackside/gw-burst/readings",
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
    }
    let acked = tokio::time::timeout(Duration::from_secs(300), acked)
        .await
        .expect("every PUBACK within 300 s")
        .unwrap();
    assert_eq!(acked, BURST);
    eventually("every acknowledged reading stored", || async {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM readings")
            .fetch_one(&server.pool)
            .await
            .unwrap();
        (stored == BURST as i64).then_some(())
    })
    .await;
}
