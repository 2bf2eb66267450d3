//! Users: who may sign in, with which role; add, change role, disable,
//! enable, issue a new one-time password.

use leptos::prelude::*;
use trackside_wire::{NewUser, Role, UserChange, UserInfo};

use super::{Times, failure_text, problem, secret};
use crate::api;
use crate::fields::TextField;

#[component]
pub fn UsersTab(times: Times) -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let list = LocalResource::new(move || {
        reload.track();
        api::users()
    });
    let error = RwSignal::new(None::<String>);
    let issued = RwSignal::new(None::<(String, String)>);
    let name = RwSignal::new(String::new());
    let role = RwSignal::new(Role::Viewer);
    let busy = RwSignal::new(false);
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let request = NewUser {
            name: name.get_untracked().trim().to_owned(),
            role: role.get_untracked(),
            password: None,
        };
        if request.name.is_empty() {
            error.set(Some("Enter the new user's name.".into()));
            return;
        }
        busy.set(true);
        error.set(None);
        issued.set(None);
        leptos::task::spawn_local(async move {
            match api::add_user(&request).await {
                Ok(answer) => {
                    name.set(String::new());
                    if let Some(password) = answer.password {
                        issued.set(Some((answer.user.name, password)));
                    }
                    reload.update(|n| *n += 1);
                }
                Err(failure) => error.set(Some(failure_text(&failure))),
            }
            busy.set(false);
        });
    };
    // One change at a time, each followed by a fresh list.
    let change = move |user: String, change: UserChange| {
        error.set(None);
        issued.set(None);
        leptos::task::spawn_local(async move {
            match api::change_user(&user, &change).await {
                Ok(answer) => {
                    if let Some(password) = answer.password {
                        issued.set(Some((answer.user.name, password)));
                    }
                }
                Err(failure) => error.set(Some(failure_text(&failure))),
            }
            reload.update(|n| *n += 1);
        });
    };
    view! {
        <section class="admin-section" data-testid="users-tab">
            <h2>"Users"</h2>
            <p class="muted">
                "Viewers see everything; operators also acknowledge exceptions; admins also train \
                 models and manage users, gateways, tokens and the audit trail. Changing a user's \
                 role, disabling them or resetting their password signs them out everywhere at once."
            </p>
            <form class="admin-form" on:submit=add>
                <TextField label="Name".into() value=name testid="new-user-name" maxlength=64 />
                <label class="field">
                    <span>"Role"</span>
                    <RoleSelect role testid="new-user-role" />
                </label>
                <button type="submit" class="primary" data-testid="add-user" disabled=move || busy.get()>
                    "Add user"
                </button>
            </form>
            {move || issued.get().map(|(user, password)| secret(
                format!("One-time password for {user}"),
                password,
                "Give it to them in person. It works once: at sign-in they choose their own.",
            ))}
            {move || error.get().map(problem)}
            <Suspense fallback=|| view! { <p class="muted">"Loading users…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(users) => view! {
                            <table class="admin-table" data-testid="users-table">
                                <thead>
                                    <tr>
                                        <th>"Name"</th><th>"Role"</th><th>"State"</th>
                                        <th>"Last sign-in"</th><th>"Sessions"</th><th>"Actions"</th>
                                    </tr>
                                </thead>
                                <tbody>
                                    {users.into_iter().map(|u| row(u, times, change)).collect_view()}
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

fn row(
    user: UserInfo,
    times: Times,
    change: impl Fn(String, UserChange) + Copy + 'static,
) -> impl IntoView {
    let name = user.name.clone();
    let (for_role, for_state, for_reset) = (name.clone(), name.clone(), name.clone());
    let disabled = user.disabled;
    let state = match (user.disabled, user.password_change_required) {
        (true, _) => "disabled",
        (false, true) => "must choose a password",
        (false, false) => "enabled",
    };
    view! {
        <tr data-user=user.name.clone() data-disabled=disabled.to_string()>
            <td class="strong">{user.name.clone()}</td>
            <td>
                <select
                    aria-label=format!("Role of {}", user.name)
                    on:change=move |ev| {
                        if let Some(role) = Role::parse(&event_target_value(&ev)) {
                            change(for_role.clone(), UserChange { role: Some(role), ..UserChange::default() });
                        }
                    }
                >
                    {Role::PEOPLE
                        .into_iter()
                        .map(|r| view! { <option value=r.as_str() selected=r == user.role>{r.as_str()}</option> })
                        .collect_view()}
                </select>
            </td>
            <td><span class="state-chip" class:active=disabled>{state}</span></td>
            <td>{times.cell(user.last_sign_in_at)}</td>
            <td class="number">{user.sessions}</td>
            <td class="actions">
                <a class="button secondary" href=format!("/settings?user={}", crate::api::encode(&name))>
                    "E-mail alarms"
                </a>
                <button class="secondary" on:click=move |_| {
                    change(for_state.clone(), UserChange { disabled: Some(!disabled), ..UserChange::default() })
                }>
                    {if disabled { "Enable" } else { "Disable" }}
                </button>
                <button class="secondary" on:click=move |_| {
                    change(for_reset.clone(), UserChange { reset_password: true, ..UserChange::default() })
                }>
                    "New password"
                </button>
            </td>
        </tr>
    }
}

#[component]
pub fn RoleSelect(role: RwSignal<Role>, testid: &'static str) -> impl IntoView {
    view! {
        <select
            data-testid=testid
            on:change=move |ev| {
                if let Some(r) = Role::parse(&event_target_value(&ev)) {
                    role.set(r);
                }
            }
        >
            {Role::PEOPLE
                .into_iter()
                .map(|r| view! { <option value=r.as_str() selected=move || role.get() == r>{r.as_str()}</option> })
                .collect_view()}
        </select>
    }
}
