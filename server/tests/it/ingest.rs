//! MQTT in, PostgreSQL and WebSocket out.

use crate::harness::{TestServer, eventually};

const T0: i64 = 1_795_850_000_000; // 2026-11-28T07:13:20Z

fn batch(readings: &[(&str, f64, i64)]) -> String {
    let readings: Vec<serde_json::Value> = readings
        .iter()
        .map(|(channel, value, ts)| serde_json::json!({"channel": channel, "value": value, "ts": ts}))
        .collect();
    serde_json::json!({ "readings": readings }).to_string()
}

#[tokio::test]
async fn a_published_batch_reaches_the_database_the_websocket_and_the_api() {
    let server = TestServer::start().await;
    let mut browser = server.websocket().await;
    let mut gateway = server.gateway("gw-east").await;

    gateway
        .publish(
            "trackside/gw-east/readings",
            batch(&[
                ("T101/relay_voltage", 1.82, T0),
                ("T101/relay_state", 1.0, T0),
            ]),
        )
        .await;

    assert_eq!(
        browser.readings_of("T101/relay_voltage", 1).await,
        vec![(T0, 1.82)]
    );
    let stored = eventually("the reading in PostgreSQL", || async {
        let rows = server.stored("T101/relay_voltage").await;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(stored, vec![(T0, 1.82)]);

    let channels: Vec<trackside_wire::ChannelInfo> = server
        .get(server.url("/api/channels"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let voltage = channels
        .iter()
        .find(|c| c.channel == "T101/relay_voltage")
        .expect("channel listed");
    assert_eq!(voltage.unit.as_deref(), Some("V"));
    assert_eq!(voltage.gateway, "gw-east");
    assert_eq!(voltage.circuit, "T101");
    assert_eq!(voltage.latest.map(|l| (l.ts, l.value)), Some((T0, 1.82)));
    assert!(voltage.age_ms.is_some_and(|age| age > 0));
    let (unit,): (Option<String>,) =
        sqlx::query_as("SELECT unit FROM channels WHERE name = 'T101/relay_voltage'")
            .fetch_one(&server.pool)
            .await
            .unwrap();
    assert_eq!(unit.as_deref(), Some("V"));
}

#[tokio::test]
async fn a_resent_batch_is_stored_once() {
    let server = TestServer::start().await;
    let mut gateway = server.gateway("gw1").await;
    let readings: Vec<(&str, f64, i64)> = (0..50)
        .map(|i| ("T7/feed_current", 1.0 + i as f64 / 100.0, T0 + i * 417))
        .collect();
    let payload = batch(&readings);
    gateway
        .publish("trackside/gw1/readings", payload.clone())
        .await;
    // The gateway lost its PUBACK, reconnected, and sends its backlog again.
    gateway.publish("trackside/gw1/readings", payload).await;

    eventually("both copies processed", || async {
        (server.metric("trackside_readings_duplicate_total").await == 50.0).then_some(())
    })
    .await;
    let stored = server.stored("T7/feed_current").await;
    assert_eq!(stored.len(), 50);
    assert_eq!(stored[49], (T0 + 49 * 417, 1.49));
    assert_eq!(server.metric("trackside_readings_stored_total").await, 50.0);
}

/// The writer encodes rows itself (binary COPY, and for a chunk repeating
/// a reading the insert fed from that encoding): every double and every
/// microsecond must come out of PostgreSQL as it went in, either way.
#[tokio::test]
async fn stored_times_and_values_are_exact() {
    let server = TestServer::start().await;
    let mut gateway = server.gateway("gw-exact").await;
    let cases: [(&str, f64); 7] = [
        ("2000-01-01T00:00:00.000001Z", 1.82),
        ("2026-11-28T07:13:20.123456Z", -0.0),
        ("2026-11-28T07:13:20.999999+01:00", f64::MAX),
        ("2026-11-28T07:13:21Z", f64::MIN_POSITIVE / 4.0),
        ("2026-11-28T07:13:22.5Z", -1.0e-300),
        ("2026-11-28T07:13:23.000999Z", 0.1 + 0.2),
        ("2026-11-28T07:13:24.25Z", 1.0 / 3.0),
    ];
    let payload = |channel: &str, copies: usize| {
        let readings: Vec<serde_json::Value> = (0..copies)
            .flat_map(|_| cases.iter())
            .map(|(ts, value)| serde_json::json!({"channel": channel, "value": value, "ts": ts}))
            .collect();
        serde_json::json!({ "readings": readings }).to_string()
    };
    let mut sent: Vec<(chrono::DateTime<chrono::Utc>, f64)> = cases
        .iter()
        .map(|(ts, value)| {
            (
                chrono::DateTime::parse_from_rfc3339(ts).unwrap().into(),
                *value,
            )
        })
        .collect();
    sent.sort_by_key(|(ts, _)| *ts);

    // Once: one COPY. Twice in one message: the COPY meets its own
    // duplicate, and the chunk goes through the key-skipping insert.
    for (channel, copies, duplicates) in
        [("T9/relay_voltage", 1, 0.0), ("T10/relay_voltage", 2, 7.0)]
    {
        gateway
            .publish("trackside/gw-exact/readings", payload(channel, copies))
            .await;
        let stored: Vec<(chrono::DateTime<chrono::Utc>, f64)> =
            eventually("every reading stored", || async {
                let rows: Vec<(chrono::DateTime<chrono::Utc>, f64)> = sqlx::query_as(
                    "SELECT r.ts, r.value FROM readings r JOIN channels c ON c.id = r.channel_id
                     WHERE c.name = $1 ORDER BY r.ts",
                )
                .bind(channel)
                .fetch_all(&server.pool)
                .await
                .unwrap();
                (rows.len() == cases.len()).then_some(rows)
            })
            .await;
        for ((ts, value), (stored_ts, stored_value)) in sent.iter().zip(&stored) {
            assert_eq!(stored_ts, ts, "{channel}");
            assert_eq!(
                stored_value.to_bits(),
                value.to_bits(),
                "{channel} {ts}: {value:e}"
            );
        }
        // Counted just after the rows commit.
        eventually("the repeated readings counted as duplicates", || async {
            (server.metric("trackside_readings_duplicate_total").await == duplicates).then_some(())
        })
        .await;
    }
}

/// The store writer's memory is bounded in readings, not messages. A batch
/// larger than the whole bound is stored all the same, and at once: nothing
/// after it is needed to flush it out.
#[tokio::test]
async fn a_batch_larger_than_the_memory_bound_is_stored() {
    let mut config = crate::harness::test_config();
    config.ingest.store_queue_readings = 10;
    let server = TestServer::start_with(config).await;
    let mut gateway = server.gateway("gw-big").await;
    let readings: Vec<(&str, f64, i64)> = (0..200)
        .map(|i| ("T8/feed_current", i as f64, T0 + i * 100))
        .collect();
    gateway
        .publish("trackside/gw-big/readings", batch(&readings))
        .await;

    let stored = eventually("every reading stored", || async {
        let rows = server.stored("T8/feed_current").await;
        (rows.len() == 200).then_some(rows)
    })
    .await;
    assert_eq!(stored[0], (T0, 0.0));
    assert_eq!(stored[199], (T0 + 199 * 100, 199.0));
}

#[tokio::test]
async fn malformed_payloads_are_kept_and_ingest_goes_on() {
    let server = TestServer::start().await;
    let mut gateway = server.gateway("gw2").await;

    gateway
        .publish("trackside/gw2/readings", "{\"readings\": [oops")
        .await;
    gateway
        .publish(
            "trackside/gw2/readings",
            batch(&[
                ("T9/relay_current", 140.0, T0),
                ("T9 bad/relay_current", 1.0, T0),
            ]),
        )
        .await;
    gateway
        .publish("trackside/gw2/channel/T9/relay_voltage", "1.55")
        .await;

    eventually("the good readings stored", || async {
        let current = server.stored("T9/relay_current").await;
        let voltage = server.stored("T9/relay_voltage").await;
        (current.len() == 1 && voltage.len() == 1).then_some(())
    })
    .await;
    assert_eq!(server.stored("T9/relay_current").await, vec![(T0, 140.0)]);
    assert_eq!(server.stored("T9/relay_voltage").await[0].1, 1.55);

    let rejected: Vec<(String, Option<String>, Vec<u8>, String)> =
        eventually("both rejections stored", || async {
            let rows: Vec<(String, Option<String>, Vec<u8>, String)> = sqlx::query_as(
                "SELECT topic, gateway_id, payload, reason FROM rejected_messages ORDER BY id",
            )
            .fetch_all(&server.pool)
            .await
            .unwrap();
            (rows.len() == 2).then_some(rows)
        })
        .await;
    assert_eq!(rejected[0].0, "trackside/gw2/readings");
    assert_eq!(rejected[0].1.as_deref(), Some("gw2"));
    assert_eq!(rejected[0].2, b"{\"readings\": [oops");
    assert!(
        rejected[0].3.starts_with("not a reading batch"),
        "{}",
        rejected[0].3
    );
    assert!(
        rejected[1].3.starts_with("readings[1]:"),
        "{}",
        rejected[1].3
    );
    let kept: serde_json::Value = serde_json::from_slice(&rejected[1].2).unwrap();
    assert_eq!(kept["channel"], "T9 bad/relay_current");

    assert_eq!(
        server.metric("trackside_rejected_payloads_total").await,
        1.0
    );
    assert_eq!(
        server.metric("trackside_rejected_readings_total").await,
        1.0
    );
}

#[tokio::test]
async fn readings_survive_a_server_restart_and_reload_into_the_board() {
    let server = TestServer::start().await;
    let mut gateway = server.gateway("gw3").await;
    gateway
        .publish(
            "trackside/gw3/readings",
            batch(&[("T3/relay_state", 0.0, T0)]),
        )
        .await;
    eventually("stored", || async {
        (!server.stored("T3/relay_state").await.is_empty()).then_some(())
    })
    .await;
    let pool = server.pool.clone();
    let config = server.config.clone();
    server.running.shutdown().await;

    let restarted = trackside::start(&config, pool).await.expect("restart");
    let channels: Vec<trackside_wire::ChannelInfo> =
        crate::harness::client_with(&[("authorization", format!("Bearer {}", server.token))])
            .get(format!("http://{}/api/channels", restarted.http_addr))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0].latest.map(|l| (l.ts, l.value)), Some((T0, 0.0)));
    assert_eq!(channels[0].gateway, "gw3");
    restarted.shutdown().await;
}

#[tokio::test]
async fn a_batch_reading_is_not_lost_when_older_than_the_latest() {
    let server = TestServer::start().await;
    let mut browser = server.websocket().await;
    let mut gateway = server.gateway("gw4").await;
    gateway
        .publish(
            "trackside/gw4/readings",
            batch(&[("T4/feed_voltage", 9.0, T0 + 1_000)]),
        )
        .await;
    // A backlog from before: stored and sent live, but the board's latest
    // value stays the newer one.
    gateway
        .publish(
            "trackside/gw4/readings",
            batch(&[("T4/feed_voltage", 8.0, T0)]),
        )
        .await;
    let live = browser.readings_of("T4/feed_voltage", 2).await;
    assert_eq!(live, vec![(T0 + 1_000, 9.0), (T0, 8.0)]);
    eventually("both stored", || async {
        (server.stored("T4/feed_voltage").await.len() == 2).then_some(())
    })
    .await;
    let channels: Vec<trackside_wire::ChannelInfo> = server
        .get(server.url("/api/channels"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(channels[0].latest.map(|l| l.value), Some(9.0));
}

#[tokio::test]
async fn a_gateway_that_drops_off_is_marked_offline_by_its_will() {
    let server = TestServer::start().await;
    let gateway =
        crate::harness::Gateway::connect_with_status(server.running.mqtt_addr.port(), "gw-will")
            .await;
    let gateways = || async {
        server
            .get(server.url("/api/gateways"))
            .await
            .unwrap()
            .json::<Vec<trackside_wire::GatewayInfo>>()
            .await
            .unwrap()
    };
    eventually("the gateway online", || async {
        let list = gateways().await;
        (list.len() == 1 && list[0].id == "gw-will" && list[0].online == Some(true)).then_some(())
    })
    .await;

    gateway.kill();
    let offline = eventually("the will to mark it offline", || async {
        let list = gateways().await;
        (list[0].online == Some(false)).then_some(list)
    })
    .await;
    assert!(offline[0].status_at.is_some());
}

#[tokio::test]
async fn a_senml_pack_is_stored_with_si_units_converted() {
    let server = TestServer::start().await;
    let mut gateway = server.gateway("gw-senml").await;
    let bt = T0 as f64 / 1000.0;
    gateway
        .publish(
            "trackside/gw-senml/senml",
            format!(
                r#"[{{"bn":"T55/","bt":{bt},"n":"relay_current","u":"A","v":0.142}},
                    {{"n":"relay_state","vb":false,"t":0.25}},
                    {{"n":"relay_voltage","vs":"n/a"}}]"#
            ),
        )
        .await;
    eventually("the pack stored", || async {
        let current = server.stored("T55/relay_current").await;
        let state = server.stored("T55/relay_state").await;
        (current.len() == 1 && state.len() == 1).then_some(())
    })
    .await;
    assert_eq!(server.stored("T55/relay_current").await, vec![(T0, 142.0)]);
    assert_eq!(
        server.stored("T55/relay_state").await,
        vec![(T0 + 250, 0.0)]
    );
    let (reason,): (String,) = eventually("the string record rejected", || async {
        sqlx::query_as("SELECT reason FROM rejected_messages")
            .fetch_optional(&server.pool)
            .await
            .unwrap()
    })
    .await;
    assert!(
        reason.starts_with("record 2: string and data values"),
        "{reason}"
    );
}

/// The MQTT 5 and TLS listeners can be switched off; the plain listener
/// alone ingests, and the connection gauge names only it.
#[tokio::test]
async fn a_server_with_only_the_plain_listener_ingests() {
    let mut config = crate::harness::test_config();
    config.mqtt.listen_v5 = None;
    config.mqtt.tls_listen = None;
    let server = TestServer::start_with(config).await;
    assert_eq!(
        (server.running.mqtt_v5_addr, server.running.mqtt_tls_addr),
        (None, None)
    );
    let mut gateway = server.gateway("gw-plain").await;
    gateway
        .publish(
            "trackside/gw-plain/readings",
            batch(&[("T5/relay_voltage", 1.7, T0)]),
        )
        .await;
    eventually("the reading stored", || async {
        (server.stored("T5/relay_voltage").await == vec![(T0, 1.7)]).then_some(())
    })
    .await;
    let metrics = server
        .get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let listeners: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("trackside_mqtt_connections{"))
        .collect();
    assert_eq!(listeners.len(), 1, "{listeners:?}");
    assert!(listeners[0].starts_with("trackside_mqtt_connections{listener=\"mqtt\"}"));
}
