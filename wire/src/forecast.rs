//! Forecasts of a channel's values and the training of the models behind
//! them (`/api/forecast`).

use serde::{Deserialize, Serialize};

/// One forecast step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForecastPoint {
    /// Start of the step, Unix milliseconds.
    pub at: i64,
    pub mean: f64,
    /// The 90 % band.
    pub low: f64,
    pub high: f64,
}

/// A trained model as the API describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForecastModel {
    /// The parameter kind, for example `relay_voltage`.
    pub kind: String,
    pub step_minutes: u32,
    /// Steps read and steps predicted.
    pub window: usize,
    pub horizon: usize,
    /// The per-minute statistic the model reads (`max` or `mean`).
    pub statistic: String,
    /// Training range, Unix milliseconds.
    pub trained_from: i64,
    pub trained_to: i64,
    pub channels: usize,
    pub epochs: usize,
    /// Validation mean absolute error (the parameter's unit), and that of
    /// predicting "no change".
    pub validation_mae: f64,
    pub validation_mae_last_value: f64,
    pub training_seconds: f64,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// `GET /api/forecast?channel=..`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Forecast {
    pub channel: String,
    pub unit: Option<String>,
    /// When the forecast was computed, Unix milliseconds.
    pub computed_at: i64,
    pub model: ForecastModel,
    pub points: Vec<ForecastPoint>,
}

/// `POST /api/forecast/train`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrainRequest {
    pub kind: String,
    /// Unix milliseconds.
    pub from: i64,
    pub to: i64,
    /// Overrides the configured number of epochs.
    #[serde(default)]
    pub epochs: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TrainState {
    Running,
    Succeeded,
    Failed,
}

/// A training job: `GET /api/forecast/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrainJob {
    pub id: u64,
    pub kind: String,
    pub from: i64,
    pub to: i64,
    pub state: TrainState,
    /// What it is doing now, for people.
    pub stage: String,
    pub epoch: usize,
    pub epochs: usize,
    /// Latest validation mean absolute error.
    pub validation_mae: Option<f64>,
    /// Unix milliseconds.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// `GET /api/forecast/models`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForecastStatus {
    pub models: Vec<ForecastModel>,
    /// The running or most recent training job.
    pub job: Option<TrainJob>,
}
