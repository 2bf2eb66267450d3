//! Alarm floods on the page: the banner while one is on, a flood group's
//! summary row (expanding to its members), and acknowledging a group's
//! members together. What a group is, and which rows it gathers, is the
//! model's (`model::rows`).

use std::collections::BTreeSet;

use leptos::prelude::*;
use trackside_wire::{GroupAckRequest, Role};

use super::ack_dialog::CommentDialog;
use super::model::{Exceptions, GroupRow};
use crate::api;
use crate::session::Session;
use crate::time::yard_time;
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
    move || {
        acknowledging.get().map(|group| {
            let (flood, key) = (group.flood, group.key.clone());
            let send = move |comment: String| {
                let request = GroupAckRequest {
                    group: key.clone(),
                    comment,
                };
                async move {
                    match api::acknowledge_group(flood, &request).await {
                        Ok(_) => {
                            // The live feed brings each acknowledgement; a
                            // reload makes sure of them.
                            super::load(exceptions, clock.now());
                            Ok(())
                        }
                        Err(failure) => Err(crate::api::refusal_text("acknowledged", &failure)),
                    }
                }
            };
            view! {
                <CommentDialog
                    prefix="group-ack"
                    title="Acknowledge the group"
                    action="Acknowledge all"
                    busy_label="Acknowledging…"
                    on_close=Callback::new(move |()| acknowledging.set(None))
                    send
                >
                    <strong>{group.summary.clone()}</strong>
                    {format!(
                        " — {} unacknowledged will be acknowledged, each recorded under your name.",
                        group.unacknowledged
                    )}
                </CommentDialog>
            }
        })
    }
}
