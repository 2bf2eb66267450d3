//! Exceptions: what the app knows of them (open ones, and the last day's),
//! the exception page with its filters and the acknowledge dialog.
//!
//! The list is loaded over HTTP at start and after every (re)connection,
//! and kept current by the `exception` frames of the live feed. The `data-*`
//! attributes are the browser tests' hooks (frontend/README.md).

use std::collections::BTreeMap;

use leptos::prelude::*;
use trackside_wire::{AckRequest, ExceptionEvent, ExceptionInfo, ExceptionKind, Severity};

use crate::api::{self, ApiFailure};
use crate::time::{Clock, format_age, utc_timestamp};

/// How far back the page looks for exceptions that are already closed.
const RECENT_MS: i64 = 24 * 3600 * 1000;

#[derive(Clone, Copy)]
pub struct Exceptions {
    all: RwSignal<BTreeMap<i64, ExceptionInfo>>,
    /// Why the last load failed, while it stays failed.
    failure: RwSignal<Option<ApiFailure>>,
}

/// Grows with every transition: a snapshot that arrives after a live frame
/// must not roll an exception back.
fn progress(e: &ExceptionInfo) -> (i32, i64, i64) {
    (
        e.occurrences,
        e.last_raised_at,
        e.cleared_at.max(e.acked_at).unwrap_or(0),
    )
}

impl Default for Exceptions {
    fn default() -> Self {
        Self::new()
    }
}

impl Exceptions {
    pub fn new() -> Self {
        Self {
            all: RwSignal::new(BTreeMap::new()),
            failure: RwSignal::new(None),
        }
    }

    pub fn merge(&self, list: Vec<ExceptionInfo>) {
        self.all.update(|all| {
            for incoming in list {
                merge_one(all, incoming);
            }
        });
    }

    pub fn apply(&self, event: ExceptionEvent) {
        self.all.update(|all| merge_one(all, event.exception));
    }

    /// Open and not acknowledged (tracked): the header's counter.
    pub fn unacknowledged(&self) -> usize {
        self.all
            .with(|all| all.values().filter(|e| e.open && !e.acknowledged).count())
    }

    /// The most severe active exception of a circuit, counting its
    /// gateways being offline (tracked).
    pub fn worst_for(&self, circuit: &str, gateways: &[String]) -> Option<Severity> {
        self.all.with(|all| {
            all.values()
                .filter(|e| e.active)
                .filter(|e| {
                    e.circuit.as_deref() == Some(circuit)
                        || (e.kind == ExceptionKind::GatewayOffline
                            && gateways.contains(&e.subject))
                })
                .map(|e| e.severity)
                .max()
        })
    }

    /// Loads the open exceptions and the last day's; failures are kept for
    /// the page to show, and the next (re)connection tries again.
    pub fn load(self, now_ms: i64) {
        leptos::task::spawn_local(async move {
            let recent = format!("/api/exceptions?from={}&limit=2000", now_ms - RECENT_MS);
            let (open, recent) = futures::join!(
                api::exceptions("/api/exceptions?open=true&limit=5000"),
                api::exceptions(&recent)
            );
            match open.and_then(|open| Ok((open, recent?))) {
                Ok((open, recent)) => {
                    self.merge(open);
                    self.merge(recent);
                    self.failure.set(None);
                }
                Err(failure) => self.failure.set(Some(failure)),
            }
        });
    }
}

fn merge_one(all: &mut BTreeMap<i64, ExceptionInfo>, incoming: ExceptionInfo) {
    match all.get(&incoming.id) {
        Some(held) if progress(held) > progress(&incoming) => {}
        _ => {
            all.insert(incoming.id, incoming);
        }
    }
}

/// Which exceptions the page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Open,
    Unacknowledged,
    Active,
    All,
}

impl Show {
    const ALL: [Show; 4] = [Show::Open, Show::Unacknowledged, Show::Active, Show::All];

