//! Forecasts: training models from the logged history, computing forecasts
//! for every channel of a trained kind, and handing them to the exception
//! engine (predicted exceedances). The network itself is the
//! `trackside-forecast` crate.
//!
//! Nothing here is on the ingest path: the forecaster is a task of its own
//! that reads the minute rollups once a minute and runs the network on a
//! blocking thread; training runs on a blocking thread too, one job at a
//! time. See docs/design/forecasting.md.

pub mod data;
pub mod eval;
pub mod http;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use trackside_forecast::{Forecaster, ModelInfo, Point, Spec, TrainOptions};
use trackside_wire::{ForecastModel, TrainJob, TrainState};

use crate::audit::{self, Actor};
use crate::config::ForecastConfig;
use crate::exceptions::Feed;

/// Longest range a model may be trained on.
pub const MAX_TRAIN_DAYS: i64 = 366;

/// What the forecaster last computed for one channel.
#[derive(Debug, Clone)]
pub struct ChannelForecast {
    pub kind: String,
    pub computed_at: i64,
    pub points: Vec<Point>,
}

/// Why a training request was refused.
#[derive(Debug)]
pub enum TrainRefusal {
    Busy(Box<TrainJob>),
    Invalid(String),
}

/// The models, the latest forecasts and the training job, shared by the
/// HTTP handlers and the forecaster task.
pub struct Forecasting {
    pool: PgPool,
    config: ForecastConfig,
    dir: PathBuf,
    models: RwLock<HashMap<String, Loaded>>,
    forecasts: RwLock<HashMap<String, Arc<ChannelForecast>>>,
    job: Mutex<Option<TrainJob>>,
    next_job: AtomicU64,
    /// Set by shutdown: a running training stops at its next batch.
    stopping: AtomicBool,
    /// Wakes the forecaster early (a model was trained).
    wake: Notify,
}

struct Loaded {
    model: Arc<Forecaster>,
    /// The metadata file's modification time: a model trained by the CLI
    /// beside a running server replaces the loaded one at the next run.
    modified: Option<SystemTime>,
}

impl Forecasting {
    /// Has running training jobs stop at their next epoch (shutdown).
    pub fn stop_training(&self) {
        self.stopping.store(true, Relaxed);
    }

    /// Loads every saved model under `data_dir/forecast`.
    pub fn new(pool: PgPool, config: ForecastConfig, data_dir: &Path) -> Arc<Self> {
        let forecasting = Arc::new(Self {
            pool,
            config,
            dir: models_dir(data_dir),
            models: RwLock::new(HashMap::new()),
            forecasts: RwLock::new(HashMap::new()),
            job: Mutex::new(None),
            next_job: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            wake: Notify::new(),
        });
        forecasting.reload_models();
        forecasting
    }

    pub fn models(&self) -> Vec<ForecastModel> {
        let models = self.models.read().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<ForecastModel> = models
            .values()
            .map(|l| model_summary(l.model.info()))
            .collect();
        list.sort_by(|a, b| a.kind.cmp(&b.kind));
        list
    }

    pub fn model(&self, kind: &str) -> Option<Arc<Forecaster>> {
        let models = self.models.read().unwrap_or_else(|e| e.into_inner());
        models.get(kind).map(|l| l.model.clone())
    }

    pub fn forecast(&self, channel: &str) -> Option<Arc<ChannelForecast>> {
        let forecasts = self.forecasts.read().unwrap_or_else(|e| e.into_inner());
        forecasts.get(channel).cloned()
    }

