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

/// A JSON body, or a 400 that shows what to send.
fn body<T>(body: Result<Json<T>, JsonRejection>, example: &str) -> Result<T, AppError> {
    body.map(|Json(b)| b)
        .map_err(|e| AppError::BadRequest(format!("{}; send JSON {example}", e.body_text())))
}

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

async fn list_users(State(state): State<AppState>) -> Result<Json<Vec<UserInfo>>, AppError> {
    Ok(Json(users::list(&state.pool).await?))
}

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

async fn list_tokens(State(state): State<AppState>) -> Result<Json<Vec<TokenInfo>>, AppError> {
    Ok(Json(tokens::list(&state.pool).await?))
}

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
