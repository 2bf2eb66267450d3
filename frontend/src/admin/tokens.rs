//! API tokens: for scripts (a curl export, a Prometheus scrape, a Grafana
//! datasource), each acting as a user with at most that user's role.

use leptos::prelude::*;
use trackside_wire::{NewToken, Role, TokenInfo};

use super::{Times, failure_text, problem, secret};
use crate::api;
use crate::fields::{DaysField, TextField};

#[component]
pub fn TokensTab(times: Times) -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let list = LocalResource::new(move || {
        reload.track();
        api::tokens()
    });
    let users = LocalResource::new(api::users);
    let error = RwSignal::new(None::<String>);
    let issued = RwSignal::new(None::<(String, String)>);
    let user = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let role = RwSignal::new(Role::Viewer);
    let days = RwSignal::new(90u32);
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let request = NewToken {
            user: user.get_untracked(),
            name: name.get_untracked().trim().to_owned(),
            role: role.get_untracked(),
            days: days.get_untracked(),
        };
        if request.user.is_empty() || request.name.is_empty() {
            error.set(Some(
                "Choose the user the token acts as, and name what uses it.".into(),
            ));
            return;
        }
        error.set(None);
        issued.set(None);
        leptos::task::spawn_local(async move {
            match api::issue_token(&request).await {
                Ok(answer) => {
                    name.set(String::new());
                    issued.set(Some((answer.info.name, answer.token)));
                    reload.update(|n| *n += 1);
                }
                Err(failure) => error.set(Some(failure_text(&failure))),
            }
        });
    };
    let revoke = move |id: i64| {
        error.set(None);
        leptos::task::spawn_local(async move {
            if let Err(failure) = api::revoke_token(id).await {
                error.set(Some(failure_text(&failure)));
            }
            reload.update(|n| *n += 1);
        });
    };
    view! {
        <section class="admin-section" data-testid="tokens-tab">
            <h2>"API tokens"</h2>
            <p class="muted">
                "A script sends its token as "<code>"Authorization: Bearer <token>"</code>
                ". A token acts as its user with at most that user's role; "<code>"metrics"</code>
                " reads /metrics and nothing else (for Prometheus)."
            </p>
            <form class="admin-form" on:submit=add>
                <label class="field">
                    <span>"Acts as"</span>
                    <select data-testid="token-user" on:change=move |ev| user.set(event_target_value(&ev))>
                        <option value="">"Choose a user…"</option>
                        <Suspense>
                            {move || Suspend::new(async move {
                                users
                                    .await
                                    .unwrap_or_default()
                                    .into_iter()
                                    .filter(|u| !u.disabled)
                                    .map(|u| view! { <option value=u.name.clone()>{format!("{} ({})", u.name, u.role)}</option> })
                                    .collect_view()
                            })}
                        </Suspense>
                    </select>
                </label>
                <TextField
                    label="Used by".into()
                    value=name
                    testid="token-name"
                    placeholder="prometheus"
                    maxlength=64
                />
                <label class="field">
                    <span>"Role"</span>
                    <select
                        data-testid="token-role"
                        on:change=move |ev| {
                            if let Some(r) = Role::parse(&event_target_value(&ev)) {
                                role.set(r);
                            }
                        }
                    >
                        {Role::ALL
                            .into_iter()
                            .map(|r| view! { <option value=r.as_str() selected=move || role.get() == r>{r.as_str()}</option> })
                            .collect_view()}
                    </select>
                </label>
                <DaysField label="Expires after (days)" value=days max=366 />
                <button type="submit" class="primary" data-testid="issue-token">"Issue token"</button>
            </form>
            {move || issued.get().map(|(what, token)| secret(
                format!("Token for {what}"),
                token,
                "Copy it into the script's configuration now: it is stored only as a hash and shown this once.",
            ))}
            {move || error.get().map(problem)}
            <Suspense fallback=|| view! { <p class="muted">"Loading tokens…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(tokens) if tokens.is_empty() => view! { <p class="muted">"No API tokens yet."</p> }.into_any(),
                        Ok(tokens) => view! {
                            <table class="admin-table" data-testid="tokens-table">
                                <thead>
                                    <tr>
                                        <th>"Id"</th><th>"Acts as"</th><th>"Used by"</th><th>"Role"</th>
                                        <th>"Expires"</th><th>"Last used"</th><th>"State"</th><th></th>
                                    </tr>
                                </thead>
                                <tbody>
                                    {tokens.into_iter().map(|t| row(t, times, revoke)).collect_view()}
                                </tbody>
                            </table>
                        }
                        .into_any(),
                        Err(failure) => problem(failure_text(&failure)).into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

fn row(token: TokenInfo, times: Times, revoke: impl Fn(i64) + Copy + 'static) -> impl IntoView {
    let now = js_sys::Date::now() as i64;
    let state = if token.revoked_at.is_some() {
        "revoked"
    } else if token.expires_at <= now {
        "expired"
    } else {
        "active"
    };
    let id = token.id;
    view! {
        <tr data-token=id>
            <td class="number">{id}</td>
            <td>{token.user.clone()}</td>
            <td class="strong">{token.name.clone()}</td>
            <td><span class="role-badge" data-role=token.role.as_str()>{token.role.as_str()}</span></td>
            <td>{times.cell(Some(token.expires_at))}</td>
            <td>{times.cell(token.last_used_at)}</td>
            <td><span class="state-chip" class:active=state != "active">{state}</span></td>
            <td class="actions">
                {(state == "active").then(|| view! {
                    <button class="secondary" on:click=move |_| revoke(id)>"Revoke"</button>
                })}
            </td>
        </tr>
    }
}
