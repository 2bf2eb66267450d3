//! `[exceptions]` in the configuration file: the engine's queue and tick,
//! re-alarm, the webhook, and the rules.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExceptionsConfig {
    /// Messages waiting for the rule engine. Beyond this they are counted
    /// (`trackside_exception_events_dropped_total`) and skipped: the engine
    /// never slows storing or live fan-out.
    pub queue: usize,
    /// How often timers (delays, stale channels, long occupation,
    /// re-alarm) are checked.
    pub tick_ms: u64,
    /// Raise an acknowledged exception again when its condition still holds
    /// this long after the acknowledgement (a rule may set its own).
    /// Absent: never.
    pub realarm_after_s: Option<f64>,
    /// Receives a JSON POST on every raise, clear, acknowledgement and
    /// re-alarm. `http://` only.
    pub webhook_url: Option<String>,
    /// Notifications waiting to be sent; beyond this they are counted and dropped.
    pub webhook_queue: usize,
    /// Attempts per notification, with exponential backoff between them.
    pub webhook_attempts: u32,
    /// The rules. Setting any replaces the shipped defaults as a whole.
    pub rules: Vec<trackside_wire::Rule>,
}

impl Default for ExceptionsConfig {
    fn default() -> Self {
        Self {
            queue: 8_192,
            tick_ms: 500,
            realarm_after_s: Some(1_800.0),
            webhook_url: None,
            webhook_queue: 1_024,
            webhook_attempts: 6,
            rules: super::defaults::rules(),
        }
    }
}

impl ExceptionsConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.queue >= 1 && self.webhook_queue >= 1,
            "exceptions.queue and exceptions.webhook_queue must be at least 1"
        );
        anyhow::ensure!(
            (50..=10_000).contains(&self.tick_ms),
            "exceptions.tick_ms must be between 50 and 10000"
        );
        anyhow::ensure!(
            self.webhook_attempts >= 1,
            "exceptions.webhook_attempts must be at least 1"
        );
        anyhow::ensure!(
            self.realarm_after_s.is_none_or(|s| s > 0.0),
            "exceptions.realarm_after_s must be positive (leave it out to never re-alarm)"
        );
        if let Some(url) = &self.webhook_url {
            anyhow::ensure!(
                url.starts_with("http://"),
                "exceptions.webhook_url must be an http:// URL (for https, send it through a local proxy)"
            );
        }
        super::engine::validate(&self.rules).map_err(anyhow::Error::msg)?;
        Ok(())
    }
}
