//! The user's own settings: which alarms reach them by e-mail, on which
//! circuits, at which hours of the yard's day. An admin opens anyone's
//! with `?user=<name>` (from the users tab).
//!
//! Why here and not in admin: what wakes a person at night is theirs to
//! choose; the on-duty groups stay in the server's configuration.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use trackside_wire::{NotifyRoute, NotifySettings, Priority, YardInfo};

use crate::api;

/// One route as the form edits it.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteForm {
    pub min_priority: Priority,
    /// Comma- or space-separated patterns; empty: every circuit.
    pub circuits: String,
    pub any_hour: bool,
    pub from: u8,
    pub to: u8,
}

impl RouteForm {
    fn new() -> Self {
        Self {
            min_priority: Priority::High,
            circuits: String::new(),
            any_hour: false,
            from: 18,
            to: 6,
        }
    }

    fn of(route: &NotifyRoute) -> Self {
        let [from, to] = route.hours.unwrap_or([18, 6]);
        Self {
            min_priority: route.min_priority,
            circuits: route.circuits.join(", "),
            any_hour: route.hours.is_none(),
            from,
            to,
        }
    }
}

/// The form as the API takes it, or what to fix.
pub fn settings_of(email: &str, routes: &[RouteForm]) -> Result<NotifySettings, String> {
    let email = email.trim();
    if email.is_empty() && !routes.is_empty() {
        return Err("Enter the e-mail address the alarms go to.".into());
    }
    let routes = routes
        .iter()
        .enumerate()
        .map(|(n, r)| {
            if !r.any_hour && r.from == r.to {
                return Err(format!(
                    "Route {}: choose two different hours, or \"at any hour\".",
                    n + 1
                ));
            }
            Ok(NotifyRoute {
                min_priority: r.min_priority,
                circuits: r
                    .circuits
                    .split([',', ' '])
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                hours: (!r.any_hour).then_some([r.from, r.to]),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(NotifySettings {
        email: (!email.is_empty()).then(|| email.to_owned()),
        routes,
    })
}

#[component]
pub fn SettingsPage(yard: RwSignal<Option<YardInfo>>) -> impl IntoView {
    let query = use_query_map();
    let user = move || query.with(|q| q.get("user").filter(|u| !u.is_empty()));
    let email = RwSignal::new(String::new());
    let routes = RwSignal::new(Vec::<RouteForm>::new());
    let status = RwSignal::new(None::<(bool, String)>);
    let loaded = LocalResource::new(move || {
        let user = user();
        async move { api::notify_settings(user.as_deref()).await }
    });
    Effect::new(move || {
        if let Some(Ok(settings)) = loaded.get() {
            email.set(settings.email.clone().unwrap_or_default());
            routes.set(settings.routes.iter().map(RouteForm::of).collect());
        }
    });
    let zone = move || {
        yard.with(|y| y.as_ref().map(|y| y.timezone.clone()))
            .unwrap_or_default()
    };
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let settings = match settings_of(&email.get_untracked(), &routes.get_untracked()) {
            Ok(settings) => settings,
            Err(why) => return status.set(Some((false, why))),
        };
        let user = user();
        status.set(Some((true, "Saving…".into())));
        leptos::task::spawn_local(async move {
            match api::set_notify_settings(user.as_deref(), &settings).await {
                Ok(_) => status.set(Some((
                    true,
                    "Saved. New alarms follow these routes within seconds.".into(),
                ))),
                Err(failure) => status.set(Some((false, crate::session::failure_text(&failure)))),
            }
        });
    };
    let hour_options = |selected: u8| {
        (0..24u8)
            .map(|h| view! { <option value=h selected=h == selected>{format!("{h:02}:00")}</option> })
            .collect_view()
    };
    view! {
        <main class="settings-page" data-testid="settings-page">
            <h1>
                {move || match user() {
                    Some(name) => format!("E-mail alarms for {name}"),
                    None => "My e-mail alarms".to_owned(),
                }}
            </h1>
            <p class="muted">
                "Each route sends an announced alarm (a new one, an escalation, one still active after maintenance) "
                "of at least its priority, on its circuits, within its hours. Hours are the yard's ("
                {zone}"); a route from 18:00 to 06:00 runs past midnight. The on-duty and supervisor groups "
                "are set in the server's configuration and get alarms regardless."
            </p>
            <form class="admin-form settings-form" on:submit=save>
                <label class="field">
                    <span>"E-mail address"</span>
                    <input
                        type="email"
                        data-testid="notify-email"
                        maxlength=254
                        placeholder="ann@yard.example"
                        prop:value=move || email.get()
                        on:input=move |ev| email.set(event_target_value(&ev))
                    />
                </label>
                <table class="admin-table routes-table" data-testid="notify-routes">
                    <thead>
                        <tr><th>"Priority at least"</th><th>"Circuits"</th><th>"Hours"</th><th></th></tr>
                    </thead>
                    <tbody>
                        {move || {
                            routes
                                .get()
                                .into_iter()
                                .enumerate()
                                .map(|(n, r)| {
                                    let edit = move |f: &dyn Fn(&mut RouteForm)| routes.update(|rs| {
                                        if let Some(r) = rs.get_mut(n) {
                                            f(r);
                                        }
                                    });
                                    view! {
                                        <tr data-route=n>
                                            <td>
                                                <select on:change=move |ev| {
                                                    let p = match event_target_value(&ev).as_str() {
                                                        "low" => Priority::Low,
                                                        "medium" => Priority::Medium,
                                                        _ => Priority::High,
                                                    };
                                                    edit(&|r| r.min_priority = p);
                                                }>
                                                    {Priority::ALL
                                                        .into_iter()
                                                        .map(|p| view! { <option value=p.as_str() selected=p == r.min_priority>{p.label()}</option> })
                                                        .collect_view()}
                                                </select>
                                            </td>
                                            <td>
                                                <input
                                                    type="text"
                                                    placeholder="all circuits (or T1*, P2)"
                                                    maxlength=512
                                                    prop:value=r.circuits.clone()
                                                    on:change=move |ev| {
                                                        let v = event_target_value(&ev);
                                                        edit(&|r| r.circuits = v.clone());
                                                    }
                                                />
                                            </td>
                                            <td class="hours">
                                                <label class="inline">
                                                    <input
                                                        type="checkbox"
                                                        prop:checked=r.any_hour
                                                        on:change=move |ev| {
                                                            let on = event_target_checked(&ev);
                                                            edit(&|r| r.any_hour = on);
                                                        }
                                                    />
                                                    " at any hour"
                                                </label>
                                                <Show when=move || !r.any_hour>
                                                    " from "
                                                    <select on:change=move |ev| {
                                                        let h = event_target_value(&ev).parse().unwrap_or(0);
                                                        edit(&|r| r.from = h);
                                                    }>{hour_options(r.from)}</select>
                                                    " to "
                                                    <select on:change=move |ev| {
                                                        let h = event_target_value(&ev).parse().unwrap_or(0);
                                                        edit(&|r| r.to = h);
                                                    }>{hour_options(r.to)}</select>
                                                </Show>
                                            </td>
                                            <td class="actions">
                                                <button
                                                    type="button"
                                                    class="secondary"
                                                    on:click=move |_| routes.update(|rs| { rs.remove(n); })
                                                >"Remove"</button>
                                            </td>
                                        </tr>
                                    }
                                })
                                .collect_view()
                        }}
                    </tbody>
                </table>
                <Show when=move || routes.with(Vec::is_empty)>
                    <p class="muted">"No routes: no e-mail reaches you besides your group's."</p>
                </Show>
                <div class="form-actions">
                    <button
                        type="button"
                        class="secondary"
                        data-testid="add-route"
                        on:click=move |_| routes.update(|rs| rs.push(RouteForm::new()))
                    >"Add a route"</button>
                    <button type="submit" class="primary" data-testid="save-routes">"Save"</button>
                </div>
                {move || status.get().map(|(ok, message)| view! {
                    <p class=if ok { "form-ok" } else { "form-error" } role="status" data-testid="settings-status">
                        {message}
                    </p>
                })}
                {move || match loaded.get() {
                    Some(Err(failure)) => Some(view! {
                        <p class="form-error" role="alert">{crate::session::failure_text(&failure)}</p>
                    }),
                    _ => None,
                }}
            </form>
        </main>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_settings_or_says_what_to_fix() {
        let night = RouteForm {
            circuits: "T1*, P2  T3".into(),
            ..RouteForm::new()
        };
        let settings = settings_of(" ann@yard.example ", std::slice::from_ref(&night)).unwrap();
        assert_eq!(settings.email.as_deref(), Some("ann@yard.example"));
        assert_eq!(settings.routes[0].circuits, ["T1*", "P2", "T3"]);
        assert_eq!(settings.routes[0].hours, Some([18, 6]));
        let always = RouteForm {
            any_hour: true,
            ..night.clone()
        };
        assert_eq!(
            settings_of("a@b.c", &[always]).unwrap().routes[0].hours,
            None
        );
        assert!(settings_of("", std::slice::from_ref(&night)).is_err());
        let same = RouteForm {
            from: 6,
            to: 6,
            ..night
        };
        assert!(
            settings_of("a@b.c", &[same])
                .unwrap_err()
                .contains("two different hours")
        );
        assert_eq!(settings_of("", &[]).unwrap(), NotifySettings::default());
    }
}
