//! Exceptions: the page that lists, filters and acknowledges them.
//!
//! The app loads the list at start and after every (re)connection or lag of
//! the live feed, since exception frames missed are not replayed; the feed's
//! `exception` frames keep it current in between. What the app believes
//! (merging, order, filters) is the model's (`model.rs`); this module and
//! the acknowledge dialog (`ack_dialog.rs`) only show it and act on it.
//! The `data-*` attributes are the browser tests' hooks (frontend/README.md).

mod ack_dialog;
mod flood;
mod linked;
mod mix;
mod model;
mod shelving;

use leptos::prelude::*;
use trackside_wire::{ExceptionInfo, Priority, Role, Severity, YardInfo};

use self::ack_dialog::AckDialog;
use self::flood::{FloodBanner, GroupAckDialog, GroupSummary};
use self::linked::{Linked, LinkedHistory, LinkedNotice};
use self::mix::PriorityMixPanel;
pub use self::model::Exceptions;
use self::model::{Filter, GroupRow, Row, Show, progress};
use self::shelving::{ShelveDialog, ShelvesPanel, time_left};
use crate::api;
use crate::session::Session;
use crate::time::{Clock, format_age, utc_beside, utc_timestamp, yard_time};

/// How far back the page looks for exceptions that are already closed.
const RECENT_MS: i64 = 24 * 3600 * 1000;

/// Loads the open exceptions and the last day's into `exceptions`; a
/// failure is kept for the page to show, and the next (re)connection of
/// the feed tries again.
pub fn load(exceptions: Exceptions, now_ms: i64) {
    leptos::task::spawn_local(async move {
        let recent = format!("/api/exceptions?from={}&limit=2000", now_ms - RECENT_MS);
        let (open, recent) = futures::join!(
            api::exceptions("/api/exceptions?open=true&limit=5000"),
            api::exceptions(&recent)
        );
        exceptions.loaded(open.and_then(|mut open| {
            open.extend(recent?);
            Ok(open)
        }));
        // The floods of the same day: the banner, and a flood on.
        if let Ok(floods) = api::floods(now_ms - RECENT_MS, now_ms + 60_000).await {
            exceptions.floods_loaded(floods);
        }
    });
}

/// What decides whether a row is drawn again.
#[derive(Clone, PartialEq, Eq, Hash)]
enum RowKey {
    One(ExceptionKey),
    Group(i64, String, Vec<ExceptionKey>),
}

type ExceptionKey = (i64, (i32, i64, i64, bool), bool, bool, Option<i64>);

fn exception_key(e: &ExceptionInfo) -> ExceptionKey {
    (e.id, progress(e), e.open, e.stored, e.shelf)
}

fn row_key(row: &Row) -> RowKey {
    match row {
        Row::One(e) => RowKey::One(exception_key(e)),
        Row::Group(g) => RowKey::Group(
            g.flood,
            g.key.clone(),
            g.members.iter().map(exception_key).collect(),
        ),
    }
}

