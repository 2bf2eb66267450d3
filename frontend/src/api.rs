//! The HTTP API, as the board uses it, with failures phrased for the person
//! in front of the screen rather than for a developer.

use std::fmt;

use gloo_net::http::{Method, Request, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use trackside_wire::{
    AckRequest, ApiError, AuditEntry, CertificateRequest, ChannelInfo, ChannelOwner,
    ChannelReassigned, ExceptionDetail, ExceptionInfo, FloodInfo, Forecast, ForecastStatus,
    GatewayCertificateFiles, GatewayCredentialInfo, GatewayInfo, GroupAckRequest, GroupAckResult,
    History, IssuedGatewayPassword, IssuedPassword, IssuedToken, Layout, LayoutRejected,
    LinkSignInRequest, MaintenanceWindowInfo, Me, Movements, NewGateway, NewMaintenanceWindow,
    NewShelf, NewToken, NewUser, PasswordChange, PriorityMix, Replay, ShelfInfo, SignInRequest,
    TokenInfo, TrainJob, TrainRequest, UserChange, UserInfo, YardInfo,
};

/// Why a request gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiFailure {
    /// No HTTP answer, or a gateway/proxy answering for a server that is
    /// down: from the screen's side these are the same situation.
    Unreachable,
    /// Trackside answered with its JSON error body.
    Rejected { status: u16, message: String },
    /// An answer that is not Trackside's JSON, as from a static file server
    /// or a captive portal: the page is probably pointed at the wrong host.
    Unexpected { path: &'static str, detail: String },
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable => f.write_str(
                "Trackside server unreachable — retrying. Check that the server is running \
                 and that this screen is on the yard network.",
            ),
            Self::Rejected { status, message } if *status >= 500 => write!(
                f,
                "The Trackside server has a problem ({status}: {message}) — retrying. \
                 If this persists, call the Trackside administrator."
            ),
            Self::Rejected { status, message } => write!(
                f,
                "The Trackside server refused the request ({status}: {message}) — retrying. \
                 If this persists, call the Trackside administrator."
            ),
            Self::Unexpected { path, detail } => write!(
                f,
                "Unexpected answer from {path} ({detail}) — retrying. \
                 Is this screen pointed at the Trackside server?"
            ),
        }
    }
}

impl std::error::Error for ApiFailure {}

pub async fn health() -> Result<trackside_wire::HealthList, ApiFailure> {
    get_json("/api/health").await
}

pub async fn circuit_health(
    circuit: &str,
) -> Result<trackside_wire::CircuitHealthDetail, ApiFailure> {
    get_json_at(
        "/api/health",
        &format!("/api/health/{}?days=30", encode(circuit)),
    )
    .await
}

pub async fn occupations(
    circuit: &str,
    from: i64,
    to: i64,
) -> Result<trackside_wire::Occupations, ApiFailure> {
    get_json_at(
        "/api/occupations",
        &format!(
            "/api/occupations?circuit={}&from={from}&to={to}",
            encode(circuit)
        ),
    )
    .await
}

pub async fn yard() -> Result<YardInfo, ApiFailure> {
    get_json("/api/yard").await
}

pub async fn channels() -> Result<Vec<ChannelInfo>, ApiFailure> {
    get_json("/api/channels").await
}

/// `url` is `/api/exceptions` with its filters.
pub async fn exceptions(url: &str) -> Result<Vec<ExceptionInfo>, ApiFailure> {
    get_json_at("/api/exceptions", url).await
}

/// One exception and every transition, oldest first.
pub async fn exception(id: i64) -> Result<ExceptionDetail, ApiFailure> {
    get_json_at("/api/exceptions/{id}", &format!("/api/exceptions/{id}")).await
}

pub async fn acknowledge(id: i64, request: &AckRequest) -> Result<ExceptionInfo, ApiFailure> {
    let url = format!("/api/exceptions/{id}/ack");
    send(
        Method::POST,
        "/api/exceptions/{id}/ack",
        &url,
        Some(request),
    )
    .await
}

/// The alarm floods that overlap the last `since_ms` (the one on, if any,
/// without an end).
pub async fn floods(from: i64, to: i64) -> Result<Vec<FloodInfo>, ApiFailure> {
    let url = format!("/api/floods?from={from}&to={to}");
    get_json_at("/api/floods", &url).await
}

