//! `/api/gateway-credentials`: what `trackside gateway add|list|revoke|cert`
//! does, for an admin in the app; `/api/channels/{channel}/gateway`: what
//! `trackside channel reassign` does. Every change is audited.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use trackside_wire::{
    CertificateRequest, ChannelOwner, ChannelReassigned, GatewayCertificateFiles,
    GatewayCredentialInfo, IssuedGatewayPassword, NewGateway,
};

use super::admission::{self, ReassignError};
use super::{credentials, pki};
use crate::audit::{self, action};
use crate::auth::Principal;
use crate::http::{AppError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/gateway-credentials", get(list).post(add))
        .route("/api/gateway-credentials/{id}", delete(revoke))
        .route(
            "/api/gateway-credentials/{id}/certificate",
            post(certificate),
        )
        .route("/api/channels/{circuit}/{parameter}/gateway", put(reassign))
}

/// Gives a channel to another gateway: the old one's readings of it are
/// refused from now on, on every instance.
async fn reassign(
    State(state): State<AppState>,
    principal: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Result<Json<ChannelOwner>, JsonRejection>,
) -> Result<Json<ChannelReassigned>, AppError> {
    let Path((circuit, parameter)) = path.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let Json(request) = request.map_err(|e| {
        AppError::BadRequest(format!(
            "{}; send JSON {{\"gateway\": \"yard-gw07\"}}",
            e.body_text()
        ))
    })?;
    let channel = format!("{circuit}/{parameter}");
    let gateway = request.gateway;
    if !super::decode::valid_gateway_id(&gateway) {
        return Err(AppError::BadRequest(format!(
            "{gateway:?} is not a gateway id: 1 to 64 of letters, digits, `_`, `-`, `.`"
        )));
    }
    if let Err(ReassignError::Pinned(pinned)) = state.admission.check_reassign(&channel, &gateway) {
        return Err(AppError::Conflict(format!(
            "channel {channel} is pinned to gateway {pinned} by ingest.pins in the configuration: \
             change the configuration instead"
        )));
    }
    let Some(previous) = admission::reassign(&state.pool, &channel, &gateway).await? else {
        return Err(AppError::NotFound(format!(
            "no channel {channel}: a channel is registered by its first reading"
        )));
    };
    state.admission.apply_local(&channel, &gateway);
    state.registry.set_gateway(&channel, &gateway);
    audit::record(
        &state.pool,
        &principal.actor(),
        action::CHANNEL_REASSIGN,
        Some(&channel),
        &[("from", &previous), ("to", &gateway)],
    )
    .await;
    Ok(Json(ChannelReassigned {
        channel,
        gateway,
        previous,
    }))
}

async fn list(State(state): State<AppState>) -> Result<Json<Vec<GatewayCredentialInfo>>, AppError> {
    let list = credentials::list(&state.pool).await?;
    Ok(Json(
        list.into_iter()
            .map(|c| GatewayCredentialInfo {
                id: c.gateway_id,
                created_at: c.created_at.timestamp_millis(),
                revoked_at: c.revoked_at.map(|t| t.timestamp_millis()),
            })
            .collect(),
    ))
}

async fn add(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<NewGateway>, JsonRejection>,
) -> Result<(StatusCode, Json<IssuedGatewayPassword>), AppError> {
    let Json(request) = request.map_err(|e| {
        AppError::BadRequest(format!(
            "{}; send JSON {{\"id\": \"yard-gw07\"}}",
            e.body_text()
        ))
    })?;
    let password = credentials::add(&state.pool, &request.id, request.password)
        .await
        .map_err(|e| AppError::BadRequest(format!("{e:#}")))?;
    audit::record(
        &state.pool,
        &principal.actor(),
        action::GATEWAY_ADD,
        Some(&request.id),
        &[],
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(IssuedGatewayPassword {
            id: request.id,
            password,
        }),
    ))
}

async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, AppError> {
    let Path(id) = id.map_err(|e| AppError::BadRequest(e.body_text()))?;
    if !credentials::revoke(&state.pool, &id).await? {
        return Err(AppError::NotFound(format!(
            "gateway {id} has no active credentials"
        )));
    }
    audit::record(
        &state.pool,
        &principal.actor(),
        action::GATEWAY_REVOKE,
        Some(&id),
        &[],
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

async fn certificate(
    State(state): State<AppState>,
    principal: Principal,
    id: Result<Path<String>, PathRejection>,
    request: Result<Json<CertificateRequest>, JsonRejection>,
) -> Result<Json<GatewayCertificateFiles>, AppError> {
    let Path(id) = id.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let Json(request) = request.map_err(|e| {
        AppError::BadRequest(format!("{}; send JSON {{\"days\": 825}}", e.body_text()))
    })?;
    pki::check_tenant_id(&id).map_err(|e| AppError::BadRequest(format!("{e:#}")))?;
    let dir = state.pki_dir.clone();
    let gateway = id.clone();
    let days = request.days;
    let issued = tokio::task::spawn_blocking(move || {
        // Made here if the TLS listener never ran; it adds its own
        // certificate at its next start.
        if !dir.join("ca.crt").exists() {
            pki::prepare(&dir, &["localhost".to_owned()])?;
        }
        pki::issue_gateway(&dir, &gateway, days)
    })
    .await
    .map_err(|e| AppError::Internal(e.into()))?
    .map_err(|e| AppError::BadRequest(format!("{e:#}")))?;
    audit::record(
        &state.pool,
        &principal.actor(),
        action::GATEWAY_CERTIFICATE,
        Some(&id),
        &[("days", &days.to_string())],
    )
    .await;
    Ok(Json(GatewayCertificateFiles {
        id,
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
        ca_pem: issued.ca_pem,
        days,
    }))
}
