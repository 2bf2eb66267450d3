//! Rollups with any finite reading: the extremes of the double range next
//! to ordinary channels, through the whole path (MQTT, the writer, the
//! server's own rollup job, history and export over HTTP), and a property
//! test of the rollup arithmetic against exact sums.

use std::sync::atomic::{AtomicI32, Ordering};

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use trackside_wire::{History, HistorySource, SeriesData};

use chrono::TimeZone as _;
use trackside::history::BucketQuery;
use trackside::store::rollup::Tier;

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

/// Readings (milliseconds into a day, value), distinct times, most of
/// them in the first few minutes, so that extremes share minutes, and
/// some across the day, so that every tier has several buckets.
fn readings() -> impl Strategy<Value = Vec<(i64, f64)>> {
    let minute = prop_oneof![3 => 0..4i64, 1 => 0..180i64, 1 => 0..1440i64];
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
        // A sum of n doubles, in any order and grouping, errs by at most
        // (n - 1) eps times the sum of magnitudes; each tier's combination
        // of its two parts rounds twice more; the scaling loses at most one
        // subnormal step per value.
        scaled_slack: (n + 12.0) * f64::EPSILON * magnitude
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

/// The zone of the six-hour tier in the property test: it changes to
/// summer time inside the tested day.
const ZONE: &str = "Europe/London";

/// The start (Unix ms) of the bucket of `tier` holding `t`: UTC for every
/// tier but six hours, which is on [`ZONE`]'s wall clock and takes whole
/// hours by their start.
fn bucket_of(tier: Tier, t: i64) -> i64 {
    let width = tier.width_ms();
    if tier != Tier::SixHours {
        return t.div_euclid(width) * width;
    }
    let zone: chrono_tz::Tz = ZONE.parse().unwrap();
    let hour = DateTime::from_timestamp_millis(t.div_euclid(HOUR) * HOUR).unwrap();
    let local = hour.with_timezone(&zone).naive_local();
    let origin = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let offset = (local - origin).num_milliseconds().div_euclid(width) * width;
    let start = origin + chrono::TimeDelta::milliseconds(offset);
    zone.from_local_datetime(&start)
        .earliest()
        .expect("bucket starts are not in a gap")
        .timestamp_millis()
}

async fn rows(pool: &sqlx::PgPool, relation: &str, channel: i32, tier: Tier) -> Vec<Row> {
    let end = match tier {
        Tier::SixHours => format!("rollup_6h_end(bucket, '{ZONE}')"),
        other => format!("bucket + {} * interval '1 millisecond'", other.width_ms()),
    };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT bucket, min, max, sum, count, first, last,
                rollup_avg(sum, count, channel_id, bucket, {end})
         FROM {relation} WHERE channel_id = $1 ORDER BY bucket"
    )))
    .bind(channel)
    .fetch_all(pool)
    .await
    .expect("reading rollup rows")
}

fn check_rows(what: &str, got: &[Row], readings: &[(i64, f64)], t0: i64, tier: Tier) {
    let mut buckets: Vec<(i64, Vec<f64>)> = Vec::new();
    for &(t, v) in readings {
        let b = bucket_of(tier, t0 + t);
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
        // A coarser bucket adds the sums of a finer tier: one beyond the
        // range is ±Infinity there, and every bucket holding it is ±Infinity
        // or NaN, whatever its own true sum (its average stays exact).
        let mine: Vec<(i64, f64)> = readings
            .iter()
            .copied()
            .filter(|&(t, _)| bucket_of(tier, t0 + t) == *b)
            .collect();
        let saturated_minute = Tier::ALL
            .iter()
            .take_while(|&&finer| finer != tier)
            .any(|&finer| {
                let mut parts: Vec<(i64, Vec<f64>)> = Vec::new();
                for &(t, v) in &mine {
                    let part = bucket_of(finer, t0 + t);
                    match parts.last_mut() {
                        Some((last, vs)) if *last == part => vs.push(v),
                        _ => parts.push((part, vec![v])),
                    }
                }
                parts.iter().any(|(_, vs)| {
                    reference(vs).scaled_sum.abs() >= f64::MAX * DOWN * (1.0 - 1e-12)
                })
            });
        check_sum_and_mean(&at, sum, avg, &r, saturated_minute);
    }
}

