//! Who is signed in, for the whole app.
//!
//! The server decides everything (a role hides nothing it would allow);
//! this keeps what the app needs to show the right page: the sign-in form,
//! the forced password change, or the workspace with the buttons the
//! user's role can use. Any answer that says the session ended (a 401 from
//! any request, a `session_ended` frame on the live feed) brings the
//! sign-in form back with the server's reason, on the page the user was
//! on, so signing in again returns them there.

mod pages;

use std::cell::Cell;

use leptos::prelude::*;
use trackside_wire::{LinkSignInRequest, Me, Role};

pub use pages::{ChoosePasswordPage, SignInPage};

use crate::api::{self, ApiFailure};

/// Where the app is.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Asking the server who we are.
    Checking,
    /// The server cannot be reached; `message` says what to do.
    Unreachable(String),
    /// Nobody is signed in; `message` says why (signed out, session ended).
    SignedOut {
        message: Option<String>,
    },
    SignedIn(Me),
}

/// What the app shows, by [`State`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Checking,
    Unreachable,
    SignedOut,
    ChoosePassword,
    Working,
}

#[derive(Clone, Copy)]
pub struct Session {
    state: RwSignal<State>,
}

thread_local! {
    /// The app's one session, for API calls that learn it has ended.
    static CURRENT: Cell<Option<Session>> = const { Cell::new(None) };
}

/// A request was refused with 401: the session ended under the app.
pub fn ended(message: &str) {
    if let Some(session) = CURRENT.with(Cell::get) {
        session.end(message);
    }
}

impl Session {
    /// Finds out who is signed in: with a one-time link in the address
    /// (`/signin#link=...`), by redeeming it first.
    pub fn start() -> Self {
        let session = Self {
            state: RwSignal::new(State::Checking),
        };
        CURRENT.with(|c| c.set(Some(session)));
        let link = link_in_address();
        leptos::task::spawn_local(async move {
            match link {
                Some(token) => {
                    // The token leaves the address bar (and the history) at once.
                    replace_address("/");
                    match api::sign_in_with_link(&LinkSignInRequest { token }).await {
                        Ok(me) => session.state.set(State::SignedIn(me)),
                        Err(failure) => session.state.set(State::SignedOut {
                            message: Some(failure_text(&failure)),
                        }),
                    }
                }
                None => session.check().await,
            }
        });
        session
    }

    /// Asks the server again (after a failure to reach it).
    pub async fn check(self) {
        self.state.set(State::Checking);
        match api::me().await {
            Ok(me) => self.state.set(State::SignedIn(me)),
            Err(ApiFailure::Rejected { status: 401, .. }) => {
                self.state.set(State::SignedOut { message: None })
            }
            Err(failure) => self.state.set(State::Unreachable(failure.to_string())),
        }
    }

    pub fn state(&self) -> State {
        self.state.get()
    }

    pub fn phase(&self) -> Phase {
        self.state.with(|s| match s {
            State::Checking => Phase::Checking,
            State::Unreachable(_) => Phase::Unreachable,
            State::SignedOut { .. } => Phase::SignedOut,
            State::SignedIn(me) if me.password_change_required => Phase::ChoosePassword,
            State::SignedIn(_) => Phase::Working,
        })
    }

    pub fn me(&self) -> Option<Me> {
        self.state.with(|s| match s {
            State::SignedIn(me) => Some(me.clone()),
            _ => None,
        })
    }

    pub fn signed_in(&self, me: Me) {
        self.state.set(State::SignedIn(me));
    }

    /// The signed-in user's role, if at least `role`.
    pub fn may(&self, role: Role) -> bool {
        self.state
            .with(|s| matches!(s, State::SignedIn(me) if me.role >= role))
    }

    /// The session ended on the server's side: back to the sign-in form.
    pub fn end(&self, message: &str) {
        if matches!(self.state.get_untracked(), State::SignedIn(_)) {
            self.state.set(State::SignedOut {
                message: Some(sentence(message)),
            });
        }
    }

    pub fn sign_out(self) {
        leptos::task::spawn_local(async move {
            // Whatever the server says, this screen is signed out.
            let _ = api::sign_out().await;
            self.state.set(State::SignedOut {
                message: Some("You are signed out.".to_owned()),
            });
        });
    }
}

/// The server's reasons are lower-case clauses; the form shows a sentence.
pub fn sentence(message: &str) -> String {
    let mut chars = message.trim().chars();
    let mut text: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !text.ends_with(['.', '!', '?']) {
        text.push('.');
    }
    text
}

/// What a failed sign-in says to the person at the screen.
pub fn failure_text(failure: &ApiFailure) -> String {
    match failure {
        ApiFailure::Rejected { message, .. } => sentence(message),
        ApiFailure::Unreachable => {
            "The Trackside server cannot be reached. Check the network, then try again.".to_owned()
        }
        other => other.to_string(),
    }
}

/// The token of a one-time sign-in link, from `/signin#link=<token>`.
fn link_in_address() -> Option<String> {
    let location = window().location();
    let path = location.pathname().ok()?;
    let hash = location.hash().ok()?;
    link_token(&path, &hash)
}

fn link_token(path: &str, hash: &str) -> Option<String> {
    if path.trim_end_matches('/') != "/signin" {
        return None;
    }
    hash.strip_prefix("#link=")
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .map(str::to_owned)
}

fn replace_address(path: &str) {
    if let Ok(history) = window().history() {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_read_only_from_the_sign_in_address() {
        assert_eq!(link_token("/signin", "#link=abc"), Some("abc".to_owned()));
        assert_eq!(link_token("/signin/", "#link=abc"), Some("abc".to_owned()));
        assert_eq!(link_token("/", "#link=abc"), None);
        assert_eq!(link_token("/signin", "#other=abc"), None);
        assert_eq!(link_token("/signin", "#link="), None);
    }

    #[test]
    fn server_reasons_read_as_sentences() {
        assert_eq!(
            sentence("wrong name or password"),
            "Wrong name or password."
        );
        assert_eq!(sentence("You are signed out."), "You are signed out.");
        assert_eq!(sentence(""), "");
    }
}
