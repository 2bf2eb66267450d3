//! What flows down the reading path: readings as decoded from a gateway's
//! message, the batch that carries one message's readings to every
//! consumer, and what could not be decoded.
//!
//! These types sit below every stage (decode produces them; live fan-out,
//! the exception engine, the spool and the store writer consume them), so
//! no stage has to import another to name what it is handed.

use chrono::{DateTime, Utc};
use trackside_wire::ChannelName;

#[derive(Debug, Clone, PartialEq)]
pub struct DecodedReading {
    pub channel: ChannelName,
    /// Truncated to microseconds, PostgreSQL's resolution, so that the
    /// in-memory identity of a reading equals the stored one.
    pub ts: DateTime<Utc>,
    pub value: f64,
}

/// Something that could not be decoded, kept whole for inspection.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub topic: String,
    pub gateway: Option<String>,
    pub payload: Vec<u8>,
    pub reason: String,
    pub kind: RejectionKind,
}

/// What was wrong, for counting; `reason` says it in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// A topic Trackside does not know.
    Topic,
    /// A certificate-identified gateway publishing under another's id, or
    /// a gateway writing a channel another gateway owns.
    Acl,
    /// A whole payload that does not decode.
    Payload,
    /// One element of a batch or pack.
    Reading,
    /// A new channel past its gateway's bound
    /// (`ingest.max_channels_per_gateway`).
    Bound,
    /// A Sparkplug B message out of its session's order: a `seq` gap, or
    /// a death certificate of an earlier session.
    Sequence,
}

impl RejectionKind {
    pub const ALL: [Self; 6] = [
        Self::Topic,
        Self::Acl,
        Self::Payload,
        Self::Reading,
        Self::Bound,
        Self::Sequence,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Topic => "topic",
            Self::Acl => "acl",
            Self::Payload => "payload",
            Self::Reading => "reading",
            Self::Bound => "bound",
            Self::Sequence => "sequence",
        }
    }
}

/// One decoded message's readings, shared with the live fan-out.
#[derive(Debug)]
pub struct ReadingBatch {
    pub gateway: String,
    pub readings: Vec<DecodedReading>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayStatus {
    Online,
    Offline,
}
