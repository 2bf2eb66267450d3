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
    move || {
        acknowledging.get().map(|target| {
            let place = target
                .circuit
                .clone()
                .unwrap_or_else(|| target.subject.clone());
            let id = target.id;
            let send = move |comment: String| async move {
                match api::acknowledge(id, &AckRequest { comment }).await {
                    Ok(info) => {
                        exceptions.merge(vec![info]);
                        Ok(())
                    }
                    Err(failure) => Err(ack_failure_text(&failure)),
                }
            };
            view! {
                <CommentDialog
                    prefix="ack"
                    title="Acknowledge exception"
                    action="Acknowledge"
                    busy_label="Acknowledging…"
                    on_close=Callback::new(move |()| acknowledging.set(None))
                    send
                >
                    <span class="severity-badge" data-severity=target.severity.as_str()>
                        {target.severity.as_str().to_uppercase()}
                    </span>
                    <strong>{place}</strong>
                    " — "
                    {target.message.clone()}
                </CommentDialog>
            }
        })
    }
}

/// The modal of an operator's action that needs a comment (what they
/// found, or what happens next): who acts (the signed-in user, whom the
/// server records), the comment, and the refusal in words. `send` makes
/// the request with the trimmed comment; `Ok` closes the dialog. Its
/// `data-testid`s: `<prefix>-dialog`, `-as`, `-comment`, `-error`,
/// `-submit`.
#[component]
pub fn CommentDialog<S, Fut>(
    prefix: &'static str,
    title: &'static str,
    action: &'static str,
    busy_label: &'static str,
    on_close: Callback<()>,
    send: S,
    /// What it acts on, shown under the title.
    children: Children,
) -> impl IntoView
where
    S: Fn(String) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + 'static,
{
    let session = expect_context::<Session>();
    let by = move || session.me().map(|m| m.name).unwrap_or_default();
    let comment = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let close = move || on_close.run(());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let text = comment.get_untracked().trim().to_owned();
        if text.is_empty() {
            error.set(Some(
                "Enter a comment: what you found, or what happens next.".into(),
            ));
            return;
        }
        busy.set(true);
        let send = send.clone();
        leptos::task::spawn_local(async move {
            match send(text).await {
                Ok(()) => close(),
                Err(message) => {
                    busy.set(false);
                    error.set(Some(message));
                }
            }
        });
    };
    let id = move |what: &str| format!("{prefix}-{what}");
    view! {
        <div class="modal-backdrop" on:click=move |_| close()>
            <div
                class="modal"
                role="dialog"
                aria-modal="true"
                aria-labelledby=id("title")
                data-testid=id("dialog")
                on:click=|ev| ev.stop_propagation()
                on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                    if ev.key() == "Escape" {
                        close();
                    }
                }
            >
                <h2 id=id("title")>{title}</h2>
                <p class="modal-subject">{children()}</p>
                <form on:submit=submit>
                    <p class="ack-as" data-testid=id("as")>
                        "Acknowledging as "<strong>{by}</strong>
                    </p>
                    <label class="field">
                        <span>"Comment"</span>
                        <textarea
                            data-testid=id("comment")
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
                        <p class="form-error" role="alert" data-testid=id("error")>{message}</p>
                    })}
                    <div class="modal-actions">
                        <button type="button" class="secondary" on:click=move |_| close()>
                            "Cancel"
                        </button>
                        <button type="submit" data-testid=id("submit") disabled=move || busy.get()>
                            {move || if busy.get() { busy_label } else { action }}
                        </button>
                    </div>
                </form>
            </div>
        </div>
    }
}

/// The words of a failed acknowledgement, for the dialog.
fn ack_failure_text(failure: &ApiFailure) -> String {
    crate::api::refusal_text("acknowledged", failure)
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
