//! The diagram's picture of the yard, apart from the browser so it can be
//! tested natively: what state each section is shown in, the view's pan
//! and zoom, and replay (the yard at any instant of a recorded interval,
//! stepping, and the trails of movements).

use std::collections::HashMap;

use trackside_wire::{
    ExceptionKind, Layout, Movement, Replay, ReplayException, Severity, TransitionKind,
};

/// What a section is coloured by: its circuit's state, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionState {
    /// The circuit's gateway is offline: nothing it says is current.
    Offline,
    /// The circuit's relay state has gone stale.
    Stale,
    /// No relay state, or one that is neither 0 nor 1.
    Unknown,
    /// Occupied, with an active exception on the circuit.
    OccupiedAlarm,
    Occupied,
    Clear,
}

impl SectionState {
    /// The order of the legend.
    pub const ALL: [SectionState; 6] = [
        SectionState::Clear,
        SectionState::Occupied,
        SectionState::OccupiedAlarm,
        SectionState::Stale,
        SectionState::Offline,
        SectionState::Unknown,
    ];

    /// The value of `data-state` (and the CSS class).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Stale => "stale",
            Self::Unknown => "unknown",
            Self::OccupiedAlarm => "occupied-alarm",
            Self::Occupied => "occupied",
            Self::Clear => "clear",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Offline => "Gateway offline",
            Self::Stale => "Stale",
            Self::Unknown => "Unknown",
            Self::OccupiedAlarm => "Occupied, exception",
            Self::Occupied => "Occupied",
            Self::Clear => "Clear",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::Offline => "its gateway is off the network",
            Self::Stale => "no relay reading when one was due",
            Self::Unknown => "no relay reading yet, or an invalid one",
            Self::OccupiedAlarm => "a train (or a fault) and an active exception",
            Self::Occupied => "a train (or a fault that looks like one)",
            Self::Clear => "no train",
        }
    }
}

/// What the diagram shows of one circuit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shown {
    pub state: SectionState,
    /// The worst active exception on the circuit (its marker).
    pub alarm: Option<Severity>,
    /// A movement's trail over the circuit: 1 just left, fading to 0.
    pub trail: f64,
}

impl Default for Shown {
    fn default() -> Self {
        Self {
            state: SectionState::Unknown,
            alarm: None,
            trail: 0.0,
        }
    }
}

/// An active exception as the diagram weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Active<'a> {
    pub kind: ExceptionKind,
    pub severity: Severity,
    pub subject: &'a str,
}

/// A circuit's state from its relay value and the exceptions active on
/// it (`gateway_offline` ones included when they name its gateway).
pub fn classify(circuit: &str, relay: Option<f64>, active: &[Active<'_>]) -> Shown {
    let relay_channel = format!("{circuit}/relay_state");
    let offline = active
        .iter()
        .any(|a| a.kind == ExceptionKind::GatewayOffline);
    let stale = active
        .iter()
        .any(|a| a.kind == ExceptionKind::Stale && a.subject == relay_channel);
    let alarm = active.iter().map(|a| a.severity).max();
    let state = match relay {
        _ if offline => SectionState::Offline,
        _ if stale => SectionState::Stale,
        Some(0.0) if alarm.is_some() => SectionState::OccupiedAlarm,
        Some(0.0) => SectionState::Occupied,
        Some(1.0) => SectionState::Clear,
        _ => SectionState::Unknown,
    };
    Shown {
        state,
        alarm,
        trail: 0.0,
    }
}

/// The smallest box holding every drawn thing, with a margin.
pub fn bounds(layout: &Layout) -> (f64, f64, f64, f64) {
    let points = layout
        .sections
        .iter()
        .flat_map(|s| s.path.iter().copied())
        .chain(layout.labels.iter().map(|l| l.at))
        .chain(layout.signals.iter().map(|s| s.at));
    let mut b = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for [x, y] in points {
        b = (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y));
    }
    if b.0 > b.2 {
        return (0.0, 0.0, 100.0, 100.0);
    }
    let margin = 40.0;
    (b.0 - margin, b.1 - margin, b.2 + margin, b.3 + margin)
}

/// The part of the drawing on view: an SVG `viewBox`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Viewport {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

impl Viewport {
    pub const MIN_WIDTH: f64 = 50.0;
    pub const MAX_WIDTH: f64 = 100_000.0;

