//! The live feed: one WebSocket to `/ws`, reopened with backoff whenever it
//! drops, for as long as the page is open.

use futures::StreamExt;
use futures::future::Either;
use gloo_net::websocket::{Message, futures::WebSocket};
use leptos::prelude::*;
use trackside_wire::{ExceptionEvent, ServerMessage};

use crate::board::Board;
use crate::time::Clock;

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

/// `ws://host:port/ws`, or `wss://` when the page came over HTTPS.
pub fn socket_url(page_protocol: &str, page_host: &str) -> String {
    let scheme = if page_protocol == "https:" {
        "wss"
    } else {
        "ws"
    };
    format!("{scheme}://{page_host}/ws")
}

/// The server sends a heartbeat every 15 s; this much silence means the
/// connection died without a close (a cable pulled, a proxy timed out).
const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(40);

/// Runs the feed in the background. `on_greeted` runs each time the server
/// says hello, first connection included: readings that arrived between
/// the page's snapshot and the socket's subscription would otherwise be
/// missing, and a discrete channel that reports only on change (a relay)
/// could show a wrong state until its next change; it runs after a lag too,
/// since exception frames are not replayed. `on_new_channel` runs
/// when a frame names a channel the board did not know: only the channel
/// list says which gateway it belongs to. `on_exception` takes every
/// exception frame.
pub fn start(
    board: Board,
    clock: Clock,
    connection: RwSignal<Connection>,
    on_greeted: impl Fn() + 'static,
    on_new_channel: impl Fn() + 'static,
    on_exception: impl Fn(ExceptionEvent) + 'static,
) {
    let location = window().location();
    let url = socket_url(
        &location.protocol().unwrap_or_default(),
        &location.host().unwrap_or_default(),
    );
    leptos::task::spawn_local(async move {
        let mut backoff = Backoff::new();
        loop {
            match WebSocket::open(&url) {
                Ok(mut socket) => loop {
                    let next = socket.next();
                    let silence = gloo_timers::future::sleep(WATCHDOG);
                    futures::pin_mut!(next, silence);
                    let frame = match futures::future::select(next, silence).await {
                        Either::Left((Some(Ok(frame)), _)) => frame,
                        Either::Left(_) => break,
                        Either::Right(_) => {
                            leptos::logging::warn!(
                                "no frame on /ws for {} s; reconnecting",
                                WATCHDOG.as_secs()
                            );
                            break;
                        }
                    };
                    let Message::Text(text) = frame else {
                        continue;
                    };
                    match serde_json::from_str::<ServerMessage>(&text) {
                        Ok(ServerMessage::Hello { server_time }) => {
                            clock.sync(server_time);
                            connection.set(Connection::Live);
                            backoff.reset();
                            on_greeted();
                        }
                        Ok(ServerMessage::Readings { readings }) => {
                            if board.merge_readings(&readings) {
                                on_new_channel();
                            }
                        }
                        Ok(ServerMessage::Heartbeat { server_time }) => clock.sync(server_time),
                        // The server sends every subscribed channel's
                        // latest value right after this, but exception
                        // frames missed are not replayed: fetch them.
                        Ok(ServerMessage::Lagged { .. }) => on_greeted(),
                        Ok(ServerMessage::Exception(event)) => on_exception(*event),
                        // A newer server may add frame types; skip them.
                        Err(e) => leptos::logging::warn!("unreadable frame on /ws: {e}"),
                    }
                },
                Err(e) => leptos::logging::warn!("cannot open {url}: {e}"),
            }
            for retry_in_s in (1..=backoff.next_delay_s()).rev() {
                connection.set(Connection::Reconnecting { retry_in_s });
                gloo_timers::future::sleep(std::time::Duration::from_secs(1)).await;
            }
            connection.set(Connection::Reconnecting { retry_in_s: 0 });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_fifteen_seconds_and_resets() {
        let mut backoff = Backoff::new();
        let delays: Vec<u32> = (0..7).map(|_| backoff.next_delay_s()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 15, 15, 15]);
        backoff.reset();
        assert_eq!(backoff.next_delay_s(), 1);
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
