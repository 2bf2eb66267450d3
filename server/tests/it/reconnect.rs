//! The app across server restarts: the board's pill counts down to each
//! attempt, the board catches up on what it missed, and the history page's
//! live tail asks again after its feed comes back.

use std::time::{Duration, Instant};

use fantoccini::Client;
use serde_json::json;

use crate::browser::{attribute, signed_in_browser, text};
use crate::harness::{Gateway, TestServer, eventually};
use trackside_wire::Role;

const CHART: &str = "[data-testid=history-chart]";
const PILL: &str = "[data-testid=connection-state]";

async fn wait_attr(client: &Client, css: &str, name: &str, want: &str) {
    let what = format!("{css} {name}={want}");
    eventually(&what, || async {
        (attribute(client, css, name).await.as_deref() == Some(want)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_app_reconnects_after_a_restart() {
    let server = TestServer::start().await;
    let mut gateway = server.gateway("gw-rc").await;
    let now = chrono::Utc::now().timestamp_millis();
    gateway
        .publish(
            "trackside/gw-rc/readings",
            json!({"ts": now, "readings": [{"channel": "T101/relay_voltage", "value": 1.0}]})
                .to_string(),
        )
        .await;
    eventually("stored", || async {
        (!server.stored("T101/relay_voltage").await.is_empty()).then_some(())
    })
    .await;

    let (_driver, client) = signed_in_browser(&server, "Vera Viewer", Role::Viewer).await;
    client.goto(&server.url("/")).await.unwrap();
    wait_attr(&client, PILL, "data-state", "live").await;
    eventually("1.000", || async {
        (text(&client, "[data-channel='T101/relay_voltage']")
            .await
            .as_deref()
            == Some("1.000"))
        .then_some(())
    })
    .await;

    let pool = server.pool.clone();
    let mut config = server.config.clone();
    config.http.listen = server.running.http_addr;
    drop(gateway);
    server.running.shutdown().await;
    let down = Instant::now();
    wait_attr(&client, PILL, "data-state", "reconnecting").await;
    // Watch the pill for 8 s of outage: the countdown labels.
    let mut labels = Vec::new();
    while down.elapsed() < Duration::from_secs(8) {
        if let Some(l) = text(&client, &format!("{PILL} .pill-label")).await
            && labels.last() != Some(&l)
        {
            labels.push(l);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        labels.iter().any(|l| l.starts_with("Reconnecting in")),
        "the pill counts down to the next attempt: {labels:?}"
    );

    let restarted = trackside::start(&config, pool.clone())
        .await
        .expect("restart");
    let mut gateway = Gateway::connect(restarted.mqtt_addr.port(), "gw-rc").await;
    gateway
        .publish(
            "trackside/gw-rc/readings",
            json!({"ts": now + 1000, "readings": [{"channel": "T101/relay_voltage", "value": 2.0}]}).to_string(),
        )
        .await;
    eventually("stored again", || async {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM readings")
            .fetch_one(&pool)
            .await
            .ok()?;
        (n == 2).then_some(())
    })
    .await;
    // Published right after the restart, most likely while the board
    // still waits out its backoff: the snapshot fetched at the reconnect
    // must show it.
    wait_attr(&client, PILL, "data-state", "live").await;
    eventually("2.000 after reconnecting", || async {
        (text(&client, "[data-channel='T101/relay_voltage']")
            .await
            .as_deref()
            == Some("2.000"))
        .then_some(())
    })
    .await;

    // The history page's live tail across a second restart.
    let url = format!(
        "http://{}/history?channels=T101/relay_voltage&span=900000&live=1",
        restarted.http_addr
    );
    client.goto(&url).await.unwrap();
    wait_attr(&client, CHART, "data-state", "ready").await;
    wait_attr(&client, CHART, "data-following", "true").await;
    let from_before = attribute(&client, CHART, "data-from").await;
    drop(gateway);
    restarted.shutdown().await;
    wait_attr(&client, CHART, "data-following", "false").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = trackside::start(&config, pool.clone())
        .await
        .expect("restart 2");
    wait_attr(&client, CHART, "data-following", "true").await;
    eventually("a new request after the reconnect", || async {
        let from = attribute(&client, CHART, "data-from").await;
        (from != from_before
            && attribute(&client, CHART, "data-state").await.as_deref() == Some("ready"))
        .then_some(())
    })
    .await;
    let mut gateway = Gateway::connect(again.mqtt_addr.port(), "gw-rc").await;
    let fresh = chrono::Utc::now().timestamp_millis();
    gateway
        .publish(
            "trackside/gw-rc/readings",
            json!({"ts": fresh, "readings": [{"channel": "T101/relay_voltage", "value": 2.5}]})
                .to_string(),
        )
        .await;
    eventually("the live reading after the reconnect", || async {
        (attribute(&client, CHART, "data-newest")
            .await?
            .parse::<i64>()
            .ok()?
            == fresh)
            .then_some(())
    })
    .await;
    // Live off: the feed stops and the hook says so.
    client
        .find(fantoccini::Locator::Css("[data-testid=history-live]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_attr(&client, CHART, "data-following", "false").await;
    client.close().await.unwrap();
    again.shutdown().await;
}
