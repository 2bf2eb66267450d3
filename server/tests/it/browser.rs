//! The operator app in a real headless Chromium, driven over WebDriver.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::harness::{DEADLINE, TestServer, eventually};
use trackside_wire::Role;

/// A chromedriver child process on a free port, killed on drop together
/// with the Chromium it started.
pub(crate) struct ChromeDriver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // Chromium runs in chromedriver's process group. Killing chromedriver
        // alone would leave the browser running after any test that ends
        // without closing its session (a failed one, for a start).
        if let Ok(group) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(group),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn browser() -> (ChromeDriver, Client) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian package chromium-driver; `cargo xtask setup` installs it)");
    let profile = tempfile::tempdir().expect("profile directory");
    let driver = ChromeDriver {
        child,
        port,
        _profile: profile,
    };
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            // The background-networking flags keep Chromium from flooding a
            // closed network with connection attempts.
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1600,1000",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ],
        }),
    );
    let webdriver = format!("http://127.0.0.1:{}", driver.port);
    let client = eventually("chromedriver to accept a session", || {
        let capabilities = capabilities.clone();
        let webdriver = webdriver.clone();
        async move {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities)
                .connect(&webdriver)
                .await
                .ok()
        }
    })
    .await;
    (driver, client)
}

/// A browser signed in as `name` (a user with this role, made if
/// missing), the way the demo's banner does it: through a one-time
/// sign-in link, which lands on the board.
pub(crate) async fn signed_in_browser(
    server: &TestServer,
    name: &str,
    role: Role,
) -> (ChromeDriver, Client) {
    let (driver, client) = browser().await;
    sign_in_with_link(server, &client, name, role).await;
    (driver, client)
}

pub(crate) async fn sign_in_with_link(
    server: &TestServer,
    client: &Client,
    name: &str,
    role: Role,
) {
    let user = server.user(name, role).await;
    let token = trackside::auth::tokens::issue_link(&server.pool, user.id)
        .await
        .expect("a sign-in link");
    client
        .goto(&server.url(&format!("/signin#link={token}")))
        .await
        .expect("open the sign-in link");
    wait_for_text(client, "[data-testid=user-name]", name).await;
    let path = client
        .current_url()
        .await
        .expect("the address")
        .path()
        .to_owned();
    assert_eq!(path, "/", "a sign-in link lands on the board");
}

/// Policy violations the page counted (public/boot.js): none, in an app
/// that runs under its Content-Security-Policy.
pub(crate) async fn csp_violations(client: &Client) -> Option<String> {
    attribute(client, "html", "data-csp-violations").await
}

pub(crate) async fn attribute(client: &Client, css: &str, name: &str) -> Option<String> {
    let element = client.find(Locator::Css(css)).await.ok()?;
    element.attr(name).await.ok()?
}

pub(crate) async fn text(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

pub(crate) async fn wait_for_text(client: &Client, css: &str, want: &str) {
    let mut last = None;
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            last = text(client, css).await;
            if last.as_deref() == Some(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "{css} should read {want:?}, last read {last:?}"
    );
}

#[tokio::test]
async fn the_live_board_shows_a_published_reading() {
    let server = TestServer::start().await;
    let (_driver, client) = signed_in_browser(&server, "Vera Viewer", Role::Viewer).await;

    eventually("the board to connect live", || async {
        (attribute(&client, "[data-testid=connection-state]", "data-state")
            .await
            .as_deref()
            == Some("live"))
        .then_some(())
    })
    .await;

    let mut gateway = server.gateway("gw-browser").await;
    let now = chrono::Utc::now().timestamp_millis();
    gateway
        .publish(
            "trackside/gw-browser/readings",
            json!({"ts": now, "readings": [
                {"channel": "T101/relay_voltage", "value": 1.234},
                {"channel": "T101/relay_state", "value": 1},
            ]})
            .to_string(),
        )
        .await;
    wait_for_text(&client, "[data-channel='T101/relay_voltage']", "1.234").await;
    assert_eq!(
        attribute(&client, "[data-circuit=T101]", "data-state")
            .await
            .as_deref(),
        Some("clear")
    );

    // A train arrives: the relay drops and the circuit shows occupied.
    gateway
        .publish(
            "trackside/gw-browser/readings",
            json!({"ts": now + 1000, "readings": [
                {"channel": "T101/relay_voltage", "value": 0.02},
                {"channel": "T101/relay_state", "value": 0},
            ]})
            .to_string(),
        )
        .await;
    wait_for_text(&client, "[data-channel='T101/relay_voltage']", "0.020").await;
    eventually("the circuit to show occupied", || async {
        (attribute(&client, "[data-circuit=T101]", "data-state")
            .await
            .as_deref()
            == Some("occupied"))
        .then_some(())
    })
    .await;

    if let Ok(png) = client.screenshot().await {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("live-board.png"), png);
    }
    client.close().await.expect("closing the browser session");
}

