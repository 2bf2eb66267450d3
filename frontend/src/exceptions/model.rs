//! What the app knows of exceptions (the open ones, and the last day's),
//! and the rules that order and filter them for the page.
//!
//! Snapshots over HTTP and `exception` frames from the live feed arrive in
//! either order, so merging must never roll an exception back; those rules
//! and the page's order are what an operator relies on, and they are
//! tested here, natively, apart from the components.

use std::collections::BTreeMap;

use leptos::prelude::*;
use trackside_wire::{
    ExceptionEvent, ExceptionInfo, ExceptionKind, FloodInfo, Priority, Severity,
    flood_group_summary,
};

use crate::api::ApiFailure;

#[derive(Clone, Copy)]
pub struct Exceptions {
    all: RwSignal<BTreeMap<i64, ExceptionInfo>>,
    /// The latest high-priority exception announced on the live feed (new,
    /// escalated, or released from maintenance): for desktop notifications.
    announced: RwSignal<Option<ExceptionInfo>>,
    /// Why the last load failed, while it stays failed.
    failure: RwSignal<Option<ApiFailure>>,
    /// Alarm floods of the last day, by id, as loaded and as `flood`
    /// frames change them.
    floods: RwSignal<BTreeMap<i64, FloodInfo>>,
    /// A load has succeeded: the list is whole, not just what the live
    /// feed has said so far.
    whole: RwSignal<bool>,
}

/// Grows with every transition: a snapshot that arrives after a live frame
/// must not roll an exception back.
pub fn progress(e: &ExceptionInfo) -> (i32, i64, i64, bool) {
    (
        e.occurrences,
        e.last_raised_at,
        e.cleared_at
            .max(e.acked_at)
            .max(e.escalated_at)
            .unwrap_or(0),
        // Grouped in a flood: never ungrouped.
        e.flood.is_some(),
    )
}

impl Default for Exceptions {
    fn default() -> Self {
        Self::new()
    }
}

impl Exceptions {
    pub fn new() -> Self {
        Self {
            all: RwSignal::new(BTreeMap::new()),
            announced: RwSignal::new(None),
            failure: RwSignal::new(None),
            floods: RwSignal::new(BTreeMap::new()),
            whole: RwSignal::new(false),
        }
    }

    /// A flood as loaded or as a `flood` frame says it is now; an ended
    /// one never comes back on.
    pub fn flood_changed(&self, flood: FloodInfo) {
        self.floods.update(|all| merge_flood(all, flood));
    }

    pub fn floods_loaded(&self, list: Vec<FloodInfo>) {
        self.floods.update(|all| {
            for flood in list {
                merge_flood(all, flood);
            }
        });
    }

    /// The flood that is on, if any (tracked).
    pub fn flood_on(&self) -> Option<FloodInfo> {
        self.floods
            .with(|all| all.values().rev().find(|f| f.ended_at.is_none()).cloned())
    }

    /// One exception as the app knows it now, if it does (tracked).
    pub fn get(&self, id: i64) -> Option<ExceptionInfo> {
        self.all.with(|all| all.get(&id).cloned())
    }

    pub fn merge(&self, list: Vec<ExceptionInfo>) {
        self.all.update(|all| {
            for incoming in list {
                merge_one(all, incoming);
            }
        });
    }

    pub fn apply(&self, event: ExceptionEvent) {
        if event.announced && sounds(&event.exception) {
            self.announced.set(Some(event.exception.clone()));
        }
        self.all.update(|all| merge_one(all, event.exception));
    }

    /// What must be acted on now: unacknowledged, high priority, not
    /// suppressed (tracked). The alarm sounds while there is any.
    pub fn sounding(&self) -> usize {
        self.all
            .with(|all| all.values().filter(|e| sounds(e)).count())
    }

    /// The latest high-priority announcement (tracked).
    pub fn last_announced(&self) -> Option<ExceptionInfo> {
        self.announced.get()
    }

    /// Exceptions shown as not yet stored are stored now, as given; a later
    /// state still unstored stays so.
    pub fn stored(&self, list: Vec<ExceptionInfo>) {
        self.merge(list);
    }

    /// Exceptions whose latest state only the server's memory and journal
    /// hold (the database is away) (tracked).
    pub fn unstored(&self) -> usize {
        self.all
            .with(|all| all.values().filter(|e| !e.stored).count())
    }

