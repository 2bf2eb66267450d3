//! Alarm management on top of exceptions: priority, and the mix of
//! priorities against the standard's target.
//!
//! The words follow the alarm-management standard (ISA-18.2 / IEC 62682):
//! a *priority* says how soon someone must act, *shelving* is an
//! operator hiding a known alarm for a while, *suppression* is a planned
//! maintenance window doing it by design, a *flood* is more alarms than
//! one operator can handle.

use serde::{Deserialize, Serialize};

/// How soon someone must act on an exception, from its rule's severity and
/// its circuit's criticality; escalation raises it. Ordered: `Low < Medium
/// < High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// For the maintenance plan: look at it this shift.
    Low,
    /// Act within the hour.
    Medium,
    /// Act now: it sounds in the control room until acknowledged.
    High,
}

impl Priority {
    /// Most urgent first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Medium, Priority::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }

    pub fn label(self) -> &'static str {
        match self {
            Priority::Low => "Low",
            Priority::Medium => "Medium",
            Priority::High => "High",
        }
    }

    /// One step more urgent (escalation); `High` stays `High`.
    pub fn raised(self) -> Self {
        match self {
            Priority::Low => Priority::Medium,
            Priority::Medium | Priority::High => Priority::High,
        }
    }

    /// The share of all alarms the standard aims for at this priority
    /// (EEMUA 191 / ISA-18.2: about 80 % low, 15 % medium, 5 % high).
    /// More high than that and the priorities no longer mean anything.
    pub fn target_share(self) -> f64 {
        match self {
            Priority::Low => 0.80,
            Priority::Medium => 0.15,
            Priority::High => 0.05,
        }
    }
}

/// One priority's part of the mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorityShare {
    pub priority: Priority,
    pub count: i64,
    /// Of all counted; 0 when nothing was.
    pub share: f64,
    /// What the standard aims for.
    pub target: f64,
}

/// `GET /api/priority-mix`: the priorities exceptions were raised with over
/// a period (before any escalation; suppressed ones are not counted:
/// nobody was alarmed), against the standard's target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorityMix {
    pub from: i64,
    pub to: i64,
    pub total: i64,
    /// High, medium, low.
    pub shares: Vec<PriorityShare>,
    /// Open exceptions suppressed by a maintenance window now.
    pub suppressed_now: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_order_and_escalate() {
        assert!(Priority::High > Priority::Medium && Priority::Medium > Priority::Low);
        assert_eq!(Priority::Low.raised(), Priority::Medium);
        assert_eq!(Priority::High.raised(), Priority::High);
        let total: f64 = Priority::ALL.iter().map(|p| p.target_share()).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert_eq!(Priority::parse("medium"), Some(Priority::Medium));
        assert_eq!(serde_json::to_string(&Priority::High).unwrap(), "\"high\"");
    }
}
