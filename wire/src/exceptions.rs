//! Exceptions: the rules that watch the readings, the exceptions they raise,
//! and the transitions of each exception's lifecycle.
//!
//! A rule is also what the TOML configuration holds (`[[exceptions.rules]]`),
//! so the file, `GET /api/rules` and the app all read the same shape.

use serde::{Deserialize, Serialize};

use crate::alarms::Priority;
use crate::flood::FloodMark;
use crate::yard::Criticality;

/// How urgent an exception is. Ordered: `Info < Warning < Major < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Major,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::Major,
        Severity::Warning,
        Severity::Info,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One configured rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rule {
    /// Unique, stable: exceptions refer to their rule by it.
    pub id: String,
    /// Channel pattern the rule watches (`*/relay_voltage`, `T101/*`; `*`
    /// matches any run of characters). For `gateway_offline`, a pattern of
    /// gateway ids.
    pub target: String,
    /// Patterns excluded from `target`.
    #[serde(default)]
    pub exclude: Vec<String>,
    pub severity: Severity,
    /// Raise an acknowledged exception again when its condition is still
    /// active this long after the acknowledgement; overrides
    /// `exceptions.realarm_after_s`.
    #[serde(default)]
    pub realarm_after_s: Option<f64>,
    /// Escalate an exception nobody acknowledged after this long, instead
    /// of the time its priority sets (`[alarms.escalation]`).
    #[serde(default)]
    pub escalate_after_s: Option<f64>,
    #[serde(flatten)]
    pub check: Check,
}

/// What a rule checks. Durations are seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// A value outside its limits. Raised when the value reaches a `*_set`
    /// threshold and stays there `on_delay_s`; cleared when it is back past
    /// the `*_clear` threshold for `off_delay_s` (hysteresis).
    Limit {
        #[serde(default)]
        low_set: Option<f64>,
        #[serde(default)]
        low_clear: Option<f64>,
        #[serde(default)]
        high_set: Option<f64>,
        #[serde(default)]
        high_clear: Option<f64>,
        #[serde(default)]
        on_delay_s: f64,
        #[serde(default)]
        off_delay_s: f64,
        /// Judge the value only while the channel's circuit is clear (relay
        /// picked up): relay-end values fall to zero under every train.
        #[serde(default)]
        only_when_clear: bool,
    },
    /// A value moving faster than `max_per_s` (units per second), measured
    /// across `window_s` so noise between neighbouring samples does not count.
    RateOfChange {
        max_per_s: f64,
        window_s: f64,
        #[serde(default)]
        on_delay_s: f64,
        #[serde(default)]
        off_delay_s: f64,
        #[serde(default)]
        only_when_clear: bool,
    },
    /// Bobbing relay (a `relay_state` channel): an occupation shorter than
    /// `min_occupied_s`, or more than `max_transitions` changes within
    /// `window_s`. Cleared after `window_s` without another flick.
    Flick {
        #[serde(default)]
        min_occupied_s: Option<f64>,
        #[serde(default)]
        max_transitions: Option<u32>,
        window_s: f64,
    },
    /// A `relay_state` channel occupied (0) for longer than `max_occupied_s`.
    LongOccupation { max_occupied_s: f64 },
    /// No reading for `periods` times the channel's period: `period_s` when
    /// given, else the longest of its recent intervals. Only raised while
    /// the channel's gateway is online and still sending other channels;
    /// a silent gateway is a `gateway_offline`, not a stale channel.
    Stale {
        periods: f64,
        #[serde(default)]
        period_s: Option<f64>,
    },
    /// The gateway's MQTT session ended: its last will (or its own
    /// `offline`) on `trackside/{gateway}/status`. With `silent_after_s`,
    /// also a gateway that sent nothing at all for that long. Cleared by
    /// `online` or by any message from the gateway.
    GatewayOffline {
        #[serde(default)]
        silent_after_s: Option<f64>,
    },
    /// The channel's forecast (a trained model's mean) reaches a set
    /// threshold of the limit rule `limit_rule` within the forecast's
    /// horizon. Cleared when a later forecast stays inside that rule's
    /// clear thresholds over the whole horizon.
    Predicted { limit_rule: String },
    /// The server's own spool (readings waiting for the database on local
    /// disk) filled to `fill_percent` of its bound, or its disk refusing
    /// writes. Cleared once it is 5 points below and writable again. The
    /// subject is `spool`; one such rule is added when none is configured.
    Spool { fill_percent: f64 },
    /// Poor shunt (a `relay_voltage` channel): under each of the last
    /// `occupations` occupations the relay voltage stayed above
    /// `max_residual_fraction` of its level just before the drop. Cleared
    /// once that many occupations in a row shunt well.
    PoorShunt {
        max_residual_fraction: f64,
        occupations: u32,
    },
    /// Unstable occupation current (a `feed_current` channel): the feed
    /// current's standard deviation while occupied exceeded
    /// `max_relative_spread` of its mean under each of the last
    /// `occupations` occupations. Cleared like `poor_shunt`.
    UnstableOccupationCurrent {
        max_relative_spread: f64,
        occupations: u32,
    },
    /// Drop or pick values drifting (a `relay_voltage` channel): the median
    /// of the last `recent` occupations' drop (or pick) values differs from
    /// the median of the occupations before them, over `baseline_days`, by
    /// more than `max_drift_fraction`. Needs `min_baseline` occupations of
    /// baseline; cleared once both are back within 80 % of the limit.
    DropPickDrift {
        max_drift_fraction: f64,
        recent: u32,
        baseline_days: f64,
        min_baseline: u32,
    },
    /// A circuit's health score (docs/design/health.md) below `below`.
    /// The subject is `{circuit}/health`. Cleared once it is 5 points
    /// above.
    HealthLow { below: f64 },
    /// The gateway's clock is more than `max_offset_s` ahead of the
    /// server's or behind it, estimated from the timestamps it states
    /// (`clock_offset_ms` on `/api/gateways`). Cleared once the offset is
    /// back under 80 % of the limit. The subject is the gateway id.
    ClockSkew { max_offset_s: f64 },
}

