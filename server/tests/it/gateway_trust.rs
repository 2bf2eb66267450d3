//! A gateway cannot lie or flood: a wrong clock, another gateway's
//! channels, a flood of new names. Through MQTT over TCP, the engine,
//! PostgreSQL, HTTP and `/metrics`.

use std::time::Duration;

use trackside_wire::{ChannelInfo, ExceptionKind, GatewayInfo, TransitionKind};

use crate::exceptions::{batch, exception_frame, now_ms, rules};
use crate::harness::{TestServer, eventually, test_config};

const CLOCK_RULES: &str = r#"
[[rules]]
id = "fv-low"
target = "*/feed_voltage"
severity = "major"
kind = "limit"
low_set = 1.0
low_clear = 1.2
on_delay_s = 2.0

[[rules]]
id = "clock"
target = "*"
severity = "warning"
kind = "clock_skew"
max_offset_s = 5.0
"#;

fn reading_at(channel: &str, ts: i64, value: f64) -> String {
    serde_json::json!({"readings": [{"channel": channel, "ts": ts, "value": value}]}).to_string()
}

/// The issue's case: one reading stamped 58 minutes ahead (refused), one
/// stamped 8 s ahead (within the tolerance, so accepted), then true low
/// readings every half second: both channels raise their limit exception
/// after its 2 s delay, and the board shows the true values.
#[tokio::test]
async fn a_reading_stamped_ahead_does_not_blind_the_rules_or_the_board() {
    let mut config = test_config();
    config.exceptions.rules = rules(CLOCK_RULES);
    config.exceptions.tick_ms = 100;
    let server = TestServer::start_with(config).await;
    let mut browser = server.websocket().await;
    let mut gateway = server.gateway("gw-clock").await;
    let topic = "trackside/gw-clock/readings";

    let t = now_ms();
    gateway
        .publish(topic, reading_at("T1/feed_voltage", t + 58 * 60_000, 12.0))
        .await;
    gateway
        .publish(topic, reading_at("T2/feed_voltage", t + 8_000, 12.0))
        .await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ts = now_ms();
        gateway
            .publish(
                topic,
                batch(ts, &[("T1/feed_voltage", 0.5), ("T2/feed_voltage", 0.5)]),
            )
            .await;
    }
    for channel in ["T1/feed_voltage", "T2/feed_voltage"] {
        let raised = exception_frame(&mut browser, |e| {
            e.exception.rule == "fv-low" && e.exception.subject == channel
        })
        .await;
        assert_eq!(raised.transition.kind, TransitionKind::Raised, "{channel}");
        assert_eq!(raised.exception.value, Some(0.5), "{channel}");
    }
    let channels: Vec<ChannelInfo> = server
        .get(server.url("/api/channels"))
        .await
        .expect("GET /api/channels")
        .json()
        .await
        .expect("channel list");
    for channel in &channels {
        assert_eq!(
            channel.latest.map(|l| l.value),
            Some(0.5),
            "{} shows the true value",
            channel.channel
        );
    }
    // The 58-minute reading was refused, kept and counted.
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rejected_messages WHERE gateway_id = 'gw-clock' \
         AND reason LIKE '%ahead of the server''s clock%'",
    )
    .fetch_one(&server.pool)
    .await
    .expect("rejections");
    assert_eq!(kept, 1);
}

