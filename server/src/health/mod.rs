//! Circuit health: each occupation of a track circuit judged on its own.
//!
//! Thresholds on single readings miss what maintainers care about most: how
//! a circuit behaves *under a train*. Whether the relay voltage fell close
//! to zero (the shunt), whether the feed current held steady, and where the
//! relay dropped and picked up are only visible per occupation, so this
//! module turns stored readings into occupation events ([`occupation`],
//! pure) with a job over the stored readings ([`job`]), not on the ingest
//! path: the table is exact once the readings are in, backlogs and late
//! readings included, and the job is safe to run twice (a watermark and
//! idempotent replacement in the database). The rules judged on them live
//! with the other rules in the exception engine; the formula, defaults and
//! reasoning are in docs/design/health.md.

mod http;
pub mod job;
pub mod occupation;
pub mod score;

pub use http::{Api, router};
pub use score::HealthConfig;
