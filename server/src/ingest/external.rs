//! `[mqtt.external]`: readings taken from another MQTT broker (Mosquitto,
//! EMQX, ...) as its subscriber, instead of from the embedded one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, Publish, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Pipeline;
use super::decode;
use super::pipeline::Part;
use crate::config::ExternalBroker;
use crate::store::Receipt;

/// Subscribes to an external broker and feeds what it delivers through the
/// pipeline until shutdown. The session is persistent, so the broker keeps
/// what arrives while Trackside is down, and acknowledgements are manual: a
/// publish is acknowledged only once its readings are safe, fsynced in the
/// spool or stored in PostgreSQL (its [`Receipt`]), so neither a crash nor
/// a power cut before that loses it: the broker delivers it again, and the
/// readings key skips what was stored twice.
///
/// A publish that neither the spool (full disk, or at its bound) nor the
/// store queue could take is not acknowledged. The broker delivers
/// unacknowledged publishes again only on a new connection, so the link
/// then reconnects every few seconds until they are taken.
pub async fn run_external_link(
    broker: ExternalBroker,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
) {
    let Ok((host, port)) = broker.host_port() else {
        // Checked when the configuration was validated.
        return;
    };
    let mut options = MqttOptions::new(broker.client_id.clone(), host, port);
    options
        .set_clean_session(!broker.persistent_session)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(30))
        // Whatever the broker accepted is taken: a message refused here
        // would drop the connection, come again on the next one, and stall
        // ingest for good. The broker's own limit bounds the size.
        .set_max_packet_size(MQTT_MAX_PACKET, 64 * 1024);
    if let Some(username) = &broker.username {
        options.set_credentials(username, broker.password.as_deref().unwrap_or_default());
    }
    // Scaled out: this session takes a share of the publishes to store, and
    // a second, plain one takes every publish to show and judge.
    let (filters, part) = match &broker.share_group {
        None => (decode::ingest_filters().to_vec(), Part::Whole),
        Some(group) => {
            tokio::spawn(run_live_link(
                broker.clone(),
                options.clone(),
                pipeline.clone(),
                shutdown.clone(),
            ));
            (
                decode::ingest_filters()
                    .iter()
                    .map(|filter| format!("$share/{group}/{filter}"))
                    .collect(),
                Part::Store,
            )
        }
    };
    let (client, mut events) = super::mqtt_client(options, EXTERNAL_REQUEST_QUEUE);
    let (receipts, pending) = mpsc::channel(ACK_QUEUE);
    let refused = Arc::new(AtomicBool::new(false));
    let acks = tokio::spawn(acknowledge_when_safe(
        client.clone(),
        pending,
        refused.clone(),
    ));
    // Rebirth requests go out on the session that follows the Sparkplug
    // sessions: this one alone, or scaled out the live one.
    let mut commands = match part {
        Part::Whole => pipeline.sparkplug.take_commands(),
        _ => None,
    };
    let connected = &pipeline.metrics.mqtt_external_connected;
    let mut retry = EXTERNAL_RETRY_FIRST;
    let mut redelivery = tokio::time::interval(REDELIVERY_CHECK);
    redelivery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            event = events.poll() => event,
            () = shutdown.cancelled() => break,
            Some(command) = next_command(&mut commands) => {
                publish_command(&client, command);
                continue;
            }
            _ = redelivery.tick() => {
                // A broker stops sending once its window of unacknowledged
                // publishes is full, so waiting for the next publish to try
                // the spool again could wait for ever: a new session on the
                // same id has the broker deliver them again, and they try
                // it. If the spool still refuses, the next tick tries again.
                if refused.swap(false, Relaxed) {
                    pipeline.metrics.mqtt_redeliveries.fetch_add(1, Relaxed);
                    tracing::info!(
                        broker = %broker.address,
                        "reconnecting so the broker delivers the publishes left unacknowledged"
                    );
                    events.clean();
                }
                continue;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(
                    broker = %broker.address,
                    session_present = ack.session_present,
                    "connected to the external MQTT broker"
                );
                connected.store(1, Relaxed);
                retry = EXTERNAL_RETRY_FIRST;
                // Subscribing again on a kept session changes nothing.
                for filter in &filters {
                    if let Err(err) = client.try_subscribe(filter, QoS::AtLeastOnce) {
                        tracing::error!("cannot subscribe to {filter}: {err}");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                // A broker sends a shared subscription's publishes under their
                // own topic, never the `$share/` filter: decode reads it as is.
                let receipt = pipeline
                    .handle_part(publish.topic.as_bytes(), &publish.payload, part)
                    .await;
                // Waits only when ACK_QUEUE publishes wait for their fsync,
                // far more than brokers send before acknowledgements.
                if receipts.send((publish, receipt)).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(err) => {
                connected.store(0, Relaxed);
                tracing::error!(
                    broker = %broker.address,
                    retry_in = ?retry,
                    "external MQTT broker unreachable: {err}"
                );
                tokio::select! {
                    () = tokio::time::sleep(retry) => {}
                    () = shutdown.cancelled() => break,
                }
                retry = (retry * 2).min(EXTERNAL_RETRY_MAX);
            }
        }
    }
    // Acknowledge what is safe by now, then leave; what is not acknowledged
    // by then is delivered again at the next start.
    drop(receipts);
    let _ = tokio::time::timeout(Duration::from_secs(2), acks).await;
    if client.try_disconnect().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(event) = events.poll().await {
                if matches!(event, Event::Outgoing(Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
    }
    connected.store(0, Relaxed);
}

/// The live half of a scaled-out ingest: a plain, clean QoS 0 subscription
/// under `{client_id}-live`, so every instance shows every reading and the
/// engine's holder judges every one. Nothing is stored from it; the broker
/// keeps nothing for it while the instance is down (the live view starts
/// from the latest values), and a consumer that falls behind loses QoS 0
/// publishes at the broker's bound (Mosquitto: `max_queued_messages`),
/// counted there, never here.
async fn run_live_link(
    broker: ExternalBroker,
    mut options: MqttOptions,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
) {
    options
        .set_client_id(format!("{}-live", broker.client_id))
        .set_clean_session(true)
        .set_manual_acks(false);
    let (client, mut events) = super::mqtt_client(options, EXTERNAL_REQUEST_QUEUE);
    let mut commands = pipeline.sparkplug.take_commands();
    let mut retry = EXTERNAL_RETRY_FIRST;
    loop {
        let event = tokio::select! {
            event = events.poll() => event,
            () = shutdown.cancelled() => break,
            Some(command) = next_command(&mut commands) => {
                publish_command(&client, command);
                continue;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                retry = EXTERNAL_RETRY_FIRST;
                for filter in decode::ingest_filters() {
                    if let Err(err) = client.try_subscribe(&filter, QoS::AtMostOnce) {
                        tracing::error!("cannot subscribe to {filter} for the live view: {err}");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                pipeline
                    .handle_part(publish.topic.as_bytes(), &publish.payload, Part::Live)
                    .await;
            }
            Ok(_) => {}
            Err(err) => {
                tracing::error!(
                    broker = %broker.address,
                    retry_in = ?retry,
                    "external MQTT broker unreachable for the live view: {err}"
                );
                tokio::select! {
                    () = tokio::time::sleep(retry) => {}
                    () = shutdown.cancelled() => break,
                }
                retry = (retry * 2).min(EXTERNAL_RETRY_MAX);
            }
        }
    }
    let _ = client.try_disconnect();
}

/// The next Sparkplug command, or never when this link sends none.
async fn next_command(
    commands: &mut Option<mpsc::Receiver<crate::ingest::sparkplug::Command>>,
) -> Option<crate::ingest::sparkplug::Command> {
    match commands {
        Some(commands) => commands.recv().await,
        None => std::future::pending().await,
    }
}

/// Publishes a rebirth request at QoS 0 (Sparkplug's commands are not
/// retained); the broker's ACL must let Trackside's user publish to
/// `spBv1.0/+/NCMD/+` (docs/gateways.md), or it is dropped there.
fn publish_command(client: &AsyncClient, command: crate::ingest::sparkplug::Command) {
    if let Err(err) = client.try_publish(&command.topic, QoS::AtMostOnce, false, command.payload) {
        tracing::warn!(topic = %command.topic, "cannot publish a Sparkplug B command: {err}");
    }
}

/// Acknowledges each publish, in the order they came, once its readings
/// are safe; marks `refused` when one never will be.
async fn acknowledge_when_safe(
    client: AsyncClient,
    mut pending: mpsc::Receiver<(Publish, Receipt)>,
    refused: Arc<AtomicBool>,
) {
    while let Some((publish, receipt)) = pending.recv().await {
        if !receipt.safe().await {
            refused.store(true, Relaxed);
            continue;
        }
        // Never wait for room in the request queue here: only the link's
        // polling empties it. A broker that allows many unacknowledged
        // messages can fill it with acknowledgements faster than the event
        // loop sends them, so the overflow waits on tasks of its own.
        if client.try_ack(&publish).is_err() {
            let client = client.clone();
            tokio::spawn(async move {
                if let Err(err) = client.ack(&publish).await {
                    tracing::warn!("cannot acknowledge a publish (it will come again): {err}");
                }
            });
        }
    }
}

/// The largest packet MQTT can encode (a four-byte remaining length).
const MQTT_MAX_PACKET: usize = 268_435_455 + 5;
const EXTERNAL_RETRY_FIRST: Duration = Duration::from_millis(500);
const EXTERNAL_RETRY_MAX: Duration = Duration::from_secs(30);
/// rumqttc's queue of outgoing requests (acknowledgements, subscriptions).
/// Only the event loop empties it; an acknowledgement that finds it full
/// waits on a task of its own.
const EXTERNAL_REQUEST_QUEUE: usize = 256;
/// Publishes waiting for their readings to be safe before they are
/// acknowledged. A broker sends only so many before it hears an
/// acknowledgement (Mosquitto: `max_inflight_messages`, 20 by default), so
/// this is rarely more than that.
const ACK_QUEUE: usize = 4_096;
/// How often a link that left publishes unacknowledged reconnects to have
/// them delivered again.
const REDELIVERY_CHECK: Duration = Duration::from_secs(5);
