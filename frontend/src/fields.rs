//! Labelled form fields bound to a signal, so that every form's fields
//! look and behave alike.

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
