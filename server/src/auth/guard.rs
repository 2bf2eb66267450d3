//! The one gate every route passes: find the route's rule, check the
//! browser's origin, find out who is asking, and compare their role.
//!
//! Order matters. The rule comes first, so a route without one is refused
//! before anything runs. The origin comes before the session, so a forged
//! request from another site learns nothing, not even whether a session
//! exists. Public routes (the sign-in, health probes) cost no database
//! work beyond their own.

use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use tower_sessions::{Expiry, Session};

use super::rules::{self, Need};
use super::sessions::{AUTH_KEY, SessionAuth, id_hash};
use super::{Auth, ClientAddress, Principal, Via, address, cookie_name, tokens, users};
use crate::http::AppError;
use crate::http::tls::Peer;

/// Seen-marks closer together than this are not written: one write a
/// minute per session at most.
const SEEN_RESOLUTION_MS: i64 = 60_000;
/// Longest wait for the database to say who is asking.
const CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

pub async fn guard(State(auth): State<Arc<Auth>>, mut request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let method = request.method().clone();
    let Some(rule) = rules::rule_for(&method, &path) else {
        let allowed = rules::methods_of(&path);
        if !allowed.is_empty() {
            // The path is served, but not with this method.
            return (
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, allowed.join(","))],
            )
                .into_response();
        }
        tracing::error!(%method, path, "refusing a route that has no access rule (add one to auth::rules::RULES)");
        return AppError::Forbidden(format!(
            "{method} {path} has no access rule, so nobody may call it"
        ))
        .into_response();
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.0);
    let client = address::client_address(peer, request.headers(), &auth.trusted_proxies);
    request.extensions_mut().insert(ClientAddress(client));
    let bearer = bearer(request.headers());

    if let Err(refusal) = check_origin(&auth, &method, request.headers(), bearer.is_some()) {
        auth.metrics
            .http_origin_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return refusal.into_response();
    }
    if rule.need == Need::Public {
        return next.run(request).await;
    }
    let scrape = rule.need == Need::Role(trackside_wire::Role::Metrics);
    let session = request.extensions().get::<Session>().cloned();
    let had_cookie = has_cookie(request.headers(), cookie_name(auth.secure_cookie));
    let lookup = async {
        match bearer {
            Some(token) => from_token(&auth, &token, client, scrape).await,
            None => from_session(&auth, session, had_cookie, client).await,
        }
    };
    // A database that does not answer gets a 503 in seconds, not after
    // the pool's half-minute wait for a connection: an operator
    // acknowledging during an outage is told at once.
    let principal = match tokio::time::timeout(CHECK_WAIT, lookup).await {
        Ok(principal) => principal,
        Err(_) => Err(unavailable(anyhow::anyhow!(
            "no answer within {} s",
            CHECK_WAIT.as_secs()
        ))),
    };
    let principal = match principal {
        Ok(principal) => principal,
        Err(refusal) => return refusal.into_response(),
    };
    if principal.password_change_required && rule.need != Need::SignedIn {
        return AppError::Forbidden(
            "choose your own password first: the one you signed in with was issued to you \
             (POST /api/me/password, or the app's prompt)"
                .into(),
        )
        .into_response();
    }
    if !rules::allows(rule.need, principal.role) {
        let Need::Role(needed) = rule.need else {
            unreachable!("only role rules refuse a principal")
        };
        return AppError::Forbidden(format!(
            "{method} {path} needs the {needed} role; {} is signed in as {}",
            principal.name, principal.role
        ))
        .into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// `Authorization: Bearer <token>`, if the request carries one.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn has_cookie(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|pair| pair.trim_start().split('=').next() == Some(name))
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// State-changing requests and WebSocket handshakes must come from a
/// public origin. A browser always sends `Origin` on them; a script with an
/// API token sends none and needs none (a token is not sent by a browser
/// on its own, so it cannot be forged into a request).
fn check_origin(
    auth: &Auth,
    method: &Method,
    headers: &HeaderMap,
    token: bool,
) -> Result<(), AppError> {
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if safe && !is_websocket(headers) {
        return Ok(());
    }
    match headers
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or(""))
    {
        Some(origin) if auth.origins.allows(origin) => Ok(()),
        Some(origin) => Err(AppError::Forbidden(format!(
            "requests from {origin} are refused: open Trackside at one of {} \
             (http.public_origins lists the addresses users open it at)",
            auth.origins.list().join(", ")
        ))),
        None if token => Ok(()),
        None if !safe && !has_cookie(headers, cookie_name(auth.secure_cookie)) => Ok(()),
        None => Err(AppError::Forbidden(
            "this request has no Origin header: browsers send one; a script should \
             authenticate with an API token (Authorization: Bearer ...)"
                .into(),
        )),
    }
}

