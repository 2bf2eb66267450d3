//! Circuit health in the app: a score per circuit on the board's cards and
//! the diagram's panel, the worst circuits above the board, and a page per
//! circuit with its trend and what lowered it.
//!
//! Scores change once a minute on the server, so the app asks for them on
//! a timer rather than over the live feed; one store, shared through the
//! context, serves every view so they never disagree.

mod page;

use std::collections::HashMap;
use std::time::Duration;

use leptos::prelude::*;
use trackside_wire::{CircuitHealth, HealthList};

pub use page::HealthPage;

use crate::api;

/// How often the scores are fetched again.
const REFRESH: Duration = Duration::from_secs(30);
/// Circuits in the "worst circuits" strip.
const WORST_SHOWN: usize = 5;

/// Every circuit's latest health.
#[derive(Clone, Copy)]
pub struct Health {
    scores: RwSignal<HashMap<String, CircuitHealth>>,
    alarm_below: RwSignal<f64>,
}

impl Health {
    /// Starts fetching, now and on a timer, and puts it in the context.
    pub fn start() -> Self {
        let health = Self {
            scores: RwSignal::new(HashMap::new()),
            alarm_below: RwSignal::new(50.0),
        };
        health.load();
        if let Ok(handle) = set_interval_with_handle(move || health.load(), REFRESH) {
            on_cleanup(move || handle.clear());
        }
        provide_context(health);
        health
    }

    /// A failed fetch keeps the scores already shown.
    pub fn load(self) {
        leptos::task::spawn_local(async move {
            if let Ok(list) = api::health().await {
                self.apply(list);
            }
        });
    }

    fn apply(self, list: HealthList) {
        self.alarm_below.set(list.alarm_below);
        self.scores.set(
            list.circuits
                .into_iter()
                .map(|h| (h.circuit.clone(), h))
                .collect(),
        );
    }

    pub fn of(self, circuit: &str) -> Option<CircuitHealth> {
        self.scores.with(|s| s.get(circuit).cloned())
    }

    /// The lowest scores, worst first.
    pub fn worst(self) -> Vec<CircuitHealth> {
        let mut all: Vec<CircuitHealth> = self.scores.with(|s| s.values().cloned().collect());
        all.sort_by(|a, b| a.score.total_cmp(&b.score).then(a.circuit.cmp(&b.circuit)));
        all.truncate(WORST_SHOWN);
        all
    }

    pub fn alarm_below(self) -> f64 {
        self.alarm_below.get()
    }
}

/// `good` from 80, `fair` from the alarm level, `poor` below it.
pub fn level(score: f64, alarm_below: f64) -> &'static str {
    if score >= 80.0 {
        "good"
    } else if score >= alarm_below {
        "fair"
    } else {
        "poor"
    }
}

/// What a cause is called on screen.
pub fn cause_label(cause: &str) -> &str {
    match cause {
        "poor_shunt" => "poor shunt",
        "unstable_current" => "unstable current",
        "flicks" => "flicks",
        "drift" => "drop/pick drift",
        "exceptions" => "active exceptions",
        "margin" => "thin margin",
        "predicted" => "forecast exceedance",
        "data_quality" => "missing data",
        other => other,
    }
}

/// The line on a circuit's card or panel: its score and its worst cause,
/// linking to its page.
#[component]
pub fn HealthLine(circuit: String) -> impl IntoView {
    let Some(health) = use_context::<Health>() else {
        return ().into_any();
    };
    let for_score = circuit.clone();
    let current = Memo::new(move |_| health.of(&for_score));
    let href = format!("/health/{circuit}");
    view! {
        <a
            class="card-health"
            href=href
            data-testid="card-health"
            data-health=move || current.get().map_or_else(|| "none".to_owned(), |h| format!("{:.0}", h.score))
            data-health-level=move || current.get().map_or("none", |h| level(h.score, health.alarm_below()))
            title=move || current.get().map_or_else(
                || "Not scored yet".to_owned(),
                |h| h.deductions.iter()
                    .map(|d| format!("−{:.0}: {}", d.points, d.detail))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        >
            <span class="health-label">"Health"</span>
            <span class="health-score">
                {move || current.get().map_or_else(|| "—".to_owned(), |h| format!("{:.0}", h.score))}
            </span>
            <span class="health-cause">
                {move || current.get().map(|h| match h.deductions.first() {
                    Some(d) => cause_label(&d.cause).to_owned(),
                    None => "no findings".to_owned(),
                })}
            </span>
        </a>
    }
    .into_any()
}

/// The few lowest scores, above the board.
#[component]
pub fn WorstCircuits() -> impl IntoView {
    let Some(health) = use_context::<Health>() else {
        return ().into_any();
    };
    let worst = Memo::new(move |_| health.worst());
    view! {
        <section class="worst" aria-label="Worst circuits" data-testid="worst-circuits">
            <h2 class="worst-title">"Worst circuits"</h2>
            {move || {
                let list = worst.get();
                if list.is_empty() {
                    return view! { <p class="worst-empty">"No health scores yet: they follow the first occupations."</p> }.into_any();
                }
                let alarm = health.alarm_below();
                view! {
                    <ol class="worst-list">
                        {list.into_iter().map(|h| {
                            let cause = h.deductions.first().map_or("no findings", |d| cause_label(&d.cause)).to_owned();
                            view! {
                                <li data-health-level=level(h.score, alarm)>
                                    <a href=format!("/health/{}", h.circuit)>
                                        <span class="worst-circuit">{h.circuit.clone()}</span>
                                        <span class="worst-score">{format!("{:.0}", h.score)}</span>
                                        <span class="worst-cause">{cause}</span>
                                    </a>
                                </li>
                            }
                        }).collect_view()}
                    </ol>
                }.into_any()
            }}
        </section>
    }
    .into_any()
}
