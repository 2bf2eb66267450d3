//! `/api/session`, `/api/me`, `/api/users` and `/api/tokens`.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use tower_sessions::Session;
use trackside_wire::{
    IssuedPassword, IssuedToken, LinkSignInRequest, Me, NewToken, NewUser, PasswordChange,
    SignInRequest, TokenInfo, UserChange, UserInfo,
};

use super::signin::{self, busy};
use super::users::{self, AddError, Change, ChangeError};
use super::{ClientAddress, Principal, Via, password, tokens};
use crate::audit::{self, action};
use crate::http::{AppError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/session", post(sign_in).delete(sign_out))
        .route("/api/session/link", post(sign_in_with_link))
        .route("/api/me", get(me))
        .route("/api/me/password", post(change_own_password))
        .route("/api/users", get(list_users).post(add_user))
        .route("/api/users/{name}", patch(change_user))
        .route("/api/tokens", get(list_tokens).post(issue_token))
        .route("/api/tokens/{id}", delete(revoke_token))
}

/// This area's routes in the OpenAPI description (`http::openapi`): a
/// handler with `#[utoipa::path]` is listed here.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    sign_in,
    sign_in_with_link,
    sign_out,
    me,
    change_own_password,
    list_users,
    add_user,
    change_user,
    list_tokens,
    issue_token,
    revoke_token
))]
pub struct Api;

/// A JSON body, or a 400 that shows what to send.
fn body<T>(body: Result<Json<T>, JsonRejection>, example: &str) -> Result<T, AppError> {
    body.map(|Json(b)| b)
        .map_err(|e| AppError::BadRequest(format!("{}; send JSON {example}", e.body_text())))
}

#[utoipa::path(
    post, path = "/api/session", tag = "session",
    summary = "Sign in with a name and password",
    description = "Starts a session: the answer sets the session cookie. Repeated failures from one address or for one name are slowed down (429 with Retry-After).",
    request_body = trackside_wire::SignInRequest,
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = trackside_wire::Me),
        (status = 400, description = "The body is not the JSON shown", body = trackside_wire::ApiError),
        (status = 401, description = "Wrong name or password", body = trackside_wire::ApiError),
        (status = 403, description = "The account is disabled", body = trackside_wire::ApiError),
        (status = 429, description = "Too many attempts: wait for Retry-After seconds", body = trackside_wire::ApiError),
        (status = 503, description = "Too many sign-ins at once: try again shortly", body = trackside_wire::ApiError),
    )
)]
async fn sign_in(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    current: Session,
    request: Result<Json<SignInRequest>, JsonRejection>,
) -> Result<Json<Me>, AppError> {
    let request = body(request, r#"{"name": "...", "password": "..."}"#)?;
    if request.name.chars().count() > users::MAX_NAME
        || request.password.len() > 4 * password::MAX_LENGTH
    {
        return Err(AppError::BadRequest("name or password too long".into()));
    }
    let user =
        signin::check_password(&state.auth, &request.name, &request.password, address).await?;
    let me = signin::start_session(&state.auth, &current, &user, address, "password").await?;
    Ok(Json(me))
}

#[utoipa::path(
    post, path = "/api/session/link", tag = "session",
    summary = "Sign in with a one-time link",
    description = "Exchanges the token of a sign-in link (issued to a new user or on a password reset) for a session; the user must then choose a password.",
    request_body = trackside_wire::LinkSignInRequest,
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = trackside_wire::Me),
        (status = 400, description = "The body is not the JSON shown", body = trackside_wire::ApiError),
        (status = 401, description = "The link is unknown, used or expired", body = trackside_wire::ApiError),
        (status = 429, description = "Too many attempts: wait for Retry-After seconds", body = trackside_wire::ApiError),
    )
)]
async fn sign_in_with_link(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    current: Session,
    request: Result<Json<LinkSignInRequest>, JsonRejection>,
) -> Result<Json<Me>, AppError> {
    let request = body(request, r#"{"token": "..."}"#)?;
    let user = signin::check_link(&state.auth, &request.token, address).await?;
    let me = signin::start_session(&state.auth, &current, &user, address, "one-time link").await?;
    Ok(Json(me))
}

#[utoipa::path(
    delete, path = "/api/session", tag = "session",
    summary = "Sign out",
    description = "Ends the session of the cookie sent (an API token is revoked with DELETE /api/tokens/{id} instead).",
    responses((status = 204, description = "Signed out"))
)]
async fn sign_out(
    State(state): State<AppState>,
    principal: Principal,
    current: Session,
) -> Result<StatusCode, AppError> {
    let Via::Session { id_hash, .. } = &principal.via else {
        return Err(AppError::BadRequest(
            "an API token has no session to end: an administrator revokes tokens".into(),
        ));
    };
    let mut tx = state.pool.begin().await?;
    super::revoke::notify(&mut tx, super::revoke::Revoked::Session(id_hash.clone())).await?;
    tx.commit().await?;
    current
        .flush()
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
    audit::record(
        &state.pool,
        &principal.actor(),
        action::SIGNOUT,
        Some(&principal.name),
        &[],
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/api/me", tag = "session",
    summary = "Who am I",
    description = "The signed-in user or API token: name, role and whether the password must be changed first.",
    responses((status = 200, description = "The caller", body = trackside_wire::Me))
)]
async fn me(State(state): State<AppState>, principal: Principal) -> Result<Json<Me>, AppError> {
    let user = users::by_id(&state.pool, principal.user_id)
        .await?
        .ok_or_else(|| AppError::Unauthorized("this account no longer exists".into()))?;
    let ends = match &principal.via {
        Via::Session { ends_at, .. } => Some(ends_at.timestamp_millis()),
        Via::Token { .. } => None,
    };
    let mut me = signin::me(&state.auth, &user, ends);
    // A token may hold less than its user's role.
    me.role = principal.role;
    Ok(Json(me))
}

