//! The TimescaleDB path. These tests need a server that preloads
//! TimescaleDB, named by `TRACKSIDE_TEST_DATABASE_URL`; without one each
//! says SKIPPED and returns. (The rest of the suite runs on that server
//! too: every `TestServer` then takes the TimescaleDB path.)

use std::time::Duration;

use chrono::{DateTime, Utc};
use trackside::config::Config;
use trackside::store::rollup::{StoragePath, Tier};
use trackside_wire::{History, SeriesData};

use crate::harness::{
    Gateway, TestServer, dirty_marks, eventually, fresh_database, rolled_up, test_config,
    timescale_available,
};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

/// A server whose own job waits a minute between passes, so a test sees
/// the state before the job (and runs passes itself with [`rolled_up`]).
fn quiet_config() -> Config {
    let mut config = test_config();
    config.history.rollup_interval_ms = 60_000;
    config
}

async fn publish(gateway: &mut Gateway, channel: &str, readings: &[(i64, f64)]) {
    let readings: Vec<(&str, i64, f64)> = readings.iter().map(|&(t, v)| (channel, t, v)).collect();
    gateway.publish_readings("gw-ts", &readings).await;
}

async fn stored(server: &TestServer, n: i64) {
    eventually("readings stored", || async {
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM readings")
            .fetch_one(&server.pool)
            .await
            .unwrap();
        (count == n).then_some(())
    })
    .await;
}

/// Each bucket's count as the history API answers it, against the raw
/// rows' count, for one channel at one width.
async fn counts_match(server: &TestServer, channel: &str, from: i64, to: i64, points: u32) {
    let url = server.url(&format!(
        "/api/history?channels={channel}&from={from}&to={to}&points={points}"
    ));
    let answer: History = server.get(url).await.unwrap().json().await.unwrap();
    let SeriesData::Buckets { t, count, .. } = &answer.series[0].data else {
        panic!("buckets expected: {answer:?}");
    };
    for (i, &start) in t.iter().enumerate() {
        let end = t.get(i + 1).copied().unwrap_or(start + answer.bucket_ms);
        let (raw,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM readings r JOIN channels c ON c.id = r.channel_id
             WHERE c.name = $1 AND r.ts >= $2 AND r.ts < $3",
        )
        .bind(channel)
        .bind(DateTime::from_timestamp_millis(start).unwrap())
        .bind(DateTime::from_timestamp_millis(end).unwrap())
        .fetch_one(&server.pool)
        .await
        .unwrap();
        assert_eq!(
            count[i] as i64, raw,
            "{channel}: {} ms bucket at {start}",
            answer.bucket_ms
        );
    }
}

/// What the continuous aggregate itself holds for a minute or an hour.
async fn aggregate_count(server: &TestServer, relation: &str, bucket: i64) -> i64 {
    let count: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT sum(count)::bigint FROM {relation} WHERE bucket = $1"
    )))
    .bind(DateTime::from_timestamp_millis(bucket).unwrap())
    .fetch_one(&server.pool)
    .await
    .unwrap();
    count.unwrap_or(0)
}

/// Late readings, into minutes and hours already materialised and into a
/// month before the refresh policies' 30-day window, are in history at
/// once (read from raw rows through their marks), and reach the
/// aggregates when the job has refreshed their ranges.
#[tokio::test]
async fn timescale_late_readings_show_at_once_and_reach_the_aggregates() {
    if !timescale_available("timescale_late_readings_show_at_once_and_reach_the_aggregates").await {
        return;
    }
    let server = TestServer::start_with(quiet_config()).await;
    assert_eq!(server.running.storage, StoragePath::Timescale);
    let mut gateway = server.gateway("gw-ts").await;
    let now = Utc::now().timestamp_millis();
    let recent = (now - 3 * HOUR).div_euclid(HOUR) * HOUR;
    let old = (now - 40 * DAY).div_euclid(HOUR) * HOUR;

    // Two hours of readings, three hours ago: materialised by the job.
    let first: Vec<(i64, f64)> = (0..240).map(|i| (recent + i * 30_000, 1.0)).collect();
    publish(&mut gateway, "T1/relay_voltage", &first).await;
    stored(&server, 240).await;
    rolled_up(&server).await;
    assert_eq!(aggregate_count(&server, "readings_1m", recent).await, 2);
    assert_eq!(aggregate_count(&server, "readings_1h", recent).await, 120);

    // Late readings into those minutes, and a month-old backlog.
    let late: Vec<(i64, f64)> = (0..120)
        .map(|i| (recent + i * 30_000 + 7_000, 2.0))
        .collect();
    let backlog: Vec<(i64, f64)> = (0..60).map(|i| (old + i * 60_000, 3.0)).collect();
    publish(&mut gateway, "T1/relay_voltage", &late).await;
    publish(&mut gateway, "T1/relay_voltage", &backlog).await;
    stored(&server, 420).await;
    assert!(
        dirty_marks(&server.pool).await > 0,
        "late readings are marked"
    );
    assert_eq!(
        aggregate_count(&server, "readings_1m", recent).await,
        2,
        "the aggregate alone does not see them yet"
    );
    // At once: minute and hour buckets over the late hour, and the backlog.
    counts_match(&server, "T1/relay_voltage", recent, recent + 2 * HOUR, 120).await;
    counts_match(
        &server,
        "T1/relay_voltage",
        recent - HOUR,
        recent + 3 * HOUR,
        4,
    )
    .await;
    counts_match(&server, "T1/relay_voltage", old, old + HOUR, 60).await;
    counts_match(&server, "T1/relay_voltage", old - DAY, old + DAY, 48).await;

    // The job refreshes exactly those ranges, the month-old one included.
    rolled_up(&server).await;
    assert_eq!(aggregate_count(&server, "readings_1m", recent).await, 4);
    assert_eq!(aggregate_count(&server, "readings_1h", recent).await, 240);
    assert_eq!(aggregate_count(&server, "readings_1m", old).await, 1);
    assert_eq!(aggregate_count(&server, "readings_1h", old).await, 60);
    counts_match(&server, "T1/relay_voltage", recent, recent + 2 * HOUR, 120).await;
    counts_match(&server, "T1/relay_voltage", old - DAY, old + DAY, 48).await;
}

