//! Alarm floods: more raises than one operator can take in, summarised.
//!
//! Why: in a flood (ISA-18.2's benchmark is more than 10 alarms in 10
//! minutes per operator position) a list of one line per alarm and a
//! message per alarm bury the few that matter; a controller needs "14
//! stale channels on yard-gw02" once, not fourteen times. Why in the
//! engine: the engine already decides what is announced, so a flood
//! changes only that decision, never the judging. Every raise in a flood is
//! still judged, recorded, listed and acknowledged exactly as without one.
//!
//! What counts: every announcement to escalation level 0 (a new exception,
//! one re-alarmed, unshelved or released from maintenance while still
//! unacknowledged): what the operator is asked to look at. Shelved and
//! suppressed raises are not announced, so they never count; escalations
//! go to other people and do not count either. The window slides in one-
//! second steps and the count is over the last `window_s`.
//!
//! A flood starts when the count goes over `max_raises`. The raises in the
//! window that started it join their groups at once (a `grouped`
//! transition each, so the list shows them under their summary). It ends
//! once the count has stayed at or below `max_raises` for `quiet_s`; the
//! closing summary then carries the final counts.
//!
//! Groups, by cause: a channel's raise groups by kind and gateway (in a
//! yard a gateway serves one area, and the shared cause of many alarms at
//! once is shared equipment or the area's conditions: a failed input card,
//! a power dip, rain on the rails), by kind and circuit when no gateway is
//! known; gateway-level kinds (offline, clock) and the spool group by kind
//! over the yard, since their cause is the network or the time source. At
//! most [`MAX_GROUPS`] groups; beyond, raises join their kind's yard group.
//!
//! What is announced during a flood: each group once as it forms (a
//! summary notification), then an update at most every `update_s` while it
//! grows, and at once if its highest priority rises; one closing summary.
//! The member raises are not announced one by one, with one exception,
//! chosen so a flood never hides the alarm that matters: a high-priority
//! raise that forms a new group is announced on its own as well (full
//! detail: value, limit, circuit), and a high-priority raise joining a
//! group of lower priority makes the group's update go out at once. A high
//! raise joining a group already announced at high priority is covered by
//! that summary (its cause is already in front of the operator), and the
//! control room's sound still rings for every unacknowledged high one.
//!
//! A restart resumes a flood from its row (`floods`): its groups and
//! counts, with an empty window, so it ends after `quiet_s` unless raises
//! go on.

pub mod http;

use std::collections::VecDeque;

use trackside_wire::{
    ExceptionKind, FloodGroupInfo, FloodInfo, FloodMark, FloodScope, Priority, flood_group_summary,
};

use super::engine::{Key, Ms};

/// Groups one flood keeps apart at most.
pub const MAX_GROUPS: usize = 200;
/// Circuits named per group at most.
const MAX_CIRCUITS: usize = 32;

/// `[exceptions.flood]`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodPolicy {
    pub max_raises: u32,
    pub window_ms: Ms,
    pub quiet_ms: Ms,
    pub update_ms: Ms,
}

/// What the service does after a step: store the flood, show it, and
/// notify.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A group formed (`update` false) or grew and is announced again.
    Group { key: String, update: bool },
    /// The flood ended; its closing summary.
    Ended,
}

/// A flood as it changed in one step, with what to announce of it.
#[derive(Debug, Clone, PartialEq)]
pub struct FloodChange {
    pub flood: FloodInfo,
    pub notices: Vec<Notice>,
}

/// One counted raise, as the window remembers it while no flood is on.
#[derive(Debug, Clone)]
struct Candidate {
    at: Ms,
    key: Key,
    group: GroupOf,
    priority: Priority,
}

/// What decides a raise's group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupOf {
    pub kind: ExceptionKind,
    pub scope: FloodScope,
    pub on: Option<String>,
    pub circuit: Option<String>,
}

impl GroupOf {
    /// The group of a raise of `kind` on `subject` from `gateway`.
    pub fn of(kind: ExceptionKind, subject: &str, gateway: Option<&str>) -> Self {
        let circuit = subject.split_once('/').map(|(c, _)| c.to_owned());
        let yard = matches!(
            kind,
            ExceptionKind::GatewayOffline | ExceptionKind::ClockSkew | ExceptionKind::Spool
        );
        let (scope, on) = match (yard, gateway, &circuit) {
            (true, _, _) => (FloodScope::Yard, None),
            (false, Some(gateway), _) => (FloodScope::Gateway, Some(gateway.to_owned())),
            (false, None, Some(circuit)) => (FloodScope::Circuit, Some(circuit.clone())),
            (false, None, None) => (FloodScope::Yard, None),
        };
        Self {
            kind,
            scope,
            on,
            circuit,
        }
    }

    fn key(&self) -> String {
        let kind = self.kind.as_str();
        match (self.scope, &self.on) {
            (FloodScope::Gateway, Some(on)) => format!("{kind}@{on}"),
            (FloodScope::Circuit, Some(on)) => format!("{kind}#{on}"),
            _ => kind.to_owned(),
        }
    }