/// Every tier's exact view and table against the readings.
async fn check_tiers(pool: &sqlx::PgPool, channel: i32, all: &[(i64, f64)], t0: i64, when: &str) {
    for tier in Tier::ALL {
        for relation in [tier.view(), tier.table()] {
            // Before the job the tables lag; only the views must be exact.
            if when == "dirty" && relation == tier.table() {
                continue;
            }
            let got = rows(pool, relation, channel, tier).await;
            check_rows(&format!("{relation}, {when}"), &got, all, t0, tier);
        }
    }
}

/// Any finite readings, late ones into rolled-up minutes included: every
/// tier's exact view before the job, every tier's table and view after
/// it, and the answers' averages agree with exact arithmetic, and no pass
/// fails. The readings span the day the clocks go forward in the six-hour
/// tier's zone.
#[test]
fn rollups_hold_for_any_finite_readings() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let pool = runtime.block_on(async {
        let pool = fresh_database().await;
        let mut conn = pool.acquire().await.unwrap();
        trackside::store::rollup::plain::set_zone(&mut conn, ZONE)
            .await
            .expect("setting the six-hour tier's zone");
        drop(conn);
        pool
    });
    let config = trackside::config::HistoryConfig::default();
    let t0 = ms("2026-03-28T20:00:00Z");
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
            // Late readings into rolled-up minutes: the views answer them
            // from raw rows before the job, the tables after it.
            insert(&pool, channel, t0, &late).await;
            let mut all: Vec<(i64, f64)> = first.clone();
            for &(t, v) in &late {
                if !first.iter().any(|&(f, _)| f == t) {
                    all.push((t, v));
                }
            }
            all.sort_by_key(|&(t, _)| t);
            check_tiers(&pool, channel, &all, t0, "dirty").await;
            let pass = trackside::store::rollup::refresh_dirty(&pool, &config, 100_000)
                .await
                .expect("a pass");
            assert_eq!(pass.failed, 0);
            check_tiers(&pool, channel, &all, t0, "rolled up").await;
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

/// One bucket as a bucket query returns it: channel, start, min, max, avg,
/// count, first, last, newest.
type BucketRow = (
    i32,
    DateTime<Utc>,
    f64,
    f64,
    Option<f64>,
    i64,
    f64,
    f64,
    DateTime<Utc>,
);

/// Runs a bucket query as the history API does, over `[lo, hi)` (a whole
/// number of `width` buckets from `lo`).
async fn buckets(
    pool: &sqlx::PgPool,
    query: BucketQuery,
    ids: &[i32],
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
    width: i64,
) -> Vec<BucketRow> {
    let mut conn = pool.acquire().await.unwrap();
    let tier = query.tier().expect("a rollup query");
    let split = trackside::store::rollup::dirty_split(&mut conn, tier, ids, lo, hi, ZONE)
        .await
        .unwrap();
    let mut statement = sqlx::query_as(query.sql())
        .bind(ids)
        .bind(lo)
        .bind(hi)
        .bind(width)
        .bind(split);
    if query.takes_zone() {
        statement = statement.bind(ZONE);
    }
    let mut rows: Vec<BucketRow> = statement.fetch_all(&mut *conn).await.unwrap();
    rows.sort_by_key(|r| (r.0, r.1));
    rows
}

