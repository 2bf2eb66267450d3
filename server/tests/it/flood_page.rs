//! An alarm flood in the app, in a real headless Chromium: the banner and
//! the header say a flood is on, the list shows the flood group as one
//! summary row, which expands to its members, and an operator acknowledges
//! the whole group with one comment.

use fantoccini::{Client, Locator};
use trackside_wire::Role;

use crate::alarm_page::click;
use crate::browser::{attribute, screenshot_to, signed_in_browser, text, wait_for_attribute};
use crate::exceptions::{batch, fast_config, now_ms};
use crate::harness::{TestServer, eventually};

/// Relay voltage low on this many circuits at once: over the default 10.
const RAISES: usize = 12;

async fn shown(client: &Client, css: &str) -> bool {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_flood_group_is_one_row_that_expands_and_is_acknowledged_together() {
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
    assert!(
        !shown(&client, "[data-testid=flood-banner]").await,
        "no flood yet"
    );

    let mut gateway = server.gateway("yard-gw02").await;
    let channels: Vec<String> = (1..=RAISES)
        .map(|n| format!("T{}/relay_voltage", 300 + n))
        .collect();
    let readings: Vec<(&str, f64)> = channels.iter().map(|c| (c.as_str(), 0.5)).collect();
    gateway
        .publish("trackside/yard-gw02/readings", batch(now_ms(), &readings))
        .await;

    // One row for the group, with the summary's words.
    let group = "[data-testid=flood-group]";
    wait_for_attribute(&client, group, "data-members", &RAISES.to_string()).await;
    assert_eq!(
        attribute(&client, group, "data-group").await.as_deref(),
        Some("limit@yard-gw02")
    );
    let summary = text(&client, "[data-testid=flood-group-summary]").await;
    assert_eq!(summary.as_deref(), Some("12 limit alarms on yard-gw02"));
    let rows = client
        .find_all(Locator::Css("[data-testid=exceptions-list] > li"))
        .await
        .expect("the list's rows");
    assert_eq!(rows.len(), 1, "the twelve are one row");
    // The flood is announced at the top of the page and in the header.
    assert!(shown(&client, "[data-testid=flood-banner]").await);
    let banner = text(&client, "[data-testid=flood-banner]")
        .await
        .unwrap_or_default();
    assert!(banner.contains("ALARM FLOOD · 12 raises"), "{banner}");
    assert!(banner.contains("12 limit alarms on yard-gw02"), "{banner}");
    assert!(shown(&client, "[data-testid=header-flood]").await);

    // Folded: the members are there, hidden; the toggle shows them.
    let member = "[data-testid=flood-members] [data-exception-id]";
    assert!(!shown(&client, member).await, "folded at first");
    click(&client, "[data-testid=flood-group-toggle]").await;
    eventually("the members shown", || async {
        shown(&client, member).await.then_some(())
    })
    .await;
    let members = client
        .find_all(Locator::Css(member))
        .await
        .expect("members");
    assert_eq!(members.len(), RAISES);
    client
        .execute(
            "document.querySelector('[data-testid=flood-group-toggle]').scrollIntoView({block: 'center'});",
            Vec::new(),
        )
        .await
        .expect("scroll to the group");
    if let Ok(png) = client.screenshot().await {
        screenshot_to("flood-group.png", png);
    }

    // Acknowledge all: one comment for every member.
    click(&client, "[data-testid=flood-group-ack]").await;
    client
        .wait()
        .for_element(Locator::Css("[data-testid=group-ack-dialog]"))
        .await
        .expect("the dialog");
    client
        .find(Locator::Css("[data-testid=group-ack-comment]"))
        .await
        .expect("the comment field")
        .send_keys("gw02 feed fuse replaced")
        .await
        .expect("type a comment");
    click(&client, "[data-testid=group-ack-submit]").await;
    wait_for_attribute(&client, group, "data-unacknowledged", "0").await;
    let acked = eventually("every member acknowledged", || async {
        let list = crate::exceptions::exceptions(&server, "?rule=rv-low").await;
        (list.len() == RAISES && list.iter().all(|e| e.acknowledged)).then_some(list)
    })
    .await;
    assert!(
        acked
            .iter()
            .all(|e| e.acked_by.as_deref() == Some("Ann Signaller")
                && e.ack_comment.as_deref() == Some("gw02 feed fuse replaced"))
    );
    assert!(
        client
            .find(Locator::Css("[data-testid=flood-group-ack]"))
            .await
            .is_err(),
        "nothing left to acknowledge"
    );
    if let Ok(png) = client.screenshot().await {
        screenshot_to("flood-group-acknowledged.png", png);
    }

    // The link in the flood's summaries opens the page with its groups
    // expanded.
    let flood = attribute(&client, group, "data-flood")
        .await
        .expect("the flood's id");
    client
        .goto(&server.url(&format!("/exceptions?flood={flood}")))
        .await
        .expect("open the summary's link");
    wait_for_attribute(&client, group, "data-members", &RAISES.to_string()).await;
    eventually("the linked flood's members shown", || async {
        shown(&client, member).await.then_some(())
    })
    .await;
}
