//! The OpenAPI description at `/api/openapi.json`: it describes every route
//! the router serves, with the role its rule needs, and the server's real
//! answers (bodies and errors) validate against its schemas.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use trackside::auth::rules::{Need, rule_for};
use trackside_wire::Role;

use crate::access::router_routes;
use crate::exceptions::{FAST_RULES, now_ms, rules};
use crate::harness::{TestServer, eventually, test_config};
use crate::health::{publish, readings};

const S: i64 = 1_000;

/// The description, as anyone (not signed in) fetches it.
async fn description(server: &TestServer) -> Value {
    let response = reqwest::get(server.url("/api/openapi.json"))
        .await
        .expect("GET /api/openapi.json");
    assert_eq!(response.status(), 200, "the description is public");
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "served as JSON"
    );
    response.json().await.expect("the description is JSON")
}

/// What the rule of a route says, as the description spells it.
fn role_name(need: Need) -> String {
    match need {
        Need::Public => "public".into(),
        Need::SignedIn => "signed-in".into(),
        Need::Role(role) => role.as_str().into(),
    }
}

#[tokio::test]
async fn every_route_is_described_with_the_role_it_needs() {
    let server = TestServer::start().await;
    let doc = description(&server).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let routes = router_routes();
    assert!(
        routes.len() > 40,
        "the router's routes were read: {routes:?}"
    );
    let mut described = BTreeSet::new();
    for (method, path) in &routes {
        // The catch-all only answers "no such endpoint".
        if path.contains("{*") {
            continue;
        }
        let operation = &paths
            .get(path)
            .and_then(|item| item.get(method.to_lowercase()))
            .unwrap_or_else(|| {
                panic!(
                    "{method} {path} is served but not described: annotate its handler with \
                     #[utoipa::path(...)] and list it in its area's `Api` (see http::openapi)"
                )
            });
        let summary = operation["summary"].as_str().unwrap_or_default();
        assert!(
            !summary.trim().is_empty(),
            "{method} {path} has no summary: {operation}"
        );
        let rule = rule_for(
            &reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            path,
        )
        .expect("the access test checks every route has a rule");
        assert_eq!(
            operation["x-trackside-role"].as_str(),
            Some(role_name(rule.need).as_str()),
            "{method} {path}'s role"
        );
        assert!(
            operation["description"]
                .as_str()
                .is_some_and(|d| d.contains("Needs: ")),
            "{method} {path} says what it needs"
        );
        match rule.need {
            Need::Public => assert_eq!(operation["security"], json!([]), "{method} {path}"),
            _ => {
                assert!(operation.get("security").is_none(), "{method} {path}");
                assert!(
                    operation["responses"]["401"].is_object(),
                    "{method} {path} lists its 401"
                );
            }
        }
        assert!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| r.keys().any(|k| k.starts_with('2') || k == "101")),
            "{method} {path} has a success answer"
        );
        described.insert((method.to_lowercase(), path.clone()));
    }
    // Nothing described that is not served.
    for (path, item) in paths {
        for method in item.as_object().expect("a path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                assert!(
                    described.contains(&(method.clone(), path.clone())),
                    "{method} {path} is described but not served"
                );
            }
        }
    }
    // Both ways to authenticate, the error shape, and the live feed's frames.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["session"]["type"], "apiKey");
    assert_eq!(schemes["session"]["in"], "cookie");
    assert_eq!(schemes["token"]["scheme"], "bearer");
    assert!(doc["components"]["schemas"]["ApiError"]["properties"]["error"].is_object());
    assert!(doc["paths"]["/ws"]["get"]["responses"]["101"].is_object());
}

/// The description with every documented object closed: an answer that
/// carries a field the description does not name fails, so the server
/// cannot grow a field the description lacks.
fn closed(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        for schema in schemas.values_mut() {
            if schema.get("properties").is_some() && schema.get("allOf").is_none() {
                schema["unevaluatedProperties"] = json!(false);
            }
        }
    }
    doc
}

/// Checks an answer against what the description says `method path` answers
/// with `status`.
fn check(doc: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let operation = &doc["paths"][path][method.to_lowercase()];
    let response = &operation["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {path} answered {status}, which its description does not list: {body}"
    );
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status} has no JSON schema"
    );
    let mut root = closed(doc);
    root["allOf"] = json!([schema]);
    let validator = jsonschema::draft202012::new(&root).expect("the description compiles");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not match its description:\n{}\nbody: {body}",
        errors.join("\n")
    );
}

/// Sends a request with this client and checks the answer against the
/// description; returns the body.
async fn call(
    doc: &Value,
    client: &reqwest::Client,
    server: &TestServer,
    method: &str,
    template: &str,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        server.url(url),
    );
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_else(|e| {
        panic!("{method} {url} answered {status} without JSON: {e}");
    });
    check(doc, method, template, status, &body);
    (status, body)
}

