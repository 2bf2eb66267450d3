//! The diagram: the yard's schematic, every section coloured by its
//! circuit's state, live from the feed or replayed from any past interval.
//!
//! Operators think in the yard's geometry, so this is their main view. The
//! model (`model.rs`) decides what each section shows, live or at a replay
//! instant, and is tested natively; the schematic (`view.rs`) only draws
//! what a circuit's signal says; the panel (`panel.rs`) and the replay bar
//! (`replay.rs`) sit beside it. Live and replay write the same per-circuit
//! signals, so the drawing cannot tell them apart and neither can a test.
//!
//! The `data-*` attributes are the browser tests' hooks (frontend/README.md).

pub mod model;
mod panel;
mod replay;
mod view;

use std::collections::{HashMap, HashSet};

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use trackside_wire::{Layout, Role, YardInfo};

use self::model::{Active, ReplayQuery, Shown, classify};
use self::panel::CircuitPanel;
use self::replay::{ReplayBar, Replayer};
use self::view::{Legend, Schematic, ShownSignals};
use crate::api::{self, ApiFailure};
use crate::board::Board;
use crate::exceptions::Exceptions;
use crate::session::Session;
use crate::time::Clock;

/// Live from the feed, or a recorded interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Live,
    Replay,
}

#[component]
pub fn DiagramPage(
    board: Board,
    exceptions: Exceptions,
    clock: Clock,
    yard: RwSignal<Option<YardInfo>>,
) -> impl IntoView {
    let layout = LocalResource::new(api::layout);
    let session = expect_context::<Session>();
    view! {
        <main class="diagram" data-testid="diagram-page">
            <Transition fallback=|| view! {
                <div class="notice loading" role="status">
                    <span class="spinner" aria-hidden="true"></span>
                    <p class="notice-title">"Loading the yard layout…"</p>
                </div>
            }>
                {move || Suspend::new(async move {
                    match layout.await {
                        Ok(Ok(found)) => view! { <Diagram layout=found board exceptions clock yard /> }
                            .into_any(),
                        Ok(Err(message)) => view! {
                            <div class="notice empty" role="status" data-testid="diagram-no-layout">
                                <p class="notice-title">"No yard layout"</p>
                                <p class="notice-text">{message}</p>
                                <p class="notice-text">
                                    "The Board shows every circuit meanwhile. A layout is a TOML file: see docs/layout.md."
                                </p>
                                <Show when=move || session.may(Role::Admin)>
                                    <p class="notice-text">
                                        <a href="/admin/layout" data-testid="diagram-load-layout">"Load or fix the layout in Admin → Yard layout"</a>
                                    </p>
                                </Show>
                            </div>
                        }
                        .into_any(),
                        Err(failure) => view! { <Problem failure retry=move || layout.refetch() /> }
                            .into_any(),
                    }
                })}
            </Transition>
        </main>
    }
}

#[component]
fn Problem(failure: ApiFailure, retry: impl Fn() + Send + Sync + 'static) -> impl IntoView {
    if let Ok(handle) = set_timeout_with_handle(retry, std::time::Duration::from_secs(5)) {
        on_cleanup(move || handle.clear());
    }
    view! {
        <div class="notice problem" role="alert">
            <p class="notice-title">"Cannot load the yard layout"</p>
            <p class="notice-text">{failure.to_string()}</p>
        </div>
    }
}

