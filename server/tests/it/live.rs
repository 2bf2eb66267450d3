//! The live WebSocket: subscriptions, and a client that stops reading.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use trackside_wire::{ClientMessage, ServerMessage};

use crate::harness::{TestServer, eventually, test_config};

const T0: i64 = 1_795_850_000_000;

#[tokio::test]
async fn a_subscription_selects_channels_and_starts_from_their_latest_values() {
    let server = TestServer::start().await;
    let mut gateway = server.gateway("gw1").await;
    gateway
        .publish(
            "trackside/gw1/readings",
            format!(
                r#"{{"ts":{T0},"readings":[{{"channel":"T1/relay_state","value":1}},{{"channel":"T1/relay_voltage","value":1.4}}]}}"#
            ),
        )
        .await;
    eventually("the readings registered", || async {
        (server.metric("trackside_readings_received_total").await == 2.0).then_some(())
    })
    .await;

    let mut client = server.websocket().await;
    client
        .send(&ClientMessage::Subscribe {
            channels: vec!["*/relay_state".into()],
        })
        .await;
    // Exception frames go to every client (T0 is days old, so the gateway
    // looks behind and `gateway-clock` may be raised); readings are what
    // this test is about.
    match next_not_exception(&mut client).await {
        ServerMessage::Readings { readings } => {
            assert_eq!(readings.len(), 1, "{readings:?}");
            assert_eq!(readings[0].channel, "T1/relay_state");
            assert_eq!((readings[0].ts, readings[0].value), (T0, 1.0));
        }
        other => panic!("expected the subscription's snapshot, got {other:?}"),
    }

    gateway
        .publish("trackside/gw1/channel/T1/relay_voltage", "0.03")
        .await;
    gateway
        .publish("trackside/gw1/channel/T1/relay_state", "0")
        .await;
    match next_not_exception(&mut client).await {
        ServerMessage::Readings { readings } => {
            assert_eq!(
                readings.len(),
                1,
                "only the subscribed channel: {readings:?}"
            );
            assert_eq!(readings[0].channel, "T1/relay_state");
            assert_eq!(readings[0].value, 0.0);
        }
        other => panic!("expected readings, got {other:?}"),
    }
}

/// The next frame that is not an exception's.
async fn next_not_exception(client: &mut crate::harness::LiveClient) -> ServerMessage {
    loop {
        match client.next().await {
            ServerMessage::Exception(_) => continue,
            other => return other,
        }
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_is_coalesced_and_others_are_not_held_up() {
    let mut config = test_config();
    config.ingest.live_queue = 64;
    // The stalled client must outlast the publishing on a loaded machine;
    // being dropped for stalling is the other test's subject.
    config.ingest.live_send_timeout_secs = 120;
    let server = TestServer::start_with(config).await;
    let mut gateway = server.gateway("gw1").await;
    let mut stalled = server.websocket().await;
    let mut attentive = server.websocket().await;

    // Enough data to fill the stalled client's socket buffers many times.
    let messages = 400;
    let per_message = 500;
    let reader = tokio::spawn(async move {
        attentive
            .readings_of("T1/relay_current", messages * per_message)
            .await
            .len()
    });
    for m in 0..messages {
        let readings: Vec<serde_json::Value> = (0..per_message)
            .map(|i| {
                let ts = T0 + (m * per_message + i) as i64;
                serde_json::json!({"channel": "T1/relay_current", "value": 100.0 + i as f64, "ts": ts})
            })
            .collect();
        gateway
            .publish(
                "trackside/gw1/readings",
                serde_json::json!({ "readings": readings }).to_string(),
            )
            .await;
    }
    let received = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the attentive client got everything in time")
        .expect("reader task");
    assert_eq!(received, messages * per_message);

    // The stalled client now reads: somewhere it was told what it missed,
    // and right after that it got the latest value to resume from.
    let last_ts = T0 + (messages * per_message - 1) as i64;
    let mut missed = 0;
    loop {
        match stalled.next().await {
            ServerMessage::Lagged { missed: n } => missed += n,
            ServerMessage::Readings { readings } => {
                if missed > 0 && readings.iter().any(|r| r.ts == last_ts) {
                    break;
                }
            }
            ServerMessage::Hello { .. } => panic!("hello twice"),
            ServerMessage::SessionEnded { reason } => panic!("session ended: {reason}"),
            // The default rules may find something in the flood's values.
            ServerMessage::Heartbeat { .. }
            | ServerMessage::Exception(_)
            | ServerMessage::Stored { .. }
            | ServerMessage::Flood(_) => {}
        }
    }
    assert!(missed > 0);
    assert!(server.metric("trackside_ws_lagged_messages_total").await >= missed as f64);
}

#[tokio::test]
async fn a_quiet_connection_still_hears_a_heartbeat() {
    let server = TestServer::start().await;
    let mut client = server.websocket().await;
    match client.next().await {
        ServerMessage::Heartbeat { server_time } => {
            let now = chrono::Utc::now().timestamp_millis();
            assert!((now - server_time).abs() < 5_000);
        }
        other => panic!("expected a heartbeat on a quiet yard, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_whose_socket_stays_full_is_disconnected() {
    let mut config = test_config();
    config.ingest.live_send_timeout_secs = 1;
    let server = TestServer::start_with(config).await;
    let mut gateway = server.gateway("gw1").await;
    let _stalled = server.websocket().await;
    // Publish until the server gives up on the client that never reads.
    let readings: Vec<serde_json::Value> = (0..1000)
        .map(|i| serde_json::json!({"channel": "T1/relay_current", "value": i, "ts": T0 + i}))
        .collect();
    let payload = serde_json::json!({ "readings": readings }).to_string();
    let deadline = tokio::time::Instant::now() + crate::harness::DEADLINE;
    while server.metric("trackside_ws_dropped_clients_total").await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled client was never dropped"
        );
        gateway
            .publish("trackside/gw1/readings", payload.clone())
            .await;
    }
    assert_eq!(server.metric("trackside_ws_clients").await, 0.0);
}

/// Clients only send subscriptions: one far larger than any yard needs is
/// refused by closing that connection, and the feed goes on for the rest.
#[tokio::test]
async fn an_oversized_client_message_closes_only_that_connection() {
    let server = TestServer::start().await;
    let mut gateway = server.gateway("gw1").await;
    let mut bystander = server.websocket().await;
    let mut oversized = crate::harness::try_websocket(
        &server.ws_url(),
        &[("authorization", &format!("Bearer {}", server.token))],
    )
    .await
    .expect("WebSocket handshake");
    let channels: Vec<String> = (0..40_000).map(|i| format!("T{i}/relay_voltage")).collect();
    let subscribe = serde_json::json!({"type": "subscribe", "channels": channels}).to_string();
    assert!(subscribe.len() > 512 * 1024);
    // The server may close before the whole frame is written.
    let _ = oversized.send(Message::Text(subscribe.into())).await;
    let closed = tokio::time::timeout(crate::harness::DEADLINE, async {
        loop {
            match oversized.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the oversized client was not disconnected");

    gateway
        .publish(
            "trackside/gw1/readings",
            serde_json::json!({"readings": [
                {"channel": "T1/relay_voltage", "value": 1.5, "ts": T0}
            ]})
            .to_string(),
        )
        .await;
    assert_eq!(
        bystander.readings_of("T1/relay_voltage", 1).await,
        vec![(T0, 1.5)]
    );
}
