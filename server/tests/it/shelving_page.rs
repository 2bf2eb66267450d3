//! Shelving from the app in a real headless Chromium: an operator shelves
//! a sounding high-priority exception with a reason and a time, the alarm
//! stops and the title stops counting it, the "Shelved" view says who, why
//! and until when, and Unshelve brings the alarm back.

use fantoccini::{Client, Locator};
use trackside_wire::Role;

use crate::alarm_page::click;
use crate::browser::{attribute, screenshot_to, signed_in_browser, text, wait_for_attribute};
use crate::exceptions::{batch, fast_config, now_ms};
use crate::harness::{TestServer, eventually};

async fn find(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
}

async fn title(client: &Client) -> String {
    client
        .execute("return document.title;", Vec::new())
        .await
        .expect("the title")
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_operator_shelves_a_sounding_alarm_and_unshelves_it() {
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
    click(&client, "[data-testid=exceptions-empty]").await;

    // rv-low is major, T211 a running line: high, and it sounds.
    let mut gateway = server.gateway("gw-shp").await;
    gateway
        .publish(
            "trackside/gw-shp/readings",
            batch(
                now_ms(),
                &[("T211/relay_state", 1.0), ("T211/relay_voltage", 0.55)],
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

    // Shelved from its row: a reason is required, the time is chosen.
    click(&client, "[data-testid=shelve-open]").await;
    find(&client, "[data-testid=shelve-dialog]").await;
    click(&client, "[data-testid=shelve-submit]").await;
    let refusal = text(&client, "[data-testid=shelve-error]").await;
    assert!(
        refusal
            .as_deref()
            .is_some_and(|t| t.contains("Enter a reason")),
        "{refusal:?}"
    );
    find(&client, "[data-testid=shelve-duration]")
        .await
        .select_by_value("7200")
        .await
        .expect("choose 2 hours");
    find(&client, "[data-testid=shelve-reason]")
        .await
        .send_keys("Relay booked for replacement, WO 4711")
        .await
        .expect("type a reason");
    click(&client, "[data-testid=shelve-submit]").await;
    wait_for_attribute(&client, row, "data-shelved", "true").await;
    let chip = text(&client, "[data-testid=shelved]")
        .await
        .unwrap_or_default();
    assert!(
        chip.starts_with("SHELVED · until ")
            && (chip.ends_with("2 h 00 min left") || chip.ends_with("1 h 59 min left")),
        "{chip}"
    );

    // Quiet: no alarm control, and the title counts nothing.
    eventually("the alarm to stop", || async {
        client
            .find(Locator::Css("[data-testid=alarm-control]"))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert_eq!(title(&client).await, "Trackside");

    // The Shelved view: who, why and until when.
    find(&client, "[data-testid=filter-show]")
        .await
        .select_by_value("shelved")
        .await
        .expect("show shelved");
    find(&client, "[data-testid=shelf-reason]").await;
    assert_eq!(
        text(&client, "[data-testid=shelf-reason]").await.as_deref(),
        Some("Relay booked for replacement, WO 4711")
    );
    assert_eq!(
        text(&client, "[data-testid=shelf-by]").await.as_deref(),
        Some("Ann Signaller")
    );
    let until = text(&client, "[data-testid=shelf-until]")
        .await
        .unwrap_or_default();
    assert!(until.contains("left"), "{until}");
    assert_eq!(
        attribute(&client, row, "data-shelved").await.as_deref(),
        Some("true"),
        "the shelved exception is listed in the view"
    );
    if let Ok(png) = client.screenshot().await {
        screenshot_to("shelved-view.png", png);
    }
    let (action, actor): (String, Option<String>) =
        sqlx::query_as("SELECT action, actor FROM audit_log WHERE action = 'exception.shelve'")
            .fetch_one(&server.pool)
            .await
            .expect("the shelve audited");
    assert_eq!(
        (action.as_str(), actor.as_deref()),
        ("exception.shelve", Some("Ann Signaller"))
    );

    // Unshelved: shown again, and it sounds again.
    click(&client, "[data-testid=unshelve]").await;
    eventually("the shelf to go from the view", || async {
        client
            .find(Locator::Css("[data-testid=shelves-empty]"))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    find(&client, "[data-testid=filter-show]")
        .await
        .select_by_value("open")
        .await
        .expect("show open");
    wait_for_attribute(&client, row, "data-shelved", "false").await;
    wait_for_attribute(
        &client,
        "[data-testid=alarm-control]",
        "data-state",
        "sounding",
    )
    .await;
    assert_eq!(title(&client).await, "(1) HIGH · Trackside");
}
