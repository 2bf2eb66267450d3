//! A gateway cannot lie or flood: a wrong clock, another gateway's
//! channels, a flood of new names. Through MQTT over TCP, the engine,
//! PostgreSQL, HTTP and `/metrics`.

use std::time::Duration;

use trackside_wire::{ChannelInfo, ExceptionKind, GatewayInfo, TransitionKind};

use crate::exceptions::{batch, exception_frame, now_ms, rules};
use crate::harness::{TestServer, test_config};

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
