//! The rules judged per occupation: `poor_shunt`,
//! `unstable_occupation_current` and `drop_pick_drift`.
//!
//! They do not watch readings: the health job derives each circuit's
//! occupations from stored readings (exact, late readings included) and
//! hands the engine the circuit's recent ones, oldest first. Each rule is
//! judged on that window alone, so a restart or a second look at the same
//! window gives the same answer, and the engine keeps no state for them
//! beyond the open exceptions. Times are the occupations' own (the end of
//! the newest), as value conditions use the readings' times.
//!
//! Defaults and their reasoning: docs/design/health.md.

use trackside_wire::{Check, Occupation, OccupationClass};

use super::{Engine, Ms, Transition};

/// Checks one of these rules' parameters.
pub(super) fn validate(check: &Check) -> Result<(), String> {
    let fraction = |v: f64| v.is_finite() && v > 0.0 && v < 1.0;
    let problem = match check {
        Check::PoorShunt {
            max_residual_fraction,
            occupations,
        } if !fraction(*max_residual_fraction) || *occupations == 0 => {
            Some("max_residual_fraction must be between 0 and 1 and occupations at least 1")
        }
        Check::UnstableOccupationCurrent {
            max_relative_spread,
            occupations,
        } if !fraction(*max_relative_spread) || *occupations == 0 => {
            Some("max_relative_spread must be between 0 and 1 and occupations at least 1")
        }
        Check::DropPickDrift {
            max_drift_fraction,
            recent,
            baseline_days,
            min_baseline,
        } if !fraction(*max_drift_fraction)
            || *recent == 0
            || *min_baseline == 0
            || !(baseline_days.is_finite() && *baseline_days > 0.0) =>
        {
            Some(
                "max_drift_fraction must be between 0 and 1; recent, min_baseline and \
                 baseline_days positive",
            )
        }
        Check::HealthLow { below } if !(below.is_finite() && *below > 0.0 && *below < 100.0) => {
            Some("below must be between 0 and 100")
        }
        _ => None,
    };
    problem.map_or(Ok(()), |p| Err(p.to_owned()))
}

/// Points above its level a `health_low` exception clears at.
const HEALTH_HYSTERESIS: f64 = 5.0;

/// The residual as a share of the level before the drop, for an
/// occupation long enough to have one.
fn residual_share(o: &Occupation) -> Option<f64> {
    let level = o.drop_value.filter(|v| *v > 0.0)?;
    (o.class != OccupationClass::Flick)
        .then_some(())
        .and(o.residual_max)
        .map(|r| r / level)
}

