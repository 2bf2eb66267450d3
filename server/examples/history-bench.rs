//! The history benchmark: one week of 1 Hz readings for 100 channels
//! (about 60 million rows) and a year of one more channel, then
//! `GET /api/history` at 1,000 points for 100 channels over the week, one
//! channel over the week and one channel over the year, each beside the
//! same bucket SQL run bare and beside the single-tier query that answered
//! it before the 5-minute, 15-minute and 6-hour tiers (the minute tier for
//! the week, the hour tier for the year), all in the same run. Prints p50
//! and p99 of each, the ratios, and the targets.
//!
//! ```text
//! cargo xtask bench-history            # or:
//! cargo run --release -p trackside --example history-bench -- [--database-url URL]
//! ```
//!
//! Without a URL it runs a private PostgreSQL under target/history-bench
//! (kept between runs: `--reuse` skips the 10-minute seed when the data is
//! already there). The readings are generated inside PostgreSQL with
//! generate_series, time-major as gateways deliver them, with the rollup
//! trigger off; the rollups are then built with `rollup::rebuild`, as a
//! bulk load would be. The year's channel reports every 10 s: what a year
//! costs to read depends on its rollups, not on how dense its readings
//! are.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use trackside::history::{BucketQuery, Plan, utc_grid};
use trackside::store::embedded_pg::{Durability, EmbeddedPostgres};
use trackside_wire::{History, HistorySource};

use crate::common::{admin_pool, recreate_database};

mod common;

#[derive(Parser)]
#[command(about = "Measure GET /api/history against its bare SQL on a seeded week")]
struct Args {
    /// PostgreSQL server to use (a database `trackside_bench` is created
    /// in it); without one a private cluster runs under --data-dir.
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long, default_value = "target/history-bench")]
    data_dir: PathBuf,
    /// Keep the seeded data of an earlier run when it has the same shape.
    #[arg(long)]
    reuse: bool,
    #[arg(long, default_value_t = 100)]
    channels: i32,
    #[arg(long, default_value_t = 7)]
    days: i64,
    /// Days of the one long channel (one reading per 10 s).
    #[arg(long, default_value_t = 365)]
    year_days: i64,
    #[arg(long, default_value_t = 1000)]
    points: u32,
    /// Timed requests per measurement (after three untimed warm-ups).
    #[arg(long, default_value_t = 40)]
    iterations: usize,
}

const DATABASE: &str = "trackside_bench";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        // sqlx warns of every statement over a second, which the seed is;
        // the server warns that it serves no app, which it need not here.
        .with_env_filter("warn,sqlx=error,trackside::http=error")
        .init();
    let args = Args::parse();
    let mut private = None;
    let admin: PgConnectOptions = match &args.database_url {
        Some(url) => url.parse().context("parsing --database-url")?,
        None => {
            let dir = args.data_dir.clone();
            let pg = tokio::task::spawn_blocking(move || {
                EmbeddedPostgres::start(&dir, None, Durability::Throwaway)
            })
            .await??;
            let options = pg.connect_options("postgres");
            private = Some(pg);
            options
        }
    };
    let result = run(&args, admin).await;
    if let Some(mut pg) = private {
        tokio::task::spawn_blocking(move || pg.stop()).await??;
    }
    result
}

