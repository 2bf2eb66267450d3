//! `GET /api/history` against the same figures computed in SQL from the raw
//! rows, through the whole path: readings published over MQTT, stored by
//! the writer, rolled up by the trigger and the job, answered over HTTP.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use trackside::config::Config;
use trackside_wire::{ApiError, History, HistorySource, SeriesData};

use crate::harness::{
    Gateway, TestServer, dirty_marks, eventually, fresh_database, rolled_up, test_config,
};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn ms(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("a test time")
        .timestamp_millis()
}

/// Publishes readings as JSON batches over MQTT and waits until the
/// database holds `expect_total` readings in all.
async fn publish(
    server: &TestServer,
    gateway: &mut Gateway,
    readings: &[(&str, i64, f64)],
    expect_total: i64,
) {
    for chunk in readings.chunks(1_000) {
        let batch: Vec<serde_json::Value> = chunk
            .iter()
            .map(|(channel, ts, value)| json!({"channel": channel, "ts": ts, "value": value}))
            .collect();
        gateway
            .publish(
                "trackside/gw-hist/readings",
                json!({ "readings": batch }).to_string(),
            )
            .await;
    }
    eventually("the readings stored", || async {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM readings")
            .fetch_one(&server.pool)
            .await
            .unwrap();
        (n == expect_total).then_some(())
    })
    .await;
}

/// A server whose rollup job runs at start and then only once a minute, so
/// a test decides when minutes are rolled up (with [`rolled_up`]).
async fn quiet_server(zone: &str) -> TestServer {
    let mut config: Config = test_config();
    config.yard.timezone = zone.into();
    config.history.rollup_interval_ms = 60_000;
    TestServer::start_with(config).await
}

async fn get(server: &TestServer, query: &str) -> reqwest::Response {
    server
        .get(server.url(&format!("/api/history?{query}")))
        .await
        .expect("GET /api/history")
}

async fn history(
    server: &TestServer,
    channels: &[&str],
    from: i64,
    to: i64,
    points: u32,
) -> History {
    let response = get(
        server,
        &format!(
            "channels={}&from={from}&to={to}&points={points}",
            channels.join(",")
        ),
    )
    .await;
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("a History")
}

/// One bucket's figures: count, min, max, avg, first, last.
type Figures = (
    i64,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
);

/// The figures of each `[start, end)` computed straight from raw rows.
async fn expected(server: &TestServer, channel: &str, edges: &[(i64, i64)]) -> Vec<Figures> {
    let starts: Vec<DateTime<Utc>> = edges
        .iter()
        .map(|&(s, _)| DateTime::from_timestamp_millis(s).unwrap())
        .collect();
    let ends: Vec<DateTime<Utc>> = edges
        .iter()
        .map(|&(_, e)| DateTime::from_timestamp_millis(e).unwrap())
        .collect();
    sqlx::query_as(
        "SELECT count(r.value), min(r.value), max(r.value), avg(r.value),
                (array_agg(r.value ORDER BY r.ts))[1],
                (array_agg(r.value ORDER BY r.ts DESC))[1]
         FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS e (lo, hi, i)
         LEFT JOIN readings r
           ON r.channel_id = (SELECT id FROM channels WHERE name = $1)
          AND r.ts >= e.lo AND r.ts < e.hi
         GROUP BY e.i ORDER BY e.i",
    )
    .bind(channel)
    .bind(&starts)
    .bind(&ends)
    .fetch_all(&server.pool)
    .await
    .expect("expected figures")
}

async fn raw_rows(server: &TestServer, channel: &str, from: i64, to: i64) -> Vec<(i64, f64)> {
    server
        .stored(channel)
        .await
        .into_iter()
        .filter(|&(t, _)| t >= from && t < to)
        .collect()
}

