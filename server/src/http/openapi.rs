//! The API's machine-readable description, OpenAPI 3.1, at
//! `/api/openapi.json`.
//!
//! Integrators generate clients and check their scripts against it, so it
//! must be what the server does, not what someone remembered to write:
//! each operation comes from the `#[utoipa::path]` annotation beside its
//! handler (listed in its area's `Api`), each body from the derive on its
//! wire type, and who may call it is not written twice: the security and
//! the role of every operation are filled in here from
//! [`crate::auth::rules::RULES`]. The integration tests hold the document
//! against the router (every route described) and validate real answers
//! against its schemas.
//!
//! Adding a route: annotate its handler with `#[utoipa::path(...)]`, name
//! the handler in its area's `Api` `paths(...)`, and give it its rule.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::OpenApi as _;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Content, OpenApi, Ref};

use super::AppState;
use crate::auth::rules::{Need, rule_for};

/// The extension on every operation that names what it needs: `public`,
/// `signed-in`, or the least role (`metrics`, `viewer`, `operator`,
/// `admin`).
pub const ROLE_EXTENSION: &str = "x-trackside-role";

pub fn router() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(openapi_json))
}

/// Built once: it depends on nothing but the code.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"the description did not serialise: {e}\"}}"))
});

#[utoipa::path(
    get, path = "/api/openapi.json", tag = "meta",
    summary = "This description",
    description = "The HTTP API as OpenAPI 3.1, generated from the server's code. The app's Help menu shows it for reading.",
    responses((status = 200, description = "The description", content_type = "application/json"))
)]
async fn openapi_json() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT.as_str(),
    )
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Trackside HTTP API",
        description = "Readings, alarms (exceptions), the yard diagram, circuit health and administration of a Trackside server.\n\n\
            **Signing in.** People sign in with `POST /api/session` and send the session cookie it sets; \
            a state-changing request with the cookie must also carry the app's own `Origin`. \
            Scripts and scrapes send an API token (`Authorization: Bearer ...`, issued by an admin with `POST /api/tokens`). \
            Every operation says which role it needs in its description and in `x-trackside-role`: \
            roles rank `metrics` < `viewer` < `operator` < `admin`.\n\n\
            **Errors.** Every 4xx and 5xx answer is JSON, `{\"error\": \"...\"}` (schema `ApiError`), and says what to do.\n\n\
            **Times** are Unix milliseconds (UTC) in bodies; query parameters also take RFC 3339."
    ),
    paths(openapi_json),
    components(schemas(trackside_wire::ApiError, trackside_wire::ClientMessage))
)]
struct Base;

/// The whole description: every area's routes, with security and roles
/// from the rules.
pub fn document() -> OpenApi {
    let mut doc = Base::openapi();
    for part in [
        crate::auth::http::Api::openapi(),
        crate::audit::http::Api::openapi(),
        crate::ingest::http::Api::openapi(),
        crate::live::http::Api::openapi(),
        crate::exceptions::http::Api::openapi(),
        crate::exceptions::maintenance::Api::openapi(),
        crate::exceptions::shelving::Api::openapi(),
        crate::exceptions::flood::http::Api::openapi(),
        crate::exceptions::notify::routes::Api::openapi(),
        crate::history::Api::openapi(),
        crate::export::Api::openapi(),
        crate::forecast::http::Api::openapi(),
        crate::yard::Api::openapi(),
        crate::health::Api::openapi(),
        super::health::Api::openapi(),
    ] {
        doc.merge(part);
    }
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "session",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            crate::auth::cookie_name(false),
            "The session cookie set by `POST /api/session` (named `__Host-trackside` when the server runs HTTPS).",
        ))),
    );
    components.add_security_scheme(
        "token",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    doc.security = Some(vec![
        SecurityRequirement::new("session", Vec::<String>::new()),
        SecurityRequirement::new("token", Vec::<String>::new()),
    ]);
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, operation) in [
            (HttpMethod::Get, &mut item.get),
            (HttpMethod::Post, &mut item.post),
            (HttpMethod::Put, &mut item.put),
            (HttpMethod::Patch, &mut item.patch),
            (HttpMethod::Delete, &mut item.delete),
        ] {
            if let Some(operation) = operation {
                apply_rule(path, method, operation);
            }
        }
    }
    doc
}

/// Says what the operation needs, from its rule; an operation without a
/// rule is left alone (the guard refuses it, and the coverage test fails).
fn apply_rule(path: &str, method: HttpMethod, operation: &mut Operation) {
    let method = match method {
        HttpMethod::Get => axum::http::Method::GET,
        HttpMethod::Post => axum::http::Method::POST,
        HttpMethod::Put => axum::http::Method::PUT,
        HttpMethod::Patch => axum::http::Method::PATCH,
        HttpMethod::Delete => axum::http::Method::DELETE,
        _ => return,
    };
    let Some(rule) = rule_for(&method, path) else {
        return;
    };
    let (name, needs) = match rule.need {
        Need::Public => ("public".to_owned(), "Anyone: no sign-in needed.".to_owned()),
        Need::SignedIn => (
            "signed-in".to_owned(),
            "Any signed-in user or API token.".to_owned(),
        ),
        Need::Role(role) => (
            role.as_str().to_owned(),
            format!("Role **{role}** or higher (session cookie or API token)."),
        ),
    };
    let description = operation.description.get_or_insert_with(String::new);
    if !description.is_empty() {
        description.push_str("\n\n");
    }
    description.push_str(&format!("Needs: {needs}"));
    operation
        .extensions
        .get_or_insert_with(Extensions::default)
        .merge(
            Extensions::builder()
                .add(ROLE_EXTENSION, serde_json::Value::String(name))
                .build(),
        );
    let error = |text: &str| {
        ResponseBuilder::new()
            .description(text)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ApiError"))),
            )
            .build()
    };
    let responses = &mut operation.responses.responses;
    match rule.need {
        Need::Public => operation.security = Some(Vec::new()),
        Need::SignedIn | Need::Role(_) => {
            responses.entry("401".to_owned()).or_insert_with(|| {
                error("Not signed in, or the session or token has ended: sign in again").into()
            });
        }
    }
    if let Need::Role(_) = rule.need {
        responses.entry("403".to_owned()).or_insert_with(|| {
            error("The role does not allow it, or the request's Origin is not the app's").into()
        });
    }
    responses
        .entry("500".to_owned())
        .or_insert_with(|| error("Internal error; the server log has the details").into());
}
