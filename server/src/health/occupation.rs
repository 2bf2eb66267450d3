//! Occupation events from a circuit's readings (pure).
//!
//! A [`Deriver`] is fed one circuit's relay-state, relay-voltage and
//! feed-current readings in time order (their own timestamps, however late
//! they arrived) and hands back each occupation once it is complete: the
//! relay has picked up again and the relay voltage after the pick is in.
//! The same readings always give the same occupations, so the job can
//! derive a stretch again when late readings land in it and replace what
//! it stored.
//!
//! The relay state is the truth of when a circuit was occupied; the
//! analogue channels say how. Relay and analogue samples are not taken at
//! the same instant, so readings within [`Settings::edge_ms`] of the drop
//! or the pick belong to the relay's transition, not to the occupation,
//! and are left out of the residual and the current.

use std::collections::VecDeque;

use trackside_wire::{Occupation, OccupationClass};

/// Unix milliseconds.
pub type Ms = i64;

/// Intervals kept per analogue channel to estimate its period.
const INTERVALS: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Shorter than this is a flick (the flick rule's `min_occupied_s`).
    pub flick_ms: Ms,
    /// Longer than this is a long occupation.
    pub long_ms: Ms,
    /// Readings this close to the drop or the pick are the transition.
    pub edge_ms: Ms,
    /// The drop value is the last relay voltage at most this long before
    /// the drop, the pick value the first at most this long after the pick.
    pub value_gap_ms: Ms,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            flick_ms: 2_000,
            long_ms: 600_000,
            edge_ms: 1_000,
            value_gap_ms: 5_000,
        }
    }
}

/// Which channel of the circuit a reading belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    RelayState,
    RelayVoltage,
    FeedCurrent,
}

impl Input {
    pub fn of(parameter: &str) -> Option<Self> {
        match parameter {
            "relay_state" => Some(Input::RelayState),
            "relay_voltage" => Some(Input::RelayVoltage),
            "feed_current" => Some(Input::FeedCurrent),
            _ => None,
        }
    }
}

/// An occupation being built: the relay has dropped.
#[derive(Debug, Clone)]
struct Building {
    start: Ms,
    drop_value: Option<f64>,
    voltages: Vec<(Ms, f64)>,
    currents: Vec<(Ms, f64)>,
    /// Set once the relay picked up; then it waits for the pick value.
    end: Option<Ms>,
    /// Periods of the two analogue channels when it started.
    voltage_period: Option<Ms>,
    current_period: Option<Ms>,
}

/// The period of an analogue channel, from its recent intervals.
#[derive(Debug, Clone, Default)]
struct Period {
    last: Option<Ms>,
    intervals: VecDeque<Ms>,
}

impl Period {
    fn observe(&mut self, ts: Ms) {
        if let Some(last) = self.last.filter(|&l| ts > l) {
            if self.intervals.len() == INTERVALS {
                self.intervals.pop_front();
            }
            self.intervals.push_back(ts - last);
        }
        self.last = Some(self.last.map_or(ts, |l| l.max(ts)));
    }

    /// The median recent interval, once there are a few.
    fn estimate(&self) -> Option<Ms> {
        if self.intervals.len() < 3 {
            return None;
        }
        let mut sorted: Vec<Ms> = self.intervals.iter().copied().collect();
        sorted.sort_unstable();
        Some(sorted[sorted.len() / 2])
    }
}

/// One circuit's occupations, derived as its readings come in time order.
#[derive(Debug, Clone)]
pub struct Deriver {
    circuit: String,
    settings: Settings,
    /// Occupied (relay dropped), as of the last relay-state reading.
    occupied: Option<bool>,
    building: Option<Building>,
    /// Complete but for the pick value.
    waiting: VecDeque<Building>,
    last_voltage: Option<(Ms, f64)>,
    voltage_period: Period,
    current_period: Period,
    last_ts: Option<Ms>,
}

impl Deriver {
    pub fn new(circuit: &str, settings: Settings) -> Self {
        Self {
            circuit: circuit.to_owned(),
            settings,
            occupied: None,
            building: None,
            waiting: VecDeque::new(),
            last_voltage: None,
            voltage_period: Period::default(),
            current_period: Period::default(),
            last_ts: None,
        }
    }

