//! The export benchmark: 10 million readings (100 channels at 1 Hz for
//! 100,000 seconds), exported as CSV by a release Trackside child process
//! through a real HTTP client, against PostgreSQL's own
//! `COPY (...) TO STDOUT WITH (FORMAT csv)` of the same rows and columns
//! through psql, alternating, in the same run. Prints MB/s of both, the
//! ratio, and the server's peak memory during each export above its idle.
//!
//! ```text
//! cargo xtask bench-export             # or:
//! cargo build --release -p trackside && \
//!   cargo run --release -p trackside --example export-bench -- [--reuse]
//! ```
//!
//! A private PostgreSQL runs under target/export-bench (kept between runs:
//! `--reuse` skips the seed when the data is already there). Readings are
//! generated inside PostgreSQL, time-major as gateways deliver them, with
//! the rollup trigger off (raw exports do not read rollups, and a running
//! rollup job would compete with the measurement).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use clap::Parser;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use trackside::export::{Resolution, SESSION_SETTINGS, export_sql};
use trackside::store::embedded_pg::{Durability, EmbeddedPostgres, SUPERUSER};

use crate::common::{
    Process, admin_pool, admin_token, client_with_token, free_port, recreate_database,
    start_trackside, wait_ready,
};

mod common;

#[derive(Parser)]
#[command(about = "Measure GET /api/export.csv against psql's COPY of the same rows")]
struct Args {
    #[arg(long, default_value = "target/export-bench")]
    data_dir: PathBuf,
    /// Keep the seeded data of an earlier run when it has the same shape.
    #[arg(long)]
    reuse: bool,
    #[arg(long, default_value_t = 100)]
    channels: i32,
    /// Seconds of 1 Hz readings per channel.
    #[arg(long, default_value_t = 100_000)]
    seconds: i64,
    /// Timed runs of each (alternating, after one untimed warm-up each).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

const DATABASE: &str = "trackside_export_bench";
/// 2026-11-01T00:00:00Z.
const T0: &str = "2026-11-01T00:00:00Z";
const ZONE: &str = "Europe/London";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter("warn,sqlx=error")
        .init();
    let args = Args::parse();
    let dir = args.data_dir.clone();
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    let pg_dir = dir.clone();
    let mut pg = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start(&pg_dir, None, Durability::Throwaway)
    })
    .await??;
    let admin = pg.connect_options("postgres");
    let socket = dir.join("postgres");
    let result = run(&args, admin, &socket, &dir).await;
    tokio::task::spawn_blocking(move || pg.stop()).await??;
    result
}