/// Every tier that a bucket width is a whole number of buckets of answers
/// it alike: the 1-, 5- and 15-minute and hour tiers for UTC widths, the
/// hour and six-hour tiers for wall-clock ones (across a daylight-saving
/// change), with the rollups settled and with late readings marked dirty
/// in the middle of the range.
#[tokio::test]
async fn every_tier_that_covers_a_width_answers_alike() {
    let pool = fresh_database().await;
    let mut conn = pool.acquire().await.unwrap();
    trackside::store::rollup::plain::set_zone(&mut conn, ZONE)
        .await
        .unwrap();
    drop(conn);
    let config = trackside::config::HistoryConfig::default();
    // Three days around the spring change, 1 and 2 with gaps and jitter.
    let t0 = ms("2026-03-27T22:10:00Z");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for channel in [1, 2] {
        let mut readings = Vec::new();
        let mut t = 0;
        while t < 3 * 24 * HOUR {
            let in_gap = (20 * HOUR..23 * HOUR).contains(&t) && channel == 2;
            if !in_gap {
                readings.push((t, (next() % 10_000) as f64 / 100.0 - 50.0));
            }
            t += 20_000 + (next() % 50_000) as i64;
        }
        insert(&pool, channel, t0, &readings).await;
    }
    trackside::store::rollup::settle(&pool, &config, trackside::store::rollup::StoragePath::Plain)
        .await
        .unwrap();

    let lo_utc =
        |width: i64| DateTime::from_timestamp_millis(t0.div_euclid(width) * width).unwrap();
    let hi = DateTime::from_timestamp_millis(t0 + 3 * 24 * HOUR).unwrap();
    let check = |state: &'static str| {
        let pool = &pool;
        async move {
            use BucketQuery as Q;
            let utc = [
                (MINUTE, vec![Q::Minutes, Q::MinuteRows]),
                (
                    5 * MINUTE,
                    vec![Q::Minutes, Q::FiveMinutes, Q::FiveMinuteRows],
                ),
                (
                    15 * MINUTE,
                    vec![
                        Q::Minutes,
                        Q::FiveMinutes,
                        Q::QuarterHours,
                        Q::QuarterHourRows,
                    ],
                ),
                (
                    30 * MINUTE,
                    vec![Q::Minutes, Q::FiveMinutes, Q::QuarterHours],
                ),
                (
                    HOUR,
                    vec![
                        Q::Minutes,
                        Q::FiveMinutes,
                        Q::QuarterHours,
                        Q::Hours,
                        Q::HourRows,
                    ],
                ),
            ];
            for (width, queries) in utc {
                let lo = lo_utc(width);
                let hi = lo
                    + chrono::TimeDelta::milliseconds(
                        (hi - lo).num_milliseconds().div_euclid(width) * width,
                    );
                let want = buckets(pool, queries[0], &[1, 2], lo, hi, width).await;
                assert!(
                    want.len() > 100,
                    "{state}: {width} ms: {} buckets",
                    want.len()
                );
                for &query in &queries[1..] {
                    let got = buckets(pool, query, &[1, 2], lo, hi, width).await;
                    same(
                        &format!("{state}: {width} ms, {query:?} against {:?}", queries[0]),
                        &got,
                        &want,
                    );
                }
            }
            for width in [6 * HOUR, 12 * HOUR, 24 * HOUR] {
                // Wall-clock bins: from the local bin holding t0.
                let lo: DateTime<Utc> = sqlx::query_scalar(
                    "SELECT date_bin($2 * interval '1 millisecond', $1 AT TIME ZONE $3,
                                     timestamp '2000-01-01') AT TIME ZONE $3",
                )
                .bind(DateTime::from_timestamp_millis(t0).unwrap())
                .bind(width)
                .bind(ZONE)
                .fetch_one(pool)
                .await
                .unwrap();
                let want = buckets(pool, Q::HoursWallClock, &[1, 2], lo, hi, width).await;
                let got = buckets(pool, Q::SixHours, &[1, 2], lo, hi, width).await;
                assert!(want.len() >= 6, "{state}: {width} ms");
                same(
                    &format!("{state}: {width} ms on the wall clock"),
                    &got,
                    &want,
                );
            }
        }
    };
    check("settled").await;
    // Late readings in the middle of the range: every query reads the
    // tier up to the dirty bucket and minutes from there.
    let late: Vec<(i64, f64)> = (0..40)
        .map(|i| (30 * HOUR + i * 61_000 + 5, 99.5))
        .collect();
    insert(&pool, 1, t0, &late).await;
    assert!(dirty_marks(&pool).await > 0);
    check("dirty").await;
}

fn same(what: &str, got: &[BucketRow], want: &[BucketRow]) {
    assert_eq!(got.len(), want.len(), "{what}: buckets");
    for (g, w) in got.iter().zip(want) {
        let at = format!("{what}, channel {} at {}", w.0, w.1);
        assert_eq!(
            (g.0, g.1, g.2, g.3, g.5, g.6, g.7, g.8),
            (w.0, w.1, w.2, w.3, w.5, w.6, w.7, w.8),
            "{at}"
        );
        match (g.4, w.4) {
            (Some(a), Some(b)) => assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "avg {a} vs {b}, {at}"
            ),
            (a, b) => assert_eq!(a, b, "avg, {at}"),
        }
    }
}
