//! `/api/layout`, `/api/replay` and `/api/movements`.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use trackside_wire::{ChannelName, Layout, LayoutRejected, Movements, Replay};

use super::layout::{self, MAX_LAYOUT_BYTES};
use super::replay::{self, Recorded, ReplayError};
use crate::audit::{self, action};
use crate::auth::Principal;
use crate::http::{AppError, AppState};
use crate::time::{DAY_MS, parse_time};

/// The longest interval one replay or movement list covers.
pub const MAX_REPLAY_DAYS: i64 = 31;
/// Most circuits a request may name.
const MAX_CIRCUITS: usize = 2_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/layout",
            get(layout_get)
                .put(layout_put)
                .layer(DefaultBodyLimit::max(MAX_LAYOUT_BYTES + 1)),
        )
        .route("/api/layout/source", get(layout_source))
        .route("/api/replay", get(replay_get))
        .route("/api/movements", get(movements_get))
}

/// This area's routes in the OpenAPI description (`http::openapi`): a
/// handler with `#[utoipa::path]` is listed here.
#[derive(utoipa::OpenApi)]
#[openapi(paths(layout_get, layout_put, layout_source, replay_get, movements_get))]
pub struct Api;

#[utoipa::path(
    get, path = "/api/layout", tag = "layout",
    summary = "The yard layout (diagram)",
    responses(
        (status = 200, description = "The layout", body = trackside_wire::Layout),
        (status = 404, description = "No layout yet, or it has problems", body = trackside_wire::ApiError),
    )
)]
async fn layout_get(State(state): State<AppState>) -> Result<Json<Layout>, AppError> {
    let current = state.layout.read();
    match current.layout {
        Some(layout) => Ok(Json((*layout).clone())),
        None if !current.problems.is_empty() => Err(AppError::NotFound(format!(
            "the yard layout {} has problems and is not shown: {} (fix the file and restart, or \
             replace it in Admin → Yard layout)",
            state.layout.path().display(),
            layout::describe(&current.problems).replace('\n', "; ")
        ))),
        None => Err(AppError::NotFound(format!(
            "no yard layout yet: an admin can load one in Admin → Yard layout (PUT /api/layout), \
             or set yard.layout in the configuration (it is read from {})",
            state.layout.path().display()
        ))),
    }
}

/// The layout file as it is, for an admin to edit and send back.
#[utoipa::path(
    get, path = "/api/layout/source", tag = "layout",
    summary = "The layout file as TOML",
    responses(
        (status = 200, description = "The TOML source", content_type = "application/toml", body = String),
        (status = 404, description = "No layout yet", body = trackside_wire::ApiError),
    )
)]
async fn layout_source(State(state): State<AppState>) -> Result<Response, AppError> {
    let Some(source) = state.layout.read().source else {
        return Err(AppError::NotFound("no yard layout yet".into()));
    };
    Ok((
        [(header::CONTENT_TYPE, "application/toml; charset=utf-8")],
        source.to_string(),
    )
        .into_response())
}

/// Replaces the layout with the TOML in the body, checked as
/// `trackside layout check` does (circuits the server has seen count as
/// declared).
#[utoipa::path(
    put, path = "/api/layout", tag = "layout",
    summary = "Replace the yard layout",
    description = "The body is the layout TOML file (at most 1 MiB), checked as `trackside layout check` does. Audited.",
    request_body(content = String, content_type = "application/toml", description = "The layout file"),
    responses(
        (status = 200, description = "Replaced", body = trackside_wire::Layout),
        (status = 400, description = "Not UTF-8, too large (`ApiError`), or the layout has problems (`LayoutRejected`, which lists them)", body = trackside_wire::LayoutRejected),
        (status = 503, description = "The server is shutting down", body = trackside_wire::ApiError),
    )
)]
async fn layout_put(
    State(state): State<AppState>,
    principal: Principal,
    body: Bytes,
) -> Result<Response, AppError> {
    if body.len() > MAX_LAYOUT_BYTES {
        return Err(AppError::BadRequest(format!(
            "the layout is {} bytes; at most {MAX_LAYOUT_BYTES} are taken",
            body.len()
        )));
    }
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| AppError::BadRequest("the layout must be UTF-8 text (a TOML file)".into()))?;
    let known = known_circuits(&state);
    let result = state
        .layout
        .replace(text, &|circuit| known.contains(circuit))
        .await?;
    match result {
        Ok(layout) => {
            let sections = layout.sections.len().to_string();
            let circuits = layout.circuits.len().to_string();
            audit::record(
                &state.pool,
                &principal.actor(),
                action::LAYOUT_REPLACE,
                layout.name.as_deref(),
                &[("sections", &sections), ("circuits", &circuits)],
            )
            .await;
            Ok(Json((*layout).clone()).into_response())
        }
        Err(problems) => {
            let error = format!(
                "the layout was not replaced: {} problem{} ({}); fix them and send it again",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                layout::describe(&problems[..problems.len().min(3)]).replace('\n', "; ")
            );
            Ok((
                StatusCode::BAD_REQUEST,
                Json(LayoutRejected { error, problems }),
            )
                .into_response())
        }
    }
}