async fn run(
    args: &Args,
    admin: PgConnectOptions,
    socket: &Path,
    dir: &Path,
) -> anyhow::Result<()> {
    let pool = prepare_database(args, &admin).await?;
    let ids: Vec<i32> = sqlx::query_scalar("SELECT id FROM channels ORDER BY id")
        .fetch_all(&pool)
        .await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM readings")
        .fetch_one(&pool)
        .await?;
    let from = chrono::DateTime::parse_from_rfc3339(T0)?.timestamp_millis();
    let to = from + args.seconds * 1_000;

    let server = Server::start(dir, socket).await?;
    let export_url = format!(
        "{}/api/export.csv?channels=*&from={from}&to={to}&tz={ZONE}",
        server.http
    );
    let copy_sql = copy_statement(&pool, &ids).await?;
    let client = client_with_token(&server.token)?;

    // Warm-ups: the table into the page cache, the server's allocator to
    // its working size, psql's plan.
    let idle_cold = server.rss_kib()?;
    println!("\n{rows} readings, {} channels; warming up", ids.len());
    server.export(&client, &export_url).await?;
    copy(socket, &copy_sql)?;

    let mut exports = Vec::new();
    let mut copies = Vec::new();
    for run in 1..=args.runs {
        let export = server.export(&client, &export_url).await?;
        println!(
            "  run {run}: export {:>6.1} MB/s ({} bytes, {:.2} s), peak RSS +{:.1} MiB over idle {:.1} MiB",
            export.mb_per_s(),
            export.bytes,
            export.elapsed.as_secs_f64(),
            export.peak_above_idle_mib(),
            export.idle_kib as f64 / 1024.0
        );
        let copied = copy(socket, &copy_sql)?;
        println!(
            "  run {run}: COPY   {:>6.1} MB/s ({} bytes, {:.2} s)",
            copied.mb_per_s(),
            copied.bytes,
            copied.elapsed.as_secs_f64()
        );
        exports.push(export);
        copies.push(copied);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let export_rate = median(exports.iter().map(Measured::mb_per_s).collect());
    let copy_rate = median(copies.iter().map(Measured::mb_per_s).collect());
    let peak = exports
        .iter()
        .map(Measured::peak_above_idle_mib)
        .fold(0.0, f64::max);
    let ratio = export_rate / copy_rate;
    let verdict = |pass: bool| if pass { "pass" } else { "MISSED" };
    println!(
        "\n{} readings (long layout, raw, local time in {ZONE}), median of {} runs:\n",
        rows, args.runs
    );
    println!("| measurement | figure | target |");
    println!("|---|---|---|");
    // The two texts differ in length (RFC 3339 times with offsets against
    // PostgreSQL's), so rows per second is given beside MB/s.
    let rows_per_s = |mb_per_s: f64, bytes: u64| rows as f64 * mb_per_s * 1e6 / bytes as f64;
    println!(
        "| `GET /api/export.csv` through reqwest | {export_rate:.1} MB/s, {:.0} rows/s | |",
        rows_per_s(export_rate, exports[0].bytes)
    );
    println!(
        "| psql `COPY (...) TO STDOUT WITH (FORMAT csv)` | {copy_rate:.1} MB/s, {:.0} rows/s | |",
        rows_per_s(copy_rate, copies[0].bytes)
    );
    println!(
        "| export / COPY | {ratio:.2}x | >= 1.0x: {} |",
        verdict(ratio >= 1.0)
    );
    println!(
        "| server peak RSS above idle, worst run | {peak:.1} MiB | < 32 MiB: {} |",
        verdict(peak < 32.0)
    );
    println!(
        "\n(server RSS at start {:.1} MiB; CSV sizes: export {} bytes, COPY {} bytes)",
        idle_cold as f64 / 1024.0,
        exports[0].bytes,
        copies[0].bytes
    );
    Ok(())
}

/// One timed transfer.
struct Measured {
    bytes: u64,
    elapsed: Duration,
    idle_kib: u64,
    peak_kib: u64,
}

impl Measured {
    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }

    fn peak_above_idle_mib(&self) -> f64 {
        self.peak_kib.saturating_sub(self.idle_kib) as f64 / 1024.0
    }
}