    fn value(self) -> &'static str {
        match self {
            Show::Open => "open",
            Show::Unacknowledged => "unacknowledged",
            Show::Active => "active",
            Show::All => "all",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Show::Open => "Open (not yet cleared and acknowledged)",
            Show::Unacknowledged => "Unacknowledged",
            Show::Active => "Active now",
            Show::All => "All of the last 24 hours",
        }
    }

    fn keeps(self, e: &ExceptionInfo) -> bool {
        match self {
            Show::Open => e.open,
            Show::Unacknowledged => e.open && !e.acknowledged,
            Show::Active => e.active,
            Show::All => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub show: Show,
    /// At least this severe.
    pub severity: Option<Severity>,
    /// Circuit or gateway name, case-insensitive prefix.
    pub circuit: String,
}

/// Unacknowledged first (active before cleared), then acknowledged active,
/// then closed; within each, the most severe, then the most recent.
pub fn state_rank(e: &ExceptionInfo) -> u8 {
    match (e.open && !e.acknowledged, e.active) {
        (true, true) => 0,
        (true, false) => 1,
        (false, true) => 2,
        (false, false) => 3,
    }
}

pub fn visible<'a>(
    all: impl Iterator<Item = &'a ExceptionInfo>,
    filter: &Filter,
) -> Vec<ExceptionInfo> {
    let needle = filter.circuit.trim().to_ascii_lowercase();
    let mut list: Vec<ExceptionInfo> = all
        .filter(|e| filter.show.keeps(e))
        .filter(|e| filter.severity.is_none_or(|min| e.severity >= min))
        .filter(|e| {
            needle.is_empty()
                || e.circuit
                    .as_deref()
                    .unwrap_or(&e.subject)
                    .to_ascii_lowercase()
                    .starts_with(&needle)
        })
        .cloned()
        .collect();
    list.sort_by(|a, b| {
        state_rank(a)
            .cmp(&state_rank(b))
            .then(b.severity.cmp(&a.severity))
            .then(b.last_raised_at.cmp(&a.last_raised_at))
            .then(b.id.cmp(&a.id))
    });
    list
}

/// The words of a failed acknowledgement, for the dialog.
fn ack_failure_text(failure: &ApiFailure) -> String {
    match failure {
        ApiFailure::Rejected { message, .. } => format!("Not acknowledged: {message}."),
        ApiFailure::Unreachable => {
            "Not acknowledged: the Trackside server cannot be reached. Check the network, then try again.".to_owned()
        }
        other => format!("Not acknowledged: {other}"),
    }
}

#[component]
pub fn ExceptionsPage(exceptions: Exceptions, clock: Clock) -> impl IntoView {
    let show = RwSignal::new(Show::Open);
    let severity = RwSignal::new(None::<Severity>);
    let circuit = RwSignal::new(String::new());
    let acknowledging = RwSignal::new(None::<ExceptionInfo>);
    let filter = Memo::new(move |_| Filter {
        show: show.get(),
        severity: severity.get(),
        circuit: circuit.get(),
    });
    let list = Memo::new(move |_| {
        exceptions
            .all
            .with(|all| visible(all.values(), &filter.get()))
    });

    view! {
        <main class="exceptions-page">
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
            {move || {
                exceptions
                    .failure
                    .get()
                    .map(|failure| {
                        view! {
                            <div class="notice problem" role="alert">
                                <p class="notice-title">"Cannot load the exceptions"</p>
                                <p class="notice-text">{failure.to_string()}</p>
                            </div>
                        }
                    })
            }}
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
            <ul class="exception-list" data-testid="exceptions-list">
                <For
                    each=move || list.get()
                    key=|e| (e.id, progress(e), e.open)
                    children=move |e| view! { <ExceptionRow exception=e clock acknowledging /> }
                />
            </ul>
            <AckDialog exceptions acknowledging />
        </main>
    }
}

#[component]
fn ExceptionRow(
    exception: ExceptionInfo,
    clock: Clock,
    acknowledging: RwSignal<Option<ExceptionInfo>>,
) -> impl IntoView {
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
    let can_ack = e.open && !e.acknowledged;
    let for_dialog = exception.clone();
    view! {
        <li
            class="exception"
            data-exception-id=e.id
            data-exception-state=state
            data-severity=e.severity.as_str()
            data-active=e.active.to_string()
            data-acknowledged=e.acknowledged.to_string()
        >
            <span class="severity-badge">{e.severity.as_str().to_uppercase()}</span>
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
            </div>
            <div class="exception-state">
                <span class="state-chip" class:active=e.active>
                    {if e.active { "ACTIVE" } else { "CLEARED" }}
                </span>
                <span class="ack-chip" class:unacked=!e.acknowledged>
                    {if e.acknowledged { "ACKNOWLEDGED" } else { "UNACKNOWLEDGED" }}
                </span>
                {can_ack.then(|| view! {
                    <button
                        class="ack-button"
                        data-testid="ack-open"
                        on:click=move |_| acknowledging.set(Some(for_dialog.clone()))
                    >
                        "Acknowledge…"
                    </button>
                })}
            </div>
        </li>
    }
}

