//! Shelving through the real path: an operator shelves an exception, or a
//! rule on a circuit, over HTTP; the shelf is stored, audited, pushed on
//! /ws, hides what it covers from the count and the announcements, is
//! listed with who, why and until when, ends by hand or by running out
//! (even while the server is down), and survives a restart.

use reqwest::Method;
use serde_json::json;
use trackside_wire::{ShelfInfo, TransitionKind};

use crate::alarms::as_operator;
use crate::exceptions::{batch, exception_frame, exceptions, fast_config, now_ms};
use crate::harness::{TestServer, eventually};

/// Raises "rv-low" on T601 and T602 through a real gateway.
async fn raise_two(server: &TestServer) -> crate::harness::Gateway {
    let mut gateway = server.gateway("gw-sh").await;
    let t = now_ms();
    gateway
        .publish(
            "trackside/gw-sh/readings",
            batch(
                t,
                &[
                    ("T601/relay_state", 1.0),
                    ("T601/relay_voltage", 1.5),
                    ("T602/relay_state", 1.0),
                    ("T602/relay_voltage", 1.5),
                ],
            ),
        )
        .await;
    gateway
        .publish(
            "trackside/gw-sh/readings",
            batch(
                t + 500,
                &[("T601/relay_voltage", 0.6), ("T602/relay_voltage", 0.6)],
            ),
        )
        .await;
    gateway
}

#[tokio::test]
async fn an_operator_shelves_and_unshelves_an_exception() {
    let server = TestServer::start_with(fast_config()).await;
    let mut browser = server.websocket().await;
    let _gateway = raise_two(&server).await;
    let raised = exception_frame(&mut browser, |e| {
        e.exception.subject == "T601/relay_voltage"
    })
    .await;
    let id = raised.exception.id;
    assert!(raised.exception.demands_attention());

    // Refused, each with what to do.
    let refusals = [
        (
            json!({"exception": id, "reason": "booked", "duration_s": 999_999}),
            400,
            "shelve_max_s",
        ),
        (
            json!({"exception": id, "reason": " ", "duration_s": 600}),
            400,
            "reason",
        ),
        (
            json!({"reason": "booked", "duration_s": 600}),
            400,
            "name what to shelve",
        ),
        (
            json!({"exception": 999_999, "reason": "booked", "duration_s": 600}),
            404,
            "no exception",
        ),
        (
            json!({"exception": id, "reason": "booked", "duration": 600}),
            400,
            "duration_s",
        ),
    ];
    for (body, want, says) in refusals {
        let (status, answer) = as_operator(&server, Method::POST, "/api/shelves", Some(body)).await;
        assert_eq!(status, want, "{answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{says}: {error}");
    }

    let (status, shelf) = as_operator(
        &server,
        Method::POST,
        "/api/shelves",
        Some(
            json!({"exception": id, "reason": "relay booked for replacement",
                    "duration_s": 3_600}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{shelf}");
    let shelf: ShelfInfo = serde_json::from_value(shelf).expect("a shelf");
    assert_eq!(shelf.created_by, "Otto Operator");
    assert_eq!(shelf.subject.as_deref(), Some("T601/relay_voltage"));
    assert_eq!(shelf.hidden, 1);
    assert!(shelf.active);
    let hour_from_now = now_ms() + 3_600_000;
    assert!(
        (shelf.until - hour_from_now).abs() < 60_000,
        "{}",
        shelf.until
    );

    // Pushed as shelved, not announced, and no longer demanding attention.
    let shelved = exception_frame(&mut browser, |e| {
        e.exception.id == id && e.transition.kind == TransitionKind::Shelved
    })
    .await;
    assert!(!shelved.announced);
    assert_eq!(shelved.exception.shelf, Some(shelf.id));
    assert_eq!(shelved.exception.shelved_until, Some(shelf.until));
    assert_eq!(shelved.transition.by.as_deref(), Some("Otto Operator"));
    assert_eq!(
        shelved.transition.comment.as_deref(),
        Some("relay booked for replacement")
    );
    assert!(!shelved.exception.demands_attention());

    // Still recorded, in its own filter; counted apart on /metrics.
    let listed = exceptions(&server, "?shelved=true").await;
    assert_eq!(listed.iter().map(|e| e.id).collect::<Vec<_>>(), [id]);
    assert_eq!(listed[0].shelf, Some(shelf.id));
    let others = exceptions(&server, "?shelved=false&open=true&rule=rv-low").await;
    assert_eq!(others.len(), 1);
    assert_eq!(others[0].subject, "T602/relay_voltage");
    eventually("the shelved gauge", || async {
        (server.metric("trackside_exceptions_open_shelved").await == 1.0).then_some(())
    })
    .await;

    // Listed for a viewer too, with who, why and until when.
    let response = server.get(server.url("/api/shelves")).await.expect("GET");
    assert_eq!(response.status(), 200);
    let list: Vec<ShelfInfo> = response.json().await.expect("shelves");
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].reason.as_str(), list[0].hidden, list[0].active),
        ("relay booked for replacement", 1, true)
    );

    // Unshelved by hand: shown again and announced, since it still holds.
    let path = format!("/api/shelves/{}/end", shelf.id);
    let (status, ended) = as_operator(&server, Method::POST, &path, None).await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["ended_by"], "Otto Operator");
    assert_eq!(ended["active"], false);
    let back = exception_frame(&mut browser, |e| {
        e.exception.id == id && e.transition.kind == TransitionKind::Unshelved
    })
    .await;
    assert!(back.announced, "still active and unacknowledged");
    assert!(back.exception.demands_attention());
    assert_eq!(back.exception.shelf, None);
    let (status, again) = as_operator(&server, Method::POST, &path, None).await;
    assert_eq!(status, 409, "{again}");
    let (status, _) = as_operator(&server, Method::POST, "/api/shelves/999999/end", None).await;
    assert_eq!(status, 404);
    let (status, _) = as_operator(&server, Method::POST, "/api/shelves/x/end", None).await;
    assert_eq!(status, 400);

    // Both audited, under the operator's name.
    let actions: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT action, actor, target FROM audit_log WHERE action LIKE 'exception.%shelve'
         ORDER BY id",
    )
    .fetch_all(&server.pool)
    .await
    .expect("audit rows");
    let (who, target) = (Some("Otto Operator".to_owned()), Some(shelf.id.to_string()));
    assert_eq!(
        actions,
        [
            ("exception.shelve".to_owned(), who.clone(), target.clone()),
            ("exception.unshelve".to_owned(), who, target)
        ]
    );
    // The history keeps both steps.
    let (count,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM exception_transitions
         WHERE exception_id = $1 AND kind IN ('shelved', 'unshelved')",
    )
    .bind(id)
    .fetch_one(&server.pool)
    .await
    .expect("transitions");
    assert_eq!(count, 2);
}

