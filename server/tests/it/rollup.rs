//! Rollups with any finite reading: the extremes of the double range next
//! to ordinary channels, through the whole path (MQTT, the writer, the
//! server's own rollup job, history and export over HTTP), and a property
//! test of the rollup arithmetic against exact sums.

use std::sync::atomic::{AtomicI32, Ordering};

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use trackside_wire::{History, HistorySource, SeriesData};

use crate::harness::{TestServer, dirty_marks, eventually, fresh_database};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;

fn ms(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("a test time")
        .timestamp_millis()
}

const HUGE: f64 = 1.797e308;

/// Readings of ±1.797e308, two or three in one minute, on channels beside
/// ordinary ones. The server's own job rolls everything up, counts the overflowing
/// minutes on /metrics, and history and 1m/1h export answer every channel:
/// the ordinary ones as SQL computes them, the extreme ones with exact
/// min, max, count, first and last, and the mean of their readings.
#[tokio::test]
async fn extreme_readings_stall_no_rollup_and_every_channel_answers() {
    let server = TestServer::start().await;
    let mut gateway = server.gateway("gw-x").await;
    let t0 = ms("2026-11-20T10:00:00Z");
    let m = t0 + 30 * MINUTE; // the extreme minute
    let mut readings: Vec<(&str, i64, f64)> = Vec::new();
    for i in 0..720 {
        readings.push((
            "T1/relay_voltage",
            t0 + i * 10_000,
            1.5 + (i % 7) as f64 / 100.0,
        ));
    }
    for i in 0..240 {
        readings.push((
            "T2/feed_current",
            t0 + i * 30_000 + 7,
            120.0 - (i % 5) as f64,
        ));
    }
    readings.extend([
        ("X1/rx_level", m + 1_000, HUGE),
        ("X1/rx_level", m + 2_000, HUGE),
        ("X1/rx_level", m + 3_000, HUGE),
        ("X1/rx_level", t0 + 45 * MINUTE, 1.0),
        ("X2/rx_level", m + 1_000, -HUGE),
        ("X2/rx_level", m + 2_000, -HUGE),
        ("X3/rx_level", m + 1_000, HUGE),
        ("X3/rx_level", m + 2_000, -HUGE),
        ("X4/rx_level", m + 1_000, f64::MAX),
        ("X4/rx_level", m + 2_000, f64::MAX),
    ]);
    gateway.publish_readings("gw-x", &readings).await;
    let total = readings.len() as i64;
    eventually("every reading stored", || async {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM readings")
            .fetch_one(&server.pool)
            .await
            .unwrap();
        (n == total).then_some(())
    })
    .await;

    // The server's own job gets through every minute of every channel.
    eventually("the rollup job caught up", || async {
        (dirty_marks(&server.pool).await == 0).then_some(())
    })
    .await;
    let overflows = server.metric("trackside_rollup_overflows_total").await;
    assert!(
        overflows >= 3.0,
        "X1, X2 and X4's minutes overflow: {overflows}"
    );
    assert_eq!(server.metric("trackside_rollup_failures_total").await, 0.0);

    let channels = [
        "T1/relay_voltage",
        "T2/feed_current",
        "X1/rx_level",
        "X2/rx_level",
        "X3/rx_level",
        "X4/rx_level",
    ];
    let cases = [
        (t0, t0 + 2 * HOUR, 120, HistorySource::Minute, MINUTE),
        (t0, t0 + 2 * HOUR, 2, HistorySource::Hour, HOUR),
        // Raw buckets: X1's three readings, the others sent as readings.
        (m, m + 10_000, 1, HistorySource::Raw, 10_000),
    ];
    for (from, to, points, source, width) in cases {
        let url = server.url(&format!(
            "/api/history?channels={}&from={from}&to={to}&points={points}",
            channels.join(",")
        ));
        let response = server.get(url).await.unwrap();
        assert_eq!(response.status(), 200, "{source:?}");
        let answer: History = response.json().await.unwrap();
        assert_eq!((answer.source, answer.bucket_ms), (source, width));
        assert_eq!(answer.series.len(), channels.len());
        for series in &answer.series {
            let SeriesData::Buckets {
                t,
                count,
                min,
                max,
                avg,
                ..
            } = &series.data
            else {
                // Sparse channels in a narrow range come as readings.
                continue;
            };
            for i in 0..t.len() {
                let end = t.get(i + 1).copied().unwrap_or(t[i] + width);
                let want = expected(&server, &series.channel, t[i], end).await;
                let at = format!("{} {source:?} bucket at {}", series.channel, t[i]);
                assert_eq!(count[i], want.count, "count, {at}");
                assert_eq!(min[i], want.min, "min, {at}");
                assert_eq!(max[i], want.max, "max, {at}");
                match (avg[i], want.mean) {
                    (Some(a), Some(b)) => assert!(
                        (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                        "avg {a} vs {b}, {at}"
                    ),
                    (a, b) => assert_eq!(a, b, "avg, {at}"),
                }
            }
        }
    }

    // The extreme figures, spelled out.
    let answer = history(&server, &channels[2..], m, m + MINUTE, 1).await;
    let avg_of = |i: usize| match &answer.series[i].data {
        SeriesData::Buckets { avg, count, .. } => (avg[0], count[0]),
        other => panic!("buckets expected: {other:?}"),
    };
    assert_eq!(avg_of(0), (Some(HUGE), 3), "X1: three of 1.797e308");
    assert_eq!(avg_of(1), (Some(-HUGE), 2), "X2");
    assert_eq!(avg_of(2), (Some(0.0), 2), "X3: +1.797e308 and -1.797e308");
    assert_eq!(
        avg_of(3),
        (Some(f64::MAX), 2),
        "X4: the largest double twice"
    );
    let hour = history(&server, &["X1/rx_level"], t0, t0 + HOUR, 1).await;
    let SeriesData::Buckets { avg, count, .. } = &hour.series[0].data else {
        panic!("buckets: {hour:?}");
    };
    assert_eq!(count[0], 4);
    let mean = 0.75 * HUGE + 0.25;
    assert!(
        (avg[0].unwrap() - mean).abs() <= 1e-12 * mean,
        "{avg:?} vs {mean}"
    );

    // Bucketed exports answer whole, every channel.
    for resolution in ["1m", "1h"] {
        let url = server.url(&format!(
            "/api/export.csv?channels=*&from={t0}&to={}&resolution={resolution}",
            t0 + 2 * HOUR
        ));
        let response = server.get(url).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response
            .text()
            .await
            .expect("the export ends with its last chunk");
        let mut rows = csv::Reader::from_reader(body.as_bytes());
        let mut counted = std::collections::HashMap::<String, i64>::new();
        let mut x1_avg = None;
        for row in rows.records() {
            let row = row.expect("a CSV row");
            let channel = row[2].to_owned();
            let count: i64 = row[8].parse().unwrap();
            *counted.entry(channel.clone()).or_default() += count;
            if channel == "X1/rx_level"
                && (resolution == "1m")
                && row[0].starts_with("2026-11-20T10:30")
            {
                x1_avg = Some(row[7].parse::<f64>().unwrap());
            }
        }
        for (channel, _, _) in &readings {
            let want = readings.iter().filter(|(c, _, _)| c == channel).count() as i64;
            assert_eq!(
                counted.get(*channel),
                Some(&want),
                "{resolution}: {channel}"
            );
        }
        if resolution == "1m" {
            assert_eq!(x1_avg, Some(HUGE), "X1's minute in the export");
        }
    }
}

async fn history(
    server: &TestServer,
    channels: &[&str],
    from: i64,
    to: i64,
    points: u32,
) -> History {
    let url = server.url(&format!(
        "/api/history?channels={}&from={from}&to={to}&points={points}",
        channels.join(",")
    ));
    let response = server.get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A bucket's figures from the raw rows, the mean computed in numeric.
struct Expected {
    count: u64,
    min: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
}

async fn expected(server: &TestServer, channel: &str, from: i64, to: i64) -> Expected {
    let (count, min, max, mean): (i64, Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT count(*), min(value), max(value), avg(value::text::numeric)::float8
         FROM readings
         WHERE channel_id = (SELECT id FROM channels WHERE name = $1)
           AND ts >= $2 AND ts < $3",
    )
    .bind(channel)
    .bind(DateTime::from_timestamp_millis(from).unwrap())
    .bind(DateTime::from_timestamp_millis(to).unwrap())
    .fetch_one(&server.pool)
    .await
    .unwrap();
    Expected {
        count: count as u64,
        min,
        max,
        mean,
    }
}

/// Finite doubles, weighted towards what breaks arithmetic: the extremes,
/// the overflow-free path's threshold, subnormals, zeros of both signs.
fn finite_reading() -> impl Strategy<Value = f64> {
    use proptest::num::f64 as f;
    prop_oneof![
        4 => -1e3..1e3f64,
        2 => f::POSITIVE | f::NEGATIVE | f::NORMAL | f::SUBNORMAL | f::ZERO,
        2 => prop::sample::select(vec![
            f64::MAX, -f64::MAX, HUGE, -HUGE, 1e290, -1e290,
            1.0000000000000002e290, -1.0000000000000002e290,
            1e300, f64::MIN_POSITIVE, -f64::MIN_POSITIVE, 5e-324, -5e-324, 0.0, -0.0,
        ]),
    ]
}

/// Readings (milliseconds into a three-hour span, value), distinct times,
/// most of them in the first few minutes, so that extremes share minutes.
fn readings() -> impl Strategy<Value = Vec<(i64, f64)>> {
    let minute = prop_oneof![3 => 0..4i64, 1 => 0..180i64];
    prop::collection::vec((minute, 0..MINUTE, finite_reading()), 1..60).prop_map(|v| {
        let mut v: Vec<(i64, f64)> = v.into_iter().map(|(m, t, x)| (m * MINUTE + t, x)).collect();
        v.sort_by_key(|&(t, _)| t);
        v.dedup_by_key(|&mut (t, _)| t);
        v
    })
}

/// 2^-100 and 2^100: the scaled range where no sum of doubles overflows.
const DOWN: f64 = 7.888609052210118e-31;
const UP: f64 = 1.2676506002282294e30;

/// A bucket's exact figures, its sum in the scaled range (compensated, so
/// within an ulp of the true sum) with the error a floating-point sum of
/// these values may have.
#[derive(Debug)]
struct Reference {
    count: i64,
    min: f64,
    max: f64,
    first: f64,
    last: f64,
    scaled_sum: f64,
    scaled_slack: f64,
}

fn reference(values: &[f64]) -> Reference {
    // Neumaier's compensated sum of the scaled values.
    let (mut sum, mut carry, mut magnitude) = (0.0f64, 0.0f64, 0.0f64);
    for &v in values {
        let x = v * DOWN;
        let t = sum + x;
        carry += if sum.abs() >= x.abs() {
            (sum - t) + x
        } else {
            (x - t) + sum
        };
        sum = t;
        magnitude += x.abs();
    }
    let n = values.len() as f64;
    Reference {
        count: values.len() as i64,
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        first: values[0],
        last: values[values.len() - 1],
        scaled_sum: sum + carry,
        // A sum of n doubles errs by at most (n - 1) eps times the sum of
        // magnitudes; the scaling loses at most one subnormal step each.
        scaled_slack: (n + 3.0) * f64::EPSILON * magnitude
            + (n + 1.0) * 5e-324
            + f64::EPSILON * (sum + carry).abs(),
    }
}

/// `sum` (as stored) and `avg` (as `rollup_avg` answers) agree with the
/// reference: a finite sum within the slack, an infinite one only where
/// the true sum is beyond the double range; the mean always finite and
/// within the slack over count.
fn check_sum_and_mean(what: &str, sum: f64, avg: Option<f64>, r: &Reference, may_be_lost: bool) {
    let edge = f64::MAX * DOWN;
    if sum.is_finite() {
        assert!(
            (sum * DOWN - r.scaled_sum).abs() <= r.scaled_slack,
            "{what}: sum {sum:e} vs {:e} (slack {:e})",
            r.scaled_sum * UP,
            r.scaled_slack * UP
        );
    } else if sum.is_nan() {
        assert!(may_be_lost, "{what}: NaN sum from finite readings {r:?}");
    } else {
        assert!(
            may_be_lost
                || (sum.signum() == r.scaled_sum.signum()
                    && r.scaled_sum.abs() >= edge - r.scaled_slack),
            "{what}: sum {sum} but the true sum is {:e}",
            r.scaled_sum * UP
        );
    }
    let avg = avg.unwrap_or_else(|| panic!("{what}: no average"));
    assert!(avg.is_finite(), "{what}: average {avg}");
    let n = r.count as f64;
    assert!(
        (avg * DOWN - r.scaled_sum / n).abs()
            <= r.scaled_slack / n + f64::EPSILON * avg.abs() * DOWN,
        "{what}: average {avg:e} vs {:e}",
        r.scaled_sum / n * UP
    );
}

/// One rollup row with `rollup_avg` over its bucket.
type Row = (DateTime<Utc>, f64, f64, f64, i64, f64, f64, Option<f64>);

async fn rows(pool: &sqlx::PgPool, relation: &str, channel: i32, width: &str) -> Vec<Row> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT bucket, min, max, sum, count, first, last,
                rollup_avg(sum, count, channel_id, bucket, bucket + interval '{width}')
         FROM {relation} WHERE channel_id = $1 ORDER BY bucket"
    )))
    .bind(channel)
    .fetch_all(pool)
    .await
    .expect("reading rollup rows")
}

