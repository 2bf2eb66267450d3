//! Alarm handling through the real path: the yard layout's criticality
//! and the rule's severity give each exception its priority, which is
//! pushed, stored, filtered, sorted and counted on /metrics.

use trackside_wire::{Criticality, Priority, TransitionKind};

use crate::exceptions::{batch, exception_frame, exceptions, fast_config, now_ms};
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
}
