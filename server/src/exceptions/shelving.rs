//! `/api/shelves`: operators shelve an exception, or a rule on a circuit,
//! for a while with a reason.
//!
//! Shelving is for the alarm everyone knows about (a relay already booked
//! for replacement) that would otherwise sound all shift. Unlike a
//! maintenance window it is taken after the fact, by the person who saw
//! the alarm, and it always runs out (at most `shelve_max_s`), so nothing
//! stays hidden because someone forgot it. Like a window, a shelf is
//! stored first (the engine takes it back after a restart), audited, and
//! then handed to the engine, which hides what it covers and shows it
//! again, announced if still active, when it ends.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use trackside_wire::{NewShelf, ShelfInfo};

use super::store;
use crate::audit::{self, action};
use crate::auth::Principal;
use crate::http::{AppError, AppState};

const MAX_REASON: usize = 500;
const MAX_NAME: usize = 64;
/// Shorter than this is not worth a record: acknowledge instead.
const MIN_DURATION_S: u64 = 60;
/// Ended shelves listed, for the shift's record.
const RECENT_MS: i64 = 24 * 3_600_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/shelves", get(list).post(create))
        .route("/api/shelves/{id}/end", post(end))
}

/// This area's routes in the OpenAPI description (`http::openapi`): a
/// handler with `#[utoipa::path]` is listed here.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, create, end))]
pub struct Api;

#[utoipa::path(
    get, path = "/api/shelves", tag = "shelving",
    summary = "Shelved alarms",
    responses((status = 200, description = "Current shelves", body = Vec<trackside_wire::ShelfInfo>))
)]
async fn list(State(state): State<AppState>) -> Result<Json<Vec<ShelfInfo>>, AppError> {
    let now = Utc::now().timestamp_millis();
    Ok(Json(
        store::list_shelves(&state.pool, now, RECENT_MS).await?,
    ))
}

/// What a new shelf hides, checked.
#[derive(Debug, PartialEq)]
struct Checked {
    rule: String,
    subject: Option<String>,
    circuit: Option<String>,
    reason: String,
    duration_ms: i64,
}

/// Checks the parts of a request that need no database.
fn check(new: &NewShelf, rules: &[trackside_wire::Rule], max_s: u64) -> Result<Checked, String> {
    let reason = new.reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > MAX_REASON {
        return Err(format!(
            "reason: say why it may stay quiet (1 to {MAX_REASON} characters)"
        ));
    }
    if !(MIN_DURATION_S..=max_s).contains(&new.duration_s) {
        return Err(format!(
            "duration_s: from {MIN_DURATION_S} s to {max_s} s (this server's shelve_max_s); \
             a shelf always runs out"
        ));
    }
    let duration_ms = i64::try_from(new.duration_s * 1000).unwrap_or(i64::MAX);
    match (new.exception, &new.rule, &new.circuit) {
        (Some(_), None, None) => Ok(Checked {
            rule: String::new(),
            subject: None,
            circuit: None,
            reason,
            duration_ms,
        }),
        (None, Some(rule), Some(circuit)) => {
            let rule = rule.trim();
            if !rules.iter().any(|r| r.id == rule) {
                return Err(format!(
                    "rule {rule:?} is not one of this server's rules (GET /api/rules)"
                ));
            }
            let circuit = circuit.trim();
            let ok = !circuit.is_empty()
                && circuit.len() <= MAX_NAME
                && circuit
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                return Err(format!(
                    "circuit {circuit:?}: one circuit's name (letters, digits, - _ .), at most \
                     {MAX_NAME}"
                ));
            }
            Ok(Checked {
                rule: rule.to_owned(),
                subject: None,
                circuit: Some(circuit.to_owned()),
                reason,
                duration_ms,
            })
        }
        _ => Err(
            "name what to shelve: {\"exception\": <id>}, or a rule on a circuit \
                  ({\"rule\": \"rv-low\", \"circuit\": \"T1\"}), not both"
                .into(),
        ),
    }
}