async fn run(args: &Args, admin: PgConnectOptions) -> anyhow::Result<()> {
    // Ending at the last whole hour, so the API's "now" is just after the
    // data, as on a live system.
    let end_ms = Utc::now().timestamp_millis().div_euclid(3_600_000) * 3_600_000;
    let end = DateTime::from_timestamp_millis(end_ms).context("end time")?;
    let expected_rows = i64::from(args.channels) * args.days * 86_400 + args.year_days * 8_640;

    let (pool, end) = prepare_database(args, &admin, end, expected_rows).await?;
    let week = (end - TimeDelta::days(args.days), end);
    let year = (end - TimeDelta::days(args.year_days), end);

    let mut config = trackside::config::Config::default();
    config.http.listen = "127.0.0.1:0".parse()?;
    config.mqtt.listen = "127.0.0.1:0".parse()?;
    config.mqtt.listen_v5 = None;
    config.mqtt.tls_listen = None;
    config.http.assets_dir = "/nonexistent".into();
    let zone = config.yard.timezone.clone();
    let server = trackside::start(&config, pool.clone()).await?;
    let base = format!("http://{}", server.http_addr);
    // The API needs a viewer at least: an admin's token, made directly.
    let hash = trackside::auth::password::hash_now("bench password 1234")?;
    let user = match trackside::auth::users::by_name(&pool, "bench").await? {
        Some(user) => user,
        None => {
            trackside::auth::users::add(&pool, "bench", trackside_wire::Role::Admin, &hash, true)
                .await
                .map_err(|e| anyhow::anyhow!("adding the bench user: {e:?}"))?
        }
    };
    let (token, _) =
        trackside::auth::tokens::issue(&pool, &user, "bench", trackside_wire::Role::Admin, 1)
            .await
            .map_err(anyhow::Error::msg)?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()?;

    let channels: Vec<(i32, String)> =
        sqlx::query_as("SELECT id, name FROM channels WHERE name LIKE 'B%' ORDER BY id")
            .fetch_all(&pool)
            .await?;
    let long: (i32, String) = sqlx::query_as("SELECT id, name FROM channels WHERE name LIKE 'Y%'")
        .fetch_one(&pool)
        .await?;
    let cases = [
        Case {
            name: format!("{} channels x {} days", channels.len(), args.days),
            channels: channels.clone(),
            range: week,
            target_ms: 100.0,
            old: BucketQuery::MinutesOnly,
        },
        Case {
            name: format!("1 channel x {} days", args.days),
            channels: channels[..1].to_vec(),
            range: week,
            target_ms: 10.0,
            old: BucketQuery::MinutesOnly,
        },
        Case {
            name: format!("1 channel x {} days", args.year_days),
            channels: vec![long],
            range: year,
            target_ms: 20.0,
            old: BucketQuery::HoursWallClock,
        },
    ];
    let mut results = Vec::new();
    for case in &cases {
        results.push(measure(args, case, &client, &base, &pool, &zone).await?);
    }
    server.shutdown().await;

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\n{} channels x {} days of 1 Hz readings and 1 channel x {} days at 0.1 Hz \
         ({expected_rows} rows); {} points; {} timed runs each, alternating; \
         load average {}\n",
        args.channels,
        args.days,
        args.year_days,
        args.points,
        args.iterations,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<58} {:>9} {:>9}   {:<16} result",
        "measurement", "p50 ms", "p99 ms", "target"
    );
    for (case, m) in cases.iter().zip(&results) {
        let row = |name: String, stats: &Stats, target: String, pass: Option<bool>| {
            println!(
                "{name:<58} {:>9.1} {:>9.1}   {target:<16} {}",
                stats.p50,
                stats.p99,
                verdict(pass)
            );
        };
        row(
            format!("GET /api/history, {}, {:?} tier", case.name, m.source),
            &m.api,
            format!("p50 <= {} ms", case.target_ms),
            Some(m.api.p50 <= case.target_ms),
        );
        row(
            "  its bucket SQL, bare".to_owned(),
            &m.sql,
            String::new(),
            None,
        );
        row(
            format!("  the single-tier SQL it replaces ({:?})", case.old),
            &m.old,
            String::new(),
            None,
        );
        println!(
            "{:<58} {:>8.2}x {:>8.2}x",
            "  API / bare SQL",
            m.api.p50 / m.sql.p50,
            m.api.p99 / m.sql.p99
        );
        println!(
            "{:<58} {:>8.1}x {:>8.1}x   ({} rows instead of {})",
            "  single-tier SQL / tiered SQL",
            m.old.p50 / m.sql.p50,
            m.old.p99 / m.sql.p99,
            m.rows,
            m.old_rows
        );
    }
    Ok(())
}

/// One measured request.
struct Case {
    name: String,
    channels: Vec<(i32, String)>,
    range: (DateTime<Utc>, DateTime<Utc>),
    target_ms: f64,
    /// The query that answered this width before the tiers.
    old: BucketQuery,
}

fn verdict(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "pass",
        Some(false) => "MISS",
        None => "",
    }
}

async fn prepare_database(
    args: &Args,
    admin: &PgConnectOptions,
    end: DateTime<Utc>,
    expected_rows: i64,
) -> anyhow::Result<(PgPool, DateTime<Utc>)> {
    let (admin_pool, exists) = admin_pool(admin, DATABASE).await?;
    let options = admin.clone().database(DATABASE);
    if args.reuse && exists {
        let pool = connect(&options).await?;
        let shape: Option<(i64, DateTime<Utc>)> =
            sqlx::query_as("SELECT count(*), max(ts) FROM readings HAVING count(*) > 0")
                .fetch_optional(&pool)
                .await
                .unwrap_or(None);
        match shape {
            Some((rows, newest)) if rows == expected_rows => {
                println!("reusing {rows} seeded readings (up to {newest})");
                // Migrations of a newer version fill their tables from what
                // is there.
                trackside::migrate(&pool).await?;
                // An earlier run stopped while building the rollups: build
                // them again (it replaces what is there).
                let hours: i64 = sqlx::query_scalar("SELECT count(*) FROM readings_1h")
                    .fetch_one(&pool)
                    .await?;
                let expected_hours =
                    i64::from(args.channels) * args.days * 24 + args.year_days * 24;
                if hours != expected_hours {
                    let from = newest - TimeDelta::days(args.year_days.max(args.days));
                    build_rollups(&pool, from, newest + TimeDelta::seconds(1)).await?;
                }
                // The measured ranges end where the seed does.
                return Ok((pool, newest + TimeDelta::seconds(1)));
            }
            _ => {
                println!("the seeded data has another shape: seeding again");
                pool.close().await;
            }
        }
    }
    recreate_database(&admin_pool, DATABASE).await?;
    admin_pool.close().await;
    let pool = connect(&options).await?;
    trackside::migrate(&pool).await?;
    seed(&pool, args, end).await?;
    Ok((pool, end))
}

