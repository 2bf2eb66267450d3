//! A flood's summaries as notifications: one per group as it forms, an
//! update while it grows, one when the flood ends (`exceptions::flood`
//! decides when). Each receiver gets the same words: the JSON webhook as
//! `{"flood_summary": ...}`, a chat line, an e-mail; each with a link to
//! the grouped list.

use chrono::TimeZone as _;
use serde::Serialize;
use trackside_wire::{FloodGroupInfo, FloodInfo, Priority, Severity};

/// What a summary is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SummaryKind {
    /// A group formed.
    Formed,
    /// A group grew (or its priority rose) since it was last notified.
    Update,
    /// The flood ended: the closing summary.
    Ended,
}

/// One summary notification, as the JSON webhook receives it under
/// `flood_summary`.
#[derive(Debug, Clone, Serialize)]
pub struct FloodSummary {
    pub kind: SummaryKind,
    /// The summary in words (UTC), as chat and e-mail show it.
    pub text: String,
    /// The grouped list in the app.
    pub link: String,
    pub flood: FloodInfo,
    /// The group it is about; none for the closing summary.
    pub group: Option<FloodGroupInfo>,
}

/// Groups named in a closing summary; the rest are counted.
const GROUPS_NAMED: usize = 10;

impl FloodSummary {
    pub fn new(
        kind: SummaryKind,
        flood: FloodInfo,
        group: Option<FloodGroupInfo>,
        app_url: &str,
    ) -> Self {
        let link = format!("{app_url}/exceptions?flood={}", flood.id);
        let mut summary = Self {
            kind,
            text: String::new(),
            link,
            flood,
            group,
        };
        summary.text = summary.words(chrono_tz::UTC);
        summary
    }

    /// Where its notifications chain in the outbox: a flood's summaries to
    /// one target go in order, apart from every exception's.
    pub fn chain(&self) -> i64 {
        -self.flood.id
    }

    /// The highest priority it speaks of.
    pub fn priority(&self) -> Priority {
        match &self.group {
            Some(group) => group.priority,
            None => self
                .flood
                .groups
                .iter()
                .map(|g| g.priority)
                .max()
                .unwrap_or(Priority::Low),
        }
    }

    pub fn severity(&self) -> Severity {
        if self.priority() == Priority::High {
            Severity::Critical
        } else {
            Severity::Major
        }
    }

    /// The circuits (or, for a gateway's group, the gateway) it is about,
    /// for the routes that take only some.
    pub fn places(&self) -> Vec<String> {
        let groups: Vec<&FloodGroupInfo> = match &self.group {
            Some(group) => vec![group],
            None => self.flood.groups.iter().collect(),
        };
        groups
            .into_iter()
            .flat_map(|g| g.circuits.iter().cloned().chain(g.on.clone()))
            .collect()
    }

    /// The e-mail's subject.
    pub fn subject(&self) -> String {
        let priority = self.priority().label().to_uppercase();
        match (&self.kind, &self.group) {
            (SummaryKind::Ended, _) | (_, None) => {
                format!("[{priority}] {}", self.flood.headline())
            }
            (SummaryKind::Formed, Some(group)) => {
                format!("[{priority}] Alarm flood: {}", group.summary)
            }
            (SummaryKind::Update, Some(group)) => {
                format!("[{priority}] Alarm flood, still growing: {}", group.summary)
            }
        }
    }