/// Acknowledges every open, unacknowledged member of a flood group.
pub async fn acknowledge_group(
    flood: i64,
    request: &GroupAckRequest,
) -> Result<GroupAckResult, ApiFailure> {
    let url = format!("/api/floods/{flood}/ack");
    send(Method::POST, "/api/floods/{id}/ack", &url, Some(request)).await
}

/// The shelves that hold, and those that ended in the last day.
pub async fn shelves() -> Result<Vec<ShelfInfo>, ApiFailure> {
    get_json("/api/shelves").await
}

pub async fn shelve(request: &NewShelf) -> Result<ShelfInfo, ApiFailure> {
    send(Method::POST, "/api/shelves", "/api/shelves", Some(request)).await
}

pub async fn unshelve(id: i64) -> Result<ShelfInfo, ApiFailure> {
    let url = format!("/api/shelves/{id}/end");
    send(Method::POST, "/api/shelves/{id}/end", &url, None::<&()>).await
}

/// Maintenance windows planned, active, and ended in the last 7 days.
pub async fn maintenance_windows() -> Result<Vec<MaintenanceWindowInfo>, ApiFailure> {
    get_json("/api/maintenance").await
}

/// The maintenance windows that overlap `from`..`to` (Unix ms).
pub async fn maintenance_between(
    from: i64,
    to: i64,
) -> Result<Vec<MaintenanceWindowInfo>, ApiFailure> {
    let url = format!("/api/maintenance?from={from}&to={to}");
    get_json_at("/api/maintenance", &url).await
}

pub async fn plan_window(
    request: &NewMaintenanceWindow,
) -> Result<MaintenanceWindowInfo, ApiFailure> {
    send(
        Method::POST,
        "/api/maintenance",
        "/api/maintenance",
        Some(request),
    )
    .await
}

pub async fn end_window(id: i64) -> Result<MaintenanceWindowInfo, ApiFailure> {
    let url = format!("/api/maintenance/{id}/end");
    send(Method::POST, "/api/maintenance/{id}/end", &url, None::<&()>).await
}

/// How the exceptions of the last `days` split by priority.
pub async fn priority_mix(days: u32) -> Result<PriorityMix, ApiFailure> {
    let url = format!("/api/exceptions/mix?days={days}");
    get_json_at("/api/exceptions/mix", &url).await
}

/// The yard's layout, or the server's word on why it has none (its 404).
pub async fn layout() -> Result<Result<Layout, String>, ApiFailure> {
    match get_json("/api/layout").await {
        Ok(layout) => Ok(Ok(layout)),
        Err(ApiFailure::Rejected {
            status: 404,
            message,
        }) => Ok(Err(message)),
        Err(failure) => Err(failure),
    }
}

/// The layout file as it is (TOML), or `None` when the yard has none yet.
pub async fn layout_source() -> Result<Option<String>, ApiFailure> {
    let path = "/api/layout/source";
    let response = Request::get(path)
        .send()
        .await
        .map_err(|_| ApiFailure::Unreachable)?;
    if response.status() == 200 {
        return response
            .text()
            .await
            .map(Some)
            .map_err(|_| ApiFailure::Unreachable);
    }
    match read::<()>(path, response, true).await {
        Err(ApiFailure::Rejected { status: 404, .. }) | Ok(()) => Ok(None),
        Err(failure) => Err(failure),
    }
}

/// `PUT /api/layout`: the layout now in force, or the problems the server
/// found with the file (nothing replaced).
pub async fn replace_layout(text: String) -> Result<Result<Layout, LayoutRejected>, ApiFailure> {
    let path = "/api/layout";
    let request = RequestBuilder::new(path)
        .method(Method::PUT)
        .header("Accept", "application/json")
        .header("Content-Type", "application/toml; charset=utf-8")
        .body(text)
        .map_err(|e| ApiFailure::Unexpected {
            path,
            detail: e.to_string(),
        })?;
    let response = request.send().await.map_err(|_| ApiFailure::Unreachable)?;
    if response.status() != 400 {
        return read(path, response, true).await.map(Ok);
    }
    let json = is_json(&response);
    let body = response.text().await.map_err(|_| ApiFailure::Unreachable)?;
    match serde_json::from_str::<LayoutRejected>(&body) {
        Ok(rejected) => Ok(Err(rejected)),
        Err(_) => interpret(path, 400, json, &body),
    }
}

