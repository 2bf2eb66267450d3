//! `/healthz`, `/readyz` and `/metrics`: what an orchestrator and a
//! Prometheus scrape ask.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::{AppError, AppState};

/// How long `/readyz` waits for the database.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(state.spool.backlog()),
    )
}

/// Ready when the database answers and the ingest link is being read.
async fn readyz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    if !state.ingest_running.load(Relaxed) {
        return Err(AppError::Unavailable("MQTT ingest is not running".into()));
    }
    let ping = sqlx::query("SELECT 1").execute(&state.pool);
    match tokio::time::timeout(READY_PROBE_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok("ready"),
        Ok(Err(err)) => Err(AppError::Unavailable(format!(
            "database unreachable: {err}"
        ))),
        Err(_) => Err(AppError::Unavailable(
            "database did not answer within 2 s".into(),
        )),
    }
}
