//! Wire types shared by the Trackside server and its browser app.
//!
//! Everything here is plain data with serde derives: no I/O, no clocks, no
//! allocation-heavy helpers. Timestamps travel as integer Unix milliseconds
//! (UTC) because both JavaScript and PostgreSQL handle them without a parser,
//! and a browser formats them into the yard's zone itself.

use serde::{Deserialize, Serialize};

mod alarms;
mod auth;
mod channel;
mod exceptions;
mod flood;
mod forecast;
mod health;
mod history;
mod parameter;
mod yard;

pub use alarms::{
    MaintenanceWindowInfo, NewMaintenanceWindow, NewShelf, NotifyRoute, NotifySettings, Priority,
    PriorityMix, PriorityShare, ShelfInfo, WindowState,
};
pub use auth::{
    AuditEntry, CertificateRequest, GatewayCertificateFiles, GatewayCredentialInfo,
    IssuedGatewayPassword, IssuedPassword, IssuedToken, LinkSignInRequest, Me, NewGateway,
    NewToken, NewUser, PasswordChange, Role, SignInRequest, TokenInfo, UserChange, UserInfo,
};
pub use channel::{ChannelName, ChannelNameError, pattern_matches};
pub use exceptions::{
    AckRequest, Check, ExceptionDetail, ExceptionEvent, ExceptionInfo, ExceptionKind, Rule,
    Severity, TransitionInfo, TransitionKind,
};
pub use flood::{
    FloodGroupInfo, FloodInfo, FloodMark, FloodScope, GroupAckRequest, GroupAckResult,
    flood_group_summary,
};
pub use forecast::{
    Forecast, ForecastModel, ForecastPoint, ForecastStatus, TrainJob, TrainRequest, TrainState,
};
pub use health::{
    CircuitHealth, CircuitHealthDetail, HealthDay, HealthDeduction, HealthList, Occupation,
    OccupationClass, Occupations,
};
pub use history::{
    History, HistorySeries, HistorySource, MAX_CHANNELS, MAX_POINTS, MAX_RANGE_DAYS, SeriesData,
};
pub use parameter::{Parameter, parameter_info};
pub use yard::{
    Criticality, Facing, Layout, LayoutCircuit, LayoutLabel, LayoutPoints, LayoutProblem,
    LayoutRejected, LayoutRoute, LayoutSection, LayoutSignal, Movement, MovementStep, Movements,
    Replay, ReplayException, ReplayExceptionStep, ReplayStart, RouteStop, StateChange,
};

/// One measured value of one channel at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reading {
    /// `{circuit}/{parameter}`, for example `T101/relay_voltage`.
    pub channel: String,
    /// Unix milliseconds, UTC.
    pub ts: i64,
    pub value: f64,
}

/// The most recent reading of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Latest {
    /// Unix milliseconds, UTC.
    pub ts: i64,
    pub value: f64,
}

/// A channel as `GET /api/channels` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelInfo {
    pub channel: String,
    pub circuit: String,
    pub parameter: String,
    /// The unit from the parameter table, when the parameter is a known one.
    pub unit: Option<String>,
    /// The gateway that first published this channel.
    pub gateway: String,
    pub latest: Option<Latest>,
    /// Milliseconds between `latest.ts` and the server's clock when it answered.
    pub age_ms: Option<i64>,
}

/// A gateway as `GET /api/gateways` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GatewayInfo {
    pub id: String,
    /// From the gateway's status topic (its last will says offline); `None`
    /// until it has published a status since the server started.
    pub online: Option<bool>,
    /// Unix milliseconds of the last status change.
    pub status_at: Option<i64>,
    /// Unix milliseconds of the last message of any kind from the gateway.
    pub last_message_at: Option<i64>,
    /// How far the gateway's clock is ahead of the server's (negative:
    /// behind), in milliseconds, estimated from the timestamps it stated
    /// over the last one to two minutes; `None` until it stated one.
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
}

/// `PUT /api/channels/{circuit}/{parameter}/gateway`: give a channel to
/// another gateway (an admin's act, audited).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelOwner {
    pub gateway: String,
}

/// The answer to a reassignment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelReassigned {
    pub channel: String,
    pub gateway: String,
    pub previous: String,
}

/// `GET /api/yard`: what the app needs to present the yard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct YardInfo {
    pub name: String,
    /// IANA time zone name, for example `Europe/London`. Times are shown in
    /// this zone with UTC at hand.
    pub timezone: String,
    /// Unix milliseconds, the server's clock when it answered.
    pub server_time: i64,
}

/// A JSON error body: every 4xx and 5xx answer of the HTTP API carries one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    pub error: String,
}

/// Frames a browser sends on `/ws`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Replace the subscription with these channel patterns (`*` matches any
    /// run of characters, so `T1*/relay_state` or `*`). Until a client sends
    /// one, it receives every channel. An empty list receives nothing.
    Subscribe { channels: Vec<String> },
}

/// Frames the server sends on `/ws`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First frame of every connection.
    Hello { server_time: i64 },
    /// Readings as they arrive, before they are stored.
    Readings { readings: Vec<Reading> },
    /// The client fell behind and `missed` readings were skipped for it. A
    /// `Readings` frame with the latest value of every subscribed channel
    /// follows at once, so the client's picture is whole again.
    Lagged { missed: u64 },
    /// Sent every 15 s when nothing else was, so a client can tell a quiet
    /// yard from a dead connection (browsers do not surface WebSocket pings).
    Heartbeat { server_time: i64 },
    /// An exception was raised, cleared, acknowledged, re-alarmed,
    /// escalated or released from a maintenance window. Sent to every client
    /// whatever its channel subscription. While the database is
    /// unreachable this comes at once with `exception.stored` false.
    Exception(Box<ExceptionEvent>),
    /// Exceptions sent with `stored` false are now stored, as given here
    /// (a later, still unstored state of the same exception supersedes it).
    Stored { exceptions: Vec<ExceptionInfo> },
    /// The session or token this feed was opened with has ended: signed
    /// out, expired, or its user disabled or changed by an administrator.
    /// The server closes the socket after this frame; sign in again.
    SessionEnded { reason: String },
    /// An alarm flood started, changed (a group formed or grew) or ended:
    /// the flood as it is now. Not more often than the engine's tick.
    Flood(Box<FloodInfo>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_are_tagged_by_type() {
        let frame = ServerMessage::Readings {
            readings: vec![Reading {
                channel: "T101/relay_voltage".into(),
                ts: 1_700_000_000_000,
                value: 1.82,
            }],
        };
        let text = serde_json::to_string(&frame).unwrap();
        assert_eq!(
            text,
            r#"{"type":"readings","readings":[{"channel":"T101/relay_voltage","ts":1700000000000,"value":1.82}]}"#
        );
        assert_eq!(serde_json::from_str::<ServerMessage>(&text).unwrap(), frame);
    }

    #[test]
    fn client_subscribe_parses() {
        let parsed: ClientMessage =
            serde_json::from_str(r#"{"type":"subscribe","channels":["T1*/relay_state"]}"#).unwrap();
        assert_eq!(
            parsed,
            ClientMessage::Subscribe {
                channels: vec!["T1*/relay_state".into()]
            }
        );
    }
}
