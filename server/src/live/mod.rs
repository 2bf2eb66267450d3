//! Live fan-out: readings go to every WebSocket client as they arrive,
//! before (and independently of) the database write.
//!
//! The ingest path hands each decoded message to [`LiveHub::publish`],
//! which never waits: a bounded queue feeds one *batcher* task. The
//! batcher takes whatever has accumulated (one message when idle, many
//! under load), turns it into one `readings` frame, serialised once, and
//! puts it on a `tokio::sync::broadcast` ring. Every client reads the ring
//! through its own cursor and writes the shared frame as it is, so the
//! work per client per frame is a few bit tests and one socket write
//! however many readings the frame holds: with hundreds of clients the
//! fan-out costs what the writes cost. (Merging frames per client, as an
//! earlier version did, copied every reading once per client.)
//!
//! A client subscribed to some channels tests each channel of a frame
//! once against its patterns and remembers the answer by the channel's
//! index ([`Channels`]), not its name; it gets the shared frame when all
//! of it matches, its own smaller frame when part does, nothing when none
//! does.
//!
//! A client that falls a whole ring behind is *coalesced*: it is told how
//! many messages it missed, then sent the latest value of every channel it
//! subscribes to, so its picture is whole again without a replay. When the
//! batcher's queue is full, every client is coalesced the same way. A
//! client whose socket accepts nothing for the configured send timeout is
//! dropped. All three are counted in the metrics.

pub mod http;
pub mod registry;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt as _;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use trackside_wire::{ClientMessage, Reading, ServerMessage, pattern_matches};

use crate::metrics::Metrics;
use crate::reading::ReadingBatch;
use registry::Registry;

/// Well inside the app's 40 s watchdog, so one late frame never trips it.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// Messages waiting for the batcher. Past this the batcher is a whole
/// queue behind: what does not fit is dropped and every client coalesced.
pub const BATCHER_QUEUE: usize = 8_192;

/// Most readings the batcher puts in one frame, so a burst after a stall
/// goes out as frames a browser parses in a few milliseconds each.
const READINGS_PER_FRAME: usize = 4_096;

/// One frame as the clients see it.
#[derive(Debug)]
pub struct LiveMessage {
    kind: Kind,
    /// The frame, serialised once for every client that takes it whole.
    json: Utf8Bytes,
}

#[derive(Debug)]
enum Kind {
    Readings {
        readings: Vec<Reading>,
        /// Each reading's channel index ([`Channels`]).
        channels: Vec<u32>,
        /// The distinct channel indices, each with a reading of it.
        distinct: Vec<(u32, usize)>,
    },
    /// Sent to every client whatever it subscribed to.
    Exception,
    /// The batcher's queue overflowed: this many messages never reached
    /// the ring, and every client resynchronises.
    Dropped(u64),
}

/// What the ingest path and the exception engine hand the batcher.
enum Item {
    Readings(Arc<ReadingBatch>),
    Exception(Utf8Bytes),
}

/// Small numbers for channel names, so a client remembers which channels
/// it wants in a bit set instead of hashing names. Grows with the yard's
/// channels, which the registry holds anyway.
#[derive(Debug, Default)]
pub struct Channels {
    indices: Mutex<HashMap<String, u32>>,
}

impl Channels {
    fn index(&self, name: &str) -> u32 {
        let mut indices = self.indices.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&index) = indices.get(name) {
            return index;
        }
        let index = indices.len() as u32;
        indices.insert(name.to_owned(), index);
        index
    }
}

#[derive(Clone)]
pub struct LiveHub {
    input: mpsc::Sender<Item>,
    tx: broadcast::Sender<Arc<LiveMessage>>,
    /// Messages dropped since the batcher last said so.
    dropped: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

impl LiveHub {
    /// A hub whose ring holds `capacity` frames, and its batcher task
    /// (which ends when every handle of the hub is gone).
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> Self {
        let (input, queue) = mpsc::channel(BATCHER_QUEUE);
        let tx = broadcast::channel(capacity).0;
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(batcher(queue, tx.clone(), dropped.clone(), metrics.clone()));
        Self {
            input,
            tx,
            dropped,
            metrics,
        }
    }

    /// Hands a message to the batcher; never waits.
    pub fn publish(&self, batch: &Arc<ReadingBatch>) {
        // Nobody watching: no work at all.
        if self.tx.receiver_count() == 0 || batch.readings.is_empty() {
            return;
        }
        self.offer(Item::Readings(batch.clone()));
    }

