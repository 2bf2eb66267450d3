//! E-mail: who gets an announced exception, what the message says, and
//! the SMTP relay it goes through (lettre).
//!
//! Why groups per escalation level: a raise goes to whoever is on duty; an
//! exception nobody acknowledged in time must reach someone else, or the
//! escalation changes nothing at 3 a.m. So `[[exceptions.notify_groups]]`
//! each name a level (0: the raise, a release or an unshelve; n: the n-th
//! escalation), and an announced transition at level n goes to the groups
//! of level n whose priorities and circuits it matches.
//!
//! Why STARTTLS by default: the message names the yard's assets and, with
//! credentials, the relay's password crosses the network. Plain SMTP is
//! refused unless configured (`security = "plain"`) for a relay on this
//! host (loopback), where nothing crosses a wire.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::TimeZone as _;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use serde::Deserialize;
use trackside_wire::{Check, ExceptionEvent, NotifyRoute, Priority, Rule, TransitionKind};

/// One SMTP conversation's bound.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);
/// Where the relay's password may come from instead of the file.
pub const PASSWORD_ENV: &str = "TRACKSIDE_SMTP_PASSWORD";

/// `[exceptions.email]`.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// The relay's host name (checked against its certificate). Absent:
    /// no e-mail.
    pub smtp_host: Option<String>,
    /// 587 (submission, STARTTLS) unless set.
    pub smtp_port: Option<u16>,
    pub security: Security,
    pub username: Option<String>,
    /// The relay's password; `TRACKSIDE_SMTP_PASSWORD` overrides it. Never
    /// logged or shown.
    pub password: Option<Secret>,
    /// A PEM CA certificate to trust for the relay, besides the host's.
    pub ca_file: Option<std::path::PathBuf>,
    /// The sender, as in `"Trackside <trackside@yard.example>"`.
    pub from: String,
    /// The app's address for the link in each message. Absent: the first
    /// of `http.public_origins`.
    pub app_url: Option<String>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smtp_host: None,
            smtp_port: None,
            security: Security::Starttls,
            username: None,
            password: None,
            ca_file: None,
            from: "Trackside <trackside@localhost>".into(),
            app_url: None,
        }
    }
}

impl fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailConfig")
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("from", &self.from)
            .field("app_url", &self.app_url)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// Plain connection upgraded with STARTTLS, which is required.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only for a relay on this host.
    Plain,
}

/// A password that shows as `***` in every `Debug` output.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// `[[exceptions.notify_groups]]`: who is told at one escalation level.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyGroup {
    pub name: String,
    /// 0: raised (and released from maintenance, unshelved); n: the n-th
    /// escalation.
    #[serde(default)]
    pub level: u8,
    /// The least priority that reaches them.
    #[serde(default = "lowest")]
    pub min_priority: Priority,
    /// Circuit (or subject) patterns, `*` for any run of characters;
    /// empty: every circuit.
    #[serde(default)]
    pub circuits: Vec<String>,
    pub addresses: Vec<String>,
}

fn lowest() -> Priority {
    Priority::Low
}

impl NotifyGroup {
    fn takes(&self, event: &ExceptionEvent, level: u8) -> bool {
        let e = &event.exception;
        let place = e.circuit.as_deref().unwrap_or(&e.subject);
        self.level == level
            && e.priority >= self.min_priority
            && (self.circuits.is_empty()
                || self
                    .circuits
                    .iter()
                    .any(|p| trackside_wire::pattern_matches(p, place)))
    }
}

