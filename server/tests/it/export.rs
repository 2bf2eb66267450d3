//! `GET /api/export.csv` over real HTTP against a real PostgreSQL: exports
//! are parsed back with an independent CSV parser and compared with what
//! was stored, value for value and microsecond for microsecond.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use trackside_wire::ApiError;

use crate::harness::{TestServer, eventually, rolled_up, test_config};

/// 2026-11-28T00:00:00Z in microseconds.
const DAY_START: i64 = 1_795_824_000_000_000;
const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 3_600_000_000;

async fn add_channel(pool: &PgPool, circuit: &str, parameter: &str, unit: Option<&str>) -> i32 {
    sqlx::query("INSERT INTO gateways (id) VALUES ('gw-export') ON CONFLICT DO NOTHING")
        .execute(pool)
        .await
        .expect("a gateway");
    sqlx::query_scalar(
        "INSERT INTO channels (name, circuit, parameter, unit, gateway_id)
         VALUES ($1 || '/' || $2, $1, $2, $3, 'gw-export') RETURNING id",
    )
    .bind(circuit)
    .bind(parameter)
    .bind(unit)
    .fetch_one(pool)
    .await
    .expect("a channel")
}

/// Stores readings as the store writer does (the rollup trigger marks
/// their minutes dirty).
async fn insert(pool: &PgPool, rows: &[(i32, i64, f64)]) {
    for chunk in rows.chunks(10_000) {
        let ids: Vec<i32> = chunk.iter().map(|r| r.0).collect();
        let ts: Vec<DateTime<Utc>> = chunk
            .iter()
            .map(|r| DateTime::from_timestamp_micros(r.1).expect("a time"))
            .collect();
        let values: Vec<f64> = chunk.iter().map(|r| r.2).collect();
        sqlx::query(
            "INSERT INTO readings (channel_id, ts, value)
             SELECT * FROM unnest($1::integer[], $2::timestamptz[], $3::float8[])",
        )
        .bind(ids)
        .bind(ts)
        .bind(values)
        .execute(pool)
        .await
        .expect("inserting readings");
    }
}

/// The export's body, after checking it is a whole CSV download.
async fn export(server: &TestServer, query: &str) -> String {
    let response = server
        .get(server.url(&format!("/api/export.csv?{query}")))
        .await
        .expect("GET /api/export.csv");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.expect("a complete body");
    assert_eq!(status, 200, "{query}: {body}");
    assert_eq!(
        headers[reqwest::header::CONTENT_TYPE],
        "text/csv; charset=utf-8; header=present"
    );
    let disposition = headers[reqwest::header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"trackside_")
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    body
}

fn records(body: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::ReaderBuilder::new().from_reader(body.as_bytes());
    let header = reader
        .headers()
        .expect("a header")
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| {
            r.expect("an RFC 4180 record")
                .iter()
                .map(str::to_owned)
                .collect()
        })
        .collect();
    (header, rows)
}

fn micros(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?}: {e}"))
        .timestamp_micros()
}

