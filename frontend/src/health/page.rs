//! `/health/:circuit`: one circuit's health now, what lowered it, its
//! daily trend and its last occupations.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use trackside_wire::{CircuitHealthDetail, HealthDay, Occupation, Occupations, YardInfo};

use super::{cause_label, level};
use crate::api::{self, ApiFailure};
use crate::time::{Clock, utc_beside, zoned_stamp};

/// Occupations listed: the last day's.
const OCCUPATIONS_SPAN_MS: i64 = 86_400_000;
const OCCUPATIONS_SHOWN: usize = 30;

#[component]
pub fn HealthPage(clock: Clock, yard: RwSignal<Option<YardInfo>>) -> impl IntoView {
    let params = use_params_map();
    let circuit = move || params.with(|p| p.get("circuit").unwrap_or_default());
    let zone = Memo::new(move |_| yard.with(|y| y.as_ref().map(|y| y.timezone.clone())));
    let detail = LocalResource::new(move || {
        let circuit = circuit();
        async move { api::circuit_health(&circuit).await }
    });
    let occupations = LocalResource::new(move || {
        let circuit = circuit();
        let now = clock.now_untracked();
        async move { api::occupations(&circuit, now - OCCUPATIONS_SPAN_MS, now + 60_000).await }
    });
    view! {
        <main class="health-page" data-testid="health-page">
            <h1 class="health-heading">{move || format!("Health of {}", circuit())}</h1>
            <Transition fallback=|| view! { <p class="notice-text">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match detail.await {
                        Ok(detail) => view! { <Summary detail /> }.into_any(),
                        Err(failure) => view! { <Failure failure /> }.into_any(),
                    }
                })}
            </Transition>
            <h2 class="health-sub">"Occupations, last 24 h"</h2>
            <Transition fallback=|| view! { <p class="notice-text">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match occupations.await {
                        Ok(list) => view! { <OccupationTable list zone /> }.into_any(),
                        Err(failure) => view! { <Failure failure /> }.into_any(),
                    }
                })}
            </Transition>
        </main>
    }
}

#[component]
fn Failure(failure: ApiFailure) -> impl IntoView {
    view! {
        <div class="notice problem" role="alert">
            <p class="notice-title">"Cannot load it"</p>
            <p class="notice-text">{failure.to_string()}</p>
        </div>
    }
}

#[component]
fn Summary(detail: CircuitHealthDetail) -> impl IntoView {
    let alarm = detail.alarm_below;
    let Some(current) = detail.current else {
        return view! {
            <p class="notice-text">
                "Not scored yet: the score follows the circuit's first occupations, within a minute or two."
            </p>
        }
        .into_any();
    };
    let score_level = level(current.score, alarm);
    view! {
        <section class="health-now" data-health-level=score_level>
            <p class="health-big" data-testid="health-score">{format!("{:.0}", current.score)}<span>" / 100"</span></p>
            <p class="health-note">
                {format!(
                    "From its last {} occupations, its open exceptions, margins and forecasts. Below {alarm:.0} raises an exception; 0 means maintenance now.",
                    current.occupations
                )}
            </p>
        </section>
        <h2 class="health-sub">"What lowered it"</h2>
        {if current.deductions.is_empty() {
            view! { <p class="notice-text">"Nothing: every check is clean."</p> }.into_any()
        } else {
            view! {
                <ul class="health-deductions" data-testid="health-deductions">
                    {current.deductions.into_iter().map(|d| view! {
                        <li>
                            <span class="deduction-points">{format!("−{:.1}", d.points)}</span>
                            <span class="deduction-cause">{cause_label(&d.cause).to_owned()}</span>
                            <span class="deduction-detail">{d.detail}</span>
                        </li>
                    }).collect_view()}
                </ul>
            }.into_any()
        }}
        <h2 class="health-sub">"Day by day (yard days, lowest and last score)"</h2>
        <Trend days=detail.days alarm />
    }
    .into_any()
}

/// A bar per day: the lowest score, with the last marked.
#[component]
fn Trend(days: Vec<HealthDay>, alarm: f64) -> impl IntoView {
    if days.is_empty() {
        return view! { <p class="notice-text">"No days recorded yet."</p> }.into_any();
    }
    let width = 24.0;
    let height = 120.0;
    // A month's width at least, so a few days do not stretch.
    let total = days.len().max(30) as f64 * width;
    let y = move |score: f64| height - score.clamp(0.0, 100.0) / 100.0 * height;
    view! {
        <svg
            class="health-trend"
            data-testid="health-trend"
            viewBox=format!("0 0 {total} {}", height + 18.0)
            preserveAspectRatio="xMinYMid meet"
            role="img"
            aria-label="Daily health"
        >
            <line class="trend-alarm" x1="0" x2=total y1=y(alarm) y2=y(alarm) />
            {days.into_iter().enumerate().map(|(i, day)| {
                let x = i as f64 * width;
                view! {
                    <g data-health-level=level(day.lowest, alarm)>
                        <title>{format!("{}: lowest {:.0}, last {:.0}", day.day, day.lowest, day.last)}</title>
                        <rect x=x + 3.0 width=width - 6.0 y=y(day.lowest) height=height - y(day.lowest) />
                        <line class="trend-last" x1=x + 2.0 x2=x + width - 2.0 y1=y(day.last) y2=y(day.last) />
                        <text x=x + width / 2.0 y=height + 14.0>{day.day.get(8..10).unwrap_or_default().to_owned()}</text>
                    </g>
                }
            }).collect_view()}
        </svg>
    }
    .into_any()
}

#[component]
fn OccupationTable(list: Occupations, zone: Memo<Option<String>>) -> impl IntoView {
    let csv = format!(
        "/api/occupations.csv?circuit={}&from={}&to={}",
        api::encode(&list.circuit),
        list.from,
        list.to
    );
    let mut rows: Vec<Occupation> = list.occupations;
    rows.reverse();
    rows.truncate(OCCUPATIONS_SHOWN);
    let volts = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.3} V"));
    view! {
        <p><a class="health-csv" href=csv download="">"Export the day as CSV"</a></p>
        {if rows.is_empty() {
            view! { <p class="notice-text">"No occupation in the last 24 h."</p> }.into_any()
        } else {
            view! {
                <table class="occupations" data-testid="occupations">
                    <thead><tr>
                        <th>"Start"</th><th>"Duration"</th><th>"Class"</th><th>"Drop"</th><th>"Pick"</th>
                        <th>"Residual max"</th><th>"Feed current"</th><th>"Missing"</th>
                    </tr></thead>
                    <tbody>
                        {rows.into_iter().map(|o| {
                            let start = zone.get().and_then(|z| zoned_stamp(o.start, &z)).unwrap_or_else(|| utc_beside(o.start));
                            let current = match (o.current_mean, o.current_sd) {
                                (Some(m), Some(sd)) => format!("{m:.2} A ± {sd:.2}"),
                                _ => "—".to_owned(),
                            };
                            view! {
                                <tr data-class=o.class.as_str()>
                                    <td title=utc_beside(o.start)>{start}</td>
                                    <td>{format!("{:.1} s", o.duration_ms as f64 / 1000.0)}</td>
                                    <td>{o.class.as_str()}</td>
                                    <td>{volts(o.drop_value)}</td>
                                    <td>{volts(o.pick_value)}</td>
                                    <td>{volts(o.residual_max)}</td>
                                    <td>{current}</td>
                                    <td>{o.missing_readings}</td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any()
        }}
    }
}
