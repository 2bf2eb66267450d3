//! A database outage costs disk, not readings: the spool keeps what the
//! database cannot take, and the writer stores it exactly once when it can.

use std::time::Duration;

use sqlx::PgPool;
use trackside_wire::Role;

use crate::harness::{DEADLINE, OwnCluster, TestServer, eventually, test_config};

const T0: i64 = 1_795_850_000_000;
pub(crate) const PER_MESSAGE: i64 = 10;

/// Message `m` of the known sequence: ten readings with distinct stamps.
pub(crate) fn message(m: i64) -> String {
    let readings: Vec<serde_json::Value> = (0..PER_MESSAGE)
        .map(|i| {
            let n = m * PER_MESSAGE + i;
            serde_json::json!({"channel": format!("T{}/relay_voltage", 100 + i), "value": n, "ts": T0 + m * 1_000})
        })
        .collect();
    serde_json::json!({ "readings": readings }).to_string()
}

async fn stored_values(pool: &PgPool) -> Vec<i64> {
    sqlx::query_as::<_, (f64,)>("SELECT value FROM readings ORDER BY value")
        .fetch_all(pool)
        .await
        .expect("reading back")
        .into_iter()
        .map(|(v,)| v as i64)
        .collect()
}

pub(crate) async fn wait_for_all(pool: &PgPool, total: i64) -> Vec<i64> {
    let deadline = tokio::time::Instant::now() + DEADLINE * 3;
    let mut last = None;
    loop {
        match sqlx::query_as::<_, (i64,)>("SELECT count(*) FROM readings")
            .fetch_one(pool)
            .await
        {
            Ok((rows,)) if rows >= total => return stored_values(pool).await,
            Ok((rows,)) => last = Some(rows),
            // The database may still be starting.
            Err(_) => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readings were not all stored in time: {last:?} of {total} stored at the last answer"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_published_while_postgres_is_down_are_stored_exactly_once() {
    let mut cluster = OwnCluster::start().await;
    let pool = cluster.pool().await;
    let mut config = test_config();
    // A small queue, so the outage overflows it and the spool is read back.
    config.ingest.store_queue_readings = 8 * PER_MESSAGE as usize;
    let server = TestServer::start_on(config, pool.clone()).await;
    let mut gateway = server.gateway("gw-outage").await;

    let mut next = 0;
    for _ in 0..20 {
        gateway
            .publish("trackside/gw-outage/readings", message(next))
            .await;
        next += 1;
    }
    cluster.stop().await;
    // Thirty seconds without a database, the gateway publishing throughout.
    let outage = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < outage {
        gateway
            .publish("trackside/gw-outage/readings", message(next))
            .await;
        next += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.restart().await;
    for _ in 0..20 {
        gateway
            .publish("trackside/gw-outage/readings", message(next))
            .await;
        next += 1;
    }

    let total = next * PER_MESSAGE;
    let stored = wait_for_all(&pool, total).await;
    assert_eq!(
        stored,
        (0..total).collect::<Vec<_>>(),
        "every reading once, none missing"
    );
    assert!(server.metric("trackside_store_queue_overflow_total").await > 0.0);
    assert!(server.metric("trackside_readings_replayed_total").await > 0.0);
    assert!(server.metric("trackside_store_errors_total").await > 0.0);
    assert_eq!(
        server.metric("trackside_readings_stored_total").await,
        total as f64
    );
    assert_eq!(server.metric("trackside_readings_lost_total").await, 0.0);
    eventually("the spool to drain", || async {
        (server.metric("trackside_spool_backlog_bytes").await == 0.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_an_outage_replays_the_spool() {
    let mut cluster = OwnCluster::start().await;
    let pool = cluster.pool().await;
    let mut config = test_config();
    config.ingest.store_queue_readings = 4 * PER_MESSAGE as usize;
    let server = TestServer::start_on(config, pool.clone()).await;
    let mut gateway = server.gateway("gw-restart").await;
    for m in 0..10 {
        gateway
            .publish("trackside/gw-restart/readings", message(m))
            .await;
    }
    eventually("the first readings stored", || async {
        (stored_values(&pool).await.len() == 100).then_some(())
    })
    .await;

    cluster.stop().await;
    for m in 10..60 {
        gateway
            .publish("trackside/gw-restart/readings", message(m))
            .await;
    }
    // Each publish returned on its PUBACK, which the MQTT front sends only
    // once the spool holds the reading; checked all the same before the
    // stop, since what this test is about is the spool's replay.
    eventually("ingest read every reading", || async {
        (server
            .running
            .metrics
            .readings_received
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 600)
            .then_some(())
    })
    .await;
    // Trackside stops while the database is still down: what it held stays
    // in the spool under its data directory.
    let TestServer {
        running, config, ..
    } = server;
    let data_dir = config.database.data_dir.clone();
    running.shutdown().await;
    let spooled: u64 = std::fs::read_dir(data_dir.join("spool"))
        .expect("the spool directory")
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|meta| meta.len())
        .sum();
    assert!(spooled > 0, "the spool holds the unstored readings");

    cluster.restart().await;
    let pool = cluster.pool().await;
    let restarted = trackside::start(&config, pool.clone())
        .await
        .expect("restart");
    let stored = wait_for_all(&pool, 600).await;
    assert_eq!(stored, (0..600).collect::<Vec<_>>());
    restarted.shutdown().await;
}

/// Alarms keep working without PostgreSQL: a channel goes out of its limit
/// and back during a 30-second outage. The exception is raised and cleared
/// live at once (marked not stored), an acknowledgement meanwhile gets a
/// 503 within seconds, and afterwards the database holds the exception
/// with the times the engine judged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_raised_while_postgres_is_down_reach_the_browser_and_are_stored_afterwards() {
    use crate::exceptions::{ack, batch, exception_frame, fast_config, now_ms};
    use serde_json::json;
    use trackside_wire::{ServerMessage, TransitionKind};

    let mut cluster = OwnCluster::start().await;
    let pool = cluster.pool().await;
    let server = TestServer::start_on(fast_config(), pool.clone()).await;
    let mut browser = server.websocket().await;
    let mut gateway = server.gateway("gw-alarm").await;
    // An operator signed in at the control room before the outage.
    let operator = server.sign_in("Ann Signaller", Role::Operator).await;

    // One exception raised and stored before the outage.
    let t = now_ms();
    gateway
        .publish(
            "trackside/gw-alarm/readings",
            batch(t, &[("T1/relay_voltage", 0.5)]),
        )
        .await;
    let before = exception_frame(&mut browser, |e| e.exception.subject == "T1/relay_voltage").await;
    assert!(before.exception.stored);

    cluster.stop().await;
    let outage = tokio::time::Instant::now();

    // T2 goes out of its limit and comes back while the database is away.
    let t = now_ms();
    for (offset, value) in [(0, 1.5), (1_000, 0.5), (2_000, 1.5)] {
        gateway
            .publish(
                "trackside/gw-alarm/readings",
                batch(t + offset, &[("T2/relay_voltage", value)]),
            )
            .await;
    }
    let published = tokio::time::Instant::now();
    let raised = exception_frame(&mut browser, |e| {
        e.exception.subject == "T2/relay_voltage" && e.transition.kind == TransitionKind::Raised
    })
    .await;
    let cleared = exception_frame(&mut browser, |e| {
        e.exception.subject == "T2/relay_voltage" && e.transition.kind == TransitionKind::Cleared
    })
    .await;
    assert!(
        published.elapsed() < Duration::from_secs(3),
        "shown at once, not when the database returns: {:?}",
        published.elapsed()
    );
    assert!(!raised.exception.stored && !cleared.exception.stored);
    assert!(raised.exception.id > 0, "numbered from the reserved ids");
    assert_eq!(cleared.exception.id, raised.exception.id);
    // Stamped when judged (the engine's clock is the receive time).
    let (raised_at, cleared_at) = (raised.transition.at, cleared.transition.at);
    assert!(t <= raised_at && raised_at <= cleared_at && cleared_at <= now_ms());
    assert_eq!(raised.exception.raised_at, raised_at);
    assert_eq!(cleared.exception.cleared_at, Some(cleared_at));

    // An acknowledgement cannot be recorded now: a 503 that says why,
    // within seconds (the sign-in check itself needs the database).
    let asked = tokio::time::Instant::now();
    let response = operator
        .client
        .post(server.url(&format!("/api/exceptions/{}/ack", before.exception.id)))
        .json(&json!({"comment": "seen during the outage"}))
        .send()
        .await
        .expect("POST ack");
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("a JSON refusal");
    assert_eq!(status, 503, "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains("database"), "{message}");
    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);

    // Later in the outage the engine still judges every reading.
    let late = now_ms();
    gateway
        .publish(
            "trackside/gw-alarm/readings",
            batch(late, &[("T3/relay_voltage", 0.4)]),
        )
        .await;
    exception_frame(&mut browser, |e| e.exception.subject == "T3/relay_voltage").await;

    tokio::time::sleep_until(outage + Duration::from_secs(30)).await;
    cluster.restart().await;

    // The browser hears that what it was shown is stored now.
    let stored = tokio::time::timeout(DEADLINE, async {
        loop {
            if let ServerMessage::Stored { exceptions } = browser.next().await
                && let Some(info) = exceptions
                    .into_iter()
                    .find(|e| e.id == raised.exception.id && e.cleared_at.is_some())
            {
                return info;
            }
        }
    })
    .await
    .expect("a stored frame once the database is back");
    assert!(stored.stored);
    let detail: trackside_wire::ExceptionDetail = eventually("stored with its times", || async {
        let response = server
            .get(server.url(&format!("/api/exceptions/{}", raised.exception.id)))
            .await
            .ok()?;
        if response.status() != 200 {
            return None;
        }
        response.json().await.ok()
    })
    .await;
    assert_eq!(detail.exception.raised_at, raised_at);
    assert_eq!(detail.exception.cleared_at, Some(cleared_at));
    let kinds: Vec<(TransitionKind, i64)> = detail
        .transitions
        .iter()
        .map(|tr| (tr.kind, tr.at))
        .collect();
    assert_eq!(
        kinds,
        [
            (TransitionKind::Raised, raised_at),
            (TransitionKind::Cleared, cleared_at)
        ]
    );
    eventually("the journal written", || async {
        (server.metric("trackside_exception_journal_pending").await == 0.0).then_some(())
    })
    .await;
    // And acknowledging works again.
    let (status, body) = ack(
        &server,
        before.exception.id,
        json!({"comment": "after the outage"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// More new exceptions during an outage than ids were reserved ahead:
/// those beyond the reserve are numbered when the database takes them,
/// and shown then; none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_beyond_the_reserved_ids_are_numbered_and_shown_once_stored() {
    use crate::exceptions::{batch, fast_config, now_ms};
    use std::collections::HashSet;
    use trackside_wire::{ClientMessage, ServerMessage};

    let more = trackside::exceptions::RESERVE + 52;
    let mut cluster = OwnCluster::start().await;
    let pool = cluster.pool().await;
    let mut config = fast_config();
    // Room on the live ring for every frame of the burst.
    config.ingest.live_queue = 4 * more;
    let server = TestServer::start_on(config, pool.clone()).await;
    let mut browser = server.websocket().await;
    browser
        .send(&ClientMessage::Subscribe {
            channels: Vec::new(),
        })
        .await;
    let mut gateway = server.gateway("gw-many").await;
    cluster.stop().await;

    let channels: Vec<String> = (0..more).map(|i| format!("T{i}/relay_voltage")).collect();
    let readings: Vec<(&str, f64)> = channels.iter().map(|c| (c.as_str(), 0.5)).collect();
    gateway
        .publish("trackside/gw-many/readings", batch(now_ms(), &readings))
        .await;
    let mut shown = HashSet::new();
    let raised = tokio::time::timeout(DEADLINE, async {
        while shown.len() < trackside::exceptions::RESERVE {
            if let ServerMessage::Exception(event) = browser.next().await {
                assert!(!event.exception.stored);
                // So many at once are an alarm flood: the raises that
                // started it join it later, a second frame each.
                if event.transition.kind == trackside_wire::TransitionKind::Grouped {
                    continue;
                }
                assert!(shown.insert(event.exception.id), "ids are unique");
            }
        }
    })
    .await;
    assert!(raised.is_ok(), "{} shown during the outage", shown.len());

    cluster.restart().await;
    let late = tokio::time::timeout(DEADLINE * 3, async {
        let mut late = HashSet::new();
        while late.len() < more - trackside::exceptions::RESERVE {
            if let ServerMessage::Exception(event) = browser.next().await {
                assert!(event.exception.stored, "shown once stored");
                assert!(!shown.contains(&event.exception.id));
                late.insert(event.exception.id);
            }
        }
        late
    })
    .await
    .expect("the rest shown once stored");
    assert_eq!(late.len(), 52);
    let (open, ids): (i64, i64) = eventually("all stored", || async {
        let counts: (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT id) FROM exceptions WHERE open AND rule_id = 'rv-low'",
        )
        .fetch_one(&pool)
        .await
        .ok()?;
        (counts.0 == more as i64).then_some(counts)
    })
    .await;
    assert_eq!((open, ids), (more as i64, more as i64));
}

/// While the database is away a Prometheus scrape goes on with a token it
/// confirmed before, and anything else gets a 503 within seconds rather
/// than after the pool's half-minute wait: `/metrics` is where an outage's
/// spool and journal show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_goes_on_through_an_outage_and_other_requests_get_a_prompt_503() {
    use crate::harness::{metrics_token, scrape};

    let mut cluster = OwnCluster::start().await;
    let pool = cluster.pool().await;
    let server = TestServer::start_on(test_config(), pool.clone()).await;
    let url = server.url("/metrics");
    let seen = metrics_token(&pool).await;
    let unseen = crate::harness::issue_token(&pool, "Vera Viewer", Role::Viewer).await;
    assert!(scrape(&url, &seen).await.is_some(), "a scrape before");

    cluster.stop().await;
    let asked = tokio::time::Instant::now();
    let text = scrape(&url, &seen)
        .await
        .expect("the confirmed token scrapes during the outage");
    assert!(text.contains("trackside_spool_bytes"));
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );

    for (what, request) in [
        ("an unseen token's scrape", server.client().get(&url)),
        (
            "a read",
            crate::harness::client_with(&[("authorization", format!("Bearer {unseen}"))])
                .get(server.url("/api/exceptions")),
        ),
    ] {
        let asked = tokio::time::Instant::now();
        let response = request.send().await.expect(what);
        assert_eq!(response.status(), 503, "{what}");
        let body: serde_json::Value = response.json().await.expect("a JSON refusal");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains("database"), "{what}: {message}");
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{what}: {:?}",
            asked.elapsed()
        );
    }
    cluster.restart().await;
}
