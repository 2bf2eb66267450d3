//! Shelving: the dialog that shelves an exception (or its rule on its
//! circuit) for a chosen time with a reason, and the "Shelved" view's list
//! of shelves with who, why and until when, each with Unshelve.
//!
//! A shelf is for the alarm everyone already knows about; it always runs
//! out, so the dialog offers set durations (the server refuses anything
//! past its configured maximum, and the dialog shows why).

use leptos::prelude::*;
use trackside_wire::{ExceptionInfo, NewShelf, Role, ShelfInfo};

use crate::api::{self, ApiFailure};
use crate::session::Session;
use crate::time::{Clock, format_age, utc_beside, yard_time};

/// The durations offered, in seconds, with their words.
const DURATIONS: [(u64, &str); 7] = [
    (900, "15 minutes"),
    (1_800, "30 minutes"),
    (3_600, "1 hour"),
    (7_200, "2 hours"),
    (14_400, "4 hours"),
    (28_800, "8 hours"),
    (43_200, "12 hours (a shift)"),
];

/// `25 min left`, `2 h 05 min left`: to the nearest minute, and never 0
/// while the shelf holds.
pub fn time_left(ms: i64) -> String {
    let minutes = ((ms.max(0) + 30_000) / 60_000).max(i64::from(ms > 0));
    if minutes < 60 {
        format!("{minutes} min left")
    } else {
        format!("{} h {:02} min left", minutes / 60, minutes % 60)
    }
}

/// The request the dialog sends: the exception itself, or its rule on
/// every channel of its circuit.
fn request(target: &ExceptionInfo, whole_circuit: bool, reason: &str, duration_s: u64) -> NewShelf {
    let circuit = target.circuit.clone().filter(|_| whole_circuit);
    NewShelf {
        exception: circuit.is_none().then_some(target.id),
        rule: circuit.as_ref().map(|_| target.rule.clone()),
        circuit,
        reason: reason.trim().to_owned(),
        duration_s,
    }
}

#[component]
pub fn ShelveDialog(
    shelving: RwSignal<Option<ExceptionInfo>>,
    /// Bumped after a shelf is made, so the shelves' list reloads.
    changed: RwSignal<u64>,
) -> impl IntoView {
    let session = expect_context::<Session>();
    let by = move || session.me().map(|m| m.name).unwrap_or_default();
    let reason = RwSignal::new(String::new());
    let duration = RwSignal::new(3_600u64);
    let whole_circuit = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let close = move || {
        shelving.set(None);
        reason.set(String::new());
        duration.set(3_600);
        whole_circuit.set(false);
        error.set(None);
        busy.set(false);
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(target) = shelving.get_untracked() else {
            return;
        };
        let request = request(
            &target,
            whole_circuit.get_untracked(),
            &reason.get_untracked(),
            duration.get_untracked(),
        );
        if request.reason.is_empty() {
            error.set(Some(
                "Enter a reason: why it may stay quiet, and who is dealing with it.".into(),
            ));
            return;
        }
        busy.set(true);
        leptos::task::spawn_local(async move {
            match api::shelve(&request).await {
                Ok(_) => {
                    changed.update(|n| *n += 1);
                    close();
                }
                Err(failure) => {
                    busy.set(false);
                    error.set(Some(crate::api::refusal_text("shelved", &failure)));
                }
            }
        });
    };
    move || {
        shelving.get().map(|target| {
            let place = target.circuit.clone().unwrap_or_else(|| target.subject.clone());
            let circuit_choice = target.circuit.clone().map(|circuit| {
                let rule = target.rule.clone();
                view! {
                    <label class="check-field">
                        <input
                            type="checkbox"
                            data-testid="shelve-circuit"
                            prop:checked=move || whole_circuit.get()
                            on:change=move |ev| whole_circuit.set(event_target_checked(&ev))
                        />
                        {format!(" Every channel of {circuit} under rule {rule}")}
                    </label>
                }
            });
            view! {
                <div class="modal-backdrop" on:click=move |_| close()>
                    <div
                        class="modal"
                        role="dialog"
                        aria-modal="true"
                        aria-labelledby="shelve-title"
                        data-testid="shelve-dialog"
                        on:click=|ev| ev.stop_propagation()
                        on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                            if ev.key() == "Escape" {
                                close();
                            }
                        }
                    >
                        <h2 id="shelve-title">"Shelve exception"</h2>
                        <p class="modal-subject">
                            <span class="severity-badge" data-severity=target.severity.as_str()>
                                {target.severity.as_str().to_uppercase()}
                            </span>
                            <strong>{place}</strong>
                            " — "
                            {target.message.clone()}
                        </p>
                        <p class="modal-note">
                            "A shelved exception is still recorded and listed under “Shelved”, but \
                             it does not sound, count or notify until the shelf runs out or someone \
                             unshelves it. If it is still active then, it is announced again."
                        </p>
                        <form on:submit=submit>
                            <p class="ack-as">"Shelving as "<strong>{by}</strong></p>
                            <label class="field">
                                <span>"For"</span>
                                <select
                                    data-testid="shelve-duration"
                                    on:change=move |ev| {
                                        if let Ok(s) = event_target_value(&ev).parse() {
                                            duration.set(s);
                                        }
                                    }
                                >
                                    {DURATIONS
                                        .into_iter()
                                        .map(|(s, words)| view! {
                                            <option value=s.to_string() selected=move || duration.get() == s>
                                                {words}
                                            </option>
                                        })
                                        .collect_view()}
                                </select>
                            </label>
                            {circuit_choice}
                            <label class="field">
                                <span>"Reason"</span>
                                <textarea
                                    data-testid="shelve-reason"
                                    rows="3"
                                    maxlength="500"
                                    placeholder="Why it may stay quiet, e.g. relay booked for replacement, work order 4711"
                                    prop:value=move || reason.get()
                                    on:input=move |ev| {
                                        reason.set(event_target_value(&ev));
                                        error.set(None);
                                    }
                                ></textarea>
                            </label>
                            {move || error.get().map(|message| view! {
                                <p class="form-error" role="alert" data-testid="shelve-error">{message}</p>
                            })}
                            <div class="modal-actions">
                                <button type="button" class="secondary" on:click=move |_| close()>
                                    "Cancel"
                                </button>
                                <button type="submit" data-testid="shelve-submit" disabled=move || busy.get()>
                                    {move || if busy.get() { "Shelving…" } else { "Shelve" }}
                                </button>
                            </div>
                        </form>
                    </div>
                </div>
            }
        })
    }
}

