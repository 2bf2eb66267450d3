//! The rule engine: a pure state machine. Readings, gateway status changes,
//! acknowledgements and clock ticks go in, each with its time; the
//! transitions they cause come out. No clock, no I/O: the task in
//! `exceptions::run` feeds it and stores what it says, and the tests and the
//! fault drill drive it with simulated time.
//!
//! Beside the rules it keeps the alarm side of each exception: its
//! priority (severity and the circuit's criticality, `priority`), the
//! shelves and maintenance windows that hide it, and escalation when
//! nobody acknowledges it. Each transition carries the exception's alarm
//! state after it, and whether it is to be announced (notified), and to
//! which escalation level.
//!
//! Two times are involved. Value conditions (limits, rates, flick lengths)
//! use the readings' own timestamps, so a gateway's backlog is judged as it
//! happened. Timers (delays, stale channels, long occupation, re-alarm) use
//! the engine's clock, which is the time a message was received (or a tick's
//! time), so a gateway whose clock is off cannot make a timer fire early.

use std::collections::{BTreeMap, HashMap, VecDeque};

use trackside_wire::{
    ChannelName, Check, Criticality, ExceptionKind, Priority, Rule, Severity, TransitionKind,
    parameter_info, pattern_matches,
};

use super::flood::{FloodChange, FloodPolicy, Floods, GroupOf};
use super::priority::{AlarmPolicy, Criticalities, priority};
use crate::reading::DecodedReading;

/// Unix milliseconds.
pub type Ms = i64;

/// An exception's identity while it is open: its rule and its subject (a
/// channel name, or a gateway id for `gateway_offline`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub rule: String,
    pub subject: String,
}

/// One step of an exception's life, as the engine decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub key: Key,
    pub kind: TransitionKind,
    pub at: Ms,
    pub value: Option<f64>,
    pub message: String,
    pub by: Option<String>,
    pub comment: Option<String>,
    /// A raise that opens a new exception (not the reactivation of one that
    /// cleared but was not yet acknowledged).
    pub opens: bool,
    /// After this the exception is closed: cleared and acknowledged.
    pub closes: bool,
    /// The gateway of the subject, when known.
    pub gateway: Option<String>,
    /// The exception's alarm state after this transition.
    pub alarm: AlarmState,
    /// Announce it (notify, offer a desktop notification) to this
    /// escalation level: 0 for what is new to everyone.
    pub announce: Option<u8>,
}

/// What decides how loudly an exception is presented.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmState {
    pub priority: Priority,
    pub base_priority: Priority,
    pub criticality: Criticality,
    pub escalation: u8,
    pub escalated_at: Option<Ms>,
    /// The shelf that hides it, and until when.
    pub shelf: Option<(i64, Ms)>,
    /// Raised inside a maintenance window that is still on.
    pub suppressed: bool,
    /// The maintenance window it was raised in.
    pub window: Option<i64>,
    /// Since when it waits for someone (active, unacknowledged, neither
    /// shelved nor suppressed): the escalation clock.
    pub waiting_since: Option<Ms>,
    /// The alarm flood and group it was announced in (`flood`).
    pub flood: Option<trackside_wire::FloodMark>,
}

impl AlarmState {
    /// As stored, after a restart. [`Engine::resume`] brings the shelf in
    /// line with the shelves restored (one that ran out meanwhile ends
    /// then); the escalation clock restarts from the last raise or
    /// escalation.
    pub fn resumed(e: &trackside_wire::ExceptionInfo) -> Self {
        let waiting = !e.acknowledged && !e.suppressed && e.shelf.is_none();
        Self {
            priority: e.priority,
            base_priority: e.base_priority,
            criticality: e.criticality,
            escalation: e.escalation,
            escalated_at: e.escalated_at,
            shelf: e.shelf.zip(e.shelved_until),
            suppressed: e.suppressed,
            window: e.window,
            waiting_since: waiting.then(|| e.escalated_at.unwrap_or(e.last_raised_at)),
            flood: e.flood.clone(),
        }
    }

    pub fn new(priority: Priority, criticality: Criticality) -> Self {
        Self {
            priority,
            base_priority: priority,
            criticality,
            escalation: 0,
            escalated_at: None,
            shelf: None,
            suppressed: false,
            window: None,
            waiting_since: None,
            flood: None,
        }
    }
}

/// The subject of `spool` rules.
pub const SPOOL_SUBJECT: &str = "spool";
/// A clock-skew exception clears under this fraction of its limit.
const CLOCK_CLEAR_FRACTION: f64 = 0.8;
/// Points below its threshold a spool exception clears at.
const SPOOL_HYSTERESIS: f64 = 5.0;

/// What [`Engine::spool`] is told.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolState {
    /// Bytes on disk over the bound, 0 to 1.
    pub fill: f64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// The disk refused the last write.
    pub error: Option<String>,
    /// What happens at the bound, in words.
    pub at_bound_policy: &'static str,
}

/// An open exception handed back to the engine after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Resumed {
    pub key: Key,
    pub active: bool,
    pub acked_at: Option<Ms>,
    pub alarm: AlarmState,
}

/// What a shelf hides: one exception's rule and subject, or a rule on
/// every channel of a circuit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ShelfScope {
    Subject(String),
    Circuit(String),
}

/// An operator's shelf, until `until`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Shelf {
    pub id: i64,
    pub rule: String,
    pub scope: ShelfScope,
    pub until: Ms,
    pub by: String,
    pub reason: String,
}

impl Shelf {
    fn covers(&self, key: &Key) -> bool {
        key.rule == self.rule
            && match &self.scope {
                ShelfScope::Subject(subject) => *subject == key.subject,
                ShelfScope::Circuit(circuit) => circuit_of(&key.subject) == Some(circuit.as_str()),
            }
    }
}

/// A maintenance window: exceptions opened on its circuits or its
/// gateway from `starts` to `ends` are suppressed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub id: i64,
    /// Circuit names or patterns.
    pub circuits: Vec<String>,
    pub gateway: Option<String>,
    pub starts: Ms,
    pub ends: Ms,
}

impl Window {
    fn covers(&self, subject: &str, gateway: Option<&str>, at: Ms) -> bool {
        if !(self.starts <= at && at < self.ends) {
            return false;
        }
        let on_gateway = self.gateway.is_some() && self.gateway.as_deref() == gateway;
        let on_circuit = circuit_of(subject)
            .is_some_and(|c| self.circuits.iter().any(|p| pattern_matches(p, c)));
        on_gateway || on_circuit
    }
}

/// The circuit of a channel name; a gateway id has none.
fn circuit_of(subject: &str) -> Option<&str> {
    subject.split_once('/').map(|(circuit, _)| circuit)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckError {
    NotOpen,
    AlreadyAcknowledged,
}

/// Why a shelf could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShelveError {
    /// No rule with that id.
    UnknownRule,
    /// The time is not in the future.
    Expired,
}

/// What one rule needs, checked and converted to milliseconds.
#[derive(Debug, Clone)]
struct CompiledRule {
    rule: Rule,
    realarm_ms: Option<Ms>,
}

impl CompiledRule {
    fn matches(&self, subject: &str) -> bool {
        pattern_matches(&self.rule.target, subject)
            && !self
                .rule
                .exclude
                .iter()
                .any(|p| pattern_matches(p, subject))
    }
}

#[derive(Debug, Clone)]
struct Open {
    active: bool,
    acked_at: Option<Ms>,
    alarm: AlarmState,
}