fn known_circuits(state: &AppState) -> HashSet<String> {
    state
        .registry
        .list(chrono::Utc::now())
        .into_iter()
        .map(|c| c.circuit)
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct IntervalQuery {
    from: String,
    to: String,
    /// Comma-separated circuit names; all circuits when absent.
    circuits: Option<String>,
    /// `/api/movements` only: movements through this circuit.
    circuit: Option<String>,
}

struct Interval {
    from: i64,
    to: i64,
    circuits: Option<Vec<String>>,
}

fn interval(
    query: Result<Query<IntervalQuery>, QueryRejection>,
    usage: &str,
) -> Result<(Interval, Option<String>), AppError> {
    let Query(query) =
        query.map_err(|e| AppError::BadRequest(format!("{}; usage: {usage}", e.body_text())))?;
    let from = parse_time("from", &query.from).map_err(AppError::BadRequest)?;
    let to = parse_time("to", &query.to).map_err(AppError::BadRequest)?;
    if from >= to {
        return Err(AppError::BadRequest("from must be before to".into()));
    }
    if to - from > MAX_REPLAY_DAYS * DAY_MS {
        return Err(AppError::BadRequest(format!(
            "the interval is longer than {MAX_REPLAY_DAYS} days; replay a shorter one"
        )));
    }
    let circuits = query
        .circuits
        .map(|list| {
            let names: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect();
            if names.is_empty() || names.len() > MAX_CIRCUITS {
                return Err(AppError::BadRequest(format!(
                    "circuits names 1 to {MAX_CIRCUITS} circuits, comma-separated (T101,T102), or leave it out for all"
                )));
            }
            for name in &names {
                ChannelName::from_parts(name, "relay_state")
                    .map_err(|e| AppError::BadRequest(format!("circuit {name:?}: {e}")))?;
            }
            Ok(names)
        })
        .transpose()?;
    if let Some(circuit) = &query.circuit {
        ChannelName::from_parts(circuit, "relay_state")
            .map_err(|e| AppError::BadRequest(format!("circuit {circuit:?}: {e}")))?;
    }
    Ok((Interval { from, to, circuits }, query.circuit))
}

/// The interval's relay states and exceptions, read within the replay
/// permits (replay and movements share them).
async fn read_recorded(state: &AppState, interval: &Interval) -> Result<Recorded, AppError> {
    let _permit = state
        .layout
        .permits
        .acquire()
        .await
        .map_err(|_| AppError::Unavailable("the server is shutting down".into()))?;
    replay::read(
        &state.pool,
        interval.from,
        interval.to,
        interval.circuits.as_deref(),
    )
    .await
    .map_err(replay_failure)
}

fn replay_failure(err: ReplayError) -> AppError {
    match err {
        ReplayError::TooMany => AppError::BadRequest(format!(
            "the interval holds more than {} relay-state changes; replay a shorter interval or fewer circuits",
            replay::MAX_CHANGES
        )),
        ReplayError::Database(err) => err.into(),
    }
}

#[utoipa::path(
    get, path = "/api/replay", tag = "layout",
    summary = "Replay an interval on the diagram",
    params(IntervalQuery),
    responses(
        (status = 200, description = "The starting states and every change", body = trackside_wire::Replay),
        (status = 400, description = "A parameter is not valid, or the interval is too long", body = trackside_wire::ApiError),
        (status = 404, description = "No layout yet", body = trackside_wire::ApiError),
    )
)]
async fn replay_get(
    State(state): State<AppState>,
    query: Result<Query<IntervalQuery>, QueryRejection>,
) -> Result<Json<Replay>, AppError> {
    let (interval, _) = interval(
        query,
        "/api/replay?from=2026-11-28T14:00:00Z&to=2026-11-28T14:10:00Z[&circuits=T101,T102]",
    )?;
    let recorded = read_recorded(&state, &interval).await?;
    let movements = match state.layout.layout() {
        Some(layout) => replay::movements_within(
            &recorded,
            &layout::adjacency(&layout),
            interval.from,
            interval.to,
        ),
        None => Vec::new(),
    };
    Ok(Json(Replay {
        from: interval.from,
        to: interval.to,
        start: recorded.start,
        changes: recorded.changes,
        exceptions: recorded.exceptions,
        movements,
    }))
}

#[utoipa::path(
    get, path = "/api/movements", tag = "layout",
    summary = "Train movements over an interval",
    params(IntervalQuery),
    responses(
        (status = 200, description = "Movements derived from the occupations", body = trackside_wire::Movements),
        (status = 400, description = "A parameter is not valid, or the interval is too long", body = trackside_wire::ApiError),
        (status = 404, description = "No layout yet", body = trackside_wire::ApiError),
    )
)]
async fn movements_get(
    State(state): State<AppState>,
    query: Result<Query<IntervalQuery>, QueryRejection>,
) -> Result<Json<Movements>, AppError> {
    let (interval, circuit) = interval(
        query,
        "/api/movements?from=2026-11-28T12:00:00Z&to=2026-11-28T14:00:00Z[&circuit=T101]",
    )?;
    let Some(layout) = state.layout.layout() else {
        return Err(AppError::NotFound(
            "no yard layout: movements follow the layout's connections between circuits".into(),
        ));
    };
    let recorded = read_recorded(&state, &interval).await?;
    let mut movements = replay::movements_within(
        &recorded,
        &layout::adjacency(&layout),
        interval.from,
        interval.to,
    );
    if let Some(circuit) = circuit {
        movements.retain(|m| m.steps.iter().any(|s| s.circuit == circuit));
    }
    Ok(Json(Movements {
        from: interval.from,
        to: interval.to,
        movements,
    }))
}