impl Check {
    pub fn kind(&self) -> ExceptionKind {
        match self {
            Check::Limit { .. } => ExceptionKind::Limit,
            Check::RateOfChange { .. } => ExceptionKind::RateOfChange,
            Check::Flick { .. } => ExceptionKind::Flick,
            Check::LongOccupation { .. } => ExceptionKind::LongOccupation,
            Check::Stale { .. } => ExceptionKind::Stale,
            Check::GatewayOffline { .. } => ExceptionKind::GatewayOffline,
            Check::Predicted { .. } => ExceptionKind::Predicted,
            Check::Spool { .. } => ExceptionKind::Spool,
            Check::PoorShunt { .. } => ExceptionKind::PoorShunt,
            Check::UnstableOccupationCurrent { .. } => ExceptionKind::UnstableOccupationCurrent,
            Check::DropPickDrift { .. } => ExceptionKind::DropPickDrift,
            Check::HealthLow { .. } => ExceptionKind::HealthLow,
            Check::ClockSkew { .. } => ExceptionKind::ClockSkew,
        }
    }
}

/// The kind of a rule and of the exceptions it raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExceptionKind {
    Limit,
    RateOfChange,
    Flick,
    LongOccupation,
    Stale,
    GatewayOffline,
    Predicted,
    Spool,
    PoorShunt,
    UnstableOccupationCurrent,
    DropPickDrift,
    HealthLow,
    ClockSkew,
}

