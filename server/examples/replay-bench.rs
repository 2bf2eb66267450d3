//! The replay benchmark: a day of a 200-circuit yard, then
//! `GET /api/replay` over the whole day beside its baselines in the same
//! run (the same read without HTTP and JSON, and fetching every stored
//! relay reading, which is what replay would cost without collapsing
//! re-sends), then playback of that day at 60× in headless Chromium,
//! with frame times read from the page through WebDriver beside the same
//! page paused.
//!
//! ```text
//! cargo xtask bench-replay            # or, after `cargo xtask frontend`:
//! cargo run --release -p trackside --example replay-bench -- [--circuits 200]
//! ```
//!
//! The yard is the simulator's generated yard (roads of 12 circuits, 8
//! trains an hour on each) written by the demo's backfill: relay states at
//! every change and re-sent every 10 s as gateways do, analogue values
//! every 15 s. A private PostgreSQL runs under target/replay-bench.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use trackside::sim::{Yard, YardOptions, backfill};
use trackside::store::embedded_pg::{Durability, EmbeddedPostgres};
use trackside::store::rollup::StoragePath;
use trackside_wire::{Replay, Role};

#[derive(Parser)]
#[command(about = "Measure GET /api/replay and playback at 60x in Chromium")]
struct Args {
    #[arg(long, default_value_t = 200)]
    circuits: usize,
    #[arg(long, default_value_t = 24)]
    hours: i64,
    #[arg(long, default_value = "target/replay-bench")]
    data_dir: PathBuf,
    /// Timed requests per measurement (after two untimed warm-ups).
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Seconds of playback measured in the browser.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The built app (`cargo xtask frontend`).
    #[arg(long, default_value = "target/site")]
    site: PathBuf,
}

