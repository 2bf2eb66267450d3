//! The link in an exception's e-mail and chat messages, `/exceptions?id=N`,
//! in a real headless Chromium: it lands on that one exception, scrolled
//! to, highlighted and open to its history; one no longer in the list is
//! fetched and said to be cleared; an unknown id is said to be unknown.

use fantoccini::Client;
use serde_json::json;
use trackside_wire::Role;

use crate::browser::{attribute, screenshot_to, signed_in_browser, text, wait_for_attribute};
use crate::exceptions::{ack, batch, exceptions, fast_config, now_ms};
use crate::harness::{TestServer, eventually};

/// Low relay voltage on this many circuits: a list longer than the screen,
/// and under the 10 raises that would make a flood.
const RAISES: usize = 9;

/// Whether the element is wholly within the window.
async fn in_view(client: &Client, css: &str) -> bool {
    let script = "const r = document.querySelector(arguments[0]).getBoundingClientRect();
                  return r.top >= 0 && r.bottom <= window.innerHeight;";
    client
        .execute(script, vec![json!(css)])
        .await
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

async fn open(client: &Client, server: &TestServer, path: &str) {
    client.goto(&server.url(path)).await.expect("open the link");
    wait_for_attribute(
        client,
        "[data-testid=connection-state]",
        "data-state",
        "live",
    )
    .await;
}

#[tokio::test]
async fn an_exception_link_opens_that_exception_or_says_what_became_of_it() {
    let server = TestServer::start_with(fast_config()).await;
    let mut gateway = server.gateway("yard-gw05").await;
    let t = now_ms();
    let readings: Vec<(String, f64)> = (1..=RAISES)
        .flat_map(|n| {
            [
                (format!("T{}/relay_state", 500 + n), 1.0),
                (format!("T{}/relay_voltage", 500 + n), 0.6),
            ]
        })
        .collect();
    let readings: Vec<(&str, f64)> = readings.iter().map(|(c, v)| (c.as_str(), *v)).collect();
    gateway
        .publish("trackside/yard-gw05/readings", batch(t, &readings))
        .await;
    let raised = eventually("every raise stored", || async {
        let list = exceptions(&server, "?rule=rv-low").await;
        (list.len() == RAISES).then_some(list)
    })
    .await;
    assert!(raised.iter().all(|e| e.flood.is_none()), "not a flood");
    // The last in the page's order: below the fold unless scrolled to.
    let target = raised.last().expect("an exception").id;

    let (_driver, client) = signed_in_browser(&server, "Ann Signaller", Role::Operator).await;
    open(&client, &server, &format!("/exceptions?id={target}")).await;
    let row = format!("[data-testid=exceptions-list] [data-exception-id='{target}']");
    wait_for_attribute(&client, &row, "data-linked", "true").await;
    let linked = client
        .find_all(fantoccini::Locator::Css("[data-linked=true]"))
        .await
        .expect("linked rows");
    assert_eq!(linked.len(), 1, "only the linked row is highlighted");
    let class = attribute(&client, &row, "class").await.unwrap_or_default();
    assert!(class.split(' ').any(|c| c == "linked"), "{class}");
    // Open to its history: the raise, with its message.
    let history = format!("{row} [data-testid=exception-history]");
    let raise = eventually("its history shown", || async {
        text(&client, &format!("{history} [data-kind=raised]")).await
    })
    .await;
    assert!(raise.contains("RAISED"), "{raise}");
    assert!(raise.contains("Relay voltage low"), "{raise}");
    eventually("the linked row scrolled into view", || async {
        in_view(&client, &row).await.then_some(())
    })
    .await;
    if let Ok(png) = client.screenshot().await {
        screenshot_to("exception-link.png", png);
    }
    // The other rows are plain.
    let other = raised.first().expect("another exception").id;
    assert_eq!(
        attribute(
            &client,
            &format!("[data-exception-id='{other}']"),
            "data-linked"
        )
        .await
        .as_deref(),
        Some("false")
    );
    assert!(
        text(&client, &format!("[data-exception-id='{other}']"))
            .await
            .is_some_and(|t| !t.contains("RAISED")),
        "only the linked row is open"
    );

    // Cleared and acknowledged: closed, no longer in the open list. The
    // link still shows it, and says so.
    let channel = raised.last().expect("the target").subject.clone();
    gateway
        .publish(
            "trackside/yard-gw05/readings",
            batch(now_ms(), &[(channel.as_str(), 1.4)]),
        )
        .await;
    eventually("the target cleared", || async {
        let list = exceptions(&server, "?rule=rv-low&active=false").await;
        list.iter().any(|e| e.id == target).then_some(())
    })
    .await;
    let (status, _) = ack(&server, target, json!({"comment": "bond replaced"})).await;
    assert_eq!(status, 200);
    open(&client, &server, &format!("/exceptions?id={target}")).await;
    let notice = "[data-testid=linked-exception]";
    let state = eventually("the notice says what became of it", || async {
        text(&client, &format!("{notice} [data-testid=linked-state]"))
            .await
            .filter(|t| t.contains("no longer open"))
    })
    .await;
    assert!(
        state.starts_with(&format!(
            "Exception #{target} is no longer open — it was cleared at "
        )),
        "{state}"
    );
    assert!(
        state.contains("acknowledged by Ann Signaller at"),
        "{state}"
    );
    assert!(state.contains("UTC"), "the UTC time at hand: {state}");
    let shown = format!("{notice} [data-exception-id='{target}']");
    assert_eq!(
        attribute(&client, &shown, "data-exception-state")
            .await
            .as_deref(),
        Some("closed")
    );
    assert_eq!(
        attribute(&client, &shown, "data-linked").await.as_deref(),
        Some("true")
    );
    let kinds = eventually("its whole history", || async {
        let history = text(&client, &format!("{shown} [data-testid=exception-history]")).await?;
        history.contains("ACKNOWLEDGED").then_some(history)
    })
    .await;
    assert!(
        kinds.contains("CLEARED") && kinds.contains("bond replaced"),
        "{kinds}"
    );
    assert!(
        attribute(
            &client,
            &format!("[data-testid=exceptions-list] [data-exception-id='{target}']"),
            "data-exception-id"
        )
        .await
        .is_none(),
        "not in the open list"
    );
    if let Ok(png) = client.screenshot().await {
        screenshot_to("exception-link-closed.png", png);
    }

    // An id that never was: said plainly, and the list is still there.
    open(&client, &server, "/exceptions?id=987654321").await;
    let unknown = eventually("the unknown id said", || async {
        text(&client, "[data-testid=linked-exception]")
            .await
            .filter(|t| t.contains("987654321"))
    })
    .await;
    assert!(
        unknown.contains("There is no exception #987654321"),
        "{unknown}"
    );
    client.close().await.expect("close the browser");
}