impl ExceptionKind {
    pub const ALL: [ExceptionKind; 13] = [
        ExceptionKind::Limit,
        ExceptionKind::RateOfChange,
        ExceptionKind::Flick,
        ExceptionKind::LongOccupation,
        ExceptionKind::Stale,
        ExceptionKind::GatewayOffline,
        ExceptionKind::Predicted,
        ExceptionKind::Spool,
        ExceptionKind::PoorShunt,
        ExceptionKind::UnstableOccupationCurrent,
        ExceptionKind::DropPickDrift,
        ExceptionKind::HealthLow,
        ExceptionKind::ClockSkew,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExceptionKind::Limit => "limit",
            ExceptionKind::RateOfChange => "rate_of_change",
            ExceptionKind::Flick => "flick",
            ExceptionKind::LongOccupation => "long_occupation",
            ExceptionKind::Stale => "stale",
            ExceptionKind::GatewayOffline => "gateway_offline",
            ExceptionKind::Predicted => "predicted",
            ExceptionKind::Spool => "spool",
            ExceptionKind::PoorShunt => "poor_shunt",
            ExceptionKind::UnstableOccupationCurrent => "unstable_occupation_current",
            ExceptionKind::DropPickDrift => "drop_pick_drift",
            ExceptionKind::HealthLow => "health_low",
            ExceptionKind::ClockSkew => "clock_skew",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// What an operator calls it.
    pub fn label(self) -> &'static str {
        match self {
            ExceptionKind::Limit => "Limit",
            ExceptionKind::RateOfChange => "Rate of change",
            ExceptionKind::Flick => "Flick",
            ExceptionKind::LongOccupation => "Long occupation",
            ExceptionKind::Stale => "Stale channel",
            ExceptionKind::GatewayOffline => "Gateway offline",
            ExceptionKind::Predicted => "Predicted exceedance",
            ExceptionKind::Spool => "Server spool filling",
            ExceptionKind::PoorShunt => "Poor shunt",
            ExceptionKind::UnstableOccupationCurrent => "Unstable occupation current",
            ExceptionKind::DropPickDrift => "Drop/pick drift",
            ExceptionKind::HealthLow => "Circuit health low",
            ExceptionKind::ClockSkew => "Gateway clock off",
        }
    }
}

/// A step in an exception's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    /// The condition began (a new exception, or a cleared one that was not
    /// yet acknowledged became active again).
    Raised,
    /// The condition ended.
    Cleared,
    /// An operator acknowledged it.
    Acknowledged,
    /// Still active long after its acknowledgement: unacknowledged again.
    Realarmed,
    /// An operator shelved it (`by`, with the reason as `comment`).
    Shelved,
    /// Its shelf ended: by hand (`by`), or because its time ran out.
    Unshelved,
    /// Nobody acknowledged it in time: its priority rose and the next
    /// escalation level is notified.
    Escalated,
    /// It was raised inside a maintenance window, which ended while it was
    /// still active: now it is raised normally.
    Released,
    /// It joined a group of an alarm flood after it was raised (it was one
    /// of the raises that started the flood): listed under the group's
    /// summary from now on (`ExceptionInfo::flood`).
    Grouped,
}