/// The offset is estimated from the timestamps a gateway states, shown on
/// `/api/gateways` and `/metrics`, and judged by the `clock_skew` rule.
#[tokio::test]
async fn a_gateway_clock_ahead_is_measured_shown_and_raised() {
    let mut config = test_config();
    config.exceptions.rules = rules(CLOCK_RULES);
    let server = TestServer::start_with(config).await;
    let mut browser = server.websocket().await;
    let mut fast = server.gateway("gw-fast").await;
    let mut good = server.gateway("gw-good").await;
    for _ in 0..3 {
        let t = now_ms();
        fast.publish(
            "trackside/gw-fast/readings",
            batch(t + 7_000, &[("T5/feed_voltage", 5.0)]),
        )
        .await;
        good.publish(
            "trackside/gw-good/readings",
            batch(t, &[("T6/feed_voltage", 5.0)]),
        )
        .await;
    }
    let raised = exception_frame(&mut browser, |e| {
        e.exception.kind == ExceptionKind::ClockSkew
    })
    .await;
    assert_eq!(raised.exception.subject, "gw-fast");
    assert_eq!(raised.exception.gateway.as_deref(), Some("gw-fast"));
    let offset = raised.exception.value.expect("the offset as the value");
    assert!((6.0..=7.5).contains(&offset), "{offset}");

    let gateways: Vec<GatewayInfo> = server
        .get(server.url("/api/gateways"))
        .await
        .expect("GET /api/gateways")
        .json()
        .await
        .expect("gateway list");
    let offset_of = |id: &str| {
        gateways
            .iter()
            .find(|g| g.id == id)
            .and_then(|g| g.clock_offset_ms)
            .unwrap_or_else(|| panic!("{id} has an offset: {gateways:?}"))
    };
    assert!((6_000..=7_500).contains(&offset_of("gw-fast")));
    assert!((-1_500..=500).contains(&offset_of("gw-good")));
    let fast_gauge = server
        .metric("trackside_gateway_clock_offset_seconds{gateway=\"gw-fast\"}")
        .await;
    assert!((6.0..=7.5).contains(&fast_gauge), "{fast_gauge}");

    // No clock exception for the good gateway.
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM exceptions WHERE rule_id = 'clock' AND subject = 'gw-good'",
    )
    .fetch_one(&server.pool)
    .await
    .expect("exceptions");
    assert_eq!(open, 0);
}

async fn rejected(server: &TestServer, gateway: &str, reason_like: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM rejected_messages WHERE gateway_id = $1 AND reason LIKE $2",
    )
    .bind(gateway)
    .bind(reason_like)
    .fetch_one(&server.pool)
    .await
    .expect("rejections")
}