/// Checks every series of `answer` against SQL over raw rows: each bucket's
/// count, min, max, first and last exactly, its average to 1e-9 relative;
/// readings one for one. Bucket ends are the next bucket's start, the last
/// one's `end`.
async fn check_against_sql(server: &TestServer, answer: &History, end: i64, what: &str) {
    for series in &answer.series {
        let channel = series.channel.as_str();
        match &series.data {
            SeriesData::Buckets {
                t,
                count,
                min,
                max,
                avg,
                first,
                last,
            } => {
                let edges: Vec<(i64, i64)> = t
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| (s, t.get(i + 1).copied().unwrap_or(end)))
                    .collect();
                let want = expected(server, channel, &edges).await;
                assert_eq!(want.len(), t.len());
                for (i, w) in want.iter().enumerate() {
                    let at = format!("{what}: {channel} bucket {i} at {}", t[i]);
                    assert_eq!(count[i] as i64, w.0, "count, {at}");
                    assert_eq!(min[i], w.1, "min, {at}");
                    assert_eq!(max[i], w.2, "max, {at}");
                    assert_eq!(first[i], w.4, "first, {at}");
                    assert_eq!(last[i], w.5, "last, {at}");
                    match (avg[i], w.3) {
                        (Some(a), Some(b)) => {
                            assert!(
                                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                                "avg {a} vs {b}, {at}"
                            )
                        }
                        (a, b) => assert_eq!(a, b, "avg, {at}"),
                    }
                }
            }
            SeriesData::Readings { t, value } => {
                let got: Vec<(i64, f64)> = t
                    .iter()
                    .zip(value)
                    .filter_map(|(&t, v)| v.map(|v| (t, v)))
                    .collect();
                let want = raw_rows(server, channel, answer.from, answer.to).await;
                assert_eq!(got, want, "{what}: readings of {channel}");
            }
        }
    }
}

fn bucket_end(answer: &History) -> i64 {
    answer.series[0]
        .data
        .times()
        .last()
        .copied()
        .unwrap_or(answer.from)
        + answer.bucket_ms
}

/// Random readings, a gap, late and re-sent readings: every bucket at every
/// resolution equals SQL over the raw rows, before and after the rollup job
/// has run.
#[tokio::test]
async fn every_bucket_matches_sql_over_raw_rows() {
    let server = quiet_server("Europe/London").await;
    let mut gateway = server.gateway("gw-hist").await;
    let mut rng = StdRng::seed_from_u64(7);
    let t0 = ms("2026-11-20T21:13:00Z");
    let span = 50 * HOUR;
    let mut readings: Vec<(&str, i64, f64)> = Vec::new();
    // A dense channel with jittered spacing and a three-hour outage.
    let mut t = t0;
    while t < t0 + span {
        let outage = t0 + 20 * HOUR..t0 + 23 * HOUR;
        if !outage.contains(&t) {
            readings.push(("T1/relay_voltage", t, 1.5 + rng.random_range(-0.3..0.3)));
        }
        t += rng.random_range(2_000..12_000);
    }
    // A sparse channel with spikes.
    let mut t = t0 + 17;
    while t < t0 + span {
        let spike = rng.random_bool(0.02);
        let value = if spike {
            9.0
        } else {
            120.0 + rng.random_range(-5.0..5.0)
        };
        readings.push(("T1/relay_current", t, value));
        t += rng.random_range(20_000..200_000);
    }
    let total = readings.len() as i64;
    publish(&server, &mut gateway, &readings, total).await;

    let channels = ["T1/relay_voltage", "T1/relay_current"];
    let cases = [
        // (from, to, points, expected source)
        (
            t0 + 5 * HOUR + 1_234,
            t0 + 5 * HOUR + 20 * MINUTE,
            50,
            HistorySource::Raw,
        ),
        (t0 + 10 * HOUR, t0 + 16 * HOUR, 1000, HistorySource::Raw),
        (
            t0 + 2 * HOUR + 7,
            t0 + 30 * HOUR,
            300,
            HistorySource::FiveMinute,
        ),
        (t0, t0 + span, 1000, HistorySource::FiveMinute),
        (t0, t0 + span, 2000, HistorySource::Minute),
        (t0 - 5 * HOUR, t0 + span, 200, HistorySource::QuarterHour),
        (t0 - DAY, t0 + span + DAY, 40, HistorySource::Hour),
        (t0 + 19 * HOUR, t0 + 24 * HOUR, 5, HistorySource::Hour),
        (t0 - DAY, t0 + span + DAY, 8, HistorySource::SixHour),
        (t0, t0 + span, 8, HistorySource::SixHour),
    ];
    let check_all = |what: &'static str| {
        let server = &server;
        async move {
            for &(from, to, points, source) in &cases {
                let answer = history(server, &channels, from, to, points).await;
                assert_eq!(answer.source, source, "{what}: {from}..{to} at {points}");
                assert_eq!(answer.series.len(), 2);
                check_against_sql(server, &answer, bucket_end(&answer), what).await;
            }
        }
    };
    // Not rolled up yet: every minute is dirty and answered from raw rows.
    assert!(dirty_marks(&server.pool).await > 1_000);
    check_all("fresh").await;
    rolled_up(&server).await;
    check_all("rolled up").await;

    // Late readings into hours long rolled up, and a re-send of old
    // readings with different values: the key keeps the first values.
    let mut more: Vec<(&str, i64, f64)> = (0..300)
        .map(|i| {
            (
                "T1/relay_voltage",
                t0 + 3 * HOUR + 500 + i * 997,
                -2.0 + i as f64 / 100.0,
            )
        })
        .collect();
    more.push(("T1/relay_voltage", t0 + 21 * HOUR, 42.0)); // inside the outage
    let resent: Vec<(&str, i64, f64)> = readings[..500]
        .iter()
        .map(|&(c, t, v)| (c, t, v + 100.0))
        .collect();
    let late = more.len() as i64;
    more.extend(resent);
    publish(&server, &mut gateway, &more, total + late).await;
    assert!(dirty_marks(&server.pool).await > 0);
    check_all("late, before the job").await;
    rolled_up(&server).await;
    check_all("late, after the job").await;

    // The rollup tables themselves, not only the answers, equal the raw rows.
    let (wrong,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM readings_1m m
         JOIN LATERAL (
             SELECT count(*) AS n, min(value) AS lo, max(value) AS hi,
                    (array_agg(value ORDER BY ts))[1] AS f
             FROM readings r
             WHERE r.channel_id = m.channel_id
               AND r.ts >= m.bucket AND r.ts < m.bucket + interval '1 minute'
         ) r ON true
         WHERE (m.count, m.min, m.max, m.first) IS DISTINCT FROM (r.n, r.lo, r.hi, r.f)",
    )
    .fetch_one(&server.pool)
    .await
    .unwrap();
    assert_eq!(wrong, 0, "minute rollups that differ from raw rows");
}