async fn prepare_database(args: &Args, admin: &PgConnectOptions) -> anyhow::Result<PgPool> {
    let expected = i64::from(args.channels) * args.seconds;
    let (admin_pool, exists) = admin_pool(admin, DATABASE).await?;
    if exists && args.reuse {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(admin.clone().database(DATABASE))
            .await?;
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM readings")
            .fetch_one(&pool)
            .await?;
        if rows == expected {
            println!("reusing {rows} seeded readings");
            return Ok(pool);
        }
        pool.close().await;
    }
    recreate_database(&admin_pool, DATABASE).await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(admin.clone().database(DATABASE))
        .await?;
    trackside::migrate(&pool).await?;
    println!("seeding {expected} readings (a few minutes; --reuse keeps them)");
    let started = Instant::now();
    sqlx::query("INSERT INTO gateways (id) VALUES ('gw-bench')")
        .execute(&pool)
        .await?;
    sqlx::query(
        "INSERT INTO channels (name, circuit, parameter, unit, gateway_id)
         SELECT format('T%s/%s', 100 + c / 4, p.name), format('T%s', 100 + c / 4), p.name, p.unit, 'gw-bench'
         FROM generate_series(0, $1 - 1) AS c
         CROSS JOIN LATERAL (SELECT (ARRAY['relay_state', 'relay_voltage', 'feed_voltage', 'relay_current'])[c % 4 + 1] AS name,
                                    (ARRAY[NULL, 'V', 'V', 'mA'])[c % 4 + 1] AS unit) AS p",
    )
    .bind(args.channels)
    .execute(&pool)
    .await?;
    sqlx::query("ALTER TABLE readings DISABLE TRIGGER readings_mark_dirty")
        .execute(&pool)
        .await?;
    // Values as gateways send them: a few decimals, varying per reading.
    sqlx::query(
        "INSERT INTO readings (channel_id, ts, value)
         SELECT c.id, $1::timestamptz + s * interval '1 second' + (c.id % 10) * interval '7 ms',
                CASE WHEN c.parameter = 'relay_state' THEN (s / 97 % 2)::float8
                     ELSE round((1.5 + 0.4 * sin(s / 300.0 + c.id) + random() * 0.01)::numeric, 4)::float8 END
         FROM generate_series(0, $2 - 1) AS s
         CROSS JOIN channels c
         ORDER BY s, c.id",
    )
    .bind(chrono::DateTime::parse_from_rfc3339(T0)?)
    .bind(args.seconds)
    .execute(&pool)
    .await?;
    sqlx::query("ALTER TABLE readings ENABLE TRIGGER readings_mark_dirty")
        .execute(&pool)
        .await?;
    sqlx::query("VACUUM ANALYZE readings")
        .execute(&pool)
        .await?;
    println!("seeded in {:.0} s", started.elapsed().as_secs_f64());
    Ok(pool)
}

/// The same rows and columns as the export (long layout, raw): the same
/// per-channel merge, with each channel's names as constants of its
/// branch, and PostgreSQL's own text for times and numbers.
async fn copy_statement(pool: &PgPool, ids: &[i32]) -> anyhow::Result<String> {
    let names: Vec<(i32, String, String, String, Option<String>)> =
        sqlx::query_as("SELECT id, name, circuit, parameter, unit FROM channels ORDER BY id")
            .fetch_all(pool)
            .await?;
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut sql = export_sql(Resolution::Raw, ids)
        .replace("$1", &quote(T0))
        .replace("$2", "'infinity'");
    for (id, name, circuit, parameter, unit) in &names {
        let unit = unit.as_deref().map_or("NULL".to_owned(), quote);
        sql = sql.replace(
            &format!("(SELECT channel_id, ts, value FROM readings WHERE channel_id = {id} "),
            &format!(
                "(SELECT channel_id, ts, {} AS channel, {} AS circuit, {} AS parameter, value, \
                 {unit} AS unit FROM readings WHERE channel_id = {id} ",
                quote(name),
                quote(circuit),
                quote(parameter)
            ),
        );
    }
    let sql = sql.replacen(
        "SELECT * FROM (",
        &format!(
            "SELECT ts AS time_utc, ts AT TIME ZONE '{ZONE}' AS time_local, channel, circuit, \
             parameter, value, unit FROM ("
        ),
        1,
    );
    ensure!(
        sql.matches(" AS channel,").count() == ids.len(),
        "the COPY statement lost a channel"
    );
    Ok(format!("COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)"))
}

