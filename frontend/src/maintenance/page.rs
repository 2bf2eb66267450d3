//! The maintenance page: plan a window (now or later) over circuits or a
//! gateway, see what is active, planned and recently ended with what each
//! suppressed, and end or cancel one.
//!
//! Viewers see the lists; planning and ending need the operator role, as
//! the server's rules say, and the form is not offered to others.

use leptos::prelude::*;
use trackside_wire::{MaintenanceWindowInfo, NewMaintenanceWindow, Role, WindowState, YardInfo};

use super::{Maintenance, scope};
use crate::api;
use crate::session::Session;
use crate::time::{Clock, format_age, utc_beside, wall_input, wall_to_utc, yard_time};

/// The lengths offered, in minutes, with their words; the server allows
/// at most 7 days.
const LENGTHS: [(i64, &str); 9] = [
    (30, "30 minutes"),
    (60, "1 hour"),
    (120, "2 hours"),
    (240, "4 hours"),
    (480, "8 hours"),
    (720, "12 hours (a shift)"),
    (1_440, "24 hours"),
    (4_320, "3 days"),
    (10_080, "7 days"),
];

/// The circuits field: names or patterns, split on commas and spaces.
fn circuit_list(text: &str) -> Vec<String> {
    text.split([',', ' ', ';'])
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What the form holds, checked into a request; the error says what to
/// change.
fn request(
    circuits: &str,
    gateway: &str,
    start: Option<i64>,
    length_min: i64,
    reason: &str,
    now: i64,
) -> Result<NewMaintenanceWindow, String> {
    let circuits = circuit_list(circuits);
    let gateway = Some(gateway.trim().to_owned()).filter(|g| !g.is_empty());
    if circuits.is_empty() && gateway.is_none() {
        return Err("Name the circuits (e.g. T10*, T20) or choose a gateway.".into());
    }
    let reason = reason.trim().to_owned();
    if reason.is_empty() {
        return Err("Enter a reason: the work done, and the work order if there is one.".into());
    }
    Ok(NewMaintenanceWindow {
        circuits,
        gateway,
        reason,
        starts_at: start,
        ends_at: start.unwrap_or(now) + length_min * 60_000,
    })
}

#[component]
pub fn MaintenancePage(clock: Clock, yard: RwSignal<Option<YardInfo>>) -> impl IntoView {
    let store = expect_context::<Maintenance>();
    let session = expect_context::<Session>();
    let may = move || session.may(Role::Operator);
    let zone = Memo::new(move |_| yard.with(|y| y.as_ref().map(|y| y.timezone.clone())));
    let end_error = RwSignal::new(None::<String>);
    let by_state = move |state: WindowState| {
        let mut list: Vec<MaintenanceWindowInfo> = store
            .windows()
            .into_iter()
            .filter(|w| state_at(w.starts_at, w.ends_at, clock.now()) == state)
            .collect();
        if state == WindowState::Ended {
            list.sort_by_key(|w| std::cmp::Reverse(w.ends_at));
        }
        list
    };
    let table = move |state: WindowState, title: &'static str, empty: &'static str| {
        view! {
            <section class="maintenance-section" data-testid=format!("windows-{}", state_name(state))>
                <h2 class="section-title">{title}</h2>
                {move || {
                    let list = by_state(state);
                    if list.is_empty() {
                        return view! { <p class="notice-text">{empty}</p> }.into_any();
                    }
                    view! {
                        <table class="admin-table window-table">
                            <thead>
                                <tr>
                                    <th scope="col">"Covers"</th>
                                    <th scope="col">"Work"</th>
                                    <th scope="col">"Planned by"</th>
                                    <th scope="col">"From"</th>
                                    <th scope="col">"Until"</th>
                                    <th scope="col" title="Exceptions raised under it: recorded, not announced">
                                        "Suppressed"
                                    </th>
                                    <th scope="col"><span class="visually-hidden">"Action"</span></th>
                                </tr>
                            </thead>
                            <tbody>
                                {list
                                    .into_iter()
                                    .map(|w| window_row(w, clock, zone, may(), end_error))
                                    .collect_view()}
                            </tbody>
                        </table>
                    }
                    .into_any()
                }}
            </section>
        }
    };
    view! {
        <main class="maintenance-page" data-testid="maintenance-page">
            <header class="page-head">
                <h1 class="page-title">"Maintenance windows"</h1>
                <p class="page-note">
                    "While a window holds, exceptions on its circuits (or its gateway's) are \
                     recorded as suppressed: they do not sound, count or notify. When it ends, \
                     whatever is still active is raised normally."
                </p>
            </header>
            {move || store.failure().map(|failure| view! {
                <div class="notice problem" role="alert">
                    <p class="notice-title">"Cannot load the maintenance windows"</p>
                    <p class="notice-text">{failure.to_string()}</p>
                </div>
            })}
            <Show
                when=may
                fallback=|| view! {
                    <p class="role-note" data-testid="view-only">
                        "You can view maintenance windows; planning and ending them needs the operator role."
                    </p>
                }
            >
                <PlanForm clock zone />
            </Show>
            {move || end_error.get().map(|message| view! {
                <p class="form-error" role="alert" data-testid="end-window-error">{message}</p>
            })}
            <Show
                when=move || store.loaded()
                fallback=|| view! { <p class="notice-text">"Loading maintenance windows…"</p> }
            >
                {table(WindowState::Active, "Active now", "No window holds now.")}
                {table(WindowState::Planned, "Planned", "Nothing planned.")}
                {table(WindowState::Ended, "Ended in the last 7 days", "None ended in the last 7 days.")}
            </Show>
        </main>
    }
}

/// The state at `now` on the app's clock: a planned window starts, and an
/// active one ends, without waiting for the next fetch. (Ending one early
/// or cancelling it moves its end to then.)
fn state_at(starts_at: i64, ends_at: i64, now: i64) -> WindowState {
    if now < starts_at {
        WindowState::Planned
    } else if now < ends_at {
        WindowState::Active
    } else {
        WindowState::Ended
    }
}

fn state_name(state: WindowState) -> &'static str {
    match state {
        WindowState::Planned => "planned",
        WindowState::Active => "active",
        WindowState::Ended => "ended",
    }
}

