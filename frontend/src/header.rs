//! The bar across the top: which yard, what time it is there, how many
//! circuits are occupied, whether the feed is live, and who is signed in.

use leptos::prelude::*;
use leptos_router::components::A;
use trackside_wire::{Role, YardInfo};

use crate::alarm::AlarmControl;
use crate::board::Board;
use crate::exceptions::Exceptions;
use crate::feed::Connection;
use crate::session::Session;
use crate::time::{Clock, utc_time, zoned_time};

#[component]
pub fn Header(
    yard: RwSignal<Option<YardInfo>>,
    clock: Clock,
    board: Board,
    connection: RwSignal<Connection>,
    exceptions: Exceptions,
    session: Session,
) -> impl IntoView {
    let unacked = Memo::new(move |_| exceptions.unacknowledged());
    let unstored = Memo::new(move |_| exceptions.unstored());
    let admin = move || session.may(Role::Admin);
    let yard_name = move || yard.with(|y| y.as_ref().map(|y| y.name.clone()));
    view! {
        <header class="topbar">
            <div class="brand">
                <span class="wordmark">"Trackside"</span>
                <span class="yard-name" class:placeholder=move || yard_name().is_none()>
                    {move || yard_name().unwrap_or_else(|| "—".to_owned())}
                </span>
            </div>
            <nav class="nav" aria-label="Pages">
                <A href="/diagram">"Diagram"</A>
                <A href="/" exact=true>"Board"</A>
                <A href="/history">"History"</A>
                <A href="/exceptions">
                    "Exceptions"
                    <span
                        class="unacked"
                        class:any=move || { unacked.get() > 0 }
                        data-testid="unacked-count"
                        data-count=move || unacked.get()
                        title="Unacknowledged exceptions"
                    >
                        {move || unacked.get()}
                    </span>
                </A>
                {move || exceptions.flood_on().map(|flood| view! {
                    <A href="/exceptions">
                        <span
                            class="flood-chip"
                            data-testid="header-flood"
                            title=format!(
                                "An alarm flood is on: {} raises, peak {} in {} min. Alarms are grouped by cause on the exceptions page.",
                                flood.total, flood.peak, flood.window_s / 60
                            )
                        >
                            "FLOOD"
                        </span>
                    </A>
                })}
                <A href="/maintenance">"Maintenance"</A>
                <Show when=admin>
                    <A href="/admin">"Admin"</A>
                </Show>
                // A page of its own (not the app's router): the HTTP API's
                // reference, for integrators.
                <a href="/api.html" target="_blank" rel="noopener" title="The HTTP API's reference (OpenAPI), for scripts and integrations">
                    "API"
                </a>
            </nav>
            <Show when=move || { unstored.get() > 0 }>
                <div
                    class="pill warn"
                    role="status"
                    data-testid="unstored-alarms"
                    title="Alarms raised while the database is unreachable are held by the server and stored when it is back; acknowledgements wait until then."
                >
                    <span class="pill-label">
                        {move || match unstored.get() {
                            1 => "Database away: 1 alarm not yet stored".to_owned(),
                            n => format!("Database away: {n} alarms not yet stored"),
                        }}
                    </span>
                </div>
            </Show>
            <AlarmControl exceptions clock />
            <YardClock yard clock />
            <Occupancy board />
            <div
                class="pill"
                role="status"
                aria-live="polite"
                data-testid="connection-state"
                data-state=move || connection.get().as_str()
            >
                <span class="dot" aria-hidden="true"></span>
                <span class="pill-label">{move || connection.get().label()}</span>
            </div>
            <UserMenu session />
        </header>
    }
}

/// Who is signed in, with which role, and the way out.
#[component]
fn UserMenu(session: Session) -> impl IntoView {
    let me = move || session.me();
    let name = move || me().map(|m| m.name).unwrap_or_default();
    let role = move || me().map(|m| m.role.as_str()).unwrap_or_default();
    view! {
        <div class="user-menu" data-testid="user-menu">
            <span class="user-name" data-testid="user-name">{name}</span>
            <span class="role-badge" data-testid="user-role" data-role=role>{role}</span>
            // Their own e-mail alarm routes: a person's setting, beside who
            // they are rather than among the yard's pages.
            <a
                href="/settings"
                class="user-link"
                data-testid="my-alarms"
                title="Which alarms reach you by e-mail, and when"
            >
                "My alarms"
            </a>
            <button
                class="secondary sign-out"
                data-testid="sign-out"
                title="Sign out of this browser"
                on:click=move |_| session.sign_out()
            >
                "Sign out"
            </button>
        </div>
    }
}

#[component]
fn YardClock(yard: RwSignal<Option<YardInfo>>, clock: Clock) -> impl IntoView {
    let zone = move || yard.with(|y| y.as_ref().map(|y| y.timezone.clone()));
    let local = move || zone().map(|zone| (zoned_time(clock.now(), &zone), zone));
    view! {
        <div class="clocks">
            <div class="clock local">
                {move || match local() {
                    Some((Some(t), zone)) => view! {
                        <span class="clock-time">{t.time}</span>
                        <span class="clock-meta">
                            <span class="clock-zone">{t.abbreviation}</span>
                            <span class="clock-date">{format!("{} · {zone}", t.date)}</span>
                        </span>
                    }
                    .into_any(),
                    Some((None, zone)) => view! {
                        <span class="clock-time placeholder">"--:--:--"</span>
                        <span class="clock-meta">
                            <span class="clock-zone warn">"zone?"</span>
                            <span class="clock-date">{format!("Unknown time zone {zone:?}")}</span>
                        </span>
                    }
                    .into_any(),
                    None => view! {
                        <span class="clock-time placeholder">"--:--:--"</span>
                        <span class="clock-meta">
                            <span class="clock-zone">"yard"</span>
                            <span class="clock-date">"time zone loading"</span>
                        </span>
                    }
                    .into_any(),
                }}
            </div>
            <div class="clock utc">
                <span class="clock-time">{move || utc_time(clock.now())}</span>
                <span class="clock-meta">
                    <span class="clock-zone">"UTC"</span>
                </span>
            </div>
        </div>
    }
}

#[component]
fn Occupancy(board: Board) -> impl IntoView {
    let counts = Memo::new(move |_| board.occupancy());
    view! {
        <div class="occupancy" class:any=move || { counts.get().0 > 0 }>
            <span class="occupied-count">{move || counts.get().0}</span>
            <span class="total">{move || format!("/ {}", counts.get().1)}</span>
            <span class="occupancy-label">"occupied"</span>
        </div>
    }
}
