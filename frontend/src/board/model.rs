//! The board's picture of the yard: the latest reading of every channel,
//! grouped by circuit, in the order an operator scans them.
//!
//! Each channel's latest reading is its own signal, so a reading re-renders
//! one number on the screen. The lists of circuits and of a circuit's
//! channels are signals too but change only when a channel is first seen:
//! at a few thousand readings a second the common path must not touch them.

use std::cmp::Ordering;

use leptos::prelude::*;
use trackside_wire::{ChannelInfo, ChannelName, Latest, Reading, parameter_info};

/// The parameter whose value decides whether a circuit is occupied.
pub const RELAY_STATE: &str = "relay_state";

/// Decimal places for a parameter the wire crate's table does not know.
const UNKNOWN_DECIMALS: u8 = 2;

#[derive(Clone, Copy)]
pub struct Board {
    circuits: RwSignal<Vec<Circuit>>,
}

/// A circuit and its channels. Cloning shares the signals.
#[derive(Clone)]
pub struct Circuit {
    pub name: String,
    pub channels: ArcRwSignal<Vec<Channel>>,
}

/// One channel as the board shows it. Cloning shares the `latest` signal.
#[derive(Clone)]
pub struct Channel {
    /// `{circuit}/{parameter}`.
    pub name: String,
    pub parameter: String,
    pub label: String,
    pub unit: Option<String>,
    pub decimals: u8,
    pub discrete: bool,
    /// Where the server says this channel comes from; readings from the live
    /// feed do not say, so it stays `None` until the next snapshot.
    pub gateway: Option<String>,
    pub latest: ArcRwSignal<Option<Latest>>,
}

/// Whether a train (or a fault, which looks the same) is on the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Occupied,
    Clear,
    /// No relay reading, or one that is neither 0 nor 1.
    Unknown,
}

impl CircuitState {
    pub fn from_relay(value: Option<f64>) -> Self {
        match value {
            Some(0.0) => Self::Occupied,
            Some(1.0) => Self::Clear,
            _ => Self::Unknown,
        }
    }

    /// The value of the card's `data-state` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Occupied => "occupied",
            Self::Clear => "clear",
            Self::Unknown => "unknown",
        }
    }

    /// The card's badge for a relay value. A value that is neither 0 nor 1
    /// is a gateway fault rather than an absence of data, and says so.
    pub fn badge(relay: Option<f64>) -> &'static str {
        match (Self::from_relay(relay), relay) {
            (Self::Occupied, _) => "OCCUPIED",
            (Self::Clear, _) => "CLEAR",
            (Self::Unknown, None) => "NO DATA",
            (Self::Unknown, Some(_)) => "INVALID",
        }
    }
}

impl Default for Board {
    fn default() -> Self {
        Self::new()
    }
}

impl Board {
    pub fn new() -> Self {
        Self {
            circuits: RwSignal::new(Vec::new()),
        }
    }

    /// The circuits in natural order (tracked).
    pub fn circuits(&self) -> Vec<Circuit> {
        self.circuits.get()
    }

    /// One circuit by name (tracked: a circuit seen later appears).
    pub fn circuit(&self, name: &str) -> Option<Circuit> {
        self.circuits.with(|circuits| {
            circuits
                .binary_search_by(|c| natural_cmp(&c.name, name))
                .ok()
                .map(|i| circuits[i].clone())
        })
    }

    pub fn is_empty(&self) -> bool {
        self.circuits.with(Vec::is_empty)
    }

    /// (occupied, total) circuits (tracked, including every relay reading).
    pub fn occupancy(&self) -> (usize, usize) {
        self.circuits.with(|circuits| {
            let occupied = circuits
                .iter()
                .filter(|c| c.state() == CircuitState::Occupied)
                .count();
            (occupied, circuits.len())
        })
    }

    /// Merges `GET /api/channels`. Live readings may already be newer than
    /// the snapshot's, and the merge keeps whichever is newest.
    pub fn merge_snapshot(&self, channels: Vec<ChannelInfo>) {
        self.circuits.update(|circuits| {
            for info in channels {
                match ChannelName::from_parts(&info.circuit, &info.parameter) {
                    Ok(name) => {
                        let latest =
                            upsert(circuits, &name, info.unit.as_deref(), Some(&info.gateway));
                        if let Some(reading) = info.latest {
                            offer(&latest, reading);
                        }
                    }
                    Err(e) => leptos::logging::warn!("ignoring channel {:?}: {e}", info.channel),
                }
            }
        });
    }