    pub fn fit(bounds: (f64, f64, f64, f64)) -> Self {
        Self {
            x: bounds.0,
            y: bounds.1,
            width: (bounds.2 - bounds.0).max(1.0),
            height: (bounds.3 - bounds.1).max(1.0),
        }
    }

    pub fn view_box(&self) -> String {
        format!(
            "{:.1} {:.1} {:.1} {:.1}",
            self.x, self.y, self.width, self.height
        )
    }

    /// Zoomed by `factor` (above 1 zooms in) about the point at fractions
    /// `(fx, fy)` of the view, which stays where it is on the screen.
    pub fn zoomed(&self, factor: f64, fx: f64, fy: f64) -> Self {
        let width = (self.width / factor).clamp(Self::MIN_WIDTH, Self::MAX_WIDTH);
        let factor = self.width / width;
        let height = self.height / factor;
        let (px, py) = (self.x + fx * self.width, self.y + fy * self.height);
        Self {
            x: px - fx * width,
            y: py - fy * height,
            width,
            height,
        }
    }

    /// Moved by a drag of `(dx, dy)` as fractions of the view's size.
    pub fn panned(&self, dx: f64, dy: f64) -> Self {
        Self {
            x: self.x - dx * self.width,
            y: self.y - dy * self.height,
            ..*self
        }
    }
}

/// The middle of a polyline by length, for a section's label and marker.
pub fn midpoint(path: &[[f64; 2]]) -> [f64; 2] {
    let lengths: Vec<f64> = path
        .windows(2)
        .map(|w| (w[1][0] - w[0][0]).hypot(w[1][1] - w[0][1]))
        .collect();
    let half = lengths.iter().sum::<f64>() / 2.0;
    let mut walked = 0.0;
    for (w, length) in path.windows(2).zip(&lengths) {
        if walked + length >= half && *length > 0.0 {
            let f = (half - walked) / length;
            return [
                w[0][0] + f * (w[1][0] - w[0][0]),
                w[0][1] + f * (w[1][1] - w[0][1]),
            ];
        }
        walked += length;
    }
    path.first().copied().unwrap_or([0.0, 0.0])
}

/// The playback speeds offered.
pub const SPEEDS: [u32; 4] = [1, 10, 60, 600];
/// How long (yard time) a movement's trail takes to fade, and how many of
/// its last circuits it covers.
pub const TRAIL_MS: i64 = 120_000;
pub const TRAIL_CIRCUITS: usize = 3;

/// One exception's active spans within the replay.
#[derive(Debug, Clone)]
struct Spans {
    exception: ReplayException,
    /// `[start, end)`; `end` is the replay's end while still active.
    spans: Vec<(i64, i64)>,
}

/// A recorded interval, replayed: the yard's state at the cursor, moved
/// forward change by change, or rebuilt from the start on a step back.
#[derive(Debug, Clone)]
pub struct Playback {
    pub from: i64,
    pub to: i64,
    /// The circuits, in the replay's order; indexes below refer to it.
    pub circuits: Vec<String>,
    gateways: Vec<String>,
    start: Vec<Option<f64>>,
    /// (at, circuit index, state), in time order.
    changes: Vec<(i64, usize, f64)>,
    exceptions: Vec<Spans>,
    pub movements: Vec<Movement>,
    /// The state of every circuit at `cursor`, and the next change to apply.
    relay: Vec<Option<f64>>,
    next: usize,
    cursor: i64,
}

impl Playback {
    pub fn new(replay: Replay) -> Self {
        let index: HashMap<&str, usize> = replay
            .start
            .iter()
            .enumerate()
            .map(|(i, s)| (s.circuit.as_str(), i))
            .collect();
        let changes = replay
            .changes
            .iter()
            .filter_map(|c| index.get(c.circuit.as_str()).map(|&i| (c.at, i, c.state)))
            .collect();
        let exceptions = replay
            .exceptions
            .into_iter()
            .map(|exception| {
                let mut spans = Vec::new();
                let mut open = exception.active_at_start.then_some(replay.from);
                for step in &exception.steps {
                    match step.kind {
                        TransitionKind::Raised | TransitionKind::Realarmed => {
                            open = open.or(Some(step.at));
                        }
                        TransitionKind::Cleared => {
                            if let Some(start) = open.take() {
                                spans.push((start, step.at));
                            }
                        }
                        // Neither starts nor ends the condition.
                        TransitionKind::Acknowledged
                        | TransitionKind::Shelved
                        | TransitionKind::Unshelved
                        | TransitionKind::Escalated
                        | TransitionKind::Released
                        | TransitionKind::Grouped => {}
                    }
                }
                if let Some(start) = open {
                    spans.push((start, replay.to));
                }
                Spans { exception, spans }
            })
            .collect();
        let start: Vec<Option<f64>> = replay.start.iter().map(|s| s.state).collect();
        Self {
            from: replay.from,
            to: replay.to,
            circuits: replay.start.iter().map(|s| s.circuit.clone()).collect(),
            gateways: replay.start.iter().map(|s| s.gateway.clone()).collect(),
            relay: start.clone(),
            start,
            changes,
            exceptions,
            movements: replay.movements,
            next: 0,
            cursor: replay.from,
        }
    }

