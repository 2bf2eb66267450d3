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
mod header;
mod history;
mod live;
mod time;
mod uplot;

use leptos::prelude::*;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;
use trackside_wire::YardInfo;

use crate::api::ApiFailure;
use crate::board::{Board, BoardPage};
use crate::exceptions::{Exceptions, ExceptionsPage};
use crate::header::Header;
use crate::history::HistoryPage;
use crate::live::Connection;
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
    live::start(
        board,
        clock,
        connection,
        move || {
            snapshot.refetch();
            exceptions::load(exceptions, js_sys::Date::now() as i64);
        },
        move || snapshot.refetch(),
        move |event| exceptions.apply(event),
    );

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