fn number(text: &str) -> f64 {
    text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

#[tokio::test]
async fn raw_exports_give_back_every_reading_exactly() {
    let server = TestServer::start().await;
    let pool = &server.pool;
    let names = [
        ("T1", "relay_voltage", Some("V")),
        ("T1", "relay_state", None),
        ("T2", "feed_current", Some("A")),
    ];
    let mut ids = Vec::new();
    for (circuit, parameter, unit) in names {
        ids.push(add_channel(pool, circuit, parameter, unit).await);
    }
    // Instants with microseconds, shared by some channels and not others;
    // values with every bit pattern a finite double can have.
    let mut rng = StdRng::seed_from_u64(5);
    let mut stored: Vec<(i32, i64, f64)> = Vec::new();
    let mut t = DAY_START + 123;
    for _ in 0..3_000 {
        t += rng.random_range(1..2_000_000);
        for &id in &ids {
            if rng.random_bool(0.6) {
                let value = loop {
                    let v = f64::from_bits(rng.random::<u64>());
                    if v.is_finite() {
                        break v;
                    }
                };
                stored.push((id, t, value));
            }
        }
    }
    insert(pool, &stored).await;
    stored.sort_by_key(|&(id, ts, _)| (ts, id));
    let (from, to) = ("2026-11-28T00:00:00Z", "2026-11-29T00:00:00Z");

    let body = export(
        &server,
        &format!("channels=T1/*,T2/feed_current&from={from}&to={to}&tz=UTC"),
    )
    .await;
    assert!(body.ends_with("\r\n"), "RFC 4180 lines end in CRLF");
    let (header, rows) = records(&body);
    assert_eq!(
        header,
        [
            "time_utc",
            "time_local",
            "channel",
            "circuit",
            "parameter",
            "value",
            "unit"
        ]
    );
    assert_eq!(rows.len(), stored.len());
    let by_id: HashMap<i32, (&str, &str, Option<&str>)> =
        ids.iter().zip(names).map(|(&id, n)| (id, n)).collect();
    for (row, &(id, ts, value)) in rows.iter().zip(&stored) {
        let (circuit, parameter, unit) = by_id[&id];
        assert_eq!(micros(&row[0]), ts, "{row:?}");
        assert_eq!(micros(&row[1]), ts, "{row:?}");
        assert_eq!(row[2], format!("{circuit}/{parameter}"));
        assert_eq!((row[3].as_str(), row[4].as_str()), (circuit, parameter));
        assert_eq!(number(&row[5]).to_bits(), value.to_bits(), "{row:?}");
        assert_eq!(row[6], unit.unwrap_or(""));
    }

    // Wide: one line per instant, a column per channel in the order the
    // patterns name them (T1's channels by name, then T2).
    let body = export(
        &server,
        &format!("channels=T1/*,T2/feed_current&from={from}&to={to}&layout=wide"),
    )
    .await;
    let (header, rows) = records(&body);
    assert_eq!(
        header,
        [
            "time_utc",
            "time_local",
            "T1/relay_state",
            "T1/relay_voltage",
            "T2/feed_current"
        ]
    );
    let columns = [ids[1], ids[0], ids[2]];
    let mut expected: BTreeMap<i64, [Option<f64>; 3]> = BTreeMap::new();
    for &(id, ts, value) in &stored {
        let column = columns.iter().position(|&c| c == id).unwrap();
        expected.entry(ts).or_default()[column] = Some(value);
    }
    assert_eq!(rows.len(), expected.len());
    for (row, (ts, cells)) in rows.iter().zip(&expected) {
        assert_eq!(micros(&row[0]), *ts);
        // The yard's zone (London) in November is UTC.
        assert!(row[1].ends_with("+00:00"), "{row:?}");
        for (text, cell) in row[2..].iter().zip(cells) {
            match cell {
                Some(v) => assert_eq!(number(text).to_bits(), v.to_bits(), "{row:?}"),
                None => assert_eq!(text, "", "an empty cell where a channel has no reading"),
            }
        }
    }
}

/// Figures of one bucket: min, max, avg, count.
type Figures = (f64, f64, f64, i64);

fn buckets(stored: &[(i32, i64, f64)], width: i64) -> BTreeMap<(i64, i32), Figures> {
    let mut sums: BTreeMap<(i64, i32), (f64, f64, f64, i64)> = BTreeMap::new();
    for &(id, ts, v) in stored {
        let key = (ts.div_euclid(width) * width, id);
        let e = sums.entry(key).or_insert((v, v, 0.0, 0));
        e.0 = e.0.min(v);
        e.1 = e.1.max(v);
        e.2 += v;
        e.3 += 1;
    }
    sums.into_iter()
        .map(|(k, (lo, hi, sum, n))| (k, (lo, hi, sum / n as f64, n)))
        .collect()
}

#[tokio::test]
async fn bucketed_exports_equal_the_raw_rows_even_while_the_rollup_lags() {
    // The server's own rollup job runs at start and then once a minute,
    // so the test decides which minutes are rolled up.
    let mut config = test_config();
    config.history.rollup_interval_ms = 60_000;
    let server = TestServer::start_with(config).await;
    let pool = &server.pool;
    let a = add_channel(pool, "T7", "relay_voltage", Some("V")).await;
    let b = add_channel(pool, "T8", "relay_voltage", Some("V")).await;
    // Values on a 1/1024 grid keep every sum exact in any order, so the
    // rollup's figures and these must agree to the bit.
    let mut rng = StdRng::seed_from_u64(7);
    let mut stored = Vec::new();
    for i in 0..4 * 360 {
        let ts = DAY_START + i * 10_000_000 + rng.random_range(0..1_000_000);
        stored.push((a, ts, f64::from(rng.random_range(-4_000..4_000)) / 1024.0));
        if i % 3 != 0 && !(500..700).contains(&i) {
            stored.push((b, ts + 7, f64::from(rng.random_range(0..9_000)) / 1024.0));
        }
    }
    let (early, late): (Vec<_>, Vec<_>) = stored
        .iter()
        .partition(|r| r.1 < DAY_START + 2 * HOUR + 30 * MINUTE);
    insert(pool, &early).await;
    rolled_up(&server).await;
    // The last 90 minutes stay dirty: the export must read them raw.
    insert(pool, &late).await;
    let (from, to) = ("2026-11-28T00:00:30Z", "2026-11-28T03:59:00Z");
    let (from_us, to_us) = (micros(from), micros(to));

    for (resolution, width) in [("1m", MINUTE), ("1h", HOUR)] {
        let expected: Vec<((i64, i32), Figures)> = buckets(&stored, width)
            .into_iter()
            .filter(|((bucket, _), _)| *bucket + width > from_us && *bucket < to_us)
            .collect();
        let body = export(
            &server,
            &format!("channels=T7/*,T8/*&from={from}&to={to}&resolution={resolution}"),
        )
        .await;
        let (header, rows) = records(&body);
        assert_eq!(
            header,
            [
                "time_utc",
                "time_local",
                "channel",
                "circuit",
                "parameter",
                "min",
                "max",
                "avg",
                "count",
                "unit"
            ]
        );
        assert_eq!(rows.len(), expected.len(), "{resolution}");
        for (row, ((bucket, id), (lo, hi, avg, n))) in rows.iter().zip(&expected) {
            assert_eq!(micros(&row[0]), *bucket, "{resolution} {row:?}");
            let name = if *id == a {
                "T7/relay_voltage"
            } else {
                "T8/relay_voltage"
            };
            assert_eq!(row[2], name);
            let figures = (
                number(&row[5]),
                number(&row[6]),
                number(&row[7]),
                row[8].parse::<i64>(),
            );
            assert_eq!(figures, (*lo, *hi, *avg, Ok(*n)), "{resolution} {row:?}");
            assert_eq!(row[9], "V");
        }

        // Wide, one figure per cell; T8 has no minutes in its silence.
        for (stat, pick) in [("max", 1), ("count", 3)] {
            let body = export(
                &server,
                &format!(
                    "channels=T7/*,T8/*&from={from}&to={to}&resolution={resolution}\
                     &layout=wide&stat={stat}"
                ),
            )
            .await;
            let (header, rows) = records(&body);
            assert_eq!(
                header,
                [
                    "time_utc",
                    "time_local",
                    "T7/relay_voltage",
                    "T8/relay_voltage"
                ]
            );
            let mut wide: BTreeMap<i64, [String; 2]> = BTreeMap::new();
            for ((bucket, id), f) in &expected {
                let cell = if pick == 1 {
                    f.1.to_string()
                } else {
                    f.3.to_string()
                };
                wide.entry(*bucket).or_default()[usize::from(*id != a)] = cell;
            }
            assert!(wide.values().any(|c| c[1].is_empty()) == (resolution == "1m"));
            assert_eq!(rows.len(), wide.len());
            for (row, (bucket, cells)) in rows.iter().zip(&wide) {
                assert_eq!(micros(&row[0]), *bucket);
                for (text, cell) in row[2..].iter().zip(cells) {
                    if cell.is_empty() {
                        assert_eq!(text, "");
                    } else {
                        assert_eq!(number(text), number(cell), "{stat} {row:?}");
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn local_time_follows_the_clock_change() {
    let server = TestServer::start().await;
    let id = add_channel(&server.pool, "T3", "relay_state", None).await;
    // Europe/London goes back from 02:00 BST to 01:00 GMT at 01:00 UTC on
    // 2026-10-25, and forward at 01:00 UTC on 2026-03-29.
    let at = |s: &str| micros(s);
    let instants = [
        "2026-03-29T00:59:59.999Z",
        "2026-03-29T01:00:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-25T00:59:59.5Z",
        "2026-10-25T01:00:00Z",
        "2026-10-25T01:30:00.000001Z",
    ];
    let rows: Vec<(i32, i64, f64)> = instants.iter().map(|s| (id, at(s), 1.0)).collect();
    insert(&server.pool, &rows).await;
    let body = export(
        &server,
        "channels=T3/relay_state&from=2026-03-01T00:00:00Z&to=2026-11-01T00:00:00Z",
    )
    .await;
    let (_, rows) = records(&body);
    let local: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        local,
        [
            "2026-03-29T00:59:59.999+00:00",
            "2026-03-29T02:00:00.000+01:00",
            "2026-10-25T01:30:00.000+01:00",
            "2026-10-25T01:59:59.500+01:00",
            "2026-10-25T01:00:00.000+00:00",
            "2026-10-25T01:30:00.000001+00:00",
        ]
    );
    assert_eq!(rows[0][0], "2026-03-29T00:59:59.999Z");
    assert_eq!(rows[0][5], "1", "a whole number is written bare");
    // Another zone on request.
    let body = export(
        &server,
        "channels=T3/*&from=2026-10-25T00:00:00Z&to=2026-10-25T01:00:00Z&tz=America/New_York",
    )
    .await;
    let (_, rows) = records(&body);
    let local: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        local,
        [
            "2026-10-24T20:30:00.000-04:00",
            "2026-10-24T20:59:59.500-04:00"
        ]
    );
}

#[tokio::test]
async fn names_are_quoted_and_formulas_neutralised() {
    let server = TestServer::start().await;
    let pool = &server.pool;
    // The writer only registers plain names, but the table may hold any
    // (an import, a rename): the CSV must be safe whatever it holds.
    let odd = add_channel(
        pool,
        "=HYPERLINK(\"http://x\",\"go\")",
        "level, \"raw\"",
        Some("@unit"),
    )
    .await;
    let dash = add_channel(pool, "-T9", "relay_voltage", Some("+V")).await;
    insert(pool, &[(odd, DAY_START, -2.5), (dash, DAY_START, -0.125)]).await;
    let body = export(
        &server,
        "channels=*&from=2026-11-28T00:00:00Z&to=2026-11-28T01:00:00Z&tz=UTC",
    )
    .await;
    let expected = [
        "time_utc,time_local,channel,circuit,parameter,value,unit",
        "2026-11-28T00:00:00.000Z,2026-11-28T00:00:00.000+00:00,\
         \"'=HYPERLINK(\"\"http://x\"\",\"\"go\"\")/level, \"\"raw\"\"\",\
         \"'=HYPERLINK(\"\"http://x\"\",\"\"go\"\")\",\"level, \"\"raw\"\"\",-2.5,'@unit",
        "2026-11-28T00:00:00.000Z,2026-11-28T00:00:00.000+00:00,\
         '-T9/relay_voltage,'-T9,relay_voltage,-0.125,'+V",
        "",
    ];
    // Channels at one instant come in id order; `odd` was added first.
    assert_eq!(body, expected.join("\r\n"));
    let (_, rows) = records(&body);
    assert_eq!(
        rows[0][2],
        "'=HYPERLINK(\"http://x\",\"go\")/level, \"raw\""
    );
    assert_eq!(rows[0][4], "level, \"raw\"");
    assert_eq!(rows[1][5], "-0.125", "numbers are never neutralised");

    let body = export(
        &server,
        "channels=-T9/*,*HYPER*&from=2026-11-28T00:00:00Z&to=2026-11-28T01:00:00Z&layout=wide",
    )
    .await;
    let first = body.lines().next().unwrap();
    assert_eq!(
        first,
        "time_utc,time_local,'-T9/relay_voltage,\"'=HYPERLINK(\"\"http://x\"\",\"\"go\"\")/level, \"\"raw\"\"\""
    );
}

#[tokio::test]
async fn an_empty_range_gives_the_header_alone() {
    let server = TestServer::start().await;
    let id = add_channel(&server.pool, "T4", "relay_voltage", Some("V")).await;
    insert(&server.pool, &[(id, DAY_START, 1.5)]).await;
    let range = "from=2026-11-27T00:00:00Z&to=2026-11-27T23:00:00Z";
    for (query, header) in [
        (
            "",
            "time_utc,time_local,channel,circuit,parameter,value,unit",
        ),
        ("&layout=wide", "time_utc,time_local,T4/relay_voltage"),
        (
            "&resolution=1h",
            "time_utc,time_local,channel,circuit,parameter,min,max,avg,count,unit",
        ),
        (
            "&resolution=1m&layout=wide&stat=min",
            "time_utc,time_local,T4/relay_voltage",
        ),
    ] {
        let body = export(
            &server,
            &format!("channels=T4/relay_voltage&{range}{query}"),
        )
        .await;
        assert_eq!(body, format!("{header}\r\n"), "{query}");
    }
}

#[tokio::test]
async fn bad_parameters_are_refused_before_any_csv() {
    let server = TestServer::start().await;
    add_channel(&server.pool, "T5", "relay_voltage", Some("V")).await;
    let range = "from=2026-11-28T00:00:00Z&to=2026-11-28T01:00:00Z";
    let cases = [
        (format!("channels=&{range}"), "channels is empty"),
        (format!("channels=T5&{range}"), "channel \"T5\""),
        (
            format!("channels=T5/relay_voltage,T6/*&{range}"),
            "no channel matches T6/*",
        ),
        (
            format!("channels=T5/nope&{range}"),
            "no channel matches T5/nope",
        ),
        (format!("channels=T5/%3Dx*&{range}"), "character '='"),
        (
            "channels=T5/*&from=2026-11-28T01:00:00Z&to=2026-11-28T00:00:00Z".into(),
            "from must be before to",
        ),
        (
            "channels=T5/*&from=yesterday&to=1".into(),
            "from=\"yesterday\"",
        ),
        (
            "channels=T5/*&from=0&to=300000000000000".into(),
            "year 10000",
        ),
        (
            format!("channels=T5/*&{range}&resolution=5m"),
            "resolution=\"5m\"",
        ),
        (
            format!("channels=T5/*&{range}&layout=tall"),
            "layout=\"tall\"",
        ),
        (
            format!("channels=T5/*&{range}&tz=Mars/Olympus"),
            "tz=\"Mars/Olympus\"",
        ),
        (format!("channels=T5/*&{range}&stat=max"), "stat applies"),
        (
            format!("channels=T5/*&{range}&resolution=1m&layout=wide&stat=p99"),
            "stat=\"p99\"",
        ),
        (
            format!("channels=T5/*&{range}&points=9"),
            "unknown field `points`",
        ),
        ("channels=T5/*&to=1".into(), "missing field `from`"),
    ];
    for (query, expected) in cases {
        let response = server
            .get(server.url(&format!("/api/export.csv?{query}")))
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: ApiError = response.json().await.expect("a JSON error");
        assert!(
            body.error.contains(expected),
            "{query}: {:?} should mention {expected:?}",
            body.error
        );
    }
}

#[tokio::test]
async fn a_client_that_accepts_gzip_gets_gzip() {
    let server = TestServer::start().await;
    let id = add_channel(&server.pool, "T6", "feed_current", Some("A")).await;
    let rows: Vec<(i32, i64, f64)> = (0..5_000)
        .map(|i| (id, DAY_START + i * 1_000_000, i as f64 / 8.0))
        .collect();
    insert(&server.pool, &rows).await;
    let query = "channels=T6/feed_current&from=2026-11-28T00:00:00Z&to=2026-11-29T00:00:00Z";
    let plain = export(&server, query).await;
    let response = server
        .client()
        .get(server.url(&format!("/api/export.csv?{query}")))
        .header(reqwest::header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_ENCODING],
        "gzip"
    );
    let packed = response.bytes().await.unwrap();
    assert!(
        packed.len() * 4 < plain.len(),
        "{} bytes packed of {}",
        packed.len(),
        plain.len()
    );
    let mut unpacked = String::new();
    flate2::read::GzDecoder::new(&packed[..])
        .read_to_string(&mut unpacked)
        .expect("valid gzip");
    assert_eq!(unpacked, plain);
    assert_eq!(plain.lines().count(), 5_001);
}

#[tokio::test]
async fn rows_stream_from_a_merge_without_a_sort() {
    let server = TestServer::start().await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(add_channel(&server.pool, &format!("T{i}"), "relay_voltage", Some("V")).await);
    }
    let rows: Vec<(i32, i64, f64)> = (0..2_000)
        .flat_map(|i| {
            ids.iter()
                .map(move |&id| (id, DAY_START + i * 1_000_000, 1.0))
        })
        .collect();
    insert(&server.pool, &rows).await;
    sqlx::query("ANALYZE").execute(&server.pool).await.unwrap();
    for resolution in [
        trackside::export::Resolution::Raw,
        trackside::export::Resolution::Minute,
    ] {
        let sql = trackside::export::export_sql(resolution, &ids);
        let mut tx = server.pool.begin().await.unwrap();
        sqlx::query(trackside::export::SESSION_SETTINGS)
            .execute(&mut *tx)
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN {}",
            sql.replace("$1", "'2026-11-28'::timestamptz")
                .replace("$2", "'2026-11-29'::timestamptz")
                .replace("$3", "'2026-11-28 12:00'::timestamptz")
        )))
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        let plan = plan.join("\n");
        // A full sort would read the whole range before the first row; an
        // incremental one sorts the channels of one instant at a time.
        let full_sort = plan.lines().any(|line| {
            line.trim_start()
                .trim_start_matches("->")
                .trim_start()
                .starts_with("Sort  (")
        });
        assert!(plan.contains("Merge Append"), "{resolution:?}:\n{plan}");
        if resolution == trackside::export::Resolution::Raw {
            assert!(
                !full_sort,
                "a raw export must never sort all its rows:\n{plan}"
            );
        }
    }
}

