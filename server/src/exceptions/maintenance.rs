//! `/api/maintenance`: maintenance windows, planned or begun by operators.
//!
//! A team working on circuits would otherwise flood the list with alarms
//! everyone expects. A window is stored first (it is an operator's
//! record, and the engine takes it back from the database after a
//! restart), audited, and then handed to the engine, which suppresses
//! what is raised under it and releases what is still active at its end.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use trackside_wire::{MaintenanceWindowInfo, NewMaintenanceWindow};

use super::store;
use crate::audit::{self, action};
use crate::auth::Principal;
use crate::http::{AppError, AppState};

const MAX_REASON: usize = 500;
const MAX_CIRCUITS: usize = 200;
const MAX_NAME: usize = 64;
/// Longer than this is not maintenance, it is a closure: change the rules.
const MAX_LENGTH_MS: i64 = 7 * 24 * 3_600_000;
/// How far ahead a window may be planned.
const MAX_AHEAD_MS: i64 = 90 * 24 * 3_600_000;
/// A start this far in the past still counts as "now" (clock skew).
const SKEW_MS: i64 = 60_000;
/// Ended windows listed by default, for the day's record.
const RECENT_MS: i64 = 7 * 24 * 3_600_000;
/// The longest range asked for at once: a history chart's year and a bit.
const MAX_LIST_DAYS: i64 = 400;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/maintenance", get(list).post(create))
        .route("/api/maintenance/{id}/end", post(end))
}

/// This area's routes in the OpenAPI description (`http::openapi`): a
/// handler with `#[utoipa::path]` is listed here.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, create, end))]
pub struct Api;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Unix ms: the windows that end at or after this (default: 7 days ago).
    from: Option<i64>,
    /// Unix ms: the windows that start at or before this (default: any
    /// planned ahead); at most 400 days after `from`.
    to: Option<i64>,
}

/// The windows that overlap `from`..`to` (the history chart's range), or
/// by default those planned, active, and ended in the last 7 days.
#[utoipa::path(
    get, path = "/api/maintenance", tag = "maintenance",
    summary = "Maintenance windows",
    description = "Planned, active, and ended in the last 7 days; with `from` and `to`, those that overlap that range. At most 1,000.",
    params(ListQuery),
    responses(
        (status = 200, description = "The windows, by start", body = Vec<trackside_wire::MaintenanceWindowInfo>),
        (status = 400, description = "A bad range", body = trackside_wire::ApiError),
    )
)]
async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<MaintenanceWindowInfo>>, AppError> {
    let Query(query) = query.map_err(|e| {
        AppError::BadRequest(format!(
            "{}; filters: from and to (Unix ms), at most {MAX_LIST_DAYS} days apart",
            e.body_text()
        ))
    })?;
    let now = Utc::now().timestamp_millis();
    let from = query.from.unwrap_or(now - RECENT_MS);
    if let Some(to) = query.to
        && !(from < to && to - from <= MAX_LIST_DAYS * 86_400_000)
    {
        return Err(AppError::BadRequest(format!(
            "to must be after from, and at most {MAX_LIST_DAYS} days after it"
        )));
    }
    if chrono::DateTime::from_timestamp_millis(from).is_none()
        || query
            .to
            .is_some_and(|to| chrono::DateTime::from_timestamp_millis(to).is_none())
    {
        return Err(AppError::BadRequest("from and to: Unix ms in range".into()));
    }
    Ok(Json(
        store::list_windows(&state.pool, now, from, query.to).await?,
    ))
}

/// Checks a new window; answers its start.
fn check(new: &mut NewMaintenanceWindow, now: i64) -> Result<i64, String> {
    new.reason = new.reason.trim().to_owned();
    if new.reason.is_empty() || new.reason.chars().count() > MAX_REASON {
        return Err(format!(
            "reason: say what work is done (1 to {MAX_REASON} characters)"
        ));
    }
    new.circuits = new
        .circuits
        .iter()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    if new.circuits.len() > MAX_CIRCUITS {
        return Err(format!(
            "at most {MAX_CIRCUITS} circuits per window; use patterns (T1*)"
        ));
    }
    let name_ok = |name: &str| {
        name.len() <= MAX_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.*".contains(c))
    };
    if let Some(bad) = new.circuits.iter().find(|c| !name_ok(c)) {
        return Err(format!(
            "circuit {bad:?}: letters, digits, - _ . and * for a pattern, at most {MAX_NAME}"
        ));
    }
    if let Some(gateway) = &mut new.gateway {
        *gateway = gateway.trim().to_owned();
        if gateway.is_empty() || gateway.contains('*') || !name_ok(gateway) {
            return Err(format!("gateway {gateway:?} is not a gateway id"));
        }
    }
    if new.circuits.is_empty() && new.gateway.is_none() {
        return Err(
            "name the circuits (\"circuits\": [\"T1\", \"T2*\"]) or a gateway \
                    (\"gateway\": \"yard-gw02\") the work is on"
                .into(),
        );
    }
    let starts = match new.starts_at {
        None => now,
        Some(at) if at >= now - SKEW_MS && at <= now + MAX_AHEAD_MS => at.max(now),
        Some(_) => {
            return Err(
                "starts_at: now or later (Unix ms, at most 90 days ahead); leave it out to \
                 start now"
                    .into(),
            );
        }
    };
    if new.ends_at <= starts || new.ends_at - starts > MAX_LENGTH_MS {
        return Err("ends_at: after the start, and at most 7 days after it (Unix ms)".into());
    }
    Ok(starts)
}