    pub fn job(&self) -> Option<TrainJob> {
        self.job.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.config.interval_s)
    }

    /// Picks up models saved since the last look (by this server or by
    /// `trackside train`), and drops those whose files are gone.
    fn reload_models(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut seen = Vec::new();
        for entry in entries.flatten() {
            let dir = entry.path();
            let Some(kind) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            let modified = std::fs::metadata(dir.join("model.json"))
                .and_then(|m| m.modified())
                .ok();
            if modified.is_none() {
                continue;
            }
            seen.push(kind.clone());
            let current = {
                let models = self.models.read().unwrap_or_else(|e| e.into_inner());
                models.get(&kind).map(|l| l.modified)
            };
            if current == Some(modified) {
                continue;
            }
            match Forecaster::load(&dir) {
                Ok(model) => {
                    tracing::info!(
                        kind,
                        validation_mae = model.info().validation_mae,
                        "forecast model loaded"
                    );
                    self.install(kind, Arc::new(model), modified);
                }
                Err(err) => {
                    tracing::error!(kind, dir = %dir.display(), "cannot load forecast model: {err}")
                }
            }
        }
        let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
        models.retain(|kind, _| seen.contains(kind));
    }

    fn install(&self, kind: String, model: Arc<Forecaster>, modified: Option<SystemTime>) {
        let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
        models.insert(kind, Loaded { model, modified });
    }

    /// Starts training a model of `kind` on `[from, to)` in the background.
    pub fn start_training(
        self: &Arc<Self>,
        kind: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        epochs: Option<usize>,
        actor: Actor,
    ) -> Result<TrainJob, TrainRefusal> {
        check_range(&kind, from, to).map_err(TrainRefusal::Invalid)?;
        let epochs = epochs.unwrap_or(self.config.epochs);
        if !(1..=1_000).contains(&epochs) {
            return Err(TrainRefusal::Invalid(
                "epochs must be between 1 and 1000".into(),
            ));
        }
        let job = {
            let mut slot = self.job.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(running) = slot.as_ref().filter(|j| j.state == TrainState::Running) {
                return Err(TrainRefusal::Busy(Box::new(running.clone())));
            }
            let job = TrainJob {
                id: self.next_job.fetch_add(1, Relaxed),
                kind: kind.clone(),
                from: from.timestamp_millis(),
                to: to.timestamp_millis(),
                state: TrainState::Running,
                stage: "reading history".into(),
                epoch: 0,
                epochs,
                validation_mae: None,
                started_at: Utc::now().timestamp_millis(),
                finished_at: None,
                error: None,
            };
            *slot = Some(job.clone());
            job
        };
        let this = self.clone();
        let id = job.id;
        tokio::spawn(async move {
            let result = this.run_training(kind.clone(), from, to, epochs, id).await;
            if let Ok(info) = &result {
                audit::record(
                    &this.pool,
                    &actor,
                    audit::action::MODEL_REPLACED,
                    Some(&kind),
                    &[
                        ("job", &id.to_string()),
                        ("validation_mae", &info.validation_mae.to_string()),
                    ],
                )
                .await;
            }
            let mut slot = this.job.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(job) = slot.as_mut().filter(|j| j.id == id) {
                job.finished_at = Some(Utc::now().timestamp_millis());
                match result {
                    Ok(info) => {
                        job.state = TrainState::Succeeded;
                        job.stage = "saved; forecasting".into();
                        job.validation_mae = Some(info.validation_mae);
                    }
                    Err(err) if this.stopping.load(Relaxed) => {
                        // Shutting down: not a failure anyone must act on.
                        tracing::info!(id, "training stopped by shutdown: {err:#}");
                        job.state = TrainState::Failed;
                        job.stage = "stopped by shutdown".into();
                        job.error = Some("stopped by shutdown; start it again".into());
                    }
                    Err(err) => {
                        tracing::error!(id, "training failed: {err:#}");
                        job.state = TrainState::Failed;
                        job.stage = "failed".into();
                        job.error = Some(format!("{err:#}"));
                    }
                }
            }
        });
        Ok(job)
    }

    fn update_job(&self, id: u64, update: impl FnOnce(&mut TrainJob)) {
        let mut slot = self.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = slot.as_mut().filter(|j| j.id == id) {
            update(job);
        }
    }

    async fn run_training(
        self: &Arc<Self>,
        kind: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        epochs: usize,
        id: u64,
    ) -> anyhow::Result<ModelInfo> {
        let this = self.clone();
        let progress_owner = self.clone();
        let model = train_from_database(
            &self.pool,
            &self.config,
            &kind,
            (from, to),
            epochs,
            move |progress| {
                progress_owner.update_job(id, |job| {
                    job.stage =
                        format!("training: epoch {} of {}", progress.epoch, progress.epochs);
                    job.epoch = progress.epoch;
                    job.validation_mae = Some(progress.validation_mae).filter(|v| v.is_finite());
                })
            },
            move || this.stopping.load(Relaxed),
        )
        .await?;
        let dir = self.dir.join(&kind);
        let model = Arc::new(model);
        let saving = model.clone();
        tokio::task::spawn_blocking(move || saving.save(&dir))
            .await?
            .context("saving the model")?;
        let modified = std::fs::metadata(self.dir.join(&kind).join("model.json"))
            .and_then(|m| m.modified())
            .ok();
        let info = model.info().clone();
        self.install(kind, model, modified);
        self.wake.notify_one();
        Ok(info)
    }
}

