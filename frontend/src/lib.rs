//! Trackside's operator app: a live board of a yard's track circuits, and
//! their history.
//!
//! Data comes from two places that the board merges: a snapshot over HTTP
//! (`/api/yard`, `/api/channels`) and the live feed over a WebSocket
//! (`/ws`). The snapshot is fetched at load and again whenever the feed
//! (re)connects, so nothing missed while disconnected stays stale.

mod api;
mod board;
mod exceptions;
mod feed;
mod header;
mod history;
mod perf;
mod time;
mod uplot;

use leptos::prelude::*;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;
use trackside_wire::{ServerMessage, YardInfo};

use crate::api::ApiFailure;
use crate::board::{Board, BoardPage};
use crate::exceptions::{Exceptions, ExceptionsPage};
use crate::feed::{Connection, Event, Feed, Subscription};
use crate::header::Header;
use crate::history::HistoryPage;
use crate::time::Clock;

#[component]
pub fn App() -> impl IntoView {
    let board = Board::new();
    let clock = Clock::start();
    let connection = RwSignal::new(Connection::Connecting);
    // The last yard description that loaded: a later failed refresh must
    // not blank the header's name and clock.
    let yard = RwSignal::new(None::<YardInfo>);

    let exceptions = Exceptions::new();

    let snapshot = LocalResource::new(move || load_snapshot(board, clock, yard));
    // After a gap in the feed, what it did not say is fetched again.
    let catch_up = move || {
        snapshot.refetch();
        crate::exceptions::load(exceptions, js_sys::Date::now() as i64);
    };
    let feed = Feed::open(Subscription::AllChannels, move |event| match event {
        Event::State(state) => connection.set(state),
        // Every greeting, the first included: readings that arrived between
        // the snapshot and the subscription would otherwise be missing, and
        // a channel that reports only on change (a relay) could show a
        // wrong state until its next change.
        Event::Frame(ServerMessage::Hello { server_time }) => {
            clock.sync(server_time);
            catch_up();
        }
        Event::Frame(ServerMessage::Heartbeat { server_time }) => clock.sync(server_time),
        Event::Frame(ServerMessage::Readings { readings }) => {
            // Only the channel list says which gateway a new channel
            // belongs to.
            if board.merge_readings(&readings) {
                snapshot.refetch();
            }
        }
        // The server sends every channel's latest value right after this,
        // but exception frames missed are not replayed.
        Event::Frame(ServerMessage::Lagged { .. }) => catch_up(),
        Event::Frame(ServerMessage::Exception(event)) => exceptions.apply(*event),
    });
    // The app lives as long as the page, and its feed with it.
    on_cleanup(move || drop(feed));

    // The pages share the header, the snapshot and the live feed; each
    // page is one route here and one link in `header::Header`.
    view! {
        <Router>
            <Header yard clock board connection exceptions />
            <Routes fallback=|| view! { <NotFound /> }>
                <Route
                    path=path!("/")
                    view=move || view! { <BoardPage board clock exceptions snapshot /> }
                />
                <Route path=path!("/history") view=move || view! { <HistoryPage board yard clock /> } />
                <Route path=path!("/exceptions") view=move || view! { <ExceptionsPage exceptions clock /> } />
            </Routes>
        </Router>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    view! {
        <main class="board">
            <div class="notice" role="status">
                <p class="notice-title">"No such page"</p>
                <p class="notice-text">"Use the links at the top: Board, History or Exceptions."</p>
            </div>
        </main>
    }
}

/// Fetches the yard and the channel list together and merges what arrived;
/// the channels are still merged when only the yard failed.
async fn load_snapshot(
    board: Board,
    clock: Clock,
    yard: RwSignal<Option<YardInfo>>,
) -> Result<(), ApiFailure> {
    let (info, channels) = futures::join!(api::yard(), api::channels());
    let merged = channels.map(|list| board.merge_snapshot(list));
    let info = info?;
    clock.sync(info.server_time);
    yard.set(Some(info));
    merged
}
