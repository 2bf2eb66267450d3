//! Labelled form fields bound to a signal: the sign-in pages and the admin
//! forms use the same ones, so they look and behave alike.

use leptos::prelude::*;

/// A text input (`kind`: `text`, `password` or `search`) with its label.
#[component]
pub fn TextField(
    label: String,
    value: RwSignal<String>,
    #[prop(default = "text")] kind: &'static str,
    #[prop(optional)] testid: &'static str,
    #[prop(optional)] autocomplete: &'static str,
    #[prop(optional)] placeholder: &'static str,
    #[prop(default = 256)] maxlength: u32,
    #[prop(optional)] autofocus: bool,
) -> impl IntoView {
    view! {
        <label class="field">
            <span>{label}</span>
            <input
                type=kind
                data-testid=testid
                autocomplete=autocomplete
                placeholder=placeholder
                maxlength=maxlength
                autofocus=autofocus
                prop:value=move || value.get()
                on:input=move |ev| value.set(event_target_value(&ev))
            />
        </label>
    }
}

/// A whole number of days, 1 to `max`.
#[component]
pub fn DaysField(label: &'static str, value: RwSignal<u32>, max: u32) -> impl IntoView {
    view! {
        <label class="field">
            <span>{label}</span>
            <input
                type="number"
                min="1"
                max=max
                prop:value=move || value.get().to_string()
                on:input=move |ev| {
                    if let Ok(days) = event_target_value(&ev).parse::<u32>() {
                        value.set(days.clamp(1, max));
                    }
                }
            />
        </label>
    }
}