#[utoipa::path(
    post, path = "/api/shelves", tag = "shelving",
    summary = "Shelve an alarm",
    description = "Hides an exception's alarm from this operator for a while, with a reason. Audited.",
    request_body = trackside_wire::NewShelf,
    responses(
        (status = 200, description = "Shelved", body = trackside_wire::ShelfInfo),
        (status = 400, description = "The shelf is not valid", body = trackside_wire::ApiError),
        (status = 404, description = "No such exception", body = trackside_wire::ApiError),
        (status = 409, description = "It cannot be shelved now", body = trackside_wire::ApiError),
    )
)]
async fn create(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<NewShelf>, JsonRejection>,
) -> Result<Json<ShelfInfo>, AppError> {
    let Json(new) = body.map_err(|e| {
        AppError::BadRequest(format!(
            "{}; send JSON {{\"exception\": <id>, \"reason\": \"...\", \"duration_s\": 3600}} \
             (or \"rule\" and \"circuit\" instead of \"exception\")",
            e.body_text()
        ))
    })?;
    let mut checked = check(
        &new,
        state.exceptions.rules(),
        state.exceptions.shelve_max_s(),
    )
    .map_err(AppError::BadRequest)?;
    if let Some(id) = new.exception {
        let Some(detail) = store::get(&state.pool, id).await? else {
            return Err(AppError::NotFound(format!("no exception {id}")));
        };
        let e = detail.exception;
        if !e.open {
            return Err(AppError::Conflict(format!(
                "exception {id} is already cleared and acknowledged: nothing to shelve"
            )));
        }
        checked.rule = e.rule;
        checked.subject = Some(e.subject);
    }
    let until = Utc::now().timestamp_millis() + checked.duration_ms;
    let shelf = store::insert_shelf(
        &state.pool,
        &checked.rule,
        checked.subject.as_deref(),
        checked.circuit.as_deref(),
        &checked.reason,
        until,
        &principal.name,
    )
    .await?;
    let until = shelf.until.to_string();
    let target = shelf.subject.as_deref().or(shelf.circuit.as_deref());
    audit::record(
        &state.pool,
        &principal.actor(),
        action::SHELVE,
        Some(&shelf.id.to_string()),
        &[
            ("rule", shelf.rule.as_str()),
            ("subject", target.unwrap_or("")),
            (
                "exception",
                &new.exception.map(|i| i.to_string()).unwrap_or_default(),
            ),
            ("reason", shelf.reason.as_str()),
            ("until", until.as_str()),
        ],
    )
    .await;
    let hidden = state.exceptions.shelve(&shelf).await?;
    Ok(Json(ShelfInfo {
        hidden: i64::try_from(hidden).unwrap_or(i64::MAX),
        ..shelf
    }))
}

#[utoipa::path(
    post, path = "/api/shelves/{id}/end", tag = "shelving",
    summary = "Unshelve now",
    params(("id" = i64, Path, description = "The shelf's id")),
    responses(
        (status = 200, description = "Ended", body = trackside_wire::ShelfInfo),
        (status = 404, description = "No such shelf", body = trackside_wire::ApiError),
        (status = 409, description = "Already ended", body = trackside_wire::ApiError),
    )
)]
async fn end(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<ShelfInfo>, AppError> {
    let id = path
        .map(|Path(id)| id)
        .map_err(|_| AppError::BadRequest("a shelf id is a whole number".into()))?;
    let now = Utc::now().timestamp_millis();
    let Some((ended_now, shelf)) = store::end_shelf(&state.pool, id, now, &principal.name).await?
    else {
        return Err(AppError::NotFound(format!("no shelf {id}")));
    };
    if !ended_now {
        return Err(AppError::Conflict(format!(
            "shelf {id} has ended already{}",
            shelf
                .ended_by
                .as_ref()
                .map(|by| format!(" (unshelved by {by})"))
                .unwrap_or_else(|| " (its time ran out)".into())
        )));
    }
    audit::record(
        &state.pool,
        &principal.actor(),
        action::UNSHELVE,
        Some(&id.to_string()),
        &[
            ("rule", shelf.rule.as_str()),
            (
                "subject",
                shelf
                    .subject
                    .as_deref()
                    .or(shelf.circuit.as_deref())
                    .unwrap_or(""),
            ),
        ],
    )
    .await;
    state
        .exceptions
        .unshelve(id, principal.name.clone(), now)
        .await?;
    Ok(Json(shelf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(exception: Option<i64>, rule: Option<&str>, circuit: Option<&str>) -> NewShelf {
        NewShelf {
            exception,
            rule: rule.map(str::to_owned),
            circuit: circuit.map(str::to_owned),
            reason: " relay booked for replacement ".into(),
            duration_s: 3_600,
        }
    }

    #[test]
    fn a_shelf_needs_one_target_a_reason_and_a_bounded_time() {
        let rules = crate::exceptions::defaults::rules();
        let rule = rules[0].id.clone();
        let max = 8 * 3_600;
        let ok = check(&new(Some(7), None, None), &rules, max).expect("an exception");
        assert_eq!(ok.reason, "relay booked for replacement");
        assert_eq!(ok.duration_ms, 3_600_000);
        let circuit = check(&new(None, Some(&rule), Some(" T1 ")), &rules, max).expect("a circuit");
        assert_eq!(
            (circuit.rule.as_str(), circuit.circuit.as_deref()),
            (rule.as_str(), Some("T1"))
        );
        let mut long = new(Some(7), None, None);
        long.duration_s = max + 1;
        let mut short = new(Some(7), None, None);
        short.duration_s = 10;
        let mut quiet = new(Some(7), None, None);
        quiet.reason = " ".into();
        let cases = [
            (new(None, None, None), "name what to shelve"),
            (new(Some(7), Some(&rule), Some("T1")), "not both"),
            (new(None, Some(&rule), None), "name what to shelve"),
            (new(None, Some("no-such"), Some("T1")), "GET /api/rules"),
            (new(None, Some(&rule), Some("T*")), "one circuit's name"),
            (long, "shelve_max_s"),
            (short, "duration_s"),
            (quiet, "reason"),
        ];
        for (bad, says) in cases {
            let err = check(&bad, &rules, max).unwrap_err();
            assert!(err.contains(says), "{says}: {err}");
        }
    }
}
