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

pub mod http;
pub mod registry;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt as _;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use trackside_wire::{ClientMessage, Reading, ServerMessage, pattern_matches};

use crate::metrics::Metrics;
use crate::reading::ReadingBatch;
use registry::Registry;

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

    /// Exceptions shown earlier as not yet stored are stored now.
    pub fn publish_stored(&self, exceptions: Vec<trackside_wire::ExceptionInfo>) {
        if self.tx.receiver_count() == 0 || exceptions.is_empty() {
            return;
        }
        let json = to_json(&ServerMessage::Stored { exceptions });
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
    /// Whether the client's role allows a frame it sent.
    pub allowed: Box<dyn Fn(&ClientMessage) -> bool + Send + Sync>,
}

/// Resolves, with the reason, when the client's session or token ends:
/// the feed then says so and closes.
pub type Ended = Pin<Box<dyn Future<Output = String> + Send>>;

/// The close code of a feed whose session ended (an application code: a
/// client tells it from a dropped connection and signs in again).
pub const SESSION_ENDED: u16 = 4001;

/// Serves one WebSocket client until it leaves, falls silent, or the server
/// shuts down.
pub async fn serve_client(mut socket: WebSocket, cx: ClientContext, mut ended: Ended) {
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
                        Ok(message) if !(cx.allowed)(&message) => {
                            tracing::debug!("ignoring a WebSocket frame the client's role does not allow");
                        }
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
            message = feed.recv() => {
                // Let the other clients and ingest run first: under load
                // more messages are in the ring by then and go out in the
                // same write, so the server makes one send per client per
                // burst instead of one per message. Idle, this costs a
                // trip through the scheduler.
                tokio::task::yield_now().await;
                open = send_drained(&mut socket, &mut feed, message, &subscription, &cx).await;
            }
            () = cx.shutdown.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                open = false;
            }
            reason = &mut ended => {
                cx.metrics.ws_sessions_ended.fetch_add(1, Relaxed);
                let frame = to_json(&ServerMessage::SessionEnded { reason: reason.clone() });
                let _ = send(&mut socket, frame, &cx).await;
                let close = CloseFrame {
                    code: SESSION_ENDED,
                    reason: Utf8Bytes::from(reason.chars().take(100).collect::<String>()),
                };
                let _ = socket.send(Message::Close(Some(close))).await;
                open = false;
            }
        }
    }
    cx.metrics.ws_clients.fetch_sub(1, Relaxed);
}

/// Most messages taken from the ring for one write: bounds how long the
/// first of them waits while a burst is drained.
const MESSAGES_PER_WRITE: usize = 64;