async fn connect(options: &PgConnectOptions) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(16)
        .connect_with(options.clone())
        .await?)
}

async fn seed(pool: &PgPool, args: &Args, end: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO gateways (id) VALUES ('bench-gw')")
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO channels (name, circuit, parameter, unit, gateway_id)
         SELECT format('B%s/relay_voltage', 100 + i), format('B%s', 100 + i),
                'relay_voltage', 'V', 'bench-gw'
         FROM generate_series(1, $1) AS i
         UNION ALL
         SELECT 'Y1/relay_voltage', 'Y1', 'relay_voltage', 'V', 'bench-gw'",
    )
    .bind(args.channels)
    .execute(pool)
    .await?;
    let started = Instant::now();
    print!("seeding readings inside PostgreSQL ... ");
    flush();
    let week_start = end - TimeDelta::days(args.days);
    let year_start = end - TimeDelta::days(args.year_days);
    // One transaction, so the trigger is off for this load only.
    let mut tx = pool.begin().await?;
    sqlx::query("ALTER TABLE readings DISABLE TRIGGER readings_mark_dirty")
        .execute(&mut *tx)
        .await?;
    // Time-major, as gateways deliver readings: each heap page holds a
    // second or two of every channel, so one channel's week is spread over
    // the whole table, which is what makes raw reads slow.
    let mut inserted = sqlx::query(
        "INSERT INTO readings (channel_id, ts, value)
         SELECT c.id, t,
                1.5 + 0.2 * sin(extract(epoch FROM t) / 13751.0 + c.id) + random() * 0.02
         FROM generate_series($1, $2 - interval '1 second', interval '1 second') AS t
         CROSS JOIN (SELECT id FROM channels WHERE name LIKE 'B%' ORDER BY id) AS c",
    )
    .bind(week_start)
    .bind(end)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    inserted += sqlx::query(
        "INSERT INTO readings (channel_id, ts, value)
         SELECT c.id, t, 1.5 + 0.2 * sin(extract(epoch FROM t) / 13751.0) + random() * 0.02
         FROM generate_series($1, $2 - interval '10 seconds', interval '10 seconds') AS t,
              (SELECT id FROM channels WHERE name LIKE 'Y%') AS c",
    )
    .bind(year_start)
    .bind(end)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("ALTER TABLE readings ENABLE TRIGGER readings_mark_dirty")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    println!(
        "{inserted} rows in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    print!("vacuuming ... ");
    flush();
    // Summarises the BRIN index (a bulk load leaves its ranges unsummarised,
    // and then every range scan reads the whole table) and sets the hint
    // bits a first read would otherwise write.
    sqlx::query("VACUUM ANALYZE readings").execute(pool).await?;
    println!("{:.0} s", started.elapsed().as_secs_f64());

    build_rollups(pool, year_start.min(week_start), end).await
}

