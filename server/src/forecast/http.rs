//! `/api/forecast`: a channel's forecast, the models, and training jobs.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::DateTime;
use serde::Deserialize;
use trackside_wire::{
    ChannelName, Forecast, ForecastPoint, ForecastStatus, TrainJob, TrainRequest, parameter_info,
};

use super::{TrainRefusal, model_summary};
use crate::audit;
use crate::auth::Principal;
use crate::http::{AppError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/forecast", get(forecast))
        .route("/api/forecast/models", get(status))
        .route("/api/forecast/train", post(train))
        .route("/api/forecast/jobs/{id}", get(job))
}

/// This area's routes in the OpenAPI description (`http::openapi`): a
/// handler with `#[utoipa::path]` is listed here.
#[derive(utoipa::OpenApi)]
#[openapi(paths(forecast, status, train, job))]
pub struct Api;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ForecastQuery {
    channel: String,
}

#[utoipa::path(
    get, path = "/api/forecast", tag = "forecast",
    summary = "A channel's forecast",
    params(ForecastQuery),
    responses(
        (status = 200, description = "The latest forecast", body = trackside_wire::Forecast),
        (status = 400, description = "The channel is not valid", body = trackside_wire::ApiError),
        (status = 404, description = "No model for the parameter, or no forecast yet", body = trackside_wire::ApiError),
    )
)]
async fn forecast(
    State(state): State<AppState>,
    query: Result<Query<ForecastQuery>, QueryRejection>,
) -> Result<Json<Forecast>, AppError> {
    let Query(query) = query.map_err(|e| {
        AppError::BadRequest(format!(
            "{}; usage: /api/forecast?channel=T101/relay_voltage",
            e.body_text()
        ))
    })?;
    let channel = ChannelName::parse(&query.channel)
        .map_err(|e| AppError::BadRequest(format!("channel {:?}: {e}", query.channel)))?;
    let kind = channel.parameter();
    let Some(model) = state.forecast.model(kind) else {
        return Err(AppError::NotFound(format!(
            "no forecast model for {kind}: train one (POST /api/forecast/train or `trackside train --kind {kind}`)"
        )));
    };
    let Some(latest) = state.forecast.forecast(channel.as_str()) else {
        return Err(AppError::NotFound(format!(
            "no forecast for {} yet: it needs {} minutes of recent history and is computed every {:.0} s",
            channel.as_str(),
            model.info().spec.window as u64 * u64::from(model.info().spec.step_minutes),
            state.forecast.interval().as_secs_f64()
        )));
    };
    Ok(Json(Forecast {
        channel: channel.as_str().to_owned(),
        unit: parameter_info(kind)
            .and_then(|(_, p)| p.unit)
            .map(str::to_owned),
        computed_at: latest.computed_at,
        model: model_summary(model.info()),
        points: latest
            .points
            .iter()
            .map(|p| ForecastPoint {
                at: p.at,
                mean: p.mean,
                low: p.low,
                high: p.high,
            })
            .collect(),
    }))
}

#[utoipa::path(
    get, path = "/api/forecast/models", tag = "forecast",
    summary = "Forecast models and the training job",
    responses((status = 200, description = "Status", body = trackside_wire::ForecastStatus))
)]
async fn status(State(state): State<AppState>) -> Json<ForecastStatus> {
    Json(ForecastStatus {
        models: state.forecast.models(),
        job: state.forecast.job(),
    })
}

#[utoipa::path(
    post, path = "/api/forecast/train", tag = "forecast",
    summary = "Train a forecast model",
    description = "Starts a training job in the background; follow it with GET /api/forecast/jobs/{id}. Audited.",
    request_body = trackside_wire::TrainRequest,
    responses(
        (status = 202, description = "Started", body = trackside_wire::TrainJob),
        (status = 400, description = "The request is not valid", body = trackside_wire::ApiError),
        (status = 409, description = "A job is running", body = trackside_wire::ApiError),
    )
)]
async fn train(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<TrainRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<TrainJob>), AppError> {
    let Json(request) = body.map_err(|e| {
        AppError::BadRequest(format!(
            "{}; body: {{\"kind\": \"relay_voltage\", \"from\": <Unix ms>, \"to\": <Unix ms>}}",
            e.body_text()
        ))
    })?;
    let time = |name: &str, ms: i64| {
        DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| AppError::BadRequest(format!("{name} is out of range")))
    };
    let (from, to) = (time("from", request.from)?, time("to", request.to)?);
    match state
        .forecast
        .start_training(request.kind, from, to, request.epochs, principal.actor())
    {
        Ok(job) => {
            audit::record(
                &state.pool,
                &principal.actor(),
                audit::action::TRAIN,
                Some(&job.kind),
                &[
                    ("job", &job.id.to_string()),
                    ("from", &job.from.to_string()),
                    ("to", &job.to.to_string()),
                    ("epochs", &job.epochs.to_string()),
                ],
            )
            .await;
            Ok((StatusCode::ACCEPTED, Json(job)))
        }
        Err(TrainRefusal::Invalid(message)) => Err(AppError::BadRequest(message)),
        Err(TrainRefusal::Busy(job)) => Err(AppError::Conflict(format!(
            "a model of {} is being trained (job {}, epoch {} of {}): wait for it to finish",
            job.kind, job.id, job.epoch, job.epochs
        ))),
    }
}

#[utoipa::path(
    get, path = "/api/forecast/jobs/{id}", tag = "forecast",
    summary = "A training job's progress",
    params(("id" = u64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = trackside_wire::TrainJob),
        (status = 404, description = "No such job (only the latest is kept)", body = trackside_wire::ApiError),
    )
)]
async fn job(
    State(state): State<AppState>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Json<TrainJob>, AppError> {
    let Path(id) = id.map_err(|e| AppError::BadRequest(e.body_text()))?;
    state
        .forecast
        .job()
        .filter(|job| job.id == id)
        .map(Json)
        .ok_or_else(|| {
            AppError::NotFound(format!("no training job {id} (only the latest is kept)"))
        })
}
