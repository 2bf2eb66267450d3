//! The browser benchmark: what an operator waits for on the history page,
//! timed in headless Chromium by the page's own Performance marks
//! (frontend/src/perf.rs), median of `--runs` runs, beside a bare page
//! that fetches the same request and draws the same points with the same
//! uPlot (the limit of the approach), in the same run:
//!
//! - page load to the first chart with data, 8 channels over 7 days;
//! - a preset button (24 h to 7 d) to the chart redrawn with its data;
//! - a drag-zoom to one hour to the chart redrawn from raw readings;
//! - the longest frame while the live tail takes 10 readings/s per channel.
//!
//! ```text
//! cargo xtask bench-ui              # builds the app, then:
//! cargo run --release -p trackside --example ui-bench -- [--reuse] [--runs N]
//! ```
//!
//! It seeds a week of 1 Hz readings of 8 channels ending now into a
//! private PostgreSQL under target/ui-bench (`--reuse` keeps a seed less
//! than six hours old), runs a Trackside in this process serving the built
//! app (target/site) and the bare page, and drives Chromium through
//! chromedriver (Debian's `chromium` and `chromium-driver`). Page loads
//! after the first find the app's files in the browser's cache, as an
//! operator's do.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use fantoccini::actions::{InputSource as _, MouseActions, PointerAction};
use fantoccini::{Client, ClientBuilder, Locator};
use rumqttc::{MqttOptions, QoS};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use trackside::store::embedded_pg::{Durability, EmbeddedPostgres};

use crate::common::{admin_pool, free_port, recreate_database};

mod common;

#[derive(Parser)]
#[command(about = "Time the history page in headless Chromium against a bare uPlot page")]
struct Args {
    /// PostgreSQL server to use (a database `trackside_ui_bench` is made
    /// in it); without one a private cluster runs under --data-dir.
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long, default_value = "target/ui-bench")]
    data_dir: PathBuf,
    /// The built app (`cargo xtask frontend`).
    #[arg(long, default_value = "target/site")]
    site: PathBuf,
    /// Keep the seeded week when it ends less than six hours ago.
    #[arg(long)]
    reuse: bool,
    #[arg(long, default_value_t = 10)]
    runs: usize,
    #[arg(long, default_value_t = 8)]
    channels: i32,
    #[arg(long, default_value_t = 7)]
    days: i64,
    /// How long the live tail runs while frames are timed.
    #[arg(long, default_value_t = 10)]
    live_seconds: u64,
}