fn check_rows(what: &str, got: &[Row], readings: &[(i64, f64)], t0: i64, width: i64) {
    let mut buckets: Vec<(i64, Vec<f64>)> = Vec::new();
    for &(t, v) in readings {
        let b = (t0 + t).div_euclid(width) * width;
        match buckets.last_mut() {
            Some((last, values)) if *last == b => values.push(v),
            _ => buckets.push((b, vec![v])),
        }
    }
    assert_eq!(got.len(), buckets.len(), "{what}: buckets");
    for (row, (b, values)) in got.iter().zip(&buckets) {
        let r = reference(values);
        let at = format!("{what} at {b}");
        let &(bucket, min, max, sum, count, first, last, avg) = row;
        assert_eq!(bucket.timestamp_millis(), *b, "{at}");
        assert_eq!(
            (count, min, max, first, last),
            (r.count, r.min, r.max, r.first, r.last),
            "{at}"
        );
        // An hour's sum adds its minutes' sums: one beyond the range is
        // ±Infinity, and the hour then cannot be finite.
        let saturated_minute = width > MINUTE && {
            let mut minutes: Vec<(i64, Vec<f64>)> = Vec::new();
            for &(t, v) in readings
                .iter()
                .filter(|&&(t, _)| (t0 + t).div_euclid(width) * width == *b)
            {
                let mb = (t0 + t).div_euclid(MINUTE);
                match minutes.last_mut() {
                    Some((last, vs)) if *last == mb => vs.push(v),
                    _ => minutes.push((mb, vec![v])),
                }
            }
            minutes
                .iter()
                .any(|(_, vs)| reference(vs).scaled_sum.abs() >= f64::MAX * DOWN * (1.0 - 1e-12))
        };
        check_sum_and_mean(&at, sum, avg, &r, saturated_minute);
    }
}

