//! The simulated yard as Sparkplug B edge nodes (`trackside simulate
//! --sparkplug`): one rumqttc client per gateway, the gateway id as edge
//! node id, an NBIRTH naming every channel `circuit/parameter` with an
//! alias, NDATA by alias with the sequence number, and NDEATH (with the
//! session's bdSeq) as the will. A node births again on every connection,
//! when a channel appears that its birth did not name, and when Trackside
//! asks (`NCMD` `Node Control/Rebirth`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::Context as _;
use prost::Message as _;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

use super::{GatewayModel, Yard, YardOptions};
use crate::ingest::sparkplug::proto::{
    BD_SEQ_METRIC, Metric, Payload, REBIRTH_METRIC, Value, datatype,
};

/// The Sparkplug group the demo yard's nodes publish in.
pub const DEFAULT_GROUP: &str = "trackside";

/// Runs the yard as Sparkplug B edge nodes until `shutdown`.
pub async fn run(
    options: YardOptions,
    group: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(options.gateways >= 1, "a yard needs at least one gateway");
    let yard = Arc::new(Yard::new(&options)?);
    let mut tasks = Vec::new();
    for model in yard.gateway_models(options.seed) {
        let node = Node {
            group: group.clone(),
            id: model.gateway.clone(),
            bd_seq: Arc::new(AtomicU64::new(0)),
            rebirth: Arc::new(AtomicBool::new(true)),
            paused: Arc::new(AtomicBool::new(false)),
        };
        let mut mqtt = MqttOptions::new(node.id.clone(), &options.host, options.port);
        if let Some(password) = &options.password {
            mqtt.set_credentials(node.id.clone(), password);
        }
        mqtt.set_keep_alive(Duration::from_secs(5));
        mqtt.set_max_packet_size(256 * 1024, 256 * 1024);
        mqtt.set_last_will(node.will(0));
        let (client, eventloop) = crate::ingest::mqtt_client(mqtt, 64);
        tasks.push(tokio::spawn(node.clone().drive(
            client.clone(),
            eventloop,
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(node.publish(
            client,
            model,
            yard.clone(),
            (options.rate_hz, options.start_at_s),
            shutdown.clone(),
        )));
    }
    for task in tasks {
        task.await
            .context("simulated Sparkplug node task panicked")??;
    }
    Ok(())
}

#[derive(Clone)]
struct Node {
    group: String,
    id: String,
    /// This connection's birth/death sequence number.
    bd_seq: Arc<AtomicU64>,
    /// Set when the next message must be an NBIRTH.
    rebirth: Arc<AtomicBool>,
    /// While the fault plan has the node off the air.
    paused: Arc<AtomicBool>,
}

impl Node {
    fn topic(&self, kind: &str) -> String {
        format!("spBv1.0/{}/{kind}/{}", self.group, self.id)
    }

    fn death(bd_seq: u64) -> Payload {
        Payload {
            timestamp: Some(now_ms()),
            metrics: vec![bd_seq_metric(bd_seq)],
            ..Payload::default()
        }
    }

    fn will(&self, bd_seq: u64) -> LastWill {
        LastWill::new(
            self.topic("NDEATH"),
            Self::death(bd_seq).encode_to_vec(),
            QoS::AtLeastOnce,
            false,
        )
    }

    /// Polls the connection: subscribes to its commands on every
    /// connection and births again then, and on a rebirth request.
    async fn drive(
        self,
        client: AsyncClient,
        mut eventloop: rumqttc::EventLoop,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut reported = false;
        let mut connected = false;
        loop {
            if self.paused.load(Relaxed) {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    () = shutdown.cancelled() => return Ok(()),
                }
            }
            let event = tokio::select! {
                event = eventloop.poll() => event,
                () = shutdown.cancelled() => return Ok(()),
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    reported = false;
                    connected = true;
                    let _ = client.try_subscribe(self.topic("NCMD"), QoS::AtLeastOnce);
                    self.rebirth.store(true, Relaxed);
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let asked = Payload::decode(publish.payload.as_ref()).is_ok_and(|p| {
                        p.metrics.iter().any(|m| {
                            m.name.as_deref() == Some(REBIRTH_METRIC)
                                && m.value == Some(Value::BooleanValue(true))
                        })
                    });
                    if asked {
                        tracing::info!(node = %self.id, "simulated node asked to rebirth");
                        self.rebirth.store(true, Relaxed);
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    if connected {
                        // The broker has published this session's death;
                        // the next connection is a new session.
                        connected = false;
                        let next = self.bd_seq.fetch_add(1, Relaxed) + 1;
                        eventloop.mqtt_options.set_last_will(self.will(next));
                    }
                    if !reported {
                        tracing::warn!(node = %self.id, "simulated node lost its broker, retrying: {err}");
                        reported = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn publish(
        self,
        client: AsyncClient,
        mut model: GatewayModel,
        yard: Arc<Yard>,
        (rate_hz, start_at_s): (f64, f64),
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate_hz));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let started = tokio::time::Instant::now();
        let mut aliases: HashMap<String, u64> = HashMap::new();
        let mut names: Vec<String> = Vec::new();
        let mut seq: u64 = 0;
        let mut last_ts = 0;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => {
                    // A clean goodbye: the will does not fire, so say it here.
                    self.paused.store(false, Relaxed);
                    let death = Self::death(self.bd_seq.load(Relaxed)).encode_to_vec();
                    let _ = client.publish(self.topic("NDEATH"), QoS::AtLeastOnce, false, death).await;
                    let _ = client.disconnect().await;
                    return Ok(());
                }
            }
            let now_s = start_at_s + started.elapsed().as_secs_f64();
            let Some(samples) = model.sample(&yard, now_s) else {
                if !self.paused.swap(true, Relaxed) {
                    tracing::info!(node = %self.id, "simulated fault: node drops off the network");
                }
                continue;
            };
            self.paused.store(false, Relaxed);
            let ts = now_ms().max(last_ts + 1);
            last_ts = ts;
            for (channel, _) in &samples {
                if !aliases.contains_key(channel) {
                    aliases.insert(channel.clone(), names.len() as u64 + 1);
                    names.push(channel.clone());
                    self.rebirth.store(true, Relaxed);
                }
            }
            let (topic, payload) = if self.rebirth.swap(false, Relaxed) {
                // Every channel known so far, with this sample's value or
                // null, under its alias.
                let values: HashMap<&str, f64> =
                    samples.iter().map(|(c, v)| (c.as_str(), *v)).collect();
                let mut metrics = vec![bd_seq_metric(self.bd_seq.load(Relaxed))];
                metrics.extend(names.iter().map(|name| {
                    let value = values.get(name.as_str()).copied();
                    Metric {
                        name: Some(name.clone()),
                        alias: aliases.get(name).copied(),
                        timestamp: Some(ts),
                        datatype: Some(datatype::DOUBLE),
                        is_null: value.is_none().then_some(true),
                        value: value.map(Value::DoubleValue),
                        ..Metric::default()
                    }
                }));
                metrics.push(Metric {
                    name: Some(REBIRTH_METRIC.into()),
                    datatype: Some(datatype::BOOLEAN),
                    value: Some(Value::BooleanValue(false)),
                    ..Metric::default()
                });
                seq = 0;
                (
                    self.topic("NBIRTH"),
                    Payload {
                        timestamp: Some(ts),
                        metrics,
                        seq: Some(0),
                        ..Payload::default()
                    },
                )
            } else {
                seq = (seq + 1) % 256;
                let metrics = samples
                    .iter()
                    .map(|(channel, value)| Metric {
                        alias: aliases.get(channel).copied(),
                        timestamp: Some(ts),
                        value: Some(Value::DoubleValue(*value)),
                        ..Metric::default()
                    })
                    .collect();
                (
                    self.topic("NDATA"),
                    Payload {
                        timestamp: Some(ts),
                        metrics,
                        seq: Some(seq),
                        ..Payload::default()
                    },
                )
            };
            if client
                .try_publish(topic, QoS::AtLeastOnce, false, payload.encode_to_vec())
                .is_err()
            {
                // The broker is unreachable: birth again once it is back,
                // as the sequence has a hole.
                self.rebirth.store(true, Relaxed);
            }
        }
    }
}

fn bd_seq_metric(bd_seq: u64) -> Metric {
    Metric {
        name: Some(BD_SEQ_METRIC.into()),
        datatype: Some(datatype::INT64),
        value: Some(Value::LongValue(bd_seq)),
        ..Metric::default()
    }
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis().max(0) as u64
}