/// The outage is explicit: empty buckets with count 0 and no figures, and a
/// gap marker among raw readings.
#[tokio::test]
async fn an_outage_is_a_gap_not_a_line() {
    let server = TestServer::start().await;
    let mut gateway = server.gateway("gw-hist").await;
    let t0 = ms("2026-11-25T08:00:00Z");
    let readings: Vec<(&str, i64, f64)> = (0..360)
        .map(|i| t0 + i * 10_000)
        .filter(|t| !(t0 + 20 * MINUTE..t0 + 40 * MINUTE).contains(t))
        .map(|t| ("T5/feed_voltage", t, 9.5))
        .collect();
    let n = readings.len() as i64;
    publish(&server, &mut gateway, &readings, n).await;

    // One-minute buckets over the hour: minutes 20 to 39 are empty.
    let answer = history(&server, &["T5/feed_voltage"], t0, t0 + HOUR, 60).await;
    assert_eq!(
        (answer.source, answer.bucket_ms),
        (HistorySource::Minute, MINUTE)
    );
    let SeriesData::Buckets {
        t, count, avg, min, ..
    } = &answer.series[0].data
    else {
        panic!("buckets expected: {answer:?}");
    };
    assert_eq!(t.len(), 60);
    for i in 0..60 {
        let in_outage = (20..40).contains(&i);
        assert_eq!(count[i] == 0, in_outage, "minute {i}");
        assert_eq!(avg[i].is_none(), in_outage, "minute {i}");
        assert_eq!(min[i].is_none(), in_outage, "minute {i}");
    }
    assert_eq!(answer.series[0].newest, Some(t0 + 359 * 10_000));

    // Few enough readings to send them: a null right after the last
    // reading before the outage.
    let answer = history(&server, &["T5/feed_voltage"], t0, t0 + HOUR, 1000).await;
    let SeriesData::Readings { t, value } = &answer.series[0].data else {
        panic!("readings expected: {answer:?}");
    };
    let gaps: Vec<i64> = t
        .iter()
        .zip(value)
        .filter(|(_, v)| v.is_none())
        .map(|(&t, _)| t)
        .collect();
    assert_eq!(gaps, [t0 + 20 * MINUTE - 10_000 + 1]);
    assert_eq!(value.iter().flatten().count() as i64, n);
}