    fn yard(&self) -> Self {
        Self {
            scope: FloodScope::Yard,
            on: None,
            ..self.clone()
        }
    }
}

/// A flood that is on.
#[derive(Debug, Clone)]
struct Flood {
    info: FloodInfo,
    /// Since when the count has been at or below the threshold.
    quiet_since: Option<Ms>,
    /// Groups whose priority rose since they were last announced.
    raised: Vec<String>,
}

/// The detector: the window's count, the flood if one is on, and what
/// changed since the service last took it.
#[derive(Debug)]
pub struct Floods {
    policy: Option<FloodPolicy>,
    /// Counted raises per second, oldest first, within the window.
    seconds: VecDeque<(Ms, u32)>,
    in_window: u32,
    /// The counted raises in the window while no flood is on (at most
    /// `max_raises + 1`): they join the flood they start.
    candidates: VecDeque<Candidate>,
    flood: Option<Flood>,
    /// The id of the last flood: a new one's is later.
    last_id: Ms,
    changes: Vec<FloodChange>,
}

/// What a counted raise becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Counted {
    /// Its place in the flood, when one is on.
    pub mark: Option<FloodMark>,
    /// Announce it on its own as well.
    pub announce: bool,
    /// Raises before it that joined the flood it started: to be marked.
    pub joined: Vec<(Key, FloodMark)>,
}

impl Floods {
    /// `None`: flood detection off (every raise is announced on its own).
    pub fn new(policy: Option<FloodPolicy>) -> Self {
        Self {
            policy,
            seconds: VecDeque::new(),
            in_window: 0,
            candidates: VecDeque::new(),
            flood: None,
            last_id: Ms::MIN,
            changes: Vec::new(),
        }
    }

    /// The flood that is on, if any.
    pub fn current(&self) -> Option<&FloodInfo> {
        self.flood.as_ref().map(|f| &f.info)
    }

    /// Takes a flood that was on back after a restart: its groups and
    /// counts; the window starts empty, so it ends after the quiet period
    /// unless raises go on.
    pub fn resume(&mut self, info: FloodInfo, now: Ms) {
        if self.policy.is_none() || info.ended_at.is_some() {
            return;
        }
        self.last_id = self.last_id.max(info.id);
        self.flood = Some(Flood {
            info,
            quiet_since: Some(now),
            raised: Vec::new(),
        });
    }

    /// What changed since the last call: one entry per flood touched.
    pub fn take_changes(&mut self) -> Vec<FloodChange> {
        std::mem::take(&mut self.changes)
    }

    /// An announcement at level 0 of `key` (of `group`, at `priority`) at
    /// `at`: counts it, starts a flood when the count goes over the
    /// threshold, and says whether it is still announced on its own.
    pub fn count(&mut self, key: &Key, group: GroupOf, priority: Priority, at: Ms) -> Counted {
        let Some(policy) = self.policy else {
            return Counted {
                mark: None,
                announce: true,
                joined: Vec::new(),
            };
        };
        self.slide(at, policy);
        let second = at - at.rem_euclid(1000);
        match self.seconds.back_mut() {
            Some((s, n)) if *s >= second => *n += 1,
            _ => self.seconds.push_back((second, 1)),
        }
        self.in_window += 1;

        let mut joined = Vec::new();
        // The groups the raises before this one formed, if it starts a
        // flood.
        let formed_before: Vec<String> = if self.flood.is_none() {
            self.candidates.push_back(Candidate {
                at,
                key: key.clone(),
                group: group.clone(),
                priority,
            });
            while self.candidates.len() > policy.max_raises as usize + 1 {
                self.candidates.pop_front();
            }
            if self.in_window <= policy.max_raises {
                return Counted {
                    mark: None,
                    announce: true,
                    joined,
                };
            }
            // Over the threshold: a flood, with the window's raises before
            // this one as its first members (already announced each).
            let id = at.max(self.last_id + 1);
            self.last_id = id;
            let mut flood = Flood {
                info: FloodInfo {
                    id,
                    started_at: at,
                    ended_at: None,
                    peak: 0,
                    total: 0,
                    max_raises: policy.max_raises,
                    window_s: (policy.window_ms / 1000) as u32,
                    groups: Vec::new(),
                },
                quiet_since: None,
                raised: Vec::new(),
            };
            let earlier: Vec<Candidate> = self.candidates.drain(..).collect();
            let mut formed = Vec::new();
            for c in earlier.iter().filter(|c| c.key != *key) {
                let (mark, new) = join(&mut flood, &c.group, c.priority, c.at);
                if new {
                    formed.push(mark.group.clone());
                }
                joined.push((c.key.clone(), mark));
            }
            self.flood = Some(flood);
            formed
        } else {
            Vec::new()
        };
        let in_window = self.in_window;
        let flood = self.flood.as_mut().expect("a flood is on");
        flood.info.peak = flood.info.peak.max(in_window);
        if in_window > policy.max_raises {
            flood.quiet_since = None;
        }
        let before = group_priority(flood, &group);
        let (mark, formed) = join(flood, &group, priority, at);
        let mut notices: Vec<Notice> = formed_before
            .into_iter()
            .map(|key| Notice::Group { key, update: false })
            .collect();
        // A high raise forming its group is announced on its own (and the
        // group with it); in an announced group it is covered.
        let announce = formed && priority == Priority::High;
        if formed {
            notices.push(Notice::Group {
                key: mark.group.clone(),
                update: false,
            });
        } else if before.is_some_and(|b| priority > b) {
            flood.raised.push(mark.group.clone());
        }
        self.changed(notices, at);
        Counted {
            mark: Some(mark),
            announce,
            joined,
        }
    }

