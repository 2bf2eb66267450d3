//! Alarm management on top of exceptions: priority, and maintenance
//! windows.
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// Where a maintenance window stands at the time of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WindowState {
    Planned,
    Active,
    Ended,
}

/// A maintenance window: while it lasts, exceptions raised on its circuits
/// (or its gateway's) are recorded as suppressed instead of announced; at
/// its end whatever is still active is raised normally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaintenanceWindowInfo {
    pub id: i64,
    /// Circuit names or patterns (`T1*`).
    pub circuits: Vec<String>,
    /// Every channel of this gateway, and the gateway itself.
    pub gateway: Option<String>,
    pub reason: String,
    /// Unix ms.
    pub starts_at: i64,
    /// When it ends, or ended (earlier than planned when someone ended it).
    pub ends_at: i64,
    pub created_by: String,
    pub created_at: i64,
    /// Who ended it before its planned end (or cancelled it before it
    /// began).
    pub ended_by: Option<String>,
    pub state: WindowState,
    /// Exceptions raised under it (suppressed).
    pub suppressed: i64,
}

/// `POST /api/maintenance`: plan a window, or start one now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewMaintenanceWindow {
    #[serde(default)]
    pub circuits: Vec<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    pub reason: String,
    /// Unix ms; absent: now.
    #[serde(default)]
    pub starts_at: Option<i64>,
    /// Unix ms.
    pub ends_at: i64,
}

/// `GET /api/shelves`: an operator's shelf. It hides one exception (a
/// rule on one subject) or a rule on every channel of a circuit until its
/// time runs out or someone unshelves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShelfInfo {
    pub id: i64,
    pub rule: String,
    /// The one subject it hides (`T1/relay_voltage`, or a gateway id).
    pub subject: Option<String>,
    /// Or every channel of this circuit under `rule`.
    pub circuit: Option<String>,
    pub reason: String,
    /// Unix ms.
    pub created_at: i64,
    pub created_by: String,
    /// When it runs out, or ran out (earlier when someone unshelved it).
    pub until: i64,
    /// Who unshelved it before its time.
    pub ended_by: Option<String>,
    /// It still holds.
    pub active: bool,
    /// Open exceptions it hides now.
    pub hidden: i64,
}

/// `POST /api/shelves`: shelve an exception (`exception`), or a rule on a
/// circuit (`rule` and `circuit`), for `duration_s` with a reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewShelf {
    #[serde(default)]
    pub exception: Option<i64>,
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub circuit: Option<String>,
    pub reason: String,
    /// Seconds, at most the server's `shelve_max_s`.
    pub duration_s: u64,
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
