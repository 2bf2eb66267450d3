//! Who is asking, and may they: accounts, sessions, API tokens, roles, and
//! the browser protections around them.
//!
//! A control-room system that anyone on the network can drive fails any
//! railway security review: an acknowledgement must name the person who
//! made it, only trusted people may replace the forecasting model or let
//! a gateway in, and no other web page an operator opens may act with
//! their session. So every request passes one guard ([`guard`]) that
//! resolves a [`Principal`] (a browser session, or an API token) and
//! checks its role against the route's rule ([`rules`]), a single table
//! that a test holds against the router. The server enforces roles; the
//! app only hides what a role cannot use.
//!
//! Sessions are tower-sessions' with their records in PostgreSQL
//! ([`sessions`]), so several instances share them. Ending sessions
//! (disable, role or password change, token revoked, sign-out) goes to
//! every instance at once through PostgreSQL notifications ([`revoke`]),
//! which also closes the affected live feeds ([`watch`]).

pub mod address;
pub mod guard;
pub mod http;
pub mod origin;
pub mod password;
pub mod revoke;
pub mod rules;
pub mod sessions;
pub mod signin;
pub mod tokens;
pub mod users;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use trackside_wire::Role;

use crate::audit::Actor;
use crate::metrics::Metrics;

/// `[auth]` in the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// A session with no request for this long ends. An open live feed
    /// counts as activity, so a board on a control-room screen stays
    /// signed in; a closed or forgotten browser does not.
    pub idle_timeout_minutes: u64,
    /// A session ends this long after its sign-in, however active: a shift.
    pub session_lifetime_hours: u64,
    /// Failed sign-ins per account within `throttle_window_minutes` before
    /// further attempts for it are refused until the window has passed.
    pub max_failures_per_account: u32,
    /// The same per client address (many accounts tried from one place).
    pub max_failures_per_address: u32,
    pub throttle_window_minutes: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            idle_timeout_minutes: 120,
            session_lifetime_hours: 12,
            max_failures_per_account: 5,
            max_failures_per_address: 20,
            throttle_window_minutes: 15,
        }
    }
}

impl AuthConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=7 * 24 * 60).contains(&self.idle_timeout_minutes),
            "auth.idle_timeout_minutes must be between 1 and 10080 (a week)"
        );
        anyhow::ensure!(
            (1..=24 * 90).contains(&self.session_lifetime_hours),
            "auth.session_lifetime_hours must be between 1 and 2160 (90 days)"
        );
        anyhow::ensure!(
            self.max_failures_per_account >= 1 && self.max_failures_per_address >= 1,
            "auth.max_failures_per_account and max_failures_per_address must be at least 1"
        );
        anyhow::ensure!(
            (1..=24 * 60).contains(&self.throttle_window_minutes),
            "auth.throttle_window_minutes must be between 1 and 1440"
        );
        Ok(())
    }

    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_minutes * 60)
    }

    pub fn lifetime(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::hours(self.session_lifetime_hours as i64)
    }
}

/// What the guard and the sign-in handlers share.
pub struct Auth {
    pub config: AuthConfig,
    pub pool: PgPool,
    pub origins: origin::Origins,
    pub trusted_proxies: Vec<address::IpRange>,
    pub hasher: password::Hasher,
    pub revocations: revoke::Revocations,
    /// Scrape tokens confirmed lately: `/metrics` through an outage.
    pub scrapes: tokens::RecentScrapes,
    pub metrics: Arc<Metrics>,
    /// The session cookie is `Secure` (and named `__Host-…`).
    pub secure_cookie: bool,
    /// Trackside serves HTTPS itself (and sends HSTS).
    pub https: bool,
}

/// The session cookie's name: with the `__Host-` prefix where it is
/// `Secure`, so that no sibling host or plain-HTTP page can set it.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-trackside"
    } else {
        "trackside"
    }
}

