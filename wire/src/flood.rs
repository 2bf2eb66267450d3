//! Alarm floods: more raises in a window than one operator can handle
//! (ISA-18.2's benchmark: more than 10 in 10 minutes). While a flood is on,
//! its raises are grouped by cause and summarised, in the list and in
//! notifications, instead of one line each.

use serde::{Deserialize, Serialize};

use crate::{ExceptionKind, Priority};

/// An exception's place in a flood: `ExceptionInfo::flood`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FloodMark {
    /// The flood's id.
    pub flood: i64,
    /// Its group's key within the flood (`FloodGroupInfo::key`).
    pub group: String,
}

/// What a flood group's raises share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FloodScope {
    /// One gateway: its channels (and the circuits it serves).
    Gateway,
    /// One circuit, when no gateway is known.
    Circuit,
    /// The whole yard: gateway-level kinds (offline, clock), the spool.
    Yard,
}

/// One group of a flood: the raises of one kind on one gateway (or
/// circuit, or the yard).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FloodGroupInfo {
    /// `<kind>@<gateway>`, `<kind>#<circuit>` or `<kind>`.
    pub key: String,
    pub kind: ExceptionKind,
    pub scope: FloodScope,
    /// The gateway or circuit; none for the yard.
    pub on: Option<String>,
    /// Raises in the group (each exception once).
    pub count: u32,
    /// Unix ms of its first and latest raise.
    pub first_at: i64,
    pub last_at: i64,
    /// The highest priority among its raises.
    pub priority: Priority,
    /// Circuits among its raises (at most 32 named).
    pub circuits: Vec<String>,
    /// `count` as last notified, and when (none: not yet).
    pub notified_count: u32,
    pub notified_at: Option<i64>,
    /// "14 stale channels on yard-gw02".
    pub summary: String,
}

/// `GET /api/floods`, and the `flood` frame on `/ws` whenever a flood
/// starts, changes or ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FloodInfo {
    /// Unix ms of its start, which also names it.
    pub id: i64,
    pub started_at: i64,
    /// None while it is on.
    pub ended_at: Option<i64>,
    /// The most raises within one window during it.
    pub peak: u32,
    /// Raises counted while it was on, the ones that started it included.
    pub total: u32,
    /// The threshold and window it was judged by: more than `max_raises`
    /// within `window_s` seconds.
    pub max_raises: u32,
    pub window_s: u32,
    /// Largest first.
    pub groups: Vec<FloodGroupInfo>,
}

impl FloodInfo {
    /// "Alarm flood: 23 raises since 03:12, peak 18 in 10 min", without the
    /// times (the caller adds them in the zone it shows).
    pub fn headline(&self) -> String {
        format!(
            "{} {} raise{}, peak {} in {} min",
            if self.ended_at.is_some() {
                "Alarm flood over:"
            } else {
                "Alarm flood:"
            },
            self.total,
            if self.total == 1 { "" } else { "s" },
            self.peak,
            self.window_s / 60
        )
    }
}

/// `POST /api/floods/{id}/ack`: acknowledges every open, unacknowledged
/// exception of one group, under the signed-in user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GroupAckRequest {
    /// The group's key (`FloodGroupInfo::key`).
    pub group: String,
    pub comment: String,
}

/// What a group acknowledgement did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupAckResult {
    /// The exceptions acknowledged now.
    pub acknowledged: Vec<i64>,
    /// Members acknowledged by someone else meanwhile, or closed.
    pub skipped: Vec<i64>,
}

/// How a group is worded: "14 stale channels on yard-gw02", "6 poor
/// shunt on T103", "3 gateways offline". One place, for the server's
/// notifications and the app's list.
pub fn flood_group_summary(kind: ExceptionKind, on: Option<&str>, count: u32) -> String {
    let one = count == 1;
    let noun = match kind {
        ExceptionKind::Limit => {
            if one {
                "limit alarm"
            } else {
                "limit alarms"
            }
        }
        ExceptionKind::RateOfChange => {
            if one {
                "rate-of-change alarm"
            } else {
                "rate-of-change alarms"
            }
        }
        ExceptionKind::Flick => {
            if one {
                "flick"
            } else {
                "flicks"
            }
        }
        ExceptionKind::LongOccupation => {
            if one {
                "long occupation"
            } else {
                "long occupations"
            }
        }
        ExceptionKind::Stale => {
            if one {
                "stale channel"
            } else {
                "stale channels"
            }
        }
        ExceptionKind::GatewayOffline => {
            if one {
                "gateway offline"
            } else {
                "gateways offline"
            }
        }
        ExceptionKind::Predicted => {
            if one {
                "predicted exceedance"
            } else {
                "predicted exceedances"
            }
        }
        ExceptionKind::Spool => "server spool alarm",
        ExceptionKind::PoorShunt => "poor shunt",
        ExceptionKind::UnstableOccupationCurrent => {
            if one {
                "unstable occupation current"
            } else {
                "unstable occupation currents"
            }
        }
        ExceptionKind::DropPickDrift => {
            if one {
                "drop/pick drift"
            } else {
                "drop/pick drifts"
            }
        }
        ExceptionKind::HealthLow => {
            if one {
                "circuit health low"
            } else {
                "circuits' health low"
            }
        }
        ExceptionKind::ClockSkew => {
            if one {
                "gateway clock off"
            } else {
                "gateway clocks off"
            }
        }
    };
    match on {
        Some(on) => format!("{count} {noun} on {on}"),
        None => format!("{count} {noun}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_read_as_a_controller_says_them() {
        assert_eq!(
            flood_group_summary(ExceptionKind::Stale, Some("yard-gw02"), 14),
            "14 stale channels on yard-gw02"
        );
        assert_eq!(
            flood_group_summary(ExceptionKind::PoorShunt, Some("T103"), 6),
            "6 poor shunt on T103"
        );
        assert_eq!(
            flood_group_summary(ExceptionKind::GatewayOffline, None, 1),
            "1 gateway offline"
        );
    }
}