#[tokio::test]
async fn real_answers_match_the_described_schemas() {
    let mut config = test_config();
    config.exceptions.rules = rules(FAST_RULES);
    config.exceptions.tick_ms = 100;
    config.health.every_s = 10;
    let (server, _dir) = crate::yard::server_with_layout(config).await;
    let doc = description(&server).await;

    // Ten minutes of circuit B that ended two minutes ago: trains, so there
    // are occupations, health scores and (with the fast rules) exceptions.
    let from = now_ms() - 12 * 60 * S;
    let to = from + 600 * S;
    let trains = [(60 * S, 100 * S), (250 * S, 290 * S), (450 * S, 480 * S)];
    let mut gateway = server.gateway("gw-doc").await;
    publish(
        &mut gateway,
        "gw-doc",
        &readings("B", from, 600, &trains, 0.02),
    )
    .await;
    eventually("the readings stored", || async {
        (server.stored("B/relay_voltage").await.len() >= 1200).then_some(())
    })
    .await;
    // And now a low relay voltage on a clear circuit: an exception.
    let now = now_ms();
    gateway
        .publish_readings(
            "gw-doc",
            &[("B/relay_state", now, 1.0), ("B/relay_voltage", now, 0.5)],
        )
        .await;
    eventually("an exception raised", || async {
        let list: Vec<Value> = server
            .get(server.url("/api/exceptions"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (!list.is_empty()).then_some(())
    })
    .await;
    eventually("circuit B scored", || async {
        let list: Value = server
            .get(server.url("/api/health"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (list.to_string().contains("\"B\"")).then_some(())
    })
    .await;

    let admin = server.client();
    let viewer = crate::harness::client_with(&[(
        "authorization",
        format!(
            "Bearer {}",
            server.token_of("Vera Viewer", Role::Viewer).await
        ),
    )]);
    let anyone = reqwest::Client::new();
    let window = format!("from={from}&to={to}");
    let reads = [
        ("/api/yard", "/api/yard".to_owned()),
        ("/api/channels", "/api/channels".to_owned()),
        ("/api/gateways", "/api/gateways".to_owned()),
        ("/api/exceptions", "/api/exceptions".to_owned()),
        ("/api/rules", "/api/rules".to_owned()),
        ("/api/layout", "/api/layout".to_owned()),
        ("/api/health", "/api/health".to_owned()),
        ("/api/health/{circuit}", "/api/health/B".to_owned()),
        (
            "/api/occupations",
            format!("/api/occupations?circuit=B&{window}"),
        ),
        (
            "/api/history",
            format!("/api/history?channels=B/relay_voltage,B/relay_state&{window}&points=100"),
        ),
        (
            "/api/history",
            format!("/api/history?channels=B/feed_current&{window}&points=5000"),
        ),
        ("/api/replay", format!("/api/replay?{window}")),
        ("/api/movements", format!("/api/movements?{window}")),
        ("/api/maintenance", "/api/maintenance".to_owned()),
        ("/api/shelves", "/api/shelves".to_owned()),
        ("/api/forecast/models", "/api/forecast/models".to_owned()),
        ("/api/me", "/api/me".to_owned()),
        ("/api/users", "/api/users".to_owned()),
        ("/api/tokens", "/api/tokens".to_owned()),
        (
            "/api/gateway-credentials",
            "/api/gateway-credentials".to_owned(),
        ),
        ("/api/audit", "/api/audit".to_owned()),
    ];
    for (template, url) in &reads {
        let (status, body) = call(&doc, &admin, &server, "GET", template, url, None).await;
        assert_eq!(status, 200, "GET {url}: {body}");
    }
    // The history answered both raw readings and buckets.
    let (_, history) = call(
        &doc,
        &admin,
        &server,
        "GET",
        "/api/history",
        &format!("/api/history?channels=B/relay_voltage&{window}&points=10"),
        None,
    )
    .await;
    assert_eq!(history["series"][0]["kind"], "buckets", "{history}");

    // An exception's detail, and an operator action with its answer.
    let (_, list) = call(
        &doc,
        &admin,
        &server,
        "GET",
        "/api/exceptions",
        "/api/exceptions",
        None,
    )
    .await;
    let id = list[0]["id"].as_i64().expect("an exception id");
    call(
        &doc,
        &admin,
        &server,
        "GET",
        "/api/exceptions/{id}",
        &format!("/api/exceptions/{id}"),
        None,
    )
    .await;
    let (status, _) = call(
        &doc,
        &admin,
        &server,
        "POST",
        "/api/exceptions/{id}/ack",
        &format!("/api/exceptions/{id}/ack"),
        Some(json!({"comment": "seen on the diagram"})),
    )
    .await;
    assert_eq!(status, 200);
    // Administration that answers with bodies.
    let (status, _) = call(
        &doc,
        &admin,
        &server,
        "POST",
        "/api/users",
        "/api/users",
        Some(json!({"name": "Nina New", "role": "viewer"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(
        &doc,
        &admin,
        &server,
        "POST",
        "/api/gateway-credentials",
        "/api/gateway-credentials",
        Some(json!({"id": "gw-new"})),
    )
    .await;
    assert_eq!(status, 201);

    // Errors: each one's JSON shape, as described.
    let errors = [
        (
            &anyone,
            "GET",
            "/api/channels",
            "/api/channels".to_owned(),
            401,
        ),
        (&viewer, "GET", "/api/users", "/api/users".to_owned(), 403),
        (
            &admin,
            "GET",
            "/api/exceptions/{id}",
            "/api/exceptions/999999".to_owned(),
            404,
        ),
        (
            &admin,
            "GET",
            "/api/exceptions",
            "/api/exceptions?active=perhaps".to_owned(),
            400,
        ),
        (
            &admin,
            "GET",
            "/api/history",
            "/api/history?channels=B/relay_voltage".to_owned(),
            400,
        ),
        (
            &admin,
            "GET",
            "/api/occupations",
            "/api/occupations?circuit=B&from=x&to=y".to_owned(),
            400,
        ),
        (
            &admin,
            "GET",
            "/api/health/{circuit}",
            "/api/health/B?days=0".to_owned(),
            400,
        ),
        (
            &admin,
            "POST",
            "/api/exceptions/{id}/ack",
            format!("/api/exceptions/{id}/ack"),
            409,
        ),
        (&admin, "POST", "/api/users", "/api/users".to_owned(), 409),
    ];
    for (client, method, template, url, want) in errors {
        let body = match (method, want) {
            ("POST", 409) if url == "/api/users" => {
                Some(json!({"name": "Nina New", "role": "viewer"}))
            }
            ("POST", 409) => Some(json!({"comment": "again"})),
            ("POST", _) => Some(json!({})),
            _ => None,
        };
        let (status, answer) = call(&doc, client, &server, method, template, &url, body).await;
        assert_eq!(status, want, "{method} {url}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{method} {url} says what is wrong: {answer}"
        );
    }
}

#[tokio::test]
async fn a_drifted_answer_fails_the_check() {
    // The check itself: a field the description does not name, or a wrong
    // type, is caught (else the test above could pass whatever the server
    // answered).
    let server = TestServer::start().await;
    let doc = description(&server).await;
    let (_, yard) = call(
        &doc,
        &server.client(),
        &server,
        "GET",
        "/api/yard",
        "/api/yard",
        None,
    )
    .await;
    for drifted in [
        {
            let mut y = yard.clone();
            y["undocumented"] = json!(1);
            y
        },
        {
            let mut y = yard.clone();
            y["server_time"] = json!("noon");
            y
        },
        {
            let mut y = yard.clone();
            y.as_object_mut().unwrap().remove("timezone");
            y
        },
    ] {
        let caught = std::panic::catch_unwind(|| check(&doc, "GET", "/api/yard", 200, &drifted));
        assert!(caught.is_err(), "{drifted} passed the check");
    }
}

#[tokio::test]
async fn the_app_links_to_a_readable_reference_that_lists_the_routes() {
    use fantoccini::Locator;

    use crate::browser::{attribute, csp_violations, screenshot_to, signed_in_browser};

    let server = TestServer::start().await;
    let (_driver, client) = signed_in_browser(&server, "Vera Viewer", Role::Viewer).await;
    // Every user's navigation has it (integrators are viewers, too).
    let href = attribute(&client, "nav.nav a[href='/api.html']", "href")
        .await
        .expect("an API link in the navigation");
    assert!(href.ends_with("/api.html"), "{href}");
    client
        .find(Locator::Css("nav.nav a[href='/api.html']"))
        .await
        .expect("the API link")
        .click()
        .await
        .expect("clicking it");
    // It opens in its own tab: the board stays where it was.
    let windows = eventually("the reference's tab", || async {
        let windows = client.windows().await.ok()?;
        (windows.len() == 2).then_some(windows)
    })
    .await;
    client
        .switch_to_window(windows[1].clone())
        .await
        .expect("switching to the reference");
    // RapiDoc renders in its shadow root: read what it shows there.
    let shown = eventually("the reference rendered", || async {
        let text = client
            .execute(
                "const doc = document.querySelector('rapi-doc');
                 return doc && doc.shadowRoot ? doc.shadowRoot.textContent : '';",
                vec![],
            )
            .await
            .ok()?;
        let text = text.as_str()?.to_owned();
        (text.contains("/api/exceptions/{id}/ack") && text.contains("Acknowledge an exception"))
            .then_some(text)
    })
    .await;
    for route in [
        "/api/history",
        "/api/openapi.json",
        "List exceptions (alarms)",
    ] {
        assert!(shown.contains(route), "{route} is not shown");
    }
    let path = client
        .current_url()
        .await
        .expect("the address")
        .path()
        .to_owned();
    assert_eq!(path, "/api.html");
    if let Ok(png) = client.screenshot().await {
        screenshot_to("api-reference.png", png);
    }
    assert_eq!(
        csp_violations(&client).await,
        None,
        "the reference runs under the app's Content-Security-Policy: {:?}",
        attribute(&client, "html", "data-csp-last").await
    );
    client.close().await.expect("closing the browser session");
}