async fn build_rollups(
    pool: &PgPool,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    print!("building the rollup tiers ... ");
    flush();
    trackside::store::rollup::rebuild(pool, start, end).await?;
    for tier in trackside::store::rollup::Tier::ALL {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "VACUUM ANALYZE {}",
            tier.table()
        )))
        .execute(pool)
        .await?;
    }
    println!("{:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

struct Stats {
    p50: f64,
    p99: f64,
}

struct Measured {
    source: HistorySource,
    api: Stats,
    sql: Stats,
    old: Stats,
    rows: usize,
    old_rows: usize,
}

async fn measure(
    args: &Args,
    case: &Case,
    client: &reqwest::Client,
    base: &str,
    pool: &PgPool,
    zone: &str,
) -> anyhow::Result<Measured> {
    let (from, to) = (
        case.range.0.timestamp_millis(),
        case.range.1.timestamp_millis(),
    );
    let names: Vec<&str> = case.channels.iter().map(|(_, n)| n.as_str()).collect();
    let ids: Vec<i32> = case.channels.iter().map(|&(id, _)| id).collect();
    let url = format!(
        "{base}/api/history?channels={}&from={from}&to={to}&points={}",
        names.join(","),
        args.points
    );
    let plan = Plan::choose(from, to, args.points, None, None);
    let query = BucketQuery::for_plan(plan, Some(zone));
    // The grid as the API lays it: UTC, or from the local bin holding
    // `from` on the yard's wall clock.
    let (lo, hi) = if plan.follows_wall_clock() {
        sqlx::query_as(
            "SELECT date_bin($3 * interval '1 millisecond', $1 AT TIME ZONE $4,
                             timestamp '2000-01-01') AT TIME ZONE $4,
                    (date_bin($3 * interval '1 millisecond',
                              ($2 - interval '1 millisecond') AT TIME ZONE $4,
                              timestamp '2000-01-01') + $3 * interval '1 millisecond')
                        AT TIME ZONE $4",
        )
        .bind(case.range.0)
        .bind(case.range.1)
        .bind(plan.bucket_ms)
        .bind(zone)
        .fetch_one(pool)
        .await?
    } else {
        let (grid, grid_end) = utc_grid(from, to, plan.bucket_ms);
        (
            DateTime::from_timestamp_millis(grid[0]).context("grid start")?,
            DateTime::from_timestamp_millis(grid_end).context("grid end")?,
        )
    };
    let mut api = Vec::with_capacity(args.iterations);
    let mut sql = Vec::with_capacity(args.iterations);
    let mut old = Vec::with_capacity(args.iterations);
    let (mut rows, mut old_rows) = (0, 0);
    let mut source = plan.source;
    print!("measuring {} ", case.name);
    flush();
    // Alternate the three so that all see the same machine load.
    for i in 0..args.iterations + 3 {
        let started = Instant::now();
        let response = client.get(&url).send().await?.error_for_status()?;
        let body = response.bytes().await?;
        let api_time = started.elapsed();
        if i == 0 {
            let answer: History = serde_json::from_slice(&body)?;
            anyhow::ensure!(
                answer.series.len() == names.len() && answer.source == plan.source,
                "unexpected answer: {} series from {:?}",
                answer.series.len(),
                answer.source
            );
            source = answer.source;
        }

        let started = Instant::now();
        rows = bare_sql(pool, query, plan.bucket_ms, &ids, lo, hi, zone).await?;
        let sql_time = started.elapsed();
        let started = Instant::now();
        old_rows = bare_sql(pool, case.old, plan.bucket_ms, &ids, lo, hi, zone).await?;
        let old_time = started.elapsed();
        if i >= 3 {
            api.push(api_time);
            sql.push(sql_time);
            old.push(old_time);
        }
        if i % 10 == 0 {
            print!(".");
            flush();
        }
    }
    println!();
    // Rows read: each tier's rows in the range.
    let rows_read = |tier: trackside::store::rollup::Tier| {
        let ids = ids.clone();
        async move {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {} WHERE channel_id = ANY($1) AND bucket >= $2 AND bucket < $3",
                tier.table()
            )))
            .bind(&ids)
            .bind(lo)
            .bind(hi)
            .fetch_one(pool)
            .await?;
            anyhow::Ok(n as usize)
        }
    };
    if let (Some(new_tier), Some(old_tier)) = (query.tier(), case.old.tier()) {
        rows = rows_read(new_tier).await?;
        old_rows = rows_read(old_tier).await?;
    }
    Ok(Measured {
        source,
        api: stats(api),
        sql: stats(sql),
        old: stats(old),
        rows,
        old_rows,
    })
}

/// A bucket statement with the API's settings (one read-only transaction,
/// JIT off, a custom plan), its rows fetched and decoded: what the API
/// would cost with no HTTP, no JSON and no grid. Returns the buckets.
async fn bare_sql(
    pool: &PgPool,
    query: BucketQuery,
    width: i64,
    ids: &[i32],
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
    zone: &str,
) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT set_config('jit', 'off', true),
                set_config('plan_cache_mode', 'force_custom_plan', true)",
    )
    .execute(&mut *tx)
    .await?;
    type Row = (
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
    let mut statement = sqlx::query_as::<_, Row>(query.sql())
        .bind(ids)
        .bind(lo)
        .bind(hi)
        .bind(width)
        .bind(hi); // no dirty minute: the whole range is settled
    if query.takes_zone() {
        statement = statement.bind(zone);
    }
    let rows = statement.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows.len())
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[index].as_secs_f64() * 1000.0
    };
    Stats {
        p50: at(0.5),
        p99: at(0.99),
    }
}

fn flush() {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}
