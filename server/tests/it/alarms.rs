//! Alarm handling through the real path: the yard layout's criticality
//! and the rule's severity give each exception its priority, which is
//! pushed, stored, filtered, sorted and counted on /metrics; maintenance
//! windows planned over HTTP suppress and release, audited, across a
//! restart.

use std::sync::{Arc, Mutex};

use serde_json::json;
use trackside_wire::{
    Criticality, MaintenanceWindowInfo, Priority, PriorityMix, Role, TransitionKind, WindowState,
};

use crate::exceptions::{ack, batch, exception_frame, exceptions, fast_config, now_ms};
use crate::harness::eventually;
use crate::yard::server_with_layout;

#[tokio::test]
async fn priority_comes_from_the_layout_and_ranks_the_list() {
    // LINE_LAYOUT: A, B, C running lines (the default), D a siding.
    let (server, _layout) = server_with_layout(fast_config()).await;
    let mut browser = server.websocket().await;
    let mut gateway = server.gateway("gw-pri").await;
    let t = now_ms();
    gateway
        .publish(
            "trackside/gw-pri/readings",
            batch(
                t,
                &[
                    ("D/relay_state", 1.0),
                    ("D/relay_voltage", 1.5),
                    ("A/relay_state", 1.0),
                    ("A/relay_voltage", 1.5),
                    ("Z9/relay_state", 1.0),
                    ("Z9/relay_voltage", 1.5),
                ],
            ),
        )
        .await;
    // The siding first, so the list's order is the priority's, not the
    // raise's.
    for (offset, channel) in [(500, "D"), (600, "A"), (700, "Z9")] {
        gateway
            .publish(
                "trackside/gw-pri/readings",
                batch(t + offset, &[(&format!("{channel}/relay_voltage"), 0.6)]),
            )
            .await;
    }

    // "rv-low" is major: low on a siding, high on a running line, and
    // high on a circuit the layout does not name.
    let cases = [
        ("D", Criticality::Siding, Priority::Low),
        ("A", Criticality::RunningLine, Priority::High),
        ("Z9", Criticality::RunningLine, Priority::High),
    ];
    for (circuit, criticality, priority) in cases {
        let raised = exception_frame(&mut browser, |e| {
            e.exception.circuit.as_deref() == Some(circuit)
        })
        .await;
        assert_eq!(raised.transition.kind, TransitionKind::Raised);
        let e = &raised.exception;
        assert_eq!(
            (e.criticality, e.priority, e.base_priority, e.escalation),
            (criticality, priority, priority, 0),
            "{circuit}"
        );
        assert!(raised.announced, "{circuit}: a new exception is announced");
        assert!(!e.suppressed && e.demands_attention());
    }

    // Stored as pushed, and the list ranks by priority before time.
    let listed = exceptions(&server, "?open=true").await;
    let order: Vec<(&str, Priority)> = listed
        .iter()
        .map(|e| (e.circuit.as_deref().unwrap_or(""), e.priority))
        .collect();
    assert_eq!(
        order,
        [
            ("Z9", Priority::High),
            ("A", Priority::High),
            ("D", Priority::Low)
        ]
    );
    let (stored,): (String,) = sqlx::query_as(
        "SELECT priority || '/' || base_priority || '/' || criticality FROM exceptions
         WHERE circuit = 'D'",
    )
    .fetch_one(&server.pool)
    .await
    .expect("the siding's exception");
    assert_eq!(stored, "low/low/siding");

    let high = exceptions(&server, "?priority=high").await;
    assert_eq!(high.len(), 2);
    assert!(high.iter().all(|e| e.priority == Priority::High));
    let some = exceptions(&server, "?priority=low,medium&suppressed=false").await;
    assert_eq!(some.len(), 1);
    assert_eq!(some[0].circuit.as_deref(), Some("D"));

    // A bad priority says what to use.
    let response = server
        .get(server.url("/api/exceptions?priority=urgent"))
        .await
        .expect("GET");
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("JSON");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("low, medium or high"), "{error}");

    // The priority mix on /metrics, against the standard's target.
    eventually("the open gauges by priority", || async {
        let high = server
            .metric("trackside_exceptions_open_by_priority{priority=\"high\"}")
            .await;
        (high == 2.0).then_some(())
    })
    .await;
    let metric = |name: &'static str| server.metric(name);
    assert_eq!(
        metric("trackside_exceptions_open_by_priority{priority=\"low\"}").await,
        1.0
    );
    assert_eq!(
        metric("trackside_exceptions_raised_by_priority_total{priority=\"high\"}").await,
        2.0
    );
    let share = metric("trackside_exceptions_priority_share{priority=\"low\"}").await;
    assert!((share - 1.0 / 3.0).abs() < 1e-3, "{share}");
    assert_eq!(
        metric("trackside_exceptions_priority_target_share{priority=\"high\"}").await,
        0.05
    );

    // The same mix over a period, from the stored exceptions, for the
    // exceptions page's panel.
    let (status, mix) = as_operator(
        &server,
        reqwest::Method::GET,
        "/api/exceptions/mix?days=1",
        None,
    )
    .await;
    assert_eq!(status, 200, "{mix}");
    let mix: PriorityMix = serde_json::from_value(mix).expect("a priority mix");
    let counts: Vec<(Priority, i64, f64)> = mix
        .priorities
        .iter()
        .map(|p| (p.priority, p.raised, p.target))
        .collect();
    assert_eq!(
        counts,
        [
            (Priority::High, 2, 0.05),
            (Priority::Medium, 0, 0.15),
            (Priority::Low, 1, 0.80)
        ]
    );
    assert_eq!((mix.raised, mix.flood_share), (3, 0.0));
    // Raised within a second: in one 10-minute interval, or two when a
    // boundary falls between them.
    assert!((2..=3).contains(&mix.peak_10min), "{}", mix.peak_10min);
    assert_eq!(mix.priorities[0].share, Some(2.0 / 3.0));
    assert!((mix.per_hour - 3.0 / 24.0).abs() < 1e-9, "{}", mix.per_hour);
    for bad in ["?days=0", "?days=91", "?days=week", "?weeks=1"] {
        let (status, body) = as_operator(
            &server,
            reqwest::Method::GET,
            &format!("/api/exceptions/mix{bad}"),
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("days")),
            "{bad}: {body}"
        );
    }
}