#[utoipa::path(
    post, path = "/api/maintenance", tag = "maintenance",
    summary = "Open a maintenance window",
    description = "Alarms of the circuits in the window are suppressed until it ends. Audited.",
    request_body = trackside_wire::NewMaintenanceWindow,
    responses(
        (status = 200, description = "Opened", body = trackside_wire::MaintenanceWindowInfo),
        (status = 400, description = "The window is not valid", body = trackside_wire::ApiError),
    )
)]
async fn create(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<NewMaintenanceWindow>, JsonRejection>,
) -> Result<Json<MaintenanceWindowInfo>, AppError> {
    let Json(mut new) = body.map_err(|e| {
        AppError::BadRequest(format!(
            "{}; send JSON {{\"circuits\": [\"T1\"], \"reason\": \"...\", \"ends_at\": <Unix ms>}} \
             (or \"gateway\" instead of circuits, and \"starts_at\" to plan ahead)",
            e.body_text()
        ))
    })?;
    let now = Utc::now().timestamp_millis();
    let starts = check(&mut new, now).map_err(AppError::BadRequest)?;
    let window = store::insert_window(&state.pool, &new, starts, &principal.name).await?;
    let circuits = window.circuits.join(",");
    let (starts_at, ends_at) = (window.starts_at.to_string(), window.ends_at.to_string());
    audit::record(
        &state.pool,
        &principal.actor(),
        action::MAINTENANCE_START,
        Some(&window.id.to_string()),
        &[
            ("circuits", circuits.as_str()),
            ("gateway", window.gateway.as_deref().unwrap_or("")),
            ("reason", window.reason.as_str()),
            ("starts_at", starts_at.as_str()),
            ("ends_at", ends_at.as_str()),
        ],
    )
    .await;
    state
        .exceptions
        .add_window(&store::PlannedWindow {
            id: window.id,
            circuits: window.circuits.clone(),
            gateway: window.gateway.clone(),
            starts_at: window.starts_at,
            ends_at: window.ends_at,
        })
        .await?;
    Ok(Json(window))
}

#[utoipa::path(
    post, path = "/api/maintenance/{id}/end", tag = "maintenance",
    summary = "End a maintenance window now",
    params(("id" = i64, Path, description = "The window's id")),
    responses(
        (status = 200, description = "Ended", body = trackside_wire::MaintenanceWindowInfo),
        (status = 404, description = "No such window", body = trackside_wire::ApiError),
        (status = 409, description = "Already ended", body = trackside_wire::ApiError),
    )
)]
async fn end(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<MaintenanceWindowInfo>, AppError> {
    let id = path
        .map(|Path(id)| id)
        .map_err(|_| AppError::BadRequest("a maintenance window id is a whole number".into()))?;
    let now = Utc::now().timestamp_millis();
    let Some((ended_now, window)) =
        store::end_window(&state.pool, id, now, &principal.name).await?
    else {
        return Err(AppError::NotFound(format!("no maintenance window {id}")));
    };
    if !ended_now {
        return Err(AppError::Conflict(format!(
            "maintenance window {id} has ended already"
        )));
    }
    audit::record(
        &state.pool,
        &principal.actor(),
        action::MAINTENANCE_END,
        Some(&id.to_string()),
        &[("reason", window.reason.as_str())],
    )
    .await;
    state.exceptions.end_window(id, now).await?;
    Ok(Json(window))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(
        circuits: &[&str],
        gateway: Option<&str>,
        starts: Option<i64>,
        ends: i64,
    ) -> NewMaintenanceWindow {
        NewMaintenanceWindow {
            circuits: circuits.iter().map(|c| (*c).to_owned()).collect(),
            gateway: gateway.map(str::to_owned),
            reason: " rail grinding ".into(),
            starts_at: starts,
            ends_at: ends,
        }
    }

    #[test]
    fn a_window_needs_a_place_a_reason_and_a_sane_time() {
        let now = 1_800_000_000_000;
        let hour = 3_600_000;
        let mut ok = new(&["T1", "T2*"], None, None, now + hour);
        assert_eq!(check(&mut ok, now), Ok(now));
        assert_eq!(ok.reason, "rail grinding");
        let mut planned = new(&[], Some("yard-gw02"), Some(now + hour), now + 2 * hour);
        assert_eq!(check(&mut planned, now), Ok(now + hour));
        let cases = [
            (new(&[], None, None, now + hour), "name the circuits"),
            (new(&["T 1"], None, None, now + hour), "circuit \"T 1\""),
            (new(&[], Some("gw*"), None, now + hour), "not a gateway id"),
            (new(&["T1"], None, None, now), "ends_at"),
            (
                new(&["T1"], None, None, now + 8 * 24 * hour),
                "at most 7 days",
            ),
            (
                new(&["T1"], None, Some(now - hour), now + hour),
                "starts_at",
            ),
        ];
        for (mut bad, says) in cases {
            let err = check(&mut bad, now).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
        let mut quiet = new(&["T1"], None, None, now + hour);
        quiet.reason = "  ".into();
        assert!(check(&mut quiet, now).unwrap_err().starts_with("reason"));
    }
}
