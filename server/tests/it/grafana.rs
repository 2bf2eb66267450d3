//! Grafana on the same data: `trackside db reader-role` makes a role that
//! reads the `grafana` views and nothing else, and the time-series query of
//! docs/grafana.md, its macros expanded as Grafana expands them, gives the
//! numbers the raw readings give, from whichever tier it picks.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row as _};

use crate::exceptions::now_ms;
use crate::harness::{TestServer, database_url, eventually, rolled_up};

const S: i64 = 1_000;

/// The query of docs/grafana.md, as written there.
fn documented_query() -> String {
    let doc = include_str!("../../../docs/grafana.md");
    let from = doc
        .find("<!-- grafana-query")
        .expect("docs/grafana.md marks its query");
    let block = &doc[from..];
    let start = block.find("```sql\n").expect("a sql block") + "```sql\n".len();
    let end = start + block[start..].find("```").expect("the block's end");
    block[start..end].to_owned()
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .expect("a time")
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// What Grafana's PostgreSQL data source sends for this range, interval
/// and `channel` variable (its macro engine: `$__timeFilter(col)` is
/// `col BETWEEN 'from' AND 'to'`, `$__timeGroupAlias(col, $__interval)` is
/// `floor(extract(epoch from col)/s)*s AS "time"`, and a multi-value
/// variable is a quoted, comma-separated list).
fn expand(query: &str, from: i64, to: i64, interval_s: i64, channels: &[&str]) -> String {
    let group = format!("floor(extract(epoch from time)/{interval_s})*{interval_s} AS \"time\"");
    let filter = format!("time BETWEEN '{}' AND '{}'", rfc3339(from), rfc3339(to));
    let channels = channels
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(",");
    query
        .replace("$__timeGroupAlias(time, $__interval)", &group)
        .replace("$__timeFilter(time)", &filter)
        .replace("$__interval_ms", &(interval_s * 1000).to_string())
        .replace("$channel", &channels)
}

/// The readings of a test yard: two channels every 10 s for 130 minutes
/// up to a whole minute before now, values that differ in every reading.
fn script(end: i64) -> Vec<(String, i64, f64)> {
    let start = end - 130 * 60 * S;
    let mut out = Vec::new();
    for step in 0..(130 * 6) {
        let t = start + step * 10 * S;
        let x = step as f64;
        out.push((
            "G1/relay_voltage".to_owned(),
            t,
            1.2 + (x * 0.37).sin() * 0.3,
        ));
        out.push((
            "G1/feed_current".to_owned(),
            t,
            0.9 + (x * 0.11).cos() * 0.2 + x * 1e-4,
        ));
    }
    out
}

/// Mean per group, straight from the raw readings.
fn expected(
    readings: &[(String, i64, f64)],
    channel: &str,
    from: i64,
    to: i64,
    interval_s: i64,
    tier_s: i64,
) -> Vec<(i64, f64)> {
    let mut groups = std::collections::BTreeMap::<i64, (f64, u32)>::new();
    for (c, t, v) in readings {
        // The row a reading is in (raw: itself; a tier: its bucket) must
        // start inside the range, as `$__timeFilter` keeps it.
        let row = t.div_euclid(tier_s * S) * tier_s * S;
        if c == channel && row >= from && row <= to {
            let group = t.div_euclid(interval_s * S) * interval_s;
            let entry = groups.entry(group).or_default();
            entry.0 += v;
            entry.1 += 1;
        }
    }
    groups
        .into_iter()
        .map(|(g, (sum, n))| (g, sum / f64::from(n)))
        .collect()
}

async fn run(reader: &PgPool, sql: &str) -> Vec<(i64, String, f64)> {
    // Grafana reads the group's time as a number (numeric here).
    let sql = format!("SELECT time::float8 AS time, metric, value FROM ({sql}) AS panel");
    sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
        .fetch_all(reader)
        .await
        .unwrap_or_else(|e| panic!("the documented query failed: {e}\n{sql}"))
        .into_iter()
        .map(|row| {
            let time: f64 = row.get("time");
            (time as i64, row.get("metric"), row.get("value"))
        })
        .collect()
}

/// Makes the role with the `trackside` command; its output.
fn reader_role(pool: &PgPool, name: &str, password: &str) -> String {
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_trackside"))
        .args(["db", "reader-role", "--name", name])
        .env("TRACKSIDE_DATABASE_URL", database_url(pool))
        .env("TRACKSIDE_DATA_DIR", data.path())
        .env("TRACKSIDE_READER_PASSWORD", password)
        .env("RUST_LOG", "debug")
        .output()
        .expect("running trackside");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "trackside db reader-role: {stderr}"
    );
    for secret in [password, "SCRAM-SHA-256$"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} was printed or logged:\n{stdout}\n{stderr}"
        );
    }
    stdout
}