/// `method path` with an operator's API token.
pub(crate) async fn as_operator(
    server: &crate::harness::TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let token = server.token_of("Otto Operator", Role::Operator).await;
    let mut request = crate::harness::client_with(&[("authorization", format!("Bearer {token}"))])
        .request(method, server.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("a response");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_maintenance_window_suppresses_its_circuits_and_releases_them_at_its_end() {
    let server = crate::harness::TestServer::start_with(fast_config()).await;
    let mut browser = server.websocket().await;
    let now = now_ms();

    // Refused with what to do.
    let (status, body) = as_operator(
        &server,
        reqwest::Method::POST,
        "/api/maintenance",
        Some(json!({"reason": "grinding", "ends_at": now + 3_600_000})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("name the circuits"),
        "{body}"
    );

    let (status, window) = as_operator(
        &server,
        reqwest::Method::POST,
        "/api/maintenance",
        Some(json!({"circuits": ["T30*"], "reason": "rail grinding",
                    "ends_at": now + 3_600_000})),
    )
    .await;
    assert_eq!(status, 200, "{window}");
    let window: MaintenanceWindowInfo = serde_json::from_value(window).expect("a window");
    assert_eq!(window.state, WindowState::Active);
    assert_eq!(window.created_by, "Otto Operator");

    let mut gateway = server.gateway("gw-mw").await;
    let t = now_ms();
    gateway
        .publish(
            "trackside/gw-mw/readings",
            batch(
                t,
                &[
                    ("T301/relay_state", 1.0),
                    ("T301/relay_voltage", 1.5),
                    ("T401/relay_state", 1.0),
                    ("T401/relay_voltage", 1.5),
                ],
            ),
        )
        .await;
    gateway
        .publish(
            "trackside/gw-mw/readings",
            batch(
                t + 500,
                &[("T301/relay_voltage", 0.6), ("T401/relay_voltage", 0.6)],
            ),
        )
        .await;
    let inside = exception_frame(&mut browser, |e| {
        e.exception.subject == "T301/relay_voltage"
    })
    .await;
    assert!(inside.exception.suppressed, "raised under the window");
    assert_eq!(inside.exception.window, Some(window.id));
    assert!(!inside.announced, "a suppressed raise is not announced");
    assert!(!inside.exception.demands_attention());
    let outside = exception_frame(&mut browser, |e| {
        e.exception.subject == "T401/relay_voltage"
    })
    .await;
    assert!(!outside.exception.suppressed && outside.announced);

    // Recorded, in its own filter; not counted as needing attention.
    let suppressed = exceptions(&server, "?suppressed=true").await;
    assert_eq!(suppressed.len(), 1);
    assert_eq!(suppressed[0].id, inside.exception.id);
    eventually("the suppressed gauge", || async {
        (server.metric("trackside_exceptions_open_suppressed").await == 1.0).then_some(())
    })
    .await;

    // Ended early: what is still active is raised normally.
    let path = format!("/api/maintenance/{}/end", window.id);
    let (status, ended) = as_operator(&server, reqwest::Method::POST, &path, None).await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["state"], "ended");
    assert_eq!(ended["ended_by"], "Otto Operator");
    let released = exception_frame(&mut browser, |e| {
        e.exception.id == inside.exception.id && e.transition.kind == TransitionKind::Released
    })
    .await;
    assert!(released.announced && !released.exception.suppressed);
    assert!(released.exception.demands_attention());
    let (status, _) = as_operator(&server, reqwest::Method::POST, &path, None).await;
    assert_eq!(status, 409, "ended already");
    let (status, _) = as_operator(
        &server,
        reqwest::Method::POST,
        "/api/maintenance/999999/end",
        None,
    )
    .await;
    assert_eq!(status, 404);

    let (status, list) = as_operator(&server, reqwest::Method::GET, "/api/maintenance", None).await;
    assert_eq!(status, 200);
    let list: Vec<MaintenanceWindowInfo> = serde_json::from_value(list).expect("windows");
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].state, list[0].suppressed), (WindowState::Ended, 1));

    // The history chart asks for the windows over its range.
    let (starts, ends) = (list[0].starts_at, list[0].ends_at);
    let windows_between = |from: i64, to: i64| {
        let path = format!("/api/maintenance?from={from}&to={to}");
        let server = &server;
        async move {
            let (status, list) = as_operator(server, reqwest::Method::GET, &path, None).await;
            assert_eq!(status, 200, "{path}: {list}");
            serde_json::from_value::<Vec<MaintenanceWindowInfo>>(list).expect("windows")
        }
    };
    assert_eq!(windows_between(starts - 60_000, starts + 1).await.len(), 1);
    assert_eq!(windows_between(ends, ends + 60_000).await.len(), 1);
    assert!(
        windows_between(starts - 120_000, starts - 60_000)
            .await
            .is_empty()
    );
    assert!(windows_between(ends + 1, ends + 60_000).await.is_empty());
    for bad in [
        format!("?from={ends}&to={starts}"),
        format!("?from=0&to={}", 401 * 86_400_000_i64),
        "?from=soon".to_owned(),
        "?since=1".to_owned(),
    ] {
        let (status, body) = as_operator(
            &server,
            reqwest::Method::GET,
            &format!("/api/maintenance{bad}"),
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("from")),
            "{bad}: {body}"
        );
    }

    let actions: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT action, actor FROM audit_log WHERE action LIKE 'maintenance.%' ORDER BY id",
    )
    .fetch_all(&server.pool)
    .await
    .expect("audit rows");
    let who = Some("Otto Operator".to_owned());
    assert_eq!(
        actions,
        [
            ("maintenance.start".to_owned(), who.clone()),
            ("maintenance.end".to_owned(), who)
        ]
    );
    assert_eq!(
        server.metric("trackside_exceptions_released_total").await,
        1.0
    );
}