const DATABASE: &str = "trackside_ui_bench";
/// Readings per second per channel in the live tail.
const LIVE_HZ: u64 = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter("warn,sqlx=error,rumqttd=error")
        .init();
    let args = Args::parse();
    ensure!(
        args.site.join("index.html").exists(),
        "{} has no built app: run `cargo xtask frontend` (or `cargo xtask bench-ui`)",
        args.site.display()
    );
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
    let (pool, end) = prepare_database(args, &admin).await?;
    let start = end - TimeDelta::days(args.days);
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM channels ORDER BY id")
        .fetch_all(&pool)
        .await?;

    // The app's files and the bare page, served by the server under test.
    let assets = tempfile::Builder::new()
        .prefix("ui-bench-site-")
        .tempdir()?;
    let site = std::fs::canonicalize(&args.site)?;
    for entry in std::fs::read_dir(&site)? {
        let entry = entry?;
        std::os::unix::fs::symlink(entry.path(), assets.path().join(entry.file_name()))?;
    }
    std::fs::write(assets.path().join("bare.html"), BARE_PAGE)?;
    std::fs::write(assets.path().join("bare.js"), BARE_SCRIPT)?;
    std::fs::write(assets.path().join("bare.css"), BARE_STYLE)?;
    let data_dir = tempfile::Builder::new()
        .prefix("ui-bench-data-")
        .tempdir()?;
    let mut config = trackside::config::Config::default();
    config.http.listen = "127.0.0.1:0".parse()?;
    config.http.assets_dir = assets.path().to_path_buf();
    config.mqtt.listen = "127.0.0.1:0".parse()?;
    config.mqtt.listen_v5 = None;
    config.mqtt.tls_listen = None;
    config.mqtt.allow_anonymous = true;
    config.database.data_dir = data_dir.path().to_path_buf();
    let server = trackside::start(&config, pool.clone()).await?;
    let base = format!("http://{}", server.http_addr);
    let mqtt_port = server.mqtt_addr.port();

    let (driver, client) = browser().await?;
    sign_in(&pool, &client, &base).await?;
    let measured = measure(args, &client, &base, mqtt_port, &names, start, end).await;
    let _ = client.close().await;
    drop(driver);
    server.shutdown().await;
    let m = measured?;

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\n{} channels x {} days of 1 Hz readings; Chromium headless, 1600 x 1000, plot {} px \
         ({} points asked); median of {} runs; load average {}\n",
        args.channels,
        args.days,
        m.points,
        m.points,
        args.runs,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("| measure | app ms (median) | bare uPlot page ms | app / bare | target | met |");
    println!("|---|---|---|---|---|---|");
    let row = |what: &str, app: f64, bare: f64, target: f64, ratio_target: Option<f64>| {
        let ratio = app / bare;
        let met = app <= target && ratio_target.is_none_or(|r| ratio <= r);
        let target = match ratio_target {
            Some(r) => format!("≤ {target} ms and ≤ {r}×"),
            None => format!("≤ {target} ms"),
        };
        println!(
            "| {what} | {app:.0} | {bare:.0} | {ratio:.2}× | {target} | {} |",
            if met { "yes" } else { "no" }
        );
    };
    row(
        &format!(
            "page load to first chart with data ({} ch x {} d)",
            args.channels, args.days
        ),
        m.first_chart.0,
        m.first_chart.1,
        500.0,
        None,
    );
    row(
        "preset 24 h → 7 d, chart redrawn",
        m.preset.0,
        m.preset.1,
        150.0,
        Some(1.5),
    );
    row(
        "drag-zoom to 1 h, redrawn from raw readings",
        m.zoom.0,
        m.zoom.1,
        150.0,
        Some(1.5),
    );
    println!(
        "| longest frame, live tail {} readings/s x {} ch for {} s (LoAF max {}) | {:.0} | | | ≤ 50 ms | {} |",
        LIVE_HZ,
        args.channels,
        args.live_seconds,
        m.long_frame
            .map_or("none over 50 ms".to_owned(), |d| format!("{d:.0} ms")),
        m.longest_frame,
        if m.longest_frame <= 50.0 { "yes" } else { "no" }
    );
    println!(
        "\nwhere the time goes (medians, ms; the app's from its request, so \
         without the click's own handling):\n"
    );
    println!("| action, page | request → body | body → decoded | decoded → drawn |");
    println!("|---|---|---|---|");
    for (what, [network, decode, draw]) in &m.phases {
        println!("| {what} | {network:.0} | {decode:.0} | {draw:.0} |");
    }
    println!(
        "\nraw samples (ms): first chart app {:?} bare {:?}; preset app {:?} bare {:?}; \
         zoom app {:?} bare {:?}; live: {} frames, {} live readings drawn",
        m.samples[0],
        m.samples[1],
        m.samples[2],
        m.samples[3],
        m.samples[4],
        m.samples[5],
        m.frames,
        m.live_readings
    );
    Ok(())
}