/// A reading on a bucket's first microsecond belongs to it, one on its last
/// microsecond too, and the grid starts at the bucket holding `from`.
#[tokio::test]
async fn bucket_edges_are_exact() {
    let server = TestServer::start().await;
    let mut gateway = server.gateway("gw-hist").await;
    let readings = [
        ("2026-11-26T09:59:59.999999Z", 1.0),
        ("2026-11-26T10:00:00Z", 2.0),
        ("2026-11-26T10:00:59.999999Z", 3.0),
        ("2026-11-26T10:01:00Z", 4.0),
        ("2026-11-26T10:59:59.999999Z", 5.0),
        ("2026-11-26T11:00:00Z", 6.0),
    ];
    let batch: Vec<serde_json::Value> = readings
        .iter()
        .map(|(ts, v)| json!({"channel": "T9/rx_level", "ts": ts, "value": v}))
        .collect();
    gateway
        .publish(
            "trackside/gw-hist/readings",
            json!({ "readings": batch }).to_string(),
        )
        .await;
    eventually("stored", || async {
        (server.stored("T9/rx_level").await.len() == 6).then_some(())
    })
    .await;

    let t10 = ms("2026-11-26T10:00:00Z");
    let check = |from: i64, to: i64, points: u32| {
        let server = &server;
        async move {
            let answer = history(server, &["T9/rx_level"], from, to, points).await;
            let SeriesData::Buckets { t, count, .. } = &answer.series[0].data else {
                panic!("buckets: {answer:?}");
            };
            (answer.source, answer.bucket_ms, t.clone(), count.clone())
        }
    };
    // 61.5 minutes at 91 points ask for 40.5 s: one-minute buckets, the
    // first from 09:59 (it holds `from`, 09:59:30).
    let (source, width, t, count) = check(t10 - 30_000, t10 + 61 * MINUTE, 91).await;
    assert_eq!((source, width), (HistorySource::Minute, MINUTE));
    assert_eq!(t[0], t10 - MINUTE, "the first bucket holds `from`");
    assert_eq!(
        *t.last().unwrap(),
        t10 + 60 * MINUTE,
        "the last bucket starts before `to`"
    );
    assert_eq!(count[0], 1, "09:59:59.999999");
    assert_eq!(count[1], 2, "10:00:00 and 10:00:59.999999");
    assert_eq!(count[2], 1, "10:01:00");
    assert_eq!(count[60], 1, "10:59:59.999999");
    assert_eq!(count[61], 1, "11:00:00, inside the whole last bucket");
    assert_eq!(count.iter().sum::<u64>(), 6);

    // Hour buckets: [09:00, 10:00) holds one, [10:00, 11:00) four, the
    // bucket at 11:00 is not asked for (to is exclusive).
    let (source, width, t, count) = check(t10 - HOUR, t10 + HOUR, 2).await;
    assert_eq!((source, width), (HistorySource::Hour, HOUR));
    assert_eq!(t, [t10 - HOUR, t10]);
    assert_eq!(count, [1, 4]);

    // Sub-second buckets from raw rows around the 10:00 edge.
    let answer = history(&server, &["T9/rx_level"], t10 - 1_000, t10 + 1_000, 2).await;
    assert_eq!(answer.source, HistorySource::Raw);
    let SeriesData::Readings { t, .. } = &answer.series[0].data else {
        panic!("two readings in the range come as readings: {answer:?}");
    };
    assert_eq!(
        t,
        &[t10 - 1, t10],
        "microseconds are truncated to the millisecond"
    );
}

