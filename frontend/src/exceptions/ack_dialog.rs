//! The acknowledge dialog: why, required, because the acknowledgement is
//! the record of an operator having seen the exception and decided what
//! happens next. Who is the signed-in user: the server records their name.

use leptos::prelude::*;
use trackside_wire::{AckRequest, ExceptionInfo};

use super::model::Exceptions;
use crate::api::{self, ApiFailure};
use crate::session::Session;

#[component]
pub fn AckDialog(
    exceptions: Exceptions,
    acknowledging: RwSignal<Option<ExceptionInfo>>,
) -> impl IntoView {
    let session = expect_context::<Session>();
    let by = move || session.me().map(|m| m.name).unwrap_or_default();
    let comment = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let close = move || {
        acknowledging.set(None);
        comment.set(String::new());
        error.set(None);
        busy.set(false);
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Some(target) = acknowledging.get_untracked() else {
            return;
        };
        let request = AckRequest {
            comment: comment.get_untracked().trim().to_owned(),
        };
        if request.comment.is_empty() {
            error.set(Some(
                "Enter a comment: what you found, or what happens next.".into(),
            ));
            return;
        }
        busy.set(true);
        leptos::task::spawn_local(async move {
            match api::acknowledge(target.id, &request).await {
                Ok(info) => {
                    exceptions.merge(vec![info]);
                    close();
                }
                Err(failure) => {
                    busy.set(false);
                    error.set(Some(ack_failure_text(&failure)));
                }
            }
        });
    };
    move || {
        acknowledging.get().map(|target| {
            let place = target.circuit.clone().unwrap_or_else(|| target.subject.clone());
            view! {
                <div class="modal-backdrop" on:click=move |_| close()>
                    <div
                        class="modal"
                        role="dialog"
                        aria-modal="true"
                        aria-labelledby="ack-title"
                        data-testid="ack-dialog"
                        on:click=|ev| ev.stop_propagation()
                        on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                            if ev.key() == "Escape" {
                                close();
                            }
                        }
                    >
                        <h2 id="ack-title">"Acknowledge exception"</h2>
                        <p class="modal-subject">
                            <span class="severity-badge" data-severity=target.severity.as_str()>
                                {target.severity.as_str().to_uppercase()}
                            </span>
                            <strong>{place}</strong>
                            " — "
                            {target.message.clone()}
                        </p>
                        <form on:submit=submit>
                            <p class="ack-as" data-testid="ack-as">
                                "Acknowledging as "<strong>{by}</strong>
                            </p>
                            <label class="field">
                                <span>"Comment"</span>
                                <textarea
                                    data-testid="ack-comment"
                                    rows="3"
                                    maxlength="2000"
                                    placeholder="What you found, or what happens next"
                                    prop:value=move || comment.get()
                                    on:input=move |ev| {
                                        comment.set(event_target_value(&ev));
                                        error.set(None);
                                    }
                                ></textarea>
                            </label>
                            {move || error.get().map(|message| view! {
                                <p class="form-error" role="alert" data-testid="ack-error">{message}</p>
                            })}
                            <div class="modal-actions">
                                <button type="button" class="secondary" on:click=move |_| close()>
                                    "Cancel"
                                </button>
                                <button type="submit" data-testid="ack-submit" disabled=move || busy.get()>
                                    {move || if busy.get() { "Acknowledging…" } else { "Acknowledge" }}
                                </button>
                            </div>
                        </form>
                    </div>
                </div>
            }
        })
    }
}

/// The words of a failed acknowledgement, for the dialog.
fn ack_failure_text(failure: &ApiFailure) -> String {
    super::refusal_text("acknowledged", failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_why_and_what_to_do() {
        let cases = [
            (
                ApiFailure::Rejected {
                    status: 409,
                    message: "already acknowledged by Ann".into(),
                },
                "Not acknowledged: already acknowledged by Ann.",
            ),
            (
                ApiFailure::Unreachable,
                "Not acknowledged: the Trackside server cannot be reached. Check the network, then try again.",
            ),
        ];
        for (failure, text) in cases {
            assert_eq!(ack_failure_text(&failure), text);
        }
    }
}