#[utoipa::path(
    post, path = "/api/me/password", tag = "session",
    summary = "Change my password",
    request_body = trackside_wire::PasswordChange,
    responses(
        (status = 200, description = "Changed; other sessions of this user are ended", body = trackside_wire::Me),
        (status = 400, description = "The new password is too short, too long or the body is malformed", body = trackside_wire::ApiError),
    )
)]
async fn change_own_password(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<PasswordChange>, JsonRejection>,
) -> Result<Json<Me>, AppError> {
    let request = body(request, r#"{"current": "...", "new": "..."}"#)?;
    let Via::Session { id_hash, ends_at } = &principal.via else {
        return Err(AppError::BadRequest(
            "sign in with your password to change it (not with an API token)".into(),
        ));
    };
    password::check_new(&request.new).map_err(AppError::BadRequest)?;
    if request.new == request.current {
        return Err(AppError::BadRequest(
            "the new password must differ from the current one".into(),
        ));
    }
    // The current password proves it is the person, not someone at an
    // unattended screen; a wrong one counts as a failed sign-in.
    let user = signin::check_password(
        &state.auth,
        &principal.name,
        &request.current,
        principal.address,
    )
    .await
    .map_err(|e| match e {
        AppError::Unauthorized(_) => AppError::Forbidden("the current password is wrong".into()),
        other => other,
    })?;
    let hash = state.auth.hasher.hash(&request.new).await.map_err(busy)?;
    users::set_own_password(&state.pool, user.id, &hash, id_hash).await?;
    audit::record(
        &state.pool,
        &principal.actor(),
        action::USER_PASSWORD,
        Some(&user.name),
        &[("by", "themselves")],
    )
    .await;
    let user = users::by_id(&state.pool, user.id).await?.unwrap_or(user);
    Ok(Json(signin::me(
        &state.auth,
        &user,
        Some(ends_at.timestamp_millis()),
    )))
}

#[utoipa::path(
    get, path = "/api/users", tag = "users",
    summary = "List users",
    responses((status = 200, description = "Every user", body = Vec<trackside_wire::UserInfo>))
)]
async fn list_users(State(state): State<AppState>) -> Result<Json<Vec<UserInfo>>, AppError> {
    Ok(Json(users::list(&state.pool).await?))
}

