//! `[exceptions]` in the configuration file: the engine's queue and tick,
//! re-alarm, escalation, the webhook, and the rules.

use serde::{Deserialize, Deserializer};

use super::priority::Escalation;

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
    /// Receive a JSON POST on every raise, clear, acknowledgement and
    /// re-alarm: one URL (`webhook_url = "http://..."`) or several
    /// (`webhook_urls = [...]`), each with its own sender, so a dead one
    /// delays no other. `http://` only.
    #[serde(alias = "webhook_url", deserialize_with = "one_or_many")]
    pub webhook_urls: Vec<String>,
    /// Chat channels' incoming webhooks (Slack, Mattermost, Microsoft
    /// Teams): `{"text": "..."}` for each announced transition only (a new
    /// exception, an escalation, a release from maintenance). One URL or
    /// several; `http://` only, like the webhook.
    #[serde(alias = "chat_webhook_url", deserialize_with = "one_or_many")]
    pub chat_webhook_urls: Vec<String>,
    /// Notifications waiting per receiver (queued or retrying); beyond
    /// this the one retried longest is dropped, and counted.
    pub webhook_queue: usize,
    /// Attempts per notification, with exponential backoff between them.
    pub webhook_attempts: u32,
    /// Notifications waiting in the outbox table, over every receiver;
    /// beyond this new ones are sent from memory only, and counted
    /// (`trackside_notification_outbox_overflow_total`).
    pub outbox_rows: u64,
    /// A notification not sent within this many seconds is given up, and
    /// counted (`trackside_notification_outbox_expired_total`): a day-old
    /// alarm e-mail helps nobody.
    pub outbox_max_age_s: u64,
    /// `[exceptions.email]`: the SMTP relay e-mail goes through.
    pub email: super::notify::email::EmailConfig,
    /// `[[exceptions.notify_groups]]`: who is e-mailed at each escalation
    /// level (0: the raise).
    pub notify_groups: Vec<super::notify::email::NotifyGroup>,
    /// Escalate an exception nobody acknowledged after this many seconds
    /// at its current priority (a rule's `escalate_after_s` wins); each
    /// escalation raises its priority a step and announces it again (the
    /// webhook's `announced`, `exception.escalation` the level). Absent
    /// for a priority: it never escalates.
    pub escalate_after_s: EscalateAfter,
    /// Escalations at most per exception; 0 turns escalation off.
    pub escalation_levels: u8,
    /// The longest an operator may shelve an exception for, in seconds
    /// (a shift by default): a shelf always runs out, so nothing stays
    /// hidden because someone forgot it.
    pub shelve_max_s: u64,
    /// `[exceptions.flood]`: when raises come faster than one operator
    /// can take in, they are grouped and summarised (`exceptions::flood`).
    pub flood: FloodConfig,
    /// The rules. Setting any replaces the shipped defaults as a whole.
    pub rules: Vec<trackside_wire::Rule>,
}

/// `[exceptions.flood]`: more than `max_raises` announced raises within
/// `window_s` is a flood (ISA-18.2's benchmark per operator position: 10
/// in 10 minutes); it ends once the count has stayed at or below that for
/// `quiet_s`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloodConfig {
    /// False: every raise is announced on its own, whatever the rate.
    pub enabled: bool,
    pub max_raises: u32,
    pub window_s: u64,
    pub quiet_s: u64,
    /// A growing group's summary is sent again at most this often.
    pub update_s: u64,
}

impl Default for FloodConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_raises: 10,
            window_s: 600,
            quiet_s: 300,
            update_s: 300,
        }
    }
}

impl FloodConfig {
    /// The engine's policy, or none when off.
    pub fn policy(&self) -> Option<super::flood::FloodPolicy> {
        self.enabled.then(|| super::flood::FloodPolicy {
            max_raises: self.max_raises,
            window_ms: self.window_s as i64 * 1000,
            quiet_ms: self.quiet_s as i64 * 1000,
            update_ms: self.update_s as i64 * 1000,
        })
    }
}

/// `[exceptions.escalate_after_s]`: seconds per priority.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalateAfter {
    pub low: Option<f64>,
    pub medium: Option<f64>,
    pub high: Option<f64>,
}