/// The first refresh ends where the policies end: the current hour (and
/// minute) stay real-time, so readings arriving after the start count.
#[tokio::test]
async fn timescale_the_current_hour_is_not_frozen() {
    if !timescale_available("timescale_the_current_hour_is_not_frozen").await {
        return;
    }
    // Readings of this hour stored before TimescaleDB is set up.
    let pool = fresh_database().await;
    let now = Utc::now().timestamp_millis();
    let hour = now.div_euclid(HOUR) * HOUR;
    sqlx::raw_sql(
        "INSERT INTO gateways (id) VALUES ('gw-ts');
         INSERT INTO channels (name, circuit, parameter, unit, gateway_id)
         VALUES ('T2/relay_voltage', 'T2', 'relay_voltage', 'V', 'gw-ts')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let before: Vec<DateTime<Utc>> = (hour - 2 * HOUR..now - 2_000)
        .step_by(20_000)
        .map(|t| DateTime::from_timestamp_millis(t).unwrap())
        .collect();
    sqlx::query(
        "INSERT INTO readings (channel_id, ts, value)
         SELECT (SELECT id FROM channels), t, 1.0 FROM unnest($1::timestamptz[]) AS t",
    )
    .bind(&before)
    .execute(&pool)
    .await
    .unwrap();
    let in_hour_before = before
        .iter()
        .filter(|t| t.timestamp_millis() >= hour)
        .count() as i64;

    let server = TestServer::start_on(test_config(), pool).await;
    assert_eq!(server.running.storage, StoragePath::Timescale);
    assert_eq!(
        aggregate_count(&server, "readings_1h", hour - 2 * HOUR).await,
        180
    );
    // Newer readings of the current hour, not late: no marks, only the
    // real-time aggregate can count them.
    let mut gateway = server.gateway("gw-ts").await;
    let start = Utc::now().timestamp_millis();
    let fresh: Vec<(i64, f64)> = (0..10).map(|i| (start + i, 2.0)).collect();
    publish(&mut gateway, "T2/relay_voltage", &fresh).await;
    stored(&server, before.len() as i64 + 10).await;
    let current = if Utc::now().timestamp_millis().div_euclid(HOUR) * HOUR == hour {
        in_hour_before + 10
    } else {
        // The hour turned during the test: the new hour holds the fresh ones.
        10
    };
    let bucket = start.div_euclid(HOUR) * HOUR;
    assert_eq!(
        aggregate_count(&server, "readings_1h", bucket).await,
        current,
        "the current hour counts every reading"
    );
    counts_match(&server, "T2/relay_voltage", hour - HOUR, hour + HOUR, 2).await;
}

/// Two servers starting together on one database, then a third at once:
/// set-up runs once at a time, each start succeeds, and each aggregate has
/// exactly one refresh policy. Several instances on one database share an
/// external broker (an embedded broker beside another is refused).
#[tokio::test]
async fn timescale_starts_in_quick_succession_do_not_race() {
    if !timescale_available("timescale_starts_in_quick_succession_do_not_race").await {
        return;
    }
    let mosquitto = crate::harness::Mosquitto::start().await;
    let shared = |id: &str| {
        let mut config = crate::external::external_config(&mosquitto, id);
        if let Some(external) = config.mqtt.external.as_mut() {
            external.share_group = Some("trackside".into());
        }
        config
    };
    let pool = fresh_database().await;
    let (a, b) = tokio::join!(
        TestServer::start_on(shared("ts-race-a"), pool.clone()),
        TestServer::start_on(shared("ts-race-b"), pool.clone())
    );
    let c = TestServer::start_on(shared("ts-race-c"), pool.clone()).await;
    for server in [&a, &b, &c] {
        server.external_session_up().await;
    }
    // Their subscriptions follow the sessions' CONNACK.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for server in [&a, &b, &c] {
        assert_eq!(server.running.storage, StoragePath::Timescale);
    }
    let policies: Vec<(String, i64)> = sqlx::query_as(
        "SELECT hypertable_name::text, count(*) FROM timescaledb_information.jobs j
         WHERE proc_name = 'policy_refresh_continuous_aggregate'
         GROUP BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(policies.len(), Tier::ALL.len(), "{policies:?}");
    assert!(policies.iter().all(|(_, n)| *n == 1), "{policies:?}");
    // And they serve: a reading through one is in the others' history.
    let mut gateway = Gateway::connect(mosquitto.port, "gw-ts").await;
    let t = Utc::now().timestamp_millis() - 2 * HOUR;
    publish(&mut gateway, "T3/relay_voltage", &[(t, 1.0)]).await;
    stored(&a, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    counts_match(&c, "T3/relay_voltage", t - HOUR, t + HOUR, 120).await;
    for server in [a, b, c] {
        server.running.shutdown().await;
    }
}