/// `GET /api/replay` of `[from, to)`.
pub async fn replay(from: i64, to: i64) -> Result<Replay, ApiFailure> {
    get_json_at("/api/replay", &format!("/api/replay?from={from}&to={to}")).await
}

/// Movements through `circuit` within `[from, to)`.
pub async fn movements(circuit: &str, from: i64, to: i64) -> Result<Movements, ApiFailure> {
    get_json_at(
        "/api/movements",
        &format!("/api/movements?from={from}&to={to}&circuit={circuit}"),
    )
    .await
}

/// `GET /api/history?{query}`.
pub async fn history(query: &str) -> Result<History, ApiFailure> {
    get_json_at("/api/history", &format!("/api/history?{query}")).await
}

/// A channel's forecast; `None` when its kind has no model or the channel
/// has no forecast yet (the server's 404).
pub async fn forecast(channel: &str) -> Result<Option<Forecast>, ApiFailure> {
    let url = format!("/api/forecast?channel={channel}");
    match get_json_at("/api/forecast", &url).await {
        Ok(forecast) => Ok(Some(forecast)),
        Err(ApiFailure::Rejected { status: 404, .. }) => Ok(None),
        Err(failure) => Err(failure),
    }
}

pub async fn forecast_status() -> Result<ForecastStatus, ApiFailure> {
    get_json("/api/forecast/models").await
}

pub async fn train(request: &TrainRequest) -> Result<TrainJob, ApiFailure> {
    let path = "/api/forecast/train";
    send(Method::POST, path, path, Some(request)).await
}

/// Who is signed in; a 401 here is the answer "nobody", not a session that
/// ended under the app.
pub async fn me() -> Result<Me, ApiFailure> {
    let response = Request::get("/api/me")
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|_| ApiFailure::Unreachable)?;
    read("/api/me", response, false).await
}

pub async fn sign_in(request: &SignInRequest) -> Result<Me, ApiFailure> {
    send_quietly(Method::POST, "/api/session", "/api/session", Some(request)).await
}

pub async fn sign_in_with_link(request: &LinkSignInRequest) -> Result<Me, ApiFailure> {
    send_quietly(
        Method::POST,
        "/api/session/link",
        "/api/session/link",
        Some(request),
    )
    .await
}

pub async fn sign_out() -> Result<(), ApiFailure> {
    send_quietly(Method::DELETE, "/api/session", "/api/session", None::<&()>).await
}

pub async fn change_password(request: &PasswordChange) -> Result<Me, ApiFailure> {
    let path = "/api/me/password";
    send(Method::POST, path, path, Some(request)).await
}

pub async fn users() -> Result<Vec<UserInfo>, ApiFailure> {
    get_json("/api/users").await
}

pub async fn add_user(request: &NewUser) -> Result<IssuedPassword, ApiFailure> {
    send(Method::POST, "/api/users", "/api/users", Some(request)).await
}

pub async fn change_user(name: &str, change: &UserChange) -> Result<IssuedPassword, ApiFailure> {
    let url = format!("/api/users/{}", encode(name));
    send(Method::PATCH, "/api/users/{name}", &url, Some(change)).await
}

/// Whose e-mail routes: the signed-in user's, or (an admin) `user`'s.
fn notify_path(user: Option<&str>) -> (&'static str, String) {
    match user {
        Some(name) => (
            "/api/users/{name}/notifications",
            format!("/api/users/{}/notifications", encode(name)),
        ),
        None => ("/api/me/notifications", "/api/me/notifications".to_owned()),
    }
}

pub async fn notify_settings(
    user: Option<&str>,
) -> Result<trackside_wire::NotifySettings, ApiFailure> {
    let (path, url) = notify_path(user);
    get_json_at(path, &url).await
}

pub async fn set_notify_settings(
    user: Option<&str>,
    settings: &trackside_wire::NotifySettings,
) -> Result<trackside_wire::NotifySettings, ApiFailure> {
    let (path, url) = notify_path(user);
    send(Method::PUT, path, &url, Some(settings)).await
}

