//! `/api/channels`, `/api/gateways`, `/api/yard` and `/ws`: the board's
//! snapshot and the live feed that keeps it current.

use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use trackside_wire::{ChannelInfo, GatewayInfo, YardInfo};

use super::{ClientContext, Ended, serve_client};
use crate::auth::Principal;
use crate::auth::rules;
use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/channels", get(channels))
        .route("/api/yard", get(yard))
        .route("/api/gateways", get(gateways))
        .route("/ws", get(websocket))
}

/// This area's routes in the OpenAPI description (`http::openapi`): a
/// handler with `#[utoipa::path]` is listed here.
#[derive(utoipa::OpenApi)]
#[openapi(paths(yard, channels, gateways, websocket))]
pub struct Api;

#[utoipa::path(
    get, path = "/api/channels", tag = "live",
    summary = "Every channel and its latest reading",
    responses((status = 200, description = "Channels, by name", body = Vec<trackside_wire::ChannelInfo>))
)]
async fn channels(State(state): State<AppState>) -> Json<Vec<ChannelInfo>> {
    Json(state.registry.list(chrono::Utc::now()))
}

#[utoipa::path(
    get, path = "/api/gateways", tag = "live",
    summary = "Every gateway seen and whether it is online",
    responses((status = 200, description = "Gateways", body = Vec<trackside_wire::GatewayInfo>))
)]
async fn gateways(State(state): State<AppState>) -> Json<Vec<GatewayInfo>> {
    Json(state.registry.gateways())
}

#[utoipa::path(
    get, path = "/api/yard", tag = "live",
    summary = "The yard's name, time zone and the server's clock",
    responses((status = 200, description = "The yard", body = trackside_wire::YardInfo))
)]
async fn yard(State(state): State<AppState>) -> Json<YardInfo> {
    Json(YardInfo {
        name: state.yard.name.clone(),
        timezone: state.yard.timezone.clone(),
        server_time: chrono::Utc::now().timestamp_millis(),
    })
}

/// The feed lives as long as the session or token it was opened with: it
/// closes, saying why, when that ends.
#[utoipa::path(
    get, path = "/ws", tag = "live",
    summary = "The live feed (WebSocket)",
    description = "A WebSocket upgrade (send `Connection: Upgrade`, `Upgrade: websocket`). The server sends JSON text frames of the `ServerMessage` schema (first `hello`, then `readings`, `exception`, `heartbeat` every 15 s, ...); the client may send `ClientMessage` frames to choose its channels. The feed closes, saying why, when the session or token it was opened with ends.",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; frames are `ServerMessage` JSON", body = trackside_wire::ServerMessage),
        (status = 400, description = "Not a WebSocket upgrade request", body = trackside_wire::ApiError),
    )
)]
async fn websocket(
    State(state): State<AppState>,
    principal: Principal,
    upgrade: WebSocketUpgrade,
) -> Response {
    let role = principal.role;
    let ended: Ended = Box::pin(crate::auth::watch(state.auth.clone(), principal));
    let cx = ClientContext {
        hub: state.live.clone(),
        registry: state.registry.clone(),
        metrics: state.metrics.clone(),
        shutdown: state.shutdown.clone(),
        send_timeout: state.live_send_timeout,
        allowed: Box::new(move |message| rules::allows(rules::ws_rule(message), role)),
    };
    upgrade
        // Clients only send subscriptions. tungstenite zero-fills the free
        // part of its read buffer on every read, and the default 128 KiB
        // made that memset a quarter of the server's CPU with 50 clients.
        .read_buffer_size(CLIENT_READ_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve_client(socket, cx, ended))
}

const CLIENT_READ_BUFFER: usize = 4 * 1024;
/// A subscription naming thousands of channels fits; anything larger is a
/// misbehaving client, and its connection is closed.
const MAX_CLIENT_MESSAGE: usize = 256 * 1024;
