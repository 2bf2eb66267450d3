//! A circuit's panel, opened by clicking its section: what it reads now,
//! its open exceptions, the trains that passed through it, and a link to
//! its history. Each part is a [`PanelPart`], so more (a health score)
//! slot in without reworking the rest.

use std::time::Duration;

use leptos::prelude::*;
use leptos_router::components::A;
use trackside_wire::{Layout, Movement};

use super::model::{SectionState, Shown};
use crate::api;
use crate::board::Board;
use crate::board::model::format_value;
use crate::exceptions::Exceptions;
use crate::time::{Clock, format_age, utc_beside, zoned_stamp};

/// How far back the panel lists movements.
const MOVEMENTS_SPAN_MS: i64 = 6 * 3_600_000;
/// How often the list is fetched again while the panel is open.
const MOVEMENTS_REFRESH: Duration = Duration::from_secs(30);
/// The longest list shown.
const MOVEMENTS_SHOWN: usize = 12;

#[component]
pub fn CircuitPanel(
    circuit: String,
    layout: Layout,
    board: Board,
    exceptions: Exceptions,
    clock: Clock,
    zone: Memo<Option<String>>,
    shown: Option<RwSignal<Shown>>,
    on_close: Callback<()>,
    on_replay: Callback<i64>,
) -> impl IntoView {
    let info = layout.circuits.iter().find(|c| c.id == circuit).cloned();
    let title = info
        .as_ref()
        .and_then(|c| c.name.clone())
        .unwrap_or_else(|| "Track circuit".to_owned());
    let criticality = info.map(|c| c.criticality.label());
    let state = move || shown.map_or(SectionState::Unknown, |s| s.get().state);
    let (for_values, for_exceptions, for_movements) =
        (circuit.clone(), circuit.clone(), circuit.clone());
    let history = format!(
        "/history?channels={circuit}/relay_state,{circuit}/relay_voltage,{circuit}/feed_current&span=21600000&live=1"
    );
    view! {
        <aside class="circuit-panel" data-testid="circuit-panel" data-circuit=circuit.clone()>
            <header class="panel-head">
                <div>
                    <h2 class="panel-circuit">{circuit.clone()}</h2>
                    <p class="panel-name">{title}</p>
                    {criticality.map(|c| view! { <p class="panel-criticality">{c}</p> })}
                </div>
                <span class="panel-state" data-state=move || state().as_str()>
                    {move || state().label()}
                </span>
                <button
                    type="button"
                    class="panel-close"
                    title="Close"
                    data-testid="panel-close"
                    on:click=move |_| on_close.run(())
                >
                    "×"
                </button>
            </header>
            <crate::health::HealthLine circuit=circuit.clone() />
            <PanelPart title="Now">
                <LiveValues circuit=for_values board clock />
            </PanelPart>
            <PanelPart title="Open exceptions">
                <OpenExceptions circuit=for_exceptions board exceptions clock on_replay />
            </PanelPart>
            <PanelPart title="Trains through it, last 6 h">
                <RecentMovements circuit=for_movements clock zone />
            </PanelPart>
            <A href=history attr:class="panel-history" attr:data-testid="panel-history">
                {format!("History of {} →", circuit)}
            </A>
        </aside>
    }
}

/// One titled part of the panel.
#[component]
pub fn PanelPart(title: &'static str, children: Children) -> impl IntoView {
    view! {
        <section class="panel-part">
            <h3>{title}</h3>
            {children()}
        </section>
    }
}

#[component]
fn LiveValues(circuit: String, board: Board, clock: Clock) -> impl IntoView {
    let channels = move || {
        board
            .circuit(&circuit)
            .map(|c| c.channels.get())
            .unwrap_or_default()
    };
    view! {
        <ul class="panel-values" data-testid="panel-values">
            {move || {
                let list = channels();
                if list.is_empty() {
                    return view! { <li class="muted">"No readings from this circuit yet"</li> }
                        .into_any();
                }
                list.into_iter()
                    .map(|channel| {
                        let latest = channel.latest.clone();
                        let (name, label, unit, decimals, discrete) = (
                            channel.name.clone(),
                            channel.label.clone(),
                            channel.unit.clone(),
                            channel.decimals,
                            channel.discrete,
                        );
                        let value = move || {
                            latest.get().map_or_else(
                                || "—".to_owned(),
                                |l| match (discrete, l.value) {
                                    (true, 0.0) => "dropped".to_owned(),
                                    (true, 1.0) => "picked up".to_owned(),
                                    (_, v) => format_value(v, decimals),
                                },
                            )
                        };
                        let latest = channel.latest.clone();
                        let age = move || {
                            latest
                                .get()
                                .map_or_else(String::new, |l| format_age(clock.now() - l.ts))
                        };
                        view! {
                            <li>
                                <span class="label">{label}</span>
                                <span class="value" data-panel-channel=name>{value}</span>
                                <span class="unit">{if discrete { None } else { unit }}</span>
                                <span class="age">{age}</span>
                            </li>
                        }
                    })
                    .collect_view()
                    .into_any()
            }}
        </ul>
    }
}

