//! The yard layout: the file the Diagram draws, replaced from the app.
//!
//! The server checks a new file exactly as `trackside layout check` does
//! and keeps the old one in force when it has problems, so this tab can
//! let an admin edit freely: what it adds is the way back to each problem
//! (a click puts the cursor on its line) and the file to start from.

use leptos::prelude::*;
use trackside_wire::{Layout, LayoutProblem};
use wasm_bindgen::JsCast as _;
use web_sys::{HtmlInputElement, HtmlTextAreaElement};

use super::{failure_text, problem};
use crate::api;
use crate::download::save_text;

/// What the last replacement came to.
#[derive(Clone)]
enum Outcome {
    Replaced(Layout),
    Refused {
        error: String,
        problems: Vec<LayoutProblem>,
    },
}

#[component]
pub fn LayoutTab() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let current = LocalResource::new(move || {
        reload.track();
        api::layout()
    });
    let text = RwSignal::new(String::new());
    let edited = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let outcome = RwSignal::new(None::<Outcome>);
    let editor = NodeRef::<leptos::html::Textarea>::new();

    // The file in force, into the editor (unless the admin is editing).
    let load = move || {
        leptos::task::spawn_local(async move {
            match api::layout_source().await {
                Ok(source) => {
                    text.set(source.unwrap_or_default());
                    edited.set(false);
                }
                Err(failure) => error.set(Some(failure_text(&failure))),
            }
        });
    };
    load();

    let replace = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = text.get_untracked();
        if body.trim().is_empty() {
            error.set(Some(
                "The layout is empty: paste a layout file or choose one with \"Open a file\"."
                    .into(),
            ));
            return;
        }
        error.set(None);
        outcome.set(None);
        busy.set(true);
        leptos::task::spawn_local(async move {
            match api::replace_layout(body).await {
                Ok(Ok(layout)) => {
                    edited.set(false);
                    outcome.set(Some(Outcome::Replaced(layout)));
                    reload.update(|n| *n += 1);
                }
                Ok(Err(refused)) => outcome.set(Some(Outcome::Refused {
                    error: refused.error,
                    problems: refused.problems,
                })),
                Err(failure) => error.set(Some(failure_text(&failure))),
            }
            busy.set(false);
        });
    };

    // A file from the admin's machine, read by the browser.
    let open_file = move |ev: leptos::ev::Event| {
        let Some(input) = ev
            .target()
            .and_then(|t| t.dyn_into::<HtmlInputElement>().ok())
        else {
            return;
        };
        let Some(file) = input.files().and_then(|files| files.get(0)) else {
            return;
        };
        if file.size() > MAX_FILE_BYTES {
            error.set(Some(format!(
                "{} is {:.0} KiB; a layout file is at most 1 MiB. Choose the yard's layout (.toml) file.",
                file.name(),
                file.size() / 1024.0
            )));
            return;
        }
        leptos::task::spawn_local(async move {
            match wasm_bindgen_futures::JsFuture::from(file.text()).await {
                Ok(content) => {
                    text.set(content.as_string().unwrap_or_default());
                    edited.set(true);
                    outcome.set(None);
                    error.set(None);
                }
                Err(_) => error.set(Some(format!(
                    "{} could not be read; choose a text (.toml) file.",
                    file.name()
                ))),
            }
        });
        // The same file can be chosen again after an edit.
        input.set_value("");
    };

    let download = move |_| {
        if let Err(err) = save_text(&text.get_untracked(), "yard.toml", "application/toml") {
            error.set(Some(format!("The file could not be saved: {err:?}")));
        }
    };

    // Selects `line` (1-based) in the editor: the whole entry when the
    // problem is about one (`[[section]]` and its keys).
    let go_to = move |line: u32| {
        let Some(area) = editor.get_untracked() else {
            return;
        };
        let area: &HtmlTextAreaElement = &area;
        let value = area.value();
        let (start, end) = line_span(&value, line);
        let (start, end) = (utf16_offset(&value, start), utf16_offset(&value, end));
        let _ = area.focus();
        let _ = area.set_selection_range(start, end);
        // Roughly scroll the line into view: the editor's lines are even.
        let lines = value.lines().count().max(1) as f64;
        let height = f64::from(area.scroll_height());
        area.set_scroll_top(((f64::from(line.saturating_sub(3)) / lines) * height) as i32);
    };

    view! {
        <section class="admin-section" data-testid="layout-tab">
            <h2>"Yard layout"</h2>
            <p class="muted">
                "The schematic the Diagram draws: sections tied to track circuits, points, signals, \
                 labels, each circuit's criticality and the demo's train routes (docs/layout.md \
                 describes the file). A new file is checked as `trackside layout check` does; \
                 one with problems is refused and the current layout stays. The replaced file \
                 is kept beside the new one, its name ending in .previous."
            </p>
            <Suspense fallback=|| view! { <p class="muted">"Loading the layout…"</p> }>
                {move || Suspend::new(async move {
                    match current.await {
                        Ok(Ok(layout)) => summary(&layout, "In force:", "layout-status").into_any(),
                        Ok(Err(message)) => view! {
                            <p class="layout-status" data-testid="layout-status" data-state="missing">{message}</p>
                        }
                        .into_any(),
                        Err(failure) => problem(failure_text(&failure)).into_any(),
                    }
                })}
            </Suspense>
            <form class="layout-form" on:submit=replace>
                <div class="layout-actions">
                    <label class="button secondary file-button">
                        "Open a file…"
                        <input
                            type="file"
                            accept=".toml,text/plain,application/toml"
                            data-testid="layout-file"
                            on:change=open_file
                        />
                    </label>
                    <button type="button" class="secondary" on:click=move |_| { outcome.set(None); load(); }>
                        "Discard edits"
                    </button>
                    <button type="button" class="secondary" on:click=download>"Save as file"</button>
                    <button
                        type="submit"
                        class="primary"
                        data-testid="layout-replace"
                        disabled=move || busy.get() || !edited.get()
                    >
                        {move || if busy.get() { "Checking…" } else { "Check and replace" }}
                    </button>
                    <span class="muted" data-testid="layout-edited">
                        {move || if edited.get() { "Edited, not yet in force" } else { "As in force" }}
                    </span>
                </div>
                {move || error.get().map(problem)}
                {move || outcome.get().map(|o| match o {
                    Outcome::Replaced(layout) => summary(&layout, "Replaced. Now in force:", "layout-replaced").into_any(),
                    Outcome::Refused { error, problems } => view! {
                        <div class="layout-problems" role="alert" data-testid="layout-problems">
                            <p class="form-error" title=error>{refusal(problems.len())}</p>
                            <ol>
                                {problems.into_iter().map(|p| {
                                    let line = p.line;
                                    view! {
                                        <li data-line=line.map(|l| l.to_string())>
                                            {match line {
                                                Some(line) => view! {
                                                    <button type="button" class="link" on:click=move |_| go_to(line)>
                                                        {format!("Line {line}")}
                                                    </button>
                                                }.into_any(),
                                                None => view! { <span class="muted">"The file"</span> }.into_any(),
                                            }}
                                            ": "{p.message}
                                        </li>
                                    }
                                }).collect_view()}
                            </ol>
                        </div>
                    }
                    .into_any(),
                })}
                <label class="field layout-editor">
                    <span>"Layout file (TOML)"</span>
                    <textarea
                        node_ref=editor
                        data-testid="layout-text"
                        spellcheck="false"
                        rows="26"
                        prop:value=move || text.get()
                        on:input=move |ev| {
                            text.set(event_target_value(&ev));
                            edited.set(true);
                        }
                    ></textarea>
                </label>
            </form>
        </section>
    }
}