/// A channel is its first gateway's: another gateway's reading of it is
/// refused (reason `acl`), kept and counted, until an admin reassigns it
/// (audited), after which it is the other way round.
#[tokio::test]
async fn a_channel_belongs_to_its_gateway_until_an_admin_reassigns_it() {
    let server = TestServer::start().await;
    let mut owner = server.gateway("gw-a").await;
    let mut intruder = server.gateway("gw-b").await;
    let t = now_ms();
    owner
        .publish_readings("gw-a", &[("T7/relay_voltage", t, 1.5)])
        .await;
    eventually("gw-a's reading stored", || async {
        (server.stored("T7/relay_voltage").await.len() == 1).then_some(())
    })
    .await;
    intruder
        .publish_readings(
            "gw-b",
            &[
                ("T7/relay_voltage", t + 100, 0.1),
                ("T8/relay_voltage", t + 100, 1.6),
            ],
        )
        .await;
    eventually(
        "gw-b's reading of gw-a's channel refused and kept",
        || async {
            (rejected(&server, "gw-b", "%belongs to gateway `gw-a`%").await == 1).then_some(())
        },
    )
    .await;
    eventually("gw-b's own channel stored", || async {
        (server.stored("T8/relay_voltage").await.len() == 1).then_some(())
    })
    .await;
    assert_eq!(server.stored("T7/relay_voltage").await, vec![(t, 1.5)]);
    assert_eq!(
        server
            .metric("trackside_rejections_total{reason=\"acl\"}")
            .await,
        1.0
    );

    // An admin gives T7/relay_voltage to gw-b, in the app's way (a session).
    let admin = server
        .sign_in("Ada Admin", trackside_wire::Role::Admin)
        .await;
    let put =
        |path: &str, body: serde_json::Value| admin.client.put(server.url(path)).json(&body).send();
    let bad = put(
        "/api/channels/T7/relay_voltage/gateway",
        serde_json::json!({"gateway": "no way"}),
    )
    .await
    .expect("PUT");
    assert_eq!(bad.status(), 400);
    let missing = put(
        "/api/channels/T99/relay_voltage/gateway",
        serde_json::json!({"gateway": "gw-b"}),
    )
    .await
    .expect("PUT");
    assert_eq!(missing.status(), 404);
    let message: serde_json::Value = missing.json().await.expect("JSON error");
    assert!(
        message
            .to_string()
            .contains("registered by its first reading"),
        "{message}"
    );
    let moved = put(
        "/api/channels/T7/relay_voltage/gateway",
        serde_json::json!({"gateway": "gw-b"}),
    )
    .await
    .expect("PUT");
    assert_eq!(moved.status(), 200);
    let moved: trackside_wire::ChannelReassigned = moved.json().await.expect("answer");
    assert_eq!(
        (moved.previous.as_str(), moved.gateway.as_str()),
        ("gw-a", "gw-b")
    );
    let (actor, detail): (String, serde_json::Value) = sqlx::query_as(
        "SELECT actor, detail FROM audit_log WHERE action = 'channel.reassign' AND target = 'T7/relay_voltage'",
    )
    .fetch_one(&server.pool)
    .await
    .expect("the reassignment audited");
    assert_eq!(actor, "Ada Admin");
    assert_eq!(detail["from"], "gw-a");
    assert_eq!(detail["to"], "gw-b");
    let channels: Vec<ChannelInfo> = server
        .get(server.url("/api/channels"))
        .await
        .expect("GET /api/channels")
        .json()
        .await
        .expect("channels");
    let t7 = channels
        .iter()
        .find(|c| c.channel == "T7/relay_voltage")
        .expect("T7");
    assert_eq!(t7.gateway, "gw-b");

    intruder
        .publish_readings("gw-b", &[("T7/relay_voltage", t + 200, 1.4)])
        .await;
    owner
        .publish_readings("gw-a", &[("T7/relay_voltage", t + 300, 0.2)])
        .await;
    eventually("gw-a now refused", || async {
        (rejected(&server, "gw-a", "%belongs to gateway `gw-b`%").await == 1).then_some(())
    })
    .await;
    eventually("gw-b's reading stored", || async {
        (server.stored("T7/relay_voltage").await.len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        server.stored("T7/relay_voltage").await,
        vec![(t, 1.5), (t + 200, 1.4)]
    );
}

/// One gateway naming thousands of new channels gets its bound and no
/// more, unknown parameters are refused, and another gateway's readings
/// carry on meanwhile.
#[tokio::test]
async fn a_flood_of_new_channels_is_refused_past_the_bound_while_ingest_carries_on() {
    let mut config = test_config();
    config.ingest.max_channels_per_gateway = 100;
    let server = TestServer::start_with(config).await;
    let mut flood = server.gateway("gw-flood").await;
    let mut normal = server.gateway("gw-normal").await;
    let t = now_ms();
    let names: Vec<String> = (0..2_000).map(|i| format!("F{i}/relay_voltage")).collect();
    let readings: Vec<(&str, i64, f64)> = names.iter().map(|n| (n.as_str(), t, 1.0)).collect();
    flood
        .publish_readings("gw-flood", &[("F0/made_up_parameter", t, 1.0)])
        .await;
    flood.publish_readings("gw-flood", &readings).await;
    normal
        .publish_readings("gw-normal", &[("N1/relay_voltage", t, 1.7)])
        .await;
    eventually("the normal gateway's reading stored", || async {
        (server.stored("N1/relay_voltage").await.len() == 1).then_some(())
    })
    .await;
    eventually("the flood's first 100 channels stored", || async {
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM channels WHERE gateway_id = 'gw-flood'")
                .fetch_one(&server.pool)
                .await
                .ok()?;
        (stored == 100).then_some(())
    })
    .await;
    assert_eq!(
        server
            .metric("trackside_rejections_total{reason=\"bound\"}")
            .await,
        1_900.0
    );
    let unknown = eventually("the unknown parameter refused and kept", || async {
        let n = rejected(
            &server,
            "gw-flood",
            "%made_up_parameter%not a known parameter%",
        )
        .await;
        (n == 1).then_some(n)
    })
    .await;
    assert_eq!(unknown, 1);
    // Still at its bound after more: its existing channels pass.
    flood
        .publish_readings("gw-flood", &[("F5/relay_voltage", t + 1_000, 1.1)])
        .await;
    eventually(
        "an existing channel of the flooding gateway still stored",
        || async { (server.stored("F5/relay_voltage").await.len() == 2).then_some(()) },
    )
    .await;
    let total_channels: i64 = sqlx::query_scalar("SELECT count(*) FROM channels")
        .fetch_one(&server.pool)
        .await
        .expect("channels");
    assert_eq!(total_channels, 101);
}
