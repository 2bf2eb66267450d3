//! The live board, the page a control room watches all day: a card per
//! circuit with its occupancy and the latest value and age of each
//! parameter.
//!
//! Its model (`model.rs`) holds the yard as signals and decides how
//! readings merge and in which order circuits show; the cards (`cards.rs`)
//! only draw it. Kept apart, the merge rules are tested natively and a
//! change of layout cannot change what the board believes.

mod cards;
pub mod model;

use std::time::Duration;

use leptos::prelude::*;

use self::cards::CircuitGrid;
pub use self::model::Board;
use crate::api::ApiFailure;
use crate::exceptions::Exceptions;
use crate::health::WorstCircuits;
use crate::time::Clock;

/// How long after a failed snapshot the board asks again.
const SNAPSHOT_RETRY: Duration = Duration::from_secs(5);

/// The page at `/`. `snapshot` is the app's load of `/api/yard` and
/// `/api/channels`: the board waits for the first one and says when one
/// failed, but keeps showing what it has either way.
#[component]
pub fn BoardPage(
    board: Board,
    clock: Clock,
    exceptions: Exceptions,
    snapshot: LocalResource<Result<(), ApiFailure>>,
) -> impl IntoView {
    view! {
        <main class="board">
            <Transition fallback=move || board.is_empty().then(Loading)>
                {move || Suspend::new(async move {
                    match snapshot.await {
                        Ok(()) => view! { <EmptyNotice board /> }.into_any(),
                        Err(failure) => {
                            view! { <Problem failure retry=move || snapshot.refetch() /> }
                                .into_any()
                        }
                    }
                })}
            </Transition>
            <WorstCircuits />
            <CircuitGrid board clock exceptions />
        </main>
    }
}

#[component]
fn Loading() -> impl IntoView {
    view! {
        <div class="notice loading" role="status">
            <span class="spinner" aria-hidden="true"></span>
            <p class="notice-title">"Loading circuits…"</p>
        </div>
    }
}

#[component]
fn EmptyNotice(board: Board) -> impl IntoView {
    move || {
        board.is_empty().then(|| {
            view! {
                <div class="notice empty" role="status">
                    <p class="notice-title">"No circuits yet"</p>
                    <p class="notice-text">"Waiting for the first reading from a gateway."</p>
                </div>
            }
        })
    }
}

/// The snapshot failed: say so, keep whatever the board already shows, and
/// try again on a timer (the live feed also retries on its own schedule).
#[component]
fn Problem(failure: ApiFailure, retry: impl Fn() + Send + Sync + 'static) -> impl IntoView {
    if let Ok(handle) = set_timeout_with_handle(retry, SNAPSHOT_RETRY) {
        on_cleanup(move || handle.clear());
    }
    view! {
        <div class="notice problem" role="alert">
            <p class="notice-title">"Cannot load the yard"</p>
            <p class="notice-text">{failure.to_string()}</p>
        </div>
    }
}
