//! The HTTP surface through a real client: health, errors, metrics, the app.

use trackside_wire::{ApiError, YardInfo};

use crate::harness::{TestServer, test_config};

#[tokio::test]
async fn health_readiness_and_yard() {
    let server = TestServer::start().await;
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "ready");

    let yard: YardInfo = reqwest::get(server.url("/api/yard"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(yard.name, "Test yard");
    assert_eq!(yard.timezone, "Europe/London");
    let now = chrono::Utc::now().timestamp_millis();
    assert!((now - yard.server_time).abs() < 60_000);
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let server = TestServer::start().await;
    server.pool.close().await;
    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: ApiError = ready.json().await.unwrap();
    assert!(body.error.contains("database"), "{}", body.error);
}

#[tokio::test]
async fn unknown_api_paths_get_a_json_400() {
    let server = TestServer::start().await;
    let response = reqwest::get(server.url("/api/nope")).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: ApiError = response.json().await.unwrap();
    assert!(
        body.error.contains("no such API endpoint"),
        "{}",
        body.error
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let server = TestServer::start().await;
    let response = reqwest::get(server.url("/metrics")).await.unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let mut samples = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.split_once(' ').expect("name value");
        assert!(name.starts_with("trackside_"), "{line}");
        value.parse::<f64>().expect("numeric sample");
        samples += 1;
    }
    assert!(samples >= 10);
    assert_eq!(
        server.metric("trackside_readings_received_total").await,
        0.0
    );
}

#[tokio::test]
async fn the_app_is_served_with_a_fallback_for_its_routes() {
    let server = TestServer::start().await;
    let index = reqwest::get(server.url("/")).await.unwrap();
    assert_eq!(
        index.status(),
        200,
        "is target/site built? run `cargo xtask frontend`"
    );
    assert_eq!(index.headers()["cache-control"], "no-cache");
    let html = index.text().await.unwrap();
    assert!(html.contains("<html"), "{html}");
    // A route of the app itself, reloaded in the browser.
    let deep = reqwest::get(server.url("/board/T101")).await.unwrap();
    assert_eq!(deep.status(), 200);
    assert_eq!(deep.text().await.unwrap(), html);
}

#[tokio::test]
async fn without_a_built_app_the_server_says_how_to_build_it() {
    let mut config = test_config();
    config.http.assets_dir = "/nonexistent/trackside-site".into();
    let server = TestServer::start_with(config).await;
    let response = reqwest::get(server.url("/")).await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("cargo xtask frontend")
    );
    // The API works all the same.
    assert_eq!(
        reqwest::get(server.url("/api/channels"))
            .await
            .unwrap()
            .status(),
        200
    );
}