#[component]
fn AckDialog(
    exceptions: Exceptions,
    acknowledging: RwSignal<Option<ExceptionInfo>>,
) -> impl IntoView {
    // The name stays for the session: one operator acknowledges many.
    let by = RwSignal::new(String::new());
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
        let Some(target) = acknowledging.get_untracked() else {
            return;
        };
        let request = AckRequest {
            by: by.get_untracked().trim().to_owned(),
            comment: comment.get_untracked().trim().to_owned(),
        };
        if request.by.is_empty() {
            error.set(Some(
                "Enter your name: the acknowledgement records who made it.".into(),
            ));
            return;
        }
        if request.comment.is_empty() {
            error.set(Some(
                "Enter a comment: what you found, or what happens next.".into(),
            ));
            return;
        }
        busy.set(true);
        leptos::task::spawn_local(async move {
            match api::acknowledge(target.id, &request).await {
                Ok(info) => {
                    exceptions.merge(vec![info]);
                    close();
                }
                Err(failure) => {
                    busy.set(false);
                    error.set(Some(ack_failure_text(&failure)));
                }
            }
        });
    };
    move || {
        acknowledging.get().map(|target| {
            let place = target.circuit.clone().unwrap_or_else(|| target.subject.clone());
            view! {
                <div class="modal-backdrop" on:click=move |_| close()>
                    <div
                        class="modal"
                        role="dialog"
                        aria-modal="true"
                        aria-labelledby="ack-title"
                        data-testid="ack-dialog"
                        on:click=|ev| ev.stop_propagation()
                        on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                            if ev.key() == "Escape" {
                                close();
                            }
                        }
                    >
                        <h2 id="ack-title">"Acknowledge exception"</h2>
                        <p class="modal-subject">
                            <span class="severity-badge" data-severity=target.severity.as_str()>
                                {target.severity.as_str().to_uppercase()}
                            </span>
                            <strong>{place}</strong>
                            " — "
                            {target.message.clone()}
                        </p>
                        <form on:submit=submit>
                            <label class="field">
                                <span>"Your name"</span>
                                <input
                                    type="text"
                                    data-testid="ack-by"
                                    autocomplete="name"
                                    maxlength="64"
                                    prop:value=move || by.get()
                                    on:input=move |ev| {
                                        by.set(event_target_value(&ev));
                                        error.set(None);
                                    }
                                />
                            </label>
                            <label class="field">
                                <span>"Comment"</span>
                                <textarea
                                    data-testid="ack-comment"
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
                                <p class="form-error" role="alert" data-testid="ack-error">{message}</p>
                            })}
                            <div class="modal-actions">
                                <button type="button" class="secondary" on:click=move |_| close()>
                                    "Cancel"
                                </button>
                                <button type="submit" data-testid="ack-submit" disabled=move || busy.get()>
                                    {move || if busy.get() { "Acknowledging…" } else { "Acknowledge" }}
                                </button>
                            </div>
                        </form>
                    </div>
                </div>
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(
        id: i64,
        severity: Severity,
        active: bool,
        acknowledged: bool,
        raised: i64,
    ) -> ExceptionInfo {
        ExceptionInfo {
            id,
            rule: "r".into(),
            kind: ExceptionKind::Limit,
            severity,
            subject: format!("T{id}/relay_voltage"),
            circuit: Some(format!("T{id}")),
            gateway: Some("gw".into()),
            message: "m".into(),
            value: None,
            active,
            acknowledged,
            open: active || !acknowledged,
            raised_at: raised,
            last_raised_at: raised,
            cleared_at: (!active).then_some(raised + 1),
            acked_at: acknowledged.then_some(raised + 2),
            acked_by: None,
            ack_comment: None,
            occurrences: 1,
        }
    }

    fn ids(list: &[ExceptionInfo]) -> Vec<i64> {
        list.iter().map(|e| e.id).collect()
    }

    #[test]
    fn unacknowledged_come_first_then_by_severity_then_newest() {
        let all = [
            info(1, Severity::Critical, false, true, 10), // closed
            info(2, Severity::Warning, true, false, 10),
            info(3, Severity::Critical, true, true, 10), // acknowledged, active
            info(4, Severity::Major, true, false, 10),
            info(5, Severity::Critical, false, false, 10), // cleared, unacknowledged
            info(6, Severity::Major, true, false, 20),
        ];
        let filter = Filter {
            show: Show::All,
            severity: None,
            circuit: String::new(),
        };
        assert_eq!(ids(&visible(all.iter(), &filter)), [6, 4, 2, 5, 3, 1]);
        let open = Filter {
            show: Show::Open,
            ..filter.clone()
        };
        assert_eq!(ids(&visible(all.iter(), &open)), [6, 4, 2, 5, 3]);
        let serious = Filter {
            severity: Some(Severity::Major),
            show: Show::Unacknowledged,
            ..filter.clone()
        };
        assert_eq!(ids(&visible(all.iter(), &serious)), [6, 4, 5]);
        let one = Filter {
            circuit: "t4".into(),
            ..filter
        };
        assert_eq!(ids(&visible(all.iter(), &one)), [4]);
    }

    #[test]
    fn an_older_snapshot_never_rolls_an_exception_back() {
        let mut all = BTreeMap::new();
        let raised = info(1, Severity::Major, true, false, 10);
        let mut acked = raised.clone();
        acked.acknowledged = true;
        acked.acked_at = Some(50);
        merge_one(&mut all, acked.clone());
        merge_one(&mut all, raised);
        assert_eq!(all[&1], acked);
    }
}