#[component]
fn OpenExceptions(
    circuit: String,
    board: Board,
    exceptions: Exceptions,
    clock: Clock,
    on_replay: Callback<i64>,
) -> impl IntoView {
    let list = move || {
        let gateways = board
            .circuit(&circuit)
            .map(|c| c.gateways())
            .unwrap_or_default();
        exceptions.open_for(&circuit, &gateways)
    };
    view! {
        <ul class="panel-exceptions" data-testid="panel-exceptions">
            {move || {
                let open = list();
                if open.is_empty() {
                    return view! { <li class="muted">"None open"</li> }.into_any();
                }
                open.into_iter()
                    .map(|e| {
                        let raised = e.raised_at;
                        view! {
                            <li data-severity=e.severity.as_str()>
                                <span class="severity-badge">{e.severity.as_str().to_uppercase()}</span>
                                <span class="message">{e.message.clone()}</span>
                                <span class="age">
                                    {move || format!(
                                        "{} · {}",
                                        if e.active { "active" } else { "cleared" },
                                        format_age(clock.now() - raised)
                                    )}
                                </span>
                                <button
                                    type="button"
                                    class="link-button"
                                    title="Replay the five minutes around the raise"
                                    on:click=move |_| on_replay.run(raised)
                                >
                                    "Replay ▸"
                                </button>
                            </li>
                        }
                    })
                    .collect_view()
                    .into_any()
            }}
        </ul>
    }
}

#[component]
fn RecentMovements(circuit: String, clock: Clock, zone: Memo<Option<String>>) -> impl IntoView {
    let found = RwSignal::new(None::<Result<Vec<Movement>, String>>);
    let ask = {
        let circuit = circuit.clone();
        move || {
            let circuit = circuit.clone();
            let to = clock.now_untracked();
            leptos::task::spawn_local(async move {
                let answer = api::movements(&circuit, to - MOVEMENTS_SPAN_MS, to).await;
                let _ = found.try_set(Some(
                    answer
                        .map(|m| {
                            let mut list = m.movements;
                            list.reverse();
                            list
                        })
                        .map_err(|f| f.to_string()),
                ));
            });
        }
    };
    ask();
    if let Ok(handle) = set_interval_with_handle(ask, MOVEMENTS_REFRESH) {
        on_cleanup(move || handle.clear());
    }
    let stamp = move |ms: i64| {
        zone.get()
            .and_then(|z| zoned_stamp(ms, &z))
            .unwrap_or_else(|| utc_beside(ms))
    };
    view! {
        <ul class="panel-movements" data-testid="panel-movements">
            {move || match found.get() {
                None => view! { <li class="muted">"Loading…"</li> }.into_any(),
                Some(Err(message)) => view! { <li class="problem">{message}</li> }.into_any(),
                Some(Ok(list)) if list.is_empty() => {
                    view! { <li class="muted">"No train in the last six hours"</li> }.into_any()
                }
                Some(Ok(list)) => list
                    .into_iter()
                    .take(MOVEMENTS_SHOWN)
                    .map(|m| {
                        let here = m.steps.iter().find(|s| s.circuit == circuit).cloned();
                        let route = route_text(&m);
                        let (entered, left) = here.map_or((m.start(), m.end()), |s| (s.entered, s.left));
                        let duration = left.map_or_else(
                            || "still there".to_owned(),
                            |l| format!("{} s", (l - entered) / 1000),
                        );
                        view! {
                            <li data-testid="movement" data-entered=entered>
                                <span class="when" title=utc_beside(entered)>{stamp(entered)}</span>
                                <span class="duration">{duration}</span>
                                <span class="route">{route}</span>
                            </li>
                        }
                    })
                    .collect_view()
                    .into_any(),
            }}
        </ul>
    }
}

/// `T101 → T102 → … → T107 (7 circuits)`.
fn route_text(movement: &Movement) -> String {
    let names: Vec<&str> = movement.steps.iter().map(|s| s.circuit.as_str()).collect();
    match names.as_slice() {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [a, b] => format!("{a} → {b}"),
        [a, b, c] => format!("{a} → {b} → {c}"),
        [first, .., last] => format!("{first} → … → {last} ({} circuits)", names.len()),
    }
}
