//! The HTTP surface: the JSON API, the live WebSocket, health, metrics, and
//! the operator app's files, all from one router.
//!
//! Each area owns its routes (`live::http`, `history`, `export`,
//! `exceptions::http`, `forecast::http`, `yard`) and this module merges them; the
//! handlers import [`AppState`] and [`AppError`] from here, the one circle
//! in the module graph, as in any axum application.

mod error;
mod health;
pub mod openapi;
mod state;
pub mod tls;

use std::path::Path;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{from_fn_with_state, map_response};
use axum::routing::get;
use tower_http::compression::CompressionLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::{SetResponseHeader, SetResponseHeaderLayer};
use tower_http::trace::TraceLayer;

pub use error::AppError;
pub use state::AppState;

use crate::auth::guard::{guard, security_headers};
use crate::auth::sessions::PgSessionStore;

/// Every route of every area, before the guard, the layers and the state:
/// what the access rules are held against (tests read its routes).
pub fn routes() -> Router<AppState> {
    let api = Router::new()
        .merge(crate::auth::http::router())
        .merge(crate::audit::http::router())
        .merge(crate::ingest::http::router())
        .merge(crate::live::http::router())
        .merge(crate::exceptions::http::router())
        .merge(crate::exceptions::maintenance::router())
        .merge(crate::exceptions::shelving::router())
        .merge(crate::exceptions::flood::http::router())
        .merge(crate::exceptions::notify::routes::router())
        .merge(crate::history::router())
        .merge(crate::export::router())
        .merge(crate::forecast::http::router())
        .merge(crate::yard::router())
        .merge(crate::health::router())
        .merge(openapi::router())
        .route("/api/{*rest}", get(unknown_api))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    Router::new().merge(api).merge(health::router())
}

/// Every route, behind the access guard. Each route needs a rule in
/// `auth::rules::RULES`; the guard refuses one without.
pub fn router(state: AppState, assets_dir: &Path) -> Router {
    let auth = state.auth.clone();
    let sessions = tower_sessions::SessionManagerLayer::new(PgSessionStore::new(
        state.pool.clone(),
        auth.config.idle(),
    ))
    .with_name(crate::auth::cookie_name(auth.secure_cookie))
    .with_secure(auth.secure_cookie)
    .with_http_only(true)
    .with_same_site(tower_sessions::cookie::SameSite::Strict)
    .with_path("/")
    .with_expiry(tower_sessions::Expiry::OnInactivity(
        tower_sessions::cookie::time::Duration::seconds(
            i64::try_from(auth.config.idle().as_secs()).unwrap_or(i64::MAX),
        ),
    ));
    let https = auth.https;
    routes()
        .route_layer(from_fn_with_state(auth, guard))
        .fallback_service(app_files(assets_dir))
        .layer(sessions)
        .layer(map_response(move |response| {
            security_headers(https, response)
        }))
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
            .route_service(
                "/api.html",
                SetResponseHeader::overriding(
                    ServeFile::new(assets_dir.join("api.html")),
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(crate::auth::guard::API_PAGE_SECURITY_POLICY),
                ),
            )
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

async fn unknown_api() -> AppError {
    AppError::BadRequest(
        "no such API endpoint: see /api/openapi.json (or Help → API in the app) and docs/api.md"
            .into(),
    )
}
