//! The yard's geometry and its past: the layout the diagram draws, replay
//! of any interval, and the train movements derived from it.
//!
//! Coordinates are schematic units (x to the right, y downwards, as SVG
//! has them); lengths for the simulator are metres.

use serde::{Deserialize, Serialize};

/// How much a circuit matters to traffic, from the layout: a running line
/// outranks a loop, which outranks a siding. Alarm priorities are derived
/// from it. Ordered from least to most critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Criticality {
    /// Sidings, depot roads, headshunts: a failure delays shunting.
    Siding,
    /// Loops, platform lines, reception roads: a failure closes a route
    /// that has an alternative.
    Loop,
    /// Running lines: a failure stops traffic.
    RunningLine,
}

impl Criticality {
    pub const ALL: [Criticality; 3] = [
        Criticality::RunningLine,
        Criticality::Loop,
        Criticality::Siding,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Criticality::Siding => "siding",
            Criticality::Loop => "loop",
            Criticality::RunningLine => "running_line",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Criticality::Siding => "Siding",
            Criticality::Loop => "Loop",
            Criticality::RunningLine => "Running line",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// A track circuit the layout names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LayoutCircuit {
    pub id: String,
    /// What people call it ("Down Main approach"), when the layout says.
    pub name: Option<String>,
    pub criticality: Criticality,
}

/// A stretch of track drawn as a polyline, tied to one track circuit. A
/// circuit may have several (one per leg through a set of points).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LayoutSection {
    pub id: String,
    pub circuit: String,
    /// At least two points.
    pub path: Vec<[f64; 2]>,
    /// Its length on the ground, in metres.
    pub length_m: f64,
}

/// A set of points (a switch): `common` leads to `normal` or `reverse`.
/// The three are section ids whose ends meet at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LayoutPoints {
    pub id: String,
    pub at: [f64; 2],
    pub common: String,
    pub normal: String,
    pub reverse: String,
}

/// Which way a signal faces: the direction of the trains it governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Facing {
    Left,
    Right,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LayoutSignal {
    pub id: String,
    pub at: [f64; 2],
    pub facing: Facing,
}

/// Text on the diagram: a platform, a siding's name, a direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LayoutLabel {
    pub text: String,
    pub at: [f64; 2],
    /// `true` for headings (the yard's name, areas); smaller text otherwise.
    #[serde(default)]
    pub heading: bool,
}

/// A route trains take through the yard, as circuits in order (each
/// adjacent to the next). The simulator runs trains along them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LayoutRoute {
    pub name: String,
    pub circuits: Vec<String>,
    /// Where trains on it stop, and for how long.
    pub stop: Option<RouteStop>,
    /// About how many trains an hour take it.
    pub trains_per_hour: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteStop {
    pub circuit: String,
    pub seconds: f64,
}

/// `GET /api/layout`: the checked layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Layout {
    pub name: Option<String>,
    pub circuits: Vec<LayoutCircuit>,
    pub sections: Vec<LayoutSection>,
    pub points: Vec<LayoutPoints>,
    pub signals: Vec<LayoutSignal>,
    pub labels: Vec<LayoutLabel>,
    pub routes: Vec<LayoutRoute>,
    /// For every circuit, the circuits a train can move to from it.
    pub adjacent: Vec<(String, Vec<String>)>,
}

/// One problem with a layout file, at its line (1-based) when known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LayoutProblem {
    pub line: Option<u32>,
    pub message: String,
}

/// The body of a refused `PUT /api/layout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LayoutRejected {
    pub error: String,
    pub problems: Vec<LayoutProblem>,
}

/// A circuit's relay state as replay knows it: 1 clear (picked up), 0
/// occupied (dropped), anything else invalid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplayStart {
    pub circuit: String,
    /// The gateway that first published the circuit's relay state.
    pub gateway: String,
    /// The state at `from`; `None` when nothing was recorded before it.
    pub state: Option<f64>,
    /// When that state began, if replay found the change (it looks back a
    /// few minutes before `from`).
    pub since: Option<i64>,
}

/// A change of one circuit's relay state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateChange {
    pub at: i64,
    pub circuit: String,
    pub state: f64,
}

/// A step in an exception's life within the replayed interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplayExceptionStep {
    pub at: i64,
    pub kind: crate::TransitionKind,
}

/// An exception that was active at some moment of the interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplayException {
    pub id: i64,
    pub rule: String,
    pub kind: crate::ExceptionKind,
    pub severity: crate::Severity,
    pub subject: String,
    pub circuit: Option<String>,
    pub gateway: Option<String>,
    pub message: String,
    /// Active at `from`.
    pub active_at_start: bool,
    /// Raises and clears within the interval, oldest first.
    pub steps: Vec<ReplayExceptionStep>,
}

/// One circuit's part in a movement: when the train entered and left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MovementStep {
    pub circuit: String,
    pub entered: i64,
    /// `None` while it is still there (at the end of the data).
    pub left: Option<i64>,
}

/// A train movement: consecutive occupations of adjacent circuits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Movement {
    pub steps: Vec<MovementStep>,
}

impl Movement {
    pub fn start(&self) -> i64 {
        self.steps.first().map_or(0, |s| s.entered)
    }

    /// When the train left the last circuit; `None` while it is on one.
    pub fn end(&self) -> Option<i64> {
        self.steps
            .iter()
            .map(|s| s.left)
            .try_fold(i64::MIN, |latest, left| left.map(|l| latest.max(l)))
    }
}

/// `GET /api/replay`: the yard as it was at `from`, then every change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Replay {
    pub from: i64,
    pub to: i64,
    pub start: Vec<ReplayStart>,
    /// Relay-state changes within `(from, to)`, oldest first; re-sent
    /// identical readings are not changes.
    pub changes: Vec<StateChange>,
    pub exceptions: Vec<ReplayException>,
    /// Movements that overlap the interval, by start.
    pub movements: Vec<Movement>,
}

/// `GET /api/movements`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Movements {
    pub from: i64,
    pub to: i64,
    pub movements: Vec<Movement>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criticality_orders_running_lines_first() {
        assert!(Criticality::RunningLine > Criticality::Loop);
        assert!(Criticality::Loop > Criticality::Siding);
        assert_eq!(
            serde_json::to_string(&Criticality::RunningLine).unwrap(),
            "\"running_line\""
        );
    }

    #[test]
    fn a_movement_ends_when_its_last_circuit_clears() {
        let step = |circuit: &str, entered, left| MovementStep {
            circuit: circuit.into(),
            entered,
            left,
        };
        let done = Movement {
            steps: vec![step("T1", 0, Some(40)), step("T2", 30, Some(70))],
        };
        assert_eq!((done.start(), done.end()), (0, Some(70)));
        let running = Movement {
            steps: vec![step("T1", 0, Some(40)), step("T2", 30, None)],
        };
        assert_eq!(running.end(), None);
    }
}
