//! Forecasting of track-circuit parameters with a small recurrent network.
//!
//! One model per parameter kind (for example every circuit's
//! `relay_voltage`): a one-layer GRU reads the last `window` steps of a
//! channel and a linear head predicts, for each of the next `horizon` steps,
//! the median and the log-scale of a Laplace distribution. It is trained
//! with the Laplace negative log-likelihood, so the line is a median (what
//! a mean absolute error rewards, and robust to the low outliers that a
//! step mostly covered by trains gives) and the band it draws is learnt,
//! not a fixed width. Values are judged relative to the window's last value (see
//! [`data`]), which makes "no change" the natural starting point and lets
//! one model serve circuits of different nominal levels.
//!
//! Pure computation: no database, no clock, no threads of its own. The
//! server feeds it series and stores what it says.

pub mod baselines;
pub mod data;
mod net;
mod train;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use data::Series;
pub use train::{Progress, TrainOptions, train};

/// Half-width of the band in Laplace scales: `ln 10`, a 90 % central
/// interval (a Laplace variable is beyond `median ± t·b` with probability
/// `exp(-t)`).
pub const BAND_SCALES: f64 = std::f64::consts::LN_10;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("model metadata is unreadable: {0}")]
    Metadata(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The shape of a model: what it reads and how far it looks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// The parameter kind, for example `relay_voltage`.
    pub kind: String,
    /// Minutes per step.
    pub step_minutes: u32,
    /// Steps read.
    pub window: usize,
    /// Steps predicted.
    pub horizon: usize,
    /// GRU hidden units.
    pub hidden: usize,
    /// Feed the time of day. Only worth it with days of history: on a few
    /// hours it lets the network memorise the clock instead of the shape.
    #[serde(default)]
    pub time_of_day: bool,
}

impl Spec {
    pub fn step_ms(&self) -> i64 {
        i64::from(self.step_minutes) * 60_000
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |what: &str| Err(Error::Invalid(what.to_owned()));
        if self.kind.is_empty() {
            return fail("the parameter kind must not be empty");
        }
        if !(1..=1440).contains(&self.step_minutes) {
            return fail("step_minutes must be between 1 and 1440");
        }
        if !(2..=1000).contains(&self.window) || !(1..=1000).contains(&self.horizon) {
            return fail("window must be 2..=1000 steps and horizon 1..=1000 steps");
        }
        if !(1..=512).contains(&self.hidden) {
            return fail("hidden must be 1..=512 units");
        }
        Ok(())
    }
}

/// Everything saved beside the weights, so a restart (and an operator)
/// knows what the model is and how good it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub spec: Spec,
    pub normaliser: data::Normaliser,
    /// Which per-minute statistic the series were made of (`max`, `mean`).
    pub statistic: String,
    /// Training range, Unix milliseconds.
    pub trained_from: i64,
    pub trained_to: i64,
    pub channels: usize,
    pub training_windows: usize,
    pub validation_windows: usize,
    pub epochs: usize,
    /// Mean absolute error over every validation window and horizon step,
    /// in the parameter's unit, and the same for "no change" (last value).
    pub validation_mae: f64,
    pub validation_rmse: f64,
    pub validation_mae_last_value: f64,
    pub training_seconds: f64,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// One predicted step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Start of the step, Unix milliseconds.
    pub at: i64,
    pub mean: f64,
    /// The band: [`BAND_SCALES`] scales either side of `mean`, the median.
    pub low: f64,
    pub high: f64,
}

/// A trained model, ready to forecast.
pub struct Forecaster {
    info: ModelInfo,
    net: net::Network,
}

const WEIGHTS: &str = "model.safetensors";
const METADATA: &str = "model.json";

impl Forecaster {
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Forecasts the `horizon` steps after the end of `history`, which must
    /// hold at least the model's `window` steps ending with a value; gaps
    /// inside the window are carried forward. `None` when it cannot.
    pub fn forecast(&self, history: &Series) -> Result<Option<Vec<Point>>> {
        Ok(self
            .forecast_many(std::slice::from_ref(history))?
            .pop()
            .flatten())
    }

    /// [`Forecaster::forecast`] for many series in one batch.
    pub fn forecast_many(&self, histories: &[Series]) -> Result<Vec<Option<Vec<Point>>>> {
        let spec = &self.info.spec;
        let mut inputs = Vec::new();
        let mut anchors = Vec::new();
        let mut which = Vec::with_capacity(histories.len());
        for history in histories {
            match data::inference_window(history, spec, &self.info.normaliser) {
                Some((features, anchor, first_at)) => {
                    which.push(Some(anchors.len()));
                    inputs.extend(features);
                    anchors.push((anchor, first_at));
                }
                None => which.push(None),
            }
        }
        if anchors.is_empty() {
            return Ok(which.into_iter().map(|_| None).collect());
        }
        let (means, log_scales) = self.net.predict(&inputs, anchors.len())?;
        let scale = f64::from(self.info.normaliser.scale);
        let horizon = spec.horizon;
        Ok(which
            .into_iter()
            .map(|slot| {
                slot.map(|row| {
                    let (anchor, first_at) = anchors[row];
                    (0..horizon)
                        .map(|step| {
                            let mean = anchor + scale * f64::from(means[row * horizon + step]);
                            let spread = scale * f64::from(log_scales[row * horizon + step]).exp();
                            Point {
                                at: first_at + step as i64 * spec.step_ms(),
                                mean,
                                low: mean - BAND_SCALES * spread,
                                high: mean + BAND_SCALES * spread,
                            }
                        })
                        .collect()
                })
            })
            .collect())
    }

    /// Writes `model.safetensors` and `model.json` into `dir`, each through
    /// a temporary file and a rename, so a reader never sees half a model.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let weights_tmp = dir.join(format!("{WEIGHTS}.tmp"));
        self.net.save(&weights_tmp)?;
        let metadata_tmp = dir.join(format!("{METADATA}.tmp"));
        std::fs::write(&metadata_tmp, serde_json::to_vec_pretty(&self.info)?)?;
        std::fs::rename(weights_tmp, dir.join(WEIGHTS))?;
        std::fs::rename(metadata_tmp, dir.join(METADATA))?;
        Ok(())
    }

    /// Loads a model that [`Forecaster::save`] wrote.
    pub fn load(dir: &Path) -> Result<Self> {
        let info: ModelInfo = serde_json::from_slice(&std::fs::read(dir.join(METADATA))?)?;
        info.spec.validate()?;
        let net = net::Network::load(&info.spec, &dir.join(WEIGHTS))?;
        Ok(Self { info, net })
    }
}
