//! The health score of a circuit, 0 to 100 (pure). The formula and the
//! reasoning behind each weight are in docs/design/health.md; this is the
//! one place it is computed.

use serde::Deserialize;
use trackside_wire::{
    CircuitHealth, ExceptionKind, HealthDeduction, Occupation, OccupationClass, Severity,
};

/// `[health]`: the weights of the score, each the points a cause takes at
/// its worst.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Every occupation of the last `recent` with a poor shunt.
    pub poor_shunt: f64,
    /// Every one with an unstable feed current.
    pub unstable_current: f64,
    /// Every one a flick.
    pub flicks: f64,
    /// Drop or pick values off their baseline by the drift rule's limit.
    pub drift: f64,
    /// Each active exception on the circuit, by severity (at most
    /// `exceptions_cap` together).
    pub critical: f64,
    pub major: f64,
    pub warning: f64,
    pub exceptions_cap: f64,
    /// The clear level at the relay's low limit (none at 25 % above).
    pub margin: f64,
    /// A forecast reaching a limit.
    pub predicted: f64,
    /// Every occupation of the last `recent` with readings missing.
    pub data_quality: f64,
    /// Occupations judged for the shares.
    pub recent: usize,
    /// Seconds between scores.
    pub every_s: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            poor_shunt: 40.0,
            unstable_current: 20.0,
            flicks: 15.0,
            drift: 20.0,
            critical: 40.0,
            major: 25.0,
            warning: 10.0,
            exceptions_cap: 50.0,
            margin: 15.0,
            predicted: 15.0,
            data_quality: 10.0,
            recent: 20,
            every_s: 60,
        }
    }
}

impl HealthConfig {
    pub fn validate(&self) -> Result<(), String> {
        let weights = [
            self.poor_shunt,
            self.unstable_current,
            self.flicks,
            self.drift,
            self.critical,
            self.major,
            self.warning,
            self.exceptions_cap,
            self.margin,
            self.predicted,
            self.data_quality,
        ];
        if weights
            .iter()
            .any(|w| !(w.is_finite() && (0.0..=100.0).contains(w)))
        {
            return Err("every health weight must be between 0 and 100".into());
        }
        if !(1..=1_000).contains(&self.recent) {
            return Err("health.recent must be between 1 and 1000".into());
        }
        if !(10..=3_600).contains(&self.every_s) {
            return Err("health.every_s must be between 10 and 3600".into());
        }
        Ok(())
    }
}

/// The limits the shares are judged by: the shipped rules' own, so health
/// and the exceptions agree.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_residual_fraction: f64,
    pub max_relative_spread: f64,
    pub max_drift_fraction: f64,
    /// The relay voltage's low limit (V).
    pub relay_low: Option<f64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_residual_fraction: 0.15,
            max_relative_spread: 0.1,
            max_drift_fraction: 0.15,
            relay_low: Some(0.8),
        }
    }
}

/// An exception open on the circuit.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenException {
    pub kind: ExceptionKind,
    pub severity: Severity,
    pub active: bool,
}

/// What the score is computed from.
#[derive(Debug, Clone, Default)]
pub struct Inputs<'a> {
    /// The circuit's occupations, oldest first (the last weeks).
    pub occupations: &'a [Occupation],
    pub open: &'a [OpenException],
}

/// A margin this far above the low limit costs nothing.
const FULL_MARGIN: f64 = 0.25;

