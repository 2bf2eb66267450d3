//! A database outage costs disk, not readings: the spool keeps what the
//! database cannot take, and the writer stores it exactly once when it can.

use std::time::Duration;

use sqlx::PgPool;

use crate::harness::{DEADLINE, OwnCluster, TestServer, eventually, test_config};

const T0: i64 = 1_795_850_000_000;
const PER_MESSAGE: i64 = 10;

/// Message `m` of the known sequence: ten readings with distinct stamps.
fn message(m: i64) -> String {
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

async fn wait_for_all(pool: &PgPool, total: i64) -> Vec<i64> {
    let deadline = tokio::time::Instant::now() + DEADLINE * 3;
    loop {
        if let Ok(rows) = sqlx::query_as::<_, (i64,)>("SELECT count(*) FROM readings")
            .fetch_one(pool)
            .await
            && rows.0 >= total
        {
            return stored_values(pool).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readings were not all stored in time"
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