pub(crate) fn screenshot_to(name: &str, png: Vec<u8>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(name), png);
}

/// A browser signed in as an operator on `path`, once its live feed is up.
async fn live_page(server: &TestServer, path: &str) -> (ChromeDriver, Client) {
    let (driver, client) = signed_in_browser(server, "Ann Signaller", Role::Operator).await;
    client.goto(&server.url(path)).await.expect("open the page");
    wait_for_attribute(
        &client,
        "[data-testid=connection-state]",
        "data-state",
        "live",
    )
    .await;
    (driver, client)
}

pub(crate) async fn wait_for_attribute(client: &Client, css: &str, name: &str, want: &str) {
    let what = format!("{css} to have {name}={want:?}");
    eventually(&what, || async {
        (attribute(client, css, name).await.as_deref() == Some(want)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_exception_appears_live_and_is_acknowledged_through_the_dialog() {
    let mut config = crate::harness::test_config();
    config.exceptions.tick_ms = 100;
    config.exceptions.rules = vec![trackside_wire::Rule {
        id: "rv-low".into(),
        target: "*/relay_voltage".into(),
        exclude: Vec::new(),
        severity: trackside_wire::Severity::Major,
        realarm_after_s: None,
        escalate_after_s: None,
        check: trackside_wire::Check::Limit {
            low_set: Some(0.8),
            low_clear: Some(0.9),
            high_set: None,
            high_clear: None,
            on_delay_s: 0.0,
            off_delay_s: 0.0,
            only_when_clear: true,
        },
    }];
    let server = TestServer::start_with(config).await;
    server.user("Ann Signaller", Role::Operator).await;
    // Signing in through the form: the app opens on the sign-in page
    // wherever it is opened, and stays there after signing in.
    let (_driver, client) = browser().await;
    client
        .goto(&server.url("/exceptions"))
        .await
        .expect("open the exception page");
    let field = |css: &'static str| client.wait().for_element(Locator::Css(css));
    field("[data-testid=signin-name]")
        .await
        .expect("the sign-in form")
        .send_keys("Ann Signaller")
        .await
        .expect("type the name");
    field("[data-testid=signin-password]")
        .await
        .expect("the password field")
        .send_keys("not the password")
        .await
        .expect("type a wrong password");
    field("[data-testid=signin-submit]")
        .await
        .expect("submit")
        .click()
        .await
        .expect("sign in");
    wait_for_text(
        &client,
        "[data-testid=signin-error]",
        "Wrong name or password.",
    )
    .await;
    if let Ok(png) = client.screenshot().await {
        screenshot_to("signin.png", png);
    }
    field("[data-testid=signin-password]")
        .await
        .expect("the password field")
        .send_keys(crate::harness::PASSWORD)
        .await
        .expect("type the password");
    field("[data-testid=signin-submit]")
        .await
        .expect("submit")
        .click()
        .await
        .expect("sign in");
    wait_for_text(&client, "[data-testid=user-name]", "Ann Signaller").await;
    wait_for_attribute(&client, "[data-testid=user-role]", "data-role", "operator").await;
    wait_for_attribute(
        &client,
        "[data-testid=connection-state]",
        "data-state",
        "live",
    )
    .await;
    wait_for_text(
        &client,
        "[data-testid=exceptions-empty] .notice-title",
        "No open exceptions",
    )
    .await;
    wait_for_text(&client, "[data-testid=unacked-count]", "0").await;

    let mut gateway = server.gateway("gw-ui").await;
    let now = chrono::Utc::now().timestamp_millis();
    gateway
        .publish(
            "trackside/gw-ui/readings",
            json!({"ts": now, "readings": [
                {"channel": "T201/relay_state", "value": 1},
                {"channel": "T201/relay_voltage", "value": 0.55},
            ]})
            .to_string(),
        )
        .await;
    let row = "[data-testid=exceptions-list] [data-exception-id]";
    wait_for_attribute(
        &client,
        row,
        "data-exception-state",
        "active-unacknowledged",
    )
    .await;
    assert_eq!(
        attribute(&client, row, "data-severity").await.as_deref(),
        Some("major")
    );
    wait_for_text(&client, "[data-testid=unacked-count]", "1").await;
    let message = text(&client, &format!("{row} .exception-message"))
        .await
        .unwrap_or_default();
    assert!(message.contains("0.550 V"), "{message}");

    client
        .find(Locator::Css("[data-testid=ack-open]"))
        .await
        .expect("the acknowledge button")
        .click()
        .await
        .expect("click acknowledge");
    let submit = client
        .wait()
        .for_element(Locator::Css("[data-testid=ack-submit]"))
        .await
        .expect("the dialog");
    // The acknowledgement is the signed-in operator's; the dialog says so.
    wait_for_text(
        &client,
        "[data-testid=ack-as]",
        "Acknowledging as Ann Signaller",
    )
    .await;
    // Nothing filled in: the dialog says what is missing, and stays.
    submit.click().await.expect("submit empty");
    let error = text(&client, "[data-testid=ack-error]")
        .await
        .unwrap_or_default();
    assert!(error.contains("Enter a comment"), "{error}");
    client
        .find(Locator::Css("[data-testid=ack-comment]"))
        .await
        .expect("comment field")
        .send_keys("Bond T201 suspected, S&T on the way")
        .await
        .expect("type the comment");
    if let Ok(png) = client.screenshot().await {
        screenshot_to("ack-dialog.png", png);
    }
    client
        .find(Locator::Css("[data-testid=ack-submit]"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("submit the acknowledgement");

    wait_for_attribute(&client, row, "data-exception-state", "active-acknowledged").await;
    wait_for_text(&client, "[data-testid=unacked-count]", "0").await;
    eventually("the dialog to close", || async {
        client
            .find(Locator::Css("[data-testid=ack-dialog]"))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    let (by, comment): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT acked_by, ack_comment FROM exceptions")
            .fetch_one(&server.pool)
            .await
            .expect("the stored acknowledgement");
    assert_eq!(by.as_deref(), Some("Ann Signaller"));
    assert_eq!(
        comment.as_deref(),
        Some("Bond T201 suspected, S&T on the way")
    );
    // Her own name on the exception.
    let note = text(&client, &format!("{row} .ack-note"))
        .await
        .unwrap_or_default();
    assert!(note.starts_with("Acknowledged by Ann Signaller"), "{note}");
    if let Ok(png) = client.screenshot().await {
        screenshot_to("exceptions.png", png);
    }
    assert_eq!(
        csp_violations(&client).await,
        None,
        "the app runs under its CSP"
    );

    // A viewer sees the exception but no Acknowledge button, and the
    // server refuses the acknowledgement even when made by hand.
    let mut gateway_two = server.gateway("gw-ui2").await;
    gateway_two
        .publish(
            "trackside/gw-ui2/readings",
            json!({"ts": now, "readings": [
                {"channel": "T202/relay_state", "value": 1},
                {"channel": "T202/relay_voltage", "value": 0.5},
            ]})
            .to_string(),
        )
        .await;
    let (_viewer_driver, viewer) = signed_in_browser(&server, "Vera Viewer", Role::Viewer).await;
    viewer
        .goto(&server.url("/exceptions"))
        .await
        .expect("open the exceptions as a viewer");
    let unacked = "[data-testid=exceptions-list] [data-exception-state=active-unacknowledged]";
    wait_for_attribute(&viewer, unacked, "data-severity", "major").await;
    wait_for_text(
        &viewer,
        "[data-testid=view-only]",
        "You can view exceptions; acknowledging them needs the operator role.",
    )
    .await;
    assert!(
        viewer
            .find(Locator::Css("[data-testid=ack-open]"))
            .await
            .is_err(),
        "a viewer is offered no Acknowledge button"
    );
    let id: i64 = attribute(&viewer, unacked, "data-exception-id")
        .await
        .and_then(|id| id.parse().ok())
        .expect("the exception's id");
    let status = viewer
        .execute_async(
            "const [id, done] = arguments;
             fetch(`/api/exceptions/${id}/ack`, {
                 method: 'POST',
                 headers: {'Content-Type': 'application/json'},
                 body: JSON.stringify({comment: 'by hand'}),
             }).then(r => done(r.status), e => done(String(e)));",
            vec![json!(id)],
        )
        .await
        .expect("a hand-made POST");
    assert_eq!(
        status,
        json!(403),
        "the viewer's session may not acknowledge"
    );
    if let Ok(png) = viewer.screenshot().await {
        screenshot_to("exceptions-viewer.png", png);
    }
    viewer.close().await.expect("closing the viewer's browser");

    // The board shows the circuit's worst active exception.
    client
        .find(Locator::Css("nav a[href='/']"))
        .await
        .expect("the board link")
        .click()
        .await
        .expect("go to the board");
    wait_for_attribute(
        &client,
        "[data-circuit=T201]",
        "data-exception-severity",
        "major",
    )
    .await;
    if let Ok(png) = client.screenshot().await {
        screenshot_to("board-with-exception.png", png);
    }
    client.close().await.expect("closing the browser session");
}

/// While PostgreSQL is down an alarm is still shown at once, marked as not
/// yet stored (and not offered for acknowledgement), with the header
/// saying why; once the database is back it is stored and can be
/// acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_raised_while_the_database_is_down_shows_as_not_yet_stored() {
    let mut cluster = crate::harness::OwnCluster::start().await;
    let pool = cluster.pool().await;
    let server = TestServer::start_on(crate::exceptions::fast_config(), pool).await;
    let (_driver, client) = live_page(&server, "/exceptions").await;
    wait_for_text(&client, "[data-testid=unacked-count]", "0").await;

    cluster.stop().await;
    let mut gateway = server.gateway("gw-away").await;
    gateway
        .publish(
            "trackside/gw-away/readings",
            crate::exceptions::batch(
                chrono::Utc::now().timestamp_millis(),
                &[("T301/relay_voltage", 0.52)],
            ),
        )
        .await;
    let row = "[data-testid=exceptions-list] [data-exception-id]";
    wait_for_attribute(&client, row, "data-stored", "false").await;
    wait_for_text(
        &client,
        &format!("{row} [data-testid=not-stored]"),
        "NOT YET STORED",
    )
    .await;
    wait_for_text(
        &client,
        "[data-testid=unstored-alarms] .pill-label",
        "Database away: 1 alarm not yet stored",
    )
    .await;
    assert!(
        client
            .find(Locator::Css(&format!("{row} [data-testid=ack-open]")))
            .await
            .is_err(),
        "no acknowledgement offered before it is stored"
    );
    screenshot_to(
        "exception-not-stored.png",
        client.screenshot().await.expect("screenshot"),
    );

    cluster.restart().await;
    wait_for_attribute(&client, row, "data-stored", "true").await;
    eventually("the acknowledge button", || async {
        client
            .find(Locator::Css(&format!("{row} [data-testid=ack-open]")))
            .await
            .ok()
            .map(drop)
    })
    .await;
    assert!(
        client
            .find(Locator::Css("[data-testid=unstored-alarms]"))
            .await
            .is_err()
    );
    client.close().await.expect("closing the browser session");
}
