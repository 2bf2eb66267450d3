//! Scale-out (issue 19): several instances on one PostgreSQL behind one
//! Mosquitto with a shared subscription; singleton roles with failover.

use std::time::{Duration, Instant};

use trackside::cluster::Role;
use trackside::config::Config;
use trackside_wire::TransitionKind;

use crate::exceptions::{ack, exception_frame, rules};
use crate::external::external_config;
use crate::harness::{
    Binary, Gateway, Mosquitto, TestServer, database_url, eventually, free_port, fresh_database,
    site_dir,
};

const GROUP: &str = "trackside";
/// The takeover bound docs/scaling.md states.
const TAKEOVER: Duration = Duration::from_secs(10);
const RULE: &str = r#"
[[rules]]
id = "fc-high"
target = "*/feed_current"
severity = "major"
kind = "limit"
high_set = 5.0
high_clear = 4.0
"#;

fn shared_config(mosquitto: &Mosquitto, client_id: &str) -> Config {
    let mut config = external_config(mosquitto, client_id);
    if let Some(external) = config.mqtt.external.as_mut() {
        external.share_group = Some(GROUP.into());
    }
    config.exceptions.rules = rules(RULE);
    config.exceptions.tick_ms = 100;
    config
}

fn reading(channel: &str, value: f64, ts: i64) -> String {
    serde_json::json!({"readings": [{"channel": channel, "value": value, "ts": ts}]}).to_string()
}

async fn stored_count(pool: &sqlx::PgPool, channel: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM readings r JOIN channels c ON c.id = r.channel_id WHERE c.name = $1",
    )
    .bind(channel)
    .fetch_one(pool)
    .await
    .expect("counting readings")
}

