//! Each user's own e-mail routes: `/api/me/notifications` for the signed-in
//! user, `/api/users/{name}/notifications` for an admin editing anyone's.
//!
//! Why per user and not only groups: the on-duty rota is configuration,
//! but whether a signalling engineer wants high-priority alarms on
//! their circuits out of hours is theirs to say. Every change is audited
//! (who changed whose routes, to what), since a route removed is an alarm
//! nobody gets.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use lettre::message::Mailbox;
use sqlx::PgPool;
use trackside_wire::{NotifyRoute, NotifySettings};

use crate::audit;
use crate::auth::{Principal, users};
use crate::http::{AppError, AppState};

/// Routes per user, circuit patterns per route, and a pattern's length.
pub const MAX_ROUTES: usize = 20;
pub const MAX_PATTERNS: usize = 50;
pub const MAX_PATTERN: usize = 64;

/// This area's routes in the OpenAPI description (`http::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(own, set_own, others, set_others))]
pub struct Api;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/me/notifications", get(own).put(set_own))
        .route(
            "/api/users/{name}/notifications",
            get(others).put(set_others),
        )
}

/// Checks settings from a browser or a script; the error says what to fix.
pub fn check(settings: &NotifySettings) -> Result<NotifySettings, String> {
    let email = match settings.email.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(address) => {
            if address.len() > 254 || address.parse::<Mailbox>().is_err() {
                return Err(format!(
                    "email: {address:?} is not an e-mail address (as in \"ann@yard.example\")"
                ));
            }
            Some(address.to_owned())
        }
    };
    if settings.routes.len() > MAX_ROUTES {
        return Err(format!("routes: at most {MAX_ROUTES}"));
    }
    if email.is_none() && !settings.routes.is_empty() {
        return Err("email: routes need an address to send to".into());
    }
    let mut routes = Vec::with_capacity(settings.routes.len());
    for (n, route) in settings.routes.iter().enumerate() {
        let n = n + 1;
        if route.circuits.len() > MAX_PATTERNS {
            return Err(format!(
                "route {n}: at most {MAX_PATTERNS} circuit patterns"
            ));
        }
        let mut circuits = Vec::with_capacity(route.circuits.len());
        for pattern in &route.circuits {
            let pattern = pattern.trim();
            let ok = !pattern.is_empty()
                && pattern.len() <= MAX_PATTERN
                && pattern
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.*/".contains(c));
            if !ok {
                return Err(format!(
                    "route {n}: circuit pattern {pattern:?}: letters, digits, - _ . / and * \
                     (any run of characters), at most {MAX_PATTERN}"
                ));
            }
            circuits.push(pattern.to_owned());
        }
        if let Some([from, to]) = route.hours
            && (from > 24 || to > 24 || from == to)
        {
            return Err(format!(
                "route {n}: hours [{from}, {to}]: two different hours from 0 to 24 in the \
                 yard's zone, [from, to); from after to runs past midnight"
            ));
        }
        routes.push(NotifyRoute {
            min_priority: route.min_priority,
            circuits,
            hours: route.hours,
        });
    }
    Ok(NotifySettings { email, routes })
}

pub async fn get_settings(pool: &PgPool, user_id: i64) -> sqlx::Result<NotifySettings> {
    let row: Option<(Option<String>, serde_json::Value)> =
        sqlx::query_as("SELECT email, routes FROM notify_settings WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    Ok(row
        .map(|(email, routes)| NotifySettings {
            email,
            routes: serde_json::from_value(routes).unwrap_or_default(),
        })
        .unwrap_or_default())
}

async fn put_settings(pool: &PgPool, user_id: i64, settings: &NotifySettings) -> sqlx::Result<()> {
    let routes = serde_json::to_value(&settings.routes).unwrap_or_default();
    sqlx::query(
        "INSERT INTO notify_settings (user_id, email, routes) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET email = $2, routes = $3, updated_at = now()",
    )
    .bind(user_id)
    .bind(&settings.email)
    .bind(routes)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every enabled user's address and routes, for the e-mail sender.
pub async fn all_routes(pool: &PgPool) -> sqlx::Result<Vec<(String, Vec<NotifyRoute>)>> {
    let rows: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT s.email, s.routes FROM notify_settings s JOIN users u ON u.id = s.user_id \
         WHERE u.disabled_at IS NULL AND s.email IS NOT NULL AND jsonb_array_length(s.routes) > 0",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(email, routes)| Some((email, serde_json::from_value(routes).ok()?)))
        .collect())
}

fn body(request: Result<Json<NotifySettings>, JsonRejection>) -> Result<NotifySettings, AppError> {
    let Json(settings) = request.map_err(|e| {
        AppError::BadRequest(format!(
            "{}; send JSON {{\"email\": \"ann@yard.example\", \"routes\": [{{\"min_priority\": \
             \"high\", \"circuits\": [\"T1*\"], \"hours\": [18, 6]}}]}}",
            e.body_text()
        ))
    })?;
    check(&settings).map_err(AppError::BadRequest)
}