#[tokio::test]
async fn a_shelf_on_a_circuit_holds_across_a_restart_and_runs_out() {
    let server = TestServer::start_with(fast_config()).await;
    let (status, shelf) = as_operator(
        &server,
        Method::POST,
        "/api/shelves",
        Some(
            json!({"rule": "rv-low", "circuit": "T601", "reason": "track relay on order",
                    "duration_s": 7_200}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{shelf}");
    let shelf: ShelfInfo = serde_json::from_value(shelf).expect("a shelf");
    assert_eq!((shelf.circuit.as_deref(), shelf.hidden), (Some("T601"), 0));

    // Raised after the shelf: hidden from the start, the other not.
    let gateway = raise_two(&server).await;
    eventually("both raised and stored", || async {
        let listed = exceptions(&server, "?open=true&rule=rv-low").await;
        (listed.len() == 2).then_some(listed)
    })
    .await;
    let shelved = exceptions(&server, "?shelved=true").await;
    assert_eq!(shelved.len(), 1);
    assert_eq!(shelved[0].subject, "T601/relay_voltage");
    let id = shelved[0].id;
    drop(gateway);

    // A restart: the shelf comes back and still hides it.
    let pool = server.pool.clone();
    let config = server.config.clone();
    server.running.shutdown().await;
    let again = TestServer::start_in_place(config.clone(), pool.clone()).await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let listed = exceptions(&again, "?shelved=true").await;
    assert_eq!(listed.iter().map(|e| e.id).collect::<Vec<_>>(), [id]);
    let (transitions,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM exception_transitions WHERE exception_id = $1 AND kind = 'shelved'",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .expect("transitions");
    assert_eq!(
        transitions, 0,
        "raised under the shelf, it has no shelved step; a restart adds none"
    );

    // It runs out while the server is down: shown again at the start,
    // announced, since it is still active.
    again.running.shutdown().await;
    sqlx::query("UPDATE shelves SET until = now() - interval '1 second', created_at = now() - interval '1 hour'")
        .execute(&pool)
        .await
        .expect("the shelf runs out");
    let third = TestServer::start_in_place(config, pool).await;
    let open = eventually("shown again", || async {
        let listed = exceptions(&third, "?shelved=false&open=true&rule=rv-low").await;
        (listed.len() == 2).then_some(listed)
    })
    .await;
    let back = open.iter().find(|e| e.id == id).expect("the shelved one");
    assert!(back.demands_attention() && back.shelved_until.is_none());
    let (message,): (String,) = sqlx::query_as(
        "SELECT message FROM exception_transitions WHERE exception_id = $1 AND kind = 'unshelved'",
    )
    .bind(id)
    .fetch_one(&third.pool)
    .await
    .expect("the unshelve");
    assert!(message.contains("ran out"), "{message}");
    let (_, list) = as_operator(&third, Method::GET, "/api/shelves", None).await;
    assert_eq!(list[0]["active"], false);
}