/// Day buckets run from local midnight to local midnight, so the day the
/// clocks go back is 25 hours long; six-hour buckets follow the wall clock
/// across the spring change (one is five hours long).
#[tokio::test]
async fn wide_buckets_follow_the_yards_clock_across_daylight_saving() {
    let server = quiet_server("Europe/London").await;
    let mut gateway = server.gateway("gw-hist").await;
    // Every ten minutes from 2026-10-22 to 2026-10-29 (UTC).
    let start = ms("2026-10-22T00:00:00Z");
    let readings: Vec<(&str, i64, f64)> = (0..(7 * 144))
        .map(|i| {
            (
                "T3/relay_voltage",
                start + i * 10 * MINUTE,
                (i % 50) as f64 / 10.0,
            )
        })
        .collect();
    publish(&server, &mut gateway, &readings, readings.len() as i64).await;

    // From local midnight on Saturday 24 October (BST) for four days.
    let from = ms("2026-10-24T00:00:00+01:00");
    let to = ms("2026-10-28T00:00:00Z");
    let answer = history(&server, &["T3/relay_voltage"], from, to, 4).await;
    assert_eq!(
        (answer.source, answer.bucket_ms),
        (HistorySource::SixHour, DAY)
    );
    let t = answer.series[0].data.times().to_vec();
    assert_eq!(
        t,
        [
            ms("2026-10-23T23:00:00Z"), // Sat 00:00 BST
            ms("2026-10-24T23:00:00Z"), // Sun 00:00 BST; clocks go back at 02:00
            ms("2026-10-26T00:00:00Z"), // Mon 00:00 GMT
            ms("2026-10-27T00:00:00Z"), // Tue 00:00 GMT
        ]
    );
    let SeriesData::Buckets { count, .. } = &answer.series[0].data else {
        panic!("buckets");
    };
    assert_eq!(
        count,
        &[144, 150, 144, 144],
        "Sunday has 25 hours of readings"
    );
    check_against_sql(&server, &answer, ms("2026-10-28T00:00:00Z"), "London days").await;
    rolled_up(&server).await;
    // The rollup tables answer as the raw rows did (averages to the last
    // bits: TimescaleDB's aggregates add in another order).
    let again = history(&server, &["T3/relay_voltage"], from, to, 4).await;
    assert_eq!(again.series[0].data.times(), answer.series[0].data.times());
    check_against_sql(
        &server,
        &again,
        ms("2026-10-28T00:00:00Z"),
        "London days, rolled up",
    )
    .await;

    let server = quiet_server("America/New_York").await;
    let mut gateway = server.gateway("gw-hist").await;
    let start = ms("2026-03-07T00:00:00Z");
    let readings: Vec<(&str, i64, f64)> = (0..(3 * 144))
        .map(|i| ("T3/relay_voltage", start + i * 10 * MINUTE, i as f64))
        .collect();
    publish(&server, &mut gateway, &readings, readings.len() as i64).await;
    // Sunday 8 March 2026: 02:00 EST becomes 03:00 EDT, a 23-hour day.
    let from = ms("2026-03-08T00:00:00-05:00");
    let to = ms("2026-03-09T00:00:00-04:00");
    let answer = history(&server, &["T3/relay_voltage"], from, to, 4).await;
    assert_eq!(answer.bucket_ms, 6 * HOUR);
    assert_eq!(
        answer.series[0].data.times(),
        [
            ms("2026-03-08T05:00:00Z"), // 00:00 EST
            ms("2026-03-08T10:00:00Z"), // 06:00 EDT, five hours later
            ms("2026-03-08T16:00:00Z"), // 12:00 EDT
            ms("2026-03-08T22:00:00Z"), // 18:00 EDT
        ]
    );
    check_against_sql(&server, &answer, to, "New York").await;
    // Asking for 24 real hours reaches into Monday: its bucket is there.
    let longer = history(&server, &["T3/relay_voltage"], from, from + DAY, 4).await;
    assert_eq!(longer.series[0].data.times().last(), Some(&to));
}

/// Bad parameters are refused with a 400 and a message that says what to
/// fix; an unknown channel is named.
#[tokio::test]
async fn bad_requests_get_a_400_that_says_why() {
    let server = TestServer::start().await;
    let mut gateway = server.gateway("gw-hist").await;
    publish(
        &server,
        &mut gateway,
        &[("T1/relay_state", ms("2026-11-26T10:00:00Z"), 1.0)],
        1,
    )
    .await;
    let cases = [
        ("", "channels"),
        ("channels=T1/relay_state&from=0", "to"),
        ("channels=T1/relay_state&from=0&to=1&colour=red", "colour"),
        (
            "channels=T1/relay_state&from=soon&to=1",
            "from=\"soon\" is not a time",
        ),
        (
            "channels=T1/relay_state&from=5&to=5",
            "from must be before to",
        ),
        ("channels=T1/relay_state&from=0&to=1000&points=0", "points"),
        (
            "channels=T1/relay_state&from=0&to=1000&points=9999999",
            "points",
        ),
        (
            "channels=T1/relay_state&from=0&to=1000&points=many",
            "points",
        ),
        (
            "channels=T1/relay_state&from=0&to=999999999999999",
            "longer than 3660 days",
        ),
        ("channels=T1&from=0&to=1000", "channel \"T1\""),
        (
            "channels=T1/relay_state,T7/nope&from=0&to=1000",
            "no such channel: T7/nope",
        ),
    ];
    for (query, expected) in cases {
        let response = get(&server, query).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: ApiError = response.json().await.expect("a JSON error body");
        assert!(
            body.error.contains(expected),
            "{query}: {:?} should mention {expected:?}",
            body.error
        );
    }
    // The same request, well-formed, works.
    let ok = get(
        &server,
        "channels=T1/relay_state&from=2026-11-26T09:00:00Z&to=2026-11-26T11:00:00%2B00:00",
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["cache-control"], "no-store");
}

