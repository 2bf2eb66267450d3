//! Live fan-out: readings go to every WebSocket client as they arrive,
//! before (and independently of) the database write.
//!
//! One `tokio::sync::broadcast` ring carries each decoded message, already
//! serialised once. Every client reads the ring through its own cursor, so a
//! client's queue is bounded by the ring's capacity and the publisher never
//! waits for anyone. A client that falls a whole ring behind is *coalesced*:
//! it is told how many messages it missed, then sent the latest value of
//! every channel it subscribes to, so its picture is whole again without a
//! replay. A client whose socket accepts nothing for the configured send
//! timeout is dropped. Both are counted in the metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use trackside_wire::{ClientMessage, Reading, ServerMessage, pattern_matches};

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::ReadingBatch;

/// Well inside the app's 40 s watchdog, so one late frame never trips it.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// One decoded message as the live clients see it.
#[derive(Debug)]
pub struct LiveMessage {
    readings: Vec<Reading>,
    /// `ServerMessage::Readings` of all of `readings`, for the common client
    /// that subscribes to everything.
    json: Utf8Bytes,
    /// An exception frame: sent to every client whatever it subscribed to.
    exception: bool,
}

#[derive(Clone)]
pub struct LiveHub {
    tx: broadcast::Sender<Arc<LiveMessage>>,
}

impl LiveHub {
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity).0,
        }
    }

    pub fn publish(&self, batch: &ReadingBatch) {
        // Nobody watching: skip the serialisation.
        if self.tx.receiver_count() == 0 || batch.readings.is_empty() {
            return;
        }
        let readings: Vec<Reading> = batch
            .readings
            .iter()
            .map(|r| Reading {
                channel: r.channel.to_string(),
                ts: r.ts.timestamp_millis(),
                value: r.value,
            })
            .collect();
        let json = to_json(&ServerMessage::Readings {
            readings: readings.clone(),
        });
        // An error only means every receiver left since the check above.
        let _ = self.tx.send(Arc::new(LiveMessage {
            readings,
            json,
            exception: false,
        }));
    }

    pub fn publish_exception(&self, event: &trackside_wire::ExceptionEvent) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let json = to_json(&ServerMessage::Exception(Box::new(event.clone())));
        let _ = self.tx.send(Arc::new(LiveMessage {
            readings: Vec::new(),
            json,
            exception: true,
        }));
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<LiveMessage>> {
        self.tx.subscribe()
    }
}

fn to_json(message: &ServerMessage) -> Utf8Bytes {
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_string(message).unwrap_or_default().into()
}

/// Which channels a client wants: everything until it says otherwise.
enum Subscription {
    All,
    Patterns(Vec<String>),
}

impl Subscription {
    fn patterns(&self) -> Option<&[String]> {
        match self {
            Subscription::All => None,
            Subscription::Patterns(patterns) => Some(patterns),
        }
    }
}

pub struct ClientContext {
    pub hub: LiveHub,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    pub send_timeout: Duration,
}

/// Serves one WebSocket client until it leaves, falls silent, or the server
/// shuts down.
pub async fn serve_client(mut socket: WebSocket, cx: ClientContext) {
    cx.metrics.ws_clients.fetch_add(1, Relaxed);
    let mut feed = cx.hub.subscribe();
    let mut subscription = Subscription::All;
    let hello = to_json(&ServerMessage::Hello {
        server_time: chrono::Utc::now().timestamp_millis(),
    });
    let mut open = send(&mut socket, hello, &cx).await;
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    while open {
        tokio::select! {
            _ = heartbeat.tick() => {
                let beat = ServerMessage::Heartbeat {
                    server_time: chrono::Utc::now().timestamp_millis(),
                };
                open = send(&mut socket, to_json(&beat), &cx).await;
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    match serde_json::from_str::<ClientMessage>(&text) {
                        Ok(ClientMessage::Subscribe { channels }) => {
                            subscription = Subscription::Patterns(channels);
                            // Start the new selection from a whole picture.
                            let snapshot = cx.registry.latest_matching(subscription.patterns());
                            open = send_readings(&mut socket, snapshot, &cx).await;
                        }
                        Err(err) => {
                            tracing::debug!("ignoring a malformed WebSocket frame: {err}");
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => open = false,
                Some(Ok(_)) => {}
            },
            message = feed.recv() => match message {
                Ok(message) => {
                    open = match &subscription {
                        _ if message.exception => send(&mut socket, message.json.clone(), &cx).await,
                        Subscription::All => send(&mut socket, message.json.clone(), &cx).await,
                        Subscription::Patterns(patterns) => {
                            let wanted = |r: &&Reading| patterns.iter().any(|p| pattern_matches(p, &r.channel));
                            let matching = message.readings.iter().filter(wanted).count();
                            if matching == message.readings.len() {
                                // The usual case (a chart following its own
                                // channels): the frame serialised once fits.
                                send(&mut socket, message.json.clone(), &cx).await
                            } else {
                                let selected: Vec<Reading> =
                                    message.readings.iter().filter(wanted).cloned().collect();
                                selected.is_empty() || send_readings(&mut socket, selected, &cx).await
                            }
                        }
                    };
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    cx.metrics.ws_lagged_messages.fetch_add(missed, Relaxed);
                    let resync = cx.registry.latest_matching(subscription.patterns());
                    open = send(&mut socket, to_json(&ServerMessage::Lagged { missed }), &cx).await
                        && send_readings(&mut socket, resync, &cx).await;
                }
                Err(broadcast::error::RecvError::Closed) => open = false,
            },
            () = cx.shutdown.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                open = false;
            }
        }
    }
    cx.metrics.ws_clients.fetch_sub(1, Relaxed);
}

async fn send_readings(socket: &mut WebSocket, readings: Vec<Reading>, cx: &ClientContext) -> bool {
    if readings.is_empty() {
        return true;
    }
    send(socket, to_json(&ServerMessage::Readings { readings }), cx).await
}

/// False when the client is gone or stopped reading.
async fn send(socket: &mut WebSocket, text: Utf8Bytes, cx: &ClientContext) -> bool {
    match tokio::time::timeout(cx.send_timeout, socket.send(Message::Text(text))).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            cx.metrics.ws_dropped_clients.fetch_add(1, Relaxed);
            tracing::warn!(
                "dropping a WebSocket client that accepted nothing for {:?}",
                cx.send_timeout
            );
            false
        }
    }
}
