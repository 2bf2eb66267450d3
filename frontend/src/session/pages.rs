//! The sign-in form and the forced password change: the only pages a
//! browser sees before the workspace.

use leptos::prelude::*;
use trackside_wire::{PasswordChange, SignInRequest};

use super::{Session, failure_text};
use crate::api;
use crate::fields::TextField;

/// Shortest password the server accepts (auth::password::MIN_LENGTH).
const MIN_PASSWORD: usize = 10;

#[component]
pub fn SignInPage(session: Session, message: Option<String>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let request = SignInRequest {
            name: name.get_untracked().trim().to_owned(),
            password: password.get_untracked(),
        };
        if request.name.is_empty() || request.password.is_empty() {
            error.set(Some("Enter your name and your password.".into()));
            return;
        }
        busy.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            match api::sign_in(&request).await {
                Ok(me) => session.signed_in(me),
                Err(failure) => {
                    busy.set(false);
                    password.set(String::new());
                    error.set(Some(failure_text(&failure)));
                }
            }
        });
    };
    view! {
        <main class="signin-page">
            <form class="signin-card" on:submit=submit data-testid="signin-form" aria-labelledby="signin-title">
                <p class="wordmark">"Trackside"</p>
                <h1 id="signin-title">"Sign in"</h1>
                {message.map(|m| view! { <p class="signin-notice" role="status" data-testid="signin-notice">{m}</p> })}
                <TextField
                    label="Name".into()
                    value=name
                    testid="signin-name"
                    autocomplete="username"
                    maxlength=64
                    autofocus=true
                />
                <TextField
                    label="Password".into()
                    value=password
                    kind="password"
                    testid="signin-password"
                    autocomplete="current-password"
                />
                {move || error.get().map(|m| view! {
                    <p class="form-error" role="alert" data-testid="signin-error">{m}</p>
                })}
                <button type="submit" class="primary" data-testid="signin-submit" disabled=move || busy.get()>
                    {move || if busy.get() { "Signing in…" } else { "Sign in" }}
                </button>
                <p class="signin-help">
                    "No account, or forgot your password? Ask your Trackside administrator."
                </p>
            </form>
        </main>
    }
}

/// A user whose password was issued to them chooses their own before
/// anything else.
#[component]
pub fn ChoosePasswordPage(session: Session) -> impl IntoView {
    let name = session.me().map(|m| m.name).unwrap_or_default();
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let again = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (new_password, repeated) = (new.get_untracked(), again.get_untracked());
        if new_password.chars().count() < MIN_PASSWORD {
            error.set(Some(format!(
                "Choose at least {MIN_PASSWORD} characters: a phrase of a few words is easiest to remember."
            )));
            return;
        }
        if new_password != repeated {
            error.set(Some(
                "The two new passwords differ: type the same one twice.".into(),
            ));
            return;
        }
        let request = PasswordChange {
            current: current.get_untracked(),
            new: new_password,
        };
        busy.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            match api::change_password(&request).await {
                Ok(me) => session.signed_in(me),
                Err(failure) => {
                    busy.set(false);
                    error.set(Some(failure_text(&failure)));
                }
            }
        });
    };
    view! {
        <main class="signin-page">
            <form class="signin-card" on:submit=submit data-testid="password-form" aria-labelledby="password-title">
                <p class="wordmark">"Trackside"</p>
                <h1 id="password-title">"Choose your password"</h1>
                <p class="signin-notice" role="status">
                    {format!(
                        "{name}, the password you signed in with was issued to you. Choose your own \
                         before you go on; nobody else will know it."
                    )}
                </p>
                <TextField
                    label="The password you were given".into()
                    value=current
                    kind="password"
                    testid="password-current"
                    autocomplete="current-password"
                />
                <TextField
                    label=format!("New password (at least {MIN_PASSWORD} characters)")
                    value=new
                    kind="password"
                    testid="password-new"
                    autocomplete="new-password"
                />
                <TextField
                    label="New password again".into()
                    value=again
                    kind="password"
                    testid="password-again"
                    autocomplete="new-password"
                />
                {move || error.get().map(|m| view! {
                    <p class="form-error" role="alert" data-testid="password-error">{m}</p>
                })}
                <div class="modal-actions">
                    <button type="button" class="secondary" on:click=move |_| session.sign_out()>
                        "Sign out"
                    </button>
                    <button type="submit" class="primary" data-testid="password-submit" disabled=move || busy.get()>
                        {move || if busy.get() { "Saving…" } else { "Save and continue" }}
                    </button>
                </div>
            </form>
        </main>
    }
}
