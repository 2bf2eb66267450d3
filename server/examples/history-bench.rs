//! The history benchmark: one week of 1 Hz readings for 100 channels (about
//! 60 million rows), then `GET /api/history` for one channel and for all of
//! them at 1,000 points, each beside the same bucket SQL run bare, in the
//! same run. Prints p50 and p99 of each, the ratio, and the targets.
//!
//! ```text
//! cargo xtask bench-history            # or:
//! cargo run --release -p trackside --example history-bench -- [--database-url URL]
//! ```
//!
//! Without a URL it runs a private PostgreSQL under target/history-bench
//! (kept between runs: `--reuse` skips the 5-minute seed when the data is
//! already there). The readings are generated inside PostgreSQL with
//! generate_series, time-major as gateways deliver them, with the rollup
//! trigger off; the rollups are then built with `rollup::rebuild`, as a
//! bulk load would be.

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
    // One week ending at the last whole hour, so the API's "now" is just
    // after the data, as on a live system.
    let end_ms = Utc::now().timestamp_millis().div_euclid(3_600_000) * 3_600_000;
    let end = DateTime::from_timestamp_millis(end_ms).context("end time")?;
    let start = end - TimeDelta::days(args.days);
    let expected_rows = i64::from(args.channels) * args.days * 86_400;

    let (pool, start, end) = prepare_database(args, &admin, start, end, expected_rows).await?;

    let mut config = trackside::config::Config::default();
    config.http.listen = "127.0.0.1:0".parse()?;
    config.mqtt.listen = "127.0.0.1:0".parse()?;
    config.mqtt.listen_v5 = None;
    config.mqtt.tls_listen = None;
    config.http.assets_dir = "/nonexistent".into();
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

    let ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM channels ORDER BY id")
        .fetch_all(&pool)
        .await?;
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM channels ORDER BY id")
        .fetch_all(&pool)
        .await?;
    let (from, to) = (start.timestamp_millis(), end.timestamp_millis());
    let plan = Plan::choose(from, to, args.points, None, None);
    println!(
        "\nrange {start} .. {end}, {} points: {} ms buckets from the {:?} rollup\n",
        args.points, plan.bucket_ms, plan.source
    );

    let one = measure(
        args,
        "1 channel",
        &client,
        &base,
        &pool,
        plan,
        &names[..1],
        &ids[..1],
        from,
        to,
    )
    .await?;
    let all = measure(
        args,
        "all channels",
        &client,
        &base,
        &pool,
        plan,
        &names,
        &ids,
        from,
        to,
    )
    .await?;
    server.shutdown().await;

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\n{} channels x {} days of 1 Hz readings ({} rows); {} timed runs each; \
         load average {}\n",
        args.channels,
        args.days,
        expected_rows,
        args.iterations,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<44} {:>9} {:>9}   {:<22} result",
        "measurement", "p50 ms", "p99 ms", "target"
    );
    let ratio = one.api.p50 / one.sql.p50;
    let rows = [
        (
            format!("GET /api/history, 1 channel, {} points", args.points),
            &one.api,
            "p50 <= 50 ms".to_owned(),
            Some(one.api.p50 <= 50.0),
        ),
        (
            "  the same SQL, bare".to_owned(),
            &one.sql,
            String::new(),
            None,
        ),
        (
            format!(
                "GET /api/history, {} channels, {} points",
                args.channels, args.points
            ),
            &all.api,
            "p50 <= 500 ms".to_owned(),
            Some(all.api.p50 <= 500.0),
        ),
        (
            "  the same SQL, bare".to_owned(),
            &all.sql,
            String::new(),
            None,
        ),
    ];
    for (name, stats, target, pass) in rows {
        println!(
            "{name:<44} {:>9.1} {:>9.1}   {target:<22} {}",
            stats.p50,
            stats.p99,
            verdict(pass)
        );
    }
    println!(
        "{:<44} {:>8.2}x {:>8.2}x   {:<22} {}",
        "1 channel: API / bare SQL (p50, p99)",
        ratio,
        one.api.p99 / one.sql.p99,
        "p50 <= 1.5x",
        verdict(Some(ratio <= 1.5))
    );
    println!(
        "{:<44} {:>8.2}x {:>8.2}x",
        format!("{} channels: API / bare SQL", args.channels),
        all.api.p50 / all.sql.p50,
        all.api.p99 / all.sql.p99
    );
    println!(
        "\nanswer sizes: 1 channel {} KiB, {} channels {} KiB (JSON, uncompressed)",
        one.bytes / 1024,
        args.channels,
        all.bytes / 1024
    );
    Ok(())
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
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    expected_rows: i64,
) -> anyhow::Result<(PgPool, DateTime<Utc>, DateTime<Utc>)> {
    let (admin_pool, exists) = admin_pool(admin, DATABASE).await?;
    let options = admin.clone().database(DATABASE);
    if args.reuse && exists {
        let pool = connect(&options).await?;
        let shape: Option<(i64, DateTime<Utc>, DateTime<Utc>)> =
            sqlx::query_as("SELECT count(*), min(ts), max(ts) FROM readings HAVING count(*) > 0")
                .fetch_optional(&pool)
                .await
                .unwrap_or(None);
        match shape {
            Some((rows, oldest, newest)) if rows == expected_rows => {
                println!("reusing {rows} seeded readings ({oldest} .. {newest})");
                // The measured range is the seeded week, wherever it lies.
                return Ok((pool, oldest, newest + TimeDelta::seconds(1)));
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
    seed(&pool, args.channels, start, end).await?;
    Ok((pool, start, end))
}

async fn connect(options: &PgConnectOptions) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(16)
        .connect_with(options.clone())
        .await?)
}

async fn seed(
    pool: &PgPool,
    channels: i32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO gateways (id) VALUES ('bench-gw')")
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO channels (name, circuit, parameter, unit, gateway_id)
         SELECT format('B%s/relay_voltage', 100 + i), format('B%s', 100 + i),
                'relay_voltage', 'V', 'bench-gw'
         FROM generate_series(1, $1) AS i",
    )
    .bind(channels)
    .execute(pool)
    .await?;
    let started = Instant::now();
    print!("seeding readings inside PostgreSQL ... ");
    flush();
    // One transaction, so the trigger is off for this load only.
    let mut tx = pool.begin().await?;
    sqlx::query("ALTER TABLE readings DISABLE TRIGGER readings_mark_dirty")
        .execute(&mut *tx)
        .await?;
    // Time-major, as gateways deliver readings: each heap page holds a
    // second or two of every channel, so one channel's week is spread over
    // the whole table, which is what makes raw reads slow.
    let inserted = sqlx::query(
        "INSERT INTO readings (channel_id, ts, value)
         SELECT c.id, t,
                1.5 + 0.2 * sin(extract(epoch FROM t) / 13751.0 + c.id) + random() * 0.02
         FROM generate_series($1, $2 - interval '1 second', interval '1 second') AS t
         CROSS JOIN (SELECT id FROM channels ORDER BY id) AS c",
    )
    .bind(start)
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

    let started = Instant::now();
    print!("building the minute and hour rollups ... ");
    flush();
    trackside::store::rollup::rebuild(pool, start, end).await?;
    for table in ["readings_1m", "readings_1h"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
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
    api: Stats,
    sql: Stats,
    bytes: usize,
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Args,
    what: &str,
    client: &reqwest::Client,
    base: &str,
    pool: &PgPool,
    plan: Plan,
    names: &[String],
    ids: &[i32],
    from: i64,
    to: i64,
) -> anyhow::Result<Measured> {
    let url = format!(
        "{base}/api/history?channels={}&from={from}&to={to}&points={}",
        names.join(","),
        args.points
    );
    let (grid, grid_end) = utc_grid(from, to, plan.bucket_ms);
    let query = BucketQuery::for_plan(plan, None);
    let (lo, hi) = (
        DateTime::from_timestamp_millis(grid[0]).context("grid start")?,
        DateTime::from_timestamp_millis(grid_end).context("grid end")?,
    );
    let mut api = Vec::with_capacity(args.iterations);
    let mut sql = Vec::with_capacity(args.iterations);
    let mut bytes = 0;
    print!("measuring {what} ");
    flush();
    // Alternate the two so that both see the same machine load.
    for i in 0..args.iterations + 3 {
        let started = Instant::now();
        let response = client.get(&url).send().await?.error_for_status()?;
        let body = response.bytes().await?;
        let api_time = started.elapsed();
        if i == 0 {
            let answer: History = serde_json::from_slice(&body)?;
            anyhow::ensure!(
                answer.series.len() == names.len() && answer.source == HistorySource::Minute,
                "unexpected answer: {} series from {:?}",
                answer.series.len(),
                answer.source
            );
            bytes = body.len();
        }

        let started = Instant::now();
        bare_sql(pool, query, plan, ids, lo, hi).await?;
        let sql_time = started.elapsed();
        if i >= 3 {
            api.push(api_time);
            sql.push(sql_time);
        }
        if i % 10 == 0 {
            print!(".");
            flush();
        }
    }
    println!();
    Ok(Measured {
        api: stats(api),
        sql: stats(sql),
        bytes,
    })
}

/// The API's bucket statement with the API's settings (one read-only
/// transaction, JIT off, a custom plan), its rows fetched and decoded: what
/// the API would cost with no HTTP, no JSON and no grid.
async fn bare_sql(
    pool: &PgPool,
    query: BucketQuery,
    plan: Plan,
    ids: &[i32],
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
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
    let rows: Vec<Row> = sqlx::query_as(query.sql())
        .bind(ids)
        .bind(lo)
        .bind(hi)
        .bind(plan.bucket_ms)
        .bind(hi) // no dirty minute: the whole range is settled
        .fetch_all(&mut *tx)
        .await?;
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