    /// One reading, in time order; completed occupations go to `out`.
    pub fn push(&mut self, input: Input, ts: Ms, value: f64, out: &mut Vec<Occupation>) {
        if !value.is_finite() {
            return;
        }
        self.last_ts = Some(self.last_ts.map_or(ts, |l| l.max(ts)));
        match input {
            Input::RelayState => self.relay_state(ts, value < 0.5),
            Input::RelayVoltage => {
                self.voltage_period.observe(ts);
                if let Some(building) = &mut self.building {
                    building.voltages.push((ts, value));
                }
                // The first voltage at or after a pick is its pick value.
                while let Some(waiting) = self.waiting.front() {
                    let end = waiting.end.unwrap_or(ts);
                    if ts < end {
                        break;
                    }
                    let Some(mut done) = self.waiting.pop_front() else {
                        break;
                    };
                    let pick = (ts - end <= self.settings.value_gap_ms).then_some(value);
                    out.push(self.finish(&mut done, pick));
                }
                self.last_voltage = Some((ts, value));
            }
            Input::FeedCurrent => {
                self.current_period.observe(ts);
                if let Some(building) = &mut self.building {
                    building.currents.push((ts, value));
                }
            }
        }
        self.expire(ts, out);
    }

    fn relay_state(&mut self, ts: Ms, occupied: bool) {
        let was = self.occupied.replace(occupied);
        match (was, occupied) {
            (Some(false), true) => {
                let drop_value = self
                    .last_voltage
                    .filter(|&(at, _)| ts - at <= self.settings.value_gap_ms)
                    .map(|(_, v)| v);
                self.building = Some(Building {
                    start: ts,
                    drop_value,
                    voltages: Vec::new(),
                    currents: Vec::new(),
                    end: None,
                    voltage_period: self.voltage_period.estimate(),
                    current_period: self.current_period.estimate(),
                });
            }
            (Some(true), false) => {
                if let Some(mut building) = self.building.take() {
                    building.end = Some(ts);
                    self.waiting.push_back(building);
                }
            }
            // The first state seen, or a re-sent one: an occupation under
            // way when the readings begin has no known start and is not
            // derived.
            _ => {}
        }
    }

    /// Occupations whose pick value never came within the gap are
    /// complete without one.
    fn expire(&mut self, now: Ms, out: &mut Vec<Occupation>) {
        while let Some(waiting) = self.waiting.front() {
            let end = waiting.end.unwrap_or(now);
            if now - end <= self.settings.value_gap_ms {
                break;
            }
            let Some(mut done) = self.waiting.pop_front() else {
                break;
            };
            out.push(self.finish(&mut done, None));
        }
    }

    /// Every reading up to `to` is in: occupations waiting for a pick value
    /// that can no longer come are complete.
    pub fn settle(&mut self, to: Ms, out: &mut Vec<Occupation>) {
        self.expire(to, out);
    }

    /// Where derivation must start again to find every occupation not yet
    /// handed out: the start of the earliest one still open or waiting,
    /// else `to`.
    pub fn resume_point(&self, to: Ms) -> Ms {
        self.waiting
            .front()
            .or(self.building.as_ref())
            .map_or(to, |b| b.start.min(to))
    }

    fn finish(&self, building: &mut Building, pick_value: Option<f64>) -> Occupation {
        let start = building.start;
        let end = building.end.unwrap_or(start);
        let duration_ms = end - start;
        let inner_from = start + self.settings.edge_ms;
        let inner_to = end - self.settings.edge_ms;
        let inside = |values: &[(Ms, f64)]| -> Vec<(Ms, f64)> {
            values
                .iter()
                .copied()
                .filter(|(ts, _)| *ts > inner_from && *ts < inner_to)
                .collect()
        };
        let voltages = inside(&building.voltages);
        let currents = inside(&building.currents);
        // Each gap between readings (and the edges) longer than one and a
        // half periods held readings that never came.
        let missing = |period: Option<Ms>, values: &[(Ms, f64)]| -> i32 {
            let Some(period) = period.filter(|p| *p > 0) else {
                return 0;
            };
            if inner_to <= inner_from {
                return 0;
            }
            let times = std::iter::once(inner_from)
                .chain(values.iter().map(|(ts, _)| *ts))
                .chain(std::iter::once(inner_to));
            let mut previous = None;
            let mut missing = 0i64;
            for ts in times {
                if let Some(p) = previous {
                    missing += ((ts - p) as f64 / period as f64 - 0.5).floor().max(0.0) as i64;
                }
                previous = Some(ts);
            }
            missing.min(i32::MAX as i64) as i32
        };
        let class = if duration_ms < self.settings.flick_ms {
            OccupationClass::Flick
        } else if duration_ms > self.settings.long_ms {
            OccupationClass::Long
        } else {
            OccupationClass::Normal
        };
        let values = |list: &[(Ms, f64)]| list.iter().map(|&(_, v)| v).collect::<Vec<f64>>();
        let (current_mean, current_sd) = mean_sd(&values(&currents));
        let residual = values(&voltages);
        Occupation {
            circuit: self.circuit.clone(),
            start,
            end,
            duration_ms,
            class,
            drop_value: building.drop_value,
            pick_value,
            residual_min: residual.iter().copied().reduce(f64::min),
            residual_max: residual.iter().copied().reduce(f64::max),
            current_mean,
            current_sd,
            missing_readings: missing(building.voltage_period, &voltages)
                + missing(building.current_period, &currents),
            readings: (voltages.len() + currents.len()) as i32,
        }
    }
}

