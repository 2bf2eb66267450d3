//! What the server knows about each channel right now: its metadata and its
//! latest reading. Loaded from PostgreSQL at start-up and kept current by the
//! ingest path, so `GET /api/channels` and a lagging WebSocket client's resync
//! are answered from memory, including readings not yet written.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use trackside_wire::{
    ChannelInfo, ChannelName, GatewayInfo, Latest, Reading, parameter_info, pattern_matches,
};

use crate::reading::{DecodedReading, GatewayStatus};

#[derive(Debug, Clone)]
struct ChannelState {
    name: ChannelName,
    gateway: String,
    latest: Option<(DateTime<Utc>, f64)>,
    /// What a later reading must reach to replace `latest`: its time, but
    /// never later than when it was received.
    order: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct StoredChannel {
    name: String,
    gateway: String,
    ts: Option<DateTime<Utc>>,
    value: Option<f64>,
}

#[derive(Debug, Clone, Default)]
struct GatewayState {
    online: Option<bool>,
    status_at: Option<DateTime<Utc>>,
    last_message_at: Option<DateTime<Utc>>,
    clock: ClockEstimate,
}

/// A gateway's clock against the server's: the largest (stated time −
/// receive time) of its messages over the last one to two minutes. The
/// freshest reading of a message is the one least delayed by the network
/// and the gateway's own queue, so the largest difference is the closest
/// to the clocks' offset, and a backlog sent after an outage (readings
/// minutes old) does not pull the estimate back while fresh ones arrive.
#[derive(Debug, Clone, Copy, Default)]
struct ClockEstimate {
    window_start: Option<DateTime<Utc>>,
    current: Option<i64>,
    previous: Option<i64>,
}

/// The window of [`ClockEstimate`].
const CLOCK_WINDOW: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

impl ClockEstimate {
    fn sample(&mut self, offset_ms: i64, at: DateTime<Utc>) {
        match self.window_start {
            Some(start) if at - start < CLOCK_WINDOW => {
                self.current = self.current.max(Some(offset_ms));
            }
            start => {
                self.previous = start
                    .filter(|start| at - *start < CLOCK_WINDOW * 2)
                    .and(self.current);
                self.current = Some(offset_ms);
                self.window_start = Some(at);
            }
        }
    }

    fn offset_ms(&self) -> Option<i64> {
        self.current.max(self.previous)
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    channels: RwLock<HashMap<String, ChannelState>>,
    gateways: RwLock<HashMap<String, GatewayState>>,
}

impl Registry {
    pub async fn load(pool: &PgPool) -> anyhow::Result<Self> {
        // One index probe per channel on the (channel_id, ts) key, not a scan.
        let rows: Vec<StoredChannel> = sqlx::query_as(
            "SELECT c.name, c.gateway_id AS gateway, r.ts, r.value
             FROM channels c
             LEFT JOIN LATERAL (
                 SELECT ts, value FROM readings
                 WHERE channel_id = c.id ORDER BY ts DESC LIMIT 1
             ) r ON true",
        )
        .fetch_all(pool)
        .await?;
        let mut channels = HashMap::with_capacity(rows.len());
        for StoredChannel {
            name,
            gateway,
            ts,
            value,
        } in rows
        {
            let Ok(parsed) = ChannelName::parse(&name) else {
                tracing::warn!(%name, "skipping a stored channel whose name is no longer valid");
                continue;
            };
            let latest = ts.zip(value);
            channels.insert(
                name,
                ChannelState {
                    name: parsed,
                    gateway,
                    latest,
                    order: latest.map(|(ts, _)| ts),
                },
            );
        }
        let gateways: Vec<(String,)> = sqlx::query_as("SELECT id FROM gateways")
            .fetch_all(pool)
            .await?;
        let gateways = gateways
            .into_iter()
            .map(|(id,)| (id, GatewayState::default()))
            .collect();
        Ok(Self {
            channels: RwLock::new(channels),
            gateways: RwLock::new(gateways),
        })
    }