#[utoipa::path(
    post, path = "/api/users", tag = "users",
    summary = "Add a user",
    description = "Creates a user with a role; the answer carries a one-time sign-in link or password, shown once. Audited.",
    request_body = trackside_wire::NewUser,
    responses(
        (status = 201, description = "Created", body = trackside_wire::IssuedPassword),
        (status = 400, description = "The name or role is not valid", body = trackside_wire::ApiError),
        (status = 409, description = "A user of that name exists", body = trackside_wire::ApiError),
    )
)]
async fn add_user(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<IssuedPassword>), AppError> {
    let request = body(
        request,
        r#"{"name": "...", "role": "viewer|operator|admin"}"#,
    )?;
    users::check_name(&request.name).map_err(AppError::BadRequest)?;
    users::check_role(request.role).map_err(AppError::BadRequest)?;
    let (password, issued) = match request.password {
        Some(password) => {
            password::check_new(&password).map_err(AppError::BadRequest)?;
            (password, false)
        }
        None => (users::one_time_password(), true),
    };
    let hash = state.auth.hasher.hash(&password).await.map_err(busy)?;
    // Set by an admin either way: the user chooses their own at first sign-in.
    let user = match users::add(&state.pool, &request.name, request.role, &hash, false).await {
        Ok(user) => user,
        Err(AddError::Invalid(message)) => return Err(AppError::BadRequest(message)),
        Err(AddError::Exists) => {
            return Err(AppError::Conflict(format!(
                "a user named {:?} exists (names are unique whatever their case)",
                request.name
            )));
        }
        Err(AddError::Database(err)) => return Err(err.into()),
    };
    audit::record(
        &state.pool,
        &principal.actor(),
        action::USER_CREATE,
        Some(&user.name),
        &[("role", user.role().as_str())],
    )
    .await;
    let info = users::info(&state.pool, &user.name)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("new user not listed")))?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedPassword {
            user: info,
            password: issued.then_some(password),
        }),
    ))
}

#[utoipa::path(
    patch, path = "/api/users/{name}", tag = "users",
    summary = "Change a user",
    description = "Changes a user's role, disables or enables the account, or resets the password. Audited.",
    params(("name" = String, Path, description = "The user's name")),
    request_body = trackside_wire::UserChange,
    responses(
        (status = 200, description = "Changed (with a new sign-in link when the password was reset)", body = trackside_wire::IssuedPassword),
        (status = 400, description = "The change is not valid", body = trackside_wire::ApiError),
        (status = 404, description = "No such user", body = trackside_wire::ApiError),
        (status = 409, description = "The change would leave no enabled admin", body = trackside_wire::ApiError),
    )
)]
async fn change_user(
    State(state): State<AppState>,
    principal: Principal,
    name: Result<Path<String>, PathRejection>,
    request: Result<Json<UserChange>, JsonRejection>,
) -> Result<Json<IssuedPassword>, AppError> {
    let Path(name) = name.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let request = body(
        request,
        r#"{"role": "operator"} or {"disabled": true} or {"reset_password": true}"#,
    )?;
    if request.role.is_none() && request.disabled.is_none() && !request.reset_password {
        return Err(AppError::BadRequest(
            "nothing to change: give role, disabled or reset_password".into(),
        ));
    }
    let user = users::by_name(&state.pool, &name)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no user named {name:?}")))?;
    let password = request.reset_password.then(users::one_time_password);
    let mut change = Change {
        role: request.role,
        disabled: request.disabled,
        password: None,
    };
    if let Some(password) = &password {
        change.password = Some((state.auth.hasher.hash(password).await.map_err(busy)?, false));
    }
    let updated = match users::change(&state.pool, &user, &change).await {
        Ok(updated) => updated,
        Err(ChangeError::Invalid(message)) => return Err(AppError::BadRequest(message)),
        Err(ChangeError::LastAdmin) => {
            return Err(AppError::Conflict(
                "this would leave no enabled admin: make someone else an admin first".into(),
            ));
        }
        Err(ChangeError::Database(err)) => return Err(err.into()),
    };
    record_user_change(
        &state.pool,
        &principal.actor(),
        &user,
        &updated,
        password.is_some(),
    )
    .await;
    let info = users::info(&state.pool, &updated.name)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("changed user not listed")))?;
    Ok(Json(IssuedPassword {
        user: info,
        password,
    }))
}

