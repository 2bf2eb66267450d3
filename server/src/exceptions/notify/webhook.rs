//! The webhooks: a JSON POST of every exception transition to each
//! configured receiver, or, for a chat receiver (Slack, Mattermost,
//! Microsoft Teams incoming webhooks all take `{"text": ...}`), one line
//! for each announced transition only: a chat channel is for people, who
//! need what must be acted on, not every clear. Delivered through the
//! outbox ([`super`]) like every notification.

use trackside_wire::ExceptionEvent;

/// What a receiver is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Every transition as `ExceptionEvent` JSON.
    Json,
    /// Announced transitions only, as `{"text": "..."}`.
    Chat,
}

/// One line a person reads in a chat channel: how urgent, where, what,
/// and what happened (times in UTC; the app shows the yard's zone).
pub fn chat_text(event: &ExceptionEvent) -> String {
    use trackside_wire::TransitionKind;
    let e = &event.exception;
    let place = e.circuit.as_deref().unwrap_or(&e.subject);
    let at = chrono::DateTime::from_timestamp_millis(event.transition.at)
        .map_or_else(String::new, |t| t.format("%H:%M:%S UTC").to_string());
    let what = match event.transition.kind {
        TransitionKind::Escalated => {
            format!("ESCALATED (level {}, not acknowledged): ", e.escalation)
        }
        TransitionKind::Released => "maintenance over, still active: ".to_owned(),
        TransitionKind::Unshelved => "unshelved, still unacknowledged: ".to_owned(),
        _ => String::new(),
    };
    format!(
        "[{}] {place} {}: {what}{} ({}, #{}, {at})",
        e.priority.label().to_uppercase(),
        e.kind.label(),
        e.message,
        e.severity.as_str(),
        e.id
    )
}

/// The URL as logs may show it: no credentials, no query (either may hold
/// a token).
pub fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => format!(
            "{}://{}{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default(),
            url.path()
        ),
        Err(_) => "(unparsable webhook URL)".into(),
    }
}

/// A request error without the URL, which may hold a token.
pub fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "(webhook)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_show_no_credentials_or_query() {
        assert_eq!(
            shown("http://user:secret@alerts.local:9000/hook?token=abc"),
            "http://alerts.local:9000/hook"
        );
    }
}