    /// Open, not acknowledged, and not suppressed by a maintenance window
    /// (tracked): the header's counter.
    pub fn unacknowledged(&self) -> usize {
        self.all
            .with(|all| all.values().filter(|e| e.demands_attention()).count())
    }

    /// The most severe active exception of a circuit, counting its
    /// gateways being offline (tracked).
    pub fn worst_for(&self, circuit: &str, gateways: &[String]) -> Option<Severity> {
        self.all.with(|all| {
            all.values()
                .filter(|e| e.active && touches(e, circuit, gateways))
                .map(|e| e.severity)
                .max()
        })
    }

    /// The active exceptions of a circuit, its gateways being offline
    /// included, as (kind, severity, subject) (tracked).
    pub fn active_for(
        &self,
        circuit: &str,
        gateways: &[String],
    ) -> Vec<(ExceptionKind, Severity, String)> {
        self.all.with(|all| {
            all.values()
                .filter(|e| e.active && touches(e, circuit, gateways))
                .map(|e| (e.kind, e.severity, e.subject.clone()))
                .collect()
        })
    }

    /// A circuit's open exceptions, most severe first (tracked).
    pub fn open_for(&self, circuit: &str, gateways: &[String]) -> Vec<ExceptionInfo> {
        self.all.with(|all| {
            let mut open: Vec<ExceptionInfo> = all
                .values()
                .filter(|e| e.open && touches(e, circuit, gateways))
                .cloned()
                .collect();
            open.sort_by(|a, b| {
                b.severity
                    .cmp(&a.severity)
                    .then(b.raised_at.cmp(&a.raised_at))
            });
            open
        })
    }

    /// Takes the result of a load: what arrived is merged, and a failure
    /// is kept for the page to show until a later load succeeds. A failed
    /// load keeps what the app already knew.
    pub fn loaded(&self, result: Result<Vec<ExceptionInfo>, ApiFailure>) {
        match result {
            Ok(list) => {
                self.merge(list);
                self.failure.set(None);
                self.whole.set(true);
            }
            Err(failure) => self.failure.set(Some(failure)),
        }
    }

    /// Whether a load has succeeded (tracked): before, rows arrive one
    /// frame at a time and the page's layout is not yet its own.
    pub fn whole(&self) -> bool {
        self.whole.get()
    }

    /// Why the last load failed, while it stays failed (tracked).
    pub fn failure(&self) -> Option<ApiFailure> {
        self.failure.get()
    }

    /// What the page shows for `filter`, in its order (tracked).
    pub fn filtered(&self, filter: &Filter) -> Vec<ExceptionInfo> {
        self.all.with(|all| visible(all.values(), filter))
    }
}

fn merge_flood(all: &mut BTreeMap<i64, FloodInfo>, flood: FloodInfo) {
    match all.get(&flood.id) {
        Some(held) if held.ended_at.is_some() && flood.ended_at.is_none() => {}
        Some(held) if held.total > flood.total && flood.ended_at.is_none() => {}
        _ => {
            all.insert(flood.id, flood);
        }
    }
}

/// A row of the list: one exception, or a flood group's members under
/// one summary.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    One(Box<ExceptionInfo>),
    Group(GroupRow),
}

/// A flood group as the list shows it: of the members the filters keep.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    pub flood: i64,
    pub key: String,
    /// "14 stale channels on yard-gw02".
    pub summary: String,
    /// The first raise among the members.
    pub since: i64,
    pub active: usize,
    pub unacknowledged: usize,
    /// The highest among the members.
    pub priority: Priority,
    /// In the list's order.
    pub members: Vec<ExceptionInfo>,
}

/// Members a flood group needs in the list to be shown as one row; a lone
/// member is shown as itself.
const GROUP_MIN: usize = 2;

