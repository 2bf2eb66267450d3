//! One error type for every handler: user errors are a 4xx with a message
//! the user can act on, and they are not logged as failures; anything else
//! is a 500 whose detail goes to the log, once, and never to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use trackside_wire::ApiError;

#[derive(Debug)]
pub enum AppError {
    BadRequest(String),
    /// Not signed in, or the session or token has ended: sign in (again).
    Unauthorized(String),
    /// Signed in, but the role (or the origin) does not allow it.
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    Unavailable(String),
    /// Too many attempts: try again after this many seconds.
    TooManyRequests(String, u64),
    Internal(anyhow::Error),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            AppError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            AppError::Unauthorized(message) => {
                let mut response =
                    (StatusCode::UNAUTHORIZED, Json(ApiError { error: message })).into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"trackside\""),
                );
                return response;
            }
            AppError::Forbidden(message) => (StatusCode::FORBIDDEN, message),
            AppError::TooManyRequests(message, retry_after) => {
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(ApiError { error: message }),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                return response;
            }
            AppError::NotFound(message) => (StatusCode::NOT_FOUND, message),
            AppError::Conflict(message) => (StatusCode::CONFLICT, message),
            AppError::Unavailable(message) => (StatusCode::SERVICE_UNAVAILABLE, message),
            AppError::Internal(err) => {
                tracing::error!("request failed: {err:#}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; the server log has the details".to_owned(),
                )
            }
        };
        (status, Json(ApiError { error: message })).into_response()
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        Self::Internal(err.into())
    }
}

impl From<anyhow::Error> for AppError {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(err)
    }
}