pub fn models_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("forecast")
}

fn check_range(kind: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), String> {
    if trackside_wire::parameter_info(kind).is_none() {
        return Err(format!(
            "unknown parameter kind {kind:?}: use one of the parameters in docs/api.md, for example relay_voltage"
        ));
    }
    if to <= from {
        return Err("the range must end after it starts".into());
    }
    if (to - from).num_days() > MAX_TRAIN_DAYS {
        return Err(format!("train on at most {MAX_TRAIN_DAYS} days"));
    }
    Ok(())
}

/// The model shape for `kind` from configuration.
pub fn spec(config: &ForecastConfig, kind: &str) -> Spec {
    Spec {
        kind: kind.to_owned(),
        step_minutes: config.step_minutes,
        window: config.window,
        horizon: config.horizon,
        hidden: config.hidden,
        time_of_day: true,
    }
}

/// Reads `[from, to)` of every channel of `kind` from the minute rollups
/// and trains a model on a blocking thread. Shared by the API's jobs and
/// `trackside train`.
pub async fn train_from_database(
    pool: &PgPool,
    config: &ForecastConfig,
    kind: &str,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    epochs: usize,
    mut progress: impl FnMut(trackside_forecast::Progress) + Send + 'static,
    cancelled: impl Fn() -> bool + Send + 'static,
) -> anyhow::Result<Forecaster> {
    check_range(kind, from, to).map_err(anyhow::Error::msg)?;
    let mut spec = spec(config, kind);
    spec.validate()?;
    let statistic = data::Statistic::for_kind(kind);
    let series = data::load_series(pool, kind, statistic, spec.step_minutes, from, to).await?;
    anyhow::ensure!(
        !series.is_empty(),
        "no {kind} history between {from} and {to}: nothing to train on"
    );
    // By the history there is, not the range asked for: a week's range
    // over a few hours of data must not learn the clock.
    let longest_ms = series
        .iter()
        .map(|(_, s)| s.values.len() as i64 * spec.step_ms())
        .max()
        .unwrap_or(0);
    spec.time_of_day = longest_ms >= 2 * 86_400_000;
    let options = TrainOptions {
        spec,
        epochs,
        batch: 64,
        learning_rate: config.learning_rate,
        validation_fraction: 0.2,
        max_windows_per_epoch: 20_000,
        seed: 1,
        statistic: statistic.as_str().to_owned(),
        trained_from: from.timestamp_millis(),
        trained_to: to.timestamp_millis(),
        created_at: Utc::now().timestamp_millis(),
    };
    let series: Vec<_> = series.into_iter().map(|(_, s)| s).collect();
    let model = tokio::task::spawn_blocking(move || {
        trackside_forecast::train(&series, &options, &mut progress, &cancelled)
    })
    .await??;
    Ok(model)
}

