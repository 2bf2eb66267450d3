//! The forecast on the history page in a real headless Chromium: an
//! operator trains a model from the Forecast panel, follows its progress,
//! and the trained channel's chart gets its forecast line and band beyond
//! "now".

use std::time::Duration;

use fantoccini::{Client, Locator};

use crate::browser::{attribute, signed_in_browser, text};
use crate::forecast::{forecast_config, publish, sagging_channel, training_history};
use crate::harness::{TestServer, eventually};
use trackside_wire::Role;

const CHART: &str = "[data-testid=history-chart]";

/// Waits longer than the harness's deadline: training in a debug build.
async fn within(client: &Client, what: &str, seconds: u64, css: &str, name: &str, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if attribute(client, css, name).await.as_deref() == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {css} {name} is {:?}",
            attribute(client, css, name).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_model_trained_from_the_page_draws_a_forecast_band() {
    let server = TestServer::start_with(forecast_config()).await;
    let mut gateway = server.gateway("gw-fc").await;
    let now = chrono::Utc::now().timestamp_millis();
    let mut readings = training_history(now);
    readings.extend(sagging_channel("T299/relay_voltage", now));
    publish(&mut gateway, &readings).await;
    eventually("the readings stored", || async {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM readings")
            .fetch_one(&server.pool)
            .await
            .unwrap();
        (n == readings.len() as i64).then_some(())
    })
    .await;

    let (_driver, client) = signed_in_browser(&server, "Ada Admin", Role::Admin).await;
    client
        .goto(&server.url("/history?channels=T299/relay_voltage&span=3600000&live=1"))
        .await
        .expect("open the history page");
    within(&client, "the chart", 20, CHART, "data-state", "ready").await;
    within(
        &client,
        "the panel to say there is no model",
        20,
        "[data-testid=forecast-panel] .model",
        "data-trained",
        "false",
    )
    .await;
    assert_eq!(
        attribute(&client, CHART, "data-forecasts").await.as_deref(),
        Some("0")
    );

    // Train on the last day from the panel, and watch it finish.
    client
        .find(Locator::Css("[data-testid=train-button]"))
        .await
        .expect("the train button")
        .click()
        .await
        .expect("clicking train");
    within(
        &client,
        "the training job",
        20,
        "[data-testid=train-job]",
        "data-state",
        "running",
    )
    .await;
    within(
        &client,
        "training to finish",
        180,
        "[data-testid=train-job]",
        "data-state",
        "succeeded",
    )
    .await;
    let job_text = text(&client, "[data-testid=train-job]")
        .await
        .unwrap_or_default();
    assert!(job_text.contains("validation error"), "{job_text}");
    within(
        &client,
        "the panel to show the model",
        30,
        "[data-testid=forecast-panel] .model",
        "data-trained",
        "true",
    )
    .await;

    // The forecast band on the chart: its series in the legend, drawn
    // beyond now.
    within(
        &client,
        "the forecast on the chart",
        30,
        CHART,
        "data-forecasts",
        "1",
    )
    .await;
    let until: i64 = attribute(&client, CHART, "data-forecast-until")
        .await
        .and_then(|v| v.parse().ok())
        .expect("the forecast's last step");
    assert!(
        until > chrono::Utc::now().timestamp_millis() + 20 * 60_000,
        "the forecast reaches half an hour ahead: {until}"
    );
    let legend = text(&client, &format!("{CHART} .u-legend"))
        .await
        .unwrap_or_default();
    assert!(
        legend.contains("T299 relay voltage forecast (V)"),
        "legend {legend:?}"
    );
    let panel = text(&client, "[data-testid=forecast-panel]")
        .await
        .unwrap_or_default();
    assert!(panel.contains("Validation error"), "{panel}");
    if let Ok(png) = client.screenshot().await {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("history-forecast.png"), png);
    }
    client.close().await.expect("closing the browser session");
}
