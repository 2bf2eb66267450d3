//! Exceptions: rules over the readings, the lifecycle of what they raise,
//! storage, live push and notifications. See ARCHITECTURE.md.

pub mod engine;
