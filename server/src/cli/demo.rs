//! `--demo`: a yard that behaves like one from the first minute. Its
//! layout is put where the diagram reads it, its history is written (a
//! week at the first start, the gap since the last run at later ones),
//! its gateways publish live over MQTT, and once the history is in, the
//! forecasting models are trained in the background, so forecast bands and
//! predicted exceptions appear without anyone asking.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{TimeDelta, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use trackside_wire::TrainState;

use trackside::config::DemoConfig;
use trackside::forecast::Forecasting;
use trackside::sim::{self, Yard, YardOptions, backfill};
use trackside::store::rollup::StoragePath;
use trackside::time::DAY_MS;

/// The kinds the demo trains models for, in order: the relay end first,
/// since the shipped `predicted` rule watches its voltage.
const TRAINED_KINDS: [&str; 2] = ["relay_voltage", "relay_current"];
/// How long training waits for the rollup job to take in the history.
const ROLLUP_WAIT: Duration = Duration::from_secs(600);

/// The demo yard before it runs.
pub struct Demo {
    options: YardOptions,
    days: u32,
}

impl Demo {
    pub fn new(config: &DemoConfig, port: u16, password: Option<String>) -> anyhow::Result<Self> {
        let options = YardOptions {
            host: "127.0.0.1".into(),
            port,
            circuits: config.circuits,
            gateways: config.gateways,
            rate_hz: config.rate_hz,
            seed: sim::DEFAULT_SEED,
            password,
            faults: config.faults,
            start_at_s: 0.0,
            sags: Vec::new(),
        };
        Yard::new(&options)?;
        Ok(Self {
            options,
            days: config.backfill_days,
        })
    }

    /// The gateways the demo publishes as, which need credentials.
    pub fn gateways(config: &DemoConfig) -> anyhow::Result<Vec<String>> {
        let demo = Self::new(config, 0, None)?;
        Ok(Yard::new(&demo.options)?.gateway_names())
    }

    /// The demo's layout file and the yard's name, for a start that has
    /// none configured.
    pub fn layout(config: &DemoConfig) -> (String, Option<String>) {
        let text = sim::yard_layout_text(config.circuits);
        let name = trackside::yard::layout::check(&text, &|_| false)
            .ok()
            .and_then(|l| l.name);
        (text, name)
    }

    /// Writes the demo's layout to `path` unless a layout is there.
    pub fn put_layout(config: &DemoConfig, path: &Path) -> anyhow::Result<()> {
        if path.exists() {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, Self::layout(config).0)
            .with_context(|| format!("writing the demo layout to {}", path.display()))
    }

    /// Runs the demo until `shutdown`: the live yard at once, the history
    /// and the training behind it. A failure of the history or the
    /// training is logged; the live yard goes on.
    pub async fn run(
        mut self,
        pool: PgPool,
        storage: StoragePath,
        forecast: Arc<Forecasting>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let now = Utc::now().timestamp_millis();
        let planning = Yard::new(&self.options)?;
        let plan = backfill::plan(&pool, &planning, now, i64::from(self.days) * DAY_MS).await?;
        self.options.sags = backfill::demo_sags(
            &planning,
            plan.epoch,
            now,
            self.days.max(1),
            self.options.seed,
        );
        let yard = Yard::new(&self.options)?;
        let live = tokio::spawn(sim::run(self.options.clone(), shutdown.clone()));

        let history = async {
            if let Some((from, to)) = plan.range {
                let readings =
                    write_history(&pool, storage, &yard, plan, now, self.options.seed).await?;
                tracing::info!(
                    readings,
                    days = format!("{:.1}", (to - from) as f64 / DAY_MS as f64),
                    "demo history written"
                );
            } else {
                tracing::info!("demo history: reusing what earlier runs wrote");
            }
            let from = now - i64::from(self.days.max(1)) * DAY_MS;
            train_missing(&pool, &forecast, from, now, &shutdown).await
        };
        tokio::select! {
            result = history => {
                if let Err(err) = result {
                    tracing::error!("demo history or training failed (the live yard goes on): {err:#}");
                }
            }
            () = shutdown.cancelled() => {}
        }
        live.await.context("the simulated yard panicked")?
    }
}

async fn write_history(
    pool: &PgPool,
    storage: StoragePath,
    yard: &Yard,
    plan: backfill::Plan,
    zero: i64,
    seed: u64,
) -> anyhow::Result<u64> {
    let Some((from, to)) = plan.range else {
        return Ok(0);
    };
    let days = (to - from) as f64 / DAY_MS as f64;
    tracing::info!(
        days = format!("{days:.1}"),
        "writing the demo yard's history (the live yard runs meanwhile)"
    );
    let bar = indicatif::ProgressBar::new((to - from).max(1) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("  demo history {bar:30} {msg} ({eta} left)")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let mut last_log = std::time::Instant::now();
    let written = backfill::write(pool, storage, yard, plan, zero, seed, |p| {
        let done = (p.written_to - from) as f64 / DAY_MS as f64;
        bar.set_position((p.written_to - from) as u64);
        bar.set_message(format!(
            "{done:.1} of {days:.1} days, {} readings",
            p.readings
        ));
        // A line in the log too, for a terminal that hides the bar.
        if bar.is_hidden() && last_log.elapsed() > Duration::from_secs(10) {
            last_log = std::time::Instant::now();
            tracing::info!(
                "demo history: {done:.1} of {days:.1} days written, {} readings, {:.0} s so far",
                p.readings,
                started.elapsed().as_secs_f64()
            );
        }
    })
    .await;
    bar.finish_and_clear();
    written
}

/// Trains a model for each of [`TRAINED_KINDS`] that has none, one after
/// the other, once the rollup job has taken the history in.
async fn train_missing(
    pool: &PgPool,
    forecast: &Arc<Forecasting>,
    from: i64,
    to: i64,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let missing: Vec<&str> = TRAINED_KINDS
        .into_iter()
        .filter(|kind| forecast.model(kind).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let waited = std::time::Instant::now();
    loop {
        let (dirty,): (i64,) = sqlx::query_as("SELECT count(*) FROM rollup_dirty")
            .fetch_one(pool)
            .await?;
        if dirty < 5_000 || waited.elapsed() > ROLLUP_WAIT {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let time = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    let (from, to) = (time(from), time(to) - TimeDelta::minutes(1));
    for kind in missing {
        if shutdown.is_cancelled() {
            break;
        }
        tracing::info!(
            kind,
            "demo: training the forecasting model in the background"
        );
        let job = match forecast.start_training(
            kind.to_owned(),
            from,
            to,
            None,
            trackside::audit::Actor::server(),
        ) {
            Ok(job) => job,
            Err(refusal) => {
                tracing::warn!(kind, "demo: training not started: {refusal:?}");
                continue;
            }
        };
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            match forecast.job() {
                Some(current) if current.id == job.id && current.state == TrainState::Running => {}
                Some(current) if current.id == job.id => {
                    tracing::info!(kind, state = ?current.state, "demo: training finished");
                    break;
                }
                _ => break,
            }
        }
    }
    Ok(())
}