fn mean_sd(values: &[f64]) -> (Option<f64>, Option<f64>) {
    if values.is_empty() {
        return (None, None);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (Some(mean), Some(variance.sqrt()))
}

/// Derives every complete occupation of one circuit from readings given in
/// any order (they are sorted by time, relay states first at a tie: a
/// gateway samples its channels at one instant, and the analogue values of
/// the instant the relay dropped already show the train). What the job and
/// the tests call.
pub fn derive(
    circuit: &str,
    settings: &Settings,
    mut readings: Vec<(Input, Ms, f64)>,
    to: Ms,
) -> (Vec<Occupation>, Ms) {
    readings.sort_by_key(|&(input, ts, _)| (ts, input != Input::RelayState));
    let mut deriver = Deriver::new(circuit, settings.clone());
    let mut out = Vec::new();
    for (input, ts, value) in readings {
        if ts <= to {
            deriver.push(input, ts, value, &mut out);
        }
    }
    deriver.settle(to, &mut out);
    (out, deriver.resume_point(to))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Ms = 1_000;

    /// A circuit sampled every 500 ms: clear (1.5 V at the relay, 1.0 A
    /// feed) except during `occupied` spans, where the relay voltage is
    /// `residual` and the feed current 1.8 A. The relay state is sent on
    /// change and every 10 s.
    fn readings(until: Ms, occupied: &[(Ms, Ms)], residual: f64) -> Vec<(Input, Ms, f64)> {
        let is_occupied = |t: Ms| occupied.iter().any(|&(a, b)| t >= a && t < b);
        let mut out = Vec::new();
        let mut last = None;
        let mut t = 0;
        while t <= until {
            let occ = is_occupied(t);
            let changes = occupied.iter().flat_map(|&(a, b)| [a, b]);
            for change in changes.filter(|c| *c > t - 500 && *c <= t) {
                out.push((
                    Input::RelayState,
                    change,
                    if is_occupied(change) { 0.0 } else { 1.0 },
                ));
            }
            if last.is_none() || t % (10 * S) == 0 {
                out.push((Input::RelayState, t, if occ { 0.0 } else { 1.0 }));
            }
            last = Some(occ);
            out.push((Input::RelayVoltage, t, if occ { residual } else { 1.5 }));
            out.push((Input::FeedCurrent, t, if occ { 1.8 } else { 1.0 }));
            t += 500;
        }
        out
    }

    fn derive_all(readings: Vec<(Input, Ms, f64)>, to: Ms) -> (Vec<Occupation>, Ms) {
        derive("T101", &Settings::default(), readings, to)
    }

    #[test]
    fn a_clean_occupation_has_its_values() {
        let (events, resume) = derive_all(readings(120 * S, &[(30_200, 70_200)], 0.02), 120 * S);
        assert_eq!(events.len(), 1, "{events:?}");
        let e = &events[0];
        assert_eq!((e.start, e.end, e.duration_ms), (30_200, 70_200, 40_000));
        assert_eq!(e.class, OccupationClass::Normal);
        assert_eq!(e.drop_value, Some(1.5));
        assert_eq!(e.pick_value, Some(1.5));
        assert_eq!((e.residual_min, e.residual_max), (Some(0.02), Some(0.02)));
        assert!((e.current_mean.unwrap() - 1.8).abs() < 1e-9);
        assert!(e.current_sd.unwrap() < 1e-9);
        assert_eq!(e.missing_readings, 0);
        assert_eq!(resume, 120 * S);
    }

    #[test]
    fn a_flick_is_classed_and_has_no_residual_inside_its_edges() {
        let (events, _) = derive_all(readings(60 * S, &[(20_100, 20_700)], 0.02), 60 * S);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].class, OccupationClass::Flick);
        assert_eq!(events[0].duration_ms, 600);
        assert_eq!(events[0].residual_max, None);
        assert_eq!(events[0].missing_readings, 0);
    }

    #[test]
    fn long_occupations_and_poor_residuals_are_kept_as_measured() {
        let (events, _) = derive_all(readings(900 * S, &[(10_000, 700_000)], 0.6), 900 * S);
        assert_eq!(events[0].class, OccupationClass::Long);
        assert_eq!(events[0].residual_max, Some(0.6));
    }

    #[test]
    fn a_missing_reading_in_the_middle_is_counted() {
        let all = readings(120 * S, &[(30_200, 70_200)], 0.02);
        let holed: Vec<_> = all
            .into_iter()
            .filter(|&(input, ts, _)| !(input == Input::RelayVoltage && ts == 50_000))
            .collect();
        let (events, _) = derive_all(holed, 120 * S);
        assert_eq!(events[0].missing_readings, 1, "{events:?}");
        assert_eq!(events[0].residual_max, Some(0.02));
    }

    #[test]
    fn an_occupation_is_handed_out_only_once_complete() {
        let all = readings(120 * S, &[(30_200, 70_200)], 0.02);
        // Readings up to the middle of it: nothing yet, resume at its start.
        let (events, resume) = derive_all(all.clone(), 50 * S);
        assert!(events.is_empty());
        assert_eq!(resume, 30_200);
        // Just after the pick, before its pick value is in and before the
        // gap is over: still waiting.
        let (events, resume) = derive_all(all.clone(), 70_300);
        assert!(events.is_empty());
        assert_eq!(resume, 30_200);
        let (events, _) = derive_all(all, 80 * S);
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn a_backlog_arriving_late_and_out_of_order_derives_the_same() {
        let all = readings(
            300 * S,
            &[(30_200, 70_200), (150_000, 151_000), (200_000, 260_000)],
            0.02,
        );
        let (expected, _) = derive_all(all.clone(), 300 * S);
        assert_eq!(expected.len(), 3);
        // The gateway's backlog of the first 100 s arrives after the rest.
        let (late, early): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| r.1 < 100 * S);
        let mut arrived = early;
        arrived.extend(late.into_iter().rev());
        assert_eq!(derive_all(arrived, 300 * S).0, expected);
    }

    #[test]
    fn deriving_again_from_the_resume_point_continues_without_gaps() {
        let all = readings(300 * S, &[(30_200, 70_200), (200_000, 260_000)], 0.02);
        let (whole, _) = derive_all(all.clone(), 300 * S);
        let (first, resume) = derive_all(all.clone(), 230 * S);
        assert_eq!(resume, 200_000);
        // The job starts again a minute before the resume point so the state
        // and the drop value are known, and keeps what starts at or after it.
        let again: Vec<_> = all.into_iter().filter(|r| r.1 >= resume - 60 * S).collect();
        let (second, _) = derive_all(again, 300 * S);
        let mut joined = first;
        joined.extend(second.into_iter().filter(|e| e.start >= resume));
        assert_eq!(joined, whole);
    }

    #[test]
    fn an_occupation_under_way_when_readings_begin_is_not_derived() {
        let all = readings(120 * S, &[(0, 40_200), (80_000, 100_000)], 0.02);
        let (events, _) = derive_all(all, 120 * S);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].start, 80_000);
    }

    #[test]
    fn a_pick_value_that_never_comes_leaves_it_empty() {
        let all: Vec<_> = readings(120 * S, &[(30_200, 70_200)], 0.02)
            .into_iter()
            .filter(|&(input, ts, _)| !(input == Input::RelayVoltage && ts >= 70_000))
            .collect();
        let (events, _) = derive_all(all, 120 * S);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].pick_value, None);
    }
}
