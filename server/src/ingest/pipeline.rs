//! [`Pipeline::handle`]: the one path every MQTT publish takes, whatever
//! its source. It decodes the message and hands the result to the
//! independent consumers (latest values, live fan-out, the exception
//! engine, the spool and store queue, the rejection store), none of which
//! it ever waits for.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use chrono::{TimeDelta, Utc};
use tokio::sync::oneshot;

use super::decode::{self, DecodeContext};
use crate::durable::AppendError;
use crate::live::LiveHub;
use crate::live::registry::Registry;
use crate::metrics::Metrics;
use crate::reading::{ReadingBatch, Rejection, RejectionKind};
use crate::store::Receipt;
use crate::store::queue::StoreQueue;
use crate::store::rejections::RejectionQueue;
use crate::store::spool::Spool;

pub struct Pipeline {
    pub admission: Arc<super::admission::Admission>,
    pub registry: Arc<Registry>,
    pub live: LiveHub,
    pub metrics: Arc<Metrics>,
    pub spool: Arc<Spool>,
    pub store: StoreQueue,
    pub rejections: RejectionQueue,
    pub max_future: TimeDelta,
    pub exceptions: crate::exceptions::Feed,
    /// Sparkplug B edge nodes' sessions, which their messages decode in.
    pub sparkplug: Arc<super::sparkplug::Sessions>,
    /// The source delivers again what is not acknowledged (an external
    /// broker's persistent session): a message neither the spool nor the
    /// store queue takes is left to it, not lost.
    pub redelivers: bool,
}

/// Which consumers a publish goes to. A lone instance sees every publish
/// once and hands it to all ([`Part::Whole`]). Scaled out (issue 19), each
/// instance takes a share of the publishes to store ([`Part::Store`], a
/// shared subscription) and every publish to show and judge ([`Part::Live`],
/// a plain one), so every browser is complete and the engine, wherever it
/// runs, sees every reading of a channel in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Whole,
    Store,
    Live,
}

impl Pipeline {
    /// Decodes and hands on one publish; the receipt says when its readings
    /// are safe.
    pub async fn handle(&self, topic: &[u8], payload: &[u8]) -> Receipt {
        self.handle_part(topic, payload, Part::Whole).await
    }

    /// [`Pipeline::handle`] for one [`Part`] of the consumers; a
    /// [`Part::Live`] publish is never stored, so its receipt is `Nothing`.
    pub async fn handle_part(&self, topic: &[u8], payload: &[u8], part: Part) -> Receipt {
        let (live, store) = (part != Part::Store, part != Part::Live);
        if store {
            self.metrics.mqtt_messages.fetch_add(1, Relaxed);
        } else {
            self.metrics.mqtt_live_messages.fetch_add(1, Relaxed);
        }
        let cx = DecodeContext::new(Utc::now(), self.max_future);
        let mut decoded = match std::str::from_utf8(topic) {
            Ok(topic) if super::sparkplug::is_sparkplug(topic) => {
                // The session follows every message where this source sees
                // them all (not the stored share of a shared subscription).
                self.sparkplug
                    .decode(topic, payload, &cx, part != Part::Store)
            }
            Ok(topic) => decode::decode(topic, payload, &cx),
            Err(_) => decode::Decoded {
                rejections: vec![Rejection {
                    topic: String::from_utf8_lossy(topic).into_owned(),
                    gateway: None,
                    payload: payload.to_vec(),
                    reason: "topic is not UTF-8".into(),
                    kind: RejectionKind::Topic,
                }],
                ..Default::default()
            },
        };

        if let (true, false, Some(status)) = (live, decoded.gateway.is_empty(), decoded.status) {
            self.exceptions
                .status(&decoded.gateway, status, cx.received_at);
        }
        if live
            && !decoded.gateway.is_empty()
            && self
                .registry
                .observe_gateway(&decoded.gateway, cx.received_at, decoded.status)
        {
            tracing::info!(gateway = %decoded.gateway, status = ?decoded.status, "gateway status changed");
        }

        if let (true, false, Some(offset)) = (live, decoded.gateway.is_empty(), cx.stated_offset())
            && let Some(estimate) =
                self.registry
                    .observe_clock(&decoded.gateway, offset, cx.received_at)
        {
            self.exceptions
                .clock(&decoded.gateway, estimate, cx.received_at);
        }

        if !decoded.readings.is_empty() {
            let topic = String::from_utf8_lossy(topic);
            let (admitted, refused) = self.admission.admit(
                &decoded.gateway,
                &topic,
                std::mem::take(&mut decoded.readings),
            );
            decoded.readings = admitted;
            decoded.rejections.extend(refused);
        }
        let whole_payload_rejected = decoded.readings.is_empty() && !decoded.rejections.is_empty();
        // Counted and kept once, by the instance that stores the publish.
        for rejection in decoded.rejections.into_iter().filter(|_| store) {
            tracing::warn!(topic = %rejection.topic, reason = %rejection.reason, "rejected MQTT payload");
            self.metrics.rejected(rejection.kind);
            if whole_payload_rejected {
                self.metrics.rejected_payloads.fetch_add(1, Relaxed);
            } else {
                self.metrics.rejected_readings.fetch_add(1, Relaxed);
            }
            self.rejections.keep(rejection);
        }
        if decoded.readings.is_empty() {
            return Receipt::Nothing;
        }

        let batch = Arc::new(ReadingBatch {
            gateway: decoded.gateway,
            readings: decoded.readings,
        });
        if live {
            self.registry
                .observe(&batch.gateway, &batch.readings, cx.received_at);
            self.live.publish(&batch);
            self.exceptions.readings(&batch, cx.received_at);
        }
        if !store {
            return Receipt::Nothing;
        }
        Metrics::add(&self.metrics.readings_received, batch.readings.len());
        // Spool first, then queue, never wait: when the writer is behind,
        // the spool alone holds the message and the writer reads it back.
        let spooled = self.spool.append(&batch, |start, end| {
            self.store.try_push(Some((start, end)), &batch, None)
        });
        match spooled {
            Ok((_, ticket)) => Receipt::Spooled(ticket),
            Err(err) => {
                if let AppendError::Io(_) = err {
                    // The spool logs the failure when it starts and when it ends.
                    self.metrics.spool_errors.fetch_add(1, Relaxed);
                }
                let (stored, receipt) = oneshot::channel();
                if self.store.try_push(None, &batch, Some(stored)) {
                    return Receipt::Queued(receipt);
                }
                let readings = batch.readings.len();
                if self.redelivers {
                    // Not acknowledged: the source delivers it again.
                    self.metrics.mqtt_unacknowledged.fetch_add(1, Relaxed);
                } else {
                    let lost = self
                        .metrics
                        .readings_lost
                        .fetch_add(readings as u64, Relaxed);
                    // The first time, then about every thousandth reading.
                    if lost == 0 || lost / 1000 != (lost + readings as u64) / 1000 {
                        tracing::error!(
                            readings,
                            lost_so_far = lost + readings as u64,
                            "spool refused ({err}) and store queue full: readings lost"
                        );
                    }
                }
                Receipt::Refused
            }
        }
    }
}
