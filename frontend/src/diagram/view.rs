//! The schematic as SVG: sections coloured by state, their circuits'
//! names, exception markers, movement trails, points, signals and labels;
//! dragged to pan, wheeled (or the buttons) to zoom.
//!
//! The `data-*` attributes are the browser tests' hooks.

use std::collections::{HashMap, HashSet};

use leptos::prelude::*;
use trackside_wire::{Facing, Layout, Severity};

use super::model::{SectionState, Shown, Viewport, bounds, midpoint};

/// Each circuit's signal of what it shows.
pub type ShownSignals = StoredValue<HashMap<String, RwSignal<Shown>>>;

fn points_attr(path: &[[f64; 2]]) -> String {
    path.iter()
        .map(|[x, y]| format!("{x:.1},{y:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[component]
pub fn Schematic(
    layout: Layout,
    shown: ShownSignals,
    selected: RwSignal<Option<String>>,
    /// Circuits a maintenance window covers at the instant shown.
    under_maintenance: Memo<HashSet<String>>,
) -> impl IntoView {
    let full = Viewport::fit(bounds(&layout));
    let view = RwSignal::new(full);
    let svg = NodeRef::<leptos::svg::Svg>::new();
    // A drag: where the pointer went down, and the view then.
    let drag = StoredValue::new(None::<(f64, f64, Viewport, bool)>);

    let size = move || {
        svg.get_untracked().map_or((1.0, 1.0), |el| {
            let rect = el.get_bounding_client_rect();
            (rect.width().max(1.0), rect.height().max(1.0))
        })
    };
    let fraction = move |client_x: f64, client_y: f64| {
        svg.get_untracked().map_or((0.5, 0.5), |el| {
            let rect = el.get_bounding_client_rect();
            (
                ((client_x - rect.left()) / rect.width().max(1.0)).clamp(0.0, 1.0),
                ((client_y - rect.top()) / rect.height().max(1.0)).clamp(0.0, 1.0),
            )
        })
    };
    let on_wheel = move |ev: leptos::ev::WheelEvent| {
        ev.prevent_default();
        let (fx, fy) = fraction(f64::from(ev.client_x()), f64::from(ev.client_y()));
        let factor = if ev.delta_y() < 0.0 { 1.2 } else { 1.0 / 1.2 };
        view.update(|v| *v = v.zoomed(factor, fx, fy));
    };
    let on_down = move |ev: leptos::ev::PointerEvent| {
        if ev.button() != 0 {
            return;
        }
        drag.set_value(Some((
            f64::from(ev.client_x()),
            f64::from(ev.client_y()),
            view.get_untracked(),
            false,
        )));
    };
    let on_move = move |ev: leptos::ev::PointerEvent| {
        let Some((x0, y0, start, _)) = drag.get_value() else {
            return;
        };
        let (dx, dy) = (f64::from(ev.client_x()) - x0, f64::from(ev.client_y()) - y0);
        // A small movement is still a click on a section.
        if dx.abs() + dy.abs() < 4.0 {
            return;
        }
        let (w, h) = size();
        drag.set_value(Some((x0, y0, start, true)));
        view.set(start.panned(dx / w, dy / h));
    };
    let on_up = move |_: leptos::ev::PointerEvent| {
        // Clicks after a drag are swallowed by `dragged` below.
        if let Some((x, y, start, moved)) = drag.get_value() {
            drag.set_value(moved.then_some((x, y, start, true)));
        }
    };
    let dragged = move || {
        let moved = drag.get_value().is_some_and(|d| d.3);
        drag.set_value(None);
        moved
    };

    // One label per circuit, on its longest section.
    let mut longest: HashMap<&str, (&[[f64; 2]], f64)> = HashMap::new();
    for section in &layout.sections {
        let entry = longest
            .entry(&section.circuit)
            .or_insert((&section.path, 0.0));
        if section.length_m > entry.1 {
            *entry = (&section.path, section.length_m);
        }
    }
    let mut circuit_marks: Vec<(String, [f64; 2])> = longest
        .into_iter()
        .map(|(c, (path, _))| (c.to_owned(), midpoint(path)))
        .collect();
    circuit_marks.sort_by(|a, b| a.0.cmp(&b.0));

    let signal_of = move |circuit: &str| shown.with_value(|m| m.get(circuit).copied());
    let sections = layout
        .sections
        .iter()
        .map(|section| {
            let circuit = section.circuit.clone();
            let state = signal_of(&circuit);
            let points = points_attr(&section.path);
            let pick = circuit.clone();
            let is_selected = {
                let circuit = circuit.clone();
                move || selected.with(|s| s.as_deref() == Some(circuit.as_str()))
            };
            let in_maintenance = {
                let circuit = circuit.clone();
                move || under_maintenance.with(|m| m.contains(&circuit))
            };
            view! {
                <g
                    class="section"
                    class:selected=is_selected
                    class:maintenance=in_maintenance
                    data-circuit=circuit.clone()
                    data-section=section.id.clone()
                    data-state=move || state.map_or("unknown", |s| s.get().state.as_str())
                    on:click=move |_| {
                        if !dragged() {
                            selected.set(Some(pick.clone()));
                        }
                    }
                >
                    <title>{format!("{circuit}: click for its panel")}</title>
                    <polyline class="hit" points=points.clone() />
                    <polyline
                        class="trail"
                        points=points.clone()
                        opacity=move || state.map_or(0.0, |s| s.get().trail)
                    />
                    <polyline class="track" points=points />
                </g>
            }
        })
        .collect_view();
    let health = use_context::<crate::health::Health>();
    let labels = circuit_marks
        .into_iter()
        .map(|(circuit, [x, y])| {
            let state = signal_of(&circuit);
            let alarm = move || state.and_then(|s| s.get().alarm);
            // The score under the track, coloured only when it calls for
            // attention, so a healthy yard stays quiet on screen.
            let scored = {
                let circuit = circuit.clone();
                Memo::new(move |_| {
                    health.and_then(|h| {
                        h.of(&circuit)
                            .map(|c| (c.score, crate::health::level(c.score, h.alarm_below())))
                    })
                })
            };
            let in_maintenance = {
                let circuit = circuit.clone();
                move || under_maintenance.with(|m| m.contains(&circuit))
            };
            view! {
                <text class="circuit-label" x=x y=y - 14.0 text-anchor="middle">
                    {circuit.clone()}
                </text>
                <text
                    class="circuit-maintenance"
                    data-maintenance-of=circuit.clone()
                    x=x
                    y=y - 34.0
                    text-anchor="middle"
                    style:display=move || if in_maintenance() { "inline" } else { "none" }
                >
                    <title>"Under a maintenance window: its exceptions are recorded as suppressed"</title>
                    "MAINT"
                </text>
                <text
                    class="circuit-health"
                    data-health-of=circuit.clone()
                    data-health-level=move || scored.get().map_or("none", |(_, level)| level)
                    x=x
                    y=y + 26.0
                    text-anchor="middle"
                    style:display=move || if scored.get().is_some() { "inline" } else { "none" }
                >
                    {move || scored.get().map(|(score, _)| format!("health {score:.0}"))}
                </text>
                <g
                    class="marker"
                    data-marker=circuit.clone()
                    data-severity=move || alarm().map_or("none", Severity::as_str)
                    transform=format!("translate({:.1},{:.1})", x + 38.0, y - 21.0)
                    style:display=move || if alarm().is_some() { "inline" } else { "none" }
                >
                    <title>"Active exception on this circuit"</title>
                    <path d="M0,-13 L12,9 L-12,9 Z" />
                    <text y="6" text-anchor="middle">"!"</text>
                </g>
            }
        })
        .collect_view();
    let points = layout
        .points
        .iter()
        .map(|p| {
            view! {
                <g class="points">
                    <circle cx=p.at[0] cy=p.at[1] r="5" />
                    <text x=p.at[0] y=p.at[1] + 22.0 text-anchor="middle">{p.id.clone()}</text>
                </g>
            }
        })
        .collect_view();
    let signals = layout
        .signals
        .iter()
        .map(|s| {
            let dir = match s.facing {
                Facing::Right => 1.0,
                Facing::Left => -1.0,
            };
            let [x, y] = s.at;
            view! {
                <g class="signal">
                    <title>{format!("Signal {}", s.id)}</title>
                    <line x1=x y1=y x2=x - 10.0 * dir y2=y />
                    <circle cx=x + 5.0 * dir cy=y r="5" />
                </g>
            }
        })
        .collect_view();
    let texts = layout
        .labels
        .iter()
        .map(|l| {
            view! {
                <text class="yard-label" class:heading=l.heading x=l.at[0] y=l.at[1]>
                    {l.text.clone()}
                </text>
            }
        })
        .collect_view();

    view! {
        <div class="schematic-frame">
            <svg
                node_ref=svg
                class="schematic"
                data-testid="diagram-svg"
                viewBox=move || view.get().view_box()
                preserveAspectRatio="xMidYMid meet"
                on:wheel=on_wheel
                on:pointerdown=on_down
                on:pointermove=on_move
                on:pointerup=on_up
                on:pointerleave=on_up
                role="img"
                aria-label="Yard diagram"
            >
                <g class="labels">{texts}</g>
                <g class="sections">{sections}</g>
                <g class="points-layer">{points}</g>
                <g class="signals">{signals}</g>
                <g class="circuit-labels">{labels}</g>
            </svg>
            <div class="zoom-buttons">
                <button
                    type="button"
                    title="Zoom in"
                    data-testid="zoom-in"
                    on:click=move |_| view.update(|v| *v = v.zoomed(1.5, 0.5, 0.5))
                >
                    "+"
                </button>
                <button
                    type="button"
                    title="Zoom out"
                    on:click=move |_| view.update(|v| *v = v.zoomed(1.0 / 1.5, 0.5, 0.5))
                >
                    "−"
                </button>
                <button type="button" title="Show the whole yard" on:click=move |_| view.set(full)>
                    "Fit"
                </button>
            </div>
        </div>
    }
}

#[component]
pub fn Legend() -> impl IntoView {
    let items = SectionState::ALL
        .into_iter()
        .map(|state| {
            view! {
                <li class="legend-item" title=state.description()>
                    <svg class="swatch" viewBox="0 0 40 12" aria-hidden="true">
                        <g class="section" data-state=state.as_str()>
                            <polyline class="track" points="2,6 38,6" />
                        </g>
                    </svg>
                    <span>{state.label()}</span>
                </li>
            }
        })
        .collect_view();
    view! {
        <ul class="legend" aria-label="Legend">
            {items}
            <li class="legend-item" title="The most severe active exception on the circuit">
                <svg class="swatch" viewBox="-14 -14 28 26" aria-hidden="true">
                    <g class="marker" data-severity="major">
                        <path d="M0,-13 L12,9 L-12,9 Z" />
                    </g>
                </svg>
                <span>"Exception"</span>
            </li>
            <li class="legend-item" title="Circuits a train just left, fading over two minutes (replay)">
                <svg class="swatch" viewBox="0 0 40 12" aria-hidden="true">
                    <g class="section">
                        <polyline class="trail" points="2,6 38,6" opacity="0.8" />
                    </g>
                </svg>
                <span>"Trail"</span>
            </li>
            <li class="legend-item" title="Circuit health, 0 to 100: amber below 80, red below the alarm level">
                <svg class="swatch" viewBox="0 0 40 16" aria-hidden="true">
                    <text class="circuit-health" data-health-level="fair" x="20" y="13" text-anchor="middle">
                        "72"
                    </text>
                </svg>
                <span>"Health"</span>
            </li>
            <li class="legend-item" title="Under a maintenance window: exceptions are recorded as suppressed, not announced">
                <svg class="swatch" viewBox="0 -4 40 20" aria-hidden="true">
                    <g class="section maintenance" data-state="clear">
                        <polyline class="hit" points="2,6 38,6" />
                        <polyline class="track" points="2,6 38,6" />
                    </g>
                </svg>
                <span>"Maintenance"</span>
            </li>
        </ul>
    }
}