/// This process's cluster trusts local connections; make it ask the
/// reader role for its password, so that the stored verifier is what lets
/// it in. `None` on an external test database (its own rules apply).
async fn require_password(pool: &PgPool, role: &str) -> Option<()> {
    if std::env::var(crate::harness::DATABASE_URL_VAR).is_ok() {
        return None;
    }
    let hba: String = sqlx::query_scalar("SHOW hba_file")
        .fetch_one(pool)
        .await
        .ok()?;
    let text = std::fs::read_to_string(&hba).ok()?;
    let line = format!("local all {role} scram-sha-256\nhost all {role} all scram-sha-256\n");
    if !text.contains(&line) {
        std::fs::write(&hba, format!("{line}{text}")).ok()?;
    }
    let _: bool = sqlx::query_scalar("SELECT pg_reload_conf()")
        .fetch_one(pool)
        .await
        .ok()?;
    Some(())
}

fn reader_options(pool: &PgPool, role: &str, password: &str) -> PgConnectOptions {
    let url: PgConnectOptions = database_url(pool).parse().expect("the test database URL");
    url.username(role).password(password)
}

#[tokio::test]
async fn the_reader_role_reads_the_views_and_the_documented_query_matches_raw_readings() {
    let server = TestServer::start().await;
    // Roles are per cluster, shared by this process's tests.
    let role = format!("grafana_it_{}", std::process::id());
    let password = "a reader password, long enough";
    let said = reader_role(&server.pool, &role, password);
    assert!(said.contains(&format!("role {role}")), "{said}");
    // Again: an update, not a failure.
    let said = reader_role(&server.pool, &role, password);
    assert!(said.contains("Updated read-only role"), "{said}");
    let checked = require_password(&server.pool, &role).await.is_some();
    if checked {
        let wrong = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(reader_options(
                &server.pool,
                &role,
                "not the password at all",
            ))
            .await;
        assert!(wrong.is_err(), "a wrong password was let in");
    }
    let reader = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(reader_options(&server.pool, &role, password))
        .await
        .expect("the reader role signs in with its password");

    let end = now_ms().div_euclid(60 * S) * 60 * S - 60 * S;
    let readings = script(end);
    let mut gateway = server.gateway("gw-grafana").await;
    for chunk in readings.chunks(200) {
        let borrowed: Vec<(&str, i64, f64)> =
            chunk.iter().map(|(c, t, v)| (c.as_str(), *t, *v)).collect();
        gateway.publish_readings("gw-grafana", &borrowed).await;
    }
    eventually("every reading stored", || async {
        (server.stored("G1/feed_current").await.len() == 780
            && server.stored("G1/relay_voltage").await.len() == 780)
            .then_some(())
    })
    .await;

    let query = documented_query();
    // A range on whole hours inside the data, so every tier's buckets
    // start inside it.
    let to = end.div_euclid(3_600 * S) * 3_600 * S;
    let from = to - 3_600 * S;
    let cases = [
        // (interval Grafana chose, the tier it must read, in seconds)
        (10, 1),
        (30, 1),
        (60, 60),
        (120, 60),
        (300, 300),
        (600, 300),
        (900, 900),
        (1_800, 900),
        (3_600, 3_600),
    ];
    // First while the rollup job may not have run (stale buckets come from
    // raw readings), then once every tier is rolled up.
    for pass in ["before the rollup", "after the rollup"] {
        if pass == "after the rollup" {
            rolled_up(&server).await;
        }
        for (interval_s, tier_s) in cases {
            let sql = expand(
                &query,
                from,
                to,
                interval_s,
                &["G1/relay_voltage", "G1/feed_current"],
            );
            let rows = run(&reader, &sql).await;
            for channel in ["G1/relay_voltage", "G1/feed_current"] {
                let got: Vec<(i64, f64)> = rows
                    .iter()
                    .filter(|(_, c, _)| c == channel)
                    .map(|(t, _, v)| (*t, *v))
                    .collect();
                let want = expected(&readings, channel, from, to, interval_s, tier_s);
                assert!(!want.is_empty());
                assert_eq!(
                    got.iter().map(|g| g.0).collect::<Vec<_>>(),
                    want.iter().map(|w| w.0).collect::<Vec<_>>(),
                    "{pass}, interval {interval_s} s, {channel}: the groups"
                );
                for ((t, g), (_, w)) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() < 1e-9,
                        "{pass}, interval {interval_s} s, {channel} at {t}: {g} from the query, {w} from raw readings"
                    );
                }
            }
        }
    }
    // The tiers' other columns, against the raw readings.
    let row = sqlx::query(
        "SELECT min, max, count, first, last FROM readings_5m
         WHERE channel = 'G1/relay_voltage' AND time = $1",
    )
    .bind(DateTime::<Utc>::from_timestamp_millis(from).unwrap())
    .fetch_one(&reader)
    .await
    .expect("a 5-minute row (search_path is grafana)");
    let raw: Vec<f64> = readings
        .iter()
        .filter(|(c, t, _)| c == "G1/relay_voltage" && *t >= from && *t < from + 300 * S)
        .map(|r| r.2)
        .collect();
    assert_eq!(row.get::<i64, _>("count"), raw.len() as i64);
    assert_eq!(row.get::<f64, _>("first"), raw[0]);
    assert_eq!(row.get::<f64, _>("last"), raw[raw.len() - 1]);
    assert_eq!(
        row.get::<f64, _>("min"),
        raw.iter().copied().fold(f64::INFINITY, f64::min)
    );
    assert_eq!(
        row.get::<f64, _>("max"),
        raw.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    );

    // Every view reads.
    for view in [
        "channels",
        "readings",
        "readings_1m",
        "readings_5m",
        "readings_15m",
        "readings_1h",
        "readings_6h",
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM grafana.{view}"
        )))
        .fetch_one(&reader)
        .await
        .unwrap_or_else(|e| panic!("grafana.{view}: {e}"));
        assert!(n > 0, "grafana.{view} is empty");
    }

    // Nothing else: each attempt is refused.
    let refused = [
        "SELECT * FROM public.users",
        "SELECT * FROM public.sessions",
        "SELECT * FROM public.api_tokens",
        "SELECT * FROM public.signin_links",
        "SELECT * FROM public.gateway_credentials",
        "SELECT * FROM public.audit_log",
        "SELECT * FROM public.readings",
        "SELECT * FROM public.channels",
        "SELECT * FROM public.exceptions",
        "SELECT * FROM public.rollup_settings",
        "SELECT * FROM public.history_1m",
        "INSERT INTO grafana.channels (channel, circuit, parameter) VALUES ('X/y', 'X', 'y')",
        "UPDATE grafana.channels SET unit = 'V'",
        "DELETE FROM grafana.readings",
        "INSERT INTO public.readings VALUES (1, now(), 1.0)",
        "CREATE TABLE grafana.mine (x int)",
        "CREATE TABLE public.mine (x int)",
        "CREATE VIEW grafana.mine AS SELECT 1",
        "CALL public.grafana_create_views()",
        "DROP VIEW grafana.readings",
        "TRUNCATE public.readings",
    ];
    for sql in refused {
        let answer = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&reader).await;
        assert!(answer.is_err(), "the reader role could run: {sql}");
    }
    // Its session cannot be made writable.
    let mut tx = reader.begin().await.unwrap();
    let writable = sqlx::query("SET TRANSACTION READ WRITE")
        .execute(&mut *tx)
        .await;
    let insert = sqlx::query("INSERT INTO grafana.channels (channel) VALUES ('x')")
        .execute(&mut *tx)
        .await;
    assert!(writable.is_err() || insert.is_err());
    drop(tx);
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&reader)
        .await
        .unwrap();
    assert_eq!(timeout, "30s");
    reader.close().await;
}
