//! The history page's CSV export in a real headless Chromium: it exports
//! the charted channels over the range on view, counts the rows and bytes
//! as they arrive, and says plainly when the server refuses.
//!
//! Chromedriver cannot read the saved file, so the page's status line
//! (rows, bytes, and the URL it fetched) is checked against the same URL
//! fetched here, and that CSV against the stored readings.

use fantoccini::{Client, Locator};
use serde_json::json;

use crate::browser::{attribute, screenshot_to, signed_in_browser, text};
use crate::harness::{TestServer, eventually};
use trackside_wire::Role;

const STATUS: &str = "[data-testid=export-status]";

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

async fn choose(client: &Client, css: &str, value: &str) {
    let select = client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    select
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("choosing {value} in {css}: {e}"));
}

/// Waits for the export to end in `state`; returns its rows, bytes, URL
/// and the status text.
async fn finished(client: &Client, state: &str) -> (u64, u64, String, String) {
    eventually(&format!("the export to be {state}"), || async {
        (attribute(client, STATUS, "data-state").await.as_deref() == Some(state)).then_some(())
    })
    .await;
    let number = |name: &'static str| async move {
        attribute(client, STATUS, name)
            .await
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} on the status line"))
    };
    let rows = number("data-rows").await;
    let bytes = number("data-bytes").await;
    let url = attribute(client, STATUS, "data-url")
        .await
        .expect("the export's URL");
    let said = text(client, STATUS).await.unwrap_or_default();
    (rows, bytes, url, said)
}

#[tokio::test]
async fn the_history_page_exports_what_it_shows() {
    let server = TestServer::start().await;
    let mut gateway = server.gateway("gw-export-page").await;
    // Half an hour of two channels, one reading a second each.
    let start: i64 = 1_795_856_400_000; // 2026-11-28T09:00:00Z
    let readings: Vec<serde_json::Value> = (0..1_800)
        .flat_map(|i| {
            let t = start + i * 1_000;
            [
                json!({"channel": "T201/relay_voltage", "ts": t, "value": 1.25 + (i % 7) as f64 / 64.0}),
                json!({"channel": "T201/relay_state", "ts": t, "value": (i / 300 % 2) as f64}),
            ]
        })
        .collect();
    for chunk in readings.chunks(1_000) {
        gateway
            .publish(
                "trackside/gw-export-page/readings",
                json!({ "readings": chunk }).to_string(),
            )
            .await;
    }
    eventually("the readings stored", || async {
        (server.stored("T201/relay_state").await.len() == 1_800).then_some(())
    })
    .await;

    let (_driver, client) = signed_in_browser(&server, "Vera Viewer", Role::Viewer).await;
    let page = format!(
        "/history?channels=T201/relay_voltage,T201/relay_state&from={start}&to={}",
        start + 1_800_000
    );
    client
        .goto(&server.url(&page))
        .await
        .expect("open the page");
    click(&client, "[data-testid=export-start]").await;
    let (rows, bytes, url, said) = finished(&client, "done").await;
    assert_eq!(rows, 3_600, "every reading, one row each: {said}");
    assert!(
        said.starts_with("Exported 3,600 rows (") && said.contains(" as trackside_2-selections_"),
        "{said:?}"
    );
    assert!(url.contains("resolution=raw&layout=long"), "{url}");
    if let Ok(png) = client.screenshot().await {
        screenshot_to("export-done.png", png);
    }
    // The same URL, fetched here, is the file the page saved.
    let body = server
        .get(server.url(&url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body.len() as u64, bytes);
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let mut stored = server.stored("T201/relay_voltage").await;
    stored.extend(server.stored("T201/relay_state").await);
    let mut exported: Vec<(i64, f64)> = reader
        .records()
        .map(|r| {
            let r = r.expect("a record");
            let at = chrono::DateTime::parse_from_rfc3339(&r[0]).unwrap();
            (at.timestamp_millis(), r[5].parse().unwrap())
        })
        .collect();
    exported.sort_by(|a, b| a.partial_cmp(b).unwrap());
    stored.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(exported, stored);

    // One-minute buckets, a column per channel: one row per minute.
    choose(&client, "[data-testid=export-resolution]", "1m").await;
    choose(&client, "[data-testid=export-layout]", "wide").await;
    click(&client, "[data-testid=export-start]").await;
    eventually("the second export to start", || async {
        let url = attribute(&client, STATUS, "data-url").await?;
        url.contains("layout=wide").then_some(())
    })
    .await;
    let (rows, _, url, said) = finished(&client, "done").await;
    assert_eq!(rows, 30, "{said}");
    let body = server
        .get(server.url(&url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let first = body.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        "time_utc,time_local,T201/relay_voltage,T201/relay_state"
    );
    assert_eq!(body.lines().count(), 31);

    // A channel the server does not know: refused, and the page says why.
    let page = format!(
        "/history?channels=T201/relay_state,T999/relay_state&from={start}&to={}",
        start + 60_000
    );
    client
        .goto(&server.url(&page))
        .await
        .expect("open the page");
    click(&client, "[data-testid=export-start]").await;
    let (rows, _, _, said) = finished(&client, "error").await;
    if let Ok(png) = client.screenshot().await {
        screenshot_to("export-refused.png", png);
    }
    assert_eq!(rows, 0);
    assert!(
        said.contains("refused the export") && said.contains("no channel matches T999/relay_state"),
        "{said:?}"
    );
}