    /// Takes in one decoded message's readings, received at `received`. A
    /// reading older than the one held does not replace it: a gateway's
    /// backlog must not roll the board back in time. The one held counts as
    /// no newer than its receipt, so a reading stamped ahead (a clock that
    /// jumped) holds the board only until the next one arrives.
    pub fn observe(&self, gateway: &str, readings: &[DecodedReading], received: DateTime<Utc>) {
        let mut channels = self.channels.write().unwrap_or_else(|e| e.into_inner());
        for reading in readings {
            let state = channels
                .entry(reading.channel.as_str().to_owned())
                .or_insert_with(|| ChannelState {
                    name: reading.channel.clone(),
                    gateway: gateway.to_owned(),
                    latest: None,
                    order: None,
                });
            if state.order.is_none_or(|order| reading.ts >= order) {
                state.latest = Some((reading.ts, reading.value));
                state.order = Some(reading.ts.min(received));
            }
        }
    }

    /// A channel given to another gateway.
    pub fn set_gateway(&self, channel: &str, gateway: &str) {
        let mut channels = self.channels.write().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = channels.get_mut(channel) {
            gateway.clone_into(&mut state.gateway);
        }
    }

    /// Notes that a gateway sent something, and its status if it said one.
    /// Returns true when the status changed.
    pub fn observe_gateway(
        &self,
        gateway: &str,
        at: DateTime<Utc>,
        status: Option<GatewayStatus>,
    ) -> bool {
        let mut gateways = self.gateways.write().unwrap_or_else(|e| e.into_inner());
        let state = match gateways.get_mut(gateway) {
            Some(state) => state,
            None => gateways.entry(gateway.to_owned()).or_default(),
        };
        state.last_message_at = Some(at);
        let Some(status) = status else {
            return false;
        };
        let online = status == GatewayStatus::Online;
        if state.online == Some(online) {
            return false;
        }
        state.online = Some(online);
        state.status_at = Some(at);
        true
    }

    /// A sample of a gateway's clock: its message stated a time `offset`
    /// ahead of `at`, when it arrived. Returns the estimate when its whole
    /// seconds changed, for the rules.
    pub fn observe_clock(
        &self,
        gateway: &str,
        offset: chrono::TimeDelta,
        at: DateTime<Utc>,
    ) -> Option<i64> {
        let mut gateways = self.gateways.write().unwrap_or_else(|e| e.into_inner());
        let state = match gateways.get_mut(gateway) {
            Some(state) => state,
            None => gateways.entry(gateway.to_owned()).or_default(),
        };
        let before = state.clock.offset_ms();
        state.clock.sample(offset.num_milliseconds(), at);
        let after = state.clock.offset_ms()?;
        (before.map(|ms| ms / 1000) != Some(after / 1000)).then_some(after)
    }