struct Measured {
    points: u32,
    first_chart: (f64, f64),
    preset: (f64, f64),
    zoom: (f64, f64),
    /// Medians of request → body, body → decoded, decoded → drawn.
    phases: [(&'static str, [f64; 3]); 4],
    longest_frame: f64,
    long_frame: Option<f64>,
    frames: u64,
    live_readings: u64,
    samples: [Vec<f64>; 6],
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Args,
    client: &Client,
    base: &str,
    mqtt_port: u16,
    names: &[String],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> anyhow::Result<Measured> {
    let channels = names.join(",");
    let (from, to) = (start.timestamp_millis(), end.timestamp_millis());
    let page = format!("{base}/history?channels={channels}&from={from}&to={to}");

    // Page load to the first chart with data.
    let mut first_app = Vec::new();
    let mut points = 0;
    for run in 0..=args.runs {
        client.goto(&page).await?;
        let drawn = wait_mark(client, "history:drawn", 0).await?;
        if run == 0 {
            // The first load fills the browser's cache; not timed.
            let request = last_mark(client, "history:request").await?;
            points = request.1["points"].as_f64().unwrap_or(1000.0) as u32;
            continue;
        }
        first_app.push(drawn.0);
    }
    print!("first chart {first_app:?} ... ");

    // A preset: 24 h, then 7 d timed from the click to its data drawn.
    let mut preset_app = Vec::new();
    let mut preset_phases = Vec::new();
    for _ in 0..args.runs {
        click_preset(client, "24h").await?;
        let before = marks(client, "history:drawn").await?.len();
        click_preset(client, "7d").await?;
        let drawn = wait_mark(client, "history:drawn", before).await?;
        let clicked = last_mark(client, "history:preset").await?;
        preset_app.push(drawn.0 - clicked.0);
        preset_phases.push(phases(client, false).await?);
    }
    print!("preset {preset_app:?} ... ");

    // A drag across one hour of the 24-hour view, from the drag's end to
    // the raw readings drawn.
    let mut zoom_app = Vec::new();
    let mut zoom_phases = Vec::new();
    for _ in 0..args.runs {
        click_preset(client, "24h").await?;
        let before = marks(client, "history:drawn").await?.len();
        drag_hour(client).await?;
        let drawn = wait_mark(client, "history:drawn", before).await?;
        let zoomed = last_mark(client, "history:zoom").await?;
        let source = client
            .find(Locator::Css("[data-testid=history-chart]"))
            .await?
            .attr("data-source")
            .await?;
        ensure!(
            source.as_deref() == Some("raw"),
            "the zoomed hour came from {source:?}, not raw readings"
        );
        zoom_app.push(drawn.0 - zoomed.0);
        zoom_phases.push(phases(client, false).await?);
    }
    println!("zoom {zoom_app:?}");

    // The live tail: the 1-hour live view while a gateway publishes.
    click_preset(client, "1h").await?;
    let frames = live_frames(client, mqtt_port, names, args.live_seconds).await?;

    // The bare page: the same requests, the same points, the same uPlot.
    let bare = format!("{base}/bare.html?channels={channels}&points={points}");
    let mut first_bare = Vec::new();
    for run in 0..=args.runs {
        client.goto(&format!("{bare}&from={from}&to={to}")).await?;
        let drawn = wait_mark(client, "bare:drawn", 0).await?;
        if run > 0 {
            first_bare.push(drawn.0);
        }
    }
    let now = Utc::now().timestamp_millis();
    let mut preset_bare = Vec::new();
    let mut zoom_bare = Vec::new();
    let (mut preset_bare_phases, mut zoom_bare_phases) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        bare_load(client, now - 86_400_000, now).await?;
        preset_bare.push(bare_load(client, now - 7 * 86_400_000, now).await?);
        preset_bare_phases.push(phases(client, true).await?);
        let hour_end = now - 3_600_000;
        zoom_bare.push(bare_load(client, hour_end - 3_600_000, hour_end).await?);
        zoom_bare_phases.push(phases(client, true).await?);
    }
    println!("bare: first {first_bare:?} preset {preset_bare:?} zoom {zoom_bare:?}");

    Ok(Measured {
        points,
        first_chart: (median(&first_app), median(&first_bare)),
        preset: (median(&preset_app), median(&preset_bare)),
        zoom: (median(&zoom_app), median(&zoom_bare)),
        phases: [
            ("preset, app", median_phases(&preset_phases)),
            ("preset, bare", median_phases(&preset_bare_phases)),
            ("zoom, app", median_phases(&zoom_phases)),
            ("zoom, bare", median_phases(&zoom_bare_phases)),
        ],
        longest_frame: frames.longest,
        long_frame: frames.long_animation_frame,
        frames: frames.count,
        live_readings: frames.readings,
        samples: [
            first_app,
            first_bare,
            preset_app,
            preset_bare,
            zoom_app,
            zoom_bare,
        ],
    })
}

/// Signs the browser in as a viewer, as the demo's banner does: through a
/// one-time sign-in link, which lands on the board.
async fn sign_in(pool: &PgPool, client: &Client, base: &str) -> anyhow::Result<()> {
    let user = match trackside::auth::users::by_name(pool, "bench").await? {
        Some(user) => user,
        None => {
            let hash = trackside::auth::password::hash_now("bench password 1234")?;
            trackside::auth::users::add(pool, "bench", trackside_wire::Role::Viewer, &hash, true)
                .await
                .map_err(|e| anyhow::anyhow!("adding the bench user: {e:?}"))?
        }
    };
    let link = trackside::auth::tokens::issue_link(pool, user.id).await?;
    client.goto(&format!("{base}/signin#link={link}")).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let signed_in = match client.find(Locator::Css("[data-testid=user-name]")).await {
            Ok(name) => name.text().await.unwrap_or_default() == "bench",
            Err(_) => false,
        };
        if signed_in {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the sign-in link did not sign in"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where an action's time went, from the page's latest marks: the
/// request to its answer's body (network and server), the body to its
/// decoded data, the data to the chart drawn. Marks of the app, or of the
/// bare page when `bare`.
async fn phases(client: &Client, bare: bool) -> anyhow::Result<[f64; 3]> {
    let names = if bare {
        ["bare:request", "bare:received", "bare:parsed", "bare:drawn"]
    } else {
        [
            "history:request",
            "received /api/history",
            "history:answered",
            "history:drawn",
        ]
    };
    let mut at = [0.0; 4];
    for (slot, name) in at.iter_mut().zip(names) {
        *slot = last_mark(client, name).await?.0;
    }
    Ok([at[1] - at[0], at[2] - at[1], at[3] - at[2]])
}

/// Medians of each phase.
fn median_phases(samples: &[[f64; 3]]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = median(&samples.iter().map(|p| p[i]).collect::<Vec<_>>());
    }
    out
}

/// Every mark of this name on the page: (startTime ms, detail).
async fn marks(client: &Client, name: &str) -> anyhow::Result<Vec<(f64, Value)>> {
    let found = client
        .execute(
            "return performance.getEntriesByName(arguments[0], 'mark')
                 .map(m => [m.startTime, m.detail]);",
            vec![json!(name)],
        )
        .await?;
    let Value::Array(found) = found else {
        bail!("performance marks: unexpected {found}");
    };
    Ok(found
        .into_iter()
        .filter_map(|m| {
            let time = m.get(0)?.as_f64()?;
            Some((time, m.get(1).cloned().unwrap_or(Value::Null)))
        })
        .collect())
}

async fn last_mark(client: &Client, name: &str) -> anyhow::Result<(f64, Value)> {
    marks(client, name)
        .await?
        .pop()
        .with_context(|| format!("no {name} mark"))
}

/// Waits for a mark of this name beyond the first `seen`; returns it.
async fn wait_mark(client: &Client, name: &str, seen: usize) -> anyhow::Result<(f64, Value)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = marks(client, name).await.unwrap_or_default();
        if let Some(mark) = found.into_iter().nth(seen) {
            return Ok(mark);
        }
        ensure!(Instant::now() < deadline, "no {name} mark within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn click_preset(client: &Client, key: &str) -> anyhow::Result<()> {
    let before = marks(client, "history:drawn").await?.len();
    client
        .find(Locator::Css(&format!("button[data-range=\"{key}\"]")))
        .await?
        .click()
        .await?;
    wait_mark(client, "history:drawn", before).await?;
    Ok(())
}

/// Drags across the 23rd hour of a 24-hour view. WebDriver's pointer
/// offsets are from the element's centre, the view's 12th hour.
async fn drag_hour(client: &Client) -> anyhow::Result<()> {
    let over = client.find(Locator::Css(".chart .u-over")).await?;
    let (_, _, width, _) = over.rectangle().await?;
    let at = |hour: f64| PointerAction::MoveToElement {
        element: over.clone(),
        duration: Some(Duration::from_millis(50)),
        x: width * (hour - 12.0) / 24.0,
        y: 0.0,
    };
    let drag = MouseActions::new("mouse".into())
        .then(at(22.0))
        .then(PointerAction::Down {
            button: fantoccini::actions::MOUSE_BUTTON_LEFT,
        })
        .then(at(23.0))
        .then(PointerAction::Up {
            button: fantoccini::actions::MOUSE_BUTTON_LEFT,
        });
    client.perform_actions(drag).await?;
    client.release_actions().await?;
    Ok(())
}

/// The bare page's in-page time from asking for `[from, to)` to drawn.
async fn bare_load(client: &Client, from: i64, to: i64) -> anyhow::Result<f64> {
    let ms = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             window.bench.load(arguments[0], arguments[1]).then(done);",
            vec![json!(from), json!(to)],
        )
        .await?;
    ms.as_f64().context("the bare page's timing")
}

struct Frames {
    longest: f64,
    long_animation_frame: Option<f64>,
    count: u64,
    readings: u64,
}

/// Publishes `LIVE_HZ` readings per second per channel for `seconds` while
/// the page times every animation frame (requestAnimationFrame intervals)
/// and collects long animation frames (over 50 ms, as Chromium reports
/// them).
async fn live_frames(
    client: &Client,
    mqtt_port: u16,
    names: &[String],
    seconds: u64,
) -> anyhow::Result<Frames> {
    client
        .execute(
            "const f = window.__frames = {longest: 0, count: 0, last: 0, loaf: null, stop: false};
             const tick = t => {
                 if (f.last) { f.longest = Math.max(f.longest, t - f.last); f.count++; }
                 f.last = t;
                 if (!f.stop) requestAnimationFrame(tick);
             };
             requestAnimationFrame(tick);
             try {
                 new PerformanceObserver(list => {
                     for (const e of list.getEntries()) f.loaf = Math.max(f.loaf || 0, e.duration);
                 }).observe({type: 'long-animation-frame'});
             } catch (e) {}
             return true;",
            vec![],
        )
        .await?;
    let newest_before = newest(client).await?;
    let mut options = MqttOptions::new("ui-bench-gw", "127.0.0.1", mqtt_port);
    options.set_keep_alive(Duration::from_secs(30));
    let (gateway, mut eventloop) = trackside::ingest::mqtt_client(options, 100);
    let poller = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let started = Instant::now();
    let mut sent = 0u64;
    let mut next = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        next += Duration::from_millis(1_000 / LIVE_HZ);
        tokio::time::sleep_until(next).await;
        let ts = Utc::now().timestamp_millis();
        let readings: Vec<Value> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                json!({"channel": name, "ts": ts, "value": 1.5 + 0.01 * ((sent + i as u64) % 20) as f64})
            })
            .collect();
        gateway
            .publish(
                "trackside/ui-bench-gw/readings",
                QoS::AtLeastOnce,
                false,
                json!({ "readings": readings }).to_string(),
            )
            .await?;
        sent += 1;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    poller.abort();
    let result = client
        .execute(
            "const f = window.__frames; f.stop = true;
             return [f.longest, f.count, f.loaf];",
            vec![],
        )
        .await?;
    let newest_after = newest(client).await?;
    ensure!(
        newest_after > newest_before,
        "the page drew no live reading (newest {newest_before} -> {newest_after})"
    );
    Ok(Frames {
        longest: result[0].as_f64().unwrap_or(f64::NAN),
        count: result[1].as_u64().unwrap_or(0),
        long_animation_frame: result[2].as_f64(),
        readings: sent * names.len() as u64,
    })
}