/// The list with each flood group's members gathered under one row, at
/// the place of its first member (the list's order ranks a group by its
/// most urgent member).
pub fn rows(list: Vec<ExceptionInfo>) -> Vec<Row> {
    let mut sizes: BTreeMap<(i64, String), usize> = BTreeMap::new();
    for e in &list {
        if let Some(mark) = &e.flood {
            *sizes.entry((mark.flood, mark.group.clone())).or_default() += 1;
        }
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut at: BTreeMap<(i64, String), usize> = BTreeMap::new();
    for e in list {
        let key = e
            .flood
            .as_ref()
            .map(|m| (m.flood, m.group.clone()))
            .filter(|k| sizes.get(k).is_some_and(|n| *n >= GROUP_MIN));
        let Some(key) = key else {
            rows.push(Row::One(Box::new(e)));
            continue;
        };
        match at.get(&key) {
            Some(&index) => {
                if let Some(Row::Group(group)) = rows.get_mut(index) {
                    group.members.push(e);
                }
            }
            None => {
                at.insert(key.clone(), rows.len());
                rows.push(Row::Group(GroupRow {
                    flood: key.0,
                    key: key.1,
                    summary: String::new(),
                    since: e.raised_at,
                    active: 0,
                    unacknowledged: 0,
                    priority: e.priority,
                    members: vec![e],
                }));
            }
        }
    }
    for row in &mut rows {
        if let Row::Group(group) = row {
            let on = group
                .key
                .split_once(['@', '#'])
                .map(|(_, on)| on.to_owned());
            let kind = group.members[0].kind;
            group.summary = flood_group_summary(kind, on.as_deref(), group.members.len() as u32);
            group.since = group.members.iter().map(|e| e.raised_at).min().unwrap_or(0);
            group.active = group.members.iter().filter(|e| e.active).count();
            group.unacknowledged = group
                .members
                .iter()
                .filter(|e| e.open && !e.acknowledged)
                .count();
            group.priority = group
                .members
                .iter()
                .map(|e| e.priority)
                .max()
                .unwrap_or(Priority::Low);
        }
    }
    rows
}

/// Sounds the alarm: demands attention, at high priority.
pub fn sounds(e: &ExceptionInfo) -> bool {
    e.demands_attention() && e.priority == Priority::High
}

/// Whether an exception is about a circuit: on one of its channels, or its
/// gateway being offline.
fn touches(e: &ExceptionInfo, circuit: &str, gateways: &[String]) -> bool {
    e.circuit.as_deref() == Some(circuit)
        || (e.kind == ExceptionKind::GatewayOffline && gateways.contains(&e.subject))
}

fn merge_one(all: &mut BTreeMap<i64, ExceptionInfo>, incoming: ExceptionInfo) {
    match all.get(&incoming.id) {
        Some(held) if progress(held) > progress(&incoming) => {}
        _ => {
            all.insert(incoming.id, incoming);
        }
    }
}

/// Which exceptions the page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Open,
    Unacknowledged,
    Active,
    Suppressed,
    Shelved,
    All,
}

impl Show {
    pub const ALL: [Show; 6] = [
        Show::Open,
        Show::Unacknowledged,
        Show::Active,
        Show::Suppressed,
        Show::Shelved,
        Show::All,
    ];

