//! Exceptions through the real path: MQTT in, the engine, PostgreSQL, the
//! WebSocket, HTTP acknowledgement, a restart, and the webhook.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use trackside::config::Config;
use trackside_wire::{
    ExceptionDetail, ExceptionEvent, ExceptionInfo, ExceptionKind, Role, Rule, ServerMessage,
    TransitionKind,
};

use crate::harness::{Gateway, LiveClient, TestServer, eventually, test_config};

pub(crate) fn rules(text: &str) -> Vec<Rule> {
    #[derive(serde::Deserialize)]
    struct File {
        rules: Vec<Rule>,
    }
    toml::from_str::<File>(text).expect("rules").rules
}

/// Fast rules, so the tests need not wait for the shipped delays.
pub(crate) const FAST_RULES: &str = r#"
[[rules]]
id = "rv-low"
target = "*/relay_voltage"
severity = "major"
kind = "limit"
low_set = 0.8
low_clear = 0.9
only_when_clear = true

[[rules]]
id = "fv-rate"
target = "*/feed_voltage"
severity = "warning"
kind = "rate_of_change"
max_per_s = 1.0
window_s = 1.0

[[rules]]
id = "flick"
target = "*/relay_state"
severity = "major"
kind = "flick"
min_occupied_s = 2.0
window_s = 60.0

[[rules]]
id = "long"
target = "*/relay_state"
severity = "major"
kind = "long_occupation"
max_occupied_s = 1.0

[[rules]]
id = "stale"
target = "*/rx_level"
severity = "warning"
kind = "stale"
periods = 2.0
period_s = 0.5

[[rules]]
id = "offline"
target = "*"
severity = "critical"
kind = "gateway_offline"
"#;

