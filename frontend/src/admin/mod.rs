//! Administration: users, gateways, API tokens, the yard layout and the
//! audit trail, for admins. Each tab is the app's face of an admin API
//! (`/api/users`, `/api/gateway-credentials`, `/api/tokens`,
//! `/api/layout`, `/api/audit`); the server
//! refuses all of them to anyone else, and this page says so instead of
//! showing empty tables. A secret (a one-time password, a token, a key) is
//! shown once, right after it is made, with what to do with it.

mod audit;
mod gateways;
mod layout;
mod tokens;
mod users;

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;
use trackside_wire::{Role, YardInfo};

use crate::api::ApiFailure;
use crate::session::Session;
use crate::time::{Clock, utc_beside, zoned_stamp};

#[component]
pub fn AdminPage(clock: Clock, yard: RwSignal<Option<YardInfo>>) -> impl IntoView {
    let session = expect_context::<Session>();
    let params = use_params_map();
    let tab = move || params.with(|p| p.get("tab").unwrap_or_default());
    let zone = Memo::new(move |_| yard.with(|y| y.as_ref().map(|y| y.timezone.clone())));
    let times = Times { zone };
    view! {
        <main class="admin-page">
            <Show
                when=move || session.may(Role::Admin)
                fallback=|| view! {
                    <div class="notice" role="status">
                        <p class="notice-title">"Administration needs the admin role"</p>
                        <p class="notice-text">"Ask an administrator if you need a user, a gateway or a token."</p>
                    </div>
                }
            >
                <nav class="tabs" aria-label="Administration">
                    <A href="/admin/users">"Users"</A>
                    <A href="/admin/gateways">"Gateways"</A>
                    <A href="/admin/tokens">"API tokens"</A>
                    <A href="/admin/layout">"Yard layout"</A>
                    <A href="/admin/audit">"Audit trail"</A>
                </nav>
                {move || match tab().as_str() {
                    "users" => view! { <users::UsersTab times /> }.into_any(),
                    "gateways" => view! { <gateways::GatewaysTab times /> }.into_any(),
                    "tokens" => view! { <tokens::TokensTab times /> }.into_any(),
                    "layout" => view! { <layout::LayoutTab /> }.into_any(),
                    "audit" => view! { <audit::AuditTab times clock /> }.into_any(),
                    _ => view! {
                        <div class="notice" role="status">
                            <p class="notice-title">"No such tab"</p>
                            <p class="notice-text">"Choose Users, Gateways, API tokens, Yard layout or Audit trail above."</p>
                        </div>
                    }
                    .into_any(),
                }}
            </Show>
        </main>
    }
}

/// Formats instants on the yard's clock, with UTC at hand.
#[derive(Clone, Copy)]
pub struct Times {
    zone: Memo<Option<String>>,
}

impl Times {
    /// `Sat 28 Nov 14:03:07 GMT` in the yard's zone (UTC before the zone
    /// is known).
    pub fn local(&self, ms: i64) -> String {
        self.zone
            .with(|z| z.as_deref().and_then(|z| zoned_stamp(ms, z)))
            .unwrap_or_else(|| utc_beside(ms))
    }

    pub fn utc(&self, ms: i64) -> String {
        utc_beside(ms)
    }

    /// A cell: the yard's time, with UTC on hover and for screen readers.
    pub fn cell(&self, ms: Option<i64>) -> AnyView {
        match ms {
            Some(ms) => {
                let utc = self.utc(ms);
                view! { <time title=utc.clone() aria-label=utc>{self.local(ms)}</time> }.into_any()
            }
            None => view! { <span class="muted">"—"</span> }.into_any(),
        }
    }
}

/// A failure, said as what to do.
pub fn failure_text(failure: &ApiFailure) -> String {
    crate::session::failure_text(failure)
}

/// A problem banner.
pub fn problem(message: String) -> impl IntoView {
    view! { <p class="form-error" role="alert" data-testid="admin-error">{message}</p> }
}

/// A secret shown once, with what it is for.
pub fn secret(title: String, value: String, advice: &'static str) -> impl IntoView {
    view! {
        <div class="secret" role="status" data-testid="secret">
            <p class="secret-title">{title}</p>
            <code class="secret-value" data-testid="secret-value">{value}</code>
            <p class="secret-advice">{advice}</p>
        </div>
    }
}