/// The refusal's headline; the list below says what and where.
fn refusal(problems: usize) -> String {
    let what = match problems {
        1 => "One problem in this file (below). Fix it".to_owned(),
        n => format!("{n} problems in this file (below). Fix them"),
    };
    format!("Not replaced: {what} and check again; the current layout stays in force meanwhile.")
}

/// What the server takes at most (`yard::layout::MAX_LAYOUT_BYTES`).
const MAX_FILE_BYTES: f64 = 1024.0 * 1024.0;

fn summary(layout: &Layout, lead: &'static str, testid: &'static str) -> impl IntoView {
    let name = layout.name.clone().unwrap_or_else(|| "Unnamed yard".into());
    let counts = format!(
        "{} sections on {} circuits, {} points, {} signals, {} routes",
        layout.sections.len(),
        layout.circuits.len(),
        layout.points.len(),
        layout.signals.len(),
        layout.routes.len()
    );
    view! {
        <p class="layout-status" data-testid=testid data-state="ok">
            {lead}" "<strong>{name}</strong>" — "{counts}". "
            <a href="/diagram">"Open the Diagram"</a>
        </p>
    }
}

/// The byte offset where `line` (1-based) starts; the end for a line past it.
fn line_start(text: &str, line: u32) -> usize {
    if line <= 1 {
        return 0;
    }
    text.match_indices('\n')
        .nth(line as usize - 2)
        .map_or(text.len(), |(at, _)| at + 1)
}

/// The bytes to select for a problem at `line`: that line, or, for a
/// table header, the table up to the next header (blank lines trimmed).
fn line_span(text: &str, line: u32) -> (usize, usize) {
    let start = line_start(text, line);
    let line_end = |from: usize| text[from..].find('\n').map_or(text.len(), |n| from + n);
    let mut end = line_end(start);
    if text[start..].trim_start().starts_with('[') {
        let mut next = end + 1;
        while next < text.len() && !text[next..].trim_start().starts_with('[') {
            let this_end = line_end(next);
            if !text[next..this_end].trim().is_empty() {
                end = this_end;
            }
            next = this_end + 1;
        }
    }
    (start, end)
}

/// A byte offset as the browser counts (UTF-16 units).
fn utf16_offset(text: &str, byte: usize) -> u32 {
    text[..byte].encode_utf16().count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_found_by_number() {
        let text = "a = 1\n\n# é\nb = 2";
        assert_eq!(line_start(text, 1), 0);
        assert_eq!(line_start(text, 2), 6);
        assert_eq!(line_start(text, 4), text.find("b =").unwrap());
        assert_eq!(line_start(text, 9), text.len());
        // A table is selected with its keys, a key alone.
        let toml = "[[a]]\nx = 1\n\n[[b]]\ny = 2\n";
        assert_eq!(
            &toml[line_span(toml, 1).0..line_span(toml, 1).1],
            "[[a]]\nx = 1"
        );
        assert_eq!(&toml[line_span(toml, 5).0..line_span(toml, 5).1], "y = 2");
        assert_eq!(
            &toml[line_span(toml, 4).0..line_span(toml, 4).1],
            "[[b]]\ny = 2"
        );
        // `é` is two bytes and one UTF-16 unit.
        assert_eq!(text.len(), 17);
        assert_eq!(utf16_offset(text, text.len()), 16);
    }
}
