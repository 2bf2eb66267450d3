//! Which gateway may write which channel, and how many a gateway may
//! create: the one check every decoded reading passes before any consumer
//! sees it, whatever brought it (the embedded broker, an external one, and
//! Sparkplug B edge nodes later).
//!
//! Why here and in memory: a channel used to be keyed by its name alone,
//! so any authenticated gateway could feed (or, with a reading stamped
//! ahead, freeze) another gateway's circuits, and name thousands of new
//! channels, each a permanent row, registry entry and rule-engine watch.
//! The pipeline never waits on the database, so ownership is a map loaded
//! at start (the `channels` table's `gateway_id`, the gateway that
//! registered each channel), kept current by this process's claims and by
//! every instance's reassignments, which arrive as a PostgreSQL `NOTIFY`.
//!
//! Rules, in order: a channel pinned by configuration (`[[ingest.pins]]`)
//! belongs to its pinned gateway; a registered channel to its owner; a new
//! channel is claimed by the first gateway that sends it, if its parameter
//! is known (the table in `trackside_wire`, or `ingest.extra_parameters`)
//! and the gateway is under `ingest.max_channels_per_gateway`. Everything
//! else is a rejection: kept (within the rejection store's bounds) and
//! counted by reason.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use trackside_wire::{ChannelName, parameter_info, pattern_matches};

use crate::config::{IngestConfig, Pin};
use crate::live::registry::Registry;
use crate::reading::{DecodedReading, Rejection, RejectionKind};

/// The PostgreSQL notification channel of reassignments.
const NOTIFY_CHANNEL: &str = "trackside_channel_owner";

#[derive(Debug, Default)]
struct Owners {
    /// Registered (or claimed) channel name -> owning gateway.
    by_channel: HashMap<String, String>,
    /// Channels each gateway owns.
    counts: HashMap<String, usize>,
}

impl Owners {
    fn set(&mut self, channel: &str, gateway: &str) {
        if let Some(old) = self
            .by_channel
            .insert(channel.to_owned(), gateway.to_owned())
            && let Some(count) = self.counts.get_mut(&old)
        {
            *count = count.saturating_sub(1);
        }
        *self.counts.entry(gateway.to_owned()).or_default() += 1;
    }
}

pub struct Admission {
    owners: RwLock<Owners>,
    pins: Vec<Pin>,
    extra_parameters: HashSet<String>,
    max_channels_per_gateway: usize,
}

/// Why a reassignment was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ReassignError {
    /// Configuration pins the channel to this gateway.
    Pinned(String),
}

impl Admission {
    pub fn new(config: &IngestConfig) -> Self {
        Self {
            owners: RwLock::default(),
            pins: config.pins.clone(),
            extra_parameters: config.extra_parameters.iter().cloned().collect(),
            max_channels_per_gateway: config.max_channels_per_gateway,
        }
    }