impl Auth {
    /// Starts the notification listener and the clean-up of expired
    /// sessions and links.
    pub fn start(self: &Arc<Self>, shutdown: CancellationToken) {
        tokio::spawn(
            self.revocations
                .clone()
                .listen(self.pool.clone(), shutdown.clone()),
        );
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(600));
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = every.tick() => {}
                }
                if let Err(err) = sessions::delete_expired(&pool).await {
                    tracing::warn!("cannot delete expired sessions: {err}");
                }
                if let Err(err) = tokens::delete_old_links(&pool).await {
                    tracing::warn!("cannot delete old sign-in links: {err}");
                }
            }
        });
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A browser session: the hash of its id, and when it must end at the
    /// latest.
    Session {
        id_hash: Vec<u8>,
        ends_at: DateTime<Utc>,
    },
    /// An API token.
    Token { id: i64 },
}

/// Who is asking: put in every guarded request's extensions by the guard.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: i64,
    pub name: String,
    /// What they may do now: the user's role, or the lower of a token's
    /// and its user's.
    pub role: Role,
    pub via: Via,
    pub password_change_required: bool,
    pub address: Option<IpAddr>,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor::user(&self.name, self.role, self.address)
    }
}

/// The client's address (see [`address`]), in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Principal {
    type Rejection = crate::http::AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            crate::http::AppError::Internal(anyhow::anyhow!(
                "a handler needs a principal but its route's rule is public"
            ))
        })
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientAddress>()
            .copied()
            .unwrap_or(ClientAddress(None)))
    }
}

/// Resolves when the principal's session or token has ended, with the
/// reason: a live feed waits on this beside its readings. It wakes on
/// every notification that concerns the principal, and checks once a
/// minute anyway (a missed notification, an idle or absolute timeout),
/// marking the session seen: an open feed is activity.
pub async fn watch(auth: Arc<Auth>, principal: Principal) -> String {
    let mut events = auth.revocations.subscribe();
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(60),
        Duration::from_secs(60),
    );
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) if concerns(&event, &principal) => {
                    return match &event {
                        revoke::Revoked::Session(_) => "signed out".to_owned(),
                        revoke::Revoked::Token(_) => "the API token was revoked".to_owned(),
                        _ => "an administrator changed or disabled this account: sign in again".to_owned(),
                    };
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    std::future::pending::<()>().await;
                }
            },
            _ = every.tick() => {}
        }
        if let Some(reason) = still_valid(&auth, &principal).await {
            return reason;
        }
    }
}

fn concerns(event: &revoke::Revoked, principal: &Principal) -> bool {
    use revoke::Revoked;
    match (event, &principal.via) {
        (Revoked::User(user), _) => *user == principal.user_id,
        (Revoked::UserExcept(user, keep), Via::Session { id_hash, .. }) => {
            *user == principal.user_id && keep != id_hash
        }
        (Revoked::UserExcept(..), Via::Token { .. }) => false,
        (Revoked::Session(hash), Via::Session { id_hash, .. }) => hash == id_hash,
        (Revoked::Token(id), Via::Token { id: mine }) => id == mine,
        _ => false,
    }
}

/// `None` while the principal may go on; else why not. Marks a session
/// seen.
async fn still_valid(auth: &Auth, principal: &Principal) -> Option<String> {
    let user = match &principal.via {
        Via::Session { id_hash, ends_at } => {
            if Utc::now() >= *ends_at {
                return Some("the session reached its lifetime: sign in again".into());
            }
            match sessions::touch(&auth.pool, id_hash, auth.config.idle(), *ends_at).await {
                Ok(Some(user)) => user,
                Ok(None) => return Some("the session has ended: sign in again".into()),
                // A database outage must not close every screen's feed.
                Err(_) => return None,
            }
        }
        Via::Token { id } => match tokens::still_valid(&auth.pool, *id).await {
            Ok(true) => principal.user_id,
            Ok(false) => return Some("the API token expired or was revoked".into()),
            Err(_) => return None,
        },
    };
    match users::by_id(&auth.pool, user).await {
        Ok(Some(u)) if u.disabled_at.is_some() => Some("this account was disabled".into()),
        Ok(Some(u)) if u.role() < principal.role => {
            Some("this account's role was changed: sign in again".into())
        }
        Ok(Some(_)) => None,
        Ok(None) => Some("this account no longer exists".into()),
        Err(_) => None,
    }
}
