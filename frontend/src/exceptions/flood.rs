//! Alarm floods on the page: the banner while one is on, a flood group's
//! summary row (expanding to its members), and acknowledging a group's
//! members together. What a group is, and which rows it gathers, is the
//! model's (`model::rows`).

use std::collections::BTreeSet;

use leptos::prelude::*;
use trackside_wire::{GroupAckRequest, Role};

use super::model::{Exceptions, GroupRow};
use super::shelving::yard_time;
use crate::api;
use crate::session::Session;
use crate::time::{Clock, format_age};

/// Groups named in the banner.
const BANNER_GROUPS: usize = 3;

/// Says that a flood is on, how big, and what the largest groups are.
#[component]
pub fn FloodBanner(
    exceptions: Exceptions,
    clock: Clock,
    zone: Memo<Option<String>>,
) -> impl IntoView {
    move || {
        exceptions.flood_on().map(|flood| {
            let started = flood.started_at;
            let groups = flood
                .groups
                .iter()
                .take(BANNER_GROUPS)
                .map(|g| g.summary.clone())
                .collect::<Vec<_>>()
                .join("; ");
            let more = flood.groups.len().saturating_sub(BANNER_GROUPS);
            view! {
                <div class="notice flood-banner" role="alert" data-testid="flood-banner" data-flood=flood.id>
                    <p class="notice-title">
                        {format!(
                            "ALARM FLOOD · {} raises · peak {} in {} min · ",
                            flood.total,
                            flood.peak,
                            flood.window_s / 60
                        )}
                        {move || format!(
                            "since {} ({})",
                            zone.with(|z| yard_time(started, z.as_deref())),
                            format_age(clock.now() - started)
                        )}
                    </p>
                    <p class="notice-text">
                        {format!(
                            "More alarms than one operator can take in: they are grouped by cause \
                             below, and notifications summarise them. High-priority alarms still \
                             sound. Largest: {groups}{}.",
                            if more > 0 { format!(" and {more} more") } else { String::new() }
                        )}
                    </p>
                </div>
            }
        })
    }
}

/// A flood group's summary row: "14 stale channels on yard-gw02 · since
/// 03:12 · 11 active", with its members below when expanded.
#[component]
pub fn GroupSummary(
    group: GroupRow,
    zone: Memo<Option<String>>,
    expanded: RwSignal<BTreeSet<(i64, String)>>,
    /// The flood a link named: its groups start open.
    linked: Memo<Option<i64>>,
    acknowledging: RwSignal<Option<GroupRow>>,
    children: Children,
) -> impl IntoView {
    let id = (group.flood, group.key.clone());
    // Toggled from how it starts: folded, or open when linked to.
    let open = {
        let id = id.clone();
        Memo::new(move |_| expanded.with(|e| e.contains(&id)) != (linked.get() == Some(id.0)))
    };
    let toggle = move |_| {
        expanded.update(|e| {
            if !e.remove(&id) {
                e.insert(id.clone());
            }
        })
    };
    let n = group.members.len();
    let since = group.since;
    let may_ack = expect_context::<Session>().may(Role::Operator);
    let can_ack = may_ack && group.unacknowledged > 0 && group.members.iter().all(|e| e.stored);
    let for_dialog = group.clone();
    view! {
        <li
            class="exception flood-group"
            data-testid="flood-group"
            data-flood=group.flood
            data-group=group.key.clone()
            data-members=n
            data-unacknowledged=group.unacknowledged
            data-priority=group.priority.as_str()
        >
            <div class="badges">
                <span class="priority-badge" data-testid="priority">
                    {group.priority.label().to_uppercase()}
                </span>
                <span class="flood-badge" title="Raised during an alarm flood: grouped by cause">"FLOOD"</span>
            </div>
            <div class="exception-main">
                <p class="exception-title">
                    <span class="place" data-testid="flood-group-summary">{group.summary.clone()}</span>
                </p>
                <p class="exception-meta">
                    {move || format!("since {}", zone.with(|z| yard_time(since, z.as_deref())))}
                    {format!(" · {} active · {} unacknowledged", group.active, group.unacknowledged)}
                </p>
            </div>
            <div class="exception-state">
                <button
                    class="secondary"
                    data-testid="flood-group-toggle"
                    aria-expanded=move || open.get().to_string()
                    on:click=toggle
                >
                    {move || if open.get() { "Hide members ▴".to_owned() } else { format!("Show {n} ▾") }}
                </button>
                {can_ack.then(|| view! {
                    <button
                        class="ack-button"
                        data-testid="flood-group-ack"
                        on:click=move |_| acknowledging.set(Some(for_dialog.clone()))
                    >
                        {format!("Acknowledge all {}…", group.unacknowledged)}
                    </button>
                })}
            </div>
            <ul class="flood-members" data-testid="flood-members" class:hidden=move || !open.get()>
                {children()}
            </ul>
        </li>
    }
}

