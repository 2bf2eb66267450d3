//! The HTTP surface through a real client: health, errors, metrics, the app.

use trackside_wire::{ApiError, YardInfo};

use crate::harness::{TestServer, eventually, test_config};

#[tokio::test]
async fn health_readiness_and_yard() {
    let server = TestServer::start().await;
    let health = server.get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = server.get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    // A lone instance holds every role.
    let ready = ready.text().await.unwrap();
    assert!(
        ready.starts_with("ready;") && ready.ends_with("roles: engine, rollup"),
        "{ready}"
    );

    let yard: YardInfo = server
        .get(server.url("/api/yard"))
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
    let ready = server.get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: ApiError = ready.json().await.unwrap();
    assert!(body.error.contains("database"), "{}", body.error);
}

#[tokio::test]
async fn unknown_api_paths_get_a_json_400() {
    let server = TestServer::start().await;
    let response = server.get(server.url("/api/nope")).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: ApiError = response.json().await.unwrap();
    assert!(
        body.error.contains("no such API endpoint"),
        "{}",
        body.error
    );
}

/// `/metrics` parses as Prometheus text, every family is documented, and
/// its counters match what a gateway sent.
#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_what_was_sent() {
    let server = TestServer::start().await;
    let mut gateway = server.gateway("gw-metrics").await;
    let batch = |readings: &[(&str, f64)]| {
        let readings: Vec<_> = readings
            .iter()
            .enumerate()
            .map(|(i, (channel, value))| {
                serde_json::json!({"channel": channel, "value": value,
                                   "ts": format!("2026-11-28T10:00:0{i}Z")})
            })
            .collect();
        serde_json::json!({ "readings": readings }).to_string()
    };
    let topic = "trackside/gw-metrics/readings";
    gateway
        .publish(
            topic,
            batch(&[
                ("T1/relay_voltage", 1.1),
                ("T1/feed_current", 0.2),
                ("T2/relay_voltage", 1.3),
            ]),
        )
        .await;
    gateway
        .publish(
            topic,
            batch(&[("T3/relay_voltage", 1.4), ("no channel", 1.0)]),
        )
        .await;
    gateway.publish(topic, "{ not json").await;
    gateway.publish("trackside/gw-metrics/nonsense", "1").await;

    let scrape = eventually("every message counted and stored", || async {
        let text = server
            .get(server.url("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
            .expect("Prometheus text format");
        let stored = value(&scrape, "trackside_readings_stored_total", &[]);
        (stored == 4.0).then_some(scrape)
    })
    .await;

    for sample in &scrape.samples {
        assert!(sample.metric.starts_with("trackside_"), "{}", sample.metric);
        assert!(
            scrape.docs.contains_key(&sample.metric),
            "{} has no HELP",
            sample.metric
        );
    }
    let expected: [(&str, Labels, f64); 10] = [
        ("trackside_mqtt_messages_total", &[], 4.0),
        ("trackside_readings_received_total", &[], 4.0),
        ("trackside_readings_stored_total", &[], 4.0),
        ("trackside_readings_duplicate_total", &[], 0.0),
        ("trackside_rejected_payloads_total", &[], 2.0),
        ("trackside_rejected_readings_total", &[], 1.0),
        ("trackside_rejections_total", &[("reason", "payload")], 1.0),
        ("trackside_rejections_total", &[("reason", "topic")], 1.0),
        ("trackside_rejections_total", &[("reason", "reading")], 1.0),
        ("trackside_mqtt_connections", &[("listener", "mqtt")], 1.0),
    ];
    for (name, labels, want) in expected {
        assert_eq!(value(&scrape, name, labels), want, "{name} {labels:?}");
    }
    assert_eq!(
        value(&scrape, "trackside_rejections_total", &[("reason", "acl")]),
        0.0
    );
    assert!(matches!(
        scrape
            .samples
            .iter()
            .find(|s| s.metric == "trackside_mqtt_messages_total")
            .map(|s| &s.value),
        Some(prometheus_parse::Value::Counter(_))
    ));
}

type Labels<'a> = &'a [(&'a str, &'a str)];

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: Labels) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && labels
                    .iter()
                    .all(|(key, want)| s.labels.get(key) == Some(*want))
        })
        .unwrap_or_else(|| panic!("{name} {labels:?} missing"));
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => panic!("{name} is not a number"),
    }
}

#[tokio::test]
async fn the_app_is_served_with_a_fallback_for_its_routes() {
    let server = TestServer::start().await;
    let index = server.get(server.url("/")).await.unwrap();
    assert_eq!(
        index.status(),
        200,
        "is target/site built? run `cargo xtask frontend`"
    );
    assert_eq!(index.headers()["cache-control"], "no-cache");
    let html = index.text().await.unwrap();
    assert!(html.contains("<html"), "{html}");
    // A route of the app itself, reloaded in the browser.
    let deep = server.get(server.url("/board/T101")).await.unwrap();
    assert_eq!(deep.status(), 200);
    assert_eq!(deep.text().await.unwrap(), html);
}

#[tokio::test]
async fn without_a_built_app_the_server_says_how_to_build_it() {
    let mut config = test_config();
    config.http.assets_dir = "/nonexistent/trackside-site".into();
    let server = TestServer::start_with(config).await;
    let response = server.get(server.url("/")).await.unwrap();
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
        server
            .get(server.url("/api/channels"))
            .await
            .unwrap()
            .status(),
        200
    );
}
