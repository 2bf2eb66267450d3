//! The admin pages and the first sign-in of a new user, in Chromium.

use fantoccini::{Client, Locator};
use trackside_wire::Role;

use crate::browser::{
    attribute, browser, csp_violations, screenshot_to, signed_in_browser, text, wait_for_text,
};
use crate::harness::{TestServer, eventually};

pub(crate) async fn click(client: &Client, css: &str) {
    client
        .wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

pub(crate) async fn type_into(client: &Client, css: &str, keys: &str) {
    client
        .wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(keys)
        .await
        .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
}

async fn choose(client: &Client, css: &str, value: &str) {
    client
        .wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("choosing {value} in {css}: {e}"));
}

async fn secret_value(client: &Client) -> String {
    eventually("a secret shown once", || async {
        text(client, "[data-testid=secret-value]")
            .await
            .filter(|t| !t.is_empty())
    })
    .await
}

#[tokio::test]
async fn an_admin_manages_users_gateways_and_tokens_and_reads_the_audit_trail() {
    let server = TestServer::start().await;
    let (_driver, admin) = signed_in_browser(&server, "Ada Admin", Role::Admin).await;
    click(&admin, "nav a[href='/admin']").await;
    eventually("the users tab", || async {
        let url = admin.current_url().await.ok()?;
        (url.path() == "/admin/users").then_some(())
    })
    .await;

    // A new operator, with a one-time password shown once.
    type_into(&admin, "[data-testid=new-user-name]", "Nina New").await;
    choose(&admin, "[data-testid=new-user-role]", "operator").await;
    click(&admin, "[data-testid=add-user]").await;
    let password = secret_value(&admin).await;
    assert_eq!(password.len(), 20, "{password}");
    eventually("Nina in the table", || async {
        attribute(&admin, "[data-user='Nina New']", "data-disabled").await
    })
    .await;
    if let Ok(png) = admin.screenshot().await {
        screenshot_to("admin-users.png", png);
    }

    // A gateway and its certificate.
    click(&admin, ".tabs a[href='/admin/gateways']").await;
    type_into(&admin, "[data-testid=new-gateway-id]", "yardgw7").await;
    click(&admin, "[data-testid=add-gateway]").await;
    assert_eq!(secret_value(&admin).await.len(), 24);
    click(
        &admin,
        "[data-gateway=yardgw7] [data-testid=issue-certificate]",
    )
    .await;
    wait_for_text(
        &admin,
        "[data-testid=certificate] .secret-title",
        "Certificate for yardgw7, valid 825 days",
    )
    .await;
    if let Ok(png) = admin.screenshot().await {
        screenshot_to("admin-gateways.png", png);
    }

    // A token for Prometheus.
    click(&admin, ".tabs a[href='/admin/tokens']").await;
    eventually("the user list in the token form", || async {
        admin
            .find(Locator::Css(
                "[data-testid=token-user] option[value='Ada Admin']",
            ))
            .await
            .ok()
    })
    .await;
    choose(&admin, "[data-testid=token-user]", "Ada Admin").await;
    type_into(&admin, "[data-testid=token-name]", "prometheus").await;
    choose(&admin, "[data-testid=token-role]", "metrics").await;
    click(&admin, "[data-testid=issue-token]").await;
    let token = secret_value(&admin).await;
    assert!(token.starts_with("tsk_"), "{token}");
    let scrape = reqwest::Client::new()
        .get(server.url("/metrics"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200, "the token works for a scrape");
    if let Ok(png) = admin.screenshot().await {
        screenshot_to("admin-tokens.png", png);
    }

    // The audit trail shows all of it.
    click(&admin, ".tabs a[href='/admin/audit']").await;
    for action in [
        "user.create",
        "gateway.add",
        "gateway.certificate",
        "token.create",
    ] {
        eventually(action, || async {
            admin
                .find(Locator::Css(&format!(
                    "[data-testid=audit-table] tr[data-action='{action}']"
                )))
                .await
                .ok()
        })
        .await;
    }
    if let Ok(png) = admin.screenshot().await {
        screenshot_to("admin-audit.png", png);
    }
    assert_eq!(
        csp_violations(&admin).await,
        None,
        "the admin pages run under the CSP"
    );
    admin.close().await.expect("closing the admin's browser");

    // Nina signs in with the one-time password and must choose her own
    // before she sees anything.
    let (_nina_driver, nina) = browser().await;
    nina.goto(&server.url("/")).await.expect("open the app");
    type_into(&nina, "[data-testid=signin-name]", "Nina New").await;
    type_into(&nina, "[data-testid=signin-password]", &password).await;
    click(&nina, "[data-testid=signin-submit]").await;
    type_into(&nina, "[data-testid=password-current]", &password).await;
    type_into(&nina, "[data-testid=password-new]", "a phrase of her own").await;
    type_into(&nina, "[data-testid=password-again]", "a phrase of her OWN").await;
    click(&nina, "[data-testid=password-submit]").await;
    wait_for_text(
        &nina,
        "[data-testid=password-error]",
        "The two new passwords differ: type the same one twice.",
    )
    .await;
    if let Ok(png) = nina.screenshot().await {
        screenshot_to("choose-password.png", png);
    }
    nina.find(Locator::Css("[data-testid=password-again]"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    type_into(&nina, "[data-testid=password-again]", "a phrase of her own").await;
    click(&nina, "[data-testid=password-submit]").await;
    wait_for_text(&nina, "[data-testid=user-name]", "Nina New").await;
    // An operator is offered no administration.
    assert!(
        nina.find(Locator::Css("nav a[href='/admin']"))
            .await
            .is_err()
    );
    nina.goto(&server.url("/admin/users")).await.unwrap();
    wait_for_text(
        &nina,
        ".admin-page .notice-title",
        "Administration needs the admin role",
    )
    .await;

    // Signing out brings the form back, saying so.
    click(&nina, "[data-testid=sign-out]").await;
    wait_for_text(&nina, "[data-testid=signin-notice]", "You are signed out.").await;
    nina.close().await.expect("closing Nina's browser");
}

#[tokio::test]
async fn a_disabled_user_is_sent_back_to_the_sign_in_form_with_the_reason() {
    let server = TestServer::start().await;
    let (_driver, client) = signed_in_browser(&server, "Otto Operator", Role::Operator).await;
    wait_for_text(
        &client,
        "[data-testid=connection-state] .pill-label",
        "Live",
    )
    .await;
    let disabled = server
        .client()
        .patch(server.url("/api/users/Otto%20Operator"))
        .json(&serde_json::json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    // The live feed closes at once and says why.
    wait_for_text(
        &client,
        "[data-testid=signin-notice]",
        "An administrator changed or disabled this account: sign in again.",
    )
    .await;
    client.close().await.expect("closing the browser");
}