/// Unshelves `id`; a failure is put in `error`.
pub fn unshelve(id: i64, changed: RwSignal<u64>, error: RwSignal<Option<String>>) {
    leptos::task::spawn_local(async move {
        match api::unshelve(id).await {
            Ok(_) => {
                error.set(None);
                changed.update(|n| *n += 1);
            }
            Err(failure) => error.set(Some(crate::api::refusal_text("unshelved", &failure))),
        }
    });
}

/// The shelves that hold, with who, why and until when; reloaded when a
/// shelf is made or ended here, and when the exceptions' shelving changes
/// on the live feed (someone else shelved, or a shelf ran out).
#[component]
pub fn ShelvesPanel(
    clock: Clock,
    zone: Memo<Option<String>>,
    /// Which exceptions are shelved, by which shelf: reload on change.
    shelved: Memo<Vec<(i64, i64)>>,
    changed: RwSignal<u64>,
) -> impl IntoView {
    let shelves = RwSignal::new(None::<Result<Vec<ShelfInfo>, ApiFailure>>);
    let error = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        shelved.track();
        changed.track();
        leptos::task::spawn_local(async move {
            shelves.set(Some(api::shelves().await));
        });
    });
    let may = expect_context::<Session>().may(Role::Operator);
    view! {
        <section class="shelves" aria-label="Shelves" data-testid="shelves">
            <h2 class="section-title">"Shelves"</h2>
            {move || error.get().map(|message| view! {
                <p class="form-error" role="alert" data-testid="unshelve-error">{message}</p>
            })}
            {move || match shelves.get() {
                None => view! { <p class="notice-text">"Loading shelves…"</p> }.into_any(),
                Some(Err(failure)) => view! {
                    <div class="notice problem" role="alert">
                        <p class="notice-title">"Cannot load the shelves"</p>
                        <p class="notice-text">{failure.to_string()}</p>
                    </div>
                }
                .into_any(),
                Some(Ok(list)) => {
                    let holding: Vec<ShelfInfo> = list.into_iter().filter(|s| s.active).collect();
                    if holding.is_empty() {
                        return view! {
                            <p class="notice-text" data-testid="shelves-empty">
                                "Nothing is shelved. Shelve an exception from its row to quiet it for a while."
                            </p>
                        }
                        .into_any();
                    }
                    view! {
                        <table class="admin-table shelf-table">
                            <thead>
                                <tr>
                                    <th scope="col">"What"</th>
                                    <th scope="col">"Why"</th>
                                    <th scope="col">"Who"</th>
                                    <th scope="col">"Until"</th>
                                    <th scope="col">"Hides"</th>
                                    <th scope="col"><span class="visually-hidden">"Action"</span></th>
                                </tr>
                            </thead>
                            <tbody>
                                {holding
                                    .into_iter()
                                    .map(|s| shelf_row(s, clock, zone, may, changed, error))
                                    .collect_view()}
                            </tbody>
                        </table>
                    }
                    .into_any()
                }
            }}
        </section>
    }
}