impl TransitionKind {
    pub const ALL: [TransitionKind; 9] = [
        TransitionKind::Raised,
        TransitionKind::Cleared,
        TransitionKind::Acknowledged,
        TransitionKind::Realarmed,
        TransitionKind::Shelved,
        TransitionKind::Unshelved,
        TransitionKind::Escalated,
        TransitionKind::Released,
        TransitionKind::Grouped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TransitionKind::Raised => "raised",
            TransitionKind::Cleared => "cleared",
            TransitionKind::Acknowledged => "acknowledged",
            TransitionKind::Realarmed => "realarmed",
            TransitionKind::Shelved => "shelved",
            TransitionKind::Unshelved => "unshelved",
            TransitionKind::Escalated => "escalated",
            TransitionKind::Released => "released",
            TransitionKind::Grouped => "grouped",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// An exception as the API lists it. It is *open* until it is both cleared
/// and acknowledged; there is at most one open exception per rule and
/// subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExceptionInfo {
    pub id: i64,
    pub rule: String,
    pub kind: ExceptionKind,
    pub severity: Severity,
    /// The channel (`T101/relay_voltage`), or the gateway id for
    /// `gateway_offline`.
    pub subject: String,
    pub circuit: Option<String>,
    pub gateway: Option<String>,
    /// What happened, in words, as of the latest transition.
    pub message: String,
    /// The value that raised it or last changed it, when there is one.
    pub value: Option<f64>,
    /// The condition holds now.
    pub active: bool,
    pub acknowledged: bool,
    /// Not yet both cleared and acknowledged.
    pub open: bool,
    /// Unix milliseconds of the first raise.
    pub raised_at: i64,
    /// Unix milliseconds of the latest raise or re-alarm.
    pub last_raised_at: i64,
    pub cleared_at: Option<i64>,
    pub acked_at: Option<i64>,
    pub acked_by: Option<String>,
    pub ack_comment: Option<String>,
    /// How many times the condition was raised while the exception was open.
    pub occurrences: i32,
    /// How soon someone must act, now (escalation raises it).
    pub priority: Priority,
    /// The priority it was raised with: from the severity and the circuit's
    /// criticality.
    pub base_priority: Priority,
    /// Its circuit's (for a gateway, its most critical circuit's).
    pub criticality: Criticality,
    /// How many times it escalated (0: never).
    pub escalation: u8,
    pub escalated_at: Option<i64>,
    /// Raised inside a maintenance window that is still on: recorded, not
    /// sounded or notified.
    pub suppressed: bool,
    /// The maintenance window it was raised in, if any.
    pub window: Option<i64>,
    /// The operator's shelf that hides it, and until when (Unix ms): still
    /// recorded and listed, not sounded, counted or notified.
    #[serde(default)]
    pub shelf: Option<i64>,
    #[serde(default)]
    pub shelved_until: Option<i64>,
    /// False while this state is known only to the server's memory and
    /// journal: judged while the database was unreachable, stored when it
    /// is back (a `stored` frame on `/ws` says when). Always true from the
    /// HTTP API, which reads the database.
    #[serde(default = "stored_by_default")]
    pub stored: bool,
    /// The alarm flood and the group (by cause) it was raised in, if any:
    /// the list shows the group as one summary row.
    #[serde(default)]
    pub flood: Option<FloodMark>,
}

impl ExceptionInfo {
    /// Someone must act on it and nothing hides it: unacknowledged, not
    /// suppressed and not shelved. What the app counts, sounds and notifies.
    pub fn demands_attention(&self) -> bool {
        self.open && !self.acknowledged && !self.suppressed && self.shelf.is_none()
    }
}

fn stored_by_default() -> bool {
    true
}

/// One stored transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransitionInfo {
    pub at: i64,
    pub kind: TransitionKind,
    pub value: Option<f64>,
    pub message: String,
    /// Who acted: acknowledged, shelved or unshelved it.
    pub by: Option<String>,
    pub comment: Option<String>,
}

/// `GET /api/exceptions/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExceptionDetail {
    pub exception: ExceptionInfo,
    /// Oldest first.
    pub transitions: Vec<TransitionInfo>,
}

/// `POST /api/exceptions/{id}/ack`. Who acknowledged is the signed-in
/// user (or the API token's user), never a name the client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub comment: String,
}

/// The webhook's JSON body, and the `exception` frame on `/ws`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExceptionEvent {
    pub transition: TransitionInfo,
    /// The exception as it is after the transition.
    pub exception: ExceptionInfo,
    /// This transition was announced: notifications went (or go) out, and
    /// the app offers a desktop notification. False for what a shelf, a
    /// maintenance window or a flood summary covers.
    #[serde(default)]
    pub announced: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_by_urgency() {
        assert!(Severity::Critical > Severity::Major);
        assert!(Severity::Warning > Severity::Info);
        assert_eq!(Severity::parse("major"), Some(Severity::Major));
        assert_eq!(Severity::parse("loud"), None);
    }

    #[test]
    fn a_rule_reads_flat_with_its_kind() {
        let rule: Rule = serde_json::from_str(
            r#"{"id":"rv","target":"*/relay_voltage","severity":"major",
                "kind":"limit","low_set":0.8,"low_clear":0.9,"on_delay_s":5}"#,
        )
        .unwrap();
        assert_eq!(rule.check.kind(), ExceptionKind::Limit);
        let Check::Limit {
            low_set,
            high_set,
            on_delay_s,
            ..
        } = rule.check
        else {
            panic!("a limit");
        };
        assert_eq!((low_set, high_set, on_delay_s), (Some(0.8), None, 5.0));
    }

    #[test]
    fn a_misspelt_rule_field_is_an_error() {
        let err = serde_json::from_str::<Rule>(
            r#"{"id":"rv","target":"*","severity":"major","kind":"stale","period":5}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("period"), "{err}");
    }
}
