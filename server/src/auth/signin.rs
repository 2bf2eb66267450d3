//! Signing in: throttled password checks, one-time links, and the start of
//! a session.
//!
//! Every failure is a row in the audit trail, and the throttle counts those
//! rows, so it holds across restarts and across instances: per account
//! (someone guessing one person's password) and per address (someone trying
//! many accounts). The refusal says when to try again; an administrator
//! can always reset a password from the console.

use std::net::IpAddr;

use chrono::Utc;
use tower_sessions::{Expiry, Session};
use trackside_wire::Me;

use super::guard::to_offset;
use super::password::Busy;
use super::sessions::{AUTH_KEY, SessionAuth};
use super::users::{self, User};
use super::{Auth, tokens};
use crate::audit::{self, Actor, action};
use crate::http::AppError;

/// Checks a name and password, recording a failure and refusing while
/// either the account or the address is throttled.
pub async fn check_password(
    auth: &Auth,
    name: &str,
    password: &str,
    address: Option<IpAddr>,
) -> Result<User, AppError> {
    let account = name.trim().to_lowercase();
    let fail = |reason: &'static str| {
        let account = account.clone();
        async move {
            auth.metrics
                .signin_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            audit::record(
                &auth.pool,
                &Actor::anonymous(address),
                action::SIGNIN_FAILED,
                Some(&account),
                &[("reason", reason)],
            )
            .await;
        }
    };
    let window = auth.config.throttle_window_minutes;
    let since = Utc::now() - chrono::TimeDelta::minutes(window as i64);
    let (for_account, for_address) = audit::recent_failures(&auth.pool, &account, address, since)
        .await
        .map_err(AppError::from)?;
    if for_account >= i64::from(auth.config.max_failures_per_account)
        || for_address >= i64::from(auth.config.max_failures_per_address)
    {
        fail("throttled").await;
        let whom = if for_account >= i64::from(auth.config.max_failures_per_account) {
            format!("for {name:?}")
        } else {
            "from this address".to_owned()
        };
        return Err(AppError::TooManyRequests(
            format!(
                "too many failed sign-ins {whom} in the last {window} minutes: wait, then try \
                 again, or ask an administrator to reset the password"
            ),
            window * 60,
        ));
    }
    let user = users::by_name(&auth.pool, name.trim()).await?;
    let matches = auth
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
        .await
        .map_err(busy)?;
    match user {
        Some(user) if matches && user.disabled_at.is_none() => Ok(user),
        Some(_) if matches => {
            fail("disabled").await;
            Err(AppError::Forbidden(
                "this account is disabled: ask an administrator".into(),
            ))
        }
        Some(_) => {
            fail("wrong password").await;
            Err(wrong())
        }
        None => {
            fail("unknown user").await;
            Err(wrong())
        }
    }
}

fn wrong() -> AppError {
    AppError::Unauthorized("wrong name or password".into())
}

pub fn busy(err: Busy) -> AppError {
    match err {
        Busy::Overloaded => AppError::Unavailable(
            "too many sign-ins at this moment: try again in a few seconds".into(),
        ),
        Busy::Failed(err) => AppError::Internal(err),
    }
}

/// Redeems a one-time link, recording a failure under the address.
pub async fn check_link(
    auth: &Auth,
    token: &str,
    address: Option<IpAddr>,
) -> Result<User, AppError> {
    let since = Utc::now() - chrono::TimeDelta::minutes(auth.config.throttle_window_minutes as i64);
    let (_, for_address) = audit::recent_failures(&auth.pool, "", address, since).await?;
    if for_address >= i64::from(auth.config.max_failures_per_address) {
        return Err(AppError::TooManyRequests(
            "too many failed sign-ins from this address: wait, then try again".into(),
            auth.config.throttle_window_minutes * 60,
        ));
    }
    let user = match tokens::redeem_link(&auth.pool, token.trim()).await? {
        Some(id) => users::by_id(&auth.pool, id).await?,
        None => None,
    };
    match user.filter(|u| u.disabled_at.is_none()) {
        Some(user) => Ok(user),
        None => {
            audit::record(
                &auth.pool,
                &Actor::anonymous(address),
                action::SIGNIN_FAILED,
                None,
                &[("reason", "invalid, used or expired sign-in link")],
            )
            .await;
            Err(AppError::Unauthorized(
                "this sign-in link has expired or was already used: sign in with your name and \
                 password (the server prints the demo's at start)"
                    .into(),
            ))
        }
    }
}

/// Starts a session for `user` on this request: a fresh session id (the
/// old one, if any, is deleted, so a planted id is worthless), the facts
/// the guard checks, and an audit row.
pub async fn start_session(
    auth: &Auth,
    session: &Session,
    user: &User,
    address: Option<IpAddr>,
    method: &str,
) -> Result<Me, AppError> {
    let store_error =
        |e: tower_sessions::session::Error| AppError::Internal(anyhow::anyhow!("{e}"));
    session.cycle_id().await.map_err(store_error)?;
    let now = Utc::now();
    let ends_at = now + auth.config.lifetime();
    session.set_expiry(Some(Expiry::AtDateTime(to_offset(ends_at))));
    session
        .insert(
            AUTH_KEY,
            SessionAuth {
                user: user.id,
                signed_in_at: now.timestamp_millis(),
                seen_at: now.timestamp_millis(),
            },
        )
        .await
        .map_err(store_error)?;
    // Saved now rather than after the response, so the answer's cookie
    // names a session that exists.
    session.save().await.map_err(store_error)?;
    audit::record(
        &auth.pool,
        &Actor::user(&user.name, user.role(), address),
        action::SIGNIN,
        Some(&user.name),
        &[("method", method)],
    )
    .await;
    Ok(me(auth, user, Some(ends_at.timestamp_millis())))
}

pub fn me(auth: &Auth, user: &User, session_ends_at: Option<i64>) -> Me {
    Me {
        name: user.name.clone(),
        role: user.role(),
        password_change_required: user.password_change_required,
        session_ends_at,
        idle_timeout_minutes: session_ends_at.map(|_| auth.config.idle_timeout_minutes),
    }
}
