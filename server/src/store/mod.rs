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
