//! `/api/exceptions` and `/api/rules`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::DateTime;
use serde::Deserialize;
use trackside_wire::{
    AckRequest, ExceptionDetail, ExceptionInfo, Priority, PriorityMix, Rule, Severity,
};

use super::AckFailure;
use super::store::{self, Filter};
use crate::audit::{self, action};
use crate::auth::Principal;
use crate::http::{AppError, AppState};

const DEFAULT_LIMIT: i64 = 500;
const MAX_LIMIT: i64 = 5_000;
const MAX_COMMENT: usize = 2_000;
/// How long a stored acknowledgement waits for its audit row.
const AUDIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/exceptions", get(list))
        .route("/api/exceptions/mix", get(mix))
        .route("/api/exceptions/{id}", get(detail))
        .route("/api/exceptions/{id}/ack", post(acknowledge))
        .route("/api/rules", get(rules))
}

/// This area's routes in the OpenAPI description (`http::openapi`): a
/// handler with `#[utoipa::path]` is listed here.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, mix, detail, acknowledge, rules))]
pub struct Api;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    active: Option<bool>,
    open: Option<bool>,
    acknowledged: Option<bool>,
    /// Comma-separated: `major,critical`.
    severity: Option<String>,
    /// Comma-separated: `high,medium`.
    priority: Option<String>,
    suppressed: Option<bool>,
    shelved: Option<bool>,
    circuit: Option<String>,
    rule: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<i64>,
}