#[component]
pub fn ExceptionsPage(
    exceptions: Exceptions,
    clock: Clock,
    yard: RwSignal<Option<YardInfo>>,
) -> impl IntoView {
    let show = RwSignal::new(Show::Open);
    let severity = RwSignal::new(None::<Severity>);
    let priority = RwSignal::new(None::<Priority>);
    let circuit = RwSignal::new(String::new());
    let acknowledging = RwSignal::new(None::<ExceptionInfo>);
    let shelving = RwSignal::new(None::<ExceptionInfo>);
    let shelves_changed = RwSignal::new(0u64);
    let unshelve_error = RwSignal::new(None::<String>);
    let zone = Memo::new(move |_| yard.with(|y| y.as_ref().map(|y| y.timezone.clone())));
    let shelved = Memo::new(move |_| {
        exceptions
            .filtered(&Filter {
                show: Show::Shelved,
                severity: None,
                priority: None,
                circuit: String::new(),
            })
            .iter()
            .filter_map(|e| e.shelf.map(|shelf| (e.id, shelf)))
            .collect::<Vec<_>>()
    });
    let filter = Memo::new(move |_| Filter {
        show: show.get(),
        severity: severity.get(),
        priority: priority.get(),
        circuit: circuit.get(),
    });
    let list = Memo::new(move |_| exceptions.filtered(&filter.get()));
    let rows = Memo::new(move |_| model::rows(list.get()));
    let expanded = RwSignal::new(std::collections::BTreeSet::<(i64, String)>::new());
    // `?flood=<id>` (the link in a flood's summaries): its groups open; so
    // does the group of the exception `?id=<id>` names (linked.rs).
    let query = leptos_router::hooks::use_query_map();
    let linked_exception = Linked::new(exceptions, query);
    let listed = Memo::new(move |_| {
        linked_exception
            .id
            .get()
            .is_some_and(|id| list.with(|l| l.iter().any(|e| e.id == id)))
    });
    let linked = Memo::new(move |_| {
        query
            .with(|q| q.get("flood").and_then(|f| f.parse::<i64>().ok()))
            .or_else(|| {
                let id = linked_exception.id.get()?;
                list.with(|l| {
                    l.iter()
                        .find(|e| e.id == id)?
                        .flood
                        .as_ref()
                        .map(|f| f.flood)
                })
            })
    });
    let acknowledging_group = RwSignal::new(None::<GroupRow>);
    let session = expect_context::<Session>();

    view! {
        <main class="exceptions-page">
            <FloodBanner exceptions clock zone />
            <PriorityMixPanel />
            <section class="filters" aria-label="Filters">
                <label class="filter">
                    <span class="filter-label">"Show"</span>
                    <select
                        data-testid="filter-show"
                        on:change=move |ev| {
                            let value = event_target_value(&ev);
                            if let Some(s) = Show::ALL.into_iter().find(|s| s.value() == value) {
                                show.set(s);
                            }
                        }
                    >
                        {Show::ALL
                            .into_iter()
                            .map(|s| {
                                view! {
                                    <option value=s.value() selected=move || show.get() == s>
                                        {s.label()}
                                    </option>
                                }
                            })
                            .collect_view()}
                    </select>
                </label>
                <label class="filter">
                    <span class="filter-label">"Priority"</span>
                    <select
                        data-testid="filter-priority"
                        on:change=move |ev| priority.set(Priority::parse(&event_target_value(&ev)))
                    >
                        <option value="any">"Any"</option>
                        <option value="high">"High"</option>
                        <option value="medium">"Medium and above"</option>
                    </select>
                </label>
                <label class="filter">
                    <span class="filter-label">"Severity"</span>
                    <select
                        data-testid="filter-severity"
                        on:change=move |ev| severity.set(Severity::parse(&event_target_value(&ev)))
                    >
                        <option value="any">"Any"</option>
                        <option value="critical">"Critical"</option>
                        <option value="major">"Major and above"</option>
                        <option value="warning">"Warning and above"</option>
                    </select>
                </label>
                <label class="filter">
                    <span class="filter-label">"Circuit or gateway"</span>
                    <input
                        type="search"
                        data-testid="filter-circuit"
                        placeholder="e.g. T101"
                        prop:value=move || circuit.get()
                        on:input=move |ev| circuit.set(event_target_value(&ev))
                    />
                </label>
                <p class="shown" aria-live="polite">
                    {move || match list.with(Vec::len) {
                        1 => "1 exception".to_owned(),
                        n => format!("{n} exceptions"),
                    }}
                </p>
            </section>
            <Show when=move || !session.may(Role::Operator)>
                <p class="role-note" data-testid="view-only">
                    "You can view exceptions; acknowledging them needs the operator role."
                </p>
            </Show>
            {move || {
                exceptions
                    .failure()
                    .map(|failure| {
                        view! {
                            <div class="notice problem" role="alert">
                                <p class="notice-title">"Cannot load the exceptions"</p>
                                <p class="notice-text">{failure.to_string()}</p>
                            </div>
                        }
                    })
            }}
            <Show when=move || show.get() == Show::Shelved>
                <ShelvesPanel clock zone shelved changed=shelves_changed />
            </Show>
            {move || unshelve_error.get().map(|message| view! {
                <p class="form-error" role="alert" data-testid="row-unshelve-error">{message}</p>
            })}
            <Show when=move || list.with(Vec::is_empty)>
                <div class="notice empty" role="status" data-testid="exceptions-empty">
                    <p class="notice-title">
                        {move || if show.get() == Show::Open { "No open exceptions" } else { "Nothing matches" }}
                    </p>
                    <p class="notice-text">
                        {move || if show.get() == Show::Open {
                            "All clear. New exceptions appear here the moment they are raised."
                        } else {
                            "Change the filters above to see more."
                        }}
                    </p>
                </div>
            </Show>
            <LinkedNotice
                linked=linked_exception
                listed
                clock
                zone
                actions=RowActions {
                    acknowledging,
                    shelving,
                    shelves_changed,
                    unshelve_error,
                }
            />
            <ul class="exception-list" data-testid="exceptions-list">
                <For
                    each=move || rows.get()
                    key=row_key
                    children=move |row| {
                        let actions = RowActions {
                            acknowledging,
                            shelving,
                            shelves_changed,
                            unshelve_error,
                        };
                        match row {
                            Row::One(e) => view! { <ExceptionRow exception=*e clock zone actions linked=linked_exception /> }.into_any(),
                            Row::Group(group) => {
                                let members = group.members.clone();
                                view! {
                                    <GroupSummary group zone expanded linked acknowledging=acknowledging_group>
                                        {members
                                            .into_iter()
                                            .map(|e| view! { <ExceptionRow exception=e clock zone actions linked=linked_exception /> })
                                            .collect_view()}
                                    </GroupSummary>
                                }
                                .into_any()
                            }
                        }
                    }
                />
            </ul>
            <AckDialog exceptions acknowledging />
            <GroupAckDialog exceptions clock acknowledging=acknowledging_group />
            <ShelveDialog shelving changed=shelves_changed />
        </main>
    }
}

