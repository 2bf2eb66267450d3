//! Sign-in, roles, sessions, tokens, origins and the audit trail, through
//! real HTTP and WebSocket clients.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use trackside::auth::rules::{Need, RULES, rule_for};
use trackside_wire::{ApiError, AuditEntry, IssuedPassword, IssuedToken, Me, Role, ServerMessage};

use crate::harness::{
    LiveClient, PASSWORD, TestServer, client_with, eventually, session_cookie, test_config,
    try_websocket,
};

/// Every method and path the router serves, read from the router itself
/// (its `Debug` form names each route's path and which methods it has), so
/// that no route can be left out of the table below by forgetting to list
/// it. `HEAD` goes with `GET`.
pub(crate) fn router_routes() -> Vec<(String, String)> {
    let text = format!("{:?}", trackside::http::routes());
    // The routes, not the fallback router's own (whose ids start over).
    let text = &text[..text.find("fallback_router:").unwrap_or(text.len())];
    // `RouteId(7): "/api/yard"` in the path node.
    let mut paths = std::collections::HashMap::new();
    let mut rest = text;
    while let Some(at) = rest.find("RouteId(") {
        rest = &rest[at + "RouteId(".len()..];
        let Some(close) = rest.find(')') else { break };
        let id = rest[..close].to_owned();
        let after = &rest[close + 1..];
        if let Some(path) = after.strip_prefix(": \"")
            && let Some(end) = path.find('"')
        {
            paths.insert(id, path[..end].to_owned());
        }
    }
    // `RouteId(7): MethodRouter(MethodRouter { get: Route, head: Route, delete: None, ...`
    let mut routes = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("RouteId(") {
        rest = &rest[at + "RouteId(".len()..];
        let Some(close) = rest.find(')') else { break };
        let id = rest[..close].to_owned();
        let Some(body) = rest[close + 1..].strip_prefix(": MethodRouter(MethodRouter { ") else {
            continue;
        };
        let body = &body[..body.find("fallback:").unwrap_or(body.len())];
        for field in body.split(", ") {
            let Some((method, endpoint)) = field.split_once(": ") else {
                continue;
            };
            if endpoint.starts_with("None") || method == "head" {
                continue;
            }
            if let Some(path) = paths.get(&id) {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes.sort();
    routes.dedup();
    routes
}

/// A concrete URL path for a route pattern; ids that name nothing, so that
/// an allowed request changes nothing.
fn concrete(path: &str) -> String {
    path.replace("{id}", "999999")
        .replace("{name}", "nobody")
        .replace("{*rest}", "no/such/thing")
        .replace("{circuit}", "T999")
        .replace("{parameter}", "relay_state")
}

/// Sends `method path` with these credentials and the page's Origin, and
/// no body: an allowed request fails on its missing body or unknown id.
async fn status(server: &TestServer, method: &str, path: &str, token: Option<&str>) -> u16 {
    let (status, _) = answer(server, method, path, token).await;
    status
}

async fn answer(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            server.url(&concrete(path)),
        )
        .header("origin", server.origin());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("a response");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn every_route_answers_each_role_as_its_rule_says() {
    let server = TestServer::start().await;
    let routes = router_routes();
    for (method, path) in [
        ("POST", "/api/exceptions/{id}/ack"),
        ("GET", "/ws"),
        ("GET", "/metrics"),
        ("PATCH", "/api/users/{name}"),
    ] {
        assert!(
            routes.iter().any(|(m, p)| m == method && p == path),
            "the router's routes could not be read (found {routes:?}); has axum's Debug output changed?"
        );
    }
    // Every route has a rule, and every rule a route.
    for (method, path) in &routes {
        assert!(
            rule_for(&Method::from_bytes(method.as_bytes()).unwrap(), path).is_some(),
            "{method} {path} is served but has no access rule: add one line to auth::rules::RULES"
        );
    }
    for rule in RULES {
        assert!(
            routes
                .iter()
                .any(|(m, p)| m == rule.method && p == rule.path),
            "the rule for {} {} names no route",
            rule.method,
            rule.path
        );
    }
    // A method a path does not serve is a 405, not a refusal.
    let admin = server.token.clone();
    let (got, _) = answer(&server, "PUT", "/api/yard", Some(&admin)).await;
    assert_eq!(got, 405);

    let tokens = [
        (
            Role::Metrics,
            server.token_of("Prometheus", Role::Viewer).await,
        ),
        (
            Role::Viewer,
            server.token_of("Vera Viewer", Role::Viewer).await,
        ),
        (
            Role::Operator,
            server.token_of("Otto Operator", Role::Operator).await,
        ),
        (Role::Admin, admin.clone()),
    ];
    // The metrics token: a viewer's, holding less than its user.
    let metrics_token = {
        let user = server.user("Prometheus", Role::Viewer).await;
        trackside::auth::tokens::issue(&server.pool, &user, "scrape", Role::Metrics, 1)
            .await
            .unwrap()
            .0
    };
    let tokens = tokens.map(|(role, token)| {
        if role == Role::Metrics {
            (role, metrics_token.clone())
        } else {
            (role, token)
        }
    });
    for rule in RULES {
        let anonymous = status(&server, rule.method, rule.path, None).await;
        match rule.need {
            Need::Public => assert!(
                anonymous != 401 && anonymous != 403,
                "{} {} is public, yet refused anyone: {anonymous}",
                rule.method,
                rule.path
            ),
            _ => assert_eq!(
                anonymous, 401,
                "{} {} without a session or token",
                rule.method, rule.path
            ),
        }
        for (role, token) in &tokens {
            let got = status(&server, rule.method, rule.path, Some(token)).await;
            let allowed = trackside::auth::rules::allows(rule.need, *role);
            if allowed {
                assert!(
                    got != 401 && got != 403,
                    "{} {} should be open to {role}, got {got}",
                    rule.method,
                    rule.path
                );
            } else {
                assert_eq!(
                    got, 403,
                    "{} {} should refuse {role}",
                    rule.method, rule.path
                );
            }
        }
    }
}

/// `POST /api/session` from the app's page, as a browser signs in.
async fn sign_in_as(server: &TestServer, name: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/api/session"))
        .header("origin", server.origin())
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .expect("POST /api/session")
}

/// The status of a GET with this client.
async fn get_status(client: &reqwest::Client, url: String) -> u16 {
    client.get(url).send().await.expect("GET").status().as_u16()
}

async fn error_of(response: reqwest::Response) -> String {
    response
        .json::<ApiError>()
        .await
        .map(|e| e.error)
        .unwrap_or_default()
}

#[tokio::test]
async fn the_session_cookie_is_httponly_and_strict_and_signing_out_ends_it() {
    let server = TestServer::start().await;
    server.user("Ann Signaller", Role::Operator).await;
    let response = sign_in_as(&server, "ann signaller", PASSWORD).await;
    assert_eq!(response.status(), 200);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set_cookie.contains(flag), "{flag} missing: {set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    assert!(set_cookie.starts_with("trackside="), "{set_cookie}");
    let cookie = session_cookie(&response).unwrap();
    let me: Me = response.json().await.unwrap();
    assert_eq!(
        (me.name.as_str(), me.role),
        ("Ann Signaller", Role::Operator)
    );
    assert!(!me.password_change_required);

    let signed_in = client_with(&[("cookie", cookie.clone()), ("origin", server.origin())]);
    let answer = signed_in.get(server.url("/api/me")).send().await.unwrap();
    // Within a minute of the last, a request writes nothing: no new cookie.
    assert!(answer.headers().get("set-cookie").is_none());
    let me: Me = answer.json().await.unwrap();
    assert_eq!(me.name, "Ann Signaller");
    assert!(me.session_ends_at.is_some());

    let out = signed_in
        .delete(server.url("/api/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let after = signed_in
        .get(server.url("/api/channels"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    assert!(error_of(after).await.contains("session has ended"));

    let wrong = sign_in_as(&server, "Ann Signaller", "not it at all").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(error_of(wrong).await, "wrong name or password");
}

#[tokio::test]
async fn requests_from_another_origin_are_refused() {
    let server = TestServer::start().await;
    let operator = server.sign_in("Ann Signaller", Role::Operator).await;
    let ack = server.url("/api/exceptions/999999/ack");
    let body = json!({"comment": "forged"});
    let post = |origin: Option<&str>| {
        let mut request = reqwest::Client::new()
            .post(&ack)
            .header("cookie", &operator.cookie)
            .json(&body);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let evil = post(Some("https://evil.example")).await.unwrap();
    assert_eq!(evil.status(), 403);
    assert!(error_of(evil).await.contains("https://evil.example"));
    assert_eq!(
        post(None).await.unwrap().status(),
        403,
        "no Origin with a cookie"
    );
    // From the app's own origin the request goes through (to a 404: no such exception).
    assert_eq!(post(Some(&server.origin())).await.unwrap().status(), 404);
    // Reads are not state-changing: another origin's GET is answered as
    // usual (the browser's same-origin policy keeps the answer from it).
    let read = reqwest::Client::new()
        .get(server.url("/api/channels"))
        .header("cookie", &operator.cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    // A script with a token sends no Origin and needs none.
    let token = server.token_of("Ann Signaller", Role::Operator).await;
    let scripted = reqwest::Client::new()
        .post(&ack)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(scripted.status(), 404);

    // The live feed: another page cannot open it with the operator's cookie.
    let url = server.ws_url();
    let refused = try_websocket(
        &url,
        &[
            ("cookie", &operator.cookie),
            ("origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(refused.err(), Some(403));
    let refused = try_websocket(&url, &[("cookie", &operator.cookie)]).await;
    assert_eq!(refused.err(), Some(403));
    // From the app's origin it opens (and greets: `connect_with` reads the hello).
    LiveClient::connect_with(
        &url,
        &[("cookie", &operator.cookie), ("origin", &server.origin())],
    )
    .await;
    assert!(server.metric("trackside_http_origin_refused_total").await >= 4.0);
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_account_and_per_address() {
    let mut config = test_config();
    config.auth.max_failures_per_account = 3;
    config.auth.max_failures_per_address = 5;
    // The tests' own address stands for a reverse proxy here, so that
    // X-Forwarded-For picks the client's address.
    config.http.trusted_proxies = vec!["127.0.0.1".into()];
    let server = TestServer::start_with(config).await;
    server.user("ann", Role::Operator).await;
    server.user("bob", Role::Operator).await;
    let attempt = |name: &'static str, password: &'static str, from: &'static str| {
        reqwest::Client::new()
            .post(server.url("/api/session"))
            .header("origin", server.origin())
            .header("x-forwarded-for", from)
            .json(&json!({"name": name, "password": password}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(
            attempt("ann", "guess guess guess", "198.51.100.7")
                .await
                .unwrap()
                .status(),
            401
        );
    }
    // Ann's account is closed for the window, even with her right password
    // and from elsewhere.
    let throttled = attempt("ann", PASSWORD, "192.0.2.1").await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "900");
    assert!(
        error_of(throttled)
            .await
            .contains("too many failed sign-ins for \"ann\"")
    );
    // Bob is not affected...
    assert_eq!(
        attempt("bob", PASSWORD, "198.51.100.7")
            .await
            .unwrap()
            .status(),
        200
    );
    // ...until that address has failed too often (with any names).
    for name in ["carol", "dave"] {
        assert_eq!(
            attempt(name, "guess guess guess", "198.51.100.7")
                .await
                .unwrap()
                .status(),
            401
        );
    }
    let from_address = attempt("bob", PASSWORD, "198.51.100.7").await.unwrap();
    assert_eq!(from_address.status(), 429);
    assert!(error_of(from_address).await.contains("from this address"));
    assert_eq!(
        attempt("bob", PASSWORD, "192.0.2.1")
            .await
            .unwrap()
            .status(),
        200
    );

    // Every failure is in the audit trail, under the client's address.
    let failures: Vec<AuditEntry> = server
        .get(server.url("/api/audit?action=signin.failed"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reasons: Vec<(&str, &str, &str)> = failures
        .iter()
        .rev()
        .map(|e| {
            (
                e.target.as_deref().unwrap_or(""),
                e.address.as_deref().unwrap_or(""),
                e.detail["reason"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("ann", "198.51.100.7", "wrong password"),
            ("ann", "198.51.100.7", "wrong password"),
            ("ann", "198.51.100.7", "wrong password"),
            ("ann", "192.0.2.1", "throttled"),
            ("carol", "198.51.100.7", "unknown user"),
            ("dave", "198.51.100.7", "unknown user"),
            ("bob", "198.51.100.7", "throttled"),
        ]
    );
    assert_eq!(server.metric("trackside_signin_failures_total").await, 7.0);
}

/// Waits for the feed to say its session ended, then for the close.
async fn session_ended(live: &mut LiveClient) -> String {
    let reason = loop {
        match live.next_or_close().await {
            Ok(ServerMessage::SessionEnded { reason }) => break reason,
            Ok(_) => continue,
            Err(close) => panic!("closed without saying why: {close:?}"),
        }
    };
    match live.next_or_close().await {
        Err(Some(close)) => assert_eq!(u16::from(close.code), 4001),
        other => panic!("expected the close after session_ended, got {other:?}"),
    }
    reason
}

#[tokio::test]
async fn disabling_or_changing_a_user_closes_their_open_feeds_at_once() {
    let server = TestServer::start().await;
    let origin = server.origin();
    let url = server.ws_url();
    let ann = server.sign_in("Ann Signaller", Role::Operator).await;
    let mut feed =
        LiveClient::connect_with(&url, &[("cookie", &ann.cookie), ("origin", &origin)]).await;
    let ann_token = server.token_of("Ann Signaller", Role::Operator).await;
    let mut scripted =
        LiveClient::connect_with(&url, &[("authorization", &format!("Bearer {ann_token}"))]).await;
    let bob = server.sign_in("Bob", Role::Viewer).await;
    let mut bystander =
        LiveClient::connect_with(&url, &[("cookie", &bob.cookie), ("origin", &origin)]).await;

    let started = std::time::Instant::now();
    let disabled = server
        .client()
        .patch(server.url("/api/users/Ann%20Signaller"))
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    assert!(session_ended(&mut feed).await.contains("administrator"));
    session_ended(&mut scripted).await;
    // "At once": well inside the once-a-minute check, by notification.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        get_status(&ann.client, server.url("/api/channels")).await,
        401
    );
    assert_eq!(
        reqwest::Client::new()
            .get(server.url("/api/channels"))
            .bearer_auth(&ann_token)
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "a disabled user's tokens stop working"
    );
    // Others carry on.
    assert!(matches!(
        tokio::time::timeout(Duration::from_millis(300), bystander.next_or_close()).await,
        Err(_) | Ok(Ok(_))
    ));

    // A role change ends the sessions of that user, too.
    let role = server
        .client()
        .patch(server.url("/api/users/Bob"))
        .json(&json!({"role": "operator"}))
        .send()
        .await
        .unwrap();
    assert_eq!(role.status(), 200);
    session_ended(&mut bystander).await;
    assert_eq!(
        get_status(&bob.client, server.url("/api/channels")).await,
        401
    );

    // Signing out closes that browser's feed, not another of the same user's.
    let first = server.sign_in("Carol", Role::Viewer).await;
    let second = server.sign_in("Carol", Role::Viewer).await;
    let mut first_feed =
        LiveClient::connect_with(&url, &[("cookie", &first.cookie), ("origin", &origin)]).await;
    let mut second_feed =
        LiveClient::connect_with(&url, &[("cookie", &second.cookie), ("origin", &origin)]).await;
    assert_eq!(
        first
            .client
            .delete(server.url("/api/session"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(session_ended(&mut first_feed).await, "signed out");
    assert!(
        matches!(
            tokio::time::timeout(Duration::from_millis(500), second_feed.next_or_close()).await,
            Err(_) | Ok(Ok(_))
        ),
        "the other session's feed stays open"
    );
    assert!(server.metric("trackside_ws_sessions_ended_total").await >= 4.0);
}

#[tokio::test]
async fn api_tokens_act_as_their_user_with_at_most_their_role() {
    let server = TestServer::start().await;
    server.user("Otto Operator", Role::Operator).await;
    let issue = |body: Value| {
        server
            .client()
            .post(server.url("/api/tokens"))
            .json(&body)
            .send()
    };
    let refused =
        issue(json!({"user": "Otto Operator", "name": "too much", "role": "admin", "days": 30}))
            .await
            .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(error_of(refused).await.contains("at most its user's role"));
    let issued = issue(
        json!({"user": "Otto Operator", "name": "nightly export", "role": "viewer", "days": 30}),
    )
    .await
    .unwrap();
    assert_eq!(issued.status(), 201);
    let IssuedToken { token, info } = issued.json().await.unwrap();
    assert!(token.starts_with("tsk_"), "{token}");
    assert_eq!(
        (info.role, info.user.as_str()),
        (Role::Viewer, "Otto Operator")
    );
    let script = client_with(&[("authorization", format!("Bearer {token}"))]);
    assert_eq!(get_status(&script, server.url("/api/channels")).await, 200);
    let ack = script
        .post(server.url("/api/exceptions/1/ack"))
        .json(&json!({"comment": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ack.status(),
        403,
        "a viewer token of an operator cannot acknowledge"
    );
    let me: Me = script
        .get(server.url("/api/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((me.role, me.session_ends_at), (Role::Viewer, None));
    // The secret is shown once: the list and the database hold only its hash.
    let listed = server
        .get(server.url("/api/tokens"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listed.contains("nightly export") && !listed.contains(&token));
    let (stored,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM api_tokens WHERE position('tsk_'::bytea IN token_hash) > 0",
    )
    .fetch_one(&server.pool)
    .await
    .unwrap();
    assert_eq!(stored, 0);

    // Revoked: refused at once.
    let revoked = server
        .client()
        .delete(server.url(&format!("/api/tokens/{}", info.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let after = script
        .get(server.url("/api/channels"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    assert!(
        error_of(after)
            .await
            .contains("unknown, expired or revoked")
    );

    // Expired: refused.
    let IssuedToken { token, info } =
        issue(json!({"user": "Otto Operator", "name": "old", "role": "operator", "days": 1}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(info.id)
        .execute(&server.pool)
        .await
        .unwrap();
    assert_eq!(
        reqwest::Client::new()
            .get(server.url("/api/channels"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // A metrics token reads /metrics and nothing else.
    let IssuedToken { token, .. } = issue(
        json!({"user": "Otto Operator", "name": "prometheus", "role": "metrics", "days": 365}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let scrape = client_with(&[("authorization", format!("Bearer {token}"))]);
    let metrics = scrape.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("trackside_signin_failures_total")
    );
    assert_eq!(get_status(&scrape, server.url("/api/channels")).await, 403);
    assert_eq!(
        reqwest::get(server.url("/metrics")).await.unwrap().status(),
        401
    );
}

#[tokio::test]
async fn a_new_user_signs_in_with_a_one_time_password_and_must_change_it() {
    let server = TestServer::start().await;
    let created = server
        .client()
        .post(server.url("/api/users"))
        .json(&json!({"name": "Nina New", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let IssuedPassword { user, password } = created.json().await.unwrap();
    let password = password.expect("a one-time password");
    assert!(user.password_change_required);
    let server = &server;
    let sign_in = |password: String| async move { sign_in_as(server, "Nina New", &password).await };
    let first = sign_in(password.clone()).await;
    let cookie = session_cookie(&first).unwrap();
    let me: Me = first.json().await.unwrap();
    assert!(me.password_change_required);
    let other = session_cookie(&sign_in(password.clone()).await).unwrap();
    let nina = client_with(&[("cookie", cookie), ("origin", server.origin())]);
    let blocked = nina.get(server.url("/api/channels")).send().await.unwrap();
    assert_eq!(blocked.status(), 403);
    assert!(error_of(blocked).await.contains("choose your own password"));
    let short = nina
        .post(server.url("/api/me/password"))
        .json(&json!({"current": password, "new": "short"}))
        .send()
        .await
        .unwrap();
    assert_eq!(short.status(), 400);
    let changed = nina
        .post(server.url("/api/me/password"))
        .json(&json!({"current": password, "new": "four words of mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(get_status(&nina, server.url("/api/channels")).await, 200);
    // The other session (someone else who had the one-time password) ended.
    let other = client_with(&[("cookie", other), ("origin", server.origin())]);
    assert_eq!(get_status(&other, server.url("/api/me")).await, 401);
    assert_eq!(sign_in(password).await.status(), 401);
    assert_eq!(sign_in("four words of mine".into()).await.status(), 200);

    // The last enabled admin cannot be demoted.
    let demote = server
        .client()
        .patch(server.url("/api/users/tester"))
        .json(&json!({"role": "operator"}))
        .send()
        .await
        .unwrap();
    assert_eq!(demote.status(), 409);
    assert!(error_of(demote).await.contains("no enabled admin"));
}

/// Moves a time in every session's record (`seen_at`, `signed_in_at`)
/// this far into the past.
async fn set_back(pool: &sqlx::PgPool, key: &str, by: &str) {
    sqlx::query(
        "UPDATE sessions SET data = jsonb_set(data, ARRAY['auth', $1],
             to_jsonb((extract(epoch FROM now() - $2::interval) * 1000)::bigint))",
    )
    .bind(key)
    .bind(by)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn sessions_end_when_idle_or_too_old_and_links_sign_in_once() {
    let server = TestServer::start().await;
    let ann = server.sign_in("ann", Role::Viewer).await;
    assert_eq!(get_status(&ann.client, server.url("/api/yard")).await, 200);
    // Two hours without a request (the default idle timeout).
    set_back(&server.pool, "seen_at", "121 minutes").await;
    let idle = ann
        .client
        .get(server.url("/api/yard"))
        .send()
        .await
        .unwrap();
    assert_eq!(idle.status(), 401);
    assert!(
        error_of(idle)
            .await
            .contains("120 minutes without activity")
    );

    let bob = server.sign_in("bob", Role::Viewer).await;
    set_back(&server.pool, "signed_in_at", "13 hours").await;
    let old = bob
        .client
        .get(server.url("/api/yard"))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401);
    assert!(error_of(old).await.contains("12 h lifetime"));

    let carol = server.user("carol", Role::Operator).await;
    let link = trackside::auth::tokens::issue_link(&server.pool, carol.id)
        .await
        .unwrap();
    let redeem = || {
        reqwest::Client::new()
            .post(server.url("/api/session/link"))
            .header("origin", server.origin())
            .json(&json!({"token": link}))
            .send()
    };
    let first = redeem().await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(session_cookie(&first).is_some());
    let again = redeem().await.unwrap();
    assert_eq!(again.status(), 401);
    assert!(error_of(again).await.contains("already used"));
}

#[tokio::test]
async fn every_action_is_in_the_append_only_audit_trail() {
    let server = TestServer::start().await;
    let admin = server.sign_in("Ada Admin", Role::Admin).await;
    let post = |path: &str, body: Value| admin.client.post(server.url(path)).json(&body).send();
    // Users.
    assert_eq!(
        post("/api/users", json!({"name": "Vic", "role": "viewer"}))
            .await
            .unwrap()
            .status(),
        201
    );
    let patch = |body: Value| {
        admin
            .client
            .patch(server.url("/api/users/Vic"))
            .json(&body)
            .send()
    };
    assert_eq!(
        patch(json!({"role": "operator"})).await.unwrap().status(),
        200
    );
    assert_eq!(
        patch(json!({"disabled": true})).await.unwrap().status(),
        200
    );
    assert_eq!(
        patch(json!({"disabled": false})).await.unwrap().status(),
        200
    );
    assert_eq!(
        patch(json!({"reset_password": true}))
            .await
            .unwrap()
            .status(),
        200
    );
    // Tokens.
    let issued: IssuedToken = post(
        "/api/tokens",
        json!({"user": "Ada Admin", "name": "grafana", "role": "viewer", "days": 90}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let revoke = admin
        .client
        .delete(server.url(&format!("/api/tokens/{}", issued.info.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 200);
    // Gateways.
    assert_eq!(
        post("/api/gateway-credentials", json!({"id": "yardgw9"}))
            .await
            .unwrap()
            .status(),
        201
    );
    let cert = post(
        "/api/gateway-credentials/yardgw9/certificate",
        json!({"days": 30}),
    )
    .await
    .unwrap();
    assert_eq!(cert.status(), 200);
    let files: trackside_wire::GatewayCertificateFiles = cert.json().await.unwrap();
    assert!(files.key_pem.contains("PRIVATE KEY") && files.cert_pem.contains("CERTIFICATE"));
    let revoked = admin
        .client
        .delete(server.url("/api/gateway-credentials/yardgw9"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    // Training (on an empty range: it starts, then fails for want of data).
    let train = post(
        "/api/forecast/train",
        json!({"kind": "relay_voltage", "from": 0, "to": 86_400_000}),
    )
    .await
    .unwrap();
    assert_eq!(train.status(), 202);
    // Sign-in failure and sign-out.
    let failed = sign_in_as(&server, "Ada Admin", "wrong wrong wrong").await;
    assert_eq!(failed.status(), 401);
    assert_eq!(
        admin
            .client
            .delete(server.url("/api/session"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    let trail: Vec<AuditEntry> = server
        .get(server.url("/api/audit"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows: Vec<(String, String, String, String)> = trail
        .iter()
        .rev()
        .map(|e| {
            (
                e.actor.clone().unwrap_or_default(),
                e.role.clone().unwrap_or_default(),
                e.action.clone(),
                e.target.clone().unwrap_or_default(),
            )
        })
        .collect();
    let token = issued.info.id.to_string();
    let ada = |action: &str, target: &str| {
        (
            "Ada Admin".to_owned(),
            "admin".to_owned(),
            action.to_owned(),
            target.to_owned(),
        )
    };
    assert_eq!(
        rows,
        vec![
            ada("signin", "Ada Admin"),
            ada("user.create", "Vic"),
            ada("user.role", "Vic"),
            ada("user.disable", "Vic"),
            ada("user.enable", "Vic"),
            ada("user.password", "Vic"),
            ada("token.create", &token),
            ada("token.revoke", &token),
            ada("gateway.add", "yardgw9"),
            ada("gateway.certificate", "yardgw9"),
            ada("gateway.revoke", "yardgw9"),
            ada("forecast.train", "relay_voltage"),
            (
                String::new(),
                String::new(),
                "signin.failed".into(),
                "ada admin".into()
            ),
            ada("signout", "Ada Admin"),
        ]
    );
    assert!(
        trail
            .iter()
            .all(|e| e.address.as_deref() == Some("127.0.0.1")),
        "{trail:?}"
    );
    let role_change = trail.iter().find(|e| e.action == "user.role").unwrap();
    assert_eq!(role_change.detail["from"], "viewer");
    assert_eq!(role_change.detail["to"], "operator");

    // Filters.
    let users: Vec<AuditEntry> = server
        .get(server.url("/api/audit?action=user.*&target=Vic"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users.len(), 5);
    let bad = server
        .get(server.url("/api/audit?action=DROP"))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // The CSV holds the same rows, oldest first.
    let csv = server.get(server.url("/api/audit.csv")).await.unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("trackside_audit_")
    );
    let text = csv.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "id",
            "time_utc",
            "time_local",
            "actor",
            "role",
            "address",
            "action",
            "target",
            "detail"
        ]
    );
    let actions: Vec<String> = reader.records().map(|r| r.unwrap()[6].to_owned()).collect();
    assert_eq!(
        actions,
        rows.iter().map(|r| r.2.clone()).collect::<Vec<_>>()
    );

    // Nobody rewrites it, not even with the server's own database role.
    for statement in [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let refused = sqlx::query(statement).execute(&server.pool).await;
        let message = refused.expect_err(statement).to_string();
        assert!(message.contains("append-only"), "{statement}: {message}");
    }
    eventually("the training job to finish", || async {
        let trail: Vec<AuditEntry> = server
            .get(server.url("/api/audit?action=forecast.*"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (trail.len() == 1).then_some(())
    })
    .await;
}

/// A self-signed certificate for 127.0.0.1, written to `dir`.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key, certified.cert.pem())
}

#[tokio::test]
async fn the_app_is_served_over_https_with_a_secure_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pem) = certificate(dir.path());
    let mut config = test_config();
    config.http.tls_cert = Some(cert);
    config.http.tls_key = Some(key);
    let server = TestServer::start_with(config).await;
    assert!(server.origin().starts_with("https://127.0.0.1:"));
    server.user("Ann Signaller", Role::Operator).await;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let signed_in = client
        .post(server.url("/api/session"))
        .header("origin", server.origin())
        .json(&json!({"name": "Ann Signaller", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    assert_eq!(signed_in.version(), reqwest::Version::HTTP_11);
    let set_cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set_cookie.starts_with("__Host-trackside="), "{set_cookie}");
    assert!(
        set_cookie.contains("Secure") && set_cookie.contains("HttpOnly"),
        "{set_cookie}"
    );
    assert!(
        signed_in.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
    let cookie = session_cookie(&signed_in).unwrap();
    let me = client
        .get(server.url("/api/me"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<Me>().await.unwrap().name, "Ann Signaller");

    // Plain HTTP on the HTTPS port gets no answer but a failed handshake.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", server.running.http_addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err());
    eventually("the failed handshake counted", || async {
        let text = client
            .get(server.url("/metrics"))
            .bearer_auth(&server.token)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .any(|l| {
                l.starts_with("trackside_https_handshake_failures_total ") && !l.ends_with(" 0")
            })
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let server = TestServer::start().await;
    for path in ["/", "/api/yard", "/healthz"] {
        let response = reqwest::get(server.url(path)).await.unwrap();
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(
            csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert!(
            headers.get("strict-transport-security").is_none(),
            "plain HTTP: {path}"
        );
    }
}

/// The database's URL, for the `trackside` command.
/// Runs `trackside <args>` on the test database; its standard output.
fn trackside(pool: &sqlx::PgPool, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write as _;
    let data = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_trackside"))
        .args(args)
        .env("TRACKSIDE_DATABASE_URL", crate::harness::database_url(pool))
        .env("TRACKSIDE_DATA_DIR", data.path())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running trackside");
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "trackside {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn the_first_admin_and_tokens_are_made_at_the_console() {
    let server = TestServer::start().await;
    let pool = server.pool.clone();
    let printed = tokio::task::spawn_blocking(move || {
        trackside(
            &pool,
            &["user", "add", "Root Admin", "--role", "admin"],
            None,
        )
    })
    .await
    .unwrap();
    let password = printed
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no password in {printed:?}"))
        .to_owned();
    assert!(printed.contains("one-time password"), "{printed}");
    let signed_in = sign_in_as(&server, "Root Admin", &password).await;
    assert_eq!(signed_in.status(), 200);
    let cookie = session_cookie(&signed_in).unwrap();
    assert!(
        signed_in
            .json::<Me>()
            .await
            .unwrap()
            .password_change_required
    );

    // A password read from standard input is the user's own.
    let pool = server.pool.clone();
    tokio::task::spawn_blocking(move || {
        trackside(
            &pool,
            &[
                "user",
                "add",
                "Scripted",
                "--role",
                "viewer",
                "--password-stdin",
            ],
            Some("chosen at the console\n"),
        )
    })
    .await
    .unwrap();
    let scripted = sign_in_as(&server, "Scripted", "chosen at the console").await;
    assert!(
        !scripted
            .json::<Me>()
            .await
            .unwrap()
            .password_change_required
    );

    // A role change at the console ends the web session.
    let pool = server.pool.clone();
    tokio::task::spawn_blocking(move || {
        trackside(&pool, &["user", "role", "Root Admin", "operator"], None)
    })
    .await
    .unwrap();
    let after = reqwest::Client::new()
        .get(server.url("/api/me"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);

    // A token for a script, printed once, that works.
    let pool = server.pool.clone();
    let token = tokio::task::spawn_blocking(move || {
        trackside(
            &pool,
            &[
                "token",
                "add",
                "--user",
                "Scripted",
                "--name",
                "nightly export",
                "--role",
                "viewer",
                "--days",
                "7",
            ],
            None,
        )
    })
    .await
    .unwrap();
    let token = token.trim();
    assert!(token.starts_with("tsk_"), "{token}");
    let exported = reqwest::Client::new()
        .get(server.url("/api/channels"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(exported.status(), 200);
    let pool = server.pool.clone();
    let listed = tokio::task::spawn_blocking(move || trackside(&pool, &["user", "list"], None))
        .await
        .unwrap();
    assert!(
        listed.contains("Root Admin") && listed.contains("operator"),
        "{listed}"
    );

    // The console's actions are in the trail, under the console's user.
    let trail: Vec<AuditEntry> = server
        .get(server.url("/api/audit?action=user.*,token.*"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(trail.len(), 4, "{trail:?}");
    assert!(
        trail.iter().all(|e| e
            .actor
            .as_deref()
            .is_some_and(|a| a.starts_with("console:"))),
        "{trail:?}"
    );
}
