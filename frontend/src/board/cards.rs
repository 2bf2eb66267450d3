//! The board's cards: one per circuit, a row per channel.
//!
//! The `data-*` attributes here are the browser tests' hooks; their names
//! and values are a contract with those tests, not styling details.

use leptos::prelude::*;
use trackside_wire::Severity;

use super::model::{Board, Channel, Circuit, CircuitState, format_value};
use crate::exceptions::Exceptions;
use crate::health::HealthLine;
use crate::time::{Clock, STALE_AFTER_MS, format_age, utc_timestamp};

#[component]
pub fn CircuitGrid(board: Board, clock: Clock, exceptions: Exceptions) -> impl IntoView {
    view! {
        <section class="grid" aria-label="Track circuits">
            <For
                each=move || board.circuits()
                key=|circuit| circuit.name.clone()
                children=move |circuit| view! { <CircuitCard circuit clock exceptions /> }
            />
        </section>
    }
}

#[component]
fn CircuitCard(circuit: Circuit, clock: Clock, exceptions: Exceptions) -> impl IntoView {
    let relay = Memo::new({
        let circuit = circuit.clone();
        move |_| circuit.relay().map(|l| l.value)
    });
    let state = move || CircuitState::from_relay(relay.get());
    let gateways = {
        let circuit = circuit.clone();
        move || match circuit.gateways().as_slice() {
            [] => "gateway not yet known".to_owned(),
            names => names.join(", "),
        }
    };
    let worst = {
        let circuit = circuit.clone();
        Memo::new(move |_| exceptions.worst_for(&circuit.name, &circuit.gateways()))
    };
    let channels = circuit.channels.clone();
    view! {
        <article
            class="card"
            data-circuit=circuit.name.clone()
            data-state=move || state().as_str()
            data-exception-severity=move || severity_attr(worst.get())
        >
            <header class="card-head">
                <div class="card-title">
                    <h2 class="circuit">{circuit.name.clone()}</h2>
                    <span class="gateway" title="Gateway">{gateways}</span>
                </div>
                <span class="badge">{move || CircuitState::badge(relay.get())}</span>
            </header>
            {move || worst.get().map(|severity| view! {
                <p class="card-alarm" title="The most severe active exception on this circuit">
                    {format!("{} exception", severity.as_str().to_uppercase())}
                </p>
            })}
            <HealthLine circuit=circuit.name.clone() />
            <ul class="params">
                <For
                    each=move || channels.get()
                    key=|channel| channel.name.clone()
                    children=move |channel| view! { <ParameterRow channel clock /> }
                />
            </ul>
        </article>
    }
}

#[component]
fn ParameterRow(channel: Channel, clock: Clock) -> impl IntoView {
    let Channel {
        name,
        label,
        unit,
        decimals,
        discrete,
        latest,
        ..
    } = channel;
    // An arena signal owned by this row: Copy, so every closure below can
    // share it, and released when the row is.
    let latest = RwSignal::from(latest);
    let reading = move || latest.get();
    let age_ms = move || reading().map(|l| clock.now() - l.ts);
    // Relays report on change, so an old relay reading is normal, not stale.
    let stale = move || !discrete && age_ms().is_some_and(|age| age > STALE_AFTER_MS);
    let value =
        move || reading().map_or_else(|| "—".to_owned(), |l| format_value(l.value, decimals));
    // A discrete channel has no unit; its meaning takes the unit's place.
    let unit = move || match (discrete, reading()) {
        (true, Some(l)) if l.value == 0.0 => Some("dropped".to_owned()),
        (true, Some(l)) if l.value == 1.0 => Some("picked up".to_owned()),
        (true, _) => None,
        (false, _) => unit.clone(),
    };
    let age = move || match age_ms() {
        None => "no reading yet".to_owned(),
        Some(age) if stale() => format!("stale · {}", format_age(age)),
        Some(age) => format_age(age),
    };
    let taken_at = move || reading().map(|l| format!("Reading taken {}", utc_timestamp(l.ts)));
    view! {
        <li class="param" class:stale=stale class:empty=move || reading().is_none() class:discrete=discrete>
            <span class="label">{label}</span>
            <span class="reading">
                <span class="value" data-channel=name>{value}</span>
                <span class="unit">{unit}</span>
            </span>
            <span class="age" title=taken_at>{age}</span>
        </li>
    }
}

/// The card's `data-exception-severity`: each card asks
/// [`Exceptions::worst_for`], cheap at the tens of exceptions a yard has open.
fn severity_attr(severity: Option<Severity>) -> &'static str {
    severity.map_or("none", Severity::as_str)
}