    #[cfg(test)]
    fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Moves the cursor to `at` (clamped to the interval); returns the
    /// indexes of circuits whose relay state changed.
    pub fn seek(&mut self, at: i64) -> Vec<usize> {
        let at = at.clamp(self.from, self.to);
        let mut changed = Vec::new();
        if at < self.cursor {
            for (i, start) in self.start.iter().enumerate() {
                if self.relay[i] != *start {
                    changed.push(i);
                }
            }
            self.relay.clone_from(&self.start);
            self.next = 0;
        }
        while let Some(&(when, circuit, state)) = self.changes.get(self.next) {
            if when > at {
                break;
            }
            if self.relay[circuit] != Some(state) {
                self.relay[circuit] = Some(state);
                changed.push(circuit);
            }
            self.next += 1;
        }
        self.cursor = at;
        changed.sort_unstable();
        changed.dedup();
        changed
    }

    /// The first change after the cursor, if any.
    pub fn next_change(&self) -> Option<i64> {
        let after = self.changes.partition_point(|c| c.0 <= self.cursor);
        self.changes.get(after).map(|c| c.0)
    }

    /// The last change before the cursor, if any.
    pub fn previous_change(&self) -> Option<i64> {
        let before = self.changes.partition_point(|c| c.0 < self.cursor);
        before.checked_sub(1).map(|i| self.changes[i].0)
    }

    /// What every circuit shows at the cursor, in [`Playback::circuits`]
    /// order: one pass over the exceptions and the movements, however
    /// many circuits there are (this runs every animation frame).
    pub fn frame(&self) -> Vec<Shown> {
        let at = self.cursor;
        let index: HashMap<&str, usize> = self
            .circuits
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let mut active: Vec<Vec<Active<'_>>> = vec![Vec::new(); self.circuits.len()];
        for e in &self.exceptions {
            if !e.spans.iter().any(|&(s, end)| s <= at && at < end) {
                continue;
            }
            let weighed = Active {
                kind: e.exception.kind,
                severity: e.exception.severity,
                subject: &e.exception.subject,
            };
            match e.exception.kind {
                ExceptionKind::GatewayOffline => {
                    for (i, gateway) in self.gateways.iter().enumerate() {
                        if gateway == &e.exception.subject {
                            active[i].push(weighed);
                        }
                    }
                }
                _ => {
                    if let Some(&i) = e.exception.circuit.as_deref().and_then(|c| index.get(c)) {
                        active[i].push(weighed);
                    }
                }
            }
        }
        let mut trails = vec![0.0f64; self.circuits.len()];
        for movement in &self.movements {
            if movement.start() > at {
                break;
            }
            // Only movements under way or just ended leave a trail.
            if movement.end().is_some_and(|end| end < at - TRAIL_MS) {
                continue;
            }
            let left: Vec<(usize, i64)> = movement
                .steps
                .iter()
                .enumerate()
                .filter_map(|(k, s)| s.left.filter(|&l| l <= at).map(|l| (k, l)))
                .collect();
            for &(k, left_at) in left.iter().rev().take(TRAIL_CIRCUITS) {
                let age = at - left_at;
                if let Some(&i) = index.get(movement.steps[k].circuit.as_str())
                    && age < TRAIL_MS
                {
                    // In tenths: the trail fades in steps, so a frame
                    // redraws a trail only when its step changes.
                    let fade = ((1.0 - age as f64 / TRAIL_MS as f64) * 10.0).ceil() / 10.0;
                    trails[i] = trails[i].max(fade);
                }
            }
        }
        self.circuits
            .iter()
            .enumerate()
            .map(|(i, circuit)| {
                let mut shown = classify(circuit, self.relay[i], &active[i]);
                // A train back on the circuit hides the trail under it.
                if !matches!(
                    shown.state,
                    SectionState::Occupied | SectionState::OccupiedAlarm
                ) {
                    shown.trail = trails[i];
                }
                shown
            })
            .collect()
    }

