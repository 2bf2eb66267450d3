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

impl MaintenanceWindowInfo {
    /// Whether the window covers `circuit`, fed by `gateways` (a gateway
    /// window covers every circuit the gateway feeds), whatever the time.
    pub fn covers<'a>(&self, circuit: &str, mut gateways: impl Iterator<Item = &'a str>) -> bool {
        self.circuits
            .iter()
            .any(|p| crate::pattern_matches(p, circuit))
            || self
                .gateway
                .as_deref()
                .is_some_and(|own| gateways.any(|g| g == own))
    }

    /// Whether it holds at `at` (Unix ms): from its start, until its end.
    pub fn holds_at(&self, at: i64) -> bool {
        self.starts_at <= at && at < self.ends_at
    }
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

/// `GET /api/exceptions/mix`: how the exceptions raised over a period
/// split by priority, beside the standard's target, and how many arrived
/// per hour and per 10 minutes (ISA-18.2's rate and flood measures).
/// Exceptions raised inside a maintenance window are not counted: nobody
/// was alarmed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorityMix {
    /// Unix ms.
    pub from: i64,
    pub to: i64,
    /// Per priority as raised (before any escalation), most urgent first.
    pub priorities: Vec<PriorityShare>,
    pub raised: i64,
    /// Raised per hour over the period.
    pub per_hour: f64,
    /// The most raised in any 10 minutes.
    pub peak_10min: i64,
    /// The share of the period's 10-minute intervals with more than 10
    /// raised: the standard's flood, more than one operator can handle.
    pub flood_share: f64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorityShare {
    pub priority: Priority,
    pub raised: i64,
    /// Of all raised in the period; absent when none were.
    pub share: Option<f64>,
    /// [`Priority::target_share`].
    pub target: f64,
}

/// `GET`/`PUT /api/me/notifications` and `/api/users/{name}/notifications`:
/// what reaches one user by e-mail, besides the configured groups.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// Where their e-mail goes; absent: none.
    #[serde(default)]
    pub email: Option<String>,
    /// Each route that matches an announced exception sends it once.
    #[serde(default)]
    pub routes: Vec<NotifyRoute>,
}

/// Which exceptions reach the user, and when.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyRoute {
    /// The least priority that reaches them.
    pub min_priority: Priority,
    /// Circuit (or subject) patterns, `*` for any run of characters;
    /// empty: every circuit.
    #[serde(default)]
    pub circuits: Vec<String>,
    /// Hours of the day in the yard's zone, `[from, to)`, 0 to 24; `from`
    /// after `to` runs past midnight (`[18, 6]`: out of hours). Absent:
    /// at any hour.
    #[serde(default)]
    pub hours: Option<[u8; 2]>,
}

impl NotifyRoute {
    /// Whether an exception of this priority on `place` at this local hour
    /// (0 to 23) goes by this route.
    pub fn takes(&self, priority: Priority, place: &str, hour: u8) -> bool {
        let in_hours = match self.hours {
            None => true,
            Some([from, to]) if from <= to => (from..to).contains(&hour),
            Some([from, to]) => hour >= from || hour < to,
        };
        in_hours
            && priority >= self.min_priority
            && (self.circuits.is_empty()
                || self
                    .circuits
                    .iter()
                    .any(|p| crate::channel::pattern_matches(p, place)))
    }
}

#[cfg(test)]
mod route_tests {
    use super::*;

    #[test]
    fn a_route_takes_its_priorities_circuits_and_hours() {
        let route = NotifyRoute {
            min_priority: Priority::Medium,
            circuits: vec!["T1*".into()],
            hours: Some([18, 6]),
        };
        assert!(route.takes(Priority::High, "T12", 23));
        assert!(route.takes(Priority::Medium, "T1", 5));
        assert!(!route.takes(Priority::Medium, "T1", 6), "office hours");
        assert!(!route.takes(Priority::Low, "T1", 23), "below its priority");
        assert!(!route.takes(Priority::High, "P2", 23), "another circuit");
        let day = NotifyRoute {
            hours: Some([8, 17]),
            circuits: Vec::new(),
            ..route
        };
        assert!(day.takes(Priority::High, "P2", 8));
        assert!(!day.takes(Priority::High, "P2", 17));
    }
}