/// The backends running a raw export's query.
macro_rules! export_backends {
    () => {
        "FROM pg_stat_activity \
         WHERE query LIKE 'SELECT * FROM ((SELECT channel_id, ts, value FROM readings%' \
         AND state <> 'idle' AND pid <> pg_backend_pid()"
    };
}
const EXPORT_BACKENDS_COUNT: &str = concat!("SELECT count(*) ", export_backends!());
const TERMINATE_EXPORTS: &str = concat!("SELECT pg_terminate_backend(pid) ", export_backends!());

#[tokio::test]
async fn a_database_failure_mid_export_breaks_the_download() {
    let server = TestServer::start().await;
    let pool = &server.pool;
    for i in 0..4 {
        add_channel(pool, &format!("T{i}"), "relay_voltage", Some("V")).await;
    }
    // 800,000 readings, about 70 MB of CSV: far more than any buffer on
    // the way holds.
    sqlx::query(
        "INSERT INTO readings (channel_id, ts, value)
         SELECT c.id, timestamptz '2026-11-28' + s * interval '100 ms', s * 0.001
         FROM channels c, generate_series(0, 199999) AS s",
    )
    .execute(pool)
    .await
    .unwrap();
    let response =
        server
            .get(server.url(
                "/api/export.csv?channels=T*&from=2026-11-28T00:00:00Z&to=2026-11-29T00:00:00Z",
            ))
            .await
            .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response;
    let first = body.chunk().await.expect("data").expect("a first chunk");
    // Two exports run at once; a third is refused rather than left silent.
    let url = server.url("/api/export.csv?channels=T1/*&from=0&to=1800000000000");
    let second = server.get(&url).await.unwrap();
    assert_eq!(second.status(), 200);
    let third = server.get(&url).await.unwrap();
    assert_eq!(third.status(), 503);
    let refused: ApiError = third.json().await.unwrap();
    assert!(refused.error.contains("exports are running"), "{refused:?}");
    // A client that goes away ends its query: the backend leaves.
    let exports_running = |want: i64| async move {
        let running: i64 = sqlx::query_scalar(EXPORT_BACKENDS_COUNT)
            .fetch_one(pool)
            .await
            .unwrap();
        (running == want).then_some(())
    };
    eventually("both exports' queries to run", || exports_running(2)).await;
    drop(second);
    eventually("the abandoned export's backend to leave", || {
        exports_running(1)
    })
    .await;
    assert!(first.starts_with(b"time_utc,"));
    let terminated: Vec<bool> = sqlx::query_scalar(TERMINATE_EXPORTS)
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(terminated, [true], "the export's backend");
    let mut received = first.len();
    let failure = loop {
        match body.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Err(err) => break err,
            Ok(None) => panic!("the body ended cleanly after {received} bytes"),
        }
    };
    assert!(received < 60_000_000, "{received} bytes before the failure");
    assert!(
        failure.is_body() || failure.is_decode() || failure.is_request(),
        "{failure:?}"
    );
    // The server stays healthy, with its pool whole.
    let again = export(
        &server,
        "channels=T1/*&from=2026-11-28T00:00:00Z&to=2026-11-28T00:00:01Z",
    )
    .await;
    assert_eq!(again.lines().count(), 11);
}