    /// The summary in words, times in `zone` (and UTC beside them).
    pub fn words(&self, zone: chrono_tz::Tz) -> String {
        let time = |ms: i64| {
            let at = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
            let local = zone.from_utc_datetime(&at.naive_utc());
            if zone == chrono_tz::UTC {
                local.format("%H:%M UTC").to_string()
            } else {
                format!("{} ({} UTC)", local.format("%H:%M %Z"), at.format("%H:%M"))
            }
        };
        let flood = &self.flood;
        match (&self.kind, &self.group) {
            (SummaryKind::Ended, _) | (_, None) => {
                let mut text = format!(
                    "{}, from {} to {}.",
                    flood.headline(),
                    time(flood.started_at),
                    time(flood.ended_at.unwrap_or(flood.started_at))
                );
                for group in flood.groups.iter().take(GROUPS_NAMED) {
                    text.push_str(&format!(
                        "\n- {} ({})",
                        group.summary,
                        group.priority.as_str()
                    ));
                }
                if flood.groups.len() > GROUPS_NAMED {
                    text.push_str(&format!(
                        "\n- and {} more groups",
                        flood.groups.len() - GROUPS_NAMED
                    ));
                }
                text
            }
            (kind, Some(group)) => format!(
                "Alarm flood{}: {} since {}, highest priority {} ({} raises in the flood so far, \
                 more than {} in {} min). Listed as one group; acknowledge them together.",
                if *kind == SummaryKind::Update {
                    ", still growing"
                } else {
                    ""
                },
                group.summary,
                time(group.first_at),
                group.priority.as_str(),
                flood.total,
                flood.max_raises,
                flood.window_s / 60,
            ),
        }
    }

    /// The chat line.
    pub fn chat_text(&self) -> String {
        format!(
            "[{}] {} {}",
            self.priority().label().to_uppercase(),
            self.text,
            self.link
        )
    }

    /// The e-mail's text, times in the yard's zone.
    pub fn email_text(&self, zone: chrono_tz::Tz) -> String {
        format!(
            "{}\n\nOpen the grouped list: {}\n\nAlarm flood #{}. Individual alarms of the flood \
             are not e-mailed one by one, except high-priority ones that start a group; this \
             message was sent by the yard's Trackside server.\n",
            self.words(zone),
            self.link,
            self.flood.id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackside_wire::{ExceptionKind, FloodScope};

    fn flood() -> FloodInfo {
        FloodInfo {
            id: 1_800_000_000_000,
            started_at: 1_800_000_000_000,
            ended_at: None,
            peak: 14,
            total: 14,
            max_raises: 10,
            window_s: 600,
            groups: vec![FloodGroupInfo {
                key: "stale@yard-gw02".into(),
                kind: ExceptionKind::Stale,
                scope: FloodScope::Gateway,
                on: Some("yard-gw02".into()),
                count: 14,
                first_at: 1_800_000_000_000,
                last_at: 1_800_000_060_000,
                priority: Priority::Medium,
                circuits: vec!["T101".into()],
                notified_count: 14,
                notified_at: Some(1_800_000_060_000),
                summary: "14 stale channels on yard-gw02".into(),
            }],
        }
    }

    #[test]
    fn a_group_summary_names_its_cause_and_links_the_list() {
        let f = flood();
        let s = FloodSummary::new(
            SummaryKind::Formed,
            f.clone(),
            Some(f.groups[0].clone()),
            "http://yard.local",
        );
        assert!(
            s.text
                .starts_with("Alarm flood: 14 stale channels on yard-gw02 since 08:00 UTC"),
            "{}",
            s.text
        );
        assert_eq!(s.link, "http://yard.local/exceptions?flood=1800000000000");
        assert!(s.chat_text().ends_with(&s.link));
        assert_eq!(
            s.subject(),
            "[MEDIUM] Alarm flood: 14 stale channels on yard-gw02"
        );
        assert_eq!(s.places(), ["T101", "yard-gw02"]);
    }

    #[test]
    fn the_closing_summary_carries_the_final_counts() {
        let mut f = flood();
        f.ended_at = Some(f.started_at + 1_200_000);
        let s = FloodSummary::new(SummaryKind::Ended, f, None, "http://yard.local");
        assert!(
            s.text.starts_with(
                "Alarm flood over: 14 raises, peak 14 in 10 min, from 08:00 UTC to 08:20 UTC."
            ),
            "{}",
            s.text
        );
        assert!(s.text.contains("- 14 stale channels on yard-gw02 (medium)"));
    }
}
