//! How urgent an exception is, and how that grows when nobody answers.
//!
//! Priority is what an operator sorts by and what decides who is woken:
//! a major fault on a running line must outrank the same fault on a
//! siding, so it comes from two things, the rule's severity and the
//! circuit's criticality. The criticality is looked up in one place,
//! [`Criticalities::criticality`], from the yard layout, which names each
//! circuit's (a new layout takes effect at the engine's next tick). An exception nobody acknowledges escalates
//! ([`Escalation`]): its priority rises a step and the next group is told.

use std::collections::HashMap;

use trackside_wire::{Criticality, Layout, Priority, Severity};

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

/// Every circuit's criticality, as the yard layout names it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Criticalities {
    by_circuit: HashMap<String, Criticality>,
}

impl Criticalities {
    /// What `layout` says of each of its circuits.
    pub fn from_layout(layout: &Layout) -> Self {
        Self {
            by_circuit: layout
                .circuits
                .iter()
                .map(|c| (c.id.clone(), c.criticality))
                .collect(),
        }
    }

    /// The one lookup every priority goes through. A circuit the layout
    /// does not name (or every circuit, while there is no layout) counts
    /// as a running line, [`DEFAULT_CRITICALITY`], so that no asset is
    /// under-prioritised for want of a drawing.
    pub fn criticality(&self, circuit: &str) -> Criticality {
        self.by_circuit
            .get(circuit)
            .copied()
            .unwrap_or(DEFAULT_CRITICALITY)
    }
}

/// The criticality of a circuit the layout does not name.
pub const DEFAULT_CRITICALITY: Criticality = Criticality::RunningLine;

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
    fn the_layout_names_criticalities_and_unnamed_circuits_are_running_lines() {
        let layout: Layout = serde_json::from_value(serde_json::json!({
            "name": null,
            "circuits": [
                {"id": "S12", "name": null, "criticality": "siding"},
                {"id": "L3", "name": "Up loop", "criticality": "loop"},
                {"id": "T1", "name": null, "criticality": "running_line"},
            ],
            "sections": [], "points": [], "signals": [], "labels": [], "routes": [],
            "adjacent": [],
        }))
        .expect("a layout");
        let criticalities = Criticalities::from_layout(&layout);
        let cases = [
            ("S12", Criticality::Siding),
            ("L3", Criticality::Loop),
            ("T1", Criticality::RunningLine),
            ("T90", Criticality::RunningLine),
        ];
        for (circuit, expected) in cases {
            assert_eq!(criticalities.criticality(circuit), expected, "{circuit}");
        }
        assert_eq!(
            Criticalities::default().criticality("S12"),
            DEFAULT_CRITICALITY
        );
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
        assert_eq!(
            escalation.after_ms(Priority::Low, 0, Some(60.0)),
            Some(60_000)
        );
        assert_eq!(escalation.after_ms(Priority::High, 2, Some(60.0)), None);
    }
}