/// Writes `first` and whatever else the ring already holds for this client
/// (up to `MESSAGES_PER_WRITE`), then flushes once. Consecutive readings
/// messages are merged into one `readings` frame, so under load a client
/// gets one frame to parse instead of dozens, and a lone message goes out
/// as it is. False when the client is gone or stopped reading.
async fn send_drained(
    socket: &mut WebSocket,
    feed: &mut broadcast::Receiver<Arc<LiveMessage>>,
    first: Result<Arc<LiveMessage>, broadcast::error::RecvError>,
    subscription: &Subscription,
    cx: &ClientContext,
) -> bool {
    let written = async {
        let mut next = Some(first);
        let mut merged = MergedReadings::default();
        let mut taken = 0;
        while let Some(message) = next.take() {
            taken += 1;
            match message {
                Ok(message) if !message.exception => {
                    if let Some(frame) = frame_for(subscription, &message) {
                        merged.push(frame);
                    }
                }
                Ok(message) => {
                    if let Some(frame) = merged.take() {
                        socket.feed(Message::Text(frame)).await?;
                    }
                    socket.feed(Message::Text(message.json.clone())).await?;
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // Whatever was merged is older than the resync below.
                    merged = MergedReadings::default();
                    cx.metrics.ws_lagged_messages.fetch_add(missed, Relaxed);
                    let lagged = to_json(&ServerMessage::Lagged { missed });
                    socket.feed(Message::Text(lagged)).await?;
                    let resync = cx.registry.latest_matching(subscription.patterns());
                    if !resync.is_empty() {
                        let readings = ServerMessage::Readings { readings: resync };
                        socket.feed(Message::Text(to_json(&readings))).await?;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(false),
            }
            if taken < MESSAGES_PER_WRITE {
                next = match feed.try_recv() {
                    Ok(message) => Some(Ok(message)),
                    Err(broadcast::error::TryRecvError::Empty) => None,
                    Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                        Some(Err(broadcast::error::RecvError::Lagged(missed)))
                    }
                    Err(broadcast::error::TryRecvError::Closed) => {
                        Some(Err(broadcast::error::RecvError::Closed))
                    }
                };
            }
        }
        if let Some(frame) = merged.take() {
            socket.feed(Message::Text(frame)).await?;
        }
        socket.flush().await?;
        Ok::<_, axum::Error>(true)
    };
    match tokio::time::timeout(cx.send_timeout, written).await {
        Ok(Ok(open)) => open,
        Ok(Err(_)) => false,
        Err(_) => {
            dropped_for_silence(cx);
            false
        }
    }
}

/// `readings` frames waiting to go out as one. The frames are spliced as
/// text (their arrays joined), not parsed and serialised again.
#[derive(Default)]
struct MergedReadings {
    first: Option<Utf8Bytes>,
    joined: Option<String>,
}

const READINGS_PREFIX: &str = r#"{"type":"readings","readings":["#;
const READINGS_SUFFIX: &str = "]}";

impl MergedReadings {
    fn push(&mut self, frame: Utf8Bytes) {
        let Some(first) = self.first.as_ref() else {
            self.first = Some(frame);
            return;
        };
        let joined = self.joined.get_or_insert_with(|| {
            let mut joined = String::with_capacity(first.len() * 8);
            joined.push_str(first.as_str());
            joined
        });
        let (Some(tail), Some(items)) = (
            joined.strip_suffix(READINGS_SUFFIX).map(str::len),
            readings_items(frame.as_str()),
        ) else {
            return;
        };
        if items.is_empty() {
            return;
        }
        joined.truncate(tail);
        if !joined.ends_with('[') {
            joined.push(',');
        }
        joined.push_str(items);
        joined.push_str(READINGS_SUFFIX);
    }

    fn take(&mut self) -> Option<Utf8Bytes> {
        let first = self.first.take();
        match self.joined.take() {
            Some(joined) => Some(joined.into()),
            None => first,
        }
    }
}

/// The items of a `readings` frame's array, as text.
fn readings_items(frame: &str) -> Option<&str> {
    frame
        .strip_prefix(READINGS_PREFIX)?
        .strip_suffix(READINGS_SUFFIX)
}

/// The frame a client gets for `message`: the shared one when all of it
/// matches (the usual case: everything, or a chart following its own
/// channels), its own selection when part does, nothing when none does.
fn frame_for(subscription: &Subscription, message: &LiveMessage) -> Option<Utf8Bytes> {
    let Subscription::Patterns(patterns) = subscription else {
        return Some(message.json.clone());
    };
    let wanted = |r: &&Reading| patterns.iter().any(|p| pattern_matches(p, &r.channel));
    let matching = message.readings.iter().filter(wanted).count();
    if matching == message.readings.len() {
        Some(message.json.clone())
    } else if matching == 0 {
        None
    } else {
        let readings = message.readings.iter().filter(wanted).cloned().collect();
        Some(to_json(&ServerMessage::Readings { readings }))
    }
}

fn dropped_for_silence(cx: &ClientContext) {
    cx.metrics.ws_dropped_clients.fetch_add(1, Relaxed);
    tracing::warn!(
        "dropping a WebSocket client that accepted nothing for {:?}",
        cx.send_timeout
    );
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
            dropped_for_silence(cx);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(readings: &[(&str, i64, f64)]) -> (Vec<Reading>, Utf8Bytes) {
        let readings: Vec<Reading> = readings
            .iter()
            .map(|(channel, ts, value)| Reading {
                channel: (*channel).to_owned(),
                ts: *ts,
                value: *value,
            })
            .collect();
        let json = to_json(&ServerMessage::Readings {
            readings: readings.clone(),
        });
        (readings, json)
    }

    #[test]
    fn merged_frames_say_what_one_frame_of_all_readings_says() {
        let (mut all, first) = frame(&[("T1/relay_voltage", 1, 1.5), ("T2/feed_current", 1, 0.25)]);
        let (second_readings, second) = frame(&[("T1/relay_voltage", 2, 1.25)]);
        let (third_readings, third) = frame(&[("T3/relay_state", 3, 1.0)]);
        all.extend(second_readings);
        all.extend(third_readings);

        let mut merged = MergedReadings::default();
        merged.push(first.clone());
        merged.push(second);
        merged.push(third);
        let text = merged.take().unwrap();
        let parsed: ServerMessage = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!(parsed, ServerMessage::Readings { readings: all });
        assert!(merged.take().is_none(), "taking empties it");

        let mut alone = MergedReadings::default();
        alone.push(first.clone());
        assert_eq!(
            alone.take().unwrap(),
            first,
            "a lone frame goes out as it is"
        );
    }

    #[test]
    fn the_splice_points_match_the_serialised_frame() {
        let (_, json) = frame(&[]);
        assert_eq!(json.as_str(), format!("{READINGS_PREFIX}{READINGS_SUFFIX}"));
    }
}