    /// Merges a `readings` frame from the live feed; true when it named a
    /// channel the board did not know.
    pub fn merge_readings(&self, readings: &[Reading]) -> bool {
        let mut unseen = Vec::new();
        self.circuits.with_untracked(|circuits| {
            for reading in readings {
                let latest = Latest {
                    ts: reading.ts,
                    value: reading.value,
                };
                if !offer_to_known(circuits, &reading.channel, latest) {
                    unseen.push((reading.channel.as_str(), latest));
                }
            }
        });
        // Only a channel seen for the first time changes the board's shape.
        if unseen.is_empty() {
            return false;
        }
        self.circuits.update(|circuits| {
            for (name, latest) in unseen {
                match ChannelName::parse(name) {
                    Ok(name) => offer(&upsert(circuits, &name, None, None), latest),
                    Err(e) => leptos::logging::warn!("ignoring reading for {name:?}: {e}"),
                }
            }
        });
        true
    }
}

impl Circuit {
    /// The circuit's relay reading (tracked).
    pub fn relay(&self) -> Option<Latest> {
        self.channels.with(|channels| {
            channels
                .iter()
                .find(|c| c.parameter == RELAY_STATE)
                .and_then(|c| c.latest.get())
        })
    }

    pub fn state(&self) -> CircuitState {
        CircuitState::from_relay(self.relay().map(|l| l.value))
    }

    /// The gateways this circuit's channels come from, usually exactly one
    /// (tracked).
    pub fn gateways(&self) -> Vec<String> {
        self.channels.with(|channels| {
            let mut gateways: Vec<String> =
                channels.iter().filter_map(|c| c.gateway.clone()).collect();
            gateways.sort();
            gateways.dedup();
            gateways
        })
    }
}

impl Channel {
    fn new(name: &ChannelName, unit_from_server: Option<&str>) -> Self {
        let parameter = name.parameter();
        let known = parameter_info(parameter).map(|(_, p)| p);
        Self {
            name: name.as_str().to_owned(),
            parameter: parameter.to_owned(),
            label: known.map_or_else(|| humanize(parameter), |p| p.label.to_owned()),
            unit: unit_from_server
                .or(known.and_then(|p| p.unit))
                .map(str::to_owned),
            decimals: known.map_or(UNKNOWN_DECIMALS, |p| p.decimals),
            discrete: known.is_some_and(|p| p.discrete),
            gateway: None,
            latest: ArcRwSignal::new(None),
        }
    }
}

/// A label for a parameter the wire table does not know: `noise_floor`
/// becomes `Noise floor`.
fn humanize(parameter: &str) -> String {
    let spaced = parameter.replace(['_', '-'], " ");
    let mut chars = spaced.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// Sorts channels as the wire crate's parameter table does (state, feed end,
/// relay end, AF), then parameters it does not know alphabetically.
pub fn parameter_cmp(a: &str, b: &str) -> Ordering {
    let rank = |p: &str| parameter_info(p).map_or(usize::MAX, |(i, _)| i);
    rank(a).cmp(&rank(b)).then_with(|| a.cmp(b))
}

/// Orders names the way people count: `T2` before `T10`, `t3` beside `T3`.
/// Runs of digits compare by value, other text ASCII-case-insensitively,
/// and exact ties fall back to plain byte order so the order is total
/// (binary search depends on that).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let (m, rest_x) = split_digits(x);
                let (n, rest_y) = split_digits(y);
                let (m, n) = (trim_zeros(m), trim_zeros(n));
                let by_value = m.len().cmp(&n.len()).then_with(|| m.cmp(n));
                if by_value != Ordering::Equal {
                    return by_value;
                }
                (x, y) = (rest_x, rest_y);
            }
            (Some(p), Some(q)) => {
                let by_text = p.to_ascii_lowercase().cmp(&q.to_ascii_lowercase());
                if by_text != Ordering::Equal {
                    return by_text;
                }
                (x, y) = (&x[1..], &y[1..]);
            }
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(s.len());
    s.split_at(end)
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let start = digits
        .iter()
        .position(|&c| c != b'0')
        .unwrap_or(digits.len());
    &digits[start..]
}