async fn insert(pool: &sqlx::PgPool, channel_id: i32, readings: &[(i64, f64)]) {
    let ts: Vec<DateTime<Utc>> = readings
        .iter()
        .map(|&(t, _)| DateTime::from_timestamp_millis(t).unwrap())
        .collect();
    let values: Vec<f64> = readings.iter().map(|&(_, v)| v).collect();
    sqlx::query(
        "INSERT INTO readings (channel_id, ts, value)
         SELECT $1, * FROM UNNEST($2::timestamptz[], $3::double precision[])
         ON CONFLICT DO NOTHING",
    )
    .bind(channel_id)
    .bind(&ts)
    .bind(&values)
    .execute(pool)
    .await
    .expect("inserting readings");
}

async fn minute_row(pool: &sqlx::PgPool, channel_id: i32, minute: i64) -> Option<(i64, f64)> {
    sqlx::query_as("SELECT count, max FROM readings_1m WHERE channel_id = $1 AND bucket = $2")
        .bind(channel_id)
        .bind(DateTime::from_timestamp_millis(minute).unwrap())
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// A minute that cannot be rolled up (here: the hour rollup refuses
/// channel 1's rows) is isolated: it is counted, set aside with its mark
/// kept, and answered from raw rows, while every other channel's minutes
/// in the same pass are rolled up. Once it can be, a later pass takes it.
#[tokio::test]
async fn a_minute_that_cannot_be_rolled_up_holds_up_no_other() {
    let pool = fresh_database().await;
    let config = trackside::config::HistoryConfig {
        rollup_interval_ms: 100,
        ..Default::default()
    };
    let metrics = std::sync::Arc::new(trackside::metrics::Metrics::default());
    let mut job = trackside::store::rollup::Refresher::new(config, metrics.clone());
    let minute = ms("2026-11-27T06:30:00Z");
    for channel in 1..=3 {
        insert(
            &pool,
            channel,
            &[(minute + 1_000, 1.0), (minute + 2_000, 3.0)],
        )
        .await;
        insert(&pool, channel, &[(minute + 5 * MINUTE, 4.0)]).await;
    }
    assert_eq!(dirty_marks(&pool).await, 6);

    sqlx::query("ALTER TABLE readings_1h ADD CONSTRAINT refuse CHECK (channel_id <> 1) NOT VALID")
        .execute(&pool)
        .await
        .unwrap();
    let report = job.pass(&pool, 100).await.expect("the pass goes on");
    assert_eq!((report.claimed, report.failed), (6, 2), "{report:?}");
    assert_eq!(
        dirty_marks(&pool).await,
        2,
        "the failed minutes stay marked"
    );
    assert_eq!(minute_row(&pool, 1, minute).await, None, "undone");
    for channel in 2..=3 {
        assert_eq!(minute_row(&pool, channel, minute).await, Some((2, 3.0)));
        assert_eq!(
            minute_row(&pool, channel, minute + 5 * MINUTE).await,
            Some((1, 4.0))
        );
    }
    let fresh: Vec<(i64, f64)> =
        sqlx::query_as("SELECT count, max FROM history_1m WHERE channel_id = 1 AND bucket = $1")
            .bind(DateTime::from_timestamp_millis(minute).unwrap())
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(fresh, [(2, 3.0)], "answered from raw rows meanwhile");
    let failures = |m: &trackside::metrics::Metrics| {
        (
            m.rollup_failed_minutes
                .load(std::sync::atomic::Ordering::Relaxed),
            m.rollup_set_aside
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    assert_eq!(failures(&metrics), (2, 2));
    let metrics_text = metrics.render(&Default::default());
    assert!(
        metrics_text.contains("trackside_rollup_failures_total 2"),
        "{metrics_text}"
    );

    // Set aside: the next pass does not try them again at once.
    assert_eq!(job.pass(&pool, 100).await.unwrap().claimed, 0);

    sqlx::query("ALTER TABLE readings_1h DROP CONSTRAINT refuse")
        .execute(&pool)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = job.pass(&pool, 100).await.unwrap();
    assert_eq!((report.claimed, report.failed), (2, 0), "{report:?}");
    assert_eq!(dirty_marks(&pool).await, 0);
    assert_eq!(minute_row(&pool, 1, minute).await, Some((2, 3.0)));
    assert_eq!(failures(&metrics), (2, 0));
}

/// The server's job leaves a minute to a later pass while it is still being
/// written, so a minute filled by many commits is recomputed once; but a
/// minute written without pause gets its rollup once its oldest mark has
/// waited a minute. Marks are aged by hand instead of waiting.
#[tokio::test]
async fn a_minute_still_being_written_waits_for_quiet_but_not_forever() {
    let pool = fresh_database().await;
    let metrics = std::sync::Arc::new(trackside::metrics::Metrics::default());
    let mut job = trackside::store::rollup::Refresher::new(Default::default(), metrics)
        .waiting_for_quiet(Duration::from_secs(10));
    let age = |seconds: i32| {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "UPDATE rollup_dirty SET marked_at = marked_at - make_interval(secs => $1)",
            )
            .bind(f64::from(seconds))
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    let minute = ms("2026-11-27T06:30:00Z");
    insert(&pool, 1, &[(minute + 1_000, 1.0), (minute + 2_000, 3.0)]).await;
    assert_eq!(
        job.pass(&pool, 100).await.unwrap().claimed,
        0,
        "still being written"
    );
    assert_eq!(minute_row(&pool, 1, minute).await, None);

    age(11).await;
    assert_eq!(job.pass(&pool, 100).await.unwrap().claimed, 1, "quiet now");
    assert_eq!(minute_row(&pool, 1, minute).await, Some((2, 3.0)));

    insert(&pool, 1, &[(minute + 3_000, 5.0)]).await;
    age(11).await;
    insert(&pool, 1, &[(minute + 4_000, 2.0)]).await;
    assert_eq!(
        job.pass(&pool, 100).await.unwrap().claimed,
        0,
        "an older mark waits while the minute has a young one"
    );
    age(50).await;
    insert(&pool, 1, &[(minute + 5_000, 2.5)]).await;
    assert_eq!(
        job.pass(&pool, 100).await.unwrap().claimed,
        1,
        "a mark a minute old is taken even though the minute is being written"
    );
    assert_eq!(dirty_marks(&pool).await, 2, "the younger marks stay");
    assert_eq!(minute_row(&pool, 1, minute).await, Some((5, 5.0)));
}

/// A writer's marks are invisible until it commits: a pass meanwhile rolls
/// the minute up from what is committed, and the writer's commit marks the
/// minute again for the next pass.
#[tokio::test]
async fn a_minute_written_during_a_pass_is_rolled_up_again_after_the_commit() {
    let pool = fresh_database().await;
    let config = trackside::config::HistoryConfig::default();
    let minute = ms("2026-11-27T06:30:00Z");
    insert(&pool, 1, &[(minute + 1_000, 1.0)]).await;

    let mut writer = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO readings (channel_id, ts, value) VALUES (1, $1, 7.0)")
        .bind(DateTime::from_timestamp_millis(minute + 5_000).unwrap())
        .execute(&mut *writer)
        .await
        .unwrap();
    assert_eq!(
        trackside::store::rollup::refresh_dirty(&pool, &config, 100)
            .await
            .unwrap()
            .claimed,
        1,
        "the committed mark is claimed"
    );
    assert_eq!(minute_row(&pool, 1, minute).await, Some((1, 1.0)));
    writer.commit().await.unwrap();
    assert_eq!(dirty_marks(&pool).await, 1);
    assert_eq!(
        trackside::store::rollup::refresh_dirty(&pool, &config, 100)
            .await
            .unwrap()
            .claimed,
        1
    );
    assert_eq!(minute_row(&pool, 1, minute).await, Some((2, 7.0)));
}

/// A write never waits for the rollup job: while a pass holds the marks it
/// claimed, a writer marking the same minute goes through at once, and the
/// history view counts a minute marked twice once.
#[tokio::test]
async fn a_write_does_not_wait_for_a_rollup_pass() {
    let pool = fresh_database().await;
    let minute = ms("2026-11-27T06:30:00Z");
    insert(&pool, 1, &[(minute + 1_000, 1.0)]).await;

    // A pass in progress: its claim deleted the mark and is not committed.
    let mut pass = pool.begin().await.unwrap();
    sqlx::query("DELETE FROM rollup_dirty")
        .execute(&mut *pass)
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        insert(&pool, 1, &[(minute + 2_000, 3.0)]),
    )
    .await
    .expect("the write went through while the pass held the minute's mark");
    pass.rollback().await.unwrap();

    assert_eq!(dirty_marks(&pool).await, 2, "one mark per write");
    let rows: Vec<(i64, f64)> =
        sqlx::query_as("SELECT count, max FROM history_1m WHERE channel_id = 1 AND bucket = $1")
            .bind(DateTime::from_timestamp_millis(minute).unwrap())
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows, vec![(2, 3.0)]);
}

/// A pass leaves a tier bucket that still holds another dirty minute to
/// the pass that takes that minute. A mark before the raw horizon, which
/// its pass drops unrecomputed, must not hold one back: nobody would
/// recompute it, and without a mark readers would read it stale.
#[tokio::test]
async fn a_mark_past_the_raw_horizon_holds_no_tier_bucket_back() {
    let pool = fresh_database().await;
    // Six-hour buckets start at xx:30 UTC in this zone, so the raw horizon
    // (a whole hour) always lies inside one.
    let mut conn = pool.acquire().await.unwrap();
    trackside::store::rollup::plain::set_zone(&mut conn, "Asia/Kolkata")
        .await
        .unwrap();
    drop(conn);
    let config = trackside::config::HistoryConfig {
        raw_retention_days: 2,
        ..Default::default()
    };
    let horizon = Utc::now().timestamp_millis().div_euclid(HOUR) * HOUR - 2 * DAY;
    let (newer, older) = (horizon + 10 * MINUTE, horizon - 10 * MINUTE);
    // Marks are aged by hand: the newer minute's is quiet, the older one's
    // too young to take in the first pass.
    let age_marks = || async {
        sqlx::query("UPDATE rollup_dirty SET marked_at = marked_at - interval '20 seconds'")
            .execute(&pool)
            .await
            .unwrap();
    };
    insert(&pool, 1, &[(newer + 1_000, 5.0)]).await;
    age_marks().await;
    insert(&pool, 1, &[(older + 1_000, 1.0)]).await;
    let mut job = trackside::store::rollup::Refresher::new(
        config,
        std::sync::Arc::new(trackside::metrics::Metrics::default()),
    )
    .waiting_for_quiet(Duration::from_secs(10));
    assert_eq!(job.pass(&pool, 100).await.unwrap().claimed, 1);
    age_marks().await;
    assert_eq!(job.pass(&pool, 100).await.unwrap().claimed, 1);
    assert_eq!(dirty_marks(&pool).await, 0);
    let six_hours: Vec<(f64,)> = sqlx::query_as("SELECT max FROM readings_6h WHERE channel_id = 1")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        six_hours,
        vec![(5.0,)],
        "the six-hour bucket holds the newer minute"
    );
}

