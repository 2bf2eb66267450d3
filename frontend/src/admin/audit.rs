//! The audit trail: who did what, when, from where; filtered, newest first,
//! and downloadable as CSV for the security review.

use leptos::prelude::*;
use trackside_wire::AuditEntry;

use super::{Times, failure_text, problem};
use crate::api;
use crate::time::Clock;

/// The action families offered as a filter: (label, `action=` value).
const FAMILIES: [(&str, &str); 8] = [
    ("Everything", ""),
    ("Sign-ins and sign-outs", "signin,signin.failed,signout"),
    ("Failed sign-ins", "signin.failed"),
    ("Acknowledgements", "exception.acknowledge"),
    (
        "Shelves and maintenance windows",
        "exception.shelve,exception.unshelve,maintenance.*",
    ),
    ("Forecast models", "forecast.*"),
    ("Users and API tokens", "user.*,token.*"),
    ("Gateways", "gateway.*"),
];

/// Rows shown; the CSV holds every matching row.
const SHOWN: usize = 500;

#[component]
pub fn AuditTab(times: Times, clock: Clock) -> impl IntoView {
    let family = RwSignal::new(String::new());
    let actor = RwSignal::new(String::new());
    let target = RwSignal::new(String::new());
    let days = RwSignal::new(7i64);
    let query = Memo::new(move |_| {
        let from = clock.now_untracked() - days.get() * 86_400_000;
        let mut query = format!("from={from}");
        for (name, value) in [
            ("action", family.get()),
            ("actor", actor.get()),
            ("target", target.get()),
        ] {
            let value = value.trim().to_owned();
            if !value.is_empty() {
                query.push_str(&format!("&{name}={}", api::encode(&value)));
            }
        }
        query
    });
    let list = LocalResource::new(move || {
        let url = format!("/api/audit?{}&limit={SHOWN}", query.get());
        async move { api::audit(&url).await }
    });
    view! {
        <section class="admin-section" data-testid="audit-tab">
            <h2>"Audit trail"</h2>
            <p class="muted">
                "Every sign-in (and failed one), acknowledgement, model training and change to users, \
                 tokens and gateways, as it happened. Nobody can change or delete a row, Trackside included."
            </p>
            <div class="admin-form">
                <label class="field">
                    <span>"What"</span>
                    <select data-testid="audit-family" on:change=move |ev| family.set(event_target_value(&ev))>
                        {FAMILIES
                            .into_iter()
                            .map(|(label, value)| view! { <option value=value>{label}</option> })
                            .collect_view()}
                    </select>
                </label>
                <label class="field">
                    <span>"Who"</span>
                    <input
                        type="search"
                        placeholder="a user's name"
                        prop:value=move || actor.get()
                        on:change=move |ev| actor.set(event_target_value(&ev))
                    />
                </label>
                <label class="field">
                    <span>"On what"</span>
                    <input
                        type="search"
                        placeholder="a user, gateway or exception id"
                        prop:value=move || target.get()
                        on:change=move |ev| target.set(event_target_value(&ev))
                    />
                </label>
                <label class="field">
                    <span>"Over the last"</span>
                    <select on:change=move |ev| {
                        if let Ok(d) = event_target_value(&ev).parse() {
                            days.set(d);
                        }
                    }>
                        {[1i64, 7, 30, 365]
                            .into_iter()
                            .map(|d| {
                                let label = if d == 1 { "day".to_owned() } else { format!("{d} days") };
                                view! { <option value=d.to_string() selected=d == 7>{label}</option> }
                            })
                            .collect_view()}
                    </select>
                </label>
                <a
                    class="button secondary"
                    data-testid="audit-csv"
                    href=move || format!("/api/audit.csv?{}", query.get())
                    download=""
                >
                    "Download CSV"
                </a>
            </div>
            <Suspense fallback=|| view! { <p class="muted">"Loading the audit trail…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(rows) if rows.is_empty() => view! {
                            <p class="muted">"Nothing recorded that matches."</p>
                        }
                        .into_any(),
                        Ok(rows) => {
                            let more = (rows.len() >= SHOWN).then(|| view! {
                                <p class="muted">{format!("The newest {SHOWN} rows; the CSV holds them all.")}</p>
                            });
                            view! {
                                <table class="admin-table audit" data-testid="audit-table">
                                    <thead>
                                        <tr>
                                            <th>"When (yard time)"</th><th>"Who"</th><th>"Role"</th>
                                            <th>"From"</th><th>"What"</th><th>"On"</th><th>"Detail"</th>
                                        </tr>
                                    </thead>
                                    <tbody>{rows.into_iter().map(|r| row(r, times)).collect_view()}</tbody>
                                </table>
                                {more}
                            }
                            .into_any()
                        }
                        Err(failure) => problem(failure_text(&failure)).into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

fn row(entry: AuditEntry, times: Times) -> impl IntoView {
    let detail = entry
        .detail
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(" · ");
    let failed = entry.action == "signin.failed";
    let action = entry.action.clone();
    view! {
        <tr data-action=action class:failed=failed>
            <td>{times.cell(Some(entry.at))}</td>
            <td class="strong">{entry.actor.unwrap_or_else(|| "—".into())}</td>
            <td>{entry.role.unwrap_or_default()}</td>
            <td class="mono">{entry.address.unwrap_or_default()}</td>
            <td class="mono">{entry.action}</td>
            <td>{entry.target.unwrap_or_default()}</td>
            <td class="detail">{detail}</td>
        </tr>
    }
}
