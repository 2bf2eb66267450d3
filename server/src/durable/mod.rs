//! Local files that must survive what the database cannot see: a process
//! crash, a power cut, a full disk, a restart during an outage.
//!
//! Two things need one: the readings spool (every decoded message, until
//! the store writer has it in PostgreSQL) and the exception journal (alarm
//! transitions judged while PostgreSQL is away). Both want the same
//! properties, and getting them right once is the point of this module:
//!
//! - a record is believed only if its magic, length and CRC agree, and a
//!   damaged stretch (a torn write, a zeroed block) costs only itself: the
//!   reader skips to the next whole record and counts what it skipped;
//! - opening and reading stream in bounded memory, whatever the size;
//! - one fsync covers everything appended within a short window (group
//!   commit), and a caller can wait until its append is covered, which is
//!   when it may tell its source the data is safe;
//! - the files have a bound, and what happens at it is the caller's
//!   stated choice (drop the oldest, or refuse the newest);
//! - a failed write leaves what was written before it intact.
//!
//! [`frame`] is the record format and its scanner; [`log`] the segmented
//! log built on it.

pub mod frame;
pub mod log;

pub use log::{AppendError, Log, LogConfig, LogStats, Ticket, WhenFull};

/// The smallest bound a log may be given: several segments of whole
/// records (configuration checks it, so it lives below `config`).
pub const MIN_BOUND: u64 = 8 * frame::MAX_BODY as u64;