    /// What circuit `i` shows at the cursor.
    #[cfg(test)]
    fn shown(&self, i: usize) -> Shown {
        self.frame()[i]
    }

    /// Every exception's spans, for the timeline: (severity, start, end,
    /// message, id).
    pub fn timeline(&self) -> Vec<(Severity, i64, i64, String, i64)> {
        self.exceptions
            .iter()
            .flat_map(|e| {
                e.spans.iter().map(|&(s, end)| {
                    (
                        e.exception.severity,
                        s,
                        end,
                        format!("{} — {}", e.exception.subject, e.exception.message),
                        e.exception.id,
                    )
                })
            })
            .collect()
    }
}

/// Where the cursor goes after `elapsed_ms` of real time at `speed`.
pub fn advanced(cursor: i64, elapsed_ms: f64, speed: u32, to: i64) -> i64 {
    let step = (elapsed_ms.max(0.0) * f64::from(speed)).round() as i64;
    cursor.saturating_add(step).min(to)
}

/// The replay's URL parameters: `from`, `to`, `at` (Unix ms), `speed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayQuery {
    pub from: i64,
    pub to: i64,
    pub at: i64,
    pub speed: u32,
}

impl ReplayQuery {
    pub fn from_query(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let number = |key: &str| get(key).and_then(|v| v.parse::<i64>().ok());
        let (from, to) = (number("from")?, number("to")?);
        if from >= to {
            return None;
        }
        let at = number("at").unwrap_or(from).clamp(from, to);
        let speed = number("speed")
            .and_then(|s| u32::try_from(s).ok())
            .filter(|s| SPEEDS.contains(s))
            .unwrap_or(10);
        Some(Self {
            from,
            to,
            at,
            speed,
        })
    }

    pub fn to_query(self) -> String {
        format!(
            "from={}&to={}&at={}&speed={}",
            self.from, self.to, self.at, self.speed
        )
    }