#[tokio::test]
async fn a_restart_keeps_a_window_and_its_suppression() {
    let server = crate::harness::TestServer::start_with(fast_config()).await;
    let now = now_ms();
    let (status, _) = as_operator(
        &server,
        reqwest::Method::POST,
        "/api/maintenance",
        Some(json!({"gateway": "gw-rs", "reason": "gateway swap", "ends_at": now + 3_600_000})),
    )
    .await;
    assert_eq!(status, 200);
    let mut gateway = server.gateway("gw-rs").await;
    let t = now_ms();
    gateway
        .publish(
            "trackside/gw-rs/readings",
            batch(t, &[("T501/relay_state", 1.0), ("T501/relay_voltage", 0.6)]),
        )
        .await;
    eventually("the suppressed raise stored", || async {
        let (suppressed,): (bool,) = sqlx::query_as("SELECT suppressed FROM exceptions")
            .fetch_one(&server.pool)
            .await
            .ok()?;
        suppressed.then_some(())
    })
    .await;
    drop(gateway);
    let pool = server.pool.clone();
    let config = server.config.clone();
    server.running.shutdown().await;
    let again = crate::harness::TestServer::start_in_place(config, pool).await;
    // Several ticks later, still suppressed: the window came back with it.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let listed = exceptions(&again, "?open=true").await;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].suppressed, "{:?}", listed[0]);
}

