//! Alarm floods through the real path: a burst of stale channels on one
//! gateway over MQTT makes one flood with one group, stored in PostgreSQL
//! with every member, shown on the WebSocket, summarised once in the
//! outbox (a real SMTP server gets the summary), listed by
//! `GET /api/floods` and acknowledged as a group over HTTP, audited.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use trackside::exceptions::notify::email::{NotifyGroup, Secret, Security};
use trackside_wire::{FloodInfo, GroupAckResult, Priority, Role, ServerMessage};

use crate::exceptions::{batch, exceptions, fast_config, now_ms};
use crate::harness::{DEADLINE, TestServer, eventually};
use crate::notify::{SmtpServer, decoded};

/// Channels that fall silent at once: over the default threshold of 10.
const CHANNELS: usize = 14;

/// An HTTP receiver that keeps every JSON body it is sent.
async fn json_receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// The readings of one round: every rx_level channel still reporting,
/// and the gateway's relay voltage (which keeps it alive).
fn round(t: i64, silent: bool) -> String {
    let names: Vec<String> = (1..=CHANNELS).map(|n| format!("T{n}/rx_level")).collect();
    let mut readings: Vec<(&str, f64)> = vec![("T0/relay_voltage", 1.5)];
    if !silent {
        readings.extend(names.iter().map(|n| (n.as_str(), -60.0)));
    }
    batch(t, &readings)
}