    /// The `<option>` value (`filter-show` in the browser tests).
    pub fn value(self) -> &'static str {
        match self {
            Show::Open => "open",
            Show::Unacknowledged => "unacknowledged",
            Show::Active => "active",
            Show::Suppressed => "suppressed",
            Show::Shelved => "shelved",
            Show::All => "all",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Show::Open => "Open (not yet cleared and acknowledged)",
            Show::Unacknowledged => "Unacknowledged",
            Show::Active => "Active now",
            Show::Suppressed => "Suppressed by maintenance",
            Show::Shelved => "Shelved by an operator",
            Show::All => "All of the last 24 hours",
        }
    }

    fn keeps(self, e: &ExceptionInfo) -> bool {
        match self {
            Show::Open => e.open,
            Show::Unacknowledged => e.demands_attention(),
            Show::Active => e.active,
            Show::Suppressed => e.suppressed,
            Show::Shelved => e.open && e.shelf.is_some(),
            Show::All => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub show: Show,
    /// At least this severe.
    pub severity: Option<Severity>,
    /// At least this priority (after escalation).
    pub priority: Option<Priority>,
    /// Circuit or gateway name, case-insensitive prefix.
    pub circuit: String,
}

/// Unacknowledged first (active before cleared), then acknowledged active,
/// then closed; within each, the highest priority, the most severe, then
/// the most recent. Suppressed ones wait with the acknowledged.
pub fn state_rank(e: &ExceptionInfo) -> u8 {
    match (e.demands_attention(), e.active) {
        (true, true) => 0,
        (true, false) => 1,
        (false, true) => 2,
        (false, false) => 3,
    }
}

pub fn visible<'a>(
    all: impl Iterator<Item = &'a ExceptionInfo>,
    filter: &Filter,
) -> Vec<ExceptionInfo> {
    let needle = filter.circuit.trim().to_ascii_lowercase();
    let mut list: Vec<ExceptionInfo> = all
        .filter(|e| filter.show.keeps(e))
        .filter(|e| filter.severity.is_none_or(|min| e.severity >= min))
        .filter(|e| filter.priority.is_none_or(|min| e.priority >= min))
        .filter(|e| {
            needle.is_empty()
                || e.circuit
                    .as_deref()
                    .unwrap_or(&e.subject)
                    .to_ascii_lowercase()
                    .starts_with(&needle)
        })
        .cloned()
        .collect();
    list.sort_by(|a, b| {
        state_rank(a)
            .cmp(&state_rank(b))
            .then(b.priority.cmp(&a.priority))
            .then(b.severity.cmp(&a.severity))
            .then(b.last_raised_at.cmp(&a.last_raised_at))
            .then(b.id.cmp(&a.id))
    });
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackside_wire::Criticality;

    fn info(
        id: i64,
        severity: Severity,
        active: bool,
        acknowledged: bool,
        raised: i64,
    ) -> ExceptionInfo {
        ExceptionInfo {
            id,
            rule: "r".into(),
            kind: ExceptionKind::Limit,
            severity,
            subject: format!("T{id}/relay_voltage"),
            circuit: Some(format!("T{id}")),
            gateway: Some("gw".into()),
            message: "m".into(),
            value: None,
            active,
            acknowledged,
            open: active || !acknowledged,
            raised_at: raised,
            last_raised_at: raised,
            cleared_at: (!active).then_some(raised + 1),
            acked_at: acknowledged.then_some(raised + 2),
            acked_by: None,
            ack_comment: None,
            occurrences: 1,
            criticality: Criticality::RunningLine,
            base_priority: Priority::Medium,
            priority: Priority::Medium,
            escalation: 0,
            escalated_at: None,
            suppressed: false,
            window: None,
            shelf: None,
            shelved_until: None,
            stored: true,
            flood: None,
        }
    }

    fn ids(list: &[ExceptionInfo]) -> Vec<i64> {
        list.iter().map(|e| e.id).collect()
    }

    #[test]
    fn unacknowledged_come_first_then_by_severity_then_newest() {
        let all = [
            info(1, Severity::Critical, false, true, 10), // closed
            info(2, Severity::Warning, true, false, 10),
            info(3, Severity::Critical, true, true, 10), // acknowledged, active
            info(4, Severity::Major, true, false, 10),
            info(5, Severity::Critical, false, false, 10), // cleared, unacknowledged
            info(6, Severity::Major, true, false, 20),
        ];
        let filter = Filter {
            show: Show::All,
            severity: None,
            priority: None,
            circuit: String::new(),
        };
        assert_eq!(ids(&visible(all.iter(), &filter)), [6, 4, 2, 5, 3, 1]);
        let open = Filter {
            show: Show::Open,
            ..filter.clone()
        };
        assert_eq!(ids(&visible(all.iter(), &open)), [6, 4, 2, 5, 3]);
        let serious = Filter {
            severity: Some(Severity::Major),
            show: Show::Unacknowledged,
            ..filter.clone()
        };
        assert_eq!(ids(&visible(all.iter(), &serious)), [6, 4, 5]);
        let one = Filter {
            circuit: "t4".into(),
            ..filter
        };
        assert_eq!(ids(&visible(all.iter(), &one)), [4]);
    }

    #[test]
    fn priority_ranks_before_severity_and_suppressed_ones_wait() {
        let mut high = info(1, Severity::Warning, true, false, 10);
        high.priority = Priority::High;
        let major = info(2, Severity::Major, true, false, 20);
        let mut low = info(3, Severity::Critical, true, false, 30);
        low.priority = Priority::Low;
        let mut suppressed = info(4, Severity::Critical, true, false, 40);
        suppressed.priority = Priority::High;
        suppressed.suppressed = true;
        let all = [high, major, low, suppressed];
        let filter = Filter {
            show: Show::Open,
            severity: None,
            priority: None,
            circuit: String::new(),
        };
        assert_eq!(ids(&visible(all.iter(), &filter)), [1, 2, 3, 4]);
        let urgent = Filter {
            priority: Some(Priority::Medium),
            show: Show::Unacknowledged,
            ..filter.clone()
        };
        assert_eq!(ids(&visible(all.iter(), &urgent)), [1, 2]);
        let maintenance = Filter {
            show: Show::Suppressed,
            ..filter
        };
        assert_eq!(ids(&visible(all.iter(), &maintenance)), [4]);
        let exceptions = Exceptions::new();
        exceptions.merge(all.to_vec());
        assert_eq!(
            exceptions.unacknowledged(),
            3,
            "suppressed ones do not count"
        );
    }

    #[test]
    fn only_unacknowledged_unsuppressed_high_priority_ones_sound() {
        let exceptions = Exceptions::new();
        let mut high = info(1, Severity::Major, true, false, 10);
        high.priority = Priority::High;
        let medium = info(2, Severity::Critical, true, false, 10);
        let mut acked = high.clone();
        acked.id = 3;
        acked.acknowledged = true;
        acked.acked_at = Some(20);
        let mut suppressed = high.clone();
        suppressed.id = 4;
        suppressed.suppressed = true;
        let mut cleared = high.clone();
        cleared.id = 5;
        cleared.active = false;
        cleared.cleared_at = Some(15);
        exceptions.merge(vec![high.clone(), medium, acked, suppressed, cleared]);
        assert_eq!(
            exceptions.sounding(),
            2,
            "cleared but unacknowledged still sounds"
        );
        let mut now_acked = high;
        now_acked.acknowledged = true;
        now_acked.acked_at = Some(30);
        exceptions.apply(ExceptionEvent {
            transition: trackside_wire::TransitionInfo {
                at: 30,
                kind: trackside_wire::TransitionKind::Acknowledged,
                value: None,
                message: "acknowledged".into(),
                by: Some("ann".into()),
                comment: Some("ok".into()),
            },
            exception: now_acked,
            announced: false,
        });
        assert_eq!(exceptions.sounding(), 1);
        assert_eq!(exceptions.last_announced(), None);
    }

    #[test]
    fn a_shelved_one_is_listed_apart_and_stays_quiet() {
        let mut high = info(1, Severity::Major, true, false, 10);
        high.priority = Priority::High;
        let mut shelved = high.clone();
        shelved.id = 2;
        shelved.shelf = Some(9);
        shelved.shelved_until = Some(3_600_000);
        let all = [high, shelved.clone()];
        let filter = Filter {
            show: Show::Shelved,
            severity: None,
            priority: None,
            circuit: String::new(),
        };
        assert_eq!(ids(&visible(all.iter(), &filter)), [2]);
        let unacked = Filter {
            show: Show::Unacknowledged,
            ..filter
        };
        assert_eq!(ids(&visible(all.iter(), &unacked)), [1]);
        let exceptions = Exceptions::new();
        exceptions.merge(all.to_vec());
        assert_eq!((exceptions.sounding(), exceptions.unacknowledged()), (1, 1));
        // Unshelved: it sounds again.
        shelved.shelf = None;
        shelved.shelved_until = None;
        exceptions.merge(vec![shelved]);
        assert_eq!(exceptions.sounding(), 2);
    }

    fn member(id: i64, group: &str, active: bool, acknowledged: bool) -> ExceptionInfo {
        let mut e = info(id, Severity::Major, active, acknowledged, 100 + id);
        e.kind = ExceptionKind::Stale;
        e.flood = Some(trackside_wire::FloodMark {
            flood: 7,
            group: group.into(),
        });
        e
    }

    #[test]
    fn a_flood_group_is_one_row_in_the_place_of_its_first_member() {
        let list = vec![
            info(1, Severity::Critical, true, false, 10),
            member(2, "stale@gw2", true, false),
            info(3, Severity::Major, true, false, 10),
            member(4, "stale@gw2", false, false),
            member(5, "stale@gw2", true, true),
            // Alone in the list: shown as itself.
            member(6, "stale@gw3", true, false),
        ];
        let rows = rows(list);
        let shape: Vec<String> = rows
            .iter()
            .map(|r| match r {
                Row::One(e) => e.id.to_string(),
                Row::Group(g) => format!(
                    "{} · {} active · {} unacknowledged · {:?}",
                    g.summary,
                    g.active,
                    g.unacknowledged,
                    g.members.iter().map(|e| e.id).collect::<Vec<_>>()
                ),
            })
            .collect();
        assert_eq!(
            shape,
            [
                "1",
                "3 stale channels on gw2 · 2 active · 2 unacknowledged · [2, 4, 5]",
                "3",
                "6",
            ]
        );
        let Row::Group(group) = &rows[1] else {
            panic!("a group");
        };
        assert_eq!((group.flood, group.since), (7, 102));
    }

    #[test]
    fn a_grouped_state_is_progress_and_an_ended_flood_stays_ended() {
        let mut all = BTreeMap::new();
        let raised = info(1, Severity::Major, true, false, 10);
        let mut grouped = raised.clone();
        grouped.flood = Some(trackside_wire::FloodMark {
            flood: 7,
            group: "limit@gw".into(),
        });
        merge_one(&mut all, grouped.clone());
        merge_one(&mut all, raised);
        assert_eq!(all[&1], grouped, "a snapshot from before the flood");

        let exceptions = Exceptions::new();
        let on = FloodInfo {
            id: 7,
            started_at: 7,
            ended_at: None,
            peak: 11,
            total: 11,
            max_raises: 10,
            window_s: 600,
            groups: Vec::new(),
        };
        exceptions.flood_changed(on.clone());
        assert_eq!(exceptions.flood_on().map(|f| f.id), Some(7));
        exceptions.flood_changed(FloodInfo {
            ended_at: Some(900),
            ..on.clone()
        });
        exceptions.floods_loaded(vec![on]);
        assert_eq!(exceptions.flood_on(), None, "a late snapshot");
    }

    #[test]
    fn an_escalation_is_progress() {
        let mut all = BTreeMap::new();
        let raised = info(1, Severity::Major, true, false, 10);
        let mut escalated = raised.clone();
        escalated.escalation = 1;
        escalated.escalated_at = Some(40);
        escalated.priority = Priority::High;
        merge_one(&mut all, escalated.clone());
        merge_one(&mut all, raised);
        assert_eq!(all[&1], escalated);
    }

    #[test]
    fn an_older_snapshot_never_rolls_an_exception_back() {
        let mut all = BTreeMap::new();
        let raised = info(1, Severity::Major, true, false, 10);
        let mut acked = raised.clone();
        acked.acknowledged = true;
        acked.acked_at = Some(50);
        merge_one(&mut all, acked.clone());
        merge_one(&mut all, raised);
        assert_eq!(all[&1], acked);
    }

    /// Raised and cleared while the database was away: the stored notice
    /// for the raise must not mark the (still unstored) clear as stored.
    #[test]
    fn a_stored_notice_marks_only_the_state_it_names() {
        let exceptions = Exceptions::new();
        let mut raised = info(1, Severity::Major, true, false, 10);
        raised.stored = false;
        let mut cleared = info(1, Severity::Major, false, false, 10);
        cleared.stored = false;
        exceptions.merge(vec![raised.clone()]);
        exceptions.merge(vec![cleared.clone()]);
        assert_eq!(exceptions.unstored(), 1);
        raised.stored = true;
        exceptions.stored(vec![raised]);
        assert_eq!(exceptions.unstored(), 1, "the clear is not stored yet");
        cleared.stored = true;
        exceptions.stored(vec![cleared]);
        assert_eq!(exceptions.unstored(), 0);
    }

    #[test]
    fn a_failed_load_keeps_what_was_known_until_one_succeeds() {
        let exceptions = Exceptions::new();
        exceptions.loaded(Ok(vec![info(1, Severity::Major, true, false, 10)]));
        exceptions.loaded(Err(ApiFailure::Unreachable));
        assert_eq!(exceptions.failure(), Some(ApiFailure::Unreachable));
        assert_eq!(exceptions.unacknowledged(), 1);
        exceptions.loaded(Ok(vec![info(2, Severity::Warning, true, false, 20)]));
        assert_eq!(exceptions.failure(), None);
        assert_eq!(exceptions.unacknowledged(), 2);
    }
}