async fn from_token(
    auth: &Auth,
    token: &str,
    client: Option<std::net::IpAddr>,
    scrape: bool,
) -> Result<Principal, AppError> {
    let of = |valid: tokens::Valid| Principal {
        user_id: valid.user.id,
        name: valid.user.name,
        role: valid.role,
        via: Via::Token { id: valid.id },
        password_change_required: false,
        address: client,
    };
    let unknown = || {
        AppError::Unauthorized(
            "the API token is unknown, expired or revoked: ask an administrator for a new one"
                .into(),
        )
    };
    if !scrape {
        let valid = tokens::authenticate(&auth.pool, token)
            .await
            .map_err(unavailable)?;
        return valid.map(of).ok_or_else(unknown);
    }
    // A scrape falls back on the token's last confirmation when the
    // database does not answer in time (tokens::RecentScrapes).
    let check = tokens::authenticate(&auth.pool, token);
    let failure = match tokio::time::timeout(tokens::SCRAPE_CHECK_WAIT, check).await {
        Ok(Ok(valid)) => {
            let principal = valid.map(of);
            auth.scrapes.confirmed(token, principal.as_ref());
            return principal.ok_or_else(unknown);
        }
        Ok(Err(err)) => anyhow::Error::from(err),
        Err(_) => anyhow::anyhow!("no answer within {} s", tokens::SCRAPE_CHECK_WAIT.as_secs()),
    };
    match auth.scrapes.recall(token) {
        Some(principal) => Ok(Principal {
            address: client,
            ..principal
        }),
        None => Err(unavailable(failure)),
    }
}

async fn from_session(
    auth: &Auth,
    session: Option<Session>,
    had_cookie: bool,
    client: Option<std::net::IpAddr>,
) -> Result<Principal, AppError> {
    let not_signed_in = || {
        AppError::Unauthorized(if had_cookie {
            "your session has ended (signed out, timed out, or ended by an administrator): \
             sign in again"
                .into()
        } else {
            "sign in first (POST /api/session), or send an API token \
             (Authorization: Bearer ...)"
                .into()
        })
    };
    let Some(session) = session else {
        return Err(not_signed_in());
    };
    let Some(mut facts) = session
        .get::<SessionAuth>(AUTH_KEY)
        .await
        .map_err(|e| unavailable(anyhow::anyhow!("{e}")))?
    else {
        return Err(not_signed_in());
    };
    let now = Utc::now().timestamp_millis();
    let ends_at = facts.signed_in_at + auth.config.lifetime().num_milliseconds();
    let idle_ms = i64::try_from(auth.config.idle().as_millis()).unwrap_or(i64::MAX);
    let ended = if now >= ends_at {
        Some(format!(
            "your session reached its {} h lifetime: sign in again",
            auth.config.session_lifetime_hours
        ))
    } else if now - facts.seen_at >= idle_ms {
        Some(format!(
            "you were signed out after {} minutes without activity: sign in again",
            auth.config.idle_timeout_minutes
        ))
    } else {
        None
    };
    if let Some(message) = ended {
        let _ = session.flush().await;
        return Err(AppError::Unauthorized(message));
    }
    let user = users::by_id(&auth.pool, facts.user)
        .await
        .map_err(unavailable)?;
    let Some(user) = user.filter(|u| u.disabled_at.is_none()) else {
        let _ = session.flush().await;
        return Err(AppError::Unauthorized(
            "this account is disabled: ask an administrator".into(),
        ));
    };
    let ends = DateTime::from_timestamp_millis(ends_at).unwrap_or_default();
    // Marking the session seen writes it (and sends the cookie again):
    // once a minute at most, not on every request.
    if now - facts.seen_at >= SEEN_RESOLUTION_MS {
        // The cookie lives as long as the session may; the idle timeout is
        // the server's to enforce.
        session.set_expiry(Some(Expiry::AtDateTime(to_offset(ends))));
        facts.seen_at = now;
        session
            .insert(AUTH_KEY, facts)
            .await
            .map_err(|e| unavailable(anyhow::anyhow!("{e}")))?;
    }
    let Some(id) = session.id() else {
        return Err(not_signed_in());
    };
    Ok(Principal {
        user_id: user.id,
        name: user.name.clone(),
        role: user.role(),
        via: Via::Session {
            id_hash: id_hash(&id),
            ends_at: ends,
        },
        password_change_required: user.password_change_required,
        address: client,
    })
}

pub(crate) fn to_offset(at: DateTime<Utc>) -> tower_sessions::cookie::time::OffsetDateTime {
    tower_sessions::cookie::time::OffsetDateTime::from_unix_timestamp(at.timestamp())
        .unwrap_or(tower_sessions::cookie::time::OffsetDateTime::UNIX_EPOCH)
}

fn unavailable(err: impl Into<anyhow::Error>) -> AppError {
    let err = err.into();
    tracing::warn!("cannot check a session or token: {err:#}");
    AppError::Unavailable(
        "cannot check your sign-in right now (the database is not answering): try again shortly"
            .into(),
    )
}

/// The Content-Security-Policy the app runs under: its own files only, the
/// WebAssembly module compiled from them, no inline script, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The API reference page's (api.html) policy: the app's, but its renderer
/// (RapiDoc) writes inline styles, which cannot run script; the page shows
/// only the server's own description, no data. Set by the page's own
/// route; [`security_headers`] keeps a policy already set.
pub const API_PAGE_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers to every answer (the app's files included).
pub async fn security_headers(https: bool, mut response: Response) -> Response {
    let headers = response.headers_mut();
    let mut set = |name: header::HeaderName, value: &'static str| {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    };
    set(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        header::HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=()",
    );
    if https {
        set(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
    response
}
