//! The diagram in a real headless Chromium: live colours, the circuit
//! panel, and replay of a recorded interval.

use fantoccini::actions::{InputSource as _, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use fantoccini::{Client, Locator};
use serde_json::json;

use crate::browser::{attribute, csp_violations, screenshot_to, signed_in_browser, text};
use crate::harness::{Gateway, TestServer, eventually, test_config};
use crate::yard::server_with_layout;
use trackside_wire::Role;

async fn wait_attribute(client: &Client, css: &str, name: &str, want: &str) {
    let what = format!("{css} to have {name}={want:?}");
    eventually(&what, || async {
        (attribute(client, css, name).await.as_deref() == Some(want)).then_some(())
    })
    .await;
}

async fn send(gateway: &mut Gateway, ts: i64, readings: &[(&str, f64)]) {
    let readings: Vec<_> = readings
        .iter()
        .map(|(channel, value)| json!({"channel": channel, "value": value}))
        .collect();
    gateway
        .publish(
            "trackside/gw-diagram/readings",
            json!({"ts": ts, "readings": readings}).to_string(),
        )
        .await;
}

/// Clicks an element as a person would, after scrolling it to the middle
/// of the window (the sticky header covers the top).
async fn click(client: &Client, css: &str) {
    let element = client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    let argument = serde_json::to_value(&element).expect("an element as a script argument");
    client
        .execute(
            "arguments[0].scrollIntoView({block: 'center'});",
            vec![argument],
        )
        .await
        .expect("scrolling to the element");
    element
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

async fn open_live(server: &TestServer, client: &Client) {
    client
        .goto(&server.url("/diagram"))
        .await
        .expect("open the diagram");
    wait_attribute(
        client,
        "[data-testid=connection-state]",
        "data-state",
        "live",
    )
    .await;
    wait_attribute(client, ".diagram-body", "data-mode", "live").await;
}

/// Clicks a section with the mouse: WebDriver's element click refuses a
/// line, whose box has no height, as "not interactable".
async fn click_section(client: &Client, circuit: &str) {
    let css = format!("g.section[data-circuit={circuit}] polyline.track");
    let element = client
        .find(Locator::Css(&css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    let mouse = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element,
            duration: None,
            x: 0.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    client
        .perform_actions(mouse)
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

#[tokio::test]
async fn the_diagram_colours_a_section_when_its_relay_drops() {
    let (server, _layout) = server_with_layout(test_config()).await;
    let (_driver, client) = signed_in_browser(&server, "Vera Viewer", Role::Viewer).await;
    open_live(&server, &client).await;
    // Nothing heard yet: unknown.
    wait_attribute(
        &client,
        "g.section[data-circuit=B]",
        "data-state",
        "unknown",
    )
    .await;

    let mut gateway = server.gateway("gw-diagram").await;
    let now = chrono::Utc::now().timestamp_millis();
    send(
        &mut gateway,
        now,
        &[
            ("A/relay_state", 1.0),
            ("B/relay_state", 1.0),
            ("C/relay_state", 1.0),
        ],
    )
    .await;
    wait_attribute(&client, "g.section[data-circuit=B]", "data-state", "clear").await;
    // A train: B's relay drops.
    send(&mut gateway, now + 1_000, &[("B/relay_state", 0.0)]).await;
    wait_attribute(
        &client,
        "g.section[data-circuit=B]",
        "data-state",
        "occupied",
    )
    .await;
    assert_eq!(
        attribute(&client, "g.section[data-circuit=A]", "data-state")
            .await
            .as_deref(),
        Some("clear")
    );
    if let Ok(png) = client.screenshot().await {
        screenshot_to("diagram-live.png", png);
    }
    // And picks up again (3 s later: not a flick; within the 10 s a
    // timestamp may be ahead of the server's clock).
    send(&mut gateway, now + 4_000, &[("B/relay_state", 1.0)]).await;
    wait_attribute(&client, "g.section[data-circuit=B]", "data-state", "clear").await;
    client.close().await.expect("closing the browser session");
}

#[tokio::test]
async fn clicking_a_section_opens_its_panel_with_its_values_and_trains() {
    let (server, _layout) = server_with_layout(test_config()).await;
    let mut gateway = server.gateway("gw-diagram").await;
    let t0 = chrono::Utc::now().timestamp_millis() - 600_000;
    // A train through A, B and C ten minutes ago.
    for (offset, channel, value) in [
        (0, "A/relay_state", 1.0),
        (0, "B/relay_state", 1.0),
        (0, "C/relay_state", 1.0),
        (10_000, "A/relay_state", 0.0),
        (30_000, "B/relay_state", 0.0),
        (40_000, "A/relay_state", 1.0),
        (60_000, "C/relay_state", 0.0),
        (70_000, "B/relay_state", 1.0),
        (100_000, "C/relay_state", 1.0),
    ] {
        send(&mut gateway, t0 + offset, &[(channel, value)]).await;
    }
    send(
        &mut gateway,
        chrono::Utc::now().timestamp_millis(),
        &[("B/relay_voltage", 1.482)],
    )
    .await;
    eventually("the script stored", || async {
        (server.stored("C/relay_state").await.len() == 3).then_some(())
    })
    .await;

    let (_driver, client) = signed_in_browser(&server, "Vera Viewer", Role::Viewer).await;
    open_live(&server, &client).await;
    wait_attribute(&client, "g.section[data-circuit=B]", "data-state", "clear").await;
    click_section(&client, "B").await;
    wait_attribute(&client, "[data-testid=circuit-panel]", "data-circuit", "B").await;
    let value = eventually("B's relay voltage in the panel", || async {
        text(&client, "[data-panel-channel='B/relay_voltage']")
            .await
            .filter(|t| t == "1.482")
    })
    .await;
    assert_eq!(value, "1.482");
    let movement = eventually("the train in the panel", || async {
        text(
            &client,
            "[data-testid=panel-movements] [data-testid=movement]",
        )
        .await
    })
    .await;
    assert!(movement.contains("A → B → C"), "{movement}");
    assert!(movement.contains("40 s"), "B occupied 40 s: {movement}");
    assert_eq!(
        attribute(
            &client,
            "[data-testid=panel-movements] [data-testid=movement]",
            "data-entered"
        )
        .await,
        Some((t0 + 30_000).to_string())
    );
    let history = attribute(&client, "[data-testid=panel-history]", "href")
        .await
        .unwrap_or_default();
    assert!(history.contains("channels=B/relay_state"), "{history}");
    if let Ok(png) = client.screenshot().await {
        screenshot_to("diagram-panel.png", png);
    }
    click(&client, "[data-testid=panel-close]").await;
    eventually("the panel closed", || async {
        client
            .find(Locator::Css("[data-testid=circuit-panel]"))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    client.close().await.expect("closing the browser session");
}

#[tokio::test]
async fn replay_shows_the_recorded_states_at_the_right_times() {
    let (server, _layout) = server_with_layout(test_config()).await;
    let mut gateway = server.gateway("gw-diagram").await;
    let t0 = chrono::Utc::now().timestamp_millis() - 3_600_000;
    for (offset, channel, value) in [
        (0, "A/relay_state", 1.0),
        (0, "B/relay_state", 0.0),
        (0, "C/relay_state", 1.0),
        (20_000, "A/relay_state", 0.0),
        (25_000, "A/relay_state", 0.0),
        (40_000, "B/relay_state", 1.0),
        (60_000, "C/relay_state", 0.0),
        (80_000, "A/relay_state", 1.0),
    ] {
        send(&mut gateway, t0 + offset, &[(channel, value)]).await;
    }
    eventually("the script stored", || async {
        (server.stored("A/relay_state").await.len() == 4).then_some(())
    })
    .await;
    // Live now: A occupied, which replay must not show.
    send(
        &mut gateway,
        chrono::Utc::now().timestamp_millis(),
        &[("A/relay_state", 0.0)],
    )
    .await;

    let (_driver, client) = signed_in_browser(&server, "Vera Viewer", Role::Viewer).await;
    let (from, to) = (t0 + 10_000, t0 + 120_000);
    client
        .goto(&server.url(&format!("/diagram?from={from}&to={to}&at={from}&speed=600")))
        .await
        .expect("open the replay");
    wait_attribute(&client, "[data-testid=replay-bar]", "data-state", "ready").await;
    let states = |expected: [&'static str; 3]| {
        let client = client.clone();
        async move {
            let what = format!("A, B, C to be {expected:?}");
            eventually(&what, || async {
                let mut now = Vec::new();
                for circuit in ["A", "B", "C"] {
                    now.push(
                        attribute(
                            &client,
                            &format!("g.section[data-circuit={circuit}]"),
                            "data-state",
                        )
                        .await?,
                    );
                }
                (now == expected).then_some(())
            })
            .await;
        }
    };
    states(["clear", "occupied", "clear"]).await;
    assert_eq!(
        attribute(&client, "[data-testid=replay-time]", "data-at").await,
        Some(from.to_string())
    );
    // Step from change to change: the re-sent A at 25 s is not one.
    for (at, expected) in [
        (20_000, ["occupied", "occupied", "clear"]),
        (40_000, ["occupied", "clear", "clear"]),
        (60_000, ["occupied", "clear", "occupied"]),
    ] {
        click(&client, "[data-testid=replay-next]").await;
        wait_attribute(
            &client,
            "[data-testid=replay-time]",
            "data-at",
            &(t0 + at).to_string(),
        )
        .await;
        states(expected).await;
    }
    click(&client, "[data-testid=replay-prev]").await;
    wait_attribute(
        &client,
        "[data-testid=replay-time]",
        "data-at",
        &(t0 + 40_000).to_string(),
    )
    .await;
    states(["occupied", "clear", "clear"]).await;
    if let Ok(png) = client.screenshot().await {
        screenshot_to("diagram-replay.png", png);
    }
    // Played at 600× to the end (70 s of yard time is well under a second).
    click(&client, "[data-testid=replay-play]").await;
    wait_attribute(
        &client,
        "[data-testid=replay-time]",
        "data-at",
        &to.to_string(),
    )
    .await;
    wait_attribute(&client, "[data-testid=replay-bar]", "data-playing", "false").await;
    states(["clear", "clear", "occupied"]).await;
    // Back to live: the live state again.
    click(&client, "[data-testid=mode-live]").await;
    wait_attribute(
        &client,
        "g.section[data-circuit=A]",
        "data-state",
        "occupied",
    )
    .await;
    client.close().await.expect("closing the browser session");
}

#[tokio::test]
async fn an_exception_row_opens_the_replay_around_it() {
    let mut config = test_config();
    config.exceptions.tick_ms = 100;
    let (server, _layout) = server_with_layout(config).await;
    let mut gateway = server.gateway("gw-diagram").await;
    let now = chrono::Utc::now().timestamp_millis();
    // A flick (shipped rules: under 2 s occupied).
    send(&mut gateway, now - 3_000, &[("C/relay_state", 1.0)]).await;
    send(&mut gateway, now - 2_000, &[("C/relay_state", 0.0)]).await;
    send(&mut gateway, now - 1_500, &[("C/relay_state", 1.0)]).await;
    let (_driver, client) = signed_in_browser(&server, "Vera Viewer", Role::Viewer).await;
    client
        .goto(&server.url("/exceptions"))
        .await
        .expect("open the exceptions");
    let link = "[data-testid=exceptions-list] [data-testid=exception-replay]";
    eventually("the flick listed", || async {
        client.find(Locator::Css(link)).await.ok().map(drop)
    })
    .await;
    click(&client, link).await;
    wait_attribute(&client, "[data-testid=replay-bar]", "data-state", "ready").await;
    let url = client.current_url().await.expect("the URL");
    assert!(url.path() == "/diagram", "{url}");
    // The raise is inside the replayed interval, on the timeline.
    eventually("the flick on the timeline", || async {
        client
            .find(Locator::Css(
                "[data-testid=replay-timeline] rect.span[data-severity=major]",
            ))
            .await
            .ok()
            .map(drop)
    })
    .await;
    client.close().await.expect("closing the browser session");
}

/// Sets a text area's value as typing would (an `input` event), in one step.
async fn fill(client: &Client, css: &str, value: &str) {
    let element = client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    let argument = serde_json::to_value(&element).expect("an element as a script argument");
    client
        .execute(
            "arguments[0].value = arguments[1];
             arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
            vec![argument, json!(value)],
        )
        .await
        .expect("filling the text area");
}

#[tokio::test]
async fn an_admin_replaces_the_layout_from_the_app() {
    let (server, dir) = server_with_layout(test_config()).await;
    let (_driver, client) = signed_in_browser(&server, "Ada Admin", Role::Admin).await;
    client
        .goto(&server.url("/admin/layout"))
        .await
        .expect("open the layout tab");
    wait_attribute(&client, "[data-testid=layout-status]", "data-state", "ok").await;
    let status = text(&client, "[data-testid=layout-status]").await.unwrap();
    assert!(
        status.contains("Test line") && status.contains("4 sections"),
        "{status}"
    );
    // The file in force is in the editor, and nothing is sent unedited.
    let editor = "[data-testid=layout-text]";
    eventually("the file in the editor", || async {
        let element = client.find(Locator::Css(editor)).await.ok()?;
        let value = element.prop("value").await.ok()??;
        (value == crate::yard::LINE_LAYOUT).then_some(())
    })
    .await;
    assert_eq!(
        attribute(&client, "[data-testid=layout-replace]", "disabled")
            .await
            .as_deref(),
        Some("true")
    );

    // A file with problems, opened from disk: refused, line by line.
    let broken = crate::yard::LINE_LAYOUT
        .replacen("circuit = \"C\"\npath", "circuit = \"Z\"\npath", 1)
        .replacen("reverse = \"D\"", "reverse = \"Q\"", 1);
    let file = dir.path().join("broken.toml");
    std::fs::write(&file, &broken).unwrap();
    client
        .find(Locator::Css("[data-testid=layout-file]"))
        .await
        .expect("the file input")
        .send_keys(&file.display().to_string())
        .await
        .expect("choosing the file");
    eventually("the file read into the editor", || async {
        let element = client.find(Locator::Css(editor)).await.ok()?;
        (element.prop("value").await.ok()?? == broken).then_some(())
    })
    .await;
    click(&client, "[data-testid=layout-replace]").await;
    eventually("the problems listed", || async {
        client
            .find(Locator::Css(
                "[data-testid=layout-problems] li[data-line='33']",
            ))
            .await
            .ok()
            .map(drop)
    })
    .await;
    let problems = text(&client, "[data-testid=layout-problems]")
        .await
        .unwrap();
    assert!(
        problems.contains("Line 25: ") && problems.contains("circuit Z is neither declared"),
        "{problems}"
    );
    assert!(
        problems.contains("Line 33: ") && problems.contains("no section Q"),
        "{problems}"
    );
    if let Ok(png) = client.screenshot().await {
        screenshot_to("layout-refused.png", png);
    }
    // A problem's line is one click away: its entry is selected.
    click(
        &client,
        "[data-testid=layout-problems] li[data-line='25'] button",
    )
    .await;
    let selected = client
        .execute(
            "const t = document.querySelector('[data-testid=layout-text]');
             return t.value.slice(t.selectionStart, t.selectionEnd);",
            vec![],
        )
        .await
        .expect("the selection");
    assert_eq!(
        selected,
        json!("[[section]]\ncircuit = \"Z\"\npath = [[200, 0], [300, 0]]")
    );
    // The refused file changed nothing.
    let on_disk = std::fs::read_to_string(dir.path().join("yard.toml")).unwrap();
    assert_eq!(on_disk, crate::yard::LINE_LAYOUT);

    // Fixed and extended in the editor: in force, and on the Diagram.
    let extended = format!(
        "{}\n[[circuit]]\nid = \"E\"\n\n[[section]]\ncircuit = \"E\"\npath = [[300, 0], [400, 0]]\n",
        crate::yard::LINE_LAYOUT
    );
    fill(&client, editor, &extended).await;
    click(&client, "[data-testid=layout-replace]").await;
    let replaced = eventually("the layout replaced", || async {
        text(&client, "[data-testid=layout-replaced]").await
    })
    .await;
    assert!(replaced.contains("5 sections on 5 circuits"), "{replaced}");
    eventually("the layout in force updated", || async {
        let status = text(&client, "[data-testid=layout-status]").await?;
        status.contains("5 sections").then_some(())
    })
    .await;
    if let Ok(png) = client.screenshot().await {
        screenshot_to("layout-replaced.png", png);
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("yard.toml")).unwrap(),
        extended
    );
    client
        .goto(&server.url("/diagram"))
        .await
        .expect("open the diagram");
    wait_attribute(
        &client,
        "g.section[data-circuit=E]",
        "data-state",
        "unknown",
    )
    .await;
    assert_eq!(csp_violations(&client).await, None);
    client.close().await.expect("closing the browser session");
}