/// Publishes warm-up readings until `ready` says every instance's
/// subscriptions are up (each stored some: both shared sessions; each
/// showed some: the live sessions too).
async fn warm_up<F, Fut>(gateway: &mut Gateway, channel: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + crate::harness::DEADLINE;
    for n in 0.. {
        let payload = reading(channel, 1.0, 1_790_000_000_000 + n * 1_000);
        gateway.publish("trackside/gw-w/readings", payload).await;
        if ready().await {
            return;
        }
        assert!(Instant::now() < deadline, "subscriptions not up in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_store_once_show_everything_and_raise_once() {
    let mosquitto = Mosquitto::start().await;
    let pool = fresh_database().await;
    let a = TestServer::start_on(shared_config(&mosquitto, "ts-a"), pool.clone()).await;
    let b = TestServer::start_on(shared_config(&mosquitto, "ts-b"), pool.clone()).await;
    assert_eq!(a.running.cluster.held(), ["engine", "rollup"]);
    assert!(b.running.cluster.held().is_empty());
    let ready = b.get(b.url("/readyz")).await.unwrap().text().await.unwrap();
    assert!(ready.ends_with("roles: none (standing by)"), "{ready}");
    let metrics = b
        .get(b.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("trackside_cluster_role_held{role=\"engine\",instance=\"ts-b\"} 0"),
        "{metrics}"
    );
    a.external_session_up().await;
    b.external_session_up().await;
    let mut gateway = Gateway::connect(mosquitto.port, "gw-s").await;
    warm_up(&mut gateway, "W0/feed_current", || async {
        for server in [&a, &b] {
            if server.metric("trackside_mqtt_live_messages_total").await == 0.0
                || server.metric("trackside_readings_stored_total").await == 0.0
            {
                return false;
            }
        }
        true
    })
    .await;
    let warm_stored = a.metric("trackside_readings_stored_total").await
        + b.metric("trackside_readings_stored_total").await;

    // Instance B's browser, while each instance stores only its share.
    let mut browser = b.websocket().await;
    const N: i64 = 300;
    let t0 = 1_795_000_000_000;
    for i in 0..N {
        let channel = format!("S{}/feed_current", i % 3);
        gateway
            .publish(
                "trackside/gw-s/readings",
                reading(&channel, 1.0, t0 + i * 1_000),
            )
            .await;
    }
    let mut seen = std::collections::BTreeSet::new();
    tokio::time::timeout(crate::harness::DEADLINE, async {
        while seen.len() < N as usize {
            if let trackside_wire::ServerMessage::Readings { readings } = browser.next().await {
                seen.extend(
                    readings
                        .into_iter()
                        .filter(|r| r.channel.starts_with('S'))
                        .map(|r| (r.channel, r.ts)),
                );
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("B showed {} of {N} readings", seen.len()));
    eventually("every reading stored", || async {
        let mut total = 0;
        for c in 0..3 {
            total += stored_count(&pool, &format!("S{c}/feed_current")).await;
        }
        (total == N).then_some(())
    })
    .await;
    let (stored_a, stored_b) = (
        a.metric("trackside_readings_stored_total").await,
        b.metric("trackside_readings_stored_total").await,
    );
    // Each reading written by one instance only, and both took a share.
    assert_eq!(stored_a + stored_b - warm_stored, N as f64);
    assert_eq!(a.metric("trackside_readings_duplicate_total").await, 0.0);
    assert_eq!(b.metric("trackside_readings_duplicate_total").await, 0.0);
    assert!(stored_a > 0.0 && stored_b > 0.0, "{stored_a} / {stored_b}");

    // Out of limit: raised once, by A, and shown on B.
    gateway
        .publish(
            "trackside/gw-s/readings",
            reading("S0/feed_current", 9.0, t0 + N * 1_000),
        )
        .await;
    let raised = exception_frame(&mut browser, |e| {
        e.transition.kind == TransitionKind::Raised && e.exception.rule == "fc-high"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let raised_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM exceptions WHERE rule_id = 'fc-high'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(raised_rows, 1);
    assert_eq!(a.metric("trackside_exceptions_raised_total").await, 1.0);
    assert_eq!(b.metric("trackside_exceptions_raised_total").await, 0.0);

    // Acknowledged on B, which relays it to A's engine.
    let (status, body) = ack(
        &b,
        raised.exception.id,
        serde_json::json!({"comment": "feed checked"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["acknowledged"], true, "{body}");
    let acked = exception_frame(&mut browser, |e| {
        e.transition.kind == TransitionKind::Acknowledged && e.exception.id == raised.exception.id
    })
    .await;
    assert_eq!(acked.transition.by.as_deref(), Some("Ann Signaller"));

    // A maintenance window planned on B reaches A's engine: what S1 raises
    // under it is suppressed.
    let now = chrono::Utc::now().timestamp_millis();
    let (status, window) = crate::alarms::as_operator(
        &b,
        reqwest::Method::POST,
        "/api/maintenance",
        Some(
            serde_json::json!({"circuits": ["S1"], "reason": "rail grinding",
                                "ends_at": now + 3_600_000}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{window}");
    // The notification is asynchronous: give it a moment to reach A.
    tokio::time::sleep(Duration::from_secs(1)).await;
    gateway
        .publish(
            "trackside/gw-s/readings",
            reading(
                "S1/feed_current",
                9.0,
                chrono::Utc::now().timestamp_millis(),
            ),
        )
        .await;
    let suppressed: bool = eventually("S1's exception, raised under the window", || async {
        sqlx::query_scalar(
            "SELECT suppressed FROM exceptions WHERE rule_id = 'fc-high' AND subject = 'S1/feed_current'",
        )
        .fetch_optional(&pool)
        .await
        .ok()
        .flatten()
    })
    .await;
    assert!(suppressed, "the window planned on B suppresses A's raise");

    // So does a shelf an operator makes on B.
    let (status, shelf) = crate::alarms::as_operator(
        &b,
        reqwest::Method::POST,
        "/api/shelves",
        Some(serde_json::json!({"rule": "fc-high", "circuit": "S2",
                                "reason": "known fault, crew on site", "duration_s": 3600})),
    )
    .await;
    assert_eq!(status, 200, "{shelf}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    gateway
        .publish(
            "trackside/gw-s/readings",
            reading(
                "S2/feed_current",
                9.0,
                chrono::Utc::now().timestamp_millis(),
            ),
        )
        .await;
    let shelved: bool = eventually("S2's exception, raised under the shelf", || async {
        sqlx::query_scalar(
            "SELECT shelf_id IS NOT NULL FROM exceptions
             WHERE rule_id = 'fc-high' AND subject = 'S2/feed_current'",
        )
        .fetch_optional(&pool)
        .await
        .ok()
        .flatten()
    })
    .await;
    assert!(shelved, "the shelf made on B hides A's raise");
    b.running.shutdown().await;
    a.running.shutdown().await;
}

/// Persistent sessions (the default): Mosquitto goes on giving the dead
/// instance its share, held until it returns; then nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_engine_holder_hands_over_and_loses_nothing_the_broker_held() {
    let run = kill_mid_stream(true).await;
    assert!(
        run.stored_while_dead < N_KILL,
        "Mosquitto held a share for the dead session"
    );
    assert_eq!(run.stored_after_return, N_KILL);
}

/// Clean sessions: the group drops the dead instance at once and the other
/// stores everything published after; what the dead one had been sent but
/// not acknowledged (at most Mosquitto's in-flight window, 20) is lost,
/// and what it had spooled comes with its return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_clean_sessions_the_survivor_stores_the_rest_at_once() {
    let run = kill_mid_stream(false).await;
    let after_kill = N_KILL - N_KILL / 3 - 1;
    assert!(
        run.stored_while_dead >= after_kill,
        "{} stored, {after_kill} published after the kill",
        run.stored_while_dead
    );
    assert!(
        N_KILL - run.stored_after_return <= 20,
        "lost {} (more than Mosquitto's in-flight window)",
        N_KILL - run.stored_after_return
    );
}

const N_KILL: i64 = 600;

struct KillRun {
    stored_while_dead: i64,
    stored_after_return: i64,
}

/// One instance as the real binary, killed with SIGKILL a third of the way
/// through a steady stream; the other (in-process) takes over.
async fn kill_mid_stream(persistent: bool) -> KillRun {
    let mosquitto = Mosquitto::start().await;
    let pool = fresh_database().await;
    let work = tempfile::tempdir().unwrap();
    let http = free_port();
    let config_path = work.path().join("trackside.toml");
    std::fs::write(
        &config_path,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\nassets_dir = {assets:?}\n\
             [mqtt.external]\naddress = \"127.0.0.1:{port}\"\nclient_id = \"ts-a\"\nshare_group = \"{GROUP}\"\npersistent_session = {persistent}\n\
             [database]\nurl = {url:?}\ndata_dir = {data:?}\n\
             [exceptions]\ntick_ms = 100\n{rules}",
            assets = site_dir(),
            port = mosquitto.port,
            url = database_url(&pool),
            data = work.path().join("data"),
            rules = RULE.replace("[[rules]]", "[[exceptions.rules]]"),
        ),
    )
    .unwrap();
    let log = work.path().join("a.log");
    let mut a = Binary::spawn(&config_path, log.clone(), &[]);
    let readyz = format!("http://127.0.0.1:{http}/readyz");
    eventually("A ready with every role", || async {
        let text = reqwest::get(&readyz).await.ok()?.text().await.ok()?;
        text.ends_with("roles: engine, rollup").then_some(())
    })
    .await;
    let mut b_config = shared_config(&mosquitto, "ts-b");
    if let Some(external) = b_config.mqtt.external.as_mut() {
        external.persistent_session = persistent;
    }
    let b = TestServer::start_on(b_config, pool.clone()).await;
    assert!(b.running.cluster.held().is_empty());
    b.external_session_up().await;
    let mut gateway = Gateway::connect(mosquitto.port, "gw-k").await;
    eventually("A's shared session up", || async {
        let row: Option<i64> = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'trackside lease ts-a' \
             AND datname = current_database()",
        )
        .fetch_one(&pool)
        .await
        .ok();
        (row == Some(1)).then_some(())
    })
    .await;
    // B's share is in its metrics; A's is what the database has beyond it.
    warm_up(&mut gateway, "W1/feed_current", || async {
        let stored = stored_count(&pool, "W1/feed_current").await as f64;
        let by_b = b.metric("trackside_readings_stored_total").await;
        by_b > 0.0 && stored > by_b && b.metric("trackside_mqtt_live_messages_total").await > 0.0
    })
    .await;

    // Raised under A.
    let mut browser = b.websocket().await;
    let t0 = 1_796_000_000_000;
    gateway
        .publish(
            "trackside/gw-k/readings",
            reading("K0/feed_current", 9.0, t0),
        )
        .await;
    let raised = exception_frame(&mut browser, |e| {
        e.transition.kind == TransitionKind::Raised && e.exception.rule == "fc-high"
    })
    .await;

    // A steady publisher; A dies a third of the way through.
    const N: i64 = N_KILL;
    let mut takeover = None;
    for i in 0..N {
        gateway
            .publish(
                "trackside/gw-k/readings",
                reading("K1/feed_current", 1.0, t0 + (i + 1) * 1_000),
            )
            .await;
        if i == N / 3 {
            a.process.0.kill().expect("SIGKILL");
            let _ = a.process.0.wait();
            let killed_at = Instant::now();
            let mut engine = b.running.cluster.watch(Role::Engine);
            takeover = Some(tokio::spawn(async move {
                let _ = tokio::time::timeout(TAKEOVER * 2, engine.wait_for(|held| *held)).await;
                killed_at.elapsed()
            }));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let taken = takeover.unwrap().await.unwrap();
    assert!(
        taken < TAKEOVER && b.running.cluster.holds(Role::Engine),
        "took {taken:?}"
    );
    assert!(
        b.running.cluster.held().len() == 2,
        "{:?}",
        b.running.cluster.held()
    );

    // The lifecycle carries on under B: acknowledged and cleared.
    let (status, body) = ack(
        &b,
        raised.exception.id,
        serde_json::json!({"comment": "feed checked after failover"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    gateway
        .publish(
            "trackside/gw-k/readings",
            reading("K0/feed_current", 1.0, t0 + 900_000),
        )
        .await;
    eventually("the exception cleared under B", || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM exceptions WHERE rule_id = 'fc-high' AND open",
        )
        .fetch_one(&pool)
        .await
        .ok()?;
        (open == 0).then_some(())
    })
    .await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM exceptions WHERE rule_id = 'fc-high'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "nothing raised twice across the takeover");

    // B stores what it is given; what the broker held for A's session, and
    // what A had spooled, arrive when A comes back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored_while_dead = stored_count(&pool, "K1/feed_current").await;
    let a_again = Binary::spawn(&config_path, work.path().join("a2.log"), &[]);
    eventually("A back", || async {
        let text = reqwest::get(&readyz).await.ok()?.text().await.ok()?;
        text.starts_with("ready").then_some(())
    })
    .await;
    // Settled: everything, or the same count for three seconds.
    let deadline = Instant::now() + crate::harness::DEADLINE;
    let (mut stored_after_return, mut same) = (-1, 0);
    while Instant::now() < deadline && same < 3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = stored_count(&pool, "K1/feed_current").await;
        if now == N {
            stored_after_return = now;
            break;
        }
        same = if now == stored_after_return {
            same + 1
        } else {
            0
        };
        stored_after_return = now;
    }
    eprintln!(
        "persistent session {persistent}: takeover {} ms after SIGKILL; stored while A was \
         dead {stored_while_dead} of {N}; after A returned {stored_after_return}",
        taken.as_millis()
    );
    drop(a_again);
    b.running.shutdown().await;
    KillRun {
        stored_while_dead,
        stored_after_return,
    }
}

#[tokio::test]
async fn an_unsafe_mix_of_instances_is_refused_with_what_to_do() {
    let mosquitto = Mosquitto::start().await;
    let pool = fresh_database().await;
    let embedded = TestServer::start_on(crate::harness::test_config(), pool.clone()).await;
    let mut second = crate::harness::test_config();
    second.database.data_dir = tempfile::tempdir().unwrap().keep();
    let refused = trackside::start(&second, pool.clone())
        .await
        .err()
        .expect("a second embedded broker on the database is refused");
    let message = format!("{refused:#}");
    assert!(message.contains("embedded MQTT broker"), "{message}");
    assert!(message.contains("share_group"), "{message}");
    let mut shared = shared_config(&mosquitto, "ts-x");
    shared.database.data_dir = tempfile::tempdir().unwrap().keep();
    let refused = trackside::start(&shared, pool.clone())
        .await
        .err()
        .expect("a shared instance beside an embedded broker is refused");
    assert!(format!("{refused:#}").contains("stop it"), "{refused:#}");
    embedded.running.shutdown().await;

    // Shared instances share; an unshared subscriber beside them is refused.
    let one = TestServer::start_on(shared_config(&mosquitto, "ts-1"), pool.clone()).await;
    let two = TestServer::start_on(shared_config(&mosquitto, "ts-2"), pool.clone()).await;
    let mut unshared = external_config(&mosquitto, "ts-3");
    unshared.database.data_dir = tempfile::tempdir().unwrap().keep();
    let refused = trackside::start(&unshared, pool.clone())
        .await
        .err()
        .expect("an unshared subscriber beside shared ones is refused");
    assert!(format!("{refused:#}").contains("Set [mqtt.external] share_group"));
    two.running.shutdown().await;
    one.running.shutdown().await;
}
