//! Circuit health: occupations judged one by one, and a score per circuit.

use serde::{Deserialize, Serialize};

/// How an occupation is classed by its duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
