//! The HTTP surface: the JSON API, the live WebSocket, health, metrics, and
//! the operator app's files, all from one router.
//!
//! Each area owns its routes (`live::http`, `history`, `export`,
//! `exceptions::http`, `forecast::http`, `yard`) and this module merges them; the
//! handlers import [`AppState`] and [`AppError`] from here, the one circle
//! in the module graph, as in any axum application.

mod error;
mod health;
mod state;

use std::path::Path;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::routing::get;
use tower_http::compression::CompressionLayer;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use error::AppError;
pub use state::AppState;

pub fn router(state: AppState, assets_dir: &Path) -> Router {
    let api = Router::new()
        .merge(crate::live::http::router())
        .merge(crate::exceptions::http::router())
        .merge(crate::history::router())
        .merge(crate::export::router())
        .merge(crate::forecast::http::router())
        .merge(crate::yard::router())
        .route("/api/{*rest}", get(unknown_api))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    Router::new()
        .merge(api)
        .merge(health::router())
        .fallback_service(app_files(assets_dir))
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
    AppError::BadRequest("no such API endpoint: see docs/api.md".into())
}