/// Per channel and rule: what the rule remembers between readings.
#[derive(Debug, Clone)]
enum Watch {
    Delayed {
        /// The condition as last judged (with hysteresis).
        holds: bool,
        /// When the condition started to differ from the exception's state.
        pending_since: Option<Ms>,
        /// Rate of change: the readings within the window.
        window: VecDeque<(Ms, f64)>,
        last_value: Option<f64>,
        occupancy_epoch: u64,
    },
    Flick {
        /// The relay's current value and since when (reading time).
        state: Option<(f64, Ms)>,
        changes: VecDeque<Ms>,
        last_flick: Option<Ms>,
    },
    LongOccupation {
        occupied_since: Option<Ms>,
    },
    Stale {
        last_received: Option<Ms>,
        intervals: VecDeque<Ms>,
    },
}

#[derive(Debug)]
struct ChannelState {
    name: ChannelName,
    gateway: String,
    last_ts: Option<Ms>,
    watches: Vec<(usize, Watch)>,
}

#[derive(Debug, Default)]
struct GatewayState {
    online: Option<bool>,
    /// The last message of any kind, status included.
    last_heard: Option<Ms>,
    /// The last message with readings.
    last_readings: Option<Ms>,
    /// When it last came back online: its channels' silence counts from
    /// here, or a reconnecting gateway's channels would all look stale
    /// until each sent its first reading.
    back_at: Option<Ms>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Occupancy {
    occupied: bool,
    /// Bumped at every change, so watches notice a train came and went.
    epoch: u64,
}

/// Recent intervals kept per channel for the observed period.
const INTERVALS: usize = 16;
/// Intervals needed before an observed period is trusted.
const MIN_INTERVALS: usize = 3;

pub struct Engine {
    rules: Vec<CompiledRule>,
    policy: AlarmPolicy,
    /// By id; ended ones are removed.
    shelves: BTreeMap<i64, Shelf>,
    /// By id; removed once ended and nothing they suppress is open.
    windows: BTreeMap<i64, Window>,
    open: HashMap<Key, Open>,
    /// Ordered, so ticks visit channels in the same order every run.
    channels: BTreeMap<String, ChannelState>,
    gateways: HashMap<String, GatewayState>,
    circuits: HashMap<String, Occupancy>,
    /// The latest tick's time: the engine's own clock, where a reading's
    /// time is the gateway's.
    clock: Ms,
    /// Alarm floods: counts what is announced, groups it in a flood.
    floods: Floods,
    /// Raises grouped in a flood instead of announced, since last taken.
    grouped: u64,
}

fn ms(seconds: f64) -> Ms {
    (seconds * 1000.0).round() as Ms
}

fn positive(value: f64) -> bool {
    value.is_finite() && value > 0.0
}

/// Checks a rule set; the message says which rule and what to fix.
pub fn validate(rules: &[Rule]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for rule in rules {
        let id = &rule.id;
        let fail = |what: &str| Err(format!("exception rule {id:?}: {what}"));
        if id.is_empty() || !seen.insert(id.as_str()) {
            return Err(format!(
                "exception rule ids must be unique and non-empty: {id:?}"
            ));
        }
        if rule.target.is_empty() {
            return fail("target must not be empty (use \"*\" for every channel)");
        }
        if rule.realarm_after_s.is_some_and(|s| !positive(s)) {
            return fail("realarm_after_s must be positive");
        }
        let non_negative = |values: &[f64]| values.iter().all(|v| v.is_finite() && *v >= 0.0);
        match &rule.check {
            Check::Limit {
                low_set,
                low_clear,
                high_set,
                high_clear,
                on_delay_s,
                off_delay_s,
                ..
            } => {
                if low_set.is_none() && high_set.is_none() {
                    return fail("a limit needs low_set or high_set");
                }
                if low_clear.is_some() && low_set.is_none()
                    || high_clear.is_some() && high_set.is_none()
                {
                    return fail("a *_clear threshold needs its *_set threshold");
                }
                if let (Some(set), Some(clear)) = (low_set, low_clear)
                    && clear < set
                {
                    return fail("low_clear must be at or above low_set (hysteresis)");
                }
                if let (Some(set), Some(clear)) = (high_set, high_clear)
                    && clear > set
                {
                    return fail("high_clear must be at or below high_set (hysteresis)");
                }
                if !non_negative(&[*on_delay_s, *off_delay_s]) {
                    return fail("delays must be zero or positive");
                }
            }
            Check::RateOfChange {
                max_per_s,
                window_s,
                on_delay_s,
                off_delay_s,
                ..
            } => {
                if !(positive(*max_per_s) && positive(*window_s)) {
                    return fail("max_per_s and window_s must be positive");
                }
                if !non_negative(&[*on_delay_s, *off_delay_s]) {
                    return fail("delays must be zero or positive");
                }
            }
            Check::Flick {
                min_occupied_s,
                max_transitions,
                window_s,
            } => {
                if min_occupied_s.is_none() && max_transitions.is_none() {
                    return fail("a flick rule needs min_occupied_s or max_transitions");
                }
                if !positive(*window_s) {
                    return fail("window_s must be positive");
                }
            }
            Check::LongOccupation { max_occupied_s } => {
                if !positive(*max_occupied_s) {
                    return fail("max_occupied_s must be positive");
                }
            }
            Check::Stale { periods, period_s } => {
                if !(periods.is_finite() && *periods >= 1.0)
                    || period_s.is_some_and(|p| !positive(p))
                {
                    return fail("periods must be at least 1 and period_s positive");
                }
            }
            Check::GatewayOffline { silent_after_s } => {
                if silent_after_s.is_some_and(|s| !positive(s)) {
                    return fail("silent_after_s must be positive");
                }
            }
            Check::Spool { fill_percent } => {
                if !(positive(*fill_percent) && *fill_percent <= 100.0) {
                    return fail("fill_percent must be above 0 and at most 100");
                }
            }
            Check::PoorShunt { .. }
            | Check::UnstableOccupationCurrent { .. }
            | Check::DropPickDrift { .. }
            | Check::HealthLow { .. } => {
                if let Err(what) = occupation::validate(&rule.check) {
                    return fail(&what);
                }
            }
            Check::ClockSkew { max_offset_s } => {
                if !positive(*max_offset_s) {
                    return fail("max_offset_s must be positive");
                }
            }
            Check::Predicted { limit_rule } => {
                let names_a_limit = rules
                    .iter()
                    .any(|r| &r.id == limit_rule && matches!(r.check, Check::Limit { .. }));
                if !names_a_limit {
                    return fail("limit_rule must name a rule of kind \"limit\"");
                }
            }
        }
    }
    Ok(())
}

impl Engine {
    /// `realarm_after_s` is the default for rules that do not set their own;
    /// `None` turns re-alarm off for them.
    pub fn new(rules: Vec<Rule>, realarm_after_s: Option<f64>) -> Result<Self, String> {
        validate(&rules)?;
        let rules = rules
            .into_iter()
            .map(|rule| CompiledRule {
                realarm_ms: rule.realarm_after_s.or(realarm_after_s).map(ms),
                rule,
            })
            .collect();
        Ok(Self {
            rules,
            policy: AlarmPolicy::default(),
            shelves: BTreeMap::new(),
            windows: BTreeMap::new(),
            open: HashMap::new(),
            channels: BTreeMap::new(),
            gateways: HashMap::new(),
            circuits: HashMap::new(),
            clock: Ms::MIN,
            floods: Floods::new(None),
            grouped: 0,
        })
    }

