//! The live feed: a WebSocket to `/ws`, kept open for as long as its owner
//! holds the [`Feed`].
//!
//! The board and the history page's live tail both follow `/ws`. They share
//! this module so that a server restart or a dropped network looks the same
//! from both: one schedule of attempts ([`Backoff`]), one watchdog, one set
//! of states. The feed decides when a connection is dead and when to try
//! again; its owner decides what a frame means and what to fetch again
//! after a gap.

use std::future::Future;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{self, Either};
use futures::{SinkExt, StreamExt};
use gloo_net::websocket::{Message, futures::WebSocket};
use leptos::prelude::window;
use trackside_wire::{ClientMessage, ServerMessage};

/// What the header's connection pill shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// The first attempt, right after the page loaded.
    Connecting,
    /// The server greeted us; readings flow.
    Live,
    /// The feed dropped. `retry_in_s` counts down to the next attempt; 0
    /// while that attempt is under way.
    Reconnecting { retry_in_s: u32 },
}

impl Connection {
    /// The value of the pill's `data-state` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Live => "live",
            Self::Reconnecting { .. } => "reconnecting",
        }
    }

    pub fn label(self) -> String {
        match self {
            Self::Connecting => "Connecting…".to_owned(),
            Self::Live => "Live".to_owned(),
            Self::Reconnecting { retry_in_s: 0 } => "Reconnecting…".to_owned(),
            Self::Reconnecting { retry_in_s } => format!("Reconnecting in {retry_in_s} s"),
        }
    }
}

/// Which readings a feed asks for. Exception frames reach every feed,
/// whatever it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// Every channel, the server's default: nothing is sent.
    AllChannels,
    /// These channels only (names, or patterns with `*`).
    Channels(Vec<String>),
}

impl Subscription {
    /// The frame that asks for it, sent on every connection since the
    /// server forgets a subscription with its socket.
    fn request(&self) -> Option<String> {
        match self {
            Self::AllChannels => None,
            Self::Channels(channels) => serde_json::to_string(&ClientMessage::Subscribe {
                channels: channels.clone(),
            })
            .ok(),
        }
    }
}

/// What a feed tells its owner, in the order it happens.
#[derive(Debug)]
pub enum Event {
    /// The connection's state changed; `Live` comes just before the
    /// greeting's frame.
    State(Connection),
    /// A frame from the server, the `hello` that opens each connection
    /// included.
    Frame(ServerMessage),
}

/// A feed running in the background. Dropping it stops the feed: the
/// socket closes, no attempt follows and no event is reported after.
pub struct Feed {
    _stop: oneshot::Sender<()>,
}

impl Feed {
    /// Starts following `/ws` on the page's host; `on_event` hears every
    /// state and frame until the feed is dropped.
    pub fn open(subscription: Subscription, on_event: impl FnMut(Event) + 'static) -> Self {
        let location = window().location();
        let url = socket_url(
            &location.protocol().unwrap_or_default(),
            &location.host().unwrap_or_default(),
        );
        let (stop, stopped) = oneshot::channel();
        leptos::task::spawn_local(run(url, subscription, on_event, stopped));
        Self { _stop: stop }
    }
}

/// Delays between attempts: 1 s, doubling to 15 s; back to 1 s once a
/// connection has been greeted, so a server restart is noticed quickly but
/// a long outage does not hammer it.
#[derive(Debug)]
pub struct Backoff {
    next_s: u32,
}

impl Backoff {
    const FIRST_S: u32 = 1;
    const MAX_S: u32 = 15;

    pub fn new() -> Self {
        Self {
            next_s: Self::FIRST_S,
        }
    }

    pub fn next_delay_s(&mut self) -> u32 {
        let delay = self.next_s;
        self.next_s = (delay * 2).min(Self::MAX_S);
        delay
    }

