//! Alarm management on top of exceptions: priority, shelving, maintenance
//! windows, escalation, floods and who is notified.
//!
//! The words follow the alarm-management standard (ISA-18.2 / IEC 62682):
//! a *priority* says how soon someone must act, *shelving* is an
//! operator hiding a known alarm for a while, *suppression* is a planned
//! maintenance window doing it by design, a *flood* is more alarms than
//! one operator can handle.

use serde::{Deserialize, Serialize};

use crate::exceptions::ExceptionKind;

/// How much a circuit matters to traffic: a running line outranks a loop,
/// which outranks a siding. Ordered from least to most critical. The yard
/// layout names each circuit's; until a circuit is named, configuration
/// decides (`[alarms]`), and an unknown one counts as a running line so
/// that no asset is under-prioritised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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

/// An exception's shelving, when it is shelved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShelvedInfo {
    /// The shelf (`/api/shelves`).
    pub shelf: i64,
    /// Unix ms when it unshelves by itself.
    pub until: i64,
    pub by: String,
    pub reason: String,
}

/// A shelf: one exception's rule and subject, or one rule on every channel
/// of a circuit, hidden from sound, counts and notifications until `until`.
/// What it covers is still recorded and listed (under "Shelved").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShelfInfo {
    pub id: i64,
    pub rule: String,
    /// One subject (a channel, or a gateway for `gateway_offline`)...
    pub subject: Option<String>,
    /// ...or every channel of this circuit.
    pub circuit: Option<String>,
    pub reason: String,
    pub by: String,
    /// Unix ms.
    pub at: i64,
    pub until: i64,
    /// When it ended before `until` (unshelved by hand), or `until` once it
    /// expired; `None` while it holds.
    pub ended_at: Option<i64>,
    /// Who unshelved it; `None` when it expired by itself.
    pub ended_by: Option<String>,
}

/// `POST /api/shelves`: shelve an open exception (`exception`), or a rule
/// on a circuit (`rule` and `circuit`), for `minutes`, saying why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewShelf {
    #[serde(default)]
    pub exception: Option<i64>,
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub circuit: Option<String>,
    pub minutes: u32,
    pub reason: String,
}

/// Where a maintenance window stands at the time of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowState {
    Planned,
    Active,
    Ended,
}

impl WindowState {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowState::Planned => "planned",
            WindowState::Active => "active",
            WindowState::Ended => "ended",
        }
    }
}

/// A maintenance window: while it lasts, exceptions raised on its circuits
/// (or on its gateway's) are recorded as suppressed instead of sounding
/// and notifying; at its end whatever is still active is raised normally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Exceptions it suppressed.
    pub suppressed: i64,
}

/// `POST /api/maintenance`: plan a window, or start one now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// Exceptions of one kind on one gateway within a flood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloodGroup {
    pub kind: ExceptionKind,
    pub gateway: Option<String>,
    pub count: u32,
    /// "14 stale channels on yard-gw02".
    pub text: String,
}

/// More exceptions than one operator can handle in the flood window: the
/// list and the notifications summarise them instead of listing each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloodInfo {
    pub id: i64,
    /// Unix ms.
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// Exceptions raised in the flood, the ones that started it included.
    pub raised: u32,
    /// Largest first.
    pub groups: Vec<FloodGroup>,
    /// The groups in one line.
    pub summary: String,
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
    /// Floods that began in the period.
    pub floods: i64,
    /// Open exceptions shelved, and suppressed, now.
    pub shelved_now: i64,
    pub suppressed_now: i64,
}

/// A person's notification settings: which exceptions reach them by
/// e-mail, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    pub email: Option<String>,
    pub email_enabled: bool,
    /// At least this priority (after escalation).
    pub min_priority: Priority,
    /// Circuit names or patterns; empty: every circuit (and gateway).
    #[serde(default)]
    pub circuits: Vec<String>,
    /// When in an exception's life: 0 as soon as it is raised, 1 when it
    /// has escalated once (nobody acknowledged it in time), 2 twice.
    pub escalation_level: u8,
    /// Only between these times of day on the yard's clock ("22:00" to
    /// "06:30" spans midnight); both absent: at any time.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    /// Flood summaries ("14 stale channels on yard-gw02").
    pub floods: bool,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            email: None,
            email_enabled: false,
            min_priority: Priority::High,
            circuits: Vec::new(),
            escalation_level: 0,
            from: None,
            to: None,
            floods: true,
        }
    }
}

/// `GET /api/me/notifications`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MyNotifications {
    pub settings: NotificationSettings,
    /// The server has an SMTP server to send through.
    pub email_configured: bool,
    /// How many escalation levels there are (settings above it never fire).
    pub escalation_levels: u8,
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
        assert_eq!(
            serde_json::to_string(&Criticality::RunningLine).unwrap(),
            "\"running_line\""
        );
    }
}
