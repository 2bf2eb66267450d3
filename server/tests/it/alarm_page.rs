//! The alarm in a real headless Chromium: an unacknowledged high-priority
//! exception plays the sound (the audio element really plays), counts in
//! the title and the favicon, can be muted for a while, and stops when it
//! is acknowledged.

use fantoccini::{Client, Locator};
use serde_json::json;
use trackside_wire::Role;

use crate::browser::{attribute, screenshot_to, signed_in_browser, wait_for_attribute};
use crate::exceptions::{ack, batch, fast_config, now_ms};
use crate::harness::{TestServer, eventually};

/// The alarm's audio element: (paused, currentTime, loop).
async fn audio(client: &Client) -> (bool, f64, bool) {
    let value = client
        .execute(
            "const a = document.querySelector('[data-testid=alarm-sound]');
             return [a.paused, a.currentTime, a.loop];",
            Vec::new(),
        )
        .await
        .expect("read the audio element");
    (
        value[0].as_bool().unwrap_or(true),
        value[1].as_f64().unwrap_or(0.0),
        value[2].as_bool().unwrap_or(false),
    )
}

async fn title_and_icon(client: &Client) -> (String, String) {
    let value = client
        .execute(
            "return [document.title, document.querySelector('link[rel=icon]').getAttribute('href')];",
            Vec::new(),
        )
        .await
        .expect("read the title and icon");
    (
        value[0].as_str().unwrap_or_default().to_owned(),
        value[1].as_str().unwrap_or_default().to_owned(),
    )
}

pub(crate) async fn click(client: &Client, css: &str) {
    client
        .wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("{css}"))
        .click()
        .await
        .unwrap_or_else(|_| panic!("click {css}"));
}

#[tokio::test]
async fn a_high_priority_raise_sounds_until_it_is_acknowledged() {
    let server = TestServer::start_with(fast_config()).await;
    let (_driver, client) = signed_in_browser(&server, "Ann Signaller", Role::Operator).await;
    client
        .goto(&server.url("/exceptions"))
        .await
        .expect("open the exception page");
    wait_for_attribute(
        &client,
        "[data-testid=connection-state]",
        "data-state",
        "live",
    )
    .await;
    // Browsers play sound only on a page someone has clicked: the
    // operator's first click of the shift.
    click(&client, "[data-testid=exceptions-empty]").await;
    assert_eq!(
        title_and_icon(&client).await,
        ("Trackside".to_owned(), "/favicon.svg".to_owned())
    );
    let (paused, _, looped) = audio(&client).await;
    assert!(
        paused && looped,
        "quiet before any alarm, and set to repeat"
    );

    // rv-low is major; T201 is not in a layout, so a running line: high.
    let mut gateway = server.gateway("gw-snd").await;
    let t = now_ms();
    gateway
        .publish(
            "trackside/gw-snd/readings",
            batch(
                t,
                &[("T201/relay_state", 1.0), ("T201/relay_voltage", 0.55)],
            ),
        )
        .await;
    let row = "[data-testid=exceptions-list] [data-exception-id]";
    wait_for_attribute(&client, row, "data-priority", "high").await;
    wait_for_attribute(
        &client,
        "[data-testid=alarm-control]",
        "data-state",
        "sounding",
    )
    .await;
    // Playing: not paused, and its time moves on.
    let played = eventually("the alarm sound to play", || async {
        let (paused, time, _) = audio(&client).await;
        (!paused && time > 0.2).then_some(time)
    })
    .await;
    assert!(played > 0.2);
    // Desktop notifications are offered with the alarm.
    client
        .find(Locator::Css("[data-testid=notifications-offer]"))
        .await
        .expect("desktop notifications offered");
    let (title, icon) = title_and_icon(&client).await;
    assert_eq!(title, "(1) HIGH · Trackside");
    assert!(
        icon.starts_with("data:image/svg+xml,") && icon.contains(">1</text>"),
        "{icon}"
    );
    if let Ok(png) = client.screenshot().await {
        screenshot_to("alarm-sounding.png", png);
    }

    // Muted for a while: silent, still counted.
    click(&client, "[data-testid=alarm-mute]").await;
    wait_for_attribute(
        &client,
        "[data-testid=alarm-control]",
        "data-state",
        "muted",
    )
    .await;
    eventually("the sound to stop while muted", || async {
        audio(&client).await.0.then_some(())
    })
    .await;
    assert_eq!(title_and_icon(&client).await.0, "(1) HIGH · Trackside");
    click(&client, "[data-testid=alarm-unmute]").await;
    eventually("the sound to play again", || async {
        (!audio(&client).await.0).then_some(())
    })
    .await;

    // Acknowledged (from another desk): the sound stops everywhere.
    let id: i64 = attribute(&client, row, "data-exception-id")
        .await
        .and_then(|id| id.parse().ok())
        .expect("the exception's id");
    let (status, _) = ack(&server, id, json!({"comment": "S&T on the way"})).await;
    assert_eq!(status, 200);
    eventually("the alarm control to go", || async {
        client
            .find(Locator::Css("[data-testid=alarm-control]"))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    let (paused, time, _) = audio(&client).await;
    assert!(paused && time == 0.0, "stopped and rewound");
    assert_eq!(
        title_and_icon(&client).await,
        ("Trackside".to_owned(), "/favicon.svg".to_owned())
    );
}