fn window_row(
    w: MaintenanceWindowInfo,
    clock: Clock,
    zone: Memo<Option<String>>,
    may: bool,
    error: RwSignal<Option<String>>,
) -> impl IntoView {
    let store = expect_context::<Maintenance>();
    let (id, starts, ends, created_at) = (w.id, w.starts_at, w.ends_at, w.created_at);
    let state = move || state_at(starts, ends, clock.now());
    let end = move |_| {
        leptos::task::spawn_local(async move {
            match api::end_window(id).await {
                Ok(_) => {
                    error.set(None);
                    store.load();
                }
                Err(failure) => error.set(Some(api::refusal_text("ended", &failure))),
            }
        });
    };
    let ended_early = w
        .ended_by
        .clone()
        .map(|by| view! { <span class="window-ended-by">{format!(" (ended by {by})")}</span> });
    view! {
        <tr data-window-id=id>
            <td class="window-scope" data-testid="window-scope">{scope(&w)}</td>
            <td class="window-reason" data-testid="window-reason">{w.reason.clone()}</td>
            <td>
                {w.created_by.clone()}
                <span class="window-since" title=utc_beside(created_at)>
                    {move || format!(", {}", format_age(clock.now() - created_at))}
                </span>
            </td>
            <td title=utc_beside(starts)>{move || zone.with(|z| yard_time(starts, z.as_deref()))}</td>
            <td title=utc_beside(ends)>
                {move || zone.with(|z| yard_time(ends, z.as_deref()))}
                {ended_early}
            </td>
            <td class="window-suppressed" data-testid="window-suppressed">{w.suppressed}</td>
            <td>
                {move || (may && state() != WindowState::Ended).then(|| view! {
                    <button class="secondary" data-testid="end-window" on:click=end>
                        {if state() == WindowState::Planned { "Cancel" } else { "End now" }}
                    </button>
                })}
            </td>
        </tr>
    }
}