#[tokio::test]
async fn a_chat_channel_hears_raises_and_escalations_not_every_transition() {
    // A real HTTP listener standing in for a Slack/Mattermost/Teams
    // incoming webhook: it takes {"text": ...}.
    let texts: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = {
        let texts = texts.clone();
        axum::Router::new().route(
            "/chat",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let texts = texts.clone();
                async move {
                    let text = body["text"].as_str().unwrap_or("(no text)").to_owned();
                    texts.lock().unwrap().push(text);
                    axum::http::StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let chat = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut config = fast_config();
    config.exceptions.chat_webhook_urls = vec![format!("http://{chat}/chat")];
    // High priority escalates after a second, once.
    config.exceptions.escalate_after_s.high = Some(1.0);
    config.exceptions.escalation_levels = 1;
    let server = crate::harness::TestServer::start_with(config).await;
    let mut gateway = server.gateway("gw-chat").await;
    let t = now_ms();
    gateway
        .publish(
            "trackside/gw-chat/readings",
            batch(t, &[("T9/relay_state", 1.0), ("T9/relay_voltage", 0.5)]),
        )
        .await;
    let escalated = eventually("the escalation", || async {
        exceptions(&server, "?open=true")
            .await
            .pop()
            .filter(|e| e.escalation == 1)
    })
    .await;
    assert_eq!(escalated.priority, Priority::High);
    let (status, _) = ack(&server, escalated.id, json!({"comment": "on it"})).await;
    assert_eq!(status, 200);
    gateway
        .publish(
            "trackside/gw-chat/readings",
            batch(t + 3_000, &[("T9/relay_voltage", 1.5)]),
        )
        .await;
    eventually("the clear stored", || async {
        exceptions(&server, "?open=false").await.pop()
    })
    .await;
    // The acknowledgement and the clear were not announced: two lines.
    let got = eventually("two chat lines", || async {
        let got = texts.lock().unwrap().clone();
        (got.len() >= 2).then_some(got)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(texts.lock().unwrap().len(), 2, "{got:?}");
    assert!(
        got[0].starts_with("[HIGH] T9 Limit: Relay voltage low"),
        "{}",
        got[0]
    );
    assert!(
        got[1].contains("ESCALATED (level 1, not acknowledged)"),
        "{}",
        got[1]
    );
    assert!(got[1].contains(&format!("#{}", escalated.id)), "{}", got[1]);
}