    /// The five minutes around an instant (an exception's raise).
    pub fn around(at: i64) -> Self {
        Self {
            from: at - 150_000,
            to: at + 150_000,
            at: at - 30_000,
            speed: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackside_wire::{MovementStep, ReplayExceptionStep, ReplayStart, StateChange};

    fn replay() -> Replay {
        let start = |circuit: &str, state| ReplayStart {
            circuit: circuit.into(),
            gateway: "gw1".into(),
            state,
            since: None,
        };
        let change = |at, circuit: &str, state| StateChange {
            at,
            circuit: circuit.into(),
            state,
        };
        Replay {
            from: 1_000,
            to: 10_000,
            start: vec![
                start("A", Some(1.0)),
                start("B", Some(0.0)),
                start("C", None),
            ],
            changes: vec![
                change(2_000, "A", 0.0),
                change(3_000, "B", 1.0),
                change(4_000, "C", 1.0),
                change(6_000, "A", 1.0),
            ],
            exceptions: vec![ReplayException {
                id: 7,
                rule: "flick".into(),
                kind: ExceptionKind::Flick,
                severity: Severity::Major,
                subject: "A/relay_state".into(),
                circuit: Some("A".into()),
                gateway: Some("gw1".into()),
                message: "flick".into(),
                active_at_start: false,
                steps: vec![
                    ReplayExceptionStep {
                        at: 2_500,
                        kind: TransitionKind::Raised,
                    },
                    ReplayExceptionStep {
                        at: 5_000,
                        kind: TransitionKind::Cleared,
                    },
                ],
            }],
            movements: vec![Movement {
                steps: vec![
                    MovementStep {
                        circuit: "B".into(),
                        entered: 500,
                        left: Some(3_000),
                    },
                    MovementStep {
                        circuit: "A".into(),
                        entered: 2_000,
                        left: Some(6_000),
                    },
                ],
            }],
        }
    }

    fn states(playback: &Playback) -> Vec<&'static str> {
        (0..playback.circuits.len())
            .map(|i| playback.shown(i).state.as_str())
            .collect()
    }

    #[test]
    fn replay_shows_the_recorded_state_at_every_instant() {
        let mut playback = Playback::new(replay());
        assert_eq!(states(&playback), ["clear", "occupied", "unknown"]);
        assert_eq!(playback.seek(2_000), [0]);
        assert_eq!(states(&playback), ["occupied", "occupied", "unknown"]);
        playback.seek(2_600);
        // The flick exception is active on A while it is occupied.
        assert_eq!(states(&playback), ["occupied-alarm", "occupied", "unknown"]);
        assert_eq!(playback.shown(0).alarm, Some(Severity::Major));
        assert_eq!(playback.seek(4_500), [1, 2]);
        assert_eq!(states(&playback), ["occupied-alarm", "clear", "clear"]);
        playback.seek(7_000);
        assert_eq!(states(&playback), ["clear", "clear", "clear"]);
        // Back to the start: rebuilt, and the circuits whose relay state
        // differs reported (A is clear again, as at the start).
        assert_eq!(playback.seek(1_500), [1, 2]);
        assert_eq!(states(&playback), ["clear", "occupied", "unknown"]);
    }

    #[test]
    fn stepping_goes_from_change_to_change() {
        let mut playback = Playback::new(replay());
        assert_eq!(playback.previous_change(), None);
        assert_eq!(playback.next_change(), Some(2_000));
        playback.seek(3_000);
        assert_eq!(playback.next_change(), Some(4_000));
        assert_eq!(playback.previous_change(), Some(2_000));
        playback.seek(6_000);
        assert_eq!(playback.next_change(), None);
        // The cursor never leaves the interval.
        playback.seek(99_999);
        assert_eq!(playback.cursor(), 10_000);
    }

    #[test]
    fn a_movement_leaves_a_fading_trail() {
        let mut long = replay();
        long.to = 200_000;
        let mut playback = Playback::new(long);
        playback.seek(3_000);
        assert_eq!(playback.shown(1).trail, 1.0);
        playback.seek(3_000 + TRAIL_MS / 2);
        assert!((playback.shown(1).trail - 0.5).abs() < 1e-9);
        // A left 57 s before: 0.525, shown in tenths.
        assert!((playback.shown(0).trail - 0.6).abs() < 1e-9);
        playback.seek(9_999);
        assert!(playback.shown(1).trail > 0.0);
    }

    #[test]
    fn states_follow_the_worst_condition() {
        let stale = Active {
            kind: ExceptionKind::Stale,
            severity: Severity::Warning,
            subject: "T1/relay_state",
        };
        let stale_other = Active {
            subject: "T1/feed_current",
            ..stale
        };
        let offline = Active {
            kind: ExceptionKind::GatewayOffline,
            severity: Severity::Critical,
            subject: "gw",
        };
        let cases: [(Option<f64>, &[Active<'_>], &str); 7] = [
            (Some(1.0), &[], "clear"),
            (Some(0.0), &[], "occupied"),
            (Some(0.0), &[stale_other], "occupied-alarm"),
            (Some(1.0), &[stale], "stale"),
            (Some(0.0), &[offline, stale], "offline"),
            (None, &[], "unknown"),
            (Some(0.5), &[], "unknown"),
        ];
        for (relay, active, expected) in cases {
            assert_eq!(
                classify("T1", relay, active).state.as_str(),
                expected,
                "{relay:?} {active:?}"
            );
        }
        // A clear circuit keeps its marker.
        assert_eq!(
            classify("T1", Some(1.0), &[stale_other]).alarm,
            Some(Severity::Warning)
        );
    }

    #[test]
    fn zoom_keeps_the_point_under_the_pointer() {
        let view = Viewport::fit((0.0, 0.0, 1000.0, 500.0));
        let zoomed = view.zoomed(2.0, 0.25, 0.5);
        assert_eq!(zoomed.width, 500.0);
        assert_eq!(zoomed.x + 0.25 * zoomed.width, 250.0);
        assert_eq!(zoomed.y + 0.5 * zoomed.height, 250.0);
        let panned = zoomed.panned(0.1, 0.0);
        assert_eq!(panned.x, zoomed.x - 50.0);
        assert_eq!(view.zoomed(1e9, 0.5, 0.5).width, Viewport::MIN_WIDTH);
    }

    #[test]
    fn the_replay_query_reads_back() {
        let query = ReplayQuery::around(1_000_000);
        let text = query.to_query();
        let read = ReplayQuery::from_query(|k| {
            text.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_owned))
        });
        assert_eq!(read, Some(query));
        assert_eq!(ReplayQuery::from_query(|_| None), None);
        assert_eq!(advanced(0, 16.7, 60, 10_000), 1_002);
        assert_eq!(advanced(9_990, 1_000.0, 600, 10_000), 10_000);
        assert_eq!(
            midpoint(&[[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]]),
            [10.0, 0.0]
        );
    }
}