pub fn score(
    circuit: &str,
    inputs: &Inputs<'_>,
    limits: &Limits,
    weights: &HealthConfig,
    at: i64,
) -> CircuitHealth {
    let mut deductions = Vec::new();
    let mut deduct = |cause: &str, points: f64, detail: String| {
        if points >= 0.05 {
            deductions.push(HealthDeduction {
                cause: cause.into(),
                points: (points * 10.0).round() / 10.0,
                detail,
            });
        }
    };
    let recent: Vec<&Occupation> = inputs
        .occupations
        .iter()
        .rev()
        .take(weights.recent)
        .collect();
    let n = recent.len();
    let share = |count: usize| if n == 0 { 0.0 } else { count as f64 / n as f64 };
    let judged = |o: &&&Occupation| o.class != OccupationClass::Flick;

    let poor = recent
        .iter()
        .filter(judged)
        .filter(|o| {
            matches!((o.residual_max, o.drop_value), (Some(r), Some(d)) if d > 0.0 && r / d > limits.max_residual_fraction)
        })
        .count();
    deduct(
        "poor_shunt",
        weights.poor_shunt * share(poor),
        format!(
            "{poor} of the last {n} occupations shunted poorly (residual above {:.0} % of the level before the drop)",
            limits.max_residual_fraction * 100.0
        ),
    );
    let unstable = recent
        .iter()
        .filter(judged)
        .filter(|o| {
            matches!((o.current_sd, o.current_mean), (Some(sd), Some(m)) if m > 0.0 && sd / m > limits.max_relative_spread)
        })
        .count();
    deduct(
        "unstable_current",
        weights.unstable_current * share(unstable),
        format!(
            "{unstable} of the last {n} occupations had an unstable feed current (spread above {:.0} %)",
            limits.max_relative_spread * 100.0
        ),
    );
    let flicks = recent
        .iter()
        .filter(|o| o.class == OccupationClass::Flick)
        .count();
    deduct(
        "flicks",
        weights.flicks * share(flicks),
        format!("{flicks} of the last {n} occupations were flicks"),
    );
    let gappy = recent.iter().filter(|o| o.missing_readings > 0).count();
    deduct(
        "data_quality",
        weights.data_quality * share(gappy),
        format!("{gappy} of the last {n} occupations had readings missing"),
    );

    // Drift: the last 5 drop values against the median of those before.
    let drops: Vec<f64> = inputs
        .occupations
        .iter()
        .filter(|o| o.class != OccupationClass::Flick)
        .filter_map(|o| o.drop_value)
        .collect();
    if drops.len() >= 25 {
        let (before, last) = drops.split_at(drops.len() - 5);
        if let (Some(base), Some(now)) = (median(before), median(last))
            && base > 0.0
        {
            let drift = (now - base) / base;
            deduct(
                "drift",
                weights.drift * (drift.abs() / limits.max_drift_fraction).min(1.0),
                format!(
                    "drop value {now:.3} V, {:+.1} % from its {base:.3} V baseline",
                    drift * 100.0
                ),
            );
        }
        if let (Some(low), Some(level)) = (limits.relay_low, median(last))
            && low > 0.0
        {
            let margin = (level - low) / low;
            deduct(
                "margin",
                weights.margin * (1.0 - margin / FULL_MARGIN).clamp(0.0, 1.0),
                format!(
                    "clear level {level:.3} V, {:.0} % above the {low:.2} V low limit",
                    margin * 100.0
                ),
            );
        }
    }

    let mut exception_points = 0.0;
    let mut counted = 0;
    let mut predicted = false;
    for open in inputs.open.iter().filter(|o| o.active) {
        match open.kind {
            ExceptionKind::Predicted => predicted = true,
            // Health itself, and the per-occupation rules counted above.
            ExceptionKind::HealthLow
            | ExceptionKind::PoorShunt
            | ExceptionKind::UnstableOccupationCurrent
            | ExceptionKind::DropPickDrift => {}
            _ => {
                counted += 1;
                exception_points += match open.severity {
                    Severity::Critical => weights.critical,
                    Severity::Major => weights.major,
                    Severity::Warning => weights.warning,
                    Severity::Info => 0.0,
                };
            }
        }
    }
    deduct(
        "exceptions",
        exception_points.min(weights.exceptions_cap),
        format!(
            "{counted} active exception{}",
            if counted == 1 { "" } else { "s" }
        ),
    );
    if predicted {
        deduct(
            "predicted",
            weights.predicted,
            "a forecast reaches a limit".into(),
        );
    }
    deductions.sort_by(|a, b| b.points.total_cmp(&a.points));
    let lost: f64 = deductions.iter().map(|d| d.points).sum();
    CircuitHealth {
        circuit: circuit.to_owned(),
        score: ((100.0 - lost).clamp(0.0, 100.0) * 10.0).round() / 10.0,
        at,
        deductions,
        occupations: n as u32,
    }
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// A healthy occupation of a 1.5 V circuit fed at 2 A.
    fn good(i: i64) -> Occupation {
        Occupation {
            circuit: "T101".into(),
            start: i * 10 * MIN,
            end: i * 10 * MIN + MIN,
            duration_ms: MIN,
            class: OccupationClass::Normal,
            drop_value: Some(1.5 * (1.0 + 0.01 * ((i % 5) as f64 - 2.0))),
            pick_value: Some(1.5),
            residual_min: Some(0.01),
            residual_max: Some(0.03),
            current_mean: Some(2.0),
            current_sd: Some(0.02),
            missing_readings: 0,
            readings: 240,
        }
    }

    fn history(spoil: impl Fn(i64, &mut Occupation)) -> Vec<Occupation> {
        (0..60)
            .map(|i| {
                let mut o = good(i);
                spoil(i, &mut o);
                o
            })
            .collect()
    }

    fn scored(occupations: &[Occupation], open: &[OpenException]) -> CircuitHealth {
        score(
            "T101",
            &Inputs { occupations, open },
            &Limits::default(),
            &HealthConfig::default(),
            0,
        )
    }

    fn lost(health: &CircuitHealth, cause: &str) -> f64 {
        health
            .deductions
            .iter()
            .filter(|d| d.cause == cause)
            .map(|d| d.points)
            .sum()
    }

    #[test]
    fn a_healthy_circuit_stays_at_90_or_above() {
        let health = scored(&history(|_, _| {}), &[]);
        assert!(health.score >= 90.0, "{health:?}");
        assert_eq!(health.occupations, 20);
        // With no occupations at all, nothing is held against it either.
        assert_eq!(scored(&[], &[]).score, 100.0);
    }

    #[test]
    fn each_degradation_lowers_it_by_the_documented_amount() {
        let base = scored(&history(|_, _| {}), &[]).score;
        // Half of the last 20 occupations shunt poorly: 40 × 0.5 = 20.
        let poor = scored(
            &history(|i, o| {
                if i >= 50 {
                    o.residual_max = Some(0.5);
                }
            }),
            &[],
        );
        assert_eq!(lost(&poor, "poor_shunt"), 20.0);
        assert!((base - poor.score - 20.0).abs() < 1e-9, "{poor:?}");
        assert_eq!(poor.deductions[0].cause, "poor_shunt");
        // All 20 with an unstable current: 20.
        let unstable = scored(&history(|_, o| o.current_sd = Some(0.5)), &[]);
        assert_eq!(lost(&unstable, "unstable_current"), 20.0);
        // 5 of 20 flicks: 15 × 0.25 = 3.75, shown rounded.
        let flicky = scored(
            &history(|i, o| {
                if i % 4 == 0 {
                    o.class = OccupationClass::Flick;
                }
            }),
            &[],
        );
        assert_eq!(lost(&flicky, "flicks"), 3.8);
        // Readings missing under every one: 10.
        let gappy = scored(&history(|_, o| o.missing_readings = 3), &[]);
        assert_eq!(lost(&gappy, "data_quality"), 10.0);
        // The last 5 drop values 15 % down: the drift weight in full, 20.
        let drifting = scored(
            &history(|i, o| {
                if i >= 55 {
                    o.drop_value = Some(1.5 * 0.85);
                }
            }),
            &[],
        );
        assert_eq!(lost(&drifting, "drift"), 20.0);
        // A clear level 10 % above the 0.8 V low limit: 15 × (1 - 10/25) = 9.
        let thin = scored(&history(|_, o| o.drop_value = Some(0.88)), &[]);
        assert!((lost(&thin, "margin") - 9.0).abs() < 0.05, "{thin:?}");
        // An active major exception and a forecast reaching a limit: 25 + 15.
        let open = [
            OpenException {
                kind: ExceptionKind::Limit,
                severity: Severity::Major,
                active: true,
            },
            OpenException {
                kind: ExceptionKind::Predicted,
                severity: Severity::Warning,
                active: true,
            },
            // Cleared, awaiting acknowledgement: not held against it.
            OpenException {
                kind: ExceptionKind::Stale,
                severity: Severity::Critical,
                active: false,
            },
        ];
        let alarmed = scored(&history(|_, _| {}), &open);
        assert_eq!(lost(&alarmed, "exceptions"), 25.0);
        assert_eq!(lost(&alarmed, "predicted"), 15.0);
    }

    #[test]
    fn it_never_goes_below_zero_and_exceptions_are_capped() {
        let open: Vec<_> = (0..5)
            .map(|_| OpenException {
                kind: ExceptionKind::Limit,
                severity: Severity::Critical,
                active: true,
            })
            .collect();
        let worst = scored(
            &history(|_, o| {
                o.residual_max = Some(1.0);
                o.current_sd = Some(1.0);
                o.missing_readings = 1;
            }),
            &open,
        );
        assert_eq!(lost(&worst, "exceptions"), 50.0);
        assert_eq!(worst.score, 0.0);
    }

    #[test]
    fn weights_are_checked() {
        assert!(HealthConfig::default().validate().is_ok());
        let bad = HealthConfig {
            poor_shunt: -1.0,
            ..HealthConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