fn shelf_row(
    s: ShelfInfo,
    clock: Clock,
    zone: Memo<Option<String>>,
    may: bool,
    changed: RwSignal<u64>,
    error: RwSignal<Option<String>>,
) -> impl IntoView {
    let what = match (&s.subject, &s.circuit) {
        (Some(subject), _) => format!("{} · {subject}", s.rule),
        (None, Some(circuit)) => format!("{} · every channel of {circuit}", s.rule),
        (None, None) => s.rule.clone(),
    };
    let (until, created_at, id) = (s.until, s.created_at, s.id);
    let left = move || time_left(until - clock.now());
    view! {
        <tr data-shelf-id=id>
            <td class="shelf-what">{what}</td>
            <td class="shelf-reason" data-testid="shelf-reason">{s.reason.clone()}</td>
            <td>
                <span data-testid="shelf-by">{s.created_by.clone()}</span>
                <span class="shelf-since" title=utc_beside(created_at)>
                    {move || format!(", {}", format_age(clock.now() - created_at))}
                </span>
            </td>
            <td title=utc_beside(until) data-testid="shelf-until">
                {move || zone.with(|z| yard_time(until, z.as_deref()))}
                <span class="shelf-left">" ("{left}")"</span>
            </td>
            <td>{s.hidden}</td>
            <td>
                {may.then(|| view! {
                    <button
                        class="secondary"
                        data-testid="unshelve"
                        on:click=move |_| unshelve(id, changed, error)
                    >
                        "Unshelve"
                    </button>
                })}
            </td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dialog_shelves_the_exception_or_its_rule_on_its_circuit() {
        let target: ExceptionInfo = serde_json::from_value(serde_json::json!({
            "id": 7, "rule": "rv-low", "kind": "limit", "severity": "major",
            "subject": "T1/relay_voltage", "circuit": "T1", "gateway": "gw", "message": "low",
            "value": 0.6, "active": true, "acknowledged": false, "open": true,
            "raised_at": 1, "last_raised_at": 1, "cleared_at": null, "acked_at": null,
            "acked_by": null, "ack_comment": null, "occurrences": 1, "priority": "high",
            "base_priority": "high", "criticality": "running_line", "escalation": 0,
            "escalated_at": null, "suppressed": false, "window": null
        }))
        .expect("an exception");
        let one = request(&target, false, " booked ", 900);
        assert_eq!(
            (one.exception, one.rule, one.circuit, one.reason.as_str()),
            (Some(7), None, None, "booked")
        );
        let circuit = request(&target, true, "booked", 900);
        assert_eq!(
            (
                circuit.exception,
                circuit.rule.as_deref(),
                circuit.circuit.as_deref()
            ),
            (None, Some("rv-low"), Some("T1"))
        );
        assert_eq!(time_left(61_000), "1 min left");
        assert_eq!(time_left(10_000), "1 min left");
        assert_eq!(time_left(2 * 3_600_000 + 900), "2 h 00 min left");
        assert_eq!(time_left(2 * 3_600_000 + 5 * 60_000), "2 h 05 min left");
        assert_eq!(
            crate::api::refusal_text(
                "shelved",
                &ApiFailure::Rejected {
                    status: 400,
                    message: "duration_s: from 60 s to 3600 s".into()
                }
            ),
            "Not shelved: duration_s: from 60 s to 3600 s."
        );
    }
}
