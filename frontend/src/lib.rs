//! Trackside's operator app: a live board of a yard's track circuits, and
//! their history.
//!
//! Nothing shows before the server says who is signed in (`session`): the
//! sign-in form, a forced password change, or the workspace below, which
//! opens the live feed and closes it again when the session ends.
//!
//! Data comes from two places that the board merges: a snapshot over HTTP
//! (`/api/yard`, `/api/channels`) and the live feed over a WebSocket
//! (`/ws`). The snapshot is fetched at load and again whenever the feed
//! (re)connects, so nothing missed while disconnected stays stale.

mod admin;
mod alarm;
mod api;
mod board;
mod diagram;
mod download;
mod exceptions;
mod feed;
mod fields;
mod header;
mod health;
mod history;
mod maintenance;
mod perf;
mod session;
mod settings;
mod time;
mod uplot;

use leptos::prelude::*;
use leptos_router::components::{Redirect, Route, Router, Routes};
use leptos_router::path;
use trackside_wire::{ServerMessage, YardInfo};

use crate::admin::AdminPage;
use crate::api::ApiFailure;
use crate::board::{Board, BoardPage};
use crate::diagram::DiagramPage;
use crate::exceptions::{Exceptions, ExceptionsPage};
use crate::feed::{Connection, Event, Feed, Subscription};
use crate::header::Header;
use crate::health::{Health, HealthPage};
use crate::history::HistoryPage;
use crate::maintenance::{Maintenance, MaintenancePage};
use crate::session::{ChoosePasswordPage, Phase, Session, SignInPage, State};
use crate::time::Clock;

#[component]
pub fn App() -> impl IntoView {
    let session = Session::start();
    provide_context(session);
    let phase = Memo::new(move |_| session.phase());
    move || match phase.get() {
        Phase::Checking => view! {
            <main class="signin-page">
                <p class="signin-card checking" role="status">"Connecting to Trackside…"</p>
            </main>
        }
        .into_any(),
        Phase::Unreachable => {
            let message = match session.state() {
                State::Unreachable(message) => message,
                _ => String::new(),
            };
            view! {
                <main class="signin-page">
                    <div class="signin-card" role="alert">
                        <p class="wordmark">"Trackside"</p>
                        <p class="form-error">{message}</p>
                        <button class="primary" on:click=move |_| {
                            leptos::task::spawn_local(session.check());
                        }>"Try again"</button>
                    </div>
                </main>
            }
            .into_any()
        }
        Phase::SignedOut => {
            let message = match session.state() {
                State::SignedOut { message } => message,
                _ => None,
            };
            view! { <SignInPage session message /> }.into_any()
        }
        Phase::ChoosePassword => view! { <ChoosePasswordPage session /> }.into_any(),
        Phase::Working => view! { <Workspace session /> }.into_any(),
    }
}

/// The signed-in app: the header, the pages, and the live feed they share.
#[component]
fn Workspace(session: Session) -> impl IntoView {
    let board = Board::new();
    let clock = Clock::start();
    let connection = RwSignal::new(Connection::Connecting);
    // The last yard description that loaded: a later failed refresh must
    // not blank the header's name and clock.
    let yard = RwSignal::new(None::<YardInfo>);

    let exceptions = Exceptions::new();
    // Shared with the cards, the diagram's panel and the health page.
    let _health = Health::start();
    // Shared with the diagram, which marks the circuits a window covers.
    let _maintenance = Maintenance::start();

    let snapshot = LocalResource::new(move || load_snapshot(board, clock, yard));
    // After a gap in the feed, what it did not say is fetched again.
    let catch_up = move || {
        snapshot.refetch();
        crate::exceptions::load(exceptions, js_sys::Date::now() as i64);
    };
    let feed = Feed::open(Subscription::AllChannels, move |event| match event {
        Event::State(state) => {
            // A feed that cannot reconnect may have lost its session:
            // asking who we are brings the sign-in form back if so.
            if matches!(state, Connection::Reconnecting { retry_in_s: 0 }) {
                leptos::task::spawn_local(async {
                    let _ = api::me().await.map_err(|failure| {
                        if let ApiFailure::Rejected {
                            status: 401,
                            message,
                        } = failure
                        {
                            session::ended(&message);
                        }
                    });
                });
            }
            connection.set(state)
        }
        Event::Frame(ServerMessage::SessionEnded { reason }) => session.end(&reason),
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
        Event::Frame(ServerMessage::Stored { exceptions: list }) => exceptions.stored(list),
        Event::Frame(ServerMessage::Flood(flood)) => exceptions.flood_changed(*flood),
    });
    // The app lives as long as the page, and its feed with it.
    on_cleanup(move || drop(feed));

    // The pages share the header, the snapshot and the live feed; each
    // page is one route here and one link in `header::Header`.
    view! {
        <Router>
            <Header yard clock board connection exceptions session />
            <Routes fallback=|| view! { <NotFound /> }>
                // After signing in at a one-time link's address.
                <Route path=path!("/signin") view=|| view! { <Redirect path="/" /> } />
                <Route path=path!("/admin") view=|| view! { <Redirect path="/admin/users" /> } />
                <Route path=path!("/admin/:tab") view=move || view! { <AdminPage clock yard /> } />
                <Route
                    path=path!("/")
                    view=move || view! { <BoardPage board clock exceptions snapshot /> }
                />
                <Route
                    path=path!("/diagram")
                    view=move || view! { <DiagramPage board exceptions clock yard /> }
                />
                <Route path=path!("/history") view=move || view! { <HistoryPage board yard clock /> } />
                <Route path=path!("/exceptions") view=move || view! { <ExceptionsPage exceptions clock yard /> } />
                <Route path=path!("/maintenance") view=move || view! { <MaintenancePage clock yard /> } />
                <Route path=path!("/health/:circuit") view=move || view! { <HealthPage clock yard /> } />
                <Route path=path!("/settings") view=move || view! { <settings::SettingsPage yard /> } />
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
                <p class="notice-text">"Use the links at the top: Diagram, Board, History, Exceptions or Maintenance."</p>
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
