//! `[mqtt.external]`: readings taken from another MQTT broker (Mosquitto,
//! EMQX, ...) as its subscriber, instead of from the embedded one.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio_util::sync::CancellationToken;

use super::Pipeline;
use super::decode;
use crate::config::ExternalBroker;

/// Subscribes to an external broker and feeds what it delivers through the
/// pipeline until shutdown. The session is persistent, so the broker keeps
/// what arrives while Trackside is down, and acknowledgements are manual: a
/// publish is acknowledged only once the pipeline has put it in the spool,
/// so a crash before that leaves it with the broker, which delivers it
/// again (the readings key skips what was stored twice).
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
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(30))
        // Whatever the broker accepted is taken: a message refused here
        // would drop the connection, come again on the next one, and stall
        // ingest for good. The broker's own limit bounds the size.
        .set_max_packet_size(MQTT_MAX_PACKET, 64 * 1024);
    if let Some(username) = &broker.username {
        options.set_credentials(username, broker.password.as_deref().unwrap_or_default());
    }
    let (client, mut events) = AsyncClient::new(options, EXTERNAL_REQUEST_QUEUE);
    let connected = &pipeline.metrics.mqtt_external_connected;
    let mut retry = EXTERNAL_RETRY_FIRST;
    loop {
        let event = tokio::select! {
            event = events.poll() => event,
            () = shutdown.cancelled() => break,
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
                for filter in decode::ingest_filters() {
                    if let Err(err) = client.try_subscribe(&filter, QoS::AtLeastOnce) {
                        tracing::error!("cannot subscribe to {filter}: {err}");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                pipeline
                    .handle(publish.topic.as_bytes(), &publish.payload)
                    .await;
                // Never wait for room in the request queue here: only this
                // loop's polling empties it. A broker that allows many
                // unacknowledged messages can fill it with acknowledgements
                // faster than the event loop sends them, so the overflow
                // waits on tasks of its own.
                if client.try_ack(&publish).is_err() {
                    let client = client.clone();
                    tokio::spawn(async move {
                        if let Err(err) = client.ack(&publish).await {
                            tracing::warn!(
                                "cannot acknowledge a publish (it will come again): {err}"
                            );
                        }
                    });
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
    // Send the acknowledgements still queued, then leave; what is not
    // acknowledged by then is delivered again at the next start.
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

/// The largest packet MQTT can encode (a four-byte remaining length).
const MQTT_MAX_PACKET: usize = 268_435_455 + 5;
const EXTERNAL_RETRY_FIRST: Duration = Duration::from_millis(500);
const EXTERNAL_RETRY_MAX: Duration = Duration::from_secs(30);
/// rumqttc's queue of outgoing requests (acknowledgements, subscriptions).
/// Only the event loop empties it; an acknowledgement that finds it full
/// waits on a task of its own.
const EXTERNAL_REQUEST_QUEUE: usize = 256;