impl Default for EscalateAfter {
    /// High: five minutes; medium: half an hour (within the hour it asks
    /// for); low waits for the maintenance plan and never escalates.
    fn default() -> Self {
        Self {
            low: None,
            medium: Some(1_800.0),
            high: Some(300.0),
        }
    }
}

impl Default for ExceptionsConfig {
    fn default() -> Self {
        Self {
            queue: 8_192,
            tick_ms: 500,
            realarm_after_s: Some(1_800.0),
            webhook_urls: Vec::new(),
            chat_webhook_urls: Vec::new(),
            webhook_queue: 1_024,
            webhook_attempts: 6,
            outbox_rows: 100_000,
            outbox_max_age_s: 86_400,
            email: Default::default(),
            notify_groups: Vec::new(),
            escalate_after_s: EscalateAfter::default(),
            escalation_levels: 2,
            shelve_max_s: 12 * 3_600,
            flood: FloodConfig::default(),
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
            self.outbox_rows >= 1 && self.outbox_max_age_s >= 60,
            "exceptions.outbox_rows must be at least 1 and exceptions.outbox_max_age_s at least 60"
        );
        super::notify::email::check(&self.email, &self.notify_groups)?;
        anyhow::ensure!(
            self.realarm_after_s.is_none_or(|s| s > 0.0),
            "exceptions.realarm_after_s must be positive (leave it out to never re-alarm)"
        );
        for url in self.webhook_urls.iter().chain(&self.chat_webhook_urls) {
            anyhow::ensure!(
                url.starts_with("http://") && reqwest::Url::parse(url).is_ok(),
                "exceptions.webhook_url must be an http:// URL (for https, send it through a local proxy)"
            );
        }
        let after = &self.escalate_after_s;
        anyhow::ensure!(
            [after.low, after.medium, after.high]
                .into_iter()
                .chain(self.rules.iter().map(|r| r.escalate_after_s))
                .flatten()
                .all(|s| s.is_finite() && s > 0.0),
            "exceptions.escalate_after_s (and a rule's) must be positive seconds (leave one out \
             to never escalate at that priority)"
        );
        anyhow::ensure!(
            (60..=7 * 24 * 3_600).contains(&self.shelve_max_s),
            "exceptions.shelve_max_s must be between 60 (a minute) and 604800 (a week)"
        );
        let flood = &self.flood;
        anyhow::ensure!(
            (1..=10_000).contains(&flood.max_raises),
            "exceptions.flood.max_raises must be between 1 and 10000"
        );
        anyhow::ensure!(
            (10..=86_400).contains(&flood.window_s)
                && (1..=86_400).contains(&flood.quiet_s)
                && (10..=86_400).contains(&flood.update_s),
            "exceptions.flood: window_s and update_s must be 10 to 86400 seconds, quiet_s 1 to \
             86400"
        );
        super::engine::validate(&self.rules).map_err(anyhow::Error::msg)?;
        Ok(())
    }

    /// When unacknowledged exceptions escalate.
    pub fn escalation(&self) -> Escalation {
        let after = &self.escalate_after_s;
        Escalation {
            after_s: [after.low, after.medium, after.high],
            levels: self.escalation_levels,
        }
    }
}

/// A string, or a list of them.
fn one_or_many<'de, D: Deserializer<'de>>(value: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(value)? {
        OneOrMany::One(url) => vec![url],
        OneOrMany::Many(urls) => urls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_webhook_url_or_several() {
        let one: ExceptionsConfig =
            toml::from_str("webhook_url = \"http://a.local/hook\"\n").unwrap();
        assert_eq!(one.webhook_urls, ["http://a.local/hook"]);
        let two: ExceptionsConfig =
            toml::from_str("webhook_urls = [\"http://a.local/1\", \"http://b.local/2\"]\n")
                .unwrap();
        assert_eq!(two.webhook_urls.len(), 2);
        two.validate().unwrap();
        let https: ExceptionsConfig =
            toml::from_str("webhook_url = \"https://a.local/hook\"\n").unwrap();
        assert!(https.validate().is_err());
    }
}
