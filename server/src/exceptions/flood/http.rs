//! `/api/floods`: the recorded floods, and acknowledging a flood group's
//! members together.
//!
//! A group acknowledgement is each member's own acknowledgement, through
//! the engine as one by hand would be, and audited one entry per
//! exception (`exception.acknowledge`, with the flood and group in its
//! detail): the trail answers "who acknowledged #1234" the same way
//! whichever button was pressed.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use trackside_wire::{FloodInfo, GroupAckRequest, GroupAckResult};

use super::super::AckFailure;
use super::super::http::acknowledge_audited;
use super::super::store;
use crate::auth::Principal;
use crate::http::{AppError, AppState};

/// Floods listed at most.
const MAX_FLOODS: i64 = 500;
/// The longest period listed, in days.
const MAX_DAYS: i64 = 366;
/// Members one group acknowledgement takes at most (a larger group takes
/// a second press).
pub const MAX_GROUP_ACK: i64 = 2_000;
const MAX_COMMENT: usize = 2_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/floods", get(list))
        .route("/api/floods/{id}/ack", post(acknowledge_group))
}

/// This area's routes in the OpenAPI description.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, acknowledge_group))]
pub struct Api;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct FloodQuery {
    /// Unix ms; default a week before `to`.
    from: Option<i64>,
    /// Unix ms; default now.
    to: Option<i64>,
}

#[utoipa::path(
    get, path = "/api/floods", tag = "exceptions",
    summary = "Alarm floods recorded",
    description = "The floods that overlap `from..to` (Unix ms; default the last 7 days, at most 366 days), newest first, at most 500; one still on has no `ended_at`. Each with its groups by cause and their counts.",
    params(FloodQuery),
    responses(
        (status = 200, description = "Floods", body = Vec<trackside_wire::FloodInfo>),
        (status = 400, description = "The period is not valid", body = trackside_wire::ApiError),
    )
)]
async fn list(
    State(state): State<AppState>,
    query: Result<Query<FloodQuery>, QueryRejection>,
) -> Result<Json<Vec<FloodInfo>>, AppError> {
    let Query(query) = query.map_err(|e| {
        AppError::BadRequest(format!(
            "{}; use ?from=<Unix ms>&to=<Unix ms> (both optional)",
            e.body_text()
        ))
    })?;
    let to = query
        .to
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let from = query.from.unwrap_or(to - 7 * 86_400_000);
    if from >= to || to - from > MAX_DAYS * 86_400_000 {
        return Err(AppError::BadRequest(format!(
            "from must be before to, at most {MAX_DAYS} days apart"
        )));
    }
    if chrono::DateTime::from_timestamp_millis(from).is_none()
        || chrono::DateTime::from_timestamp_millis(to).is_none()
    {
        return Err(AppError::BadRequest("from or to is out of range".into()));
    }
    Ok(Json(
        store::list_floods(&state.pool, from, to, MAX_FLOODS).await?,
    ))
}

#[utoipa::path(
    post, path = "/api/floods/{id}/ack", tag = "exceptions",
    summary = "Acknowledge every exception of a flood group",
    description = "Acknowledges each open, unacknowledged member of the group (at most 2,000 per request) under the signed-in user, with one comment; each is audited as its own acknowledgement. Members acknowledged meanwhile by someone else, or closed, are listed as skipped.",
    params(("id" = i64, Path, description = "The flood's id")),
    request_body = trackside_wire::GroupAckRequest,
    responses(
        (status = 200, description = "What was acknowledged", body = trackside_wire::GroupAckResult),
        (status = 400, description = "The id or body is not valid", body = trackside_wire::ApiError),
        (status = 404, description = "No such group in that flood", body = trackside_wire::ApiError),
        (status = 503, description = "The alarm engine cannot record it now: nothing or only part was acknowledged (the message says which); try again", body = trackside_wire::ApiError),
    )
)]
async fn acknowledge_group(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<GroupAckRequest>, JsonRejection>,
) -> Result<Json<GroupAckResult>, AppError> {
    let id = path
        .map(|Path(id)| id)
        .map_err(|_| AppError::BadRequest("a flood id is a whole number".into()))?;
    let Json(GroupAckRequest { group, comment }) = body.map_err(|e| {
        AppError::BadRequest(format!(
            "{}; send JSON {{\"group\": \"<the group's key>\", \"comment\": \"<what you did or \
             will do>\"}}",
            e.body_text()
        ))
    })?;
    let comment = comment.trim().to_owned();
    if comment.is_empty() || comment.chars().count() > MAX_COMMENT {
        return Err(AppError::BadRequest(format!(
            "comment: say what you found or will do (1 to {MAX_COMMENT} characters)"
        )));
    }
    if group.is_empty() || group.len() > 300 {
        return Err(AppError::BadRequest(
            "group: the key of one of the flood's groups".into(),
        ));
    }
    let (waiting, mut skipped) =
        store::group_members(&state.pool, id, &group, MAX_GROUP_ACK).await?;
    if waiting.is_empty() && skipped.is_empty() {
        return Err(AppError::NotFound(format!(
            "flood {id} has no group {group:?} (GET /api/floods lists its groups)"
        )));
    }
    let flood = id.to_string();
    let mut acknowledged = Vec::with_capacity(waiting.len());
    let detail = [("flood", flood.as_str()), ("group", group.as_str())];
    for member in waiting {
        match acknowledge_audited(&state, &principal, member, &comment, &detail).await {
            Ok(_) => acknowledged.push(member),
            Err(AckFailure::NotFound | AckFailure::Closed | AckFailure::AlreadyAcknowledged(_)) => {
                skipped.push(member);
            }
            Err(AckFailure::Unavailable(message)) => {
                return Err(AppError::Unavailable(format!(
                    "{message} ({} of the group acknowledged before this: {:?})",
                    acknowledged.len(),
                    acknowledged
                )));
            }
            Err(AckFailure::Internal(err)) => return Err(err.into()),
        }
    }
    skipped.sort_unstable();
    Ok(Json(GroupAckResult {
        acknowledged,
        skipped,
    }))
}
