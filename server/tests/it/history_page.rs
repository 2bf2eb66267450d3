//! The history page in a real headless Chromium: it charts seeded
//! channels, a drag zooms into a narrower range (a new request), a
//! double-click steps back out, and live mode appends new readings.

use std::time::Duration;

use fantoccini::actions::{InputSource as _, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use fantoccini::{Client, Locator};
use serde_json::json;

use crate::browser::{attribute, signed_in_browser, text};
use crate::harness::{TestServer, eventually};
use trackside_wire::Role;

const CHART: &str = "[data-testid=history-chart]";

async fn requested_range(client: &Client) -> Option<(i64, i64)> {
    let from = attribute(client, CHART, "data-from").await?.parse().ok()?;
    let to = attribute(client, CHART, "data-to").await?.parse().ok()?;
    Some((from, to))
}

async fn ready_range(client: &Client, what: &str, differs_from: Option<(i64, i64)>) -> (i64, i64) {
    eventually(what, || async {
        let state = attribute(client, CHART, "data-state").await;
        let range = requested_range(client).await?;
        (state.as_deref() == Some("ready") && Some(range) != differs_from).then_some(range)
    })
    .await
}

/// The live switch's `checked` property (the attribute never changes).
async fn live_checked(client: &Client) -> bool {
    let switch = client
        .find(Locator::Css("[data-testid=history-live]"))
        .await
        .expect("the live switch");
    switch
        .prop("checked")
        .await
        .expect("its checked property")
        .as_deref()
        == Some("true")
}

async fn click(client: &Client, css: &str) {
    let element = eventually(&format!("{css} to appear"), || async {
        client.find(Locator::Css(css)).await.ok()
    })
    .await;
    element
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

#[tokio::test]
async fn the_history_page_charts_zooms_and_follows_live_readings() {
    let server = TestServer::start().await;
    let mut gateway = server.gateway("gw-page").await;
    // Three hours of two channels with different units, every 5 s, with a
    // 20-minute outage in the middle.
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - 3 * 3_600_000;
    let readings: Vec<serde_json::Value> = (0..2_160)
        .map(|i| start + i * 5_000)
        .filter(|t| !(start + 80 * 60_000..start + 100 * 60_000).contains(t))
        .flat_map(|t| {
            let wave = ((t / 60_000) % 30) as f64 / 100.0;
            [
                json!({"channel": "T101/relay_voltage", "ts": t, "value": 1.5 + wave}),
                json!({"channel": "T101/relay_current", "ts": t, "value": 140.0 + wave * 50.0}),
            ]
        })
        .collect();
    for chunk in readings.chunks(1_000) {
        gateway
            .publish(
                "trackside/gw-page/readings",
                json!({ "readings": chunk }).to_string(),
            )
            .await;
    }
    eventually("the readings stored", || async {
        (server.stored("T101/relay_current").await.len() == readings.len() / 2).then_some(())
    })
    .await;

    let (_driver, client) = signed_in_browser(&server, "Vera Viewer", Role::Viewer).await;
    client.goto(&server.url("/")).await.expect("open the app");
    // Through the navigation, as an operator would.
    click(&client, "nav a[href='/history']").await;
    eventually("the history page", || async {
        client
            .find(Locator::Css("[data-testid=history-page]"))
            .await
            .ok()
    })
    .await;
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .path()
            .starts_with("/history")
    );
    click(&client, "[data-channel-toggle='T101/relay_voltage']").await;
    click(&client, "[data-channel-toggle='T101/relay_current']").await;
    click(&client, "[data-range='6h']").await;

    let wide = ready_range(&client, "the six-hour chart", None).await;
    assert_eq!(
        crate::browser::csp_violations(&client).await,
        None,
        "the chart runs under the CSP"
    );
    let span = wide.1 - wide.0;
    assert!((span - 6 * 3_600_000).abs() < 5_000, "{wide:?}");
    assert!(
        client
            .find(Locator::Css(&format!("{CHART} canvas")))
            .await
            .is_ok(),
        "uPlot draws on a canvas"
    );
    let legend = text(&client, &format!("{CHART} .u-legend"))
        .await
        .unwrap_or_default();
    for series in ["T101 relay voltage (V)", "T101 relay current (mA)"] {
        assert!(
            legend.contains(series),
            "legend {legend:?} lacks {series:?}"
        );
    }
    assert_eq!(
        attribute(&client, CHART, "data-source").await.as_deref(),
        Some("raw"),
        "six hours at one point per pixel come from raw readings"
    );
    save_screenshot(&client, "history-6h.png").await;

    // Drag across a stretch of the last three hours (the plot's right
    // half): a narrower range, fetched.
    let over = client
        .find(Locator::Css(&format!("{CHART} .u-over")))
        .await
        .expect("the plot area");
    let (_, _, width, _) = over.rectangle().await.expect("plot size");
    let drag = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element: over.clone(),
            duration: None,
            x: width / 8.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::MoveBy {
            duration: Some(Duration::from_millis(250)),
            x: width / 5.0,
            y: 0.0,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    client.perform_actions(drag).await.expect("dragging");
    let narrow = ready_range(&client, "the zoomed chart", Some(wide)).await;
    let narrow_span = narrow.1 - narrow.0;
    assert!(
        narrow.0 >= wide.0 && narrow.1 <= wide.1 && narrow_span < span / 3,
        "zoomed {narrow:?} should lie well inside {wide:?}"
    );
    assert!(
        client
            .find(Locator::Css(&format!("{CHART} .chart-notice")))
            .await
            .is_err(),
        "the zoomed range has readings to draw"
    );
    assert!(!live_checked(&client).await, "zooming leaves live mode");
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .query()
            .unwrap_or_default()
            .contains(&format!("from={}", narrow.0)),
        "the URL keeps the zoomed range"
    );
    save_screenshot(&client, "history-zoomed.png").await;

    // Double-click: back to the view before the zoom, live again.
    let double = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element: over.clone(),
            duration: None,
            x: 0.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    client
        .perform_actions(double)
        .await
        .expect("double-clicking");
    let back = ready_range(&client, "the zoomed-out chart", Some(narrow)).await;
    assert_eq!(back.1 - back.0, span, "the six hours again");
    assert!(back.1 >= wide.1, "following the clock again");
    assert!(
        live_checked(&client).await,
        "zooming out restores live mode"
    );

    // Live: a new reading reaches the chart's right edge without a new
    // request.
    click(&client, "[data-range='1h']").await;
    let live = ready_range(&client, "the live hour", Some(back)).await;
    assert!(
        live_checked(&client).await,
        "a range button follows the clock"
    );
    eventually("the page to follow the feed", || async {
        attribute(&client, CHART, "data-following")
            .await
            .filter(|v| v == "true")
    })
    .await;
    let fresh = chrono::Utc::now().timestamp_millis();
    gateway
        .publish(
            "trackside/gw-page/readings",
            json!({"readings": [{"channel": "T101/relay_voltage", "ts": fresh, "value": 2.5}]})
                .to_string(),
        )
        .await;
    eventually("the live reading on the chart", || async {
        let newest: i64 = attribute(&client, CHART, "data-newest")
            .await?
            .parse()
            .ok()?;
        (newest == fresh).then_some(())
    })
    .await;
    assert_eq!(
        requested_range(&client).await,
        Some(live),
        "no refetch for a live reading"
    );
    client.close().await.expect("closing the browser session");
}

async fn save_screenshot(client: &Client, name: &str) {
    if let Ok(png) = client.screenshot().await {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(name), png);
    }
}