    pub fn publish_exception(&self, event: &trackside_wire::ExceptionEvent) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let json = to_json(&ServerMessage::Exception(Box::new(event.clone())));
        self.offer(Item::Exception(json));
    }

    fn offer(&self, item: Item) {
        if self.input.try_send(item).is_err() {
            self.dropped.fetch_add(1, Relaxed);
            self.metrics.live_dropped_messages.fetch_add(1, Relaxed);
        }
    }

    /// An alarm flood started, changed or ended: sent to every client.
    pub fn publish_flood(&self, flood: &trackside_wire::FloodInfo) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let json = to_json(&ServerMessage::Flood(Box::new(flood.clone())));
        self.offer(Item::Exception(json));
    }

    /// Exceptions shown earlier as not yet stored are stored now.
    pub fn publish_stored(&self, exceptions: Vec<trackside_wire::ExceptionInfo>) {
        if self.tx.receiver_count() == 0 || exceptions.is_empty() {
            return;
        }
        // Sent to every client, in order with the exceptions, as they are.
        let json = to_json(&ServerMessage::Stored { exceptions });
        self.offer(Item::Exception(json));
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<LiveMessage>> {
        self.tx.subscribe()
    }
}

/// Turns what has accumulated into frames on the ring, until every hub
/// handle is gone.
async fn batcher(
    mut queue: mpsc::Receiver<Item>,
    tx: broadcast::Sender<Arc<LiveMessage>>,
    dropped: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
) {
    let channels = Channels::default();
    let mut items = Vec::with_capacity(256);
    while queue.recv_many(&mut items, 256).await > 0 {
        let lost = dropped.swap(0, Relaxed);
        if lost > 0 {
            let _ = tx.send(Arc::new(LiveMessage {
                kind: Kind::Dropped(lost),
                json: to_json(&ServerMessage::Lagged { missed: lost }),
            }));
        }
        let mut readings: Vec<Reading> = Vec::new();
        let mut indices: Vec<u32> = Vec::new();
        let mut frames = 0;
        for item in items.drain(..) {
            match item {
                Item::Readings(batch) => {
                    for r in &batch.readings {
                        indices.push(channels.index(r.channel.as_str()));
                        readings.push(Reading {
                            channel: r.channel.to_string(),
                            ts: r.ts.timestamp_millis(),
                            value: r.value,
                        });
                    }
                    if readings.len() >= READINGS_PER_FRAME {
                        frames += send_readings_frame(&tx, &mut readings, &mut indices);
                    }
                }
                Item::Exception(json) => {
                    // In order: the readings before it go first.
                    frames += send_readings_frame(&tx, &mut readings, &mut indices);
                    let _ = tx.send(Arc::new(LiveMessage {
                        kind: Kind::Exception,
                        json,
                    }));
                }
            }
        }
        frames += send_readings_frame(&tx, &mut readings, &mut indices);
        metrics.live_frames.fetch_add(frames, Relaxed);
    }
}

/// Puts the readings gathered so far on the ring as one frame; returns how
/// many frames that made (none when nothing was gathered).
fn send_readings_frame(
    tx: &broadcast::Sender<Arc<LiveMessage>>,
    readings: &mut Vec<Reading>,
    indices: &mut Vec<u32>,
) -> u64 {
    if readings.is_empty() {
        return 0;
    }
    let readings = std::mem::take(readings);
    let channels = std::mem::take(indices);
    let mut distinct: Vec<(u32, usize)> = channels
        .iter()
        .enumerate()
        .map(|(position, &index)| (index, position))
        .collect();
    distinct.sort_unstable_by_key(|&(index, _)| index);
    distinct.dedup_by_key(|&mut (index, _)| index);
    let json = to_json(&ServerMessage::Readings {
        readings: readings.clone(),
    });
    // An error only means every client has left.
    let _ = tx.send(Arc::new(LiveMessage {
        kind: Kind::Readings {
            readings,
            channels,
            distinct,
        },
        json,
    }));
    1
}

fn to_json(message: &ServerMessage) -> Utf8Bytes {
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_string(message).unwrap_or_default().into()
}