/// The diagram replaying the five minutes around `at`.
pub fn replay_href(at: i64) -> String {
    format!(
        "/diagram?{}",
        crate::diagram::model::ReplayQuery::around(at).to_query()
    )
}

/// What a row's buttons act on.
#[derive(Clone, Copy)]
struct RowActions {
    acknowledging: RwSignal<Option<ExceptionInfo>>,
    shelving: RwSignal<Option<ExceptionInfo>>,
    shelves_changed: RwSignal<u64>,
    unshelve_error: RwSignal<Option<String>>,
}

#[component]
fn ExceptionRow(
    exception: ExceptionInfo,
    clock: Clock,
    zone: Memo<Option<String>>,
    actions: RowActions,
    /// The exception a link named: highlighted, scrolled to and open.
    linked: Linked,
) -> impl IntoView {
    let RowActions {
        acknowledging,
        shelving,
        shelves_changed,
        unshelve_error,
    } = actions;
    let e = exception.clone();
    let state = match (e.active, e.acknowledged) {
        (true, false) => "active-unacknowledged",
        (false, false) => "cleared-unacknowledged",
        (true, true) => "active-acknowledged",
        (false, true) => "closed",
    };
    let place = e.circuit.clone().unwrap_or_else(|| e.subject.clone());
    let what = match (&e.circuit, e.subject.split_once('/')) {
        (Some(_), Some((_, parameter))) => format!("{} · {}", e.kind.label(), parameter),
        _ => e.kind.label().to_owned(),
    };
    let raised_at = e.raised_at;
    let since = move || format!("Raised {}", format_age(clock.now() - raised_at));
    let repeats = (e.occurrences > 1).then(|| format!(" · {}×", e.occurrences));
    let cleared = e
        .cleared_at
        .filter(|_| !e.active)
        .map(|at| move || format!("cleared {}", format_age(clock.now() - at)));
    let acked = e.acked_at.map(|at| {
        let by = e.acked_by.clone().unwrap_or_default();
        let comment = e.ack_comment.clone().unwrap_or_default();
        view! {
            <p class="ack-note">
                {move || format!("Acknowledged by {by}, {}: ", format_age(clock.now() - at))}
                <q>{comment.clone()}</q>
            </p>
        }
    });
    // Acknowledging needs the operator role; the server refuses it to
    // anyone else, and the button is not offered. An acknowledgement is an
    // operator's record: it waits for the database, like the exception.
    let may_ack = expect_context::<Session>().may(Role::Operator);
    let can_ack = e.open && !e.acknowledged && e.stored && may_ack;
    let can_shelve = e.open && e.shelf.is_none() && e.stored && may_ack;
    let for_dialog = exception.clone();
    let for_shelving = exception.clone();
    // A closed one keeps the shelf it had; only an open one is hidden.
    let shelf = e.shelf.zip(e.shelved_until).filter(|_| e.open);
    let id = e.id;
    let is_linked = move || linked.is(id);
    let node = NodeRef::<leptos::html::Li>::new();
    if linked.id.get_untracked() == Some(id) {
        linked::scroll_once(linked, node);
    }
    view! {
        <li
            node_ref=node
            class="exception"
            class:linked=is_linked
            data-linked=move || is_linked().to_string()
            data-exception-id=e.id
            data-exception-state=state
            data-severity=e.severity.as_str()
            data-priority=e.priority.as_str()
            data-suppressed=e.suppressed.to_string()
            data-shelved=shelf.is_some().to_string()
            data-active=e.active.to_string()
            data-acknowledged=e.acknowledged.to_string()
            data-stored=e.stored.to_string()
        >
            <div class="badges">
                <span
                    class="priority-badge"
                    data-testid="priority"
                    title=format!(
                        "{} priority: {} on a {} circuit{}",
                        e.priority.label(),
                        e.severity.as_str(),
                        e.criticality.label().to_lowercase(),
                        if e.escalation > 0 {
                            format!(", escalated {}× (raised as {})", e.escalation, e.base_priority.as_str())
                        } else {
                            String::new()
                        }
                    )
                >
                    {e.priority.label().to_uppercase()}
                </span>
                <span class="severity-badge">{e.severity.as_str().to_uppercase()}</span>
            </div>
            <div class="exception-main">
                <p class="exception-title">
                    <span class="place">{place}</span>
                    <span class="what">{what}</span>
                </p>
                <p class="exception-message">{e.message.clone()}</p>
                <p class="exception-meta">
                    <span class="since" title=format!("Raised {}", utc_timestamp(raised_at))>{since}</span>
                    {repeats}
                    {cleared.map(|c| view! { <span class="cleared">" · "{c}</span> })}
                </p>
                {acked}
                <Show when=is_linked>
                    <LinkedHistory linked zone />
                </Show>
            </div>
            <div class="exception-state">
                <span class="state-chip" class:active=e.active>
                    {if e.active { "ACTIVE" } else { "CLEARED" }}
                </span>
                <span class="ack-chip" class:unacked=!e.acknowledged>
                    {if e.acknowledged { "ACKNOWLEDGED" } else { "UNACKNOWLEDGED" }}
                </span>
                {(e.escalation > 0).then(|| view! {
                    <span
                        class="escalated-chip"
                        data-testid="escalated"
                        title="Nobody acknowledged it in time: its priority rose and it was announced again."
                    >
                        {format!("ESCALATED ×{}", e.escalation)}
                    </span>
                })}
                {e.suppressed.then(|| view! {
                    <span
                        class="suppressed-chip"
                        data-testid="suppressed"
                        title="Raised inside a maintenance window: recorded, but it does not sound or notify. If still active when the window ends it is raised normally."
                    >
                        "SUPPRESSED · MAINTENANCE"
                    </span>
                })}
                {shelf.map(|(_, until)| view! {
                    <span
                        class="shelved-chip"
                        data-testid="shelved"
                        title=format!(
                            "Shelved by an operator until {}: recorded, but it does not sound, count or notify. Shown again (and announced if still active) when the shelf runs out. See who and why under Show: Shelved.",
                            utc_beside(until)
                        )
                    >
                        {move || format!(
                            "SHELVED · until {} · {}",
                            zone.with(|z| yard_time(until, z.as_deref())),
                            time_left(until - clock.now())
                        )}
                    </span>
                })}
                {(!e.stored).then(|| view! {
                    <span
                        class="unstored-chip"
                        data-testid="not-stored"
                        title="The database is unreachable: the server holds this alarm and stores it when the database is back. It can be acknowledged once stored."
                    >
                        "NOT YET STORED"
                    </span>
                })}
                <a
                    class="replay-link"
                    data-testid="exception-replay"
                    href=replay_href(raised_at)
                    title="Replay the yard in the five minutes around the raise"
                >
                    "Replay ▸"
                </a>
                {can_ack.then(|| view! {
                    <button
                        class="ack-button"
                        data-testid="ack-open"
                        on:click=move |_| acknowledging.set(Some(for_dialog.clone()))
                    >
                        "Acknowledge…"
                    </button>
                })}
                {can_shelve.then(|| view! {
                    <button
                        class="secondary shelve-button"
                        data-testid="shelve-open"
                        title="Quiet it for a while, with a reason: it stays recorded and listed"
                        on:click=move |_| shelving.set(Some(for_shelving.clone()))
                    >
                        "Shelve…"
                    </button>
                })}
                {shelf.filter(|_| may_ack).map(|(id, _)| view! {
                    <button
                        class="secondary"
                        data-testid="row-unshelve"
                        on:click=move |_| shelving::unshelve(id, shelves_changed, unshelve_error)
                    >
                        "Unshelve"
                    </button>
                })}
            </div>
        </li>
    }
}