#[component]
fn PlanForm(clock: Clock, zone: Memo<Option<String>>) -> impl IntoView {
    let store = expect_context::<Maintenance>();
    let gateways = LocalResource::new(api::gateways);
    let circuits = RwSignal::new(String::new());
    let gateway = RwSignal::new(String::new());
    let later = RwSignal::new(false);
    let start_text = RwSignal::new(String::new());
    let length = RwSignal::new(120i64);
    let reason = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let done = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        done.set(None);
        let now = clock.now_untracked();
        let start = if later.get_untracked() {
            let zone = zone.get_untracked().unwrap_or_else(|| "UTC".into());
            match wall_to_utc(&start_text.get_untracked(), &zone) {
                Some(ms) => Some(ms),
                None => {
                    error.set(Some(format!(
                        "Enter the start as a date and time on the yard's clock ({zone})."
                    )));
                    return;
                }
            }
        } else {
            None
        };
        let new = match request(
            &circuits.get_untracked(),
            &gateway.get_untracked(),
            start,
            length.get_untracked(),
            &reason.get_untracked(),
            now,
        ) {
            Ok(new) => new,
            Err(message) => {
                error.set(Some(message));
                return;
            }
        };
        busy.set(true);
        leptos::task::spawn_local(async move {
            match api::plan_window(&new).await {
                Ok(window) => {
                    busy.set(false);
                    error.set(None);
                    circuits.set(String::new());
                    gateway.set(String::new());
                    reason.set(String::new());
                    done.set(Some(format!(
                        "{} window over {}.",
                        if window.state == WindowState::Planned {
                            "Planned a"
                        } else {
                            "Started a"
                        },
                        scope(&window)
                    )));
                    store.load();
                }
                Err(failure) => {
                    busy.set(false);
                    error.set(Some(api::refusal_text("planned", &failure)));
                }
            }
        });
    };
    let choose_later = move |ev| {
        let on = event_target_checked(&ev);
        later.set(on);
        if on && start_text.get_untracked().is_empty() {
            // An hour from now, on the yard's clock, as a starting point.
            let zone = zone.get_untracked().unwrap_or_else(|| "UTC".into());
            if let Some(text) = wall_input(clock.now_untracked() + 3_600_000, &zone) {
                start_text.set(text);
            }
        }
    };
    view! {
        <form class="plan-window" data-testid="plan-window" on:submit=submit>
            <h2 class="section-title">"Plan a window"</h2>
            <div class="plan-grid">
                <label class="field">
                    <span>"Circuits"</span>
                    <input
                        type="text"
                        data-testid="window-circuits"
                        placeholder="e.g. T10*, T20"
                        prop:value=move || circuits.get()
                        on:input=move |ev| {
                            circuits.set(event_target_value(&ev));
                            error.set(None);
                        }
                    />
                    <small>"Names or patterns; * matches any end (T1* is T1, T10, T101…)."</small>
                </label>
                <label class="field">
                    <span>"Or a whole gateway"</span>
                    <select
                        data-testid="window-gateway"
                        on:change=move |ev| gateway.set(event_target_value(&ev))
                        prop:value=move || gateway.get()
                    >
                        <option value="">"— none —"</option>
                        {move || gateways.get().and_then(Result::ok).map(|list| {
                            list.into_iter()
                                .map(|g| view! { <option value=g.id.clone()>{g.id.clone()}</option> })
                                .collect_view()
                        })}
                    </select>
                    <small>"Every channel it feeds, and the gateway itself."</small>
                </label>
                <fieldset class="field start-choice">
                    <legend>"Starts"</legend>
                    <label class="check-field">
                        <input
                            type="radio"
                            name="window-start"
                            prop:checked=move || !later.get()
                            on:change=move |_| later.set(false)
                        />
                        " Now"
                    </label>
                    <label class="check-field">
                        <input
                            type="radio"
                            name="window-start"
                            data-testid="window-later"
                            prop:checked=move || later.get()
                            on:change=choose_later
                        />
                        " At"
                    </label>
                    <input
                        type="datetime-local"
                        data-testid="window-start"
                        disabled=move || !later.get()
                        prop:value=move || start_text.get()
                        on:input=move |ev| start_text.set(event_target_value(&ev))
                    />
                    <small>{move || format!("Yard time ({})", zone.get().unwrap_or_else(|| "UTC".into()))}</small>
                </fieldset>
                <label class="field">
                    <span>"For"</span>
                    <select
                        data-testid="window-length"
                        on:change=move |ev| {
                            if let Ok(minutes) = event_target_value(&ev).parse() {
                                length.set(minutes);
                            }
                        }
                    >
                        {LENGTHS
                            .into_iter()
                            .map(|(minutes, words)| view! {
                                <option value=minutes.to_string() selected=move || length.get() == minutes>
                                    {words}
                                </option>
                            })
                            .collect_view()}
                    </select>
                </label>
            </div>
            <label class="field">
                <span>"Work"</span>
                <textarea
                    data-testid="window-reason"
                    rows="2"
                    maxlength="500"
                    placeholder="What is done, e.g. rail grinding, work order 4711"
                    prop:value=move || reason.get()
                    on:input=move |ev| {
                        reason.set(event_target_value(&ev));
                        error.set(None);
                    }
                ></textarea>
            </label>
            {move || error.get().map(|message| view! {
                <p class="form-error" role="alert" data-testid="plan-window-error">{message}</p>
            })}
            {move || done.get().map(|message| view! {
                <p class="form-done" role="status" data-testid="plan-window-done">{message}</p>
            })}
            <div class="form-actions">
                <button type="submit" data-testid="plan-window-submit" disabled=move || busy.get()>
                    {move || match (busy.get(), later.get()) {
                        (true, _) => "Saving…",
                        (false, true) => "Plan window",
                        (false, false) => "Start window now",
                    }}
                </button>
            </div>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_a_window_or_says_what_to_change() {
        let now = 1_000_000;
        let new = request(" T10*, T20;T3 ", "", None, 60, " grinding ", now).expect("valid");
        assert_eq!(new.circuits, ["T10*", "T20", "T3"]);
        assert_eq!((new.starts_at, new.ends_at), (None, now + 3_600_000));
        assert_eq!(new.reason, "grinding");
        let later = request("", "gw-2", Some(5_000_000), 30, "x", now).expect("valid");
        assert_eq!(
            (later.gateway.as_deref(), later.ends_at),
            (Some("gw-2"), 5_000_000 + 1_800_000)
        );
        assert!(
            request(" , ", "", None, 60, "x", now)
                .unwrap_err()
                .contains("circuits")
        );
        assert!(
            request("T1", "", None, 60, "  ", now)
                .unwrap_err()
                .contains("reason")
        );
    }

    #[test]
    fn the_state_follows_the_clock() {
        assert_eq!(state_at(1_000, 2_000, 999), WindowState::Planned);
        assert_eq!(state_at(1_000, 2_000, 1_000), WindowState::Active);
        assert_eq!(state_at(1_000, 2_000, 2_000), WindowState::Ended);
    }
}