/// One audit row per thing that changed about a user.
pub async fn record_user_change(
    pool: &sqlx::PgPool,
    actor: &audit::Actor,
    before: &users::User,
    after: &users::User,
    password_reset: bool,
) {
    let target = Some(after.name.as_str());
    if before.role != after.role {
        audit::record(
            pool,
            actor,
            action::USER_ROLE,
            target,
            &[("from", before.role.as_str()), ("to", after.role.as_str())],
        )
        .await;
    }
    match (before.disabled_at.is_some(), after.disabled_at.is_some()) {
        (false, true) => audit::record(pool, actor, action::USER_DISABLE, target, &[]).await,
        (true, false) => audit::record(pool, actor, action::USER_ENABLE, target, &[]).await,
        _ => {}
    }
    if password_reset {
        audit::record(
            pool,
            actor,
            action::USER_PASSWORD,
            target,
            &[("by", "reset")],
        )
        .await;
    }
}

#[utoipa::path(
    get, path = "/api/tokens", tag = "tokens",
    summary = "List API tokens",
    responses((status = 200, description = "Every token (never its secret)", body = Vec<trackside_wire::TokenInfo>))
)]
async fn list_tokens(State(state): State<AppState>) -> Result<Json<Vec<TokenInfo>>, AppError> {
    Ok(Json(tokens::list(&state.pool).await?))
}

#[utoipa::path(
    post, path = "/api/tokens", tag = "tokens",
    summary = "Issue an API token",
    description = "A bearer token for scripts and scrapes, acting with its own role. The secret is in this answer only. Audited.",
    request_body = trackside_wire::NewToken,
    responses(
        (status = 201, description = "Issued", body = trackside_wire::IssuedToken),
        (status = 400, description = "The request is not valid", body = trackside_wire::ApiError),
        (status = 404, description = "No such user", body = trackside_wire::ApiError),
    )
)]
async fn issue_token(
    State(state): State<AppState>,
    principal: Principal,
    request: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<IssuedToken>), AppError> {
    let request = body(
        request,
        r#"{"user": "...", "name": "prometheus", "role": "metrics", "days": 365}"#,
    )?;
    let user = users::by_name(&state.pool, &request.user)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no user named {:?}", request.user)))?;
    let (token, info) = tokens::issue(
        &state.pool,
        &user,
        &request.name,
        request.role,
        request.days,
    )
    .await
    .map_err(AppError::BadRequest)?;
    let id = info.id.to_string();
    audit::record(
        &state.pool,
        &principal.actor(),
        action::TOKEN_CREATE,
        Some(&id),
        &[
            ("user", &info.user),
            ("name", &info.name),
            ("role", info.role.as_str()),
            ("days", &request.days.to_string()),
        ],
    )
    .await;
    Ok((StatusCode::CREATED, Json(IssuedToken { token, info })))
}

#[utoipa::path(
    delete, path = "/api/tokens/{id}", tag = "tokens",
    summary = "Revoke an API token",
    params(("id" = i64, Path, description = "The token's id")),
    responses(
        (status = 200, description = "Revoked", body = trackside_wire::TokenInfo),
        (status = 404, description = "No such token", body = trackside_wire::ApiError),
        (status = 409, description = "Already revoked", body = trackside_wire::ApiError),
    )
)]
async fn revoke_token(
    State(state): State<AppState>,
    principal: Principal,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<TokenInfo>, AppError> {
    let Path(id) = id.map_err(|_| AppError::BadRequest("a token id is a whole number".into()))?;
    let info = tokens::get(&state.pool, id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no API token {id}")))?;
    if !tokens::revoke(&state.pool, id).await? {
        return Err(AppError::Conflict(format!(
            "API token {id} is already revoked"
        )));
    }
    audit::record(
        &state.pool,
        &principal.actor(),
        action::TOKEN_REVOKE,
        Some(&id.to_string()),
        &[("user", &info.user), ("name", &info.name)],
    )
    .await;
    let info = tokens::get(&state.pool, id).await?.unwrap_or(info);
    Ok(Json(info))
}