fn current_spread(o: &Occupation) -> Option<f64> {
    let mean = o.current_mean.filter(|m| *m > 0.0)?;
    (o.class != OccupationClass::Flick)
        .then_some(())
        .and(o.current_sd)
        .map(|sd| sd / mean)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// The drift of the recent drop and pick values from their baseline, as
/// (drop drift, pick drift, recent drop, baseline drop), each drift a
/// signed fraction of the baseline.
struct Drift {
    drop: Option<(f64, f64, f64)>,
    pick: Option<(f64, f64, f64)>,
}

fn drift(
    occupations: &[Occupation],
    recent: usize,
    baseline_ms: Ms,
    min_baseline: usize,
) -> Option<Drift> {
    let valued: Vec<&Occupation> = occupations
        .iter()
        .filter(|o| o.class != OccupationClass::Flick)
        .collect();
    if valued.len() < recent {
        return None;
    }
    let (before, last) = valued.split_at(valued.len() - recent);
    let since = last.first()?.start - baseline_ms;
    let baseline: Vec<&&Occupation> = before.iter().filter(|o| o.start >= since).collect();
    if baseline.len() < min_baseline {
        return None;
    }
    let one = |value: fn(&Occupation) -> Option<f64>| -> Option<(f64, f64, f64)> {
        let base = median(baseline.iter().filter_map(|o| value(o)).collect())?;
        let now = median(last.iter().filter_map(|o| value(o)).collect())?;
        (base > 0.0).then(|| ((now - base) / base, now, base))
    };
    Some(Drift {
        drop: one(|o| o.drop_value),
        pick: one(|o| o.pick_value),
    })
}

impl Engine {
    /// A circuit's occupations as derived from stored readings, oldest
    /// first: the newest ones and enough before them for the baselines.
    pub fn occupations(
        &mut self,
        circuit: &str,
        occupations: &[Occupation],
        out: &mut Vec<Transition>,
    ) {
        let Some(at) = occupations.last().map(|o| o.end) else {
            return;
        };
        for index in 0..self.rules.len() {
            let check = self.rules[index].rule.check.clone();
            let (parameter, verdict) = match check {
                Check::PoorShunt {
                    max_residual_fraction,
                    occupations: n,
                } => (
                    "relay_voltage",
                    judge_each(occupations, n as usize, residual_share, max_residual_fraction)
                        .map(|(bad, share)| {
                            let last = occupations.iter().rev().find(|o| residual_share(o).is_some());
                            let residual = last.and_then(|o| o.residual_max).unwrap_or_default();
                            let level = last.and_then(|o| o.drop_value).unwrap_or_default();
                            let message = if bad {
                                format!(
                                    "poor shunt: the relay voltage stayed at {residual:.3} V under the last {n} \
                                     occupation{} ({:.0} % of the {level:.3} V before the drop; limit {:.0} %): \
                                     check the railhead for rust or leaf fall, and light vehicles",
                                    plural(n),
                                    share * 100.0,
                                    max_residual_fraction * 100.0
                                )
                            } else {
                                format!(
                                    "shunting well again: residual {residual:.3} V ({:.0} % of the level before the drop) under the last {n} occupation{}",
                                    share * 100.0,
                                    plural(n)
                                )
                            };
                            (bad, residual, message)
                        }),
                ),
                Check::UnstableOccupationCurrent {
                    max_relative_spread,
                    occupations: n,
                } => (
                    "feed_current",
                    judge_each(occupations, n as usize, current_spread, max_relative_spread).map(
                        |(bad, spread)| {
                            let mean = occupations
                                .iter()
                                .rev()
                                .find_map(|o| current_spread(o).and(o.current_mean))
                                .unwrap_or_default();
                            let message = if bad {
                                format!(
                                    "unstable occupation current: the feed current varied by {:.0} % around \
                                     {mean:.2} A under the last {n} occupation{} (limit {:.0} %): check bonds, \
                                     rail joints and the feed end",
                                    spread * 100.0,
                                    plural(n),
                                    max_relative_spread * 100.0
                                )
                            } else {
                                format!(
                                    "occupation current steady again ({:.0} % around {mean:.2} A)",
                                    spread * 100.0
                                )
                            };
                            (bad, spread * 100.0, message)
                        },
                    ),
                ),
                Check::DropPickDrift {
                    max_drift_fraction,
                    recent,
                    baseline_days,
                    min_baseline,
                } => (
                    "relay_voltage",
                    drift(
                        occupations,
                        recent as usize,
                        (baseline_days * 86_400_000.0) as Ms,
                        min_baseline as usize,
                    )
                    .and_then(|d| {
                        let worst = [("drop", d.drop), ("pick", d.pick)]
                            .into_iter()
                            .filter_map(|(name, v)| v.map(|v| (name, v)))
                            .max_by(|a, b| a.1.0.abs().total_cmp(&b.1.0.abs()))?;
                        let (name, (fraction, now, base)) = worst;
                        let bad = fraction.abs() > max_drift_fraction;
                        let recovered = fraction.abs() < 0.8 * max_drift_fraction;
                        let message = format!(
                            "{name} value {now:.3} V over the last {recent} occupations, {:+.0} % from its \
                             {base:.3} V baseline (limit ±{:.0} %){}",
                            fraction * 100.0,
                            max_drift_fraction * 100.0,
                            if bad {
                                ": the relay or the rail is changing; test the relay's drop-away and pick-up"
                            } else {
                                ""
                            }
                        );
                        (bad || recovered).then_some((bad, now, message))
                    }),
                ),
                _ => continue,
            };
            let subject = format!("{circuit}/{parameter}");
            if !self.rules[index].matches(&subject) {
                continue;
            }
            let Some((bad, value, message)) = verdict else {
                continue;
            };
            let key = self.key(index, &subject);
            let gateway = self.gateway_of(&subject);
            if bad {
                self.raise(&key, at, Some(value), message, gateway.as_deref(), out);
            } else if self.is_active(&key) {
                self.clear(&key, at, Some(value), message, gateway.as_deref(), out);
            }
        }
    }
}

impl Engine {
    /// A circuit's health score as computed at `at`, with what lowered it
    /// most, in words.
    pub fn health(
        &mut self,
        circuit: &str,
        score: f64,
        worst: &str,
        at: Ms,
        out: &mut Vec<Transition>,
    ) {
        let subject = format!("{circuit}/health");
        for index in 0..self.rules.len() {
            let Check::HealthLow { below } = self.rules[index].rule.check else {
                continue;
            };
            if !self.rules[index].matches(&subject) {
                continue;
            }
            let key = self.key(index, &subject);
            if score < below {
                let message = format!(
                    "circuit health {score:.0} of 100, below {below:.0}: {worst}; plan maintenance"
                );
                self.raise(&key, at, Some(score), message, None, out);
            } else if score >= below + HEALTH_HYSTERESIS && self.is_active(&key) {
                let message = format!("circuit health back to {score:.0} of 100");
                self.clear(&key, at, Some(score), message, None, out);
            }
        }
    }
}

/// The last `n` occupations that have the measure: all over `limit`
/// (true, the newest's measure) or all at most `limit` (false, the
/// newest's); `None` when they disagree or there are fewer than `n`.
fn judge_each(
    occupations: &[Occupation],
    n: usize,
    measure: fn(&Occupation) -> Option<f64>,
    limit: f64,
) -> Option<(bool, f64)> {
    let last: Vec<f64> = occupations
        .iter()
        .rev()
        .filter_map(measure)
        .take(n)
        .collect();
    if last.len() < n || n == 0 {
        return None;
    }
    if last.iter().all(|v| *v > limit) {
        Some((true, last[0]))
    } else if last.iter().all(|v| *v <= limit) {
        Some((false, last[0]))
    } else {
        None
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use trackside_wire::{Rule, Severity, TransitionKind};

    use super::*;

    const MIN: Ms = 60_000;

    fn occupation(start: Ms, residual: f64, current_sd: f64, drop: f64) -> Occupation {
        Occupation {
            circuit: "T101".into(),
            start,
            end: start + MIN,
            duration_ms: MIN,
            class: OccupationClass::Normal,
            drop_value: Some(drop),
            pick_value: Some(drop),
            residual_min: Some(residual / 2.0),
            residual_max: Some(residual),
            current_mean: Some(2.0),
            current_sd: Some(current_sd),
            missing_readings: 0,
            readings: 200,
        }
    }

    fn engine(check: Check, target: &str) -> Engine {
        let rule = Rule {
            id: "r".into(),
            target: target.into(),
            exclude: Vec::new(),
            severity: Severity::Warning,
            realarm_after_s: None,
            escalate_after_s: None,
            check,
        };
        Engine::new(vec![rule], None).unwrap()
    }

    /// Feeds each occupation in turn with those before it, as the job
    /// does, and lists (occupation index, transition, value).
    fn run(engine: &mut Engine, history: &[Occupation]) -> Vec<(usize, TransitionKind, String)> {
        let mut seen = Vec::new();
        for i in 0..history.len() {
            let mut out = Vec::new();
            engine.occupations("T101", &history[..=i], &mut out);
            for t in out {
                seen.push((i, t.kind, t.key.subject));
            }
        }
        seen
    }

    fn poor_shunt() -> Check {
        Check::PoorShunt {
            max_residual_fraction: 0.15,
            occupations: 2,
        }
    }

    #[test]
    fn poor_shunt_needs_consecutive_bad_occupations_and_clears_on_good_ones() {
        let residuals = [0.02, 0.4, 0.02, 0.4, 0.45, 0.5, 0.03, 0.4, 0.02, 0.02];
        let history: Vec<_> = residuals
            .iter()
            .enumerate()
            .map(|(i, r)| occupation(i as Ms * 10 * MIN, *r, 0.02, 1.5))
            .collect();
        let mut e = engine(poor_shunt(), "*/relay_voltage");
        assert_eq!(
            run(&mut e, &history),
            vec![
                (4, TransitionKind::Raised, "T101/relay_voltage".into()),
                (9, TransitionKind::Cleared, "T101/relay_voltage".into()),
            ]
        );
    }

    #[test]
    fn flicks_and_occupations_without_values_are_not_judged_for_shunt() {
        let mut flick = occupation(0, 0.9, 0.02, 1.5);
        flick.class = OccupationClass::Flick;
        let mut blind = occupation(10 * MIN, 0.9, 0.02, 1.5);
        blind.drop_value = None;
        let bad = occupation(20 * MIN, 0.9, 0.02, 1.5);
        let mut e = engine(poor_shunt(), "*/relay_voltage");
        assert!(run(&mut e, &[flick, blind, bad]).is_empty());
    }

    #[test]
    fn the_residual_is_judged_against_the_circuits_own_level() {
        // 0.2 V is 20 % of a 1.0 V circuit but 8 % of a 2.5 V one.
        let low: Vec<_> = (0..2)
            .map(|i| occupation(i * MIN * 10, 0.2, 0.02, 1.0))
            .collect();
        let high: Vec<_> = (0..2)
            .map(|i| occupation(i * MIN * 10, 0.2, 0.02, 2.5))
            .collect();
        assert_eq!(
            run(&mut engine(poor_shunt(), "*/relay_voltage"), &low).len(),
            1
        );
        assert!(run(&mut engine(poor_shunt(), "*/relay_voltage"), &high).is_empty());
    }

    #[test]
    fn unstable_current_is_a_spread_relative_to_the_mean() {
        let check = Check::UnstableOccupationCurrent {
            max_relative_spread: 0.1,
            occupations: 2,
        };
        // Mean 2 A: a 0.3 A spread is 15 %.
        let sds = [0.02, 0.3, 0.3, 0.02, 0.02];
        let history: Vec<_> = sds
            .iter()
            .enumerate()
            .map(|(i, sd)| occupation(i as Ms * 10 * MIN, 0.02, *sd, 1.5))
            .collect();
        let mut e = engine(check, "*/feed_current");
        assert_eq!(
            run(&mut e, &history),
            vec![
                (2, TransitionKind::Raised, "T101/feed_current".into()),
                (4, TransitionKind::Cleared, "T101/feed_current".into()),
            ]
        );
    }

    fn drift_check() -> Check {
        Check::DropPickDrift {
            max_drift_fraction: 0.15,
            recent: 3,
            baseline_days: 7.0,
            min_baseline: 10,
        }
    }

    #[test]
    fn drop_values_drifting_from_their_baseline_raise_and_clear() {
        // 20 occupations at 1.5 V, then the relay's values fall 2 % each
        // occupation, then it is replaced.
        let mut drops: Vec<f64> = vec![1.5; 20];
        drops.extend((1..=15).map(|i| 1.5 * (1.0 - 0.02 * i as f64)));
        drops.extend([1.5; 6]);
        let history: Vec<_> = drops
            .iter()
            .enumerate()
            .map(|(i, d)| occupation(i as Ms * 60 * MIN, 0.02, 0.02, *d))
            .collect();
        let mut e = engine(drift_check(), "*/relay_voltage");
        let seen = run(&mut e, &history);
        assert_eq!(seen.len(), 2, "{seen:?}");
        // The median of the last 3 passes -15 % once the third is below
        // 1.5 × 0.85 = 1.275 V: the 9th falling occupation (1.23 V), and the
        // median of the last three is the 8th's (1.26 V): -16 %.
        assert_eq!(seen[0].1, TransitionKind::Raised);
        assert_eq!(seen[0].0, 28, "{seen:?}");
        assert_eq!(seen[1].1, TransitionKind::Cleared);
    }

    #[test]
    fn no_drift_is_judged_without_enough_baseline() {
        let history: Vec<_> = (0..12)
            .map(|i| occupation(i * 60 * MIN, 0.02, 0.02, if i < 9 { 1.5 } else { 0.9 }))
            .collect();
        // 9 before the 3 recent ones: below the 10 needed.
        assert!(run(&mut engine(drift_check(), "*/relay_voltage"), &history).is_empty());
        // A baseline older than the window does not count either.
        let old: Vec<_> = (0..20)
            .map(|i| {
                let start = if i < 17 {
                    i * MIN
                } else {
                    30 * 24 * 60 * MIN + i * MIN
                };
                occupation(start, 0.02, 0.02, if i < 17 { 1.5 } else { 0.9 })
            })
            .collect();
        let mut out = Vec::new();
        engine(drift_check(), "*/relay_voltage").occupations("T101", &old, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn bad_parameters_are_refused() {
        for check in [
            Check::PoorShunt {
                max_residual_fraction: 1.5,
                occupations: 2,
            },
            Check::UnstableOccupationCurrent {
                max_relative_spread: 0.1,
                occupations: 0,
            },
            Check::DropPickDrift {
                max_drift_fraction: 0.1,
                recent: 3,
                baseline_days: f64::NAN,
                min_baseline: 10,
            },
        ] {
            let rule = Rule {
                id: "r".into(),
                target: "*".into(),
                exclude: Vec::new(),
                severity: Severity::Warning,
                realarm_after_s: None,
                escalate_after_s: None,
                check,
            };
            assert!(Engine::new(vec![rule], None).is_err());
        }
    }
}