pub async fn tokens() -> Result<Vec<TokenInfo>, ApiFailure> {
    get_json("/api/tokens").await
}

pub async fn issue_token(request: &NewToken) -> Result<IssuedToken, ApiFailure> {
    send(Method::POST, "/api/tokens", "/api/tokens", Some(request)).await
}

pub async fn revoke_token(id: i64) -> Result<TokenInfo, ApiFailure> {
    let url = format!("/api/tokens/{id}");
    send(Method::DELETE, "/api/tokens/{id}", &url, None::<&()>).await
}

pub async fn gateway_credentials() -> Result<Vec<GatewayCredentialInfo>, ApiFailure> {
    get_json("/api/gateway-credentials").await
}

pub async fn add_gateway(request: &NewGateway) -> Result<IssuedGatewayPassword, ApiFailure> {
    let path = "/api/gateway-credentials";
    send(Method::POST, path, path, Some(request)).await
}

pub async fn revoke_gateway(id: &str) -> Result<(), ApiFailure> {
    let url = format!("/api/gateway-credentials/{}", encode(id));
    send(
        Method::DELETE,
        "/api/gateway-credentials/{id}",
        &url,
        None::<&()>,
    )
    .await
}

pub async fn gateway_certificate(
    id: &str,
    request: &CertificateRequest,
) -> Result<GatewayCertificateFiles, ApiFailure> {
    let url = format!("/api/gateway-credentials/{}/certificate", encode(id));
    send(
        Method::POST,
        "/api/gateway-credentials/{id}/certificate",
        &url,
        Some(request),
    )
    .await
}

/// The gateways heard from, with their status and clock offset.
pub async fn gateways() -> Result<Vec<GatewayInfo>, ApiFailure> {
    get_json("/api/gateways").await
}

/// Gives `channel` (`circuit/parameter`) to another gateway.
pub async fn reassign_channel(
    channel: &str,
    request: &ChannelOwner,
) -> Result<ChannelReassigned, ApiFailure> {
    let (circuit, parameter) = channel.split_once('/').unwrap_or((channel, ""));
    let url = format!(
        "/api/channels/{}/{}/gateway",
        encode(circuit),
        encode(parameter)
    );
    send(
        Method::PUT,
        "/api/channels/{circuit}/{parameter}/gateway",
        &url,
        Some(request),
    )
    .await
}

/// `url` is `/api/audit` with its filters.
pub async fn audit(url: &str) -> Result<Vec<AuditEntry>, ApiFailure> {
    get_json_at("/api/audit", url).await
}

/// A path segment, percent-encoded.
pub fn encode(segment: &str) -> String {
    js_sys::encode_uri_component(segment).into()
}

async fn get_json<T: DeserializeOwned>(path: &'static str) -> Result<T, ApiFailure> {
    get_json_at(path, path).await
}

/// `url` is what is fetched, `path` how failures name it.
async fn get_json_at<T: DeserializeOwned>(path: &'static str, url: &str) -> Result<T, ApiFailure> {
    let response = Request::get(url)
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|_| ApiFailure::Unreachable)?;
    read(path, response, true).await
}

/// A request with an optional JSON body; a 401 ends the app's session.
async fn send<T: DeserializeOwned>(
    method: Method,
    path: &'static str,
    url: &str,
    body: Option<&impl Serialize>,
) -> Result<T, ApiFailure> {
    let response = request(method, path, url, body).await?;
    read(path, response, true).await
}

/// The same, for the sign-in itself: its 401 is a wrong password, not the
/// end of a session.
async fn send_quietly<T: DeserializeOwned>(
    method: Method,
    path: &'static str,
    url: &str,
    body: Option<&impl Serialize>,
) -> Result<T, ApiFailure> {
    let response = request(method, path, url, body).await?;
    read(path, response, false).await
}

async fn request(
    method: Method,
    path: &'static str,
    url: &str,
    body: Option<&impl Serialize>,
) -> Result<Response, ApiFailure> {
    let builder = RequestBuilder::new(url)
        .method(method)
        .header("Accept", "application/json");
    let request = match body {
        Some(body) => builder.json(body),
        None => builder.build(),
    }
    .map_err(|e| ApiFailure::Unexpected {
        path,
        detail: e.to_string(),
    })?;
    request.send().await.map_err(|_| ApiFailure::Unreachable)
}

