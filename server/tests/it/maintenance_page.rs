//! Maintenance windows and the priority mix in a real headless Chromium:
//! an operator plans a window from the maintenance page (refused until it
//! says what and why), the diagram marks the circuit it covers and only
//! that one, the history chart lists it over its range, the exceptions
//! page's priority mix agrees with the server's, and ending the window
//! moves it to the ended list.

use fantoccini::{Client, Locator};
use trackside_wire::{PriorityMix, Role};

use crate::alarm_page::click;
use crate::browser::{screenshot_to, signed_in_browser, text, wait_for_text};
use crate::exceptions::{batch, exceptions, fast_config, now_ms};
use crate::harness::eventually;
use crate::yard::server_with_layout;

async fn type_into(client: &Client, css: &str, keys: &str) {
    client
        .wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(keys)
        .await
        .unwrap_or_else(|e| panic!("type into {css}: {e}"));
}

async fn present(client: &Client, css: &str) -> bool {
    client.find(Locator::Css(css)).await.is_ok()
}

#[tokio::test]
async fn an_operator_plans_a_window_the_diagram_and_chart_show_it() {
    // LINE_LAYOUT: A, B, C running lines, D a siding.
    let (server, _layout) = server_with_layout(fast_config()).await;
    let mut gateway = server.gateway("gw-mnt").await;
    gateway
        .publish(
            "trackside/gw-mnt/readings",
            batch(
                now_ms(),
                &[
                    ("A/relay_state", 1.0),
                    ("A/relay_voltage", 1.5),
                    ("B/relay_state", 1.0),
                    ("B/relay_voltage", 0.55),
                ],
            ),
        )
        .await;
    eventually("B's exception stored", || async {
        exceptions(&server, "?open=true")
            .await
            .into_iter()
            .find(|e| e.circuit.as_deref() == Some("B"))
    })
    .await;

    let (_driver, client) = signed_in_browser(&server, "Otto Operator", Role::Operator).await;
    client.goto(&server.url("/")).await.expect("open the app");
    click(&client, "nav a[href='/maintenance']").await;
    wait_for_text(
        &client,
        "[data-testid=windows-active] .notice-text",
        "No window holds now.",
    )
    .await;

    // Refused until it names what and why.
    click(&client, "[data-testid=plan-window-submit]").await;
    let refusal = text(&client, "[data-testid=plan-window-error]").await;
    assert!(
        refusal
            .as_deref()
            .is_some_and(|t| t.contains("Name the circuits")),
        "{refusal:?}"
    );
    type_into(&client, "[data-testid=window-circuits]", "A").await;
    type_into(
        &client,
        "[data-testid=window-reason]",
        "Rail grinding, WO 4711",
    )
    .await;
    click(&client, "[data-testid=plan-window-submit]").await;
    wait_for_text(
        &client,
        "[data-testid=windows-active] [data-testid=window-scope]",
        "A",
    )
    .await;
    let done = text(&client, "[data-testid=plan-window-done]").await;
    assert_eq!(done.as_deref(), Some("Started a window over A."));
    let stored: (Vec<String>, String, String) =
        sqlx::query_as("SELECT circuits, reason, created_by FROM maintenance_windows")
            .fetch_one(&server.pool)
            .await
            .expect("the stored window");
    assert_eq!(
        stored,
        (
            vec!["A".to_owned()],
            "Rail grinding, WO 4711".to_owned(),
            "Otto Operator".to_owned()
        )
    );
    if let Ok(png) = client.screenshot().await {
        screenshot_to("maintenance-page.png", png);
    }

    // The diagram marks A, and only A.
    client
        .goto(&server.url("/diagram"))
        .await
        .expect("open the diagram");
    eventually("A marked as under maintenance", || async {
        present(&client, "g.section.maintenance[data-circuit=A]")
            .await
            .then_some(())
    })
    .await;
    assert!(!present(&client, "g.section.maintenance[data-circuit=B]").await);
    let shown = client
        .execute(
            "return getComputedStyle(document.querySelector('[data-maintenance-of=A]')).display;",
            Vec::new(),
        )
        .await
        .expect("the label's display");
    assert!(shown.as_str().is_some_and(|d| d != "none"), "{shown}");
    let hidden = client
        .execute(
            "return getComputedStyle(document.querySelector('[data-maintenance-of=B]')).display;",
            Vec::new(),
        )
        .await
        .expect("B's label's display");
    assert_eq!(hidden.as_str(), Some("none"));
    if let Ok(png) = client.screenshot().await {
        screenshot_to("maintenance-diagram.png", png);
    }

    // The history chart of A's channel lists the window over its range.
    client
        .goto(&server.url("/history?channels=A/relay_voltage&span=3600000&live=1"))
        .await
        .expect("open the history");
    eventually("the window listed under the chart", || async {
        text(&client, "[data-testid=chart-maintenance]")
            .await
            .filter(|t| t.contains("Maintenance A") && t.contains("Rail grinding, WO 4711"))
    })
    .await;
    // A window planned ahead, charted over a fixed range around it: its
    // band is painted on the canvas, behind the series.
    let t = now_ms();
    let (status, planned) = crate::alarms::as_operator(
        &server,
        reqwest::Method::POST,
        "/api/maintenance",
        Some(serde_json::json!({
            "circuits": ["A"], "reason": "Tamping",
            "starts_at": t + 3_600_000, "ends_at": t + 7_200_000
        })),
    )
    .await;
    assert_eq!(status, 200, "{planned}");
    client
        .goto(&server.url(&format!(
            "/history?channels=A/relay_voltage&from={t}&to={}",
            t + 3 * 3_600_000
        )))
        .await
        .expect("open the history ahead");
    eventually("the planned window listed", || async {
        text(&client, "[data-testid=chart-maintenance]")
            .await
            .filter(|t| t.contains("Tamping"))
    })
    .await;
    // Mean green of a 20 px square of the plot canvas at a fraction of
    // its width: the band spans a third to two thirds of the plot.
    let green_at = |fraction: f64| {
        let client = &client;
        async move {
            let script = format!(
                "const c = document.querySelector('[data-testid=history-chart] canvas');
                 const x = Math.round(c.width * {fraction}), y = Math.round(c.height * 0.4);
                 const d = c.getContext('2d').getImageData(x, y, 20, 20).data;
                 let g = 0; for (let i = 1; i < d.length; i += 4) g += d[i];
                 return g / (d.length / 4);"
            );
            client
                .execute(&script, Vec::new())
                .await
                .expect("read the canvas")
                .as_f64()
                .unwrap_or_default()
        }
    };
    let (inside, outside) = eventually("the band painted", || async {
        let (inside, outside) = (green_at(0.5).await, green_at(0.9).await);
        (inside > outside + 8.0).then_some((inside, outside))
    })
    .await;
    assert!(inside > outside, "{inside} vs {outside}");
    if let Ok(png) = client.screenshot().await {
        screenshot_to("maintenance-history.png", png);
    }
    // B's chart has no window.
    client
        .goto(&server.url("/history?channels=B/relay_voltage&span=3600000&live=1"))
        .await
        .expect("open B's history");
    eventually("B's chart drawn", || async {
        present(&client, "[data-testid=history-chart][data-state=ready]")
            .await
            .then_some(())
    })
    .await;
    assert!(!present(&client, "[data-testid=chart-maintenance]").await);

    // The exceptions page's priority mix says what the server counts.
    let (status, mix) = crate::alarms::as_operator(
        &server,
        reqwest::Method::GET,
        "/api/exceptions/mix?days=7",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let mix: PriorityMix = serde_json::from_value(mix).expect("a priority mix");
    let high = mix.priorities[0].share.expect("something was raised");
    client
        .goto(&server.url("/exceptions"))
        .await
        .expect("open the exceptions");
    wait_for_text(
        &client,
        "[data-testid=mix-share-high]",
        &format!("{:.0} %", high * 100.0),
    )
    .await;

    // Ended from the page: it moves to the ended list.
    click(&client, "nav a[href='/maintenance']").await;
    // The lists re-render when the page's fetch lands: click what is there
    // then, again if the row was replaced under the pointer.
    eventually("End now clicked", || async {
        let button = client
            .find(Locator::Css(
                "[data-testid=windows-active] [data-testid=end-window]",
            ))
            .await
            .ok()?;
        button.click().await.ok()
    })
    .await;
    wait_for_text(
        &client,
        "[data-testid=windows-ended] [data-testid=window-scope]",
        "A",
    )
    .await;
    let ended_by: (Option<String>,) =
        sqlx::query_as("SELECT ended_by FROM maintenance_windows WHERE reason LIKE 'Rail%'")
            .fetch_one(&server.pool)
            .await
            .expect("the ended window");
    assert_eq!(ended_by.0.as_deref(), Some("Otto Operator"));
}

#[tokio::test]
async fn a_viewer_sees_the_windows_but_is_not_offered_the_form() {
    let (server, _layout) = server_with_layout(fast_config()).await;
    let (_driver, client) = signed_in_browser(&server, "Vera Viewer", Role::Viewer).await;
    client
        .goto(&server.url("/maintenance"))
        .await
        .expect("open the maintenance page");
    wait_for_text(
        &client,
        "[data-testid=view-only]",
        "You can view maintenance windows; planning and ending them needs the operator role.",
    )
    .await;
    assert!(!present(&client, "[data-testid=plan-window]").await);
}
