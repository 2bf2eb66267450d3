//! `GET /api/occupations`, `GET /api/occupations.csv`, `GET /api/health`
//! and `GET /api/health/{circuit}`.

use std::fmt::Write as _;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use trackside_wire::{
    ChannelName, Check, CircuitHealthDetail, HealthList, Occupation, Occupations,
};

use super::job;
use crate::http::{AppError, AppState};
use crate::time::{DAY_MS, parse_time};

/// The longest interval one request covers.
const MAX_DAYS: i64 = 31;
/// Occupations one JSON answer lists; beyond, it says it was cut short.
const MAX_LISTED: i64 = 10_000;
/// Rows one CSV export holds; beyond, it is refused.
const MAX_EXPORTED: i64 = 100_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/occupations", get(list))
        .route("/api/occupations.csv", get(csv))
        .route("/api/health", get(health_list))
        .route("/api/health/{circuit}", get(health_detail))
}

/// This area's routes in the OpenAPI description (`http::openapi`): a
/// handler with `#[utoipa::path]` is listed here.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, csv, health_list, health_detail))]
pub struct Api;

/// Days of health history one request may ask for.
const MAX_HEALTH_DAYS: i32 = 366;

/// The level the `health_low` rule raises below (the first such rule's).
fn alarm_below(state: &AppState) -> f64 {
    state
        .exceptions
        .rules()
        .iter()
        .find_map(|r| match r.check {
            Check::HealthLow { below } => Some(below),
            _ => None,
        })
        .unwrap_or(0.0)
}