#[component]
fn Diagram(
    layout: Layout,
    board: Board,
    exceptions: Exceptions,
    clock: Clock,
    yard: RwSignal<Option<YardInfo>>,
) -> impl IntoView {
    let zone = Memo::new(move |_| yard.with(|y| y.as_ref().map(|y| y.timezone.clone())));
    let query = use_query_map();
    let initial = query.with_untracked(|q| ReplayQuery::from_query(|k| q.get(k)));
    let mode = RwSignal::new(if initial.is_some() {
        Mode::Replay
    } else {
        Mode::Live
    });
    let selected = RwSignal::new(None::<String>);
    let signals: HashMap<String, RwSignal<Shown>> = layout
        .circuits
        .iter()
        .map(|c| (c.id.clone(), RwSignal::new(Shown::default())))
        .collect();
    let shown: ShownSignals = StoredValue::new(signals.clone());
    let replayer = Replayer::new();

    // Live: each circuit follows its relay reading and its exceptions.
    for (circuit, signal) in signals {
        Effect::new(move |_| {
            if mode.get() != Mode::Live {
                return;
            }
            let found = board.circuit(&circuit);
            let relay = found.as_ref().and_then(|c| c.relay()).map(|l| l.value);
            let gateways = found.map(|c| c.gateways()).unwrap_or_default();
            let active = exceptions.active_for(&circuit, &gateways);
            let weighed: Vec<Active<'_>> = active
                .iter()
                .map(|(kind, severity, subject)| Active {
                    kind: *kind,
                    severity: *severity,
                    subject,
                })
                .collect();
            let now = classify(&circuit, relay, &weighed);
            if signal.get_untracked() != now {
                signal.set(now);
            }
        });
    }

    // Replay: load what the URL asks for, once.
    if let Some(query) = initial {
        replayer.load(query, shown);
    }
    // The URL follows the mode, and a paused replay's instant, so a reload
    // or a shared link shows the same.
    Effect::new(move |_| {
        let text = match mode.get() {
            Mode::Live => "/diagram".to_owned(),
            Mode::Replay => {
                if replayer.playing.get() {
                    return;
                }
                let Some((from, to)) = replayer.range.get() else {
                    return;
                };
                let query = ReplayQuery {
                    from,
                    to,
                    at: replayer.cursor.get(),
                    speed: replayer.speed.get(),
                };
                format!("/diagram?{}", query.to_query())
            }
        };
        if let Ok(history) = window().history() {
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&text));
        }
    });
    let go_live = move || {
        replayer.playing.set(false);
        mode.set(Mode::Live);
    };
    let go_replay = move || {
        if mode.get_untracked() == Mode::Replay {
            return;
        }
        mode.set(Mode::Replay);
        if replayer.range.get_untracked().is_none() {
            let to = clock.now_untracked();
            replayer.load(
                ReplayQuery {
                    from: to - 900_000,
                    to,
                    at: to - 900_000,
                    speed: 10,
                },
                shown,
            );
        } else {
            replayer.redraw(shown);
        }
    };
    let replay_around = Callback::new(move |at: i64| {
        mode.set(Mode::Replay);
        replayer.load(ReplayQuery::around(at), shown);
    });

    // The circuits a maintenance window covers at the instant shown: now
    // live, the replay's cursor in replay (with the windows of its range,
    // which may be older than the store's week).
    let maintenance = expect_context::<crate::maintenance::Maintenance>();
    let replay_windows = RwSignal::new(Vec::new());
    Effect::new(move |_| {
        if let Some((from, to)) = replayer.range.get() {
            leptos::task::spawn_local(async move {
                if let Ok(list) = api::maintenance_between(from, to).await {
                    replay_windows.set(list);
                }
            });
        }
    });
    let circuit_ids: Vec<String> = layout.circuits.iter().map(|c| c.id.clone()).collect();
    let under_maintenance = Memo::new(move |_| {
        let (windows, at) = match mode.get() {
            Mode::Live => (maintenance.windows(), clock.now()),
            Mode::Replay => (replay_windows.get(), replayer.cursor.get()),
        };
        if windows.is_empty() {
            return HashSet::new();
        }
        circuit_ids
            .iter()
            .filter(|circuit| {
                // Untracked: every reading must not recompute this.
                let gateways = untrack(|| {
                    board
                        .circuit(circuit)
                        .map(|c| c.gateways())
                        .unwrap_or_default()
                });
                crate::maintenance::covering(&windows, circuit, &gateways, at)
                    .next()
                    .is_some()
            })
            .cloned()
            .collect::<HashSet<String>>()
    });

    let panel_layout = layout.clone();
    let panel = move || {
        selected.get().map(|circuit| {
            let signal = shown.with_value(|m| m.get(&circuit).copied());
            view! {
                <CircuitPanel
                    circuit
                    layout=panel_layout.clone()
                    board
                    exceptions
                    clock
                    zone
                    shown=signal
                    on_close=Callback::new(move |()| selected.set(None))
                    on_replay=replay_around
                />
            }
        })
    };
    view! {
        <div
            class="diagram-body"
            data-mode=move || match mode.get() {
                Mode::Live => "live",
                Mode::Replay => "replay",
            }
        >
            <div class="diagram-bar">
                <div class="mode-switch" role="group" aria-label="Mode">
                    <button
                        type="button"
                        data-testid="mode-live"
                        aria-pressed=move || (mode.get() == Mode::Live).to_string()
                        on:click=move |_| go_live()
                    >
                        "● Live"
                    </button>
                    <button
                        type="button"
                        data-testid="mode-replay"
                        aria-pressed=move || (mode.get() == Mode::Replay).to_string()
                        on:click=move |_| go_replay()
                    >
                        "⟲ Replay"
                    </button>
                </div>
                <Legend />
            </div>
            <div class="diagram-main">
                <Schematic layout shown selected under_maintenance />
                {panel}
            </div>
            <Show when=move || mode.get() == Mode::Replay>
                <ReplayBar replayer shown clock zone />
            </Show>
        </div>
    }
}