    /// Detects alarm floods by `policy` (the default: off, every raise
    /// announced on its own).
    pub fn with_floods(mut self, policy: FloodPolicy) -> Self {
        self.floods = Floods::new(Some(policy));
        self
    }

    /// Takes back a flood that was on when the engine last ran.
    pub fn resume_flood(&mut self, flood: trackside_wire::FloodInfo, now: Ms) {
        self.floods.resume(flood, now);
    }

    /// The flood that is on, if any.
    pub fn flood(&self) -> Option<&trackside_wire::FloodInfo> {
        self.floods.current()
    }

    /// The floods that started, changed or ended since the last call, with
    /// what to announce of them.
    pub fn take_flood_changes(&mut self) -> Vec<FloodChange> {
        self.floods.take_changes()
    }

    /// How many raises a flood's summary covered instead of their own
    /// announcement, since the last call.
    pub fn take_grouped(&mut self) -> u64 {
        std::mem::take(&mut self.grouped)
    }

    /// Ranks and escalates with `policy` (the default: every circuit a
    /// running line, no escalation).
    pub fn with_policy(mut self, policy: AlarmPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// A new yard layout: exceptions raised from now on are ranked by it.
    pub fn set_criticalities(&mut self, criticalities: Criticalities) {
        self.policy.criticalities = criticalities;
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|r| &r.rule)
    }

    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().map(|r| &r.rule).find(|r| r.id == id)
    }