/// A value as the board prints it: the parameter's decimals, and never
/// `-0.000` for a reading that rounds to zero.
pub fn format_value(value: f64, decimals: u8) -> String {
    if !value.is_finite() {
        return "—".to_owned();
    }
    let text = format!("{value:.*}", usize::from(decimals));
    match text.strip_prefix('-') {
        Some(magnitude) if magnitude.bytes().all(|c| c == b'0' || c == b'.') => {
            magnitude.to_owned()
        }
        _ => text,
    }
}

/// Whether `incoming` should replace `held`: it must not be older. An
/// equal timestamp replaces, so a gateway can correct a value it re-sends.
pub fn supersedes(held: Option<Latest>, incoming: Latest) -> bool {
    held.is_none_or(|held| incoming.ts >= held.ts && incoming != held)
}

/// Frames from the feed and a snapshot fetched around the same moment can
/// arrive in either order; the newest reading wins regardless.
fn offer(held: &ArcRwSignal<Option<Latest>>, incoming: Latest) {
    held.maybe_update(|held| {
        let take = supersedes(*held, incoming);
        if take {
            *held = Some(incoming);
        }
        take
    });
}

/// Offers the reading to a channel the board already has; `false` when it
/// has no such channel.
fn offer_to_known(circuits: &[Circuit], channel: &str, latest: Latest) -> bool {
    let Some((circuit, _)) = channel.split_once('/') else {
        return false;
    };
    let Ok(i) = circuits.binary_search_by(|c| natural_cmp(&c.name, circuit)) else {
        return false;
    };
    circuits[i].channels.with_untracked(|channels| {
        channels
            .iter()
            .find(|c| c.name == channel)
            .map(|c| offer(&c.latest, latest))
            .is_some()
    })
}