#[tokio::test]
async fn a_burst_of_stale_channels_is_one_flood_with_one_group_and_one_summary() {
    let password = "relay-pw-flood-42";
    let smtp = SmtpServer::start("trackside", password, None).await;
    let (hook, posted) = json_receiver().await;
    let mut config = fast_config();
    config.exceptions.webhook_urls = vec![hook];
    let email = &mut config.exceptions.email;
    email.smtp_host = Some("127.0.0.1".into());
    email.smtp_port = Some(smtp.port);
    email.security = Security::Plain;
    email.username = Some("trackside".into());
    email.password = Some(Secret::new(password.into()));
    email.from = "Trackside <trackside@yard.example>".into();
    email.app_url = Some("https://trackside.yard.example".into());
    config.exceptions.notify_groups = vec![NotifyGroup {
        name: "on-duty".into(),
        level: 0,
        min_priority: Priority::Low,
        circuits: Vec::new(),
        addresses: vec!["duty@yard.example".into()],
    }];
    let server = TestServer::start_with(config).await;
    let mut live = server.websocket().await;
    let mut gateway = server.gateway("yard-gw02").await;

    // Every channel reports for a while (the stale rule expects one every
    // 0.5 s), then all but the relay voltage fall silent.
    let start = now_ms();
    for i in 0..4 {
        gateway
            .publish(
                "trackside/yard-gw02/readings",
                round(start + i * 200, false),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let silent_from = now_ms();
    let keep_alive = async {
        for i in 0..20 {
            gateway
                .publish(
                    "trackside/yard-gw02/readings",
                    round(silent_from + i * 200, true),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let flood_frame = async {
        let wait = async {
            loop {
                if let ServerMessage::Flood(flood) = live.next().await
                    && flood
                        .groups
                        .first()
                        .is_some_and(|g| g.count as usize == CHANNELS)
                {
                    return *flood;
                }
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .expect("a flood frame on /ws")
    };
    let ((), frame) = tokio::join!(keep_alive, flood_frame);
    assert_eq!(frame.ended_at, None);
    assert_eq!(frame.groups.len(), 1, "one cause: {frame:#?}");
    assert_eq!(frame.groups[0].key, "stale@yard-gw02");
    assert_eq!(frame.groups[0].summary, "14 stale channels on yard-gw02");

    // Every member stored, each knowing its flood and group.
    let stale = eventually("the stale channels stored", || async {
        let list = exceptions(&server, "?rule=stale&open=true").await;
        (list.len() == CHANNELS && list.iter().all(|e| e.flood.is_some())).then_some(list)
    })
    .await;
    assert!(
        stale.iter().all(|e| e
            .flood
            .as_ref()
            .is_some_and(|m| m.flood == frame.id && m.group == "stale@yard-gw02")),
        "{stale:#?}"
    );
    let grouped_later: i64 =
        sqlx::query_scalar("SELECT count(*) FROM exception_transitions WHERE kind = 'grouped'")
            .fetch_one(&server.pool)
            .await
            .unwrap();
    assert_eq!(
        grouped_later, 10,
        "the ten raises that started the flood joined it"
    );

    // Stored, and listed by GET /api/floods (a viewer may read it).
    let viewer = server.sign_in("Vic Viewer", Role::Viewer).await;
    let listed: Vec<FloodInfo> = eventually("the flood listed", || async {
        let response = viewer
            .client
            .get(server.url(&format!(
                "/api/floods?from={}&to={}",
                start - 60_000,
                now_ms() + 60_000
            )))
            .send()
            .await
            .ok()?;
        let list: Vec<FloodInfo> = response.json().await.ok()?;
        list.first()
            .is_some_and(|f| {
                f.groups
                    .first()
                    .is_some_and(|g| g.count as usize == CHANNELS)
            })
            .then_some(list)
    })
    .await;
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id, listed[0].total), (frame.id, CHANNELS as u32));
    let bad = viewer
        .client
        .get(server.url("/api/floods?from=10&to=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let message: serde_json::Value = bad.json().await.unwrap();
    assert!(
        message["error"]
            .as_str()
            .unwrap()
            .contains("from must be before to")
    );

    // One summary per receiver for the group, not fourteen notifications:
    // the ten announced before the flood began, then the summary.
    let summaries = eventually("the summary sent to the webhook", || async {
        let bodies: Vec<serde_json::Value> = posted
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b.get("flood_summary").is_some())
            .cloned()
            .collect();
        (!bodies.is_empty()).then_some(bodies)
    })
    .await;
    assert_eq!(summaries.len(), 1, "{summaries:#?}");
    let summary = &summaries[0]["flood_summary"];
    assert_eq!(summary["kind"], "formed");
    assert!(
        summary["text"]
            .as_str()
            .unwrap()
            .starts_with("Alarm flood: 14 stale channels on yard-gw02 since"),
        "{summary}"
    );
    assert_eq!(
        summary["link"],
        format!(
            "https://trackside.yard.example/exceptions?flood={}",
            frame.id
        )
    );
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT channel, count(*) FROM notification_outbox WHERE flood_id = $1 GROUP BY channel ORDER BY channel",
    )
    .bind(frame.id)
    .fetch_all(&server.pool)
    .await
    .unwrap();
    assert_eq!(rows, [("email".to_owned(), 1), ("webhook".to_owned(), 1)]);
    let individual: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT exception_id) FROM notification_outbox
         WHERE channel = 'webhook' AND exception_id = ANY($1)
           AND body->'transition'->>'kind' = 'raised' AND (body->>'announced')::boolean",
    )
    .bind(stale.iter().map(|e| e.id).collect::<Vec<_>>())
    .fetch_one(&server.pool)
    .await
    .unwrap();
    assert_eq!(
        individual, 10,
        "only the raises before the flood were announced one by one"
    );

    // The e-mail: the summary's words and a link to the grouped list.
    let mail = eventually("the summary e-mail", || async {
        smtp.messages().into_iter().find(|m| {
            decoded(m["data"].as_str().unwrap_or_default()).contains("Alarm flood: 14 stale")
        })
    })
    .await;
    let data = decoded(mail["data"].as_str().unwrap());
    assert!(data.contains("Subject: ["), "{data}");
    assert!(
        data.contains(&format!(
            "https://trackside.yard.example/exceptions?flood={}",
            frame.id
        )),
        "{data}"
    );
    assert_eq!(mail["to"][0], "duty@yard.example");

    // An operator acknowledges the group: every member, each audited.
    let viewer_ack = viewer
        .client
        .post(server.url(&format!("/api/floods/{}/ack", frame.id)))
        .json(&serde_json::json!({"group": "stale@yard-gw02", "comment": "gw02 input card"}))
        .send()
        .await
        .unwrap();
    assert_eq!(viewer_ack.status(), 403, "a viewer may not acknowledge");
    let operator = server.sign_in("Olga Operator", Role::Operator).await;
    let unknown = operator
        .client
        .post(server.url(&format!("/api/floods/{}/ack", frame.id)))
        .json(&serde_json::json!({"group": "stale@elsewhere", "comment": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let response = operator
        .client
        .post(server.url(&format!("/api/floods/{}/ack", frame.id)))
        .json(
            &serde_json::json!({"group": "stale@yard-gw02", "comment": "gw02 input card replaced"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let result: GroupAckResult = response.json().await.unwrap();
    assert_eq!(result.acknowledged.len(), CHANNELS);
    assert!(result.skipped.is_empty());
    let after = exceptions(&server, "?rule=stale").await;
    assert!(
        after
            .iter()
            .all(|e| e.acknowledged && e.acked_by.as_deref() == Some("Olga Operator")),
        "{after:#?}"
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'exception.acknowledge'
         AND actor = 'Olga Operator' AND detail->>'group' = 'stale@yard-gw02'
         AND detail->>'flood' = $1",
    )
    .bind(frame.id.to_string())
    .fetch_one(&server.pool)
    .await
    .unwrap();
    assert_eq!(audited, CHANNELS as i64, "one audit entry per exception");
    // Again: nothing left to acknowledge, all skipped.
    let again: GroupAckResult = operator
        .client
        .post(server.url(&format!("/api/floods/{}/ack", frame.id)))
        .json(&serde_json::json!({"group": "stale@yard-gw02", "comment": "again"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (again.acknowledged.len(), again.skipped.len()),
        (0, CHANNELS)
    );

    assert_eq!(server.metric("trackside_floods_total").await, 1.0);
    assert_eq!(server.metric("trackside_flood_on").await, 1.0);
    assert!(server.metric("trackside_flood_raises_grouped_total").await >= 4.0);
    server.running.shutdown().await;
}