    /// Loads the registered owners of every channel.
    pub async fn load(config: &IngestConfig, pool: &PgPool) -> sqlx::Result<Self> {
        let admission = Self::new(config);
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT name, gateway_id FROM channels")
            .fetch_all(pool)
            .await?;
        {
            let mut owners = admission.write();
            for (name, gateway) in rows {
                owners.set(&name, &gateway);
            }
        }
        Ok(admission)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Owners> {
        self.owners.write().unwrap_or_else(|e| e.into_inner())
    }

    fn pinned(&self, channel: &str) -> Option<&str> {
        self.pins
            .iter()
            .find(|pin| pin.channels.iter().any(|p| pattern_matches(p, channel)))
            .map(|pin| pin.gateway.as_str())
    }

    fn known_parameter(&self, channel: &ChannelName) -> bool {
        parameter_info(channel.parameter()).is_some()
            || self.extra_parameters.contains(channel.parameter())
    }

    /// The channel's owner: its pin, else the gateway that registered it.
    pub fn owner(&self, channel: &str) -> Option<String> {
        if let Some(gateway) = self.pinned(channel) {
            return Some(gateway.to_owned());
        }
        let owners = self.owners.read().unwrap_or_else(|e| e.into_inner());
        owners.by_channel.get(channel).cloned()
    }

    /// Channels `gateway` owns (registered or claimed).
    pub fn channels_of(&self, gateway: &str) -> usize {
        let owners = self.owners.read().unwrap_or_else(|e| e.into_inner());
        owners.counts.get(gateway).copied().unwrap_or(0)
    }

    /// Splits one message's readings into those `gateway` may write, in
    /// their order, and a rejection for each of the others. A new channel
    /// that passes is claimed for `gateway` at once, so the next message
    /// (of any gateway) sees it owned.
    pub fn admit(
        &self,
        gateway: &str,
        topic: &str,
        readings: Vec<DecodedReading>,
    ) -> (Vec<DecodedReading>, Vec<Rejection>) {
        // The common case, under the read lock only: every channel known
        // and this gateway's.
        {
            let owners = self.owners.read().unwrap_or_else(|e| e.into_inner());
            let all_own = readings.iter().all(|r| {
                let name = r.channel.as_str();
                match self.pinned(name) {
                    Some(pinned) => pinned == gateway && owners.by_channel.contains_key(name),
                    None => owners.by_channel.get(name).is_some_and(|g| g == gateway),
                }
            });
            if all_own {
                return (readings, Vec::new());
            }
        }
        let mut owners = self.write();
        let mut admitted = Vec::with_capacity(readings.len());
        let mut rejections = Vec::new();
        for reading in readings {
            let name = reading.channel.as_str();
            let owner = self
                .pinned(name)
                .or_else(|| owners.by_channel.get(name).map(String::as_str));
            let refusal = match owner {
                Some(owner) if owner == gateway => None,
                Some(owner) => Some((
                    RejectionKind::Acl,
                    format!(
                        "channel {name} belongs to gateway `{owner}`, not `{gateway}`: an admin \
                         can reassign it (trackside channel reassign {name} {gateway})"
                    ),
                )),
                None if !self.known_parameter(&reading.channel) => Some((
                    RejectionKind::Reading,
                    format!(
                        "parameter `{}` is not a known parameter: use one of the table in \
                         docs/gateways.md, or add it to ingest.extra_parameters",
                        reading.channel.parameter()
                    ),
                )),
                None if owners.counts.get(gateway).copied().unwrap_or(0)
                    >= self.max_channels_per_gateway =>
                {
                    Some((
                        RejectionKind::Bound,
                        format!(
                            "gateway `{gateway}` already has {} channels \
                             (ingest.max_channels_per_gateway): new channel {name} refused",
                            self.max_channels_per_gateway
                        ),
                    ))
                }
                None => None,
            };
            match refusal {
                None => {
                    if !owners.by_channel.contains_key(name) {
                        owners.set(name, gateway);
                    }
                    admitted.push(reading);
                }
                Some((kind, reason)) => rejections.push(Rejection {
                    topic: topic.to_owned(),
                    gateway: Some(gateway.to_owned()),
                    payload: serde_json::json!({
                        "channel": name,
                        "ts": reading.ts.timestamp_millis(),
                        "value": reading.value,
                    })
                    .to_string()
                    .into_bytes(),
                    reason,
                    kind,
                }),
            }
        }
        (admitted, rejections)
    }

    /// Applies a reassignment made here or on another instance.
    fn apply(&self, channel: &str, gateway: &str) {
        self.write().set(channel, gateway);
    }

    /// Listens for reassignments (from any instance, or the CLI) until
    /// `shutdown`, reconnecting after a failure and reloading the owners
    /// then, since notifications sent meanwhile are lost.
    pub async fn listen(
        self: std::sync::Arc<Self>,
        registry: std::sync::Arc<Registry>,
        pool: PgPool,
        shutdown: CancellationToken,
    ) {
        let mut first = true;
        loop {
            let run = async {
                let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
                listener.listen(NOTIFY_CHANNEL).await?;
                if !first {
                    let rows: Vec<(String, String)> =
                        sqlx::query_as("SELECT name, gateway_id FROM channels")
                            .fetch_all(&pool)
                            .await?;
                    for (name, gateway) in rows {
                        self.apply(&name, &gateway);
                        registry.set_gateway(&name, &gateway);
                    }
                }
                first = false;
                loop {
                    let notification = listener.recv().await?;
                    match notification.payload().split_once(' ') {
                        Some((channel, gateway)) => {
                            self.apply(channel, gateway);
                            registry.set_gateway(channel, gateway);
                        }
                        None => tracing::warn!(
                            payload = notification.payload(),
                            "ignoring an unreadable channel reassignment"
                        ),
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                result = run => if let Err(err) = result {
                    tracing::warn!("channel reassignments interrupted ({err}); reloading owners on reconnect");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            }
        }
    }

    /// Refuses what configuration pins elsewhere; the caller then calls
    /// [`reassign`] and [`Admission::apply_local`].
    pub fn check_reassign(&self, channel: &str, gateway: &str) -> Result<(), ReassignError> {
        match self.pinned(channel) {
            Some(pinned) if pinned != gateway => Err(ReassignError::Pinned(pinned.to_owned())),
            _ => Ok(()),
        }
    }

    /// This instance applies its own reassignment at once, not only when
    /// its notification comes back.
    pub fn apply_local(&self, channel: &str, gateway: &str) {
        self.apply(channel, gateway);
    }
}

/// Gives `channel` to `gateway` in PostgreSQL and tells every instance, in
/// one transaction. Returns the previous owner, `None` for a channel that
/// was never registered.
pub async fn reassign(pool: &PgPool, channel: &str, gateway: &str) -> sqlx::Result<Option<String>> {
    {
        let mut tx = pool.begin().await?;
        let old: Option<(String,)> =
            sqlx::query_as("SELECT gateway_id FROM channels WHERE name = $1 FOR UPDATE")
                .bind(channel)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((old,)) = old else {
            return Ok(None);
        };
        sqlx::query("INSERT INTO gateways (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
            .bind(gateway)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE channels SET gateway_id = $2 WHERE name = $1")
            .bind(channel)
            .bind(gateway)
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(format!("{channel} {gateway}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(old))
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn reading(channel: &str) -> DecodedReading {
        DecodedReading {
            channel: ChannelName::parse(channel).unwrap(),
            ts: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            value: 1.0,
        }
    }

    fn admission(max: usize, pins: Vec<Pin>) -> Admission {
        Admission::new(&IngestConfig {
            max_channels_per_gateway: max,
            extra_parameters: vec!["track_temp".into()],
            pins,
            ..IngestConfig::default()
        })
    }

    fn names(readings: &[DecodedReading]) -> Vec<&str> {
        readings.iter().map(|r| r.channel.as_str()).collect()
    }

    #[test]
    fn first_gateway_owns_a_channel_and_others_are_refused() {
        let admission = admission(10, Vec::new());
        let (ok, rejected) = admission.admit("gw1", "t", vec![reading("T1/relay_voltage")]);
        assert_eq!((names(&ok), rejected.len()), (vec!["T1/relay_voltage"], 0));
        let (ok, rejected) = admission.admit(
            "gw2",
            "t",
            vec![reading("T1/relay_voltage"), reading("T2/relay_voltage")],
        );
        assert_eq!(names(&ok), vec!["T2/relay_voltage"]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].kind, RejectionKind::Acl);
        assert!(rejected[0].reason.contains("belongs to gateway `gw1`"));
        assert_eq!(admission.owner("T1/relay_voltage").as_deref(), Some("gw1"));
        admission.apply_local("T1/relay_voltage", "gw2");
        let (ok, _) = admission.admit("gw2", "t", vec![reading("T1/relay_voltage")]);
        assert_eq!(ok.len(), 1);
        assert_eq!(
            (admission.channels_of("gw1"), admission.channels_of("gw2")),
            (0, 2)
        );
    }

    #[test]
    fn unknown_parameters_and_channels_past_the_bound_are_refused() {
        let admission = admission(2, Vec::new());
        let (ok, rejected) = admission.admit(
            "gw1",
            "t",
            vec![
                reading("T1/relay_voltage"),
                reading("T1/bogus"),
                reading("T1/track_temp"),
                reading("T2/relay_voltage"),
            ],
        );
        assert_eq!(names(&ok), vec!["T1/relay_voltage", "T1/track_temp"]);
        let kinds: Vec<_> = rejected.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, vec![RejectionKind::Reading, RejectionKind::Bound]);
        // Its existing channels still pass.
        let (ok, rejected) = admission.admit("gw1", "t", vec![reading("T1/relay_voltage")]);
        assert_eq!((ok.len(), rejected.len()), (1, 0));
    }

    #[test]
    fn a_pin_wins_and_cannot_be_reassigned_away() {
        let pins = vec![Pin {
            gateway: "gw-north".into(),
            channels: vec!["T9/*".into()],
        }];
        let admission = admission(10, pins);
        let (ok, rejected) = admission.admit("gw-south", "t", vec![reading("T9/relay_state")]);
        assert_eq!((ok.len(), rejected[0].kind), (0, RejectionKind::Acl));
        let (ok, _) = admission.admit("gw-north", "t", vec![reading("T9/relay_state")]);
        assert_eq!(ok.len(), 1);
        assert_eq!(
            admission.check_reassign("T9/relay_state", "gw-south"),
            Err(ReassignError::Pinned("gw-north".into()))
        );
    }
}