/// Any finite readings, late ones into rolled-up minutes included: the
/// exact view before the job, the minute and hour tables after it, and the
/// answers' averages all agree with exact arithmetic, and no pass fails.
#[test]
fn rollups_hold_for_any_finite_readings() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let pool = runtime.block_on(fresh_database());
    let config = trackside::config::HistoryConfig::default();
    let t0 = ms("2026-11-20T09:00:00Z");
    let next_channel = AtomicI32::new(1);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    let result = runner.run(&(readings(), readings()), |(first, late)| {
        let channel = next_channel.fetch_add(1, Ordering::Relaxed);
        runtime.block_on(async {
            insert(&pool, channel, t0, &first).await;
            let pass = trackside::store::rollup::refresh_dirty(&pool, &config, 100_000)
                .await
                .expect("a pass");
            assert_eq!(pass.failed, 0);
            // Late readings into rolled-up minutes: the view answers them
            // from raw rows before the job, the tables after it.
            insert(&pool, channel, t0, &late).await;
            let mut all: Vec<(i64, f64)> = first.clone();
            for &(t, v) in &late {
                if !first.iter().any(|&(f, _)| f == t) {
                    all.push((t, v));
                }
            }
            all.sort_by_key(|&(t, _)| t);
            check_rows(
                "history_1m, dirty",
                &rows(&pool, "history_1m", channel, "1 minute").await,
                &all,
                t0,
                MINUTE,
            );
            check_rows(
                "history_1h, dirty",
                &rows(&pool, "history_1h", channel, "1 hour").await,
                &all,
                t0,
                HOUR,
            );
            let pass = trackside::store::rollup::refresh_dirty(&pool, &config, 100_000)
                .await
                .expect("a pass");
            assert_eq!(pass.failed, 0);
            check_rows(
                "readings_1m",
                &rows(&pool, "readings_1m", channel, "1 minute").await,
                &all,
                t0,
                MINUTE,
            );
            check_rows(
                "readings_1h",
                &rows(&pool, "readings_1h", channel, "1 hour").await,
                &all,
                t0,
                HOUR,
            );
        });
        Ok(())
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}

async fn insert(pool: &sqlx::PgPool, channel: i32, t0: i64, readings: &[(i64, f64)]) {
    let ts: Vec<DateTime<Utc>> = readings
        .iter()
        .map(|&(t, _)| DateTime::from_timestamp_millis(t0 + t).unwrap())
        .collect();
    let values: Vec<f64> = readings.iter().map(|&(_, v)| v).collect();
    sqlx::query(
        "INSERT INTO readings (channel_id, ts, value)
         SELECT $1, * FROM unnest($2::timestamptz[], $3::double precision[])
         ON CONFLICT DO NOTHING",
    )
    .bind(channel)
    .bind(&ts)
    .bind(&values)
    .execute(pool)
    .await
    .expect("inserting readings");
}