/// Acknowledges every unacknowledged member of a group, with one comment.
#[component]
pub fn GroupAckDialog(
    exceptions: Exceptions,
    clock: Clock,
    acknowledging: RwSignal<Option<GroupRow>>,
) -> impl IntoView {
    let session = expect_context::<Session>();
    let by = move || session.me().map(|m| m.name).unwrap_or_default();
    let comment = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let close = move || {
        acknowledging.set(None);
        comment.set(String::new());
        error.set(None);
        busy.set(false);
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(group) = acknowledging.get_untracked() else {
            return;
        };
        let request = GroupAckRequest {
            group: group.key.clone(),
            comment: comment.get_untracked().trim().to_owned(),
        };
        if request.comment.is_empty() {
            error.set(Some(
                "Enter a comment: what you found, or what happens next.".into(),
            ));
            return;
        }
        busy.set(true);
        leptos::task::spawn_local(async move {
            match api::acknowledge_group(group.flood, &request).await {
                Ok(_) => {
                    // The live feed brings each acknowledgement; a reload
                    // makes sure of them.
                    super::load(exceptions, clock.now());
                    close();
                }
                Err(failure) => {
                    busy.set(false);
                    error.set(Some(super::refusal_text("acknowledged", &failure)));
                }
            }
        });
    };
    move || {
        acknowledging.get().map(|group| {
            view! {
                <div class="modal-backdrop" on:click=move |_| close()>
                    <div
                        class="modal"
                        role="dialog"
                        aria-modal="true"
                        aria-labelledby="group-ack-title"
                        data-testid="group-ack-dialog"
                        on:click=|ev| ev.stop_propagation()
                        on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                            if ev.key() == "Escape" {
                                close();
                            }
                        }
                    >
                        <h2 id="group-ack-title">"Acknowledge the group"</h2>
                        <p class="modal-subject">
                            <strong>{group.summary.clone()}</strong>
                            {format!(
                                " — {} unacknowledged will be acknowledged, each recorded under your name.",
                                group.unacknowledged
                            )}
                        </p>
                        <form on:submit=submit>
                            <p class="ack-as">"Acknowledging as "<strong>{by}</strong></p>
                            <label class="field">
                                <span>"Comment"</span>
                                <textarea
                                    data-testid="group-ack-comment"
                                    rows="3"
                                    maxlength="2000"
                                    placeholder="What you found, or what happens next"
                                    prop:value=move || comment.get()
                                    on:input=move |ev| {
                                        comment.set(event_target_value(&ev));
                                        error.set(None);
                                    }
                                ></textarea>
                            </label>
                            {move || error.get().map(|message| view! {
                                <p class="form-error" role="alert" data-testid="group-ack-error">{message}</p>
                            })}
                            <div class="modal-actions">
                                <button type="button" class="secondary" on:click=move |_| close()>"Cancel"</button>
                                <button type="submit" data-testid="group-ack-submit" disabled=move || busy.get()>
                                    {move || if busy.get() { "Acknowledging…" } else { "Acknowledge all" }}
                                </button>
                            </div>
                        </form>
                    </div>
                </div>
            }
        })
    }
}