    pub fn reset(&mut self) {
        self.next_s = Self::FIRST_S;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// The server sends a heartbeat every 15 s; this much silence means the
/// connection died without a close (a cable pulled, a proxy timed out).
const WATCHDOG: Duration = Duration::from_secs(40);

/// `ws://host:port/ws`, or `wss://` when the page came over HTTPS.
pub fn socket_url(page_protocol: &str, page_host: &str) -> String {
    let scheme = if page_protocol == "https:" {
        "wss"
    } else {
        "ws"
    };
    format!("{scheme}://{page_host}/ws")
}

/// Connects, follows, and reconnects on the [`Backoff`] schedule, until the
/// owner drops its [`Feed`].
async fn run(
    url: String,
    subscription: Subscription,
    mut on_event: impl FnMut(Event),
    mut stopped: oneshot::Receiver<()>,
) {
    let mut backoff = Backoff::new();
    on_event(Event::State(Connection::Connecting));
    loop {
        let session = follow(&url, &subscription, &mut backoff, &mut on_event);
        if until_stopped(session, &mut stopped).await.is_none() {
            return;
        }
        for retry_in_s in (1..=backoff.next_delay_s()).rev() {
            on_event(Event::State(Connection::Reconnecting { retry_in_s }));
            let second = gloo_timers::future::sleep(Duration::from_secs(1));
            if until_stopped(second, &mut stopped).await.is_none() {
                return;
            }
        }
        on_event(Event::State(Connection::Reconnecting { retry_in_s: 0 }));
    }
}

/// One connection, from opening it to its end: closed, failed, or silent
/// for longer than the watchdog allows.
async fn follow(
    url: &str,
    subscription: &Subscription,
    backoff: &mut Backoff,
    on_event: &mut impl FnMut(Event),
) {
    let mut socket = match WebSocket::open(url) {
        Ok(socket) => socket,
        Err(e) => {
            leptos::logging::warn!("cannot open {url}: {e}");
            return;
        }
    };
    // Sending waits for the socket to open, so the watchdog covers a
    // connection that never completes as well as one that falls silent.
    if let Some(request) = subscription.request() {
        match within_watchdog(socket.send(Message::Text(request))).await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                leptos::logging::warn!("cannot subscribe on {url}: {e}");
                return;
            }
            None => return,
        }
    }
    loop {
        let Some(Some(Ok(frame))) = within_watchdog(socket.next()).await else {
            return;
        };
        let Message::Text(text) = frame else {
            continue;
        };
        match serde_json::from_str::<ServerMessage>(&text) {
            Ok(message) => {
                if let ServerMessage::Hello { .. } = message {
                    backoff.reset();
                    on_event(Event::State(Connection::Live));
                }
                on_event(Event::Frame(message));
            }
            // A newer server may add frame types; skip them.
            Err(e) => leptos::logging::warn!("unreadable frame on {url}: {e}"),
        }
    }
}

/// `work`'s output, or `None` when [`WATCHDOG`] passes first.
async fn within_watchdog<T>(work: impl Future<Output = T>) -> Option<T> {
    let silence = gloo_timers::future::sleep(WATCHDOG);
    futures::pin_mut!(work, silence);
    match future::select(work, silence).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => {
            leptos::logging::warn!("nothing on /ws for {} s; reconnecting", WATCHDOG.as_secs());
            None
        }
    }
}

/// `work`'s output, or `None` once the feed's owner has dropped it.
async fn until_stopped<T>(
    work: impl Future<Output = T>,
    stopped: &mut oneshot::Receiver<()>,
) -> Option<T> {
    futures::pin_mut!(work);
    // The stop is polled first: a dropped feed reports nothing more, even
    // with frames already waiting.
    match future::select(stopped, work).await {
        Either::Left(_) => None,
        Either::Right((output, _)) => Some(output),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delays(backoff: &mut Backoff, attempts: usize) -> Vec<u32> {
        (0..attempts).map(|_| backoff.next_delay_s()).collect()
    }

    #[test]
    fn backoff_doubles_to_fifteen_seconds_and_resets() {
        let mut backoff = Backoff::new();
        assert_eq!(delays(&mut backoff, 7), [1, 2, 4, 8, 15, 15, 15]);
        backoff.reset();
        assert_eq!(backoff.next_delay_s(), 1);
    }

    #[test]
    fn a_greeting_between_failures_starts_the_schedule_over() {
        let mut backoff = Backoff::new();
        assert_eq!(delays(&mut backoff, 3), [1, 2, 4]);
        backoff.reset();
        assert_eq!(delays(&mut backoff, 3), [1, 2, 4]);
    }

    #[test]
    fn socket_follows_the_page_scheme_and_host() {
        assert_eq!(
            socket_url("http:", "yard.local:8080"),
            "ws://yard.local:8080/ws"
        );
        assert_eq!(
            socket_url("https:", "trackside.example"),
            "wss://trackside.example/ws"
        );
    }

    #[test]
    fn only_a_chosen_set_of_channels_is_asked_for() {
        assert_eq!(Subscription::AllChannels.request(), None);
        let chosen = Subscription::Channels(vec!["T101/relay_voltage".into(), "T2*/*".into()]);
        assert_eq!(
            chosen.request().as_deref(),
            Some(r#"{"type":"subscribe","channels":["T101/relay_voltage","T2*/*"]}"#)
        );
    }

    #[test]
    fn pill_labels() {
        let cases = [
            (Connection::Connecting, "connecting", "Connecting…"),
            (Connection::Live, "live", "Live"),
            (
                Connection::Reconnecting { retry_in_s: 4 },
                "reconnecting",
                "Reconnecting in 4 s",
            ),
            (
                Connection::Reconnecting { retry_in_s: 0 },
                "reconnecting",
                "Reconnecting…",
            ),
        ];
        for (state, attr, label) in cases {
            assert_eq!((state.as_str(), state.label().as_str()), (attr, label));
        }
    }
}
