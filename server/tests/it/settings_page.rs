//! The user's e-mail routes from the app in a real headless Chromium: an
//! operator enters an address and an out-of-hours route for some
//! circuits, saves, and the server holds exactly that (and audits it).

use fantoccini::Locator;
use trackside_wire::{NotifySettings, Priority, Role};

use crate::alarm_page::click;
use crate::browser::{screenshot_to, signed_in_browser, text};
use crate::harness::{TestServer, eventually};

#[tokio::test]
async fn an_operator_sets_their_e_mail_routes_on_their_settings_page() {
    let server = TestServer::start().await;
    let (_driver, client) = signed_in_browser(&server, "Ann Signaller", Role::Operator).await;
    client.goto(&server.url("/")).await.expect("open the app");
    // From the user menu, beside who is signed in.
    click(&client, ".user-menu [data-testid=my-alarms]").await;
    let email = client
        .wait()
        .for_element(Locator::Css("[data-testid=notify-email]"))
        .await
        .expect("the address field");
    email.send_keys("ann@yard.example").await.unwrap();
    click(&client, "[data-testid=add-route]").await;
    let circuits = client
        .wait()
        .for_element(Locator::Css("[data-route='0'] input[type=text]"))
        .await
        .expect("the route's circuits");
    circuits.send_keys("T1*, P2").await.unwrap();
    // The change event fires when the field loses focus.
    client
        .execute(
            "document.querySelector(\"[data-route='0'] input[type=text]\")\
             .dispatchEvent(new Event('change'));",
            Vec::new(),
        )
        .await
        .unwrap();
    click(&client, "[data-testid=save-routes]").await;
    eventually("saved", || async {
        text(&client, "[data-testid=settings-status]")
            .await
            .filter(|t| t.starts_with("Saved"))
    })
    .await;
    if let Ok(png) = client.screenshot().await {
        screenshot_to("settings-page.png", png);
    }
    let token = server.token_of("Ann Signaller", Role::Operator).await;
    let mine: NotifySettings =
        crate::harness::client_with(&[("authorization", format!("Bearer {token}"))])
            .get(server.url("/api/me/notifications"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(mine.email.as_deref(), Some("ann@yard.example"));
    assert_eq!(mine.routes.len(), 1);
    let route = &mine.routes[0];
    assert_eq!(route.circuits, ["T1*", "P2"]);
    assert_eq!(route.min_priority, Priority::High);
    assert_eq!(route.hours, Some([18, 6]), "out of hours by default");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'notifications.set' \
         AND actor = 'Ann Signaller' AND target = 'Ann Signaller'",
    )
    .fetch_one(&server.pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);
}