#[utoipa::path(
    get, path = "/api/exceptions", tag = "exceptions",
    summary = "List exceptions (alarms)",
    description = "Newest first, filtered.",
    params(ListQuery),
    responses(
        (status = 200, description = "Matching exceptions", body = Vec<trackside_wire::ExceptionInfo>),
        (status = 400, description = "A filter is not valid", body = trackside_wire::ApiError),
    )
)]
async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<ExceptionInfo>>, AppError> {
    let Query(query) = query.map_err(|e| {
        AppError::BadRequest(format!(
            "{}; filters: active, open, acknowledged, suppressed, shelved (true/false), severity and \
             priority (comma-separated), circuit, rule, from, to (Unix ms), limit",
            e.body_text()
        ))
    })?;
    let severities = query
        .severity
        .map(|list| {
            list.split(',')
                .map(|s| {
                    Severity::parse(s.trim())
                        .map(|s| s.as_str().to_owned())
                        .ok_or_else(|| {
                            AppError::BadRequest(format!(
                                "unknown severity {s:?}: use info, warning, major or critical"
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let priorities = query
        .priority
        .map(|list| {
            list.split(',')
                .map(|p| {
                    Priority::parse(p.trim())
                        .map(|p| p.as_str().to_owned())
                        .ok_or_else(|| {
                            AppError::BadRequest(format!(
                                "unknown priority {p:?}: use low, medium or high"
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let time = |name: &str, ms: Option<i64>| {
        ms.map(|ms| {
            DateTime::from_timestamp_millis(ms)
                .ok_or_else(|| AppError::BadRequest(format!("{name} is out of range")))
        })
        .transpose()
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let filter = Filter {
        active: query.active,
        open: query.open,
        acknowledged: query.acknowledged,
        severities,
        priorities,
        suppressed: query.suppressed,
        shelved: query.shelved,
        circuit: query.circuit,
        rule: query.rule,
        from: time("from", query.from)?,
        to: time("to", query.to)?,
        limit,
    };
    let list = store::list(&state.pool, &filter).await?;
    Ok(Json(list))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct MixQuery {
    /// The period, in days back from now: 1 to 90, default 7.
    days: Option<i64>,
}

/// The longest period the priority mix looks over.
const MAX_MIX_DAYS: i64 = 90;

#[utoipa::path(
    get, path = "/api/exceptions/mix", tag = "exceptions",
    summary = "The priority mix of the exceptions raised lately",
    description = "By the priority each was raised with, beside the alarm-management standard's target, with the rate per hour, the busiest 10 minutes and the flooded share. Raises inside a maintenance window are not counted.",
    params(MixQuery),
    responses(
        (status = 200, description = "The mix", body = trackside_wire::PriorityMix),
        (status = 400, description = "`days` is not from 1 to 90", body = trackside_wire::ApiError),
    )
)]
async fn mix(
    State(state): State<AppState>,
    query: Result<Query<MixQuery>, QueryRejection>,
) -> Result<Json<PriorityMix>, AppError> {
    let days = query
        .map_err(|e| AppError::BadRequest(format!("{}; use ?days=7", e.body_text())))?
        .0
        .days
        .unwrap_or(7);
    if !(1..=MAX_MIX_DAYS).contains(&days) {
        return Err(AppError::BadRequest(format!(
            "days: from 1 to {MAX_MIX_DAYS}"
        )));
    }
    let to = chrono::Utc::now().timestamp_millis();
    let from = to - days * 86_400_000;
    Ok(Json(store::priority_mix(&state.pool, from, to).await?))
}

fn exception_id(path: Result<Path<i64>, PathRejection>) -> Result<i64, AppError> {
    path.map(|Path(id)| id)
        .map_err(|_| AppError::BadRequest("an exception id is a whole number".into()))
}

#[utoipa::path(
    get, path = "/api/exceptions/{id}", tag = "exceptions",
    summary = "One exception with its history",
    params(("id" = i64, Path, description = "The exception's id")),
    responses(
        (status = 200, description = "The exception and its transitions", body = trackside_wire::ExceptionDetail),
        (status = 400, description = "The id is not a number", body = trackside_wire::ApiError),
        (status = 404, description = "No such exception", body = trackside_wire::ApiError),
    )
)]
async fn detail(
    State(state): State<AppState>,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<ExceptionDetail>, AppError> {
    let id = exception_id(path)?;
    match store::get(&state.pool, id).await {
        Ok(Some(detail)) => Ok(Json(detail)),
        Ok(None) => Err(AppError::NotFound(format!("no exception {id}"))),
        Err(err) => Err(err.into()),
    }
}

/// The acknowledgement is the signed-in user's: their name is recorded,
/// whatever the client would like it to be.
#[utoipa::path(
    post, path = "/api/exceptions/{id}/ack", tag = "exceptions",
    summary = "Acknowledge an exception",
    description = "Records who acknowledged it, with an optional note. Audited.",
    params(("id" = i64, Path, description = "The exception's id")),
    request_body = trackside_wire::AckRequest,
    responses(
        (status = 200, description = "Acknowledged", body = trackside_wire::ExceptionInfo),
        (status = 400, description = "The id or body is not valid", body = trackside_wire::ApiError),
        (status = 404, description = "No such exception", body = trackside_wire::ApiError),
        (status = 409, description = "Already acknowledged, or closed", body = trackside_wire::ApiError),
        (status = 503, description = "The alarm engine cannot record it now: try again", body = trackside_wire::ApiError),
    )
)]
async fn acknowledge(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<AckRequest>, JsonRejection>,
) -> Result<Json<ExceptionInfo>, AppError> {
    let id = exception_id(path)?;
    let Json(AckRequest { comment }) = body.map_err(|e| {
        AppError::BadRequest(format!(
            "{}; send JSON {{\"comment\": \"<what you did or will do>\"}} (the acknowledgement \
             is recorded under the signed-in user)",
            e.body_text()
        ))
    })?;
    let comment = comment.trim().to_owned();
    if comment.is_empty() || comment.chars().count() > MAX_COMMENT {
        return Err(AppError::BadRequest(format!(
            "comment: say what you found or will do (1 to {MAX_COMMENT} characters)"
        )));
    }
    match acknowledge_audited(&state, &principal, id, &comment, &[]).await {
        Ok(info) => Ok(Json(info)),
        Err(AckFailure::NotFound) => Err(AppError::NotFound(format!("no exception {id}"))),
        Err(AckFailure::Closed) => Err(AppError::Conflict(format!(
            "exception {id} is already cleared and acknowledged"
        ))),
        Err(AckFailure::AlreadyAcknowledged(by)) => Err(AppError::Conflict(format!(
            "exception {id} is already acknowledged{}",
            by.map(|b| format!(" by {b}")).unwrap_or_default()
        ))),
        Err(AckFailure::Unavailable(message)) => Err(AppError::Unavailable(message)),
        Err(AckFailure::Internal(err)) => Err(err.into()),
    }
}

/// Acknowledges `id` through the engine as `principal`, and audits it
/// (`exception.acknowledge`, with the comment, the subject and `detail`):
/// one acknowledgement, whichever route asked for it.
pub(super) async fn acknowledge_audited(
    state: &AppState,
    principal: &Principal,
    id: i64,
    comment: &str,
    detail: &[(&str, &str)],
) -> Result<ExceptionInfo, AckFailure> {
    let info = state
        .exceptions
        .acknowledge(id, principal.name.clone(), comment.to_owned())
        .await?;
    // The acknowledgement is stored; a database that stops answering just
    // now must not hold the answer past its bound.
    let (actor, target) = (principal.actor(), id.to_string());
    let mut all = vec![("comment", comment), ("subject", info.subject.as_str())];
    all.extend_from_slice(detail);
    let recorded = audit::record(
        &state.pool,
        &actor,
        action::ACKNOWLEDGE,
        Some(&target),
        &all,
    );
    if tokio::time::timeout(AUDIT_WAIT, recorded).await.is_err() {
        tracing::error!(
            id,
            "the acknowledgement's audit row was not written within 2 s"
        );
    }
    Ok(info)
}

#[utoipa::path(
    get, path = "/api/rules", tag = "exceptions",
    summary = "The exception rules in force",
    responses((status = 200, description = "Rules", body = Vec<trackside_wire::Rule>))
)]
async fn rules(State(state): State<AppState>) -> Json<Vec<Rule>> {
    Json(state.exceptions.rules().to_vec())
}
