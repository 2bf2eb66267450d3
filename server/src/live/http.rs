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

/// The feed lives as long as the session or token it was opened with: it
/// closes, saying why, when that ends.
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
