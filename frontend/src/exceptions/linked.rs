//! `?id=N`: the link in an exception's e-mail and chat messages.
//!
//! Whoever follows it wants that one exception, not the list: the row is
//! scrolled to, highlighted and opened to its history (its flood group,
//! if it is in one, opens too). By the time the link is followed the
//! exception may be closed and gone from the list, or hidden by the page's
//! filters; then it is fetched on its own and shown above the list with
//! what became of it, so the link never lands on nothing.

use leptos::prelude::*;
use leptos_router::params::ParamsMap;
use trackside_wire::{ExceptionDetail, TransitionInfo};

use super::{ExceptionRow, Exceptions, RowActions};
use crate::api::{self, ApiFailure};
use crate::time::yard_time;
use crate::time::{Clock, utc_beside};

type Answer = Option<Result<ExceptionDetail, ApiFailure>>;

/// The exception a link named, and its history as fetched.
#[derive(Clone, Copy)]
pub struct Linked {
    pub id: Memo<Option<i64>>,
    detail: LocalResource<Answer>,
    exceptions: Exceptions,
    /// Scrolled to once: a row drawn again (a live update) must not pull
    /// the page back while the operator reads elsewhere.
    scrolled: RwSignal<bool>,
}

impl Linked {
    pub fn new(exceptions: Exceptions, query: Memo<ParamsMap>) -> Self {
        let id =
            Memo::new(move |_| query.with(|q| q.get("id").and_then(|i| i.parse::<i64>().ok())));
        // Fetched again whenever the app learns of a change to it, so the
        // history shown grows with the row.
        let version = Memo::new(move |_| {
            id.get()
                .and_then(|id| exceptions.get(id))
                .map(|e| (super::model::progress(&e), e.open, e.shelf))
        });
        let detail = LocalResource::new(move || {
            let id = id.get();
            version.track();
            async move {
                match id {
                    Some(id) => Some(api::exception(id).await),
                    None => None,
                }
            }
        });
        Self {
            id,
            detail,
            exceptions,
            scrolled: RwSignal::new(false),
        }
    }

    /// Whether `id` is the linked exception (tracked).
    pub fn is(&self, id: i64) -> bool {
        self.id.get() == Some(id)
    }

    fn detail(&self) -> Answer {
        self.detail.get().flatten()
    }
}

/// Scrolls to the linked row once it is drawn in the whole list, the
/// first time only: rows above it may still arrive before then.
pub fn scroll_once(linked: Linked, node: NodeRef<leptos::html::Li>) {
    Effect::new(move |_| {
        if let Some(row) = node.get()
            && linked.exceptions.whole()
            && !linked.scrolled.get_untracked()
        {
            linked.scrolled.set(true);
            // Once laid out: the list inserts its rows after drawing them.
            request_animation_frame(move || {
                let options = web_sys::ScrollIntoViewOptions::new();
                options.set_block(web_sys::ScrollLogicalPosition::Center);
                row.scroll_into_view_with_scroll_into_view_options(&options);
            });
        }
    });
}

/// The linked exception's history, oldest first, inside its row.
#[component]
pub fn LinkedHistory(linked: Linked, zone: Memo<Option<String>>) -> impl IntoView {
    move || match linked.detail() {
        None => view! { <p class="muted history-state">"Loading its history…"</p> }.into_any(),
        Some(Err(failure)) => view! {
            <p class="form-error history-state" role="alert">
                {format!("Its history cannot be shown: {failure}")}
            </p>
        }
        .into_any(),
        Some(Ok(detail)) => view! {
            <ol class="exception-history" data-testid="exception-history">
                {detail
                    .transitions
                    .into_iter()
                    .map(|t| view! { <Transition transition=t zone /> })
                    .collect_view()}
            </ol>
        }
        .into_any(),
    }
}

#[component]
fn Transition(transition: TransitionInfo, zone: Memo<Option<String>>) -> impl IntoView {
    let at = transition.at;
    let kind = transition.kind.as_str();
    view! {
        <li class="transition" data-kind=kind>
            <time title=utc_beside(at)>{move || zone.with(|z| yard_time(at, z.as_deref()))}</time>
            <span class="transition-kind">{kind.to_uppercase()}</span>
            <span class="transition-message">{transition.message}</span>
            {transition.comment.map(|c| view! { <q class="transition-comment">{c}</q> })}
        </li>
    }
}

/// Above the list: the linked exception when the list does not show it,
/// with what became of it. `listed`: the list shows it now (tracked).
#[component]
pub fn LinkedNotice(
    linked: Linked,
    listed: Memo<bool>,
    clock: Clock,
    zone: Memo<Option<String>>,
    actions: RowActions,
) -> impl IntoView {
    move || {
        let id = linked.id.get()?;
        if listed.get() {
            return None;
        }
        let close = view! {
            <a class="notice-action" href="/exceptions" data-testid="linked-close">"Show the list only"</a>
        };
        let body = match linked.detail() {
            None => view! {
                <p class="notice-title">{format!("Looking up exception #{id}…")}</p>
            }
            .into_any(),
            Some(Err(ApiFailure::Rejected { status: 404, .. })) => view! {
                <p class="notice-title">{format!("There is no exception #{id}")}</p>
                <p class="notice-text">
                    "The link may be mistyped or from another Trackside server. The open exceptions are listed below."
                </p>
            }
            .into_any(),
            Some(Err(failure)) => view! {
                <p class="notice-title">{format!("Cannot show exception #{id}")}</p>
                <p class="notice-text">{failure.to_string()}</p>
            }
            .into_any(),
            Some(Ok(detail)) => {
                let e = detail.exception.clone();
                let when = move |ms: i64| {
                    zone.with(|z| format!("{} ({})", yard_time(ms, z.as_deref()), utc_beside(ms)))
                };
                let text = if e.open {
                    format!(
                        "Exception #{id} is still open, but the filters above hide it{}. Here it is:",
                        if e.shelf.is_some() { " (it is shelved)" } else { "" }
                    )
                } else {
                    let cleared = e.cleared_at.map_or(String::new(), |at| format!(" it was cleared at {}", when(at)));
                    let acked = match (e.acked_at, e.acked_by.as_deref()) {
                        (Some(at), Some(by)) => format!(" and acknowledged by {by} at {}", when(at)),
                        (Some(at), None) => format!(" and acknowledged at {}", when(at)),
                        _ => String::new(),
                    };
                    format!("Exception #{id} is no longer open —{cleared}{acked}.")
                };
                view! {
                    <p class="notice-title" data-testid="linked-state">{text}</p>
                    <ul class="exception-list">
                        <ExceptionRow exception=e clock zone actions linked />
                    </ul>
                }
                .into_any()
            }
        };
        Some(view! {
            <section class="notice linked-exception" data-testid="linked-exception" aria-label="Linked exception">
                {body}
                {close}
            </section>
        })
    }
}
