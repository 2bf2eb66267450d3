//! How urgent an exception is, and how that grows when nobody answers.
//!
//! Priority is what an operator sorts by and what decides who is woken:
//! a major fault on a running line must outrank the same fault on a
//! siding, so it comes from two things, the rule's severity and the
//! circuit's criticality. The criticality is looked up in one place,
//! [`Criticalities::criticality`], which reads configuration today and is
//! where the yard layout (which names each circuit's) answers first once
//! it is there. An exception nobody acknowledges escalates
//! ([`Escalation`]): its priority rises a step and the next group is told.

use serde::Deserialize;
use trackside_wire::{Criticality, Priority, Severity, pattern_matches};

use super::engine::Ms;

/// The priority an exception is raised with. Severity says how bad the
/// condition is for the circuit, criticality how much the circuit matters:
///
/// | severity \ criticality | siding | loop   | running line |
/// |------------------------|--------|--------|--------------|
/// | critical               | medium | high   | high         |
/// | major                  | low    | medium | high         |
/// | warning                | low    | low    | medium       |
/// | info                   | low    | low    | low          |
pub fn priority(severity: Severity, criticality: Criticality) -> Priority {
    use Criticality::{Loop, RunningLine, Siding};
    use Priority::{High, Low, Medium};
    match (severity, criticality) {
        (Severity::Critical, Siding) => Medium,
        (Severity::Critical, Loop | RunningLine) => High,
        (Severity::Major, Siding) => Low,
        (Severity::Major, Loop) => Medium,
        (Severity::Major, RunningLine) => High,
        (Severity::Warning, Siding | Loop) => Low,
        (Severity::Warning, RunningLine) => Medium,
        (Severity::Info, _) => Low,
    }
}

/// `[[alarms.criticality]]`: circuits (names or patterns) of one
/// criticality.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriticalityEntry {
    pub circuits: Vec<String>,
    pub criticality: Criticality,
}

/// Every circuit's criticality.
#[derive(Debug, Clone, PartialEq)]
pub struct Criticalities {
    entries: Vec<CriticalityEntry>,
    default: Criticality,
}

impl Default for Criticalities {
    fn default() -> Self {
        Self::new(Vec::new(), Criticality::RunningLine)
    }
}

impl Criticalities {
    /// The first entry naming a circuit decides; a circuit nobody named
    /// gets `default`.
    pub fn new(entries: Vec<CriticalityEntry>, default: Criticality) -> Self {
        Self { entries, default }
    }

    /// The one lookup every priority goes through.
    pub fn criticality(&self, circuit: &str) -> Criticality {
        self.entries
            .iter()
            .find(|e| e.circuits.iter().any(|p| pattern_matches(p, circuit)))
            .map_or(self.default, |e| e.criticality)
    }

    pub fn default_criticality(&self) -> Criticality {
        self.default
    }
}

/// When an unacknowledged exception escalates.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    /// Seconds unacknowledged before the next escalation, per current
    /// priority (low, medium, high); `None` never.
    pub after_s: [Option<f64>; 3],
    /// Escalations at most (each raises the priority a step and tells the
    /// next level); 0 turns escalation off.
    pub levels: u8,
}

impl Default for Escalation {
    /// Off: the engine's tests and the fault drill run without it.
    fn default() -> Self {
        Self {
            after_s: [None; 3],
            levels: 0,
        }
    }
}

impl Escalation {
    /// How long an exception of this priority may wait at `level` before
    /// it escalates again; a rule's own time wins.
    pub fn after_ms(&self, priority: Priority, level: u8, rule_s: Option<f64>) -> Option<Ms> {
        if level >= self.levels {
            return None;
        }
        let seconds = rule_s.or(self.after_s[priority as usize])?;
        Some((seconds * 1000.0).round() as Ms)
    }
}

/// What the engine needs to rank and escalate exceptions.
#[derive(Debug, Clone, Default)]
pub struct AlarmPolicy {
    pub criticalities: Criticalities,
    pub escalation: Escalation,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_comes_from_severity_and_criticality() {
        use Criticality::*;
        use Priority::*;
        let table = [
            (Severity::Critical, [Medium, High, High]),
            (Severity::Major, [Low, Medium, High]),
            (Severity::Warning, [Low, Low, Medium]),
            (Severity::Info, [Low, Low, Low]),
        ];
        for (severity, expected) in table {
            let got = [Siding, Loop, RunningLine].map(|c| priority(severity, c));
            assert_eq!(got, expected, "{severity:?}");
        }
    }

    #[test]
    fn the_first_entry_naming_a_circuit_decides_and_unknown_ones_are_running_lines() {
        let criticalities = Criticalities::new(
            vec![
                CriticalityEntry {
                    circuits: vec!["S*".into(), "T9".into()],
                    criticality: Criticality::Siding,
                },
                CriticalityEntry {
                    circuits: vec!["S1*".into(), "L*".into()],
                    criticality: Criticality::Loop,
                },
            ],
            Criticality::RunningLine,
        );
        let cases = [
            ("S12", Criticality::Siding),
            ("T9", Criticality::Siding),
            ("T90", Criticality::RunningLine),
            ("L3", Criticality::Loop),
            ("T101", Criticality::RunningLine),
        ];
        for (circuit, expected) in cases {
            assert_eq!(criticalities.criticality(circuit), expected, "{circuit}");
        }
    }

    #[test]
    fn escalation_waits_by_priority_until_the_levels_run_out() {
        let escalation = Escalation {
            after_s: [None, Some(1800.0), Some(300.0)],
            levels: 2,
        };
        assert_eq!(escalation.after_ms(Priority::High, 0, None), Some(300_000));
        assert_eq!(
            escalation.after_ms(Priority::Medium, 1, None),
            Some(1_800_000)
        );
        assert_eq!(escalation.after_ms(Priority::Low, 0, None), None);
        assert_eq!(escalation.after_ms(Priority::Low, 0, Some(60.0)), Some(60_000));
        assert_eq!(escalation.after_ms(Priority::High, 2, Some(60.0)), None);
    }
}