const TRAINS_PER_HOUR: f64 = 8.0;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter("warn,sqlx=error,trackside::http=error")
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.site.join("index.html").exists(),
        "{} has no built app: run `cargo xtask frontend` first",
        args.site.display()
    );
    let _ = std::fs::remove_dir_all(&args.data_dir);
    let dir = args.data_dir.join("pg");
    let pg = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start(&dir, None, Durability::Throwaway)
    })
    .await??;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(pg.connect_options("postgres"))
        .await?;
    trackside::migrate(&pool).await?;

    // The yard and its day.
    let layout_text = trackside::yard::layout::generated(args.circuits, 12, TRAINS_PER_HOUR);
    let layout_path = args.data_dir.join("layout.toml");
    std::fs::write(&layout_path, &layout_text)?;
    let options = YardOptions {
        host: String::new(),
        port: 0,
        circuits: args.circuits,
        gateways: args.circuits.div_ceil(25),
        rate_hz: 2.0,
        seed: 1,
        password: None,
        faults: false,
        start_at_s: 0.0,
        sags: Vec::new(),
    };
    let yard = Yard::with_layout(&layout_text, &options)?;
    let to = chrono::Utc::now().timestamp_millis().div_euclid(60_000) * 60_000;
    let from = to - args.hours * 3_600_000;
    print!(
        "seeding {} h of a {}-circuit yard ({} trains an hour per road)... ",
        args.hours, args.circuits, TRAINS_PER_HOUR
    );
    flush();
    let started = Instant::now();
    let plan = backfill::plan(&pool, &yard, to, to - from).await?;
    // The benchmark seeds plain tables (its own private cluster).
    let written = backfill::write(&pool, StoragePath::Plain, &yard, plan, to, 1, |_| {}).await?;
    sqlx::query("VACUUM ANALYZE readings")
        .execute(&pool)
        .await?;
    println!(
        "{written} readings in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let mut config = trackside::config::Config::default();
    config.http.listen = "127.0.0.1:0".parse()?;
    config.mqtt.listen = "127.0.0.1:0".parse()?;
    config.mqtt.listen_v5 = None;
    config.mqtt.tls_listen = None;
    config.http.assets_dir = args.site.clone();
    config.database.data_dir = args.data_dir.join("server");
    config.yard.layout = Some(layout_path);
    let server = trackside::start(&config, pool.clone()).await?;
    let base = format!("http://{}", server.http_addr);
    // A viewer, as a control-room screen signs in: a token for the API
    // requests, a one-time sign-in link for the browser.
    let hash = trackside::auth::password::hash_now(&trackside::auth::users::one_time_password())?;
    let viewer = trackside::auth::users::add(&pool, "replay bench", Role::Viewer, &hash, true)
        .await
        .map_err(|e| anyhow::anyhow!("adding the benchmark's viewer: {e:?}"))?;
    let (token, _) =
        trackside::auth::tokens::issue(&pool, &viewer, "replay bench", Role::Viewer, 1)
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
    let link = trackside::auth::tokens::issue_link(&pool, viewer.id).await?;

    // The API, the same read bare, and every stored relay reading.
    let url = format!("{base}/api/replay?from={from}&to={to}");
    let mut api = Vec::new();
    let mut answer: Option<Replay> = None;
    let mut json_bytes = 0;
    for i in 0..args.iterations + 2 {
        let started = Instant::now();
        let response = client.get(&url).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        anyhow::ensure!(
            status.is_success(),
            "{status}: {}",
            String::from_utf8_lossy(&body)
        );
        let replay: Replay = serde_json::from_slice(&body)?;
        if i >= 2 {
            api.push(started.elapsed());
        }
        json_bytes = body.len();
        answer = Some(replay);
    }
    let answer = answer.context("no answer")?;
    let mut bare = Vec::new();
    for i in 0..args.iterations + 2 {
        let started = Instant::now();
        let recorded = trackside::yard::replay::read(&pool, from, to, None)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if i >= 2 {
            bare.push(started.elapsed());
        }
        anyhow::ensure!(recorded.changes.len() == answer.changes.len());
    }
    let mut every = Vec::new();
    let mut stored = 0;
    for i in 0..args.iterations + 2 {
        let started = Instant::now();
        let rows: Vec<(i32, chrono::DateTime<chrono::Utc>, f64)> = sqlx::query_as(
            "SELECT r.channel_id, r.ts, r.value FROM readings r
             JOIN channels c ON c.id = r.channel_id
             WHERE c.parameter = 'relay_state' AND r.ts >= $1 AND r.ts < $2
             ORDER BY r.ts",
        )
        .bind(chrono::DateTime::from_timestamp_millis(from))
        .bind(chrono::DateTime::from_timestamp_millis(to))
        .fetch_all(&pool)
        .await?;
        if i >= 2 {
            every.push(started.elapsed());
        }
        stored = rows.len();
    }
    let (api, bare, every) = (stats(api), stats(bare), stats(every));

    // Playback in Chromium.
    let frames = playback(&base, &link, from, to, args.seconds).await;

    println!();
    println!(
        "replay of {} h, {} circuits: {} changes of {} stored relay readings ({:.1} % kept), {} movements, {:.1} MB of JSON",
        args.hours,
        answer.start.len(),
        answer.changes.len(),
        stored,
        answer.changes.len() as f64 * 100.0 / stored.max(1) as f64,
        answer.movements.len(),
        json_bytes as f64 / 1e6
    );
    println!();
    println!("| measurement | p50 | p99 | target |");
    println!("|---|---|---|---|");
    println!(
        "| `GET /api/replay`, {} h x {} circuits, through reqwest + JSON | {:.0} ms | {:.0} ms | p50 < 1000 ms: {} |",
        args.hours,
        args.circuits,
        api.p50,
        api.p99,
        if api.p50 < 1000.0 { "met" } else { "missed" }
    );
    println!(
        "| the same read without HTTP (`yard::replay::read`) | {:.0} ms | {:.0} ms | |",
        bare.p50, bare.p99
    );
    println!(
        "| baseline: fetch every stored relay reading ({stored} rows) | {:.0} ms | {:.0} ms | |",
        every.p50, every.p99
    );
    match frames {
        Ok((playing, paused)) => {
            println!();
            println!("| page | frames/s | p50 frame | p95 frame | frames over 33 ms | target |");
            println!("|---|---|---|---|---|---|");
            println!(
                "| playing at 60× (a yard minute per second) | {:.1} | {:.1} ms | {:.1} ms | {} of {} | ≥ 30 frames/s: {} |",
                playing.fps,
                playing.p50,
                playing.p95,
                playing.slow,
                playing.frames,
                if playing.fps >= 30.0 { "met" } else { "missed" }
            );
            println!(
                "| baseline: the same page paused | {:.1} | {:.1} ms | {:.1} ms | {} of {} | |",
                paused.fps, paused.p50, paused.p95, paused.slow, paused.frames
            );
        }
        Err(err) => println!("\nplayback not measured: {err:#}"),
    }
    server.shutdown().await;
    pool.close().await;
    drop(pg);
    Ok(())
}

