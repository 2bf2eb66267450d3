//! `GET /api/audit`: the trail, newest first, filtered.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use trackside_wire::AuditEntry;

use super::{DEFAULT_LIMIT, Filter, MAX_LIMIT, Params};
use crate::http::{AppError, AppState};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/audit", get(list))
}

/// This area's routes in the OpenAPI description (`http::openapi`): a
/// handler with `#[utoipa::path]` is listed here.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list))]
pub struct Api;

/// What the parameters are, for every refusal.
pub const USAGE: &str = "filters: from, to (RFC 3339 or Unix ms), actor, action \
     (comma-separated, user.* for a family), target, limit";

#[utoipa::path(
    get, path = "/api/audit", tag = "audit",
    summary = "The audit trail",
    description = "Who changed what, newest first, filtered.",
    params(crate::audit::Params),
    responses(
        (status = 200, description = "Matching entries, newest first", body = Vec<trackside_wire::AuditEntry>),
        (status = 400, description = "A filter is not valid", body = trackside_wire::ApiError),
    )
)]
async fn list(
    State(state): State<AppState>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, AppError> {
    let Query(params) =
        params.map_err(|e| AppError::BadRequest(format!("{}; {USAGE}", e.body_text())))?;
    let filter =
        Filter::parse(&params).map_err(|e| AppError::BadRequest(format!("{e}; {USAGE}")))?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}; for more, download the CSV (GET /api/audit.csv)"
        )));
    }
    Ok(Json(super::list(&state.pool, &filter, limit).await?))
}
