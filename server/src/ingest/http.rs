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

/// This area's routes in the OpenAPI description (`http::openapi`): a
/// handler with `#[utoipa::path]` is listed here.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, add, revoke, certificate, reassign))]
pub struct Api;

/// Gives a channel to another gateway: the old one's readings of it are
/// refused from now on, on every instance.
#[utoipa::path(
    put, path = "/api/channels/{circuit}/{parameter}/gateway", tag = "gateways",
    summary = "Give a channel to another gateway",
    description = "The old gateway's readings of the channel are refused from now on, on every instance. Audited.",
    params(("circuit" = String, Path, description = "Circuit name, e.g. T101"), ("parameter" = String, Path, description = "Parameter, e.g. relay_voltage")),
    request_body = trackside_wire::ChannelOwner,
    responses(
        (status = 200, description = "Reassigned", body = trackside_wire::ChannelReassigned),
        (status = 400, description = "The channel or gateway name is not valid", body = trackside_wire::ApiError),
        (status = 404, description = "No such channel or gateway", body = trackside_wire::ApiError),
        (status = 409, description = "The gateway already owns the channel", body = trackside_wire::ApiError),
    )
)]
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

#[utoipa::path(
    get, path = "/api/gateway-credentials", tag = "gateways",
    summary = "List gateway credentials",
    responses((status = 200, description = "Every gateway credential (never its secret)", body = Vec<trackside_wire::GatewayCredentialInfo>))
)]
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

#[utoipa::path(
    post, path = "/api/gateway-credentials", tag = "gateways",
    summary = "Add a gateway credential",
    description = "An MQTT user name and password for one gateway; the password is in this answer only. Audited.",
    request_body = trackside_wire::NewGateway,
    responses(
        (status = 201, description = "Created", body = trackside_wire::IssuedGatewayPassword),
        (status = 400, description = "The gateway id is not valid", body = trackside_wire::ApiError),
        (status = 409, description = "The gateway has a credential", body = trackside_wire::ApiError),
    )
)]
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

#[utoipa::path(
    delete, path = "/api/gateway-credentials/{id}", tag = "gateways",
    summary = "Revoke a gateway credential",
    params(("id" = String, Path, description = "The gateway id")),
    responses(
        (status = 204, description = "Revoked; the gateway's connection is closed"),
        (status = 404, description = "No such credential", body = trackside_wire::ApiError),
    )
)]
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

#[utoipa::path(
    post, path = "/api/gateway-credentials/{id}/certificate", tag = "gateways",
    summary = "Issue a client certificate for a gateway",
    description = "A TLS client certificate signed by the broker's CA, for gateways that sign in by certificate. The private key is in this answer only. Audited.",
    params(("id" = String, Path, description = "The gateway id")),
    request_body = trackside_wire::CertificateRequest,
    responses(
        (status = 200, description = "Issued", body = trackside_wire::GatewayCertificateFiles),
        (status = 400, description = "The request is not valid", body = trackside_wire::ApiError),
        (status = 404, description = "No such credential", body = trackside_wire::ApiError),
        (status = 503, description = "The broker has no certificate authority configured", body = trackside_wire::ApiError),
    )
)]
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