struct Stats {
    p50: f64,
    p99: f64,
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

struct Frames {
    frames: usize,
    fps: f64,
    p50: f64,
    p95: f64,
    slow: usize,
}

/// Frame intervals the page's own animation frames see, over `seconds`.
const MEASURE: &str = r#"
const [seconds, done] = [arguments[0], arguments[arguments.length - 1]];
const times = [];
const start = performance.now();
function frame(now) {
  times.push(now);
  if (now - start < seconds * 1000) { requestAnimationFrame(frame); } else { done(times); }
}
requestAnimationFrame(frame);
"#;

fn frame_stats(times: &[f64]) -> Frames {
    let mut gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let span = times.last().copied().unwrap_or(0.0) - times.first().copied().unwrap_or(0.0);
    gaps.sort_by(f64::total_cmp);
    let at = |q: f64| {
        gaps.get(((gaps.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Frames {
        frames: gaps.len(),
        fps: gaps.len() as f64 / (span / 1000.0).max(1e-9),
        p50: at(0.5),
        p95: at(0.95),
        slow: gaps.iter().filter(|&&g| g > 33.4).count(),
    }
}

async fn playback(
    base: &str,
    link: &str,
    from: i64,
    to: i64,
    seconds: u64,
) -> anyhow::Result<(Frames, Frames)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let profile = tempfile::tempdir()?;
    let driver = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        // Chromium runs in chromedriver's group; both go when it is killed.
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("chromedriver (Debian's chromium-driver)")?;
    let _driver = Killed(driver);
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1600,1000",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        anyhow::bail!("capabilities");
    };
    let mut browser = None;
    for _ in 0..100 {
        if let Ok(client) =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
        {
            browser = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let browser = browser.context("chromedriver did not accept a session")?;
    let result = measure(&browser, base, link, from, to, seconds).await;
    let _ = browser.close().await;
    result
}

async fn measure(
    browser: &Client,
    base: &str,
    link: &str,
    from: i64,
    to: i64,
    seconds: u64,
) -> anyhow::Result<(Frames, Frames)> {
    browser.goto(&format!("{base}/signin#link={link}")).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while browser
        .find(Locator::Css("[data-testid=user-name]"))
        .await
        .is_err()
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the sign-in link did not sign in"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser
        .goto(&format!(
            "{base}/diagram?from={from}&to={to}&at={from}&speed=60"
        ))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let bar = browser.find(Locator::Css("[data-testid=replay-bar]")).await;
        if let Ok(bar) = bar
            && bar.attr("data-state").await?.as_deref() == Some("ready")
        {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the replay did not load");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let times = |value: serde_json::Value| -> Vec<f64> {
        value
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default()
    };
    let paused = frame_stats(&times(
        browser.execute_async(MEASURE, vec![json!(seconds)]).await?,
    ));
    browser
        .find(Locator::Css("[data-testid=replay-play]"))
        .await?
        .click()
        .await?;
    let before = cursor(browser).await?;
    let playing = frame_stats(&times(
        browser.execute_async(MEASURE, vec![json!(seconds)]).await?,
    ));
    let after = cursor(browser).await?;
    // 60× for `seconds` moves the replay clock by about a minute a second.
    anyhow::ensure!(
        after > before + (seconds as i64 - 1) * 60_000 / 2,
        "the replay clock did not advance while measured ({before} to {after})"
    );
    Ok((playing, paused))
}

async fn cursor(browser: &Client) -> anyhow::Result<i64> {
    let at = browser
        .find(Locator::Css("[data-testid=replay-time]"))
        .await?
        .attr("data-at")
        .await?
        .unwrap_or_default();
    Ok(at.parse()?)
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Ok(group) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(group),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn flush() {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}
