//! The priority-mix panel: how the exceptions raised lately split by
//! priority beside the alarm-management standard's target (about 80 % low,
//! 15 % medium, 5 % high), and how fast they came.
//!
//! It answers "do our priorities still mean something?": when high takes
//! far more than its share, operators stop telling urgent from routine,
//! and the rules or the layout's criticalities need another look.

use std::time::Duration;

use leptos::prelude::*;
use trackside_wire::{PriorityMix, PriorityShare};

use crate::api::{self, ApiFailure};

/// The periods offered, in days.
const PERIODS: [(u32, &str); 3] = [(1, "24 hours"), (7, "7 days"), (30, "30 days")];
/// How often the mix is fetched again while the page is open.
const REFRESH: Duration = Duration::from_secs(60);
/// Raised per hour one operator can handle (ISA-18.2's "manageable").
const MANAGEABLE_PER_HOUR: f64 = 6.0;

/// `4 %`, or `—` when nothing was raised.
fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "—".to_owned(), |s| format!("{:.0} %", s * 100.0))
}

/// Whether a priority's share is well past its target (by half again): a
/// mix drifting that way is worth a look, a point or two is not.
fn over_target(p: &PriorityShare) -> bool {
    p.share.is_some_and(|s| s > p.target * 1.5)
}

#[component]
pub fn PriorityMixPanel() -> impl IntoView {
    let days = RwSignal::new(7u32);
    let mix = RwSignal::new(None::<Result<PriorityMix, ApiFailure>>);
    let load = move || {
        let asked = days.get_untracked();
        leptos::task::spawn_local(async move {
            let answer = api::priority_mix(asked).await;
            // An answer for a period no longer chosen is dropped.
            if asked == days.get_untracked() {
                mix.set(Some(answer));
            }
        });
    };
    Effect::new(move |_| {
        days.track();
        load();
    });
    if let Ok(handle) = set_interval_with_handle(load, REFRESH) {
        on_cleanup(move || handle.clear());
    }
    view! {
        <section class="priority-mix" aria-label="Priority mix" data-testid="priority-mix">
            <div class="mix-head">
                <h2 class="section-title">"Priority mix"</h2>
                <label class="filter">
                    <span class="visually-hidden">"Period"</span>
                    <select
                        data-testid="mix-period"
                        on:change=move |ev| {
                            if let Ok(d) = event_target_value(&ev).parse() {
                                days.set(d);
                            }
                        }
                    >
                        {PERIODS
                            .into_iter()
                            .map(|(d, words)| view! {
                                <option value=d.to_string() selected=move || days.get() == d>
                                    {format!("last {words}")}
                                </option>
                            })
                            .collect_view()}
                    </select>
                </label>
            </div>
            {move || match mix.get() {
                None => view! { <p class="notice-text">"Loading the priority mix…"</p> }.into_any(),
                Some(Err(failure)) => view! {
                    <p class="notice-text" role="alert">{format!("Cannot load the priority mix: {failure}")}</p>
                }
                .into_any(),
                Some(Ok(mix)) => view! { <MixBody mix /> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn MixBody(mix: PriorityMix) -> impl IntoView {
    let rows = mix
        .priorities
        .iter()
        .map(|p| {
            let width = p.share.unwrap_or(0.0) * 100.0;
            let target = p.target * 100.0;
            let over = over_target(p);
            view! {
                <div class="mix-row" data-priority=p.priority.as_str() data-over=over.to_string()>
                    <span class="mix-label">{p.priority.label()}</span>
                    <span
                        class="mix-bar"
                        title=format!("Target about {target:.0} % of all raised")
                    >
                        <span class="mix-fill" style:width=format!("{width:.1}%")></span>
                        <span class="mix-target" style:left=format!("{target:.1}%")></span>
                    </span>
                    <span class="mix-share" data-testid=format!("mix-share-{}", p.priority.as_str())>
                        {percent(p.share)}
                    </span>
                    <span class="mix-note">
                        {format!("{} raised · target {target:.0} %", p.raised)}
                        {over.then_some(" · above target")}
                    </span>
                </div>
            }
        })
        .collect_view();
    let busy = mix.per_hour > MANAGEABLE_PER_HOUR;
    view! {
        <div class="mix-rows">{rows}</div>
        <p class="mix-rate" data-busy=busy.to_string() data-testid="mix-rate">
            {format!(
                "{} raised · {:.1} per hour (about {MANAGEABLE_PER_HOUR:.0} is manageable) · at most {} in 10 minutes · flooded {:.0} % of the time",
                mix.raised,
                mix.per_hour,
                mix.peak_10min,
                mix.flood_share * 100.0
            )}
        </p>
        <p class="mix-foot">
            "By the priority each exception was raised with; those raised inside a maintenance window are not counted."
        </p>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackside_wire::Priority;

    #[test]
    fn shares_read_as_percentages_and_flag_a_drifting_mix() {
        assert_eq!(percent(None), "—");
        assert_eq!(percent(Some(0.046)), "5 %");
        let share = |share| PriorityShare {
            priority: Priority::High,
            raised: 1,
            share,
            target: 0.05,
        };
        assert!(!over_target(&share(Some(0.07))));
        assert!(over_target(&share(Some(0.08))));
        assert!(!over_target(&share(None)));
    }
}