async fn newest(client: &Client) -> anyhow::Result<i64> {
    let newest = client
        .find(Locator::Css("[data-testid=history-chart]"))
        .await?
        .attr("data-newest")
        .await?;
    Ok(newest.and_then(|n| n.parse().ok()).unwrap_or(0))
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

async fn prepare_database(
    args: &Args,
    admin: &PgConnectOptions,
) -> anyhow::Result<(PgPool, DateTime<Utc>)> {
    let (admin_pool, exists) = admin_pool(admin, DATABASE).await?;
    let options = admin.clone().database(DATABASE);
    let expected = i64::from(args.channels) * args.days * 86_400;
    if args.reuse && exists {
        let pool = connect(&options).await?;
        let shape: Option<(i64, DateTime<Utc>)> =
            sqlx::query_as("SELECT count(*), max(ts) FROM readings HAVING count(*) > 0")
                .fetch_optional(&pool)
                .await
                .unwrap_or(None);
        match shape {
            Some((rows, newest))
                if rows == expected && Utc::now() - newest < TimeDelta::hours(6) =>
            {
                println!("reusing {rows} seeded readings (up to {newest})");
                trackside::migrate(&pool).await?;
                return Ok((pool, newest + TimeDelta::seconds(1)));
            }
            _ => {
                println!("the seeded week is missing or old: seeding again");
                pool.close().await;
            }
        }
    }
    recreate_database(&admin_pool, DATABASE).await?;
    admin_pool.close().await;
    let pool = connect(&options).await?;
    trackside::migrate(&pool).await?;
    let end = DateTime::from_timestamp(Utc::now().timestamp(), 0).context("now")?;
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
    sqlx::query("INSERT INTO gateways (id) VALUES ('ui-bench-gw')")
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO channels (name, circuit, parameter, unit, gateway_id)
         SELECT format('T%s/relay_voltage', 100 + i), format('T%s', 100 + i),
                'relay_voltage', 'V', 'ui-bench-gw'
         FROM generate_series(1, $1) AS i",
    )
    .bind(args.channels)
    .execute(pool)
    .await?;
    let start = end - TimeDelta::days(args.days);
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    sqlx::query("ALTER TABLE readings DISABLE TRIGGER readings_mark_dirty")
        .execute(&mut *tx)
        .await?;
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
    sqlx::query("VACUUM ANALYZE readings").execute(pool).await?;
    trackside::store::rollup::rebuild(pool, start, end).await?;
    println!(
        "seeded {inserted} readings and their rollups in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A chromedriver child in its own process group, killed with the
/// Chromium it started when dropped.
struct ChromeDriver {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        if let Ok(group) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(group),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser() -> anyhow::Result<(ChromeDriver, Client)> {
    let port = free_port()?;
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting chromedriver (Debian's chromium-driver; `cargo xtask setup`)")?;
    let profile = tempfile::tempdir()?;
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1600,1000",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }
    });
    let Value::Object(capabilities) = capabilities else {
        bail!("capabilities");
    };
    let driver = ChromeDriver {
        child,
        _profile: profile,
    };
    let webdriver = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let session = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&webdriver)
            .await;
        match session {
            Ok(client) => return Ok((driver, client)),
            Err(err) if Instant::now() > deadline => bail!("chromedriver: {err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A page that asks `/api/history` what the app asks and draws the answer
/// with the same uPlot, as the app does (per channel a min-max band and an
/// average line), with nothing else: the limit of the approach. It marks
/// `bare:drawn` after each draw; `window.bench.load(from, to)` resolves to
/// the milliseconds from asking to drawn.
const BARE_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>bare uPlot</title>
<link rel="stylesheet" href="/uPlot.min.css">
<link rel="stylesheet" href="/bare.css">
<script src="/uPlot.iife.min.js"></script></head>
<body><div id="chart"></div><script src="/bare.js"></script></body></html>
"#;

/// The bare page's script and style: files of their own, as the app's
/// Content-Security-Policy wants (no inline script or style).
const BARE_SCRIPT: &str = r##"const q = new URLSearchParams(location.search);
const channels = q.get("channels");
const points = +q.get("points");
const colours = ["#5ea3e8", "#e0a84a", "#46b98f", "#d783c9", "#e86a5e", "#4fc4cf", "#b8c95a", "#9c8cf0"];
let plot = null, pending = null;
function columns(h) {
  const xs = [...new Set(h.series.flatMap(s => s.t))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  const data = [xs];
  for (const s of h.series) {
    const lo = new Array(xs.length).fill(null), hi = lo.slice(), avg = lo.slice();
    s.t.forEach((t, i) => {
      const j = at.get(t);
      if (s.kind === "buckets") { lo[j] = s.min[i]; hi[j] = s.max[i]; avg[j] = s.avg[i]; }
      else { lo[j] = hi[j] = avg[j] = s.value[i]; }
    });
    data.push(lo, hi, avg);
  }
  return data;
}
function options(h) {
  const series = [{}], bands = [];
  h.series.forEach((s, i) => {
    const c = colours[i % colours.length], base = 1 + 3 * i;
    series.push({stroke: c, width: 0, points: {show: false}}, {stroke: c, width: 0, points: {show: false}},
                {label: s.channel, stroke: c, width: 1.5, points: {show: false}});
    bands.push({series: [base + 1, base], fill: c + "33"});
  });
  return {width: points, height: 440, ms: 1, series, bands, scales: {x: {time: true}},
          hooks: {draw: [() => { performance.mark("bare:drawn"); if (pending) { pending(); pending = null; } }]}};
}
async function load(from, to) {
  const t0 = performance.now();
  performance.mark("bare:request");
  const r = await fetch(`/api/history?channels=${channels}&from=${from}&to=${to}&points=${points}`);
  const text = await r.text();
  performance.mark("bare:received");
  const h = JSON.parse(text);
  const data = columns(h);
  performance.mark("bare:parsed");
  await new Promise(resolve => {
    pending = resolve;
    if (!plot) plot = new uPlot(options(h), data, document.getElementById("chart"));
    else plot.setData(data);
  });
  return performance.now() - t0;
}
window.bench = {load};
load(+q.get("from"), +q.get("to"));
"##;

const BARE_STYLE: &str = "body { margin: 0; background: #0f1720; color: #93a1b1; }\n";