/// Which channels a client wants: everything until it says otherwise; a
/// pattern list's answer per channel index is remembered in two bit sets.
#[derive(Default)]
struct Subscription {
    patterns: Option<Vec<String>>,
    known: Vec<u64>,
    wanted: Vec<u64>,
}

impl Subscription {
    fn new(patterns: Option<Vec<String>>) -> Self {
        Self {
            patterns,
            ..Self::default()
        }
    }

    fn patterns(&self) -> Option<&[String]> {
        self.patterns.as_deref()
    }

    fn wants(&mut self, index: u32, name: &str) -> bool {
        let Some(patterns) = &self.patterns else {
            return true;
        };
        let (word, bit) = ((index / 64) as usize, 1u64 << (index % 64));
        if word >= self.known.len() {
            self.known.resize(word + 1, 0);
            self.wanted.resize(word + 1, 0);
        }
        if self.known[word] & bit == 0 {
            self.known[word] |= bit;
            if patterns.iter().any(|p| pattern_matches(p, name)) {
                self.wanted[word] |= bit;
            }
        }
        self.wanted[word] & bit != 0
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
    let mut subscription = Subscription::new(None);
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
                            subscription = Subscription::new(Some(channels));
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
                open = send_drained(&mut socket, &mut feed, message, &mut subscription, &cx).await;
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

/// Most frames taken from the ring for one flush: bounds how long the
/// first of them waits while a client catches up.
const FRAMES_PER_FLUSH: usize = 16;

/// Writes `first` and whatever else the ring already holds for this client
/// (up to `FRAMES_PER_FLUSH`), then flushes once: one socket write per
/// client per wake-up. False when the client is gone or stopped reading.
async fn send_drained(
    socket: &mut WebSocket,
    feed: &mut broadcast::Receiver<Arc<LiveMessage>>,
    first: Result<Arc<LiveMessage>, broadcast::error::RecvError>,
    subscription: &mut Subscription,
    cx: &ClientContext,
) -> bool {
    let written = async {
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(message) = next.take() {
            taken += 1;
            let missed = match message {
                Ok(message) => match &message.kind {
                    Kind::Dropped(missed) => Some(*missed),
                    Kind::Exception => {
                        socket.feed(Message::Text(message.json.clone())).await?;
                        None
                    }
                    Kind::Readings { .. } => {
                        if let Some(frame) = frame_for(subscription, &message) {
                            socket.feed(Message::Text(frame)).await?;
                        }
                        None
                    }
                },
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    cx.metrics.ws_lagged_messages.fetch_add(missed, Relaxed);
                    Some(missed)
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(false),
            };
            if let Some(missed) = missed {
                let lagged = to_json(&ServerMessage::Lagged { missed });
                socket.feed(Message::Text(lagged)).await?;
                let resync = cx.registry.latest_matching(subscription.patterns());
                if !resync.is_empty() {
                    let readings = ServerMessage::Readings { readings: resync };
                    socket.feed(Message::Text(to_json(&readings))).await?;
                }
            }
            if taken < FRAMES_PER_FLUSH {
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

/// The frame a client gets for a readings frame: the shared one when all
/// of it matches (the usual case: everything, or a chart following its own
/// channels), its own selection when part does, nothing when none does.
/// Each distinct channel is tested once, by its index.
fn frame_for(subscription: &mut Subscription, message: &LiveMessage) -> Option<Utf8Bytes> {
    let Kind::Readings {
        readings,
        channels,
        distinct,
    } = &message.kind
    else {
        return None;
    };
    if subscription.patterns.is_none() {
        return Some(message.json.clone());
    }
    let mut all = true;
    let mut any = false;
    for &(index, position) in distinct {
        if subscription.wants(index, &readings[position].channel) {
            any = true;
        } else {
            all = false;
        }
    }
    if all {
        Some(message.json.clone())
    } else if !any {
        None
    } else {
        let readings: Vec<Reading> = readings
            .iter()
            .zip(channels)
            .filter(|&(r, &index)| subscription.wants(index, &r.channel))
            .map(|(r, _)| r.clone())
            .collect();
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

    fn message(readings: &[(&str, i64, f64)], channels: &Channels) -> LiveMessage {
        let readings: Vec<Reading> = readings
            .iter()
            .map(|(channel, ts, value)| Reading {
                channel: (*channel).to_owned(),
                ts: *ts,
                value: *value,
            })
            .collect();
        let indices: Vec<u32> = readings
            .iter()
            .map(|r| channels.index(&r.channel))
            .collect();
        let (tx, mut rx) = broadcast::channel(4);
        let (mut readings, mut indices) = (readings, indices);
        send_readings_frame(&tx, &mut readings, &mut indices);
        Arc::try_unwrap(rx.try_recv().unwrap()).unwrap()
    }

    fn sent(frame: Option<Utf8Bytes>) -> Option<Vec<String>> {
        frame.map(|f| match serde_json::from_str(f.as_str()).unwrap() {
            ServerMessage::Readings { readings } => {
                readings.into_iter().map(|r| r.channel).collect()
            }
            other => panic!("a readings frame, not {other:?}"),
        })
    }

    #[test]
    fn a_client_gets_the_shared_frame_its_part_or_nothing() {
        let channels = Channels::default();
        let both = message(
            &[
                ("T1/relay_voltage", 1, 1.5),
                ("T2/feed_current", 1, 0.25),
                ("T1/relay_voltage", 2, 1.4),
            ],
            &channels,
        );
        let mut everything = Subscription::new(None);
        let mut t1 = Subscription::new(Some(vec!["T1/*".into()]));
        let mut t3 = Subscription::new(Some(vec!["T3/*".into()]));
        let mut all = Subscription::new(Some(vec!["T*".into()]));
        assert_eq!(frame_for(&mut everything, &both), Some(both.json.clone()));
        assert_eq!(
            frame_for(&mut all, &both),
            Some(both.json.clone()),
            "shared, not rebuilt"
        );
        assert_eq!(
            sent(frame_for(&mut t1, &both)),
            Some(vec![
                "T1/relay_voltage".to_owned(),
                "T1/relay_voltage".to_owned()
            ])
        );
        assert_eq!(frame_for(&mut t3, &both), None);
        // Remembered by index: a later frame of the same channel.
        let again = message(&[("T1/relay_voltage", 3, 1.3)], &channels);
        assert_eq!(frame_for(&mut t1, &again), Some(again.json.clone()));
        assert_eq!(frame_for(&mut t3, &again), None);
    }

    /// The batcher's queue is bounded: what does not fit is counted, and
    /// every client is told how much it missed before anything newer.
    #[tokio::test(flavor = "current_thread")]
    async fn a_full_batcher_queue_is_counted_and_resynchronises_every_client() {
        let metrics = Arc::new(Metrics::default());
        // A ring that holds every frame of the burst.
        let hub = LiveHub::new(1024, metrics.clone());
        let mut client = hub.subscribe();
        let batch = Arc::new(ReadingBatch {
            gateway: "gw".into(),
            readings: vec![crate::reading::DecodedReading {
                channel: trackside_wire::ChannelName::parse("T1/relay_voltage").unwrap(),
                ts: chrono::DateTime::from_timestamp_millis(1).unwrap(),
                value: 1.5,
            }],
        });
        // The batcher cannot run until this task yields: the queue fills.
        for _ in 0..BATCHER_QUEUE + 10 {
            hub.publish(&batch);
        }
        assert_eq!(metrics.live_dropped_messages.load(Relaxed), 10);
        // The batcher's first frame after the overflow says so.
        let first = tokio::time::timeout(Duration::from_secs(5), client.recv())
            .await
            .expect("a frame")
            .expect("the hub is open");
        assert!(
            matches!(first.kind, Kind::Dropped(10)),
            "told first: {:?}",
            first.kind
        );
        // Then every queued message, in frames the metric counts.
        let (mut frames, mut readings) = (0, 0);
        while readings < BATCHER_QUEUE {
            let next = client.recv().await.expect("a frame after it");
            let Kind::Readings { readings: got, .. } = &next.kind else {
                panic!("a readings frame, not {:?}", next.kind);
            };
            frames += 1;
            readings += got.len();
        }
        assert_eq!(readings, BATCHER_QUEUE);
        assert!(frames > 1, "a burst of {readings} readings in one frame");
        assert_eq!(metrics.live_frames.load(Relaxed), frames);
    }

    #[test]
    fn channel_indices_are_stable_and_dense() {
        let channels = Channels::default();
        assert_eq!(channels.index("T1/a"), 0);
        assert_eq!(channels.index("T2/a"), 1);
        assert_eq!(channels.index("T1/a"), 0);
    }
}
