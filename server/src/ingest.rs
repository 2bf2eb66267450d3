//! The ingest path: every MQTT publish, whatever its source, goes through
//! [`Pipeline::handle`], which decodes it and hands the result to the three
//! independent consumers (live fan-out, store writer, rejection store).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use rumqttd::Notification;
use rumqttd::local::LinkRx;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::ExternalBroker;
use crate::decode::{self, DecodeContext, Rejection};
use crate::live::LiveHub;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::spool::Spool;
use crate::store::{ReadingBatch, Spooled};

pub struct Pipeline {
    pub registry: Arc<Registry>,
    pub live: LiveHub,
    pub metrics: Arc<Metrics>,
    pub spool: Arc<Spool>,
    pub store: mpsc::Sender<Spooled>,
    /// Room in memory for readings on their way to the store writer, and
    /// its size.
    pub store_room: Arc<Semaphore>,
    pub store_room_size: u32,
    pub rejections: mpsc::Sender<Rejection>,
    pub max_future: TimeDelta,
    pub exceptions: crate::exceptions::Feed,
}

impl Pipeline {
    pub async fn handle(&self, topic: &[u8], payload: &[u8]) {
        self.metrics.mqtt_messages.fetch_add(1, Relaxed);
        let cx = DecodeContext {
            received_at: Utc::now(),
            max_future: self.max_future,
        };
        let decoded = match std::str::from_utf8(topic) {
            Ok(topic) => decode::decode(topic, payload, &cx),
            Err(_) => decode::Decoded {
                rejections: vec![Rejection {
                    topic: String::from_utf8_lossy(topic).into_owned(),
                    gateway: None,
                    payload: payload.to_vec(),
                    reason: "topic is not UTF-8".into(),
                    kind: decode::RejectionKind::Topic,
                }],
                ..Default::default()
            },
        };

        if let (false, Some(status)) = (decoded.gateway.is_empty(), decoded.status) {
            self.exceptions
                .status(&decoded.gateway, status, cx.received_at);
        }
        if !decoded.gateway.is_empty()
            && self
                .registry
                .observe_gateway(&decoded.gateway, cx.received_at, decoded.status)
        {
            tracing::info!(gateway = %decoded.gateway, status = ?decoded.status, "gateway status changed");
        }

        let whole_payload_rejected = decoded.readings.is_empty() && !decoded.rejections.is_empty();
        for rejection in decoded.rejections {
            tracing::warn!(topic = %rejection.topic, reason = %rejection.reason, "rejected MQTT payload");
            self.metrics.rejected(rejection.kind);
            if whole_payload_rejected {
                self.metrics.rejected_payloads.fetch_add(1, Relaxed);
            } else {
                self.metrics.rejected_readings.fetch_add(1, Relaxed);
            }
            if self.rejections.try_send(rejection).is_err() {
                self.metrics.rejected_not_kept.fetch_add(1, Relaxed);
            }
        }
        if decoded.readings.is_empty() {
            return;
        }

        Metrics::add(&self.metrics.readings_received, decoded.readings.len());
        let batch = Arc::new(ReadingBatch {
            gateway: decoded.gateway,
            readings: decoded.readings,
        });
        self.registry.observe(&batch.gateway, &batch.readings);
        self.live.publish(&batch);
        self.exceptions.readings(&batch, cx.received_at);
        // Spool first, then queue, never wait: when the writer is behind,
        // the spool alone holds the message and the writer reads it back.
        self.metrics.store_queue_depth.fetch_add(1, Relaxed);
        let queued = self
            .spool
            .append(&batch, |start, end| self.queue(Some((start, end)), &batch));
        match queued {
            Ok(true) => {}
            Ok(false) => {
                self.metrics.store_queue_depth.fetch_sub(1, Relaxed);
                self.metrics.store_queue_overflow.fetch_add(1, Relaxed);
            }
            Err(err) => {
                self.metrics.spool_errors.fetch_add(1, Relaxed);
                tracing::error!("cannot write the spool (is the disk full?): {err}");
                let readings = batch.readings.len();
                if !self.queue(None, &batch) {
                    self.metrics.store_queue_depth.fetch_sub(1, Relaxed);
                    Metrics::add(&self.metrics.readings_lost, readings);
                    tracing::error!(
                        readings,
                        "store queue full and spool unwritable: readings lost"
                    );
                }
            }
        }
    }

    /// Hands the batch to the store writer if memory has room for its
    /// readings; false when it must wait in the spool alone. A batch larger
    /// than the whole room takes all of it: it then waits only while the
    /// writer is busy, and the writer reads the spool before it idles. Were
    /// it refused for good, it would sit in the spool until the next message
    /// arrived.
    fn queue(&self, offsets: Option<(u64, u64)>, batch: &Arc<ReadingBatch>) -> bool {
        let readings = u32::try_from(batch.readings.len())
            .unwrap_or(u32::MAX)
            .min(self.store_room_size);
        let Ok(room) = self.store_room.clone().try_acquire_many_owned(readings) else {
            return false;
        };
        self.store
            .try_send(Spooled {
                offsets,
                batch: batch.clone(),
                room,
            })
            .is_ok()
    }
}

/// Reads the embedded broker's link until shutdown.
pub async fn run_embedded_link(
    mut link_rx: LinkRx,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
) {
    loop {
        let notification = tokio::select! {
            next = link_rx.next() => next,
            () = shutdown.cancelled() => break,
        };
        match notification {
            Ok(Some(Notification::Forward(forward))) => {
                pipeline
                    .handle(&forward.publish.topic, &forward.publish.payload)
                    .await;
            }
            // The router pauses a link whose buffer filled up and waits to be
            // told it is being read again; without this the link stalls for
            // good after a few hundred messages.
            Ok(Some(Notification::Unschedule)) => {
                if let Err(err) = link_rx.wake().await {
                    tracing::error!("MQTT ingest link lost: {err}");
                    break;
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::error!("MQTT ingest link lost: {err}");
                break;
            }
        }
    }
}

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
    let (client, mut events) = AsyncClient::new(options, 256);
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