#[utoipa::path(
    get, path = "/api/health", tag = "health",
    summary = "Every circuit's health score",
    responses((status = 200, description = "Scores, worst first", body = trackside_wire::HealthList))
)]
async fn health_list(State(state): State<AppState>) -> Result<Json<HealthList>, AppError> {
    Ok(Json(HealthList {
        circuits: job::health_list(&state.pool).await?,
        alarm_below: alarm_below(&state),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DaysQuery {
    days: Option<i32>,
}

#[utoipa::path(
    get, path = "/api/health/{circuit}", tag = "health",
    summary = "One circuit's health and its daily history",
    params(("circuit" = String, Path, description = "Circuit name, e.g. T101"), DaysQuery),
    responses(
        (status = 200, description = "The circuit's health", body = trackside_wire::CircuitHealthDetail),
        (status = 400, description = "The circuit or days is not valid", body = trackside_wire::ApiError),
        (status = 404, description = "No such circuit", body = trackside_wire::ApiError),
    )
)]
async fn health_detail(
    State(state): State<AppState>,
    Path(circuit): Path<String>,
    query: Result<Query<DaysQuery>, QueryRejection>,
) -> Result<Json<CircuitHealthDetail>, AppError> {
    ChannelName::from_parts(&circuit, "relay_state")
        .map_err(|e| AppError::BadRequest(format!("circuit {circuit:?}: {e}")))?;
    let Query(query) = query.map_err(|e| {
        AppError::BadRequest(format!(
            "{}; usage: /api/health/T101[?days=30]",
            e.body_text()
        ))
    })?;
    let days = query.days.unwrap_or(30);
    if !(1..=MAX_HEALTH_DAYS).contains(&days) {
        return Err(AppError::BadRequest(format!(
            "days must be between 1 and {MAX_HEALTH_DAYS}"
        )));
    }
    let current = job::health_list(&state.pool)
        .await?
        .into_iter()
        .find(|h| h.circuit == circuit);
    Ok(Json(CircuitHealthDetail {
        current,
        days: job::health_days(&state.pool, &circuit, days).await?,
        alarm_below: alarm_below(&state),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct OccupationQuery {
    circuit: String,
    from: String,
    to: String,
}

struct Asked {
    circuit: String,
    from: i64,
    to: i64,
}

fn asked(
    query: Result<Query<OccupationQuery>, QueryRejection>,
    path: &str,
) -> Result<Asked, AppError> {
    let usage = format!("{path}?circuit=T101&from=2026-11-28T00:00:00Z&to=2026-11-29T00:00:00Z");
    let Query(query) =
        query.map_err(|e| AppError::BadRequest(format!("{}; usage: {usage}", e.body_text())))?;
    ChannelName::from_parts(&query.circuit, "relay_state")
        .map_err(|e| AppError::BadRequest(format!("circuit {:?}: {e}", query.circuit)))?;
    let from = parse_time("from", &query.from).map_err(AppError::BadRequest)?;
    let to = parse_time("to", &query.to).map_err(AppError::BadRequest)?;
    if from >= to {
        return Err(AppError::BadRequest("from must be before to".into()));
    }
    if to - from > MAX_DAYS * DAY_MS {
        return Err(AppError::BadRequest(format!(
            "the interval is longer than {MAX_DAYS} days; ask for a shorter one"
        )));
    }
    Ok(Asked {
        circuit: query.circuit,
        from,
        to,
    })
}

#[utoipa::path(
    get, path = "/api/occupations", tag = "health",
    summary = "A circuit's occupations over an interval",
    params(OccupationQuery),
    responses(
        (status = 200, description = "Occupations, classified", body = trackside_wire::Occupations),
        (status = 400, description = "A parameter is not valid", body = trackside_wire::ApiError),
    )
)]
async fn list(
    State(state): State<AppState>,
    query: Result<Query<OccupationQuery>, QueryRejection>,
) -> Result<Json<Occupations>, AppError> {
    let asked = asked(query, "/api/occupations")?;
    let mut occupations = job::list(
        &state.pool,
        &asked.circuit,
        asked.from,
        asked.to,
        MAX_LISTED + 1,
        false,
    )
    .await?;
    let truncated = occupations.len() as i64 > MAX_LISTED;
    occupations.truncate(MAX_LISTED as usize);
    Ok(Json(Occupations {
        derived_to: job::derived_to(&state.pool, &asked.circuit).await?,
        circuit: asked.circuit,
        from: asked.from,
        to: asked.to,
        occupations,
        truncated,
    }))
}

#[utoipa::path(
    get, path = "/api/occupations.csv", tag = "health",
    summary = "A circuit's occupations as CSV",
    params(OccupationQuery),
    responses(
        (status = 200, description = "CSV", content_type = "text/csv", body = String),
        (status = 400, description = "A parameter is not valid", body = trackside_wire::ApiError),
    )
)]
async fn csv(
    State(state): State<AppState>,
    query: Result<Query<OccupationQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let asked = asked(query, "/api/occupations.csv")?;
    let occupations = job::list(
        &state.pool,
        &asked.circuit,
        asked.from,
        asked.to,
        MAX_EXPORTED + 1,
        false,
    )
    .await?;
    if occupations.len() as i64 > MAX_EXPORTED {
        return Err(AppError::BadRequest(format!(
            "more than {MAX_EXPORTED} occupations in the interval; export a shorter one"
        )));
    }
    let filename = format!(
        "occupations-{}-{}.csv",
        asked.circuit,
        chrono::DateTime::from_timestamp_millis(asked.from)
            .map_or_else(String::new, |t| t.format("%Y%m%dT%H%M%SZ").to_string())
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        to_csv(&occupations),
    )
        .into_response())
}

/// Times in UTC (RFC 3339, milliseconds), values in volts and amperes;
/// empty cells where a value could not be measured.
pub fn to_csv(occupations: &[Occupation]) -> String {
    let mut out = String::from(
        "circuit,start_utc,end_utc,duration_s,class,drop_value_v,pick_value_v,residual_min_v,\
         residual_max_v,feed_current_mean_a,feed_current_sd_a,missing_readings,readings\n",
    );
    let time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms).map_or_else(String::new, |t| {
            t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        })
    };
    let cell = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v}"));
    for o in occupations {
        // Circuit names are checked channel-name parts: no comma, quote or
        // newline to escape.
        let _ = writeln!(
            out,
            "{},{},{},{:.3},{},{},{},{},{},{},{},{},{}",
            o.circuit,
            time(o.start),
            time(o.end),
            o.duration_ms as f64 / 1000.0,
            o.class.as_str(),
            cell(o.drop_value),
            cell(o.pick_value),
            cell(o.residual_min),
            cell(o.residual_max),
            cell(o.current_mean),
            cell(o.current_sd),
            o.missing_readings,
            o.readings
        );
    }
    out
}
