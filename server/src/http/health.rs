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
use crate::metrics::SpoolFigures;

/// How long `/readyz` waits for the database.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// This area's routes in the OpenAPI description (`http::openapi`): a
/// handler with `#[utoipa::path]` is listed here.
#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, readyz, metrics))]
pub struct Api;

#[utoipa::path(
    get, path = "/healthz", tag = "probes",
    summary = "Liveness probe",
    description = "`ok` while the process serves HTTP; it does not look at the database (see /readyz).",
    responses((status = 200, description = "Alive", content_type = "text/plain", body = String))
)]
async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(
    get, path = "/metrics", tag = "probes",
    summary = "Prometheus metrics",
    description = "The Prometheus text format: ingest, queues and their overflows, the spool, the database, gateways' clocks. A `metrics` token is enough.",
    responses((status = 200, description = "Metrics", content_type = "text/plain; version=0.0.4", body = String))
)]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let health = state.spool.health();
    let stats = state.spool.stats();
    let spool = SpoolFigures {
        backlog_bytes: health.backlog,
        bytes: health.bytes,
        max_bytes: health.max_bytes,
        failing: health.error.is_some(),
        write_errors: stats.write_errors.load(Relaxed),
        fsyncs: stats.fsyncs.load(Relaxed),
        fsync_errors: stats.fsync_errors.load(Relaxed),
        fsync_micros: stats.fsync_micros.load(Relaxed),
        dropped_bytes: stats.dropped_bytes.load(Relaxed),
        dropped_readings: stats.dropped_units.load(Relaxed),
        refused: stats.refused.load(Relaxed),
        damaged_bytes: stats.damaged_bytes.load(Relaxed),
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        {
            let mut text =
                state.metrics.render(&spool) + &gateway_clocks(&state.registry.gateways());
            state.cluster.render_metrics(&mut text);
            text
        },
    )
}

/// One gauge per gateway that stated a timestamp: its clock's offset.
fn gateway_clocks(gateways: &[trackside_wire::GatewayInfo]) -> String {
    use std::fmt::Write as _;
    let name = "trackside_gateway_clock_offset_seconds";
    let mut out = format!(
        "# HELP {name} How far a gateway's clock is ahead of the server's (negative: behind), from the timestamps it stated over the last one to two minutes.\n# TYPE {name} gauge\n"
    );
    for gateway in gateways {
        if let Some(ms) = gateway.clock_offset_ms {
            // Gateway ids are letters, digits, `_`, `-`, `.`: no escaping needed.
            let _ = writeln!(
                out,
                "{name}{{gateway=\"{}\"}} {:.3}",
                gateway.id,
                ms as f64 / 1000.0
            );
        }
    }
    out
}

/// Ready when the database answers, the ingest link is being read and the
/// spool can be written below its bound; otherwise a 503 that names every
/// problem and what it costs.
#[utoipa::path(
    get, path = "/readyz", tag = "probes",
    summary = "Readiness probe",
    description = "Ready when the database answers, ingest is being read and the spool can be written.",
    responses(
        (status = 200, description = "Ready", content_type = "text/plain", body = String),
        (status = 503, description = "Not ready: the message names every problem", body = trackside_wire::ApiError),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<String, AppError> {
    let mut problems = Vec::new();
    if !state.ingest_running.load(Relaxed) {
        problems.push("MQTT ingest is not running".to_owned());
    }
    let spool = state.spool.health();
    if let Some(err) = &spool.error {
        problems.push(format!(
            "the spool cannot be written ({err}): readings wait in memory only, up to \
             ingest.store_queue_readings; free space under the data directory and ingest \
             resumes by itself"
        ));
    }
    if spool.at_bound {
        problems.push(format!(
            "the spool is at its bound of {} bytes (ingest.spool_max_bytes): {}",
            spool.max_bytes,
            if state.redelivers {
                "new messages are left unacknowledged at the external broker"
            } else {
                "its oldest unstored readings are being dropped"
            }
        ));
    }
    let ping = sqlx::query("SELECT 1").execute(&state.pool);
    match tokio::time::timeout(READY_PROBE_TIMEOUT, ping).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => problems.push(format!(
            "database unreachable ({err}): readings wait in the spool, alarms in the exception journal"
        )),
        Err(_) => problems.push(format!(
            "database did not answer within {} s",
            READY_PROBE_TIMEOUT.as_secs()
        )),
    }
    if problems.is_empty() {
        // An instance standing by is ready: it serves HTTP and takes its
        // share of the readings; the roles say what else it does.
        let held = state.cluster.held();
        Ok(format!(
            "ready; instance {}; roles: {}",
            state.cluster.instance(),
            if held.is_empty() {
                "none (standing by)".to_owned()
            } else {
                held.join(", ")
            }
        ))
    } else {
        Err(AppError::Unavailable(problems.join("; ")))
    }
}