/// Checks the e-mail settings: a relay and somebody to tell, or neither.
pub fn check(config: &EmailConfig, groups: &[NotifyGroup]) -> anyhow::Result<()> {
    for group in groups {
        for address in &group.addresses {
            address.parse::<Mailbox>().with_context(|| {
                format!(
                    "exceptions.notify_groups {:?}: {address:?} is not an e-mail address",
                    group.name
                )
            })?;
        }
    }
    let Some(host) = &config.smtp_host else {
        if !groups.is_empty() {
            bail!("exceptions.notify_groups are set but exceptions.email.smtp_host is not");
        }
        return Ok(());
    };
    config.from.parse::<Mailbox>().with_context(|| {
        format!(
            "exceptions.email.from {:?} is not an e-mail address",
            config.from
        )
    })?;
    if config.security == Security::Plain && !is_local(host) {
        bail!(
            "exceptions.email.security = \"plain\" is only for a relay on this host \
             (localhost or a loopback address), not {host:?}: use \"starttls\" or \"tls\""
        );
    }
    Ok(())
}

fn is_local(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The relay, the groups and how a message reads.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    shown: String,
    groups: Vec<NotifyGroup>,
    zone: chrono_tz::Tz,
    app_url: String,
    /// Each limit rule's limits, in words.
    limits: HashMap<String, String>,
    /// Users' own routes (`routes`), refreshed by the sender.
    users: std::sync::RwLock<Vec<(String, Vec<NotifyRoute>)>>,
}

