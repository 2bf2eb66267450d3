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

/// What the parameters are, for every refusal.
pub const USAGE: &str = "filters: from, to (RFC 3339 or Unix ms), actor, action \
     (comma-separated, user.* for a family), target, limit";

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