/// psql's COPY to its standard output, read and counted here.
fn copy(socket: &Path, statement: &str) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let settings = SESSION_SETTINGS
        .split("set_config(")
        .skip(1)
        .filter_map(|part| {
            let mut fields = part.split('\'');
            let name = fields.nth(1)?;
            let value = fields.nth(1)?;
            Some(format!("-c {name}={value}"))
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(socket)
        .args([
            "-p", "5432", "-U", SUPERUSER, "-d", DATABASE, "-c", statement,
        ])
        .env("PGOPTIONS", format!("{settings} -c TimeZone=UTC"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running psql (apt-get install postgresql-client)")?;
    let mut out = child.stdout.take().context("psql's output")?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = out.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
    }
    let output = child.wait_with_output()?;
    ensure!(
        output.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(Measured {
        bytes,
        elapsed: started.elapsed(),
        idle_kib: 0,
        peak_kib: 0,
    })
}

/// A release Trackside as a child process, stopped when dropped.
struct Server {
    http: String,
    process: Process,
    /// An admin's API token: the export needs a viewer's at least.
    token: String,
}

impl Server {
    async fn start(dir: &Path, socket: &Path) -> anyhow::Result<Self> {
        let ports = [free_port()?, free_port()?, free_port()?, free_port()?];
        let [http_port, mqtt_port, mqtt5_port, mqtts_port] = ports;
        let config = dir.join("trackside.toml");
        std::fs::write(
            &config,
            format!(
                "[yard]\ntimezone = \"{ZONE}\"\n\
                 [http]\nlisten = \"127.0.0.1:{http_port}\"\nassets_dir = \"/nonexistent\"\n\
                 [mqtt]\nlisten = \"127.0.0.1:{mqtt_port}\"\nallow_anonymous = true\n\
                 listen_v5 = \"127.0.0.1:{mqtt5_port}\"\ntls_listen = \"127.0.0.1:{mqtts_port}\"\n\
                 [database]\nurl = \"postgres://{SUPERUSER}@localhost/{DATABASE}?host={}&port=5432\"\n\
                 data_dir = \"{}\"\n",
                socket.display(),
                dir.join("trackside-data").display()
            ),
        )?;
        let process = start_trackside(&config)?;
        let http = format!("http://127.0.0.1:{http_port}");
        wait_ready(&http).await?;
        let token = admin_token(&config)?;
        Ok(Self {
            http,
            process,
            token,
        })
    }

    fn status_kib(&self, field: &str) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.0.id()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("{field} missing"))
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        self.status_kib("VmRSS:")
    }

    /// One export, read to its end and counted; the server's peak RSS
    /// during it from VmHWM (reset first through clear_refs) and from
    /// sampling VmRSS every 2 ms, whichever is higher.
    async fn export(&self, client: &reqwest::Client, url: &str) -> anyhow::Result<Measured> {
        let idle_kib = self.rss_kib()?;
        // "5" resets the peak (VmHWM) to the current RSS.
        std::fs::write(format!("/proc/{}/clear_refs", self.process.0.id()), "5")
            .context("resetting the server's peak RSS")?;
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let sampling = sampling.clone();
            let path = format!("/proc/{}/status", self.process.0.id());
            std::thread::spawn(move || {
                let mut peak = 0u64;
                while sampling.load(Ordering::Relaxed) {
                    if let Ok(status) = std::fs::read_to_string(&path)
                        && let Some(kib) = status
                            .lines()
                            .find_map(|l| l.strip_prefix("VmRSS:"))
                            .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
                    {
                        peak = peak.max(kib);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                peak
            })
        };
        let started = Instant::now();
        let mut response = client.get(url).send().await?;
        ensure!(
            response.status().is_success(),
            "export: {}",
            response.text().await.unwrap_or_default()
        );
        let mut bytes = 0u64;
        while let Some(chunk) = response.chunk().await? {
            bytes += chunk.len() as u64;
        }
        let elapsed = started.elapsed();
        sampling.store(false, Ordering::Relaxed);
        let sampled = sampler.join().unwrap_or(0);
        let peak_kib = sampled.max(self.status_kib("VmHWM:")?);
        Ok(Measured {
            bytes,
            elapsed,
            idle_kib,
            peak_kib,
        })
    }
}