    /// Time passes: the window slides, groups that grew are announced
    /// again (at most every `update_ms`, at once if their priority rose),
    /// and a flood quiet for `quiet_ms` ends.
    pub fn tick(&mut self, now: Ms) {
        let Some(policy) = self.policy else {
            return;
        };
        self.slide(now, policy);
        let in_window = self.in_window;
        let Some(flood) = self.flood.as_mut() else {
            return;
        };
        let mut notices = Vec::new();
        let raised = std::mem::take(&mut flood.raised);
        for group in &mut flood.info.groups {
            let due = group
                .notified_at
                .is_none_or(|t| now - t >= policy.update_ms);
            if group.count > group.notified_count && (due || raised.contains(&group.key)) {
                notices.push(Notice::Group {
                    key: group.key.clone(),
                    update: true,
                });
            }
        }
        if in_window > policy.max_raises {
            flood.quiet_since = None;
        } else {
            let since = *flood.quiet_since.get_or_insert(now);
            if now - since >= policy.quiet_ms {
                flood.info.ended_at = Some(now);
                notices.push(Notice::Ended);
            }
        }
        if !notices.is_empty() {
            self.changed(notices, now);
        }
        if self
            .flood
            .as_ref()
            .is_some_and(|f| f.info.ended_at.is_some())
        {
            self.flood = None;
        }
    }

    /// Marks the groups of `notices` notified now, and records the change.
    fn changed(&mut self, notices: Vec<Notice>, now: Ms) {
        let Some(flood) = self.flood.as_mut() else {
            return;
        };
        for notice in &notices {
            if let Notice::Group { key, .. } = notice
                && let Some(group) = flood.info.groups.iter_mut().find(|g| &g.key == key)
            {
                group.notified_count = group.count;
                group.notified_at = Some(now);
            }
        }
        flood
            .info
            .groups
            .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        let info = flood.info.clone();
        // One entry per flood per step: the latest state, every notice.
        match self.changes.last_mut() {
            Some(last) if last.flood.id == info.id => {
                last.flood = info;
                last.notices.extend(notices);
            }
            _ => self.changes.push(FloodChange {
                flood: info,
                notices,
            }),
        }
    }

    fn slide(&mut self, now: Ms, policy: FloodPolicy) {
        while let Some(&(second, n)) = self.seconds.front() {
            if now - second < policy.window_ms {
                break;
            }
            self.seconds.pop_front();
            self.in_window -= n;
        }
        while self
            .candidates
            .front()
            .is_some_and(|c| now - c.at >= policy.window_ms)
        {
            self.candidates.pop_front();
        }
    }
}

fn group_priority(flood: &Flood, group: &GroupOf) -> Option<Priority> {
    let key = group.key();
    flood
        .info
        .groups
        .iter()
        .find(|g| g.key == key)
        .map(|g| g.priority)
}

/// Adds a raise to its group (forming it if new); whether it formed it.
fn join(flood: &mut Flood, group: &GroupOf, priority: Priority, at: Ms) -> (FloodMark, bool) {
    let mut group = group.clone();
    let mut key = group.key();
    let groups = &mut flood.info.groups;
    if !groups.iter().any(|g| g.key == key) && groups.len() >= MAX_GROUPS {
        group = group.yard();
        key = group.key();
    }
    flood.info.total += 1;
    let formed = !groups.iter().any(|g| g.key == key);
    if formed {
        groups.push(FloodGroupInfo {
            key: key.clone(),
            kind: group.kind,
            scope: group.scope,
            on: group.on.clone(),
            count: 0,
            first_at: at,
            last_at: at,
            priority,
            circuits: Vec::new(),
            notified_count: 0,
            notified_at: None,
            summary: String::new(),
        });
    }
    if let Some(g) = groups.iter_mut().find(|g| g.key == key) {
        g.count += 1;
        g.first_at = g.first_at.min(at);
        g.last_at = g.last_at.max(at);
        g.priority = g.priority.max(priority);
        if let Some(circuit) = &group.circuit
            && g.circuits.len() < MAX_CIRCUITS
            && !g.circuits.contains(circuit)
        {
            g.circuits.push(circuit.clone());
        }
        g.summary = flood_group_summary(g.kind, g.on.as_deref(), g.count);
    }
    (
        FloodMark {
            flood: flood.info.id,
            group: key,
        },
        formed,
    )
}