async fn user_named(pool: &PgPool, name: &str) -> Result<users::User, AppError> {
    users::by_name(pool, name)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no user {name:?} (GET /api/users lists them)")))
}

#[utoipa::path(
    get, path = "/api/me/notifications", tag = "notifications",
    summary = "The signed-in user's e-mail alarm routes",
    responses((status = 200, description = "Their address and routes", body = trackside_wire::NotifySettings))
)]
async fn own(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<NotifySettings>, AppError> {
    Ok(Json(get_settings(&state.pool, principal.user_id).await?))
}

#[utoipa::path(
    put, path = "/api/me/notifications", tag = "notifications",
    summary = "Set the signed-in user's e-mail alarm routes",
    description = "Replaces their address and routes; audited as `notifications.set`.",
    request_body = trackside_wire::NotifySettings,
    responses(
        (status = 200, description = "The settings as stored", body = trackside_wire::NotifySettings),
        (status = 400, description = "A field is not valid; the message names it", body = trackside_wire::ApiError),
    )
)]
async fn set_own(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<NotifySettings>, JsonRejection>,
) -> Result<Json<NotifySettings>, AppError> {
    let settings = body(request)?;
    save(
        &state,
        &principal,
        principal.user_id,
        &principal.name,
        settings,
    )
    .await
}

#[utoipa::path(
    get, path = "/api/users/{name}/notifications", tag = "notifications",
    summary = "A user's e-mail alarm routes",
    params(("name" = String, Path, description = "The user's name")),
    responses(
        (status = 200, description = "Their address and routes", body = trackside_wire::NotifySettings),
        (status = 404, description = "No such user", body = trackside_wire::ApiError),
    )
)]
async fn others(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<NotifySettings>, AppError> {
    let user = user_named(&state.pool, &name).await?;
    Ok(Json(get_settings(&state.pool, user.id).await?))
}

#[utoipa::path(
    put, path = "/api/users/{name}/notifications", tag = "notifications",
    summary = "Set a user's e-mail alarm routes",
    description = "Replaces their address and routes; audited as `notifications.set` under the admin's name.",
    params(("name" = String, Path, description = "The user's name")),
    request_body = trackside_wire::NotifySettings,
    responses(
        (status = 200, description = "The settings as stored", body = trackside_wire::NotifySettings),
        (status = 400, description = "A field is not valid; the message names it", body = trackside_wire::ApiError),
        (status = 404, description = "No such user", body = trackside_wire::ApiError),
    )
)]
async fn set_others(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    request: Result<Json<NotifySettings>, JsonRejection>,
) -> Result<Json<NotifySettings>, AppError> {
    let settings = body(request)?;
    let user = user_named(&state.pool, &name).await?;
    save(&state, &principal, user.id, &user.name, settings).await
}

async fn save(
    state: &AppState,
    principal: &Principal,
    user_id: i64,
    user_name: &str,
    settings: NotifySettings,
) -> Result<Json<NotifySettings>, AppError> {
    put_settings(&state.pool, user_id, &settings).await?;
    let routes = serde_json::to_string(&settings.routes).unwrap_or_default();
    audit::record(
        &state.pool,
        &principal.actor(),
        "notifications.set",
        Some(user_name),
        &[
            ("email", settings.email.as_deref().unwrap_or("")),
            ("routes", &routes),
        ],
    )
    .await;
    Ok(Json(settings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackside_wire::Priority;

    fn route(circuits: &[&str], hours: Option<[u8; 2]>) -> NotifyRoute {
        NotifyRoute {
            min_priority: Priority::High,
            circuits: circuits.iter().map(|c| c.to_string()).collect(),
            hours,
        }
    }

    #[test]
    fn settings_are_checked_with_a_reason() {
        let ok = NotifySettings {
            email: Some(" ann@yard.example ".into()),
            routes: vec![route(&["T1*"], Some([18, 6]))],
        };
        assert_eq!(
            check(&ok).unwrap().email.as_deref(),
            Some("ann@yard.example")
        );
        let bad = |settings: NotifySettings| check(&settings).unwrap_err();
        assert!(
            bad(NotifySettings {
                email: Some("ann".into()),
                ..ok.clone()
            })
            .contains("not an e-mail address")
        );
        assert!(
            bad(NotifySettings {
                email: None,
                ..ok.clone()
            })
            .contains("need an address")
        );
        assert!(
            bad(NotifySettings {
                routes: vec![route(&["T1; DROP"], None)],
                ..ok.clone()
            })
            .contains("circuit pattern")
        );
        assert!(
            bad(NotifySettings {
                routes: vec![route(&[], Some([6, 6]))],
                ..ok.clone()
            })
            .contains("hours")
        );
        assert!(
            bad(NotifySettings {
                routes: vec![route(&[], None); MAX_ROUTES + 1],
                ..ok
            })
            .contains("at most")
        );
    }
}
