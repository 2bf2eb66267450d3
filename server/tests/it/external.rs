//! External-broker mode: Trackside subscribes to a real Mosquitto instead of
//! running its own broker.

use trackside::config::{Config, ExternalBroker};

use crate::harness::{Gateway, Mosquitto, OwnCluster, TestServer, eventually, test_config};

const T0: i64 = 1_795_850_000_000;
/// Messages published while Trackside is down: more than its MQTT client
/// queues requests for, so acknowledging them must not wait on that queue.
const BACKLOG: i32 = 2_000;

pub(crate) fn external_config(mosquitto: &Mosquitto, client_id: &str) -> Config {
    let mut config = test_config();
    config.mqtt.external = Some(ExternalBroker {
        address: format!("127.0.0.1:{}", mosquitto.port),
        client_id: client_id.into(),
        username: Some("trackside".into()),
        password: Some("unused by this broker".into()),
        share_group: None,
        persistent_session: true,
    });
    config
}

fn reading(channel: &str, value: f64, ts: i64) -> String {
    serde_json::json!({"readings": [{"channel": channel, "value": value, "ts": ts}]}).to_string()
}

#[tokio::test]
async fn readings_from_an_external_broker_are_stored_and_sent_live() {
    let mosquitto = Mosquitto::start().await;
    let server = TestServer::start_with(external_config(&mosquitto, "trackside-live")).await;
    assert_eq!(server.running.mqtt_addr.port(), mosquitto.port);
    assert_eq!(
        (server.running.mqtt_v5_addr, server.running.mqtt_tls_addr),
        (None, None)
    );
    server.external_session_up().await;

    let mut browser = server.websocket().await;
    let mut gateway = Gateway::connect(mosquitto.port, "gw-ext").await;
    gateway
        .publish(
            "trackside/gw-ext/readings",
            reading("T40/relay_voltage", 1.9, T0),
        )
        .await;
    assert_eq!(
        browser.readings_of("T40/relay_voltage", 1).await,
        vec![(T0, 1.9)]
    );
    eventually("stored", || async {
        (server.stored("T40/relay_voltage").await == vec![(T0, 1.9)]).then_some(())
    })
    .await;

    // The same decoder: a bad payload is kept, counted, and ingest goes on.
    gateway.publish("trackside/gw-ext/readings", "{ nope").await;
    gateway
        .publish(
            "trackside/gw-ext/readings",
            reading("T40/relay_voltage", 2.0, T0 + 1_000),
        )
        .await;
    eventually("the next reading stored", || async {
        (server.stored("T40/relay_voltage").await.len() == 2).then_some(())
    })
    .await;
    let (kept,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM rejected_messages WHERE gateway_id = 'gw-ext'")
            .fetch_one(&server.pool)
            .await
            .unwrap();
    assert_eq!(kept, 1);

    // Larger than the embedded broker's limit: the external broker took it,
    // so Trackside takes it too rather than refuse it on every reconnect.
    let readings: Vec<serde_json::Value> = (0..5_000)
        .map(|i| serde_json::json!({"channel": "T42/feed_current", "value": i, "ts": T0 + i * 100}))
        .collect();
    let large = serde_json::json!({ "readings": readings }).to_string();
    assert!(large.len() > server.config.mqtt.max_payload_bytes);
    gateway.publish("trackside/gw-ext/readings", large).await;
    eventually("the large batch stored", || async {
        (server.stored("T42/feed_current").await.len() == 5_000).then_some(())
    })
    .await;
}

/// Trackside's session is persistent: what gateways publish while it is
/// down waits in the broker and is stored at the next start, once. This
/// broker limits neither its queue nor the messages it sends before an
/// acknowledgement, so the backlog arrives at once.
#[tokio::test]
async fn readings_published_while_trackside_is_down_are_stored_at_the_next_start() {
    let mosquitto = Mosquitto::start_with("max_queued_messages 0\nmax_inflight_messages 0\n").await;
    let config = external_config(&mosquitto, "trackside-restart");
    let server = TestServer::start_with(config).await;
    let mut gateway = Gateway::connect(mosquitto.port, "gw-ext").await;
    gateway
        .publish(
            "trackside/gw-ext/readings",
            reading("T41/feed_current", 0.0, T0),
        )
        .await;
    eventually("the first reading stored", || async {
        (server.stored("T41/feed_current").await.len() == 1).then_some(())
    })
    .await;
    let pool = server.pool.clone();
    let config = server.config.clone();
    server.running.shutdown().await;

    for i in 1..=BACKLOG {
        gateway
            .publish(
                "trackside/gw-ext/readings",
                reading("T41/feed_current", f64::from(i), T0 + i64::from(i) * 1_000),
            )
            .await;
    }
    let restarted = trackside::start(&config, pool.clone())
        .await
        .expect("restart");
    let stored = eventually("every reading published while down stored", || async {
        let rows: Vec<(f64,)> = sqlx::query_as(
            "SELECT r.value FROM readings r JOIN channels c ON c.id = r.channel_id
             WHERE c.name = 'T41/feed_current' ORDER BY r.ts",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        (rows.len() == BACKLOG as usize + 1).then_some(rows)
    })
    .await;
    let values: Vec<f64> = stored.into_iter().map(|(v,)| v).collect();
    let expected: Vec<f64> = (0..=BACKLOG).map(f64::from).collect();
    assert_eq!(values, expected);
    restarted.shutdown().await;
}

/// A publish is acknowledged to the broker only once the spool's fsync
/// covers it (or it is stored; the database is stopped here). With a
/// broker that sends one message at a time (it waits for each
/// acknowledgement) and a one-second fsync window, five messages take four
/// windows to arrive; acknowledged on write, they would arrive at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_is_acknowledged_only_once_fsynced() {
    let mosquitto = Mosquitto::start_with("max_inflight_messages 1\nmax_queued_messages 0\n").await;
    let mut cluster = OwnCluster::start().await;
    let pool = cluster.pool().await;
    let mut config = external_config(&mosquitto, "trackside-fsync");
    config.ingest.spool_fsync_ms = Some(1_000);
    let server = TestServer::start_on(config, pool).await;
    server.external_session_up().await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut gateway = Gateway::connect(mosquitto.port, "gw-fsync").await;
    cluster.stop().await;
    let started = std::time::Instant::now();
    for i in 0..5 {
        gateway
            .publish(
                "trackside/gw-fsync/readings",
                reading("T42/feed_current", f64::from(i), T0 + i64::from(i) * 1_000),
            )
            .await;
    }
    eventually("all five received", || async {
        (server.metric("trackside_readings_received_total").await == 5.0).then_some(())
    })
    .await;
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(3_500),
        "five messages arrived in {took:?}: acknowledged before their fsync"
    );
    assert!(server.metric("trackside_spool_fsyncs_total").await >= 4.0);
}