pub fn model_summary(info: &ModelInfo) -> ForecastModel {
    ForecastModel {
        kind: info.spec.kind.clone(),
        step_minutes: info.spec.step_minutes,
        window: info.spec.window,
        horizon: info.spec.horizon,
        statistic: info.statistic.clone(),
        trained_from: info.trained_from,
        trained_to: info.trained_to,
        channels: info.channels,
        epochs: info.epochs,
        validation_mae: info.validation_mae,
        validation_mae_last_value: info.validation_mae_last_value,
        training_seconds: info.training_seconds,
        created_at: info.created_at,
    }
}

/// The forecaster: every `interval`, for every trained kind, forecasts
/// every channel from its last window of minute rollups, keeps the result
/// for `GET /api/forecast`, and tells the exception engine.
/// Ends when `shutdown` is cancelled: at shutdown, or when this instance
/// loses the forecast role (`cluster`); training jobs are stopped by
/// [`Forecasting::stop_training`] at shutdown only.
pub async fn run(forecasting: Arc<Forecasting>, feed: Feed, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(forecasting.interval()) => {}
            _ = forecasting.wake.notified() => {}
        }
        if let Err(err) = forecast_all(&forecasting, &feed).await {
            tracing::warn!("forecasting failed: {err:#}");
        }
    }
}

async fn forecast_all(forecasting: &Arc<Forecasting>, feed: &Feed) -> anyhow::Result<()> {
    {
        let this = forecasting.clone();
        tokio::task::spawn_blocking(move || this.reload_models()).await?;
    }
    let models: Vec<Arc<Forecaster>> = {
        let models = forecasting.models.read().unwrap_or_else(|e| e.into_inner());
        models.values().map(|l| l.model.clone()).collect()
    };
    let now = Utc::now();
    let mut fresh = HashMap::new();
    for model in models {
        let info = model.info();
        let kind = info.spec.kind.clone();
        let step_ms = info.spec.step_ms();
        // Whole steps only: a step still filling would read low (fewer
        // readings) and look like a sag.
        let end_ms = now.timestamp_millis().div_euclid(step_ms) * step_ms;
        let from_ms = end_ms - info.spec.window as i64 * step_ms;
        let (Some(from), Some(to)) = (
            DateTime::from_timestamp_millis(from_ms),
            DateTime::from_timestamp_millis(end_ms),
        ) else {
            continue;
        };
        let statistic = data::Statistic::parse(&info.statistic);
        let series = data::load_series(
            &forecasting.pool,
            &kind,
            statistic,
            info.spec.step_minutes,
            from,
            to,
        )
        .await?;
        let (channels, histories): (Vec<String>, Vec<_>) = series
            .into_iter()
            .map(|(channel, s)| (channel, data::padded(s, from_ms, end_ms, step_ms)))
            .unzip();
        let running = model.clone();
        let forecasts =
            tokio::task::spawn_blocking(move || running.forecast_many(&histories)).await??;
        for (channel, points) in channels.into_iter().zip(forecasts) {
            let points = points.unwrap_or_default();
            feed.forecast(
                &channel,
                points.iter().map(|p| (p.at, p.mean)).collect(),
                now,
            )
            .await;
            if !points.is_empty() {
                fresh.insert(
                    channel,
                    Arc::new(ChannelForecast {
                        kind: kind.clone(),
                        computed_at: now.timestamp_millis(),
                        points,
                    }),
                );
            }
        }
    }
    // Channels that had a forecast and have none now (model gone, channel
    // silent) clear their predicted exceedances.
    let gone: Vec<String> = {
        let old = forecasting
            .forecasts
            .read()
            .unwrap_or_else(|e| e.into_inner());
        old.keys()
            .filter(|c| !fresh.contains_key(*c))
            .cloned()
            .collect()
    };
    for channel in gone {
        feed.forecast(&channel, Vec::new(), now).await;
    }
    *forecasting
        .forecasts
        .write()
        .unwrap_or_else(|e| e.into_inner()) = fresh;
    Ok(())
}