pub(crate) fn fast_config() -> Config {
    let mut config = test_config();
    config.exceptions.rules = rules(FAST_RULES);
    config.exceptions.tick_ms = 100;
    config
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn batch(ts: i64, readings: &[(&str, f64)]) -> String {
    let readings: Vec<_> = readings
        .iter()
        .map(|(channel, value)| json!({"channel": channel, "value": value}))
        .collect();
    json!({"ts": ts, "readings": readings}).to_string()
}

/// Reads frames until an exception event matches, failing the test after
/// the deadline (heartbeats alone must not keep it waiting for ever).
pub(crate) async fn exception_frame(
    client: &mut LiveClient,
    want: impl Fn(&ExceptionEvent) -> bool,
) -> ExceptionEvent {
    let wait = async {
        loop {
            if let ServerMessage::Exception(event) = client.next().await
                && want(&event)
            {
                return *event;
            }
        }
    };
    tokio::time::timeout(crate::harness::DEADLINE, wait)
        .await
        .expect("the exception frame within the deadline")
}

pub(crate) async fn exceptions(server: &TestServer, query: &str) -> Vec<ExceptionInfo> {
    let response = server
        .get(server.url(&format!("/api/exceptions{query}")))
        .await
        .expect("GET /api/exceptions");
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.expect("exception list")
}

/// Acknowledges as the operator Ann Signaller.
pub(crate) async fn ack(
    server: &TestServer,
    id: i64,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    ack_as(server, "Ann Signaller", id, body).await
}

/// Acknowledges as `operator`, with an API token of theirs.
async fn ack_as(
    server: &TestServer,
    operator: &str,
    id: i64,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let token = server.token_of(operator, Role::Operator).await;
    let response = crate::harness::client_with(&[("authorization", format!("Bearer {token}"))])
        .post(server.url(&format!("/api/exceptions/{id}/ack")))
        .json(&body)
        .send()
        .await
        .expect("POST ack");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

#[tokio::test]
async fn a_low_relay_voltage_is_raised_stored_pushed_and_acknowledged() {
    let server = TestServer::start_with(fast_config()).await;
    let mut browser = server.websocket().await;
    // A client that subscribed to one unrelated channel still gets exceptions.
    let mut narrow = server.websocket().await;
    narrow
        .send(&trackside_wire::ClientMessage::Subscribe {
            channels: vec!["T999/*".into()],
        })
        .await;
    let mut gateway = server.gateway("gw-ex").await;
    let t = now_ms();
    gateway
        .publish(
            "trackside/gw-ex/readings",
            batch(t, &[("T101/relay_state", 1.0), ("T101/relay_voltage", 1.5)]),
        )
        .await;
    gateway
        .publish(
            "trackside/gw-ex/readings",
            batch(t + 500, &[("T101/relay_voltage", 0.6)]),
        )
        .await;

    let raised = exception_frame(&mut browser, |e| e.exception.rule == "rv-low").await;
    assert_eq!(raised.transition.kind, TransitionKind::Raised);
    assert_eq!(raised.exception.subject, "T101/relay_voltage");
    assert_eq!(raised.exception.circuit.as_deref(), Some("T101"));
    assert_eq!(raised.exception.gateway.as_deref(), Some("gw-ex"));
    assert_eq!(raised.exception.value, Some(0.6));
    assert!(raised.exception.active && !raised.exception.acknowledged);
    let id = raised.exception.id;
    assert_eq!(
        exception_frame(&mut narrow, |e| e.exception.id == id)
            .await
            .exception
            .id,
        id
    );

    let (active, open, acked): (bool, bool, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT active, open, acked_at FROM exceptions WHERE id = $1")
            .bind(id)
            .fetch_one(&server.pool)
            .await
            .expect("the exception in PostgreSQL");
    assert_eq!((active, open, acked), (true, true, None));

    // Still low: no second exception.
    gateway
        .publish(
            "trackside/gw-ex/readings",
            batch(t + 1_000, &[("T101/relay_voltage", 0.5)]),
        )
        .await;
    let listed = exceptions(&server, "?active=true&circuit=T101").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert!(exceptions(&server, "?severity=critical").await.is_empty());
    assert_eq!(
        exceptions(&server, "?severity=major,critical").await.len(),
        1
    );

    // Bad acknowledgements say what to do; a name is not the client's to give.
    let (status, body) = ack(&server, id, json!({"by": "Someone Else", "comment": "x"})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("signed-in user"),
        "{body}"
    );
    let (status, body) = ack(&server, id, json!({"comment": " "})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("comment"),
        "{body}"
    );
    let (status, _) = ack(&server, 999_999, json!({"comment": "x"})).await;
    assert_eq!(status, 404);

    let (status, body) = ack(
        &server,
        id,
        json!({"comment": "S&T called, bond suspected"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let acked: ExceptionInfo = serde_json::from_value(body).unwrap();
    assert!(acked.acknowledged && acked.active && acked.open);
    assert_eq!(acked.acked_by.as_deref(), Some("Ann Signaller"));
    let pushed = exception_frame(&mut browser, |e| {
        e.exception.id == id && e.transition.kind == TransitionKind::Acknowledged
    })
    .await;
    assert_eq!(
        pushed.transition.comment.as_deref(),
        Some("S&T called, bond suspected")
    );
    // The acknowledgement is in the audit trail, under Ann's name and role.
    let trail: Vec<trackside_wire::AuditEntry> = server
        .get(server.url("/api/audit?action=exception.acknowledge"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(
        (
            trail[0].actor.as_deref(),
            trail[0].role.as_deref(),
            trail[0].target.clone()
        ),
        (
            Some("Ann Signaller"),
            Some("operator"),
            Some(id.to_string())
        )
    );
    assert_eq!(trail[0].detail["comment"], "S&T called, bond suspected");
    let (status, body) = ack_as(&server, "Bob", id, json!({"comment": "again"})).await;
    assert_eq!(status, 409);
    assert!(
        body["error"].as_str().unwrap().contains("Ann Signaller"),
        "{body}"
    );

    // Back above the clear threshold: cleared, and closed since acknowledged.
    gateway
        .publish(
            "trackside/gw-ex/readings",
            batch(t + 2_000, &[("T101/relay_voltage", 1.4)]),
        )
        .await;
    exception_frame(&mut browser, |e| {
        e.exception.id == id && e.transition.kind == TransitionKind::Cleared
    })
    .await;
    let detail: ExceptionDetail = server
        .get(server.url(&format!("/api/exceptions/{id}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!detail.exception.open);
    let kinds: Vec<TransitionKind> = detail.transitions.iter().map(|t| t.kind).collect();
    assert_eq!(
        kinds,
        [
            TransitionKind::Raised,
            TransitionKind::Acknowledged,
            TransitionKind::Cleared
        ]
    );
    assert!(exceptions(&server, "?open=true").await.is_empty());
    assert_eq!(
        server.metric("trackside_exceptions_raised_total").await,
        1.0
    );
    assert_eq!(server.metric("trackside_exceptions_open").await, 0.0);
}

#[tokio::test]
async fn every_rule_kind_fires_through_mqtt() {
    let server = TestServer::start_with(fast_config()).await;
    let mut gateway = server.gateway("gw-kinds").await;
    let t = now_ms();
    let topic = "trackside/gw-kinds/readings";
    // A flick on T1: 0.4 s occupied.
    gateway
        .publish(topic, batch(t, &[("T1/relay_state", 1.0)]))
        .await;
    gateway
        .publish(topic, batch(t + 100, &[("T1/relay_state", 0.0)]))
        .await;
    gateway
        .publish(topic, batch(t + 500, &[("T1/relay_state", 1.0)]))
        .await;
    // T2 occupied and staying so (long occupation after 1 s).
    gateway
        .publish(topic, batch(t + 600, &[("T2/relay_state", 0.0)]))
        .await;
    // A 3 V jump within 0.5 s on T3's feed.
    gateway
        .publish(topic, batch(t + 700, &[("T3/feed_voltage", 9.0)]))
        .await;
    gateway
        .publish(topic, batch(t + 1_300, &[("T3/feed_voltage", 6.0)]))
        .await;
    // T4's receiver reports, then stops while the gateway goes on.
    for i in 0..4 {
        gateway
            .publish(topic, batch(t + i * 300, &[("T4/rx_level", 300.0)]))
            .await;
    }
    let stop = Instant::now() + Duration::from_secs(3);
    let mut i = 0;
    while Instant::now() < stop {
        i += 1;
        gateway
            .publish(topic, batch(now_ms() + i, &[("T3/frequency", 418.8)]))
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let kinds = eventually("every kind raised", || async {
        let list = exceptions(&server, "?active=true").await;
        let mut kinds: Vec<(ExceptionKind, String)> =
            list.iter().map(|e| (e.kind, e.subject.clone())).collect();
        kinds.sort_by_key(|(k, _)| k.as_str());
        (kinds.len() >= 4).then_some(kinds)
    })
    .await;
    assert_eq!(
        kinds,
        [
            (ExceptionKind::Flick, "T1/relay_state".to_owned()),
            (ExceptionKind::LongOccupation, "T2/relay_state".to_owned()),
            (ExceptionKind::RateOfChange, "T3/feed_voltage".to_owned()),
            (ExceptionKind::Stale, "T4/rx_level".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_killed_gateway_is_offline_within_its_keep_alive_and_back_on_return() {
    let server = TestServer::start_with(fast_config()).await;
    let port = server.running.mqtt_addr.port();
    let gateway = Gateway::connect_with_status(port, "gw-cut").await;
    let offline = |server: &TestServer| {
        let url = server.url("/api/exceptions?rule=offline&active=true");
        let client = server.client();
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Vec<ExceptionInfo>>()
                .await
                .unwrap()
        }
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(offline(&server).await.is_empty());

    let cut = Instant::now();
    gateway.kill();
    let raised = eventually("the gateway reported offline", || async {
        offline(&server).await.pop()
    })
    .await;
    let took = cut.elapsed();
    // The harness's keep-alive is 5 s; a dropped TCP connection is reported
    // at once (the will), far inside it.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(raised.subject, "gw-cut");
    assert_eq!(raised.kind, ExceptionKind::GatewayOffline);
    assert_eq!(raised.circuit, None);

    let _back = Gateway::connect_with_status(port, "gw-cut").await;
    eventually("the exception cleared", || async {
        offline(&server).await.is_empty().then_some(())
    })
    .await;
    let all = exceptions(&server, "?rule=offline").await;
    assert_eq!(
        all.len(),
        1,
        "one exception, cleared, awaiting acknowledgement"
    );
    assert!(!all[0].active && all[0].open);
}

#[tokio::test]
async fn a_restart_resumes_open_exceptions_without_raising_them_again() {
    let config = fast_config();
    let server = TestServer::start_with(config.clone()).await;
    let mut gateway = server.gateway("gw-r").await;
    let t = now_ms();
    gateway
        .publish(
            "trackside/gw-r/readings",
            batch(t, &[("T7/relay_voltage", 0.5)]),
        )
        .await;
    let first = eventually("raised", || async {
        exceptions(&server, "?active=true").await.pop()
    })
    .await;
    let pool = server.pool.clone();
    // The server's own configuration, with its private data directory.
    let config = server.config.clone();
    drop(gateway);
    server.running.shutdown().await;

    let restarted = trackside::start(&config, pool.clone())
        .await
        .expect("restart");
    let port = restarted.mqtt_addr.port();
    let url = |path: &str| format!("http://{}{path}", restarted.http_addr);
    let admin =
        crate::harness::client_with(&[("authorization", format!("Bearer {}", server.token))]);
    let list: Vec<ExceptionInfo> = admin
        .get(url("/api/exceptions?open=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, std::slice::from_ref(&first));

    // Still low after the restart: the same exception, not a second one.
    let mut gateway = Gateway::connect(port, "gw-r").await;
    gateway
        .publish(
            "trackside/gw-r/readings",
            batch(t + 1_000, &[("T7/relay_voltage", 0.4)]),
        )
        .await;
    // Then it recovers: the resumed exception clears.
    gateway
        .publish(
            "trackside/gw-r/readings",
            batch(t + 2_000, &[("T7/relay_voltage", 1.5)]),
        )
        .await;
    eventually("the resumed exception cleared", || async {
        let (active,): (bool,) = sqlx::query_as("SELECT active FROM exceptions WHERE id = $1")
            .bind(first.id)
            .fetch_one(&pool)
            .await
            .unwrap();
        (!active).then_some(())
    })
    .await;
    let (count, raises): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM exceptions),
                (SELECT count(*) FROM exception_transitions WHERE kind = 'raised')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((count, raises), (1, 1));
    restarted.shutdown().await;
}

#[tokio::test]
async fn the_webhook_gets_every_transition_and_retries_a_failure() {
    // A real HTTP listener that fails its first request.
    let received: Arc<Mutex<Vec<ExceptionEvent>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = {
        let received = received.clone();
        let calls = calls.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(event): axum::Json<ExceptionEvent>| {
                let received = received.clone();
                let calls = calls.clone();
                async move {
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    received.lock().unwrap().push(event);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut config = fast_config();
    config.exceptions.webhook_urls = vec![format!("http://{hook}/hook")];
    let server = TestServer::start_with(config).await;
    let mut gateway = server.gateway("gw-hook").await;
    let t = now_ms();
    gateway
        .publish(
            "trackside/gw-hook/readings",
            batch(t, &[("T9/relay_voltage", 0.5)]),
        )
        .await;
    let id = eventually("raised", || async { exceptions(&server, "").await.pop() })
        .await
        .id;
    let (status, _) = ack(&server, id, json!({"comment": "on it"})).await;
    assert_eq!(status, 200);
    gateway
        .publish(
            "trackside/gw-hook/readings",
            batch(t + 1_000, &[("T9/relay_voltage", 1.5)]),
        )
        .await;
    let kinds = eventually("three notifications", || async {
        let got = received.lock().unwrap().clone();
        (got.len() == 3).then_some(got.iter().map(|e| e.transition.kind).collect::<Vec<_>>())
    })
    .await;
    assert_eq!(
        kinds,
        [
            TransitionKind::Raised,
            TransitionKind::Acknowledged,
            TransitionKind::Cleared
        ]
    );
    assert_eq!(server.metric("trackside_webhook_failures_total").await, 1.0);
    assert_eq!(server.metric("trackside_webhook_sent_total").await, 3.0);
    assert_eq!(server.metric("trackside_webhook_dropped_total").await, 0.0);
}

#[tokio::test]
async fn the_rules_are_listed() {
    let server = TestServer::start().await;
    let rules: Vec<Rule> = server
        .get(server.url("/api/rules"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: std::collections::HashSet<ExceptionKind> =
        rules.iter().map(|r| r.check.kind()).collect();
    assert_eq!(
        kinds.len(),
        ExceptionKind::ALL.len(),
        "a default for every kind"
    );
    assert!(rules.iter().any(|r| r.target == "*/relay_voltage"));
    let response = server
        .get(server.url("/api/exceptions?severity=loud"))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("warning"),
        "{body}"
    );
}

#[tokio::test]
async fn the_simulated_gateway_drop_fires_its_will_without_stale_channels() {
    let server = TestServer::start().await;
    let stop = tokio_util::sync::CancellationToken::new();
    // The schedule drops yard-gw01 at 700 s for 45 s: start 4 s before.
    let yard = tokio::spawn(trackside::sim::run(
        trackside::sim::YardOptions {
            host: "127.0.0.1".into(),
            port: server.running.mqtt_addr.port(),
            circuits: 6,
            gateways: 2,
            rate_hz: 4.0,
            seed: 1,
            faults: true,
            start_at_s: 696.0,
            password: None,
            sags: Vec::new(),
        },
        stop.clone(),
    ));
    let raised = eventually("the dropped gateway reported offline", || async {
        exceptions(&server, "?rule=gateway-offline&active=true")
            .await
            .pop()
    })
    .await;
    assert_eq!(raised.subject, "yard-gw01");
    // Its keep-alive (5 s) lapsed: the will, 1.5 x keep-alive after the
    // last packet, is the only exception; its channels are not stale.
    let all = exceptions(&server, "").await;
    assert_eq!(
        all.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [ExceptionKind::GatewayOffline],
        "{all:#?}"
    );
    stop.cancel();
    yard.await.expect("yard task").expect("yard ran");
}

/// A webhook receiver that accepts connections and reads every request but
/// never answers, remembering what it was sent and when.
pub(crate) struct SilentReceiver {
    pub(crate) url: String,
    seen: Arc<Mutex<Vec<(Instant, ExceptionEvent)>>>,
}

impl SilentReceiver {
    pub(crate) async fn start() -> Self {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<(Instant, ExceptionEvent)>>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&request).to_string();
                        let Some((head, body)) = text.split_once("\r\n\r\n") else {
                            continue;
                        };
                        let length = head
                            .lines()
                            .find_map(|l| {
                                let (name, value) = l.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if body.len() < length {
                            continue;
                        }
                        if let Ok(event) = serde_json::from_str(&body[..length]) {
                            record.lock().unwrap().push((Instant::now(), event));
                        }
                        request.clear();
                        // No answer, ever: hold the connection until the
                        // client gives up.
                    }
                });
            }
        });
        Self { url, seen }
    }

    /// When each notification about `subject` of this kind arrived.
    pub(crate) fn arrivals(&self, subject: &str, kind: TransitionKind) -> Vec<Instant> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| e.exception.subject == subject && e.transition.kind == kind)
            .map(|(at, _)| *at)
            .collect()
    }
}

/// With one receiver that never answers, a new critical transition is
/// tried at once, while the old ones wait for their retries; and an
/// exception's clear never overtakes its raise.
#[tokio::test]
async fn a_new_transition_is_tried_at_once_while_a_silent_receiver_holds_old_ones() {
    let silent = SilentReceiver::start().await;
    let mut config = fast_config();
    config.exceptions.webhook_urls = vec![silent.url.clone()];
    let server = TestServer::start_with(config).await;
    let mut gateway = server.gateway("gw-old").await;
    let t = now_ms();
    gateway
        .publish(
            "trackside/gw-old/readings",
            batch(t, &[("T1/relay_voltage", 0.5)]),
        )
        .await;
    // Its first attempt waits out the client's timeout (10 s), then the
    // retry queue tries it again: an old notification being retried.
    eventually("the old raise attempted twice", || async {
        (silent
            .arrivals("T1/relay_voltage", TransitionKind::Raised)
            .len()
            >= 2)
            .then_some(())
    })
    .await;
    gateway
        .publish(
            "trackside/gw-old/readings",
            batch(t + 1_000, &[("T1/relay_voltage", 1.5)]),
        )
        .await;

    let mut other = server.gateway("gw-new").await;
    let asked = Instant::now();
    other.publish("trackside/gw-new/status", "offline").await;
    let arrived = eventually("the new critical raise attempted", || async {
        silent
            .arrivals("gw-new", TransitionKind::Raised)
            .first()
            .copied()
    })
    .await;
    let delay = arrived.duration_since(asked);
    assert!(delay < Duration::from_secs(1), "tried after {delay:?}");
    assert!(
        silent
            .arrivals("T1/relay_voltage", TransitionKind::Cleared)
            .is_empty(),
        "the clear waits behind its raise"
    );
    assert!(
        server
            .metric("trackside_webhook_oldest_undelivered_seconds")
            .await
            >= 10.0
    );
    assert!(server.metric("trackside_webhook_failures_total").await >= 1.0);
}

/// A receiver that never answers costs a second, healthy one nothing.
#[tokio::test]
async fn a_silent_webhook_receiver_does_not_delay_a_healthy_one() {
    let silent = SilentReceiver::start().await;
    let received: Arc<Mutex<Vec<(Instant, ExceptionEvent)>>> = Arc::default();
    let app = {
        let received = received.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(event): axum::Json<ExceptionEvent>| {
                let received = received.clone();
                async move {
                    received.lock().unwrap().push((Instant::now(), event));
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let healthy = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut config = fast_config();
    config.exceptions.webhook_urls = vec![silent.url.clone(), healthy];
    // Twelve raises at once are an alarm flood, summarised (tests/it/
    // flood.rs); this test is about the receivers, one notification each.
    config.exceptions.flood.enabled = false;
    let server = TestServer::start_with(config).await;
    let mut gateway = server.gateway("gw-many").await;
    // More raises than the silent receiver has connections for.
    let t = now_ms();
    let many: Vec<(String, f64)> = (1..=12)
        .map(|i| (format!("T{i}/relay_voltage"), 0.5))
        .collect();
    let readings: Vec<(&str, f64)> = many.iter().map(|(c, v)| (c.as_str(), *v)).collect();
    gateway
        .publish("trackside/gw-many/readings", batch(t, &readings))
        .await;
    eventually("the healthy receiver has all twelve", || async {
        (received.lock().unwrap().len() == 12).then_some(())
    })
    .await;

    let mut other = server.gateway("gw-critical").await;
    let asked = Instant::now();
    other
        .publish("trackside/gw-critical/status", "offline")
        .await;
    let arrived = eventually("the critical raise delivered", || async {
        received
            .lock()
            .unwrap()
            .iter()
            .find(|(_, e)| e.exception.subject == "gw-critical")
            .map(|(at, _)| *at)
    })
    .await;
    let delay = arrived.duration_since(asked);
    assert!(delay < Duration::from_secs(1), "delivered after {delay:?}");
    assert!(
        !silent
            .arrivals("T1/relay_voltage", TransitionKind::Raised)
            .is_empty()
    );
    assert!(server.metric("trackside_webhook_pending").await >= 12.0);
}
