//! The HTTP surface: the JSON API, the live WebSocket, health, metrics, and
//! the operator app's files, all from one router.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use trackside_wire::{ApiError, ChannelInfo, GatewayInfo, YardInfo};

use crate::config::YardConfig;
use crate::live::{self, ClientContext, LiveHub};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::spool::Spool;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub registry: Arc<Registry>,
    pub live: LiveHub,
    pub metrics: Arc<Metrics>,
    pub spool: Arc<Spool>,
    pub yard: Arc<YardConfig>,
    pub ingest_running: Arc<AtomicBool>,
    pub shutdown: CancellationToken,
    pub live_send_timeout: Duration,
    pub exceptions: crate::exceptions::Handle,
    pub history: Arc<crate::history::HistorySettings>,
    pub export: Arc<crate::export::ExportSettings>,
    pub forecast: Arc<crate::forecast::Forecasting>,
}

/// The application's error type: user errors are 4xx with a message the
/// user can act on; anything else is a 500 whose detail goes to the log only.
#[derive(Debug)]
pub enum AppError {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    Unavailable(String),
    Internal(anyhow::Error),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            AppError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            AppError::NotFound(message) => (StatusCode::NOT_FOUND, message),
            AppError::Conflict(message) => (StatusCode::CONFLICT, message),
            AppError::Unavailable(message) => (StatusCode::SERVICE_UNAVAILABLE, message),
            AppError::Internal(err) => {
                tracing::error!("request failed: {err:#}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; the server log has the details".to_owned(),
                )
            }
        };
        (status, Json(ApiError { error: message })).into_response()
    }
}

pub fn router(state: AppState, assets_dir: &Path) -> Router {
    let api = Router::new()
        .route("/api/channels", get(channels))
        .route("/api/yard", get(yard))
        .route("/api/gateways", get(gateways))
        .merge(crate::exceptions::http::router())
        .merge(crate::history::router())
        .merge(crate::export::router())
        .merge(crate::forecast::http::router())
        .route("/api/{*rest}", get(unknown_api))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    Router::new()
        .merge(api)
        .route("/ws", get(websocket))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback_service(app_files(assets_dir))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The built app, with every unknown path answered by index.html so that the
/// app's own routes survive a reload. Without a build, a page says how to
/// make one instead of a bare 404.
fn app_files(assets_dir: &Path) -> Router {
    let index = assets_dir.join("index.html");
    if index.exists() {
        // File names carry no content hash, so browsers must revalidate
        // (a cheap 304) or a control-room screen keeps an old build forever.
        Router::new()
            .fallback_service(ServeDir::new(assets_dir).fallback(ServeFile::new(index)))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            ))
    } else {
        tracing::warn!(dir = %assets_dir.display(), "operator app not built; serving the API only");
        let message = format!(
            "The Trackside operator app is not built (no {}).\n\
             Build it with `cargo xtask frontend`, or start with `cargo xtask demo`.\n",
            index.display()
        );
        Router::new().fallback(move || {
            let message = message.clone();
            async move { (StatusCode::SERVICE_UNAVAILABLE, message) }
        })
    }
}

async fn channels(State(state): State<AppState>) -> Json<Vec<ChannelInfo>> {
    Json(state.registry.list(chrono::Utc::now()))
}

async fn gateways(State(state): State<AppState>) -> Json<Vec<GatewayInfo>> {
    Json(state.registry.gateways())
}

async fn yard(State(state): State<AppState>) -> Json<YardInfo> {
    Json(YardInfo {
        name: state.yard.name.clone(),
        timezone: state.yard.timezone.clone(),
        server_time: chrono::Utc::now().timestamp_millis(),
    })
}

async fn unknown_api() -> AppError {
    AppError::BadRequest("no such API endpoint: see docs/api.md".into())
}

async fn websocket(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    let cx = ClientContext {
        hub: state.live.clone(),
        registry: state.registry.clone(),
        metrics: state.metrics.clone(),
        shutdown: state.shutdown.clone(),
        send_timeout: state.live_send_timeout,
    };
    upgrade
        // Clients only send subscriptions. tungstenite zero-fills the free
        // part of its read buffer on every read, and the default 128 KiB
        // made that memset a quarter of the server's CPU with 50 clients.
        .read_buffer_size(CLIENT_READ_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| live::serve_client(socket, cx))
}

const CLIENT_READ_BUFFER: usize = 4 * 1024;
/// A subscription naming thousands of channels fits; anything larger is a
/// misbehaving client, and its connection is closed.
const MAX_CLIENT_MESSAGE: usize = 256 * 1024;

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
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => Ok("ready"),
        Ok(Err(err)) => Err(AppError::Unavailable(format!(
            "database unreachable: {err}"
        ))),
        Err(_) => Err(AppError::Unavailable(
            "database did not answer within 2 s".into(),
        )),
    }
}