impl Mailer {
    /// None when no relay is configured.
    pub fn new(
        config: &EmailConfig,
        groups: &[NotifyGroup],
        rules: &[Rule],
        zone: chrono_tz::Tz,
        app_url: String,
    ) -> anyhow::Result<Option<Self>> {
        check(config, groups)?;
        let Some(host) = config.smtp_host.clone() else {
            return Ok(None);
        };
        let port = config.smtp_port.unwrap_or(match config.security {
            Security::Tls => 465,
            Security::Starttls => 587,
            Security::Plain => 25,
        });
        let tls = || -> anyhow::Result<TlsParameters> {
            let mut params = TlsParameters::builder(host.clone());
            if let Some(ca) = &config.ca_file {
                let pem = std::fs::read(ca).with_context(|| {
                    format!("reading exceptions.email.ca_file {}", ca.display())
                })?;
                params = params.add_root_certificate(
                    Certificate::from_pem(&pem)
                        .context("exceptions.email.ca_file is not a PEM certificate")?,
                );
            }
            params
                .build_rustls()
                .context("setting up TLS for the SMTP relay")
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            .port(port)
            .timeout(Some(SMTP_TIMEOUT));
        builder = match config.security {
            Security::Starttls => builder.tls(Tls::Required(tls()?)),
            Security::Tls => builder.tls(Tls::Wrapper(tls()?)),
            Security::Plain => builder.tls(Tls::None),
        };
        let password = std::env::var(PASSWORD_ENV)
            .ok()
            .filter(|p| !p.is_empty())
            .map(Secret)
            .or_else(|| config.password.clone());
        if let (Some(user), Some(Secret(password))) = (&config.username, password) {
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let limits = rules
            .iter()
            .filter_map(|rule| match &rule.check {
                Check::Limit {
                    low_set, high_set, ..
                } => {
                    let mut words = Vec::new();
                    if let Some(low) = low_set {
                        words.push(format!("at or below {low}"));
                    }
                    if let Some(high) = high_set {
                        words.push(format!("at or above {high}"));
                    }
                    Some((rule.id.clone(), words.join(" or ")))
                }
                _ => None,
            })
            .collect();
        Ok(Some(Mailer {
            transport: builder.build(),
            from: config.from.parse()?,
            shown: format!("smtp://{host}:{port}"),
            groups: groups.to_vec(),
            zone,
            app_url: app_url.trim_end_matches('/').to_owned(),
            limits,
            users: Default::default(),
        }))
    }

    pub fn shown(&self) -> String {
        self.shown.clone()
    }

    /// Replaces the users' routes (the sender reads them every few seconds).
    pub fn set_user_routes(&self, routes: Vec<(String, Vec<NotifyRoute>)>) {
        if let Ok(mut users) = self.users.write() {
            *users = routes;
        }
    }

    /// The addresses an announced transition goes to, each once: the
    /// groups of its escalation level, and every user with a route that
    /// takes it at this hour in the yard's zone.
    pub fn recipients(&self, event: &ExceptionEvent) -> Vec<String> {
        let level = match event.transition.kind {
            TransitionKind::Escalated => event.exception.escalation,
            _ => 0,
        };
        let mut to: Vec<String> = self
            .groups
            .iter()
            .filter(|g| g.takes(event, level))
            .flat_map(|g| g.addresses.iter().cloned())
            .collect();
        let at = chrono::DateTime::from_timestamp_millis(event.transition.at).unwrap_or_default();
        let hour = chrono::Timelike::hour(&self.zone.from_utc_datetime(&at.naive_utc())) as u8;
        let e = &event.exception;
        let place = e.circuit.as_deref().unwrap_or(&e.subject);
        if let Ok(users) = self.users.read() {
            for (address, routes) in users.iter() {
                if routes.iter().any(|r| r.takes(e.priority, place, hour)) {
                    to.push(address.clone());
                }
            }
        }
        to.sort();
        to.dedup();
        to
    }

    /// The addresses a flood's summary goes to, each once: the groups of
    /// level 0 and the users whose routes take its priority on any of its
    /// places (circuits, or the gateway) at this hour.
    pub fn summary_recipients(&self, summary: &super::FloodSummary) -> Vec<String> {
        let priority = summary.priority();
        let places = summary.places();
        let matches = |patterns: &[String]| {
            patterns.is_empty()
                || places.is_empty()
                || patterns.iter().any(|p| {
                    places
                        .iter()
                        .any(|place| trackside_wire::pattern_matches(p, place))
                })
        };
        let mut to: Vec<String> = self
            .groups
            .iter()
            .filter(|g| g.level == 0 && priority >= g.min_priority && matches(&g.circuits))
            .flat_map(|g| g.addresses.iter().cloned())
            .collect();
        let at = chrono::Utc::now();
        let hour = chrono::Timelike::hour(&self.zone.from_utc_datetime(&at.naive_utc())) as u8;
        if let Ok(users) = self.users.read() {
            for (address, routes) in users.iter() {
                let takes = |place: &str| routes.iter().any(|r| r.takes(priority, place, hour));
                if places.iter().any(|p| takes(p)) || (places.is_empty() && takes("")) {
                    to.push(address.clone());
                }
            }
        }
        to.sort();
        to.dedup();
        to
    }

    /// A flood's summary as an e-mail, times in the yard's zone.
    pub fn render_summary(&self, summary: &super::FloodSummary) -> serde_json::Value {
        serde_json::json!({
            "subject": summary.subject(),
            "text": summary.email_text(self.zone),
        })
    }

    /// `{"subject": ..., "text": ...}`: what the outbox keeps and sends.
    pub fn render(&self, event: &ExceptionEvent) -> serde_json::Value {
        let (subject, text) = message(event, self.zone, &self.app_url, &self.limits);
        serde_json::json!({ "subject": subject, "text": text })
    }

    /// Sends one message; the error in words, without credentials.
    pub async fn send(&self, to: &str, body: &serde_json::Value) -> Result<(), String> {
        let field = |name: &str| body.get(name).and_then(|v| v.as_str()).unwrap_or_default();
        let to: Mailbox = to
            .parse()
            .map_err(|err| format!("bad recipient address: {err}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(field("subject"))
            .header(ContentType::TEXT_PLAIN)
            .body(field("text").to_owned())
            .map_err(|err| format!("building the message: {err}"))?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(|err| err.to_string())
    }
}

/// A message's subject and text: priority and place first, then the
/// value, the limit, the time in the yard's zone and in UTC, and a link.
pub fn message(
    event: &ExceptionEvent,
    zone: chrono_tz::Tz,
    app_url: &str,
    limits: &HashMap<String, String>,
) -> (String, String) {
    let e = &event.exception;
    let place = e.circuit.as_deref().unwrap_or(&e.subject);
    let what = match event.transition.kind {
        TransitionKind::Escalated => {
            format!("ESCALATED to level {}, not acknowledged: ", e.escalation)
        }
        TransitionKind::Released => "maintenance over, still active: ".to_owned(),
        TransitionKind::Unshelved => "unshelved, still unacknowledged: ".to_owned(),
        _ => String::new(),
    };
    let subject = format!(
        "[{}] {place} {}: {what}{}",
        e.priority.label().to_uppercase(),
        e.kind.label(),
        e.message
    );
    let at = chrono::DateTime::from_timestamp_millis(event.transition.at).unwrap_or_default();
    let local = zone.from_utc_datetime(&at.naive_utc());
    let mut text = format!(
        "{what}{message}\n\n\
         Priority:  {priority} ({severity}, {criticality} circuit)\n\
         Circuit:   {place}\n\
         Subject:   {subject}\n",
        message = e.message,
        priority = e.priority.label(),
        severity = e.severity.as_str(),
        criticality = e.criticality.label(),
        subject = e.subject,
    );
    if let Some(gateway) = &e.gateway {
        text.push_str(&format!("Gateway:   {gateway}\n"));
    }
    if let Some(value) = event.transition.value.or(e.value) {
        text.push_str(&format!("Value:     {value}\n"));
    }
    if let Some(limit) = limits.get(&e.rule).filter(|l| !l.is_empty()) {
        text.push_str(&format!("Limit:     {limit} (rule {})\n", e.rule));
    } else {
        text.push_str(&format!("Rule:      {}\n", e.rule));
    }
    text.push_str(&format!(
        "Time:      {} {} ({} UTC)\n",
        local.format("%Y-%m-%d %H:%M:%S"),
        local.format("%Z"),
        at.format("%Y-%m-%d %H:%M:%S"),
    ));
    if e.escalation > 0 {
        text.push_str(&format!("Escalated: level {}\n", e.escalation));
    }
    text.push_str(&format!(
        "\nOpen it: {app_url}/exceptions?id={id}\n\
         Exception #{id}. Acknowledge it in Trackside; this message was sent by the yard's \
         Trackside server.\n",
        id = e.id
    ));
    (subject, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let config: EmailConfig = toml::from_str(
            "smtp_host = \"mail.yard.example\"\nusername = \"u\"\npassword = \"hunter2-secret\"\n",
        )
        .unwrap();
        assert!(!format!("{config:?}").contains("hunter2-secret"));
        assert!(format!("{config:?}").contains("***"));
    }

    #[test]
    fn plain_smtp_is_only_for_a_local_relay() {
        let mut config = EmailConfig {
            smtp_host: Some("mail.yard.example".into()),
            security: Security::Plain,
            ..EmailConfig::default()
        };
        assert!(check(&config, &[]).is_err());
        config.smtp_host = Some("127.0.0.1".into());
        assert!(check(&config, &[]).is_ok());
        config.smtp_host = Some("localhost".into());
        assert!(check(&config, &[]).is_ok());
    }

    #[test]
    fn groups_need_a_relay_and_real_addresses() {
        let group = |address: &str| NotifyGroup {
            name: "on-duty".into(),
            level: 0,
            min_priority: Priority::Low,
            circuits: Vec::new(),
            addresses: vec![address.into()],
        };
        let none = EmailConfig::default();
        assert!(check(&none, &[group("a@yard.example")]).is_err());
        let relay = EmailConfig {
            smtp_host: Some("mail.yard.example".into()),
            ..EmailConfig::default()
        };
        assert!(check(&relay, &[group("a@yard.example")]).is_ok());
        assert!(check(&relay, &[group("not an address")]).is_err());
    }
}
