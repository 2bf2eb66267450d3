//! Storage: everything that writes PostgreSQL on the reading path, and the
//! private cluster that serves it when no database is configured.
//!
//! The ingest path appends each message to the [`spool`] and offers it to
//! the [`queue`]; the [`writer`] is the only code that writes readings.
//! [`rollup`] keeps the per-minute and per-hour aggregates the read path
//! answers from. Nothing here reads for the API; [`rollup::dirty_split`] is
//! the one place that tells readers which rollup rows are settled.

pub mod embedded_pg;
pub mod queue;
pub mod rejections;
pub mod rollup;
pub mod spool;
pub mod writer;

use tokio::sync::oneshot;

/// When a message's readings are safe: in the fsynced spool, or stored in
/// PostgreSQL. A source that can deliver a message again (an external
/// broker, a gateway waiting for its PUBACK) acknowledges it only then.
pub enum Receipt {
    /// The message carried no readings: nothing to keep.
    Nothing,
    /// In the spool; safe once the spool's fsync covers it.
    Spooled(crate::durable::Ticket),
    /// The spool could not take it; safe once the writer stores it from
    /// the store queue.
    Queued(oneshot::Receiver<()>),
    /// Neither the spool nor the store queue could take it.
    Refused,
}

impl Receipt {
    /// True once the readings are safe; false if they never will be (the
    /// source should deliver them again).
    pub async fn safe(self) -> bool {
        match self {
            Receipt::Nothing => true,
            Receipt::Spooled(ticket) => ticket.wait().await,
            Receipt::Queued(stored) => stored.await.is_ok(),
            Receipt::Refused => false,
        }
    }
}