/// Raw readings past retention are deleted and their range is answered
/// from the minute rollup, which outlives them.
#[tokio::test]
async fn past_raw_retention_the_minute_rollup_answers() {
    let mut config: Config = test_config();
    config.history.raw_retention_days = 2;
    config.history.rollup_interval_ms = 60_000;
    // Plain retention; TimescaleDB's policies are its own.
    config.history.timescaledb = trackside::config::TimescaleMode::Off;
    // Seeded and rolled up before the server starts: its job applies
    // retention at once.
    let pool = fresh_database().await;
    let now = Utc::now().timestamp_millis();
    let old = now - 3 * DAY;
    sqlx::raw_sql(
        "INSERT INTO gateways (id) VALUES ('gw-hist');
         INSERT INTO channels (name, circuit, parameter, unit, gateway_id)
         VALUES ('T4/relay_voltage', 'T4', 'relay_voltage', 'V', 'gw-hist')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (id,): (i32,) = sqlx::query_as("SELECT id FROM channels")
        .fetch_one(&pool)
        .await
        .unwrap();
    let readings: Vec<(i64, f64)> = (0..120)
        .map(|i| (old + i * 5_000, i as f64))
        .chain((0..10).map(|i| (now - HOUR + i * 1_000, 1.0)))
        .collect();
    insert(&pool, id, &readings).await;
    // Rolled up while they were recent (no retention then): a mark older
    // than the horizon is dropped, not rolled up.
    let then = trackside::config::HistoryConfig::default();
    while trackside::store::rollup::refresh_dirty(&pool, &then, 1_000)
        .await
        .unwrap()
        .claimed
        > 0
    {}
    let server = TestServer::start_on(config.clone(), pool).await;
    trackside::store::rollup::apply_retention(&server.pool, &config.history, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        raw_rows(&server, "T4/relay_voltage", 0, now).await.len(),
        10
    );

    // Ten minutes three days ago would be raw 1-second buckets; the raw rows
    // are gone, so one-minute buckets from the rollup answer instead.
    let answer = history(&server, &["T4/relay_voltage"], old, old + 10 * MINUTE, 600).await;
    assert_eq!(
        (answer.source, answer.bucket_ms),
        (HistorySource::Minute, MINUTE)
    );
    let SeriesData::Buckets { count, max, .. } = &answer.series[0].data else {
        panic!("buckets: {answer:?}");
    };
    assert_eq!(count.iter().sum::<u64>(), 120);
    assert_eq!(
        max.iter().flatten().copied().fold(f64::MIN, f64::max),
        119.0
    );
}
