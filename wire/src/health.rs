//! Circuit health: occupations judged one by one, and a score per circuit.

use serde::{Deserialize, Serialize};

/// How an occupation is classed by its duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OccupationClass {
    /// Shorter than a train can pass: a bobbing relay.
    Flick,
    Normal,
    /// Longer than the long-occupation limit.
    Long,
}

impl OccupationClass {
    pub fn as_str(self) -> &'static str {
        match self {
            OccupationClass::Flick => "flick",
            OccupationClass::Normal => "normal",
            OccupationClass::Long => "long",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Flick, Self::Normal, Self::Long]
            .into_iter()
            .find(|c| c.as_str() == text)
    }
}

/// One occupation of a track circuit: from the relay's drop to its pick,
/// with the analogue values around and under it. Times are Unix ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Occupation {
    pub circuit: String,
    pub start: i64,
    pub end: i64,
    pub duration_ms: i64,
    pub class: OccupationClass,
    /// Relay voltage just before the drop (V).
    pub drop_value: Option<f64>,
    /// Relay voltage just after the pick (V).
    pub pick_value: Option<f64>,
    /// Lowest and highest relay voltage while occupied (V): the residual.
    pub residual_min: Option<f64>,
    pub residual_max: Option<f64>,
    /// Feed current while occupied (A): mean and standard deviation.
    pub current_mean: Option<f64>,
    pub current_sd: Option<f64>,
    /// Analogue readings expected while occupied but missing.
    pub missing_readings: i32,
    /// Readings that were there while occupied (relay voltage and feed
    /// current together).
    pub readings: i32,
}

/// `GET /api/occupations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Occupations {
    pub circuit: String,
    pub from: i64,
    pub to: i64,
    pub occupations: Vec<Occupation>,
    /// The list stopped at the limit; ask for a shorter interval.
    pub truncated: bool,
    /// Occupations are exact up to here; later ones are still being derived.
    pub derived_to: Option<i64>,
}

/// One cause that lowered a circuit's health, in points out of 100.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthDeduction {
    /// `poor_shunt`, `unstable_current`, `flicks`, `drift`, `exceptions`,
    /// `margin`, `predicted` or `data_quality` (docs/design/health.md).
    pub cause: String,
    pub points: f64,
    /// What was measured, in words.
    pub detail: String,
}

/// A circuit's health now: 100 less its deductions, never below 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CircuitHealth {
    pub circuit: String,
    pub score: f64,
    /// When it was computed (Unix ms).
    pub at: i64,
    pub deductions: Vec<HealthDeduction>,
    /// Occupations it was judged on.
    pub occupations: u32,
}

/// One day of a circuit's health, in the yard's time zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthDay {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub lowest: f64,
    pub last: f64,
}

/// `GET /api/health`: every circuit's health, worst first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthList {
    pub circuits: Vec<CircuitHealth>,
    /// Health below this raises a `health_low` exception.
    pub alarm_below: f64,
}

/// `GET /api/health/{circuit}`: its health now and day by day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CircuitHealthDetail {
    pub current: Option<CircuitHealth>,
    pub days: Vec<HealthDay>,
    pub alarm_below: f64,
}