async fn read<T: DeserializeOwned>(
    path: &'static str,
    response: Response,
    session_may_end: bool,
) -> Result<T, ApiFailure> {
    let status = response.status();
    let json = is_json(&response);
    let body = response.text().await.map_err(|_| ApiFailure::Unreachable)?;
    // No content: the unit answer.
    let body = if status == 204 && body.is_empty() {
        "null".to_owned()
    } else {
        body
    };
    // Where the answer arrived, before it is decoded (crate::perf).
    crate::perf::mark(&format!("received {path}"), &[]);
    let answer = interpret(path, status, json, &body);
    if session_may_end
        && let Err(ApiFailure::Rejected {
            status: 401,
            message,
        }) = &answer
    {
        crate::session::ended(message);
    }
    answer
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
}

/// Turns a status and body into the typed answer or a failure an operator
/// can act on. Kept apart from the fetch so it can be tested natively.
fn interpret<T: DeserializeOwned>(
    path: &'static str,
    status: u16,
    json: bool,
    body: &str,
) -> Result<T, ApiFailure> {
    if (200..300).contains(&status) {
        return serde_json::from_str(body).map_err(|e| ApiFailure::Unexpected {
            path,
            detail: format!("unreadable JSON: {e}"),
        });
    }
    match serde_json::from_str::<ApiError>(body) {
        Ok(ApiError { error }) if json || !error.is_empty() => Err(ApiFailure::Rejected {
            status,
            message: error,
        }),
        // A reverse proxy's own error page for a backend that is down.
        _ if matches!(status, 502..=504) => Err(ApiFailure::Unreachable),
        _ => Err(ApiFailure::Unexpected {
            path,
            detail: format!("HTTP {status}"),
        }),
    }
}

/// The words of a refused operator action (`what`: "acknowledged",
/// "shelved"), for the page: the server's reason, or what to check.
pub fn refusal_text(what: &str, failure: &ApiFailure) -> String {
    match failure {
        ApiFailure::Rejected { message, .. } => format!("Not {what}: {message}."),
        ApiFailure::Unreachable => format!(
            "Not {what}: the Trackside server cannot be reached. Check the network, then try again."
        ),
        other => format!("Not {what}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: u16, json: bool, body: &str, expected: Result<YardInfo, ApiFailure>) {
        assert_eq!(
            interpret::<YardInfo>("/api/yard", status, json, body),
            expected,
            "{status} {body}"
        );
    }

    #[test]
    fn answers_become_values_or_actionable_failures() {
        check(
            200,
            true,
            r#"{"name":"Hilltop","timezone":"Europe/London","server_time":5}"#,
            Ok(YardInfo {
                name: "Hilltop".into(),
                timezone: "Europe/London".into(),
                server_time: 5,
            }),
        );
        check(
            503,
            true,
            r#"{"error":"database unavailable"}"#,
            Err(ApiFailure::Rejected {
                status: 503,
                message: "database unavailable".into(),
            }),
        );
        check(
            502,
            false,
            "<html>Bad Gateway</html>",
            Err(ApiFailure::Unreachable),
        );
        check(
            404,
            false,
            "<html>Not found</html>",
            Err(ApiFailure::Unexpected {
                path: "/api/yard",
                detail: "HTTP 404".into(),
            }),
        );
        let Err(ApiFailure::Unexpected { detail, .. }) =
            interpret::<YardInfo>("/api/yard", 200, false, "<html>")
        else {
            panic!("HTML with 200 must not pass as data");
        };
        assert!(detail.starts_with("unreadable JSON"), "{detail}");
    }

    #[test]
    fn messages_say_what_happens_next() {
        assert!(
            ApiFailure::Unreachable
                .to_string()
                .starts_with("Trackside server unreachable — retrying")
        );
        let refused = ApiFailure::Rejected {
            status: 403,
            message: "forbidden".into(),
        };
        assert!(refused.to_string().contains("403: forbidden"));
    }
}