    /// How many exceptions are open.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    pub fn is_active(&self, key: &Key) -> bool {
        self.open.get(key).is_some_and(|o| o.active)
    }

    /// Takes back the shelves and maintenance windows that have not ended,
    /// before [`Engine::resume`].
    pub fn restore(&mut self, shelves: Vec<Shelf>, windows: Vec<Window>) {
        self.shelves = shelves.into_iter().map(|s| (s.id, s)).collect();
        self.windows = windows.into_iter().map(|w| (w.id, w)).collect();
    }

    /// Takes back the open exceptions after a restart, so nothing is raised
    /// twice. An active one whose rule is gone from the configuration is
    /// cleared, since nothing would ever clear it. Shelves that began or
    /// ended while the engine was down take effect now.
    pub fn resume(&mut self, open: Vec<Resumed>, now: Ms, out: &mut Vec<Transition>) {
        for resumed in open {
            let known = self.rules.iter().any(|r| r.rule.id == resumed.key.rule);
            self.open.insert(
                resumed.key.clone(),
                Open {
                    active: resumed.active,
                    acked_at: resumed.acked_at,
                    alarm: resumed.alarm,
                },
            );
            if !known && resumed.active {
                self.clear(
                    &resumed.key,
                    now,
                    None,
                    "rule removed from the configuration".into(),
                    None,
                    out,
                );
            }
        }
        self.reshelve(None, now, out);
    }

    /// The readings of one message from `gateway`, received at `received`.
    pub fn readings(
        &mut self,
        gateway: &str,
        readings: &[DecodedReading],
        received: Ms,
        out: &mut Vec<Transition>,
    ) {
        self.heard_from(gateway, received, out);
        // A relay reading goes first among readings of the same instant, so
        // the values taken as a train arrives are judged as occupied.
        let mut order: Vec<&DecodedReading> = readings.iter().collect();
        order.sort_by_key(|r| (r.ts, r.channel.parameter() != RELAY_STATE));
        for reading in order {
            self.reading(gateway, reading, received, out);
        }
    }

    /// A status message on the gateway's status topic.
    pub fn gateway_status(
        &mut self,
        gateway: &str,
        online: bool,
        at: Ms,
        out: &mut Vec<Transition>,
    ) {
        let state = self.gateways.entry(gateway.to_owned()).or_default();
        if online && state.online != Some(true) {
            state.back_at = Some(at);
        }
        state.online = Some(online);
        state.last_heard = Some(at);
        for index in 0..self.rules.len() {
            if !matches!(self.rules[index].rule.check, Check::GatewayOffline { .. })
                || !self.rules[index].matches(gateway)
            {
                continue;
            }
            let key = self.key(index, gateway);
            let active = self.is_active(&key);
            if !online && !active {
                let message =
                    "gateway offline: its MQTT session ended (last will or clean goodbye)";
                self.raise(&key, at, None, message.into(), Some(gateway), out);
            } else if online && active {
                self.clear(
                    &key,
                    at,
                    None,
                    "gateway online again".into(),
                    Some(gateway),
                    out,
                );
            }
        }
    }

    /// A new forecast of `channel`: (step start, predicted mean) pairs,
    /// computed at `now`. An empty forecast (the model is gone, the channel
    /// fell silent) clears what an earlier one raised.
    pub fn forecast(
        &mut self,
        channel: &str,
        points: &[(Ms, f64)],
        now: Ms,
        out: &mut Vec<Transition>,
    ) {
        let parameter = channel.rsplit('/').next().unwrap_or(channel);
        let gateway = self.gateway_of(channel);
        for index in 0..self.rules.len() {
            let Check::Predicted { limit_rule } = &self.rules[index].rule.check else {
                continue;
            };
            if !self.rules[index].matches(channel) {
                continue;
            }
            let Some(Check::Limit {
                low_set,
                low_clear,
                high_set,
                high_clear,
                ..
            }) = self.rule(limit_rule).map(|r| r.check.clone())
            else {
                continue;
            };
            let key = self.key(index, channel);
            let active = self.is_active(&key);
            let shown = |v: f64| format_value(parameter, v);
            let crossing = points.iter().find_map(|&(at, mean)| {
                if low_set.is_some_and(|l| mean <= l) {
                    Some((at, mean, "low", low_set.unwrap_or_default()))
                } else if high_set.is_some_and(|h| mean >= h) {
                    Some((at, mean, "high", high_set.unwrap_or_default()))
                } else {
                    None
                }
            });
            if let Some((at, mean, side, limit)) = crossing {
                if !active {
                    let message = format!(
                        "{} forecast to reach its {side} limit {} at {} UTC (in {}): {} predicted",
                        label(parameter),
                        shown(limit),
                        chrono::DateTime::from_timestamp_millis(at)
                            .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M").to_string()),
                        duration_words((at - now).max(0)),
                        shown(mean),
                    );
                    self.raise(&key, now, Some(mean), message, gateway.as_deref(), out);
                }
                continue;
            }
            if !active {
                continue;
            }
            let low = low_clear.or(low_set);
            let high = high_clear.or(high_set);
            let recovered = points
                .iter()
                .all(|&(_, mean)| low.is_none_or(|l| mean > l) && high.is_none_or(|h| mean < h));
            if points.is_empty() {
                let message = "no forecast for this channel any more".to_owned();
                self.clear(&key, now, None, message, gateway.as_deref(), out);
            } else if recovered {
                let last = points.last().map(|p| p.1);
                let message = format!(
                    "forecast back within limits over the next {}",
                    duration_words(points.last().map_or(0, |p| p.0 - now).max(0))
                );
                self.clear(&key, now, last, message, gateway.as_deref(), out);
            }
        }
    }

    /// The server's spool as of `now`: how full it is against its bound,
    /// and the disk's refusal if the last write failed.
    pub fn spool(&mut self, spool: &SpoolState, now: Ms, out: &mut Vec<Transition>) {
        let percent = spool.fill * 100.0;
        for index in 0..self.rules.len() {
            let Check::Spool { fill_percent } = self.rules[index].rule.check else {
                continue;
            };
            if !self.rules[index].matches(SPOOL_SUBJECT) {
                continue;
            }
            let key = self.key(index, SPOOL_SUBJECT);
            let active = self.is_active(&key);
            let value = Some((percent * 10.0).round() / 10.0);
            if let Some(error) = &spool.error {
                if !active {
                    let message = format!(
                        "the server cannot write its spool ({error}): readings wait in memory \
                         only; free disk space under the data directory"
                    );
                    self.raise(&key, now, value, message, None, out);
                }
            } else if percent >= fill_percent {
                if !active {
                    let message = format!(
                        "server spool {percent:.0} % full ({} of {}): readings are waiting for \
                         the database; at 100 % {}",
                        bytes_words(spool.bytes),
                        bytes_words(spool.max_bytes),
                        spool.at_bound_policy
                    );
                    self.raise(&key, now, value, message, None, out);
                }
            } else if active && percent < fill_percent - SPOOL_HYSTERESIS {
                let message = format!("server spool down to {percent:.0} % and writable");
                self.clear(&key, now, value, message, None, out);
            }
        }
    }

    /// A gateway's estimated clock offset (its time minus the server's),
    /// as of `at`.
    pub fn clock(&mut self, gateway: &str, offset_ms: Ms, at: Ms, out: &mut Vec<Transition>) {
        for index in 0..self.rules.len() {
            let Check::ClockSkew { max_offset_s } = self.rules[index].rule.check else {
                continue;
            };
            if !self.rules[index].matches(gateway) {
                continue;
            }
            let key = self.key(index, gateway);
            let active = self.is_active(&key);
            let off = offset_ms.unsigned_abs() as f64 / 1000.0;
            let way = if offset_ms > 0 { "ahead of" } else { "behind" };
            let value = Some(offset_ms as f64 / 1000.0);
            if !active && off > max_offset_s {
                let message = format!(
                    "gateway clock {off:.1} s {way} the server's (limit {max_offset_s:.0} s): \
                     check its time source (NTP); readings stamped more than the server's \
                     tolerance ahead are rejected"
                );
                self.raise(&key, at, value, message, Some(gateway), out);
            } else if active && off < max_offset_s * CLOCK_CLEAR_FRACTION {
                let message = format!("gateway clock back within {off:.1} s of the server's");
                self.clear(&key, at, value, message, Some(gateway), out);
            }
        }
    }

    /// Time passes: timers fire, shelves expire, maintenance windows end,
    /// unacknowledged exceptions escalate.
    pub fn tick(&mut self, now: Ms, out: &mut Vec<Transition>) {
        self.clock = self.clock.max(now);
        let expired: Vec<i64> = self
            .shelves
            .values()
            .filter(|s| s.until <= now)
            .map(|s| s.id)
            .collect();
        if !expired.is_empty() {
            for id in expired {
                self.shelves.remove(&id);
            }
            self.reshelve(None, now, out);
        }
        self.release(now, out);
        let names: Vec<String> = self.channels.keys().cloned().collect();
        for name in names {
            if let Some(mut channel) = self.channels.remove(&name) {
                let mut watches = std::mem::take(&mut channel.watches);
                for (index, watch) in &mut watches {
                    self.timers(&channel, *index, watch, now, out);
                }
                channel.watches = watches;
                self.channels.insert(name, channel);
            }
        }
        let mut gateways: Vec<(String, Option<Ms>)> = self
            .gateways
            .iter()
            .map(|(id, g)| (id.clone(), g.last_heard))
            .collect();
        gateways.sort();
        for (gateway, last_heard) in gateways {
            for index in 0..self.rules.len() {
                let Check::GatewayOffline {
                    silent_after_s: Some(silent),
                } = self.rules[index].rule.check
                else {
                    continue;
                };
                if !self.rules[index].matches(&gateway) {
                    continue;
                }
                let key = self.key(index, &gateway);
                if !self.is_active(&key) && last_heard.is_some_and(|t| now - t >= ms(silent)) {
                    let message = format!("gateway silent: nothing received for {:.0} s", silent);
                    self.raise(&key, now, None, message, Some(&gateway), out);
                }
            }
        }
        self.realarm(now, out);
        self.escalate(now, out);
        self.floods.tick(now);
    }

    /// An operator shelves what `shelf` covers until its `until`; returns
    /// how many open exceptions it hides now (it also hides what it covers
    /// that is raised later).
    pub fn shelve(
        &mut self,
        shelf: Shelf,
        at: Ms,
        out: &mut Vec<Transition>,
    ) -> Result<usize, ShelveError> {
        if self.rule(&shelf.rule).is_none() {
            return Err(ShelveError::UnknownRule);
        }
        if shelf.until <= at {
            return Err(ShelveError::Expired);
        }
        let id = shelf.id;
        self.shelves.insert(id, shelf);
        self.reshelve(None, at, out);
        Ok(self
            .open
            .values()
            .filter(|o| o.alarm.shelf.is_some_and(|(s, _)| s == id))
            .count())
    }

    /// Ends a shelf before its time; `false` when there is no such shelf
    /// (ended already).
    pub fn unshelve(&mut self, id: i64, by: &str, at: Ms, out: &mut Vec<Transition>) -> bool {
        if self.shelves.remove(&id).is_none() {
            return false;
        }
        self.reshelve(Some(by), at, out);
        true
    }

    /// The shelves that hold.
    pub fn shelves(&self) -> impl Iterator<Item = &Shelf> {
        self.shelves.values()
    }

    /// A maintenance window, planned or begun: it suppresses what is opened
    /// under it from its start.
    pub fn add_window(&mut self, window: Window) {
        self.windows.insert(window.id, window);
    }

    /// Ends a window now (or cancels one that has not begun): what it
    /// suppressed and is still active is raised normally. `false` when
    /// there is no such window (ended already).
    pub fn end_window(&mut self, id: i64, at: Ms, out: &mut Vec<Transition>) -> bool {
        let Some(window) = self.windows.get_mut(&id) else {
            return false;
        };
        window.ends = window.ends.min(at);
        if window.starts >= window.ends {
            self.windows.remove(&id);
        }
        self.release(at, out);
        true
    }

    /// The windows that have not ended.
    pub fn windows(&self) -> impl Iterator<Item = &Window> {
        self.windows.values()
    }

    /// The alarm state of an open exception.
    pub fn alarm(&self, key: &Key) -> Option<&AlarmState> {
        self.open.get(key).map(|o| &o.alarm)
    }

    /// The longest-holding shelf covering `key`.
    fn shelf_for(&self, key: &Key) -> Option<(i64, Ms)> {
        self.shelves
            .values()
            .filter(|s| s.covers(key))
            .max_by_key(|s| (s.until, std::cmp::Reverse(s.id)))
            .map(|s| (s.id, s.until))
    }

    /// Brings every open exception's shelving in line with the shelves,
    /// saying so for each that changes. `by`: who ended a shelf.
    fn reshelve(&mut self, by: Option<&str>, now: Ms, out: &mut Vec<Transition>) {
        let mut keys: Vec<Key> = self.open.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let want = self.shelf_for(&key);
            let shelf = want.and_then(|(id, _)| self.shelves.get(&id)).cloned();
            let gateway = self.gateway_of(&key.subject);
            let Some(open) = self.open.get_mut(&key) else {
                continue;
            };
            if want.map(|(id, _)| id) == open.alarm.shelf.map(|(id, _)| id) {
                continue;
            }
            open.alarm.shelf = want;
            let transition = match shelf {
                Some(shelf) => {
                    open.alarm.waiting_since = None;
                    Transition {
                        key: key.clone(),
                        kind: TransitionKind::Shelved,
                        at: now,
                        value: None,
                        message: format!(
                            "shelved by {} until {} UTC: {}",
                            shelf.by,
                            clock_time(shelf.until),
                            shelf.reason
                        ),
                        by: Some(shelf.by),
                        comment: Some(shelf.reason),
                        opens: false,
                        closes: false,
                        gateway,
                        alarm: open.alarm.clone(),
                        announce: None,
                    }
                }
                None => {
                    let waiting = open.acked_at.is_none() && !open.alarm.suppressed;
                    if waiting {
                        open.alarm.waiting_since = Some(now);
                    }
                    Transition {
                        key: key.clone(),
                        kind: TransitionKind::Unshelved,
                        at: now,
                        value: None,
                        message: match by {
                            Some(by) => format!("unshelved by {by}"),
                            None => "its shelf ran out: shown again".to_owned(),
                        },
                        by: by.map(str::to_owned),
                        comment: None,
                        opens: false,
                        closes: false,
                        gateway,
                        alarm: open.alarm.clone(),
                        // Back in front of whoever must act.
                        announce: (waiting && open.active).then_some(0),
                    }
                }
            };
            self.present(transition, out);
        }
    }

    /// Raises normally what a maintenance window suppressed once no window
    /// covers it any more, and forgets windows that have ended.
    fn release(&mut self, now: Ms, out: &mut Vec<Transition>) {
        let mut keys: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, o)| o.alarm.suppressed)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        for key in keys {
            let gateway = self.gateway_of(&key.subject);
            // Its own window (known by id: after a restart the engine may
            // not know a channel's gateway yet), or another that covers it.
            let own = self.open.get(&key).and_then(|o| o.alarm.window);
            let holds = |w: &Window| w.starts <= now && now < w.ends;
            if own.and_then(|id| self.windows.get(&id)).is_some_and(holds)
                || self
                    .windows
                    .values()
                    .any(|w| w.covers(&key.subject, gateway.as_deref(), now))
            {
                continue;
            }
            let Some(open) = self.open.get_mut(&key) else {
                continue;
            };
            open.alarm.suppressed = false;
            let waiting = open.acked_at.is_none() && open.alarm.shelf.is_none();
            if waiting {
                open.alarm.waiting_since = Some(now);
            }
            let released = Transition {
                key,
                kind: TransitionKind::Released,
                at: now,
                value: None,
                message: "still active when its maintenance window ended: raised normally".into(),
                by: None,
                comment: None,
                opens: false,
                closes: false,
                gateway,
                alarm: open.alarm.clone(),
                announce: (waiting && open.active).then_some(0),
            };
            self.present(released, out);
        }
        self.windows.retain(|_, w| w.ends > now);
    }

    /// Raises the priority of what waited too long for an acknowledgement,
    /// and tells the next level.
    fn escalate(&mut self, now: Ms, out: &mut Vec<Transition>) {
        let mut due: Vec<Key> = self
            .open
            .iter()
            .filter(|(key, open)| {
                open.alarm.waiting_since.is_some_and(|since| {
                    let rule_s = self.rule(&key.rule).and_then(|r| r.escalate_after_s);
                    self.policy
                        .escalation
                        .after_ms(open.alarm.priority, open.alarm.escalation, rule_s)
                        .is_some_and(|after| now - since >= after)
                })
            })
            .map(|(key, _)| key.clone())
            .collect();
        due.sort();
        for key in due {
            let gateway = self.gateway_of(&key.subject);
            let Some(open) = self.open.get_mut(&key) else {
                continue;
            };
            let waited = now - open.alarm.waiting_since.unwrap_or(now);
            let before = open.alarm.priority;
            open.alarm.escalation += 1;
            open.alarm.priority = before.raised();
            open.alarm.escalated_at = Some(now);
            open.alarm.waiting_since = Some(now);
            let level = open.alarm.escalation;
            out.push(Transition {
                key,
                kind: TransitionKind::Escalated,
                at: now,
                value: None,
                message: format!(
                    "not acknowledged for {}: escalated to level {level}, priority {}{}",
                    duration_words(waited),
                    open.alarm.priority.as_str(),
                    if before == open.alarm.priority {
                        String::new()
                    } else {
                        format!(" (was {})", before.as_str())
                    }
                ),
                by: None,
                comment: None,
                opens: false,
                closes: false,
                gateway,
                alarm: open.alarm.clone(),
                announce: Some(level),
            });
        }
    }

    /// Pushes a transition, first counting what it announces to the
    /// operator (level 0) towards a flood: in a flood it is marked with its
    /// group, and announced on its own only as `flood` decides.
    fn present(&mut self, mut t: Transition, out: &mut Vec<Transition>) {
        if t.announce != Some(0) {
            out.push(t);
            return;
        }
        let kind = self
            .rule(&t.key.rule)
            .map_or(ExceptionKind::Limit, |r| r.check.kind());
        let group = GroupOf::of(kind, &t.key.subject, t.gateway.as_deref());
        let at = t.at.max(self.clock);
        let counted = self.floods.count(&t.key, group, t.alarm.priority, at);
        if let Some(mark) = counted.mark {
            if let Some(open) = self.open.get_mut(&t.key) {
                open.alarm.flood = Some(mark.clone());
            }
            t.alarm.flood = Some(mark);
            if !counted.announce {
                t.announce = None;
                self.grouped += 1;
            }
        }
        out.push(t);
        // The raises that started the flood join it.
        for (key, mark) in counted.joined {
            let summary = self
                .floods
                .current()
                .and_then(|f| f.groups.iter().find(|g| g.key == mark.group))
                .map(|g| g.summary.clone())
                .unwrap_or_default();
            let gateway = self.gateway_of(&key.subject);
            let Some(open) = self.open.get_mut(&key) else {
                continue;
            };
            open.alarm.flood = Some(mark);
            out.push(Transition {
                key,
                kind: TransitionKind::Grouped,
                at,
                value: None,
                message: format!("an alarm flood began: grouped under \"{summary}\""),
                by: None,
                comment: None,
                opens: false,
                closes: false,
                gateway,
                alarm: open.alarm.clone(),
                announce: None,
            });
        }
    }

    /// The alarm state of an exception `key` opens at `at`.
    fn new_alarm(&self, key: &Key, gateway: Option<&str>, at: Ms) -> AlarmState {
        let lookup = &self.policy.criticalities;
        let criticality = match circuit_of(&key.subject) {
            Some(circuit) => lookup.criticality(circuit),
            // A gateway: its most critical circuit.
            None => self
                .channels
                .values()
                .filter(|c| c.gateway == key.subject)
                .map(|c| lookup.criticality(c.name.circuit()))
                .max()
                .unwrap_or(super::priority::DEFAULT_CRITICALITY),
        };
        let severity = self.rule(&key.rule).map_or(Severity::Major, |r| r.severity);
        let mut alarm = AlarmState::new(priority(severity, criticality), criticality);
        alarm.shelf = self.shelf_for(key);
        alarm.window = self
            .windows
            .values()
            .find(|w| w.covers(&key.subject, gateway, at))
            .map(|w| w.id);
        alarm.suppressed = alarm.window.is_some();
        if alarm.shelf.is_none() && !alarm.suppressed {
            // Nobody could acknowledge it before it was raised: a raise
            // judged late (a backlog, a backfill, a late occupation) starts
            // its escalation clock when the engine raised it, not at the
            // reading's time.
            alarm.waiting_since = Some(at.max(self.clock));
        }
        alarm
    }

    /// An operator acknowledges an open exception.
    pub fn acknowledge(
        &mut self,
        key: &Key,
        by: &str,
        comment: &str,
        at: Ms,
        out: &mut Vec<Transition>,
    ) -> Result<(), AckError> {
        let open = self.open.get_mut(key).ok_or(AckError::NotOpen)?;
        if open.acked_at.is_some() {
            return Err(AckError::AlreadyAcknowledged);
        }
        open.acked_at = Some(at);
        open.alarm.waiting_since = None;
        let alarm = open.alarm.clone();
        let closes = !open.active;
        if closes {
            self.open.remove(key);
        }
        out.push(Transition {
            key: key.clone(),
            kind: TransitionKind::Acknowledged,
            at,
            value: None,
            message: format!("acknowledged by {by}"),
            by: Some(by.to_owned()),
            comment: Some(comment.to_owned()),
            opens: false,
            closes,
            gateway: self.gateway_of(&key.subject),
            alarm,
            announce: None,
        });
        Ok(())
    }

    fn key(&self, index: usize, subject: &str) -> Key {
        Key {
            rule: self.rules[index].rule.id.clone(),
            subject: subject.to_owned(),
        }
    }

    fn gateway_of(&self, subject: &str) -> Option<String> {
        match self.channels.get(subject) {
            Some(channel) => Some(channel.gateway.clone()),
            None if self.gateways.contains_key(subject) => Some(subject.to_owned()),
            None => None,
        }
    }

    fn heard_from(&mut self, gateway: &str, at: Ms, out: &mut Vec<Transition>) {
        let state = self.gateways.entry(gateway.to_owned()).or_default();
        if state.online == Some(false) {
            state.back_at = Some(at);
        }
        state.last_heard = Some(at);
        state.last_readings = Some(at);
        state.online = Some(true);
        for index in 0..self.rules.len() {
            if matches!(self.rules[index].rule.check, Check::GatewayOffline { .. })
                && self.rules[index].matches(gateway)
            {
                let key = self.key(index, gateway);
                if self.is_active(&key) {
                    let message = "gateway sending again".to_owned();
                    self.clear(&key, at, None, message, Some(gateway), out);
                }
            }
        }
    }

    fn reading(
        &mut self,
        gateway: &str,
        reading: &DecodedReading,
        received: Ms,
        out: &mut Vec<Transition>,
    ) {
        let name = reading.channel.as_str();
        let mut channel = match self.channels.remove(name) {
            Some(channel) => channel,
            None => ChannelState {
                name: reading.channel.clone(),
                gateway: gateway.to_owned(),
                last_ts: None,
                watches: self
                    .rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        !matches!(
                            r.rule.check,
                            Check::GatewayOffline { .. }
                                | Check::Predicted { .. }
                                | Check::Spool { .. }
                                | Check::PoorShunt { .. }
                                | Check::UnstableOccupationCurrent { .. }
                                | Check::DropPickDrift { .. }
                                | Check::HealthLow { .. }
                                | Check::ClockSkew { .. }
                        )
                    })
                    .filter(|(_, r)| r.matches(name))
                    .map(|(index, r)| (index, new_watch(&r.rule.check)))
                    .collect(),
            },
        };
        let ts = reading.ts.timestamp_millis();
        let value = reading.value;
        // A backlog older than what was judged already only proves the
        // channel is alive; judging it would run the state machines backwards.
        let in_order = channel.last_ts.is_none_or(|last| ts > last);
        if in_order {
            // Never later than its receipt: a reading stamped ahead (a clock
            // that jumped) must not make the readings after it look old.
            channel.last_ts = Some(ts.min(received));
            if reading.channel.parameter() == RELAY_STATE && (value == 0.0 || value == 1.0) {
                let circuit = self
                    .circuits
                    .entry(reading.channel.circuit().to_owned())
                    .or_default();
                let occupied = value == 0.0;
                if circuit.occupied != occupied {
                    circuit.occupied = occupied;
                    circuit.epoch += 1;
                }
            }
        }
        let mut watches = std::mem::take(&mut channel.watches);
        for (index, watch) in &mut watches {
            if let Watch::Stale { .. } = watch {
                self.stale_reading(&channel, *index, watch, received, out);
            } else if in_order {
                self.judge(&channel, *index, watch, ts, value, received, out);
            }
        }
        channel.watches = watches;
        self.channels.insert(name.to_owned(), channel);
    }

    fn occupancy(&self, channel: &ChannelState) -> Occupancy {
        self.circuits
            .get(channel.name.circuit())
            .copied()
            .unwrap_or_default()
    }

    /// A reading in order, against one value rule.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        channel: &ChannelState,
        index: usize,
        watch: &mut Watch,
        ts: Ms,
        value: f64,
        now: Ms,
        out: &mut Vec<Transition>,
    ) {
        let key = self.key(index, channel.name.as_str());
        let active = self.is_active(&key);
        let check = self.rules[index].rule.check.clone();
        let parameter = channel.name.parameter();
        match (&check, watch) {
            (
                Check::Limit {
                    only_when_clear, ..
                }
                | Check::RateOfChange {
                    only_when_clear, ..
                },
                Watch::Delayed {
                    holds,
                    pending_since,
                    window,
                    last_value,
                    occupancy_epoch,
                },
            ) => {
                let occupancy = self.occupancy(channel);
                if *only_when_clear {
                    if *occupancy_epoch != occupancy.epoch {
                        // A train came or went: the values across it are no
                        // rate. A pending limit stays pending: a low value on
                        // both sides of a train is one persistent condition,
                        // and in a busy yard trains would otherwise reset
                        // every on-delay.
                        *occupancy_epoch = occupancy.epoch;
                        window.clear();
                    }
                    if occupancy.occupied {
                        return;
                    }
                }
                *last_value = Some(value);
                let (condition, message) = match &check {
                    Check::Limit {
                        low_set,
                        low_clear,
                        high_set,
                        high_clear,
                        ..
                    } => limit_condition(
                        parameter,
                        value,
                        active,
                        *low_set,
                        *low_clear,
                        *high_set,
                        *high_clear,
                    ),
                    Check::RateOfChange {
                        max_per_s,
                        window_s,
                        ..
                    } => {
                        window.push_back((ts, value));
                        while window.front().is_some_and(|(t, _)| ts - t > ms(*window_s)) {
                            window.pop_front();
                        }
                        rate_condition(parameter, window, *max_per_s, ms(*window_s))
                    }
                    _ => (false, String::new()),
                };
                *holds = condition;
                self.settle(
                    &key,
                    &check,
                    active,
                    *holds,
                    pending_since,
                    now,
                    Some(value),
                    message,
                    channel,
                    out,
                );
            }
            (
                Check::Flick {
                    min_occupied_s,
                    max_transitions,
                    window_s,
                },
                Watch::Flick {
                    state,
                    changes,
                    last_flick,
                },
            ) => {
                if value != 0.0 && value != 1.0 {
                    return;
                }
                let window_ms = ms(*window_s);
                match *state {
                    Some((held, since)) if held != value => {
                        changes.push_back(ts);
                        while changes.front().is_some_and(|t| ts - t > window_ms) {
                            changes.pop_front();
                        }
                        let mut why = None;
                        if value == 1.0 && min_occupied_s.is_some_and(|m| ts - since < ms(m)) {
                            why = Some(format!(
                                "flick: occupied for {:.1} s only",
                                (ts - since) as f64 / 1000.0
                            ));
                        }
                        if max_transitions.is_some_and(|n| changes.len() > n as usize) {
                            why = Some(format!(
                                "bobbing: {} relay changes within {:.0} s",
                                changes.len(),
                                window_s
                            ));
                        }
                        *state = Some((value, ts));
                        if let Some(message) = why {
                            *last_flick = Some(now);
                            if !active {
                                self.raise(
                                    &key,
                                    now,
                                    Some(value),
                                    message,
                                    Some(&channel.gateway),
                                    out,
                                );
                            }
                        }
                    }
                    Some(_) => {}
                    None => *state = Some((value, ts)),
                }
            }
            (
                Check::LongOccupation { max_occupied_s },
                Watch::LongOccupation { occupied_since },
            ) => {
                if value == 0.0 {
                    occupied_since.get_or_insert(now);
                    self.long_occupation(&key, channel, *max_occupied_s, *occupied_since, now, out);
                } else if value == 1.0 {
                    *occupied_since = None;
                    if active {
                        self.clear(
                            &key,
                            now,
                            Some(value),
                            "circuit clear again".into(),
                            Some(&channel.gateway),
                            out,
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// Moves a delayed (limit or rate) condition towards the exception's
    /// state once it has held for its delay.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &mut self,
        key: &Key,
        check: &Check,
        active: bool,
        holds: bool,
        pending_since: &mut Option<Ms>,
        now: Ms,
        value: Option<f64>,
        message: String,
        channel: &ChannelState,
        out: &mut Vec<Transition>,
    ) {
        let (on_delay, off_delay) = match check {
            Check::Limit {
                on_delay_s,
                off_delay_s,
                ..
            }
            | Check::RateOfChange {
                on_delay_s,
                off_delay_s,
                ..
            } => (ms(*on_delay_s), ms(*off_delay_s)),
            _ => (0, 0),
        };
        if holds == active {
            *pending_since = None;
            return;
        }
        let since = *pending_since.get_or_insert(now);
        let delay = if holds { on_delay } else { off_delay };
        if now - since < delay {
            return;
        }
        *pending_since = None;
        if holds {
            self.raise(key, now, value, message, Some(&channel.gateway), out);
        } else {
            self.clear(key, now, value, message, Some(&channel.gateway), out);
        }
    }

    fn long_occupation(
        &mut self,
        key: &Key,
        channel: &ChannelState,
        max_occupied_s: f64,
        occupied_since: Option<Ms>,
        now: Ms,
        out: &mut Vec<Transition>,
    ) {
        if let Some(since) = occupied_since
            && now - since >= ms(max_occupied_s)
            && !self.is_active(key)
        {
            let message = format!(
                "occupied for {} (limit {})",
                duration_words(now - since),
                duration_words(ms(max_occupied_s))
            );
            self.raise(key, now, Some(0.0), message, Some(&channel.gateway), out);
        }
    }

    fn stale_reading(
        &mut self,
        channel: &ChannelState,
        index: usize,
        watch: &mut Watch,
        received: Ms,
        out: &mut Vec<Transition>,
    ) {
        let Watch::Stale {
            last_received,
            intervals,
        } = watch
        else {
            return;
        };
        let Check::Stale { periods, period_s } = self.rules[index].rule.check else {
            return;
        };
        if let Some(last) = *last_received {
            let interval = received - last;
            let limit = expected_period(period_s, intervals).map(|p| (p as f64 * periods) as Ms);
            // A gap that was itself an outage must not teach the channel a
            // slow period.
            if interval > 0 && limit.is_none_or(|l| interval <= l) {
                intervals.push_back(interval);
                if intervals.len() > INTERVALS {
                    intervals.pop_front();
                }
            }
        }
        *last_received = Some(received);
        let key = self.key(index, channel.name.as_str());
        if self.is_active(&key) {
            self.clear(
                &key,
                received,
                None,
                "readings arriving again".into(),
                Some(&channel.gateway),
                out,
            );
        }
    }

    /// Time-driven checks of one watch.
    fn timers(
        &mut self,
        channel: &ChannelState,
        index: usize,
        watch: &mut Watch,
        now: Ms,
        out: &mut Vec<Transition>,
    ) {
        let key = self.key(index, channel.name.as_str());
        let active = self.is_active(&key);
        let check = self.rules[index].rule.check.clone();
        match (&check, watch) {
            (
                Check::Limit {
                    only_when_clear, ..
                }
                | Check::RateOfChange {
                    only_when_clear, ..
                },
                Watch::Delayed {
                    holds,
                    pending_since,
                    last_value,
                    occupancy_epoch,
                    ..
                },
            ) => {
                if pending_since.is_none() {
                    return;
                }
                let occupancy = self.occupancy(channel);
                // Under a train the value says nothing; the next clear
                // reading confirms or drops what is pending.
                if *only_when_clear && (occupancy.occupied || *occupancy_epoch != occupancy.epoch) {
                    return;
                }
                let message = if *holds {
                    format!(
                        "{} (held for the on-delay)",
                        describe(channel.name.parameter(), *last_value)
                    )
                } else {
                    format!(
                        "back within limits: {}",
                        describe(channel.name.parameter(), *last_value)
                    )
                };
                let holds = *holds;
                self.settle(
                    &key,
                    &check,
                    active,
                    holds,
                    pending_since,
                    now,
                    *last_value,
                    message,
                    channel,
                    out,
                );
            }
            (Check::Flick { window_s, .. }, Watch::Flick { last_flick, .. }) => {
                if !active {
                    return;
                }
                // Resumed after a restart: the quiet window starts now.
                let last = *last_flick.get_or_insert(now);
                if now - last >= ms(*window_s) {
                    let message = format!("no flick for {:.0} s", window_s);
                    self.clear(&key, now, None, message, Some(&channel.gateway), out);
                }
            }
            (
                Check::LongOccupation { max_occupied_s },
                Watch::LongOccupation { occupied_since },
            ) => {
                self.long_occupation(&key, channel, *max_occupied_s, *occupied_since, now, out);
            }
            (
                Check::Stale { periods, period_s },
                Watch::Stale {
                    last_received: Some(last),
                    intervals,
                },
            ) => {
                if active {
                    return;
                }
                let Some(period) = expected_period(*period_s, intervals) else {
                    return;
                };
                let gateway = self.gateways.get(&channel.gateway);
                let since = gateway
                    .and_then(|g| g.back_at)
                    .map_or(*last, |back| back.max(*last));
                let deadline = since + (period as f64 * periods) as Ms;
                // Stale means the sensor or its channel, not the gateway:
                // the gateway must be online and have sent other readings
                // after this channel's deadline.
                let gateway_alive = gateway.is_some_and(|g| {
                    g.online != Some(false) && g.last_readings.is_some_and(|t| t > deadline)
                });
                if now > deadline && gateway_alive {
                    let message = format!(
                        "no reading for {} (expected every {})",
                        duration_words(now - *last),
                        duration_words(period)
                    );
                    self.raise(&key, now, None, message, Some(&channel.gateway), out);
                }
            }
            _ => {}
        }
    }

    fn realarm(&mut self, now: Ms, out: &mut Vec<Transition>) {
        let mut due: Vec<Key> = self
            .open
            .iter()
            .filter(|(key, open)| {
                open.active
                    && open.acked_at.is_some_and(|acked| {
                        self.rules
                            .iter()
                            .find(|r| r.rule.id == key.rule)
                            .and_then(|r| r.realarm_ms)
                            .is_some_and(|after| now - acked >= after)
                    })
            })
            .map(|(key, _)| key.clone())
            .collect();
        due.sort();
        for key in due {
            let gateway = self.gateway_of(&key.subject);
            let Some(open) = self.open.get_mut(&key) else {
                continue;
            };
            open.acked_at = None;
            let shown = open.alarm.shelf.is_none() && !open.alarm.suppressed;
            if shown {
                open.alarm.waiting_since = Some(now);
            }
            let realarmed = Transition {
                gateway,
                key,
                kind: TransitionKind::Realarmed,
                at: now,
                value: None,
                message: "still active after acknowledgement: raised again".into(),
                by: None,
                comment: None,
                opens: false,
                closes: false,
                alarm: open.alarm.clone(),
                announce: shown.then_some(0),
            };
            self.present(realarmed, out);
        }
    }

    fn raise(
        &mut self,
        key: &Key,
        at: Ms,
        value: Option<f64>,
        message: String,
        gateway: Option<&str>,
        out: &mut Vec<Transition>,
    ) {
        let (opens, alarm, announce) = match self.open.get_mut(key) {
            Some(open) if open.active => return,
            // Cleared but not acknowledged, active again: the same
            // exception, already in front of whoever must act.
            Some(open) => {
                open.active = true;
                (false, open.alarm.clone(), None)
            }
            None => {
                let alarm = self.new_alarm(key, gateway, at);
                let announce = (alarm.shelf.is_none() && !alarm.suppressed).then_some(0);
                self.open.insert(
                    key.clone(),
                    Open {
                        active: true,
                        acked_at: None,
                        alarm: alarm.clone(),
                    },
                );
                (true, alarm, announce)
            }
        };
        let raised = Transition {
            key: key.clone(),
            kind: TransitionKind::Raised,
            at,
            value,
            message,
            by: None,
            comment: None,
            opens,
            closes: false,
            gateway: gateway.map(str::to_owned),
            alarm,
            announce,
        };
        self.present(raised, out);
    }

    fn clear(
        &mut self,
        key: &Key,
        at: Ms,
        value: Option<f64>,
        message: String,
        gateway: Option<&str>,
        out: &mut Vec<Transition>,
    ) {
        let Some(open) = self.open.get_mut(key) else {
            return;
        };
        if !open.active {
            return;
        }
        open.active = false;
        // Raised and cleared under a maintenance window: nobody was
        // alarmed, so nobody need acknowledge it.
        let closes = open.acked_at.is_some() || open.alarm.suppressed;
        let alarm = open.alarm.clone();
        if closes {
            self.open.remove(key);
        }
        out.push(Transition {
            key: key.clone(),
            kind: TransitionKind::Cleared,
            at,
            value,
            message,
            by: None,
            comment: None,
            opens: false,
            closes,
            gateway: gateway.map(str::to_owned),
            alarm,
            announce: None,
        });
    }

    /// The severity and kind of a rule, for storing a new exception.
    pub fn describe_rule(&self, id: &str) -> Option<(ExceptionKind, Severity)> {
        self.rule(id).map(|r| (r.check.kind(), r.severity))
    }
}

const RELAY_STATE: &str = "relay_state";

fn new_watch(check: &Check) -> Watch {
    match check {
        Check::Limit { .. } | Check::RateOfChange { .. } => Watch::Delayed {
            holds: false,
            pending_since: None,
            window: VecDeque::new(),
            last_value: None,
            occupancy_epoch: 0,
        },
        Check::Flick { .. } => Watch::Flick {
            state: None,
            changes: VecDeque::new(),
            last_flick: None,
        },
        Check::LongOccupation { .. } => Watch::LongOccupation {
            occupied_since: None,
        },
        Check::Stale { .. }
        | Check::GatewayOffline { .. }
        | Check::Predicted { .. }
        | Check::Spool { .. }
        | Check::PoorShunt { .. }
        | Check::UnstableOccupationCurrent { .. }
        | Check::DropPickDrift { .. }
        | Check::HealthLow { .. }
        | Check::ClockSkew { .. } => Watch::Stale {
            last_received: None,
            intervals: VecDeque::new(),
        },
    }
}

fn expected_period(configured_s: Option<f64>, intervals: &VecDeque<Ms>) -> Option<Ms> {
    match configured_s {
        Some(period) => Some(ms(period)),
        // The longest recent interval: a channel that reports on change and
        // refreshes every 10 s must not look stale between refreshes.
        None if intervals.len() >= MIN_INTERVALS => intervals.iter().copied().max(),
        None => None,
    }
}

/// Whether a value is outside its limits, with hysteresis: while the
/// exception is active, the clear thresholds decide.
#[allow(clippy::too_many_arguments)]
fn limit_condition(
    parameter: &str,
    value: f64,
    active: bool,
    low_set: Option<f64>,
    low_clear: Option<f64>,
    high_set: Option<f64>,
    high_clear: Option<f64>,
) -> (bool, String) {
    let (low, high) = if active {
        (low_clear.or(low_set), high_clear.or(high_set))
    } else {
        (low_set, high_set)
    };
    let shown = |v: f64| format_value(parameter, v);
    let below = low.filter(|l| if active { value < *l } else { value <= *l });
    let above = high.filter(|h| if active { value > *h } else { value >= *h });
    match (below, above) {
        (Some(l), _) => (
            true,
            format!(
                "{} low: {} (limit {})",
                label(parameter),
                shown(value),
                shown(l)
            ),
        ),
        (_, Some(h)) => (
            true,
            format!(
                "{} high: {} (limit {})",
                label(parameter),
                shown(value),
                shown(h)
            ),
        ),
        _ => (false, format!("back within limits: {}", shown(value))),
    }
}

fn rate_condition(
    parameter: &str,
    window: &VecDeque<(Ms, f64)>,
    max_per_s: f64,
    window_ms: Ms,
) -> (bool, String) {
    let (Some(&(t0, v0)), Some(&(t1, v1))) = (window.front(), window.back()) else {
        return (false, String::new());
    };
    // Until half a window is covered, two noisy neighbours would decide.
    if t1 - t0 < window_ms / 2 {
        return (false, String::new());
    }
    let rate = (v1 - v0) / ((t1 - t0) as f64 / 1000.0);
    let unit = parameter_info(parameter)
        .and_then(|(_, p)| p.unit)
        .unwrap_or("");
    let words = format!(
        "{} changing at {:+.3} {unit}/s (limit {:.3} {unit}/s)",
        label(parameter),
        rate,
        max_per_s
    );
    (rate.abs() > max_per_s, words)
}

fn label(parameter: &str) -> &str {
    parameter_info(parameter).map_or(parameter, |(_, p)| p.label)
}

fn format_value(parameter: &str, value: f64) -> String {
    match parameter_info(parameter) {
        Some((_, p)) => {
            let number = format!("{:.*}", p.decimals as usize, value);
            match p.unit {
                Some(unit) => format!("{number} {unit}"),
                None => number,
            }
        }
        None => format!("{value}"),
    }
}

fn describe(parameter: &str, value: Option<f64>) -> String {
    match value {
        Some(v) => format!("{} {}", label(parameter), format_value(parameter, v)),
        None => label(parameter).to_owned(),
    }
}

/// `HH:MM` of a time, UTC.
fn clock_time(ms: Ms) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(String::new, |t| t.format("%H:%M").to_string())
}

fn bytes_words(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mib = bytes as f64 / MIB;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

fn duration_words(ms: Ms) -> String {
    let s = ms as f64 / 1000.0;
    if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7_200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3_600.0)
    }
}

mod occupation;

#[cfg(test)]
mod alarm_tests;
#[cfg(test)]
mod flood_tests;
#[cfg(test)]
mod tests;