    /// Every gateway, sorted by id.
    pub fn gateways(&self) -> Vec<GatewayInfo> {
        let gateways = self.gateways.read().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<GatewayInfo> = gateways
            .iter()
            .map(|(id, state)| GatewayInfo {
                id: id.clone(),
                online: state.online,
                status_at: state.status_at.map(|ts| ts.timestamp_millis()),
                last_message_at: state.last_message_at.map(|ts| ts.timestamp_millis()),
                clock_offset_ms: state.clock.offset_ms(),
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// Every channel, sorted by name, with the age of its latest reading.
    pub fn list(&self, now: DateTime<Utc>) -> Vec<ChannelInfo> {
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<ChannelInfo> = channels
            .values()
            .map(|state| ChannelInfo {
                channel: state.name.to_string(),
                circuit: state.name.circuit().to_owned(),
                parameter: state.name.parameter().to_owned(),
                unit: parameter_info(state.name.parameter())
                    .and_then(|(_, p)| p.unit)
                    .map(str::to_owned),
                gateway: state.gateway.clone(),
                latest: state.latest.map(|(ts, value)| Latest {
                    ts: ts.timestamp_millis(),
                    value,
                }),
                age_ms: state
                    .latest
                    .map(|(ts, _)| (now - ts).num_milliseconds().max(0)),
            })
            .collect();
        list.sort_by(|a, b| a.channel.cmp(&b.channel));
        list
    }

    /// The latest reading of every channel some pattern matches.
    pub fn latest_matching(&self, patterns: Option<&[String]>) -> Vec<Reading> {
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        channels
            .iter()
            .filter(|(name, _)| {
                patterns.is_none_or(|ps| ps.iter().any(|p| pattern_matches(p, name)))
            })
            .filter_map(|(name, state)| {
                state.latest.map(|(ts, value)| Reading {
                    channel: name.clone(),
                    ts: ts.timestamp_millis(),
                    value,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(channel: &str, secs: i64, value: f64) -> DecodedReading {
        DecodedReading {
            channel: ChannelName::parse(channel).unwrap(),
            ts: DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap(),
            value,
        }
    }

    #[test]
    fn latest_never_moves_back_in_time() {
        let registry = Registry::default();
        let at = |secs: i64| DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
        registry.observe("gw1", &[reading("T1/relay_voltage", 10, 1.5)], at(10));
        registry.observe("gw1", &[reading("T1/relay_voltage", 5, 0.1)], at(11));
        let now = DateTime::from_timestamp(1_800_000_012, 0).unwrap();
        let list = registry.list(now);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].latest.map(|l| l.value), Some(1.5));
        assert_eq!(list[0].age_ms, Some(2_000));
        assert_eq!(list[0].unit.as_deref(), Some("V"));
        assert_eq!(list[0].gateway, "gw1");
    }

    #[test]
    fn a_reading_stamped_ahead_holds_the_board_only_until_the_next() {
        let registry = Registry::default();
        let at = |secs: i64| DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
        // Stamped an hour ahead, received at 10 s.
        registry.observe("gw1", &[reading("T1/feed_voltage", 3_610, 9.9)], at(10));
        registry.observe("gw1", &[reading("T1/feed_voltage", 11, 0.5)], at(11));
        let list = registry.list(at(11));
        assert_eq!(list[0].latest.map(|l| l.value), Some(0.5));
        // A backlog older than the last receipt still does not roll back.
        registry.observe("gw1", &[reading("T1/feed_voltage", 9, 7.0)], at(12));
        assert_eq!(registry.list(at(12))[0].latest.map(|l| l.value), Some(0.5));
    }

    #[test]
    fn clock_offset_is_the_freshest_sample_of_the_last_window() {
        let registry = Registry::default();
        let at = |secs: i64| DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
        let ms = chrono::TimeDelta::milliseconds;
        assert_eq!(registry.observe_clock("gw1", ms(2_300), at(0)), Some(2_300));
        // A backlog (minutes behind) does not pull it back; no change, no report.
        assert_eq!(registry.observe_clock("gw1", ms(-300_000), at(5)), None);
        assert_eq!(registry.gateways()[0].clock_offset_ms, Some(2_300));
        // The clock is fixed: the old estimate ages out within two windows.
        registry.observe_clock("gw1", ms(-40), at(61));
        assert_eq!(registry.gateways()[0].clock_offset_ms, Some(2_300));
        assert_eq!(registry.observe_clock("gw1", ms(-40), at(125)), Some(-40));
        assert_eq!(registry.gateways()[0].clock_offset_ms, Some(-40));
    }

    #[test]
    fn gateway_status_changes_are_reported_once() {
        let registry = Registry::default();
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert!(!registry.observe_gateway("gw1", at, None));
        assert!(registry.observe_gateway("gw1", at, Some(GatewayStatus::Online)));
        assert!(!registry.observe_gateway("gw1", at, Some(GatewayStatus::Online)));
        assert!(registry.observe_gateway("gw1", at, Some(GatewayStatus::Offline)));
        let list = registry.gateways();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].online, Some(false));
        assert_eq!(list[0].last_message_at, Some(at.timestamp_millis()));
    }

    #[test]
    fn latest_matching_filters_by_pattern() {
        let registry = Registry::default();
        registry.observe(
            "gw1",
            &[
                reading("T1/relay_state", 1, 1.0),
                reading("T2/relay_voltage", 1, 1.2),
            ],
            DateTime::from_timestamp(1_800_000_001, 0).unwrap(),
        );
        let only_state = registry.latest_matching(Some(&["*/relay_state".to_owned()]));
        assert_eq!(only_state.len(), 1);
        assert_eq!(only_state[0].channel, "T1/relay_state");
        assert_eq!(registry.latest_matching(None).len(), 2);
    }
}