/// Finds or creates the channel, keeping both levels in order, and returns
/// its reading signal. A changed gateway is written through, since the
/// card header shows it.
fn upsert(
    circuits: &mut Vec<Circuit>,
    name: &ChannelName,
    unit: Option<&str>,
    gateway: Option<&str>,
) -> ArcRwSignal<Option<Latest>> {
    let i = circuits
        .binary_search_by(|c| natural_cmp(&c.name, name.circuit()))
        .unwrap_or_else(|i| {
            circuits.insert(
                i,
                Circuit {
                    name: name.circuit().to_owned(),
                    channels: ArcRwSignal::new(Vec::new()),
                },
            );
            i
        });
    let channels = &circuits[i].channels;
    let found = channels.with_untracked(|list| {
        list.iter().position(|c| c.name == name.as_str()).map(|j| {
            let moved = gateway.is_some() && list[j].gateway.as_deref() != gateway;
            (j, list[j].latest.clone(), moved)
        })
    });
    match found {
        Some((j, latest, moved)) => {
            if moved {
                channels.update(|list| list[j].gateway = gateway.map(str::to_owned));
            }
            latest
        }
        None => {
            let mut channel = Channel::new(name, unit);
            channel.gateway = gateway.map(str::to_owned);
            let latest = channel.latest.clone();
            channels.update(|list| {
                let at = list
                    .partition_point(|c| parameter_cmp(&c.parameter, &channel.parameter).is_lt());
                list.insert(at, channel);
            });
            latest
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(channel: &str, ts: i64, value: f64) -> Reading {
        Reading {
            channel: channel.into(),
            ts,
            value,
        }
    }

    fn info(channel: &str, gateway: &str, latest: Option<(i64, f64)>) -> ChannelInfo {
        let (circuit, parameter) = channel.split_once('/').unwrap();
        ChannelInfo {
            channel: channel.into(),
            circuit: circuit.into(),
            parameter: parameter.into(),
            unit: parameter_info(parameter)
                .and_then(|(_, p)| p.unit)
                .map(Into::into),
            gateway: gateway.into(),
            latest: latest.map(|(ts, value)| Latest { ts, value }),
            age_ms: None,
        }
    }

    /// The board as text: one line per circuit, `name: param=value@ts ...`.
    fn render(board: &Board) -> Vec<String> {
        board
            .circuits
            .get_untracked()
            .iter()
            .map(|c| {
                let channels = c.channels.get_untracked();
                let params: Vec<String> = channels
                    .iter()
                    .map(|ch| match ch.latest.get_untracked() {
                        Some(l) => format!("{}={}@{}", ch.parameter, l.value, l.ts),
                        None => format!("{}=-", ch.parameter),
                    })
                    .collect();
                format!("{}: {}", c.name, params.join(" "))
            })
            .collect()
    }

    #[test]
    fn circuits_sort_naturally() {
        let mut names = vec![
            "T10", "T2", "t3", "T1", "A10b", "A10a", "A9", "T02", "X", "10",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "10", "A9", "A10a", "A10b", "T1", "T02", "T2", "t3", "T10", "X"
            ]
        );
    }

    #[test]
    fn parameters_follow_the_wire_table_then_the_alphabet() {
        let mut params = vec![
            "rx_level",
            "humidity",
            "relay_voltage",
            "feed_voltage",
            "relay_state",
            "battery",
        ];
        params.sort_by(|a, b| parameter_cmp(a, b));
        assert_eq!(
            params,
            [
                "relay_state",
                "feed_voltage",
                "relay_voltage",
                "rx_level",
                "battery",
                "humidity"
            ]
        );
    }

    #[test]
    fn unknown_parameters_get_readable_labels() {
        for (parameter, label) in [
            ("noise_floor", "Noise floor"),
            ("humidity", "Humidity"),
            ("x-y", "X y"),
        ] {
            assert_eq!(humanize(parameter), label);
        }
    }

    #[test]
    fn values_use_the_parameter_decimals() {
        let cases = [
            (1.82, 3, "1.820"),
            (0.0, 0, "0"),
            (1.0, 0, "1"),
            (142.26, 1, "142.3"),
            (-0.0004, 3, "0.000"),
            (-0.2, 1, "-0.2"),
            (f64::NAN, 2, "—"),
        ];
        for (value, decimals, expected) in cases {
            assert_eq!(
                format_value(value, decimals),
                expected,
                "{value} with {decimals}"
            );
        }
    }

    #[test]
    fn relay_state_decides_occupancy() {
        let cases = [
            (Some(0.0), CircuitState::Occupied, "OCCUPIED"),
            (Some(1.0), CircuitState::Clear, "CLEAR"),
            (Some(0.5), CircuitState::Unknown, "INVALID"),
            (None, CircuitState::Unknown, "NO DATA"),
        ];
        for (value, expected, badge) in cases {
            assert_eq!(CircuitState::from_relay(value), expected, "{value:?}");
            assert_eq!(CircuitState::badge(value), badge, "{value:?}");
        }
    }

    #[test]
    fn an_older_reading_never_overwrites_a_newer_one() {
        let board = Board::new();
        board.merge_readings(&[reading("T1/relay_voltage", 2_000, 1.8)]);
        board.merge_readings(&[reading("T1/relay_voltage", 1_000, 0.1)]);
        assert_eq!(render(&board), ["T1: relay_voltage=1.8@2000"]);
        // A snapshot taken before the live frame is older too.
        board.merge_snapshot(vec![info("T1/relay_voltage", "gw", Some((1_500, 0.2)))]);
        assert_eq!(render(&board), ["T1: relay_voltage=1.8@2000"]);
        board.merge_readings(&[reading("T1/relay_voltage", 2_000, 1.7)]);
        assert_eq!(render(&board), ["T1: relay_voltage=1.7@2000"]);
    }

    #[test]
    fn readings_for_new_channels_extend_the_board_in_order() {
        let board = Board::new();
        board.merge_snapshot(vec![
            info("T10/relay_state", "gw-b", Some((1, 1.0))),
            info("T2/feed_voltage", "gw-a", None),
        ]);
        board.merge_readings(&[
            reading("T2/humidity", 5, 40.0),
            reading("T2/relay_state", 5, 0.0),
            reading("T9/relay_voltage", 5, 1.1),
            reading("not-a-channel", 5, 1.0),
        ]);
        assert_eq!(
            render(&board),
            [
                "T2: relay_state=0@5 feed_voltage=- humidity=40@5",
                "T9: relay_voltage=1.1@5",
                "T10: relay_state=1@1",
            ]
        );
        assert_eq!(board.occupancy(), (1, 3));
        let circuits = board.circuits.get_untracked();
        assert_eq!(circuits[0].gateways(), ["gw-a"]);
        assert!(circuits[1].gateways().is_empty());
        let humidity = &circuits[0].channels.get_untracked()[2];
        assert_eq!(
            (
                humidity.label.as_str(),
                humidity.unit.as_deref(),
                humidity.decimals
            ),
            ("Humidity", None, 2)
        );
        let feed = &circuits[0].channels.get_untracked()[1];
        assert_eq!(
            (feed.label.as_str(), feed.unit.as_deref(), feed.decimals),
            ("Feed voltage", Some("V"), 2)
        );
    }
}
