//! Gateway credentials at CONNECT, through a real MQTT client.

use crate::harness::{TestServer, eventually, mqtt_accepts, test_config};

async fn secured() -> TestServer {
    let mut config = test_config();
    config.mqtt.allow_anonymous = false;
    TestServer::start_with(config).await
}

#[tokio::test]
async fn only_a_gateway_with_its_own_credentials_gets_in() {
    let server = secured().await;
    let port = server.running.mqtt_addr.port();
    let password = trackside::credentials::add(&server.pool, "gw-north", None)
        .await
        .unwrap();
    assert_eq!(password.len(), 24);

    assert!(mqtt_accepts(port, "gw-north", Some(("gw-north", &password))).await);
    let refusals = [
        (
            "wrong password",
            "gw-north",
            Some(("gw-north", "not-the-password")),
        ),
        ("no credentials", "gw-north", None),
        (
            "client id is not the username",
            "gw-south",
            Some(("gw-north", password.as_str())),
        ),
        (
            "unknown gateway",
            "gw-east",
            Some(("gw-east", password.as_str())),
        ),
    ];
    for (case, client_id, login) in refusals {
        assert!(
            !mqtt_accepts(port, client_id, login).await,
            "{case} must be refused"
        );
    }
    // The missing login is refused by rumqttd before the check runs.
    eventually("the refusals counted", || async {
        (server.metric("trackside_mqtt_refused_connects_total").await == 3.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_revoked_gateway_is_refused_and_a_new_password_replaces_the_old() {
    let server = secured().await;
    let port = server.running.mqtt_addr.port();
    let old = trackside::credentials::add(&server.pool, "gw-7", None)
        .await
        .unwrap();
    assert!(
        trackside::credentials::revoke(&server.pool, "gw-7")
            .await
            .unwrap()
    );
    assert!(!mqtt_accepts(port, "gw-7", Some(("gw-7", &old))).await);
    assert!(
        !trackside::credentials::revoke(&server.pool, "gw-7")
            .await
            .unwrap()
    );

    let new =
        trackside::credentials::add(&server.pool, "gw-7", Some("a-long-enough-secret".into()))
            .await
            .unwrap();
    assert_eq!(new, "a-long-enough-secret");
    assert!(!mqtt_accepts(port, "gw-7", Some(("gw-7", &old))).await);
    assert!(mqtt_accepts(port, "gw-7", Some(("gw-7", &new))).await);

    let listed = trackside::credentials::list(&server.pool).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].revoked_at.is_none());
    let stored: (String,) = sqlx::query_as("SELECT password_hash FROM gateway_credentials")
        .fetch_one(&server.pool)
        .await
        .unwrap();
    assert!(
        stored.0.starts_with("$argon2id$"),
        "stored hashed, not in clear"
    );
    assert!(!stored.0.contains(&new));
}

#[tokio::test]
async fn weak_or_malformed_credentials_are_not_provisioned() {
    let server = secured().await;
    let short = trackside::credentials::add(&server.pool, "gw-1", Some("short".into())).await;
    assert!(short.unwrap_err().to_string().contains("at least 12"));
    let bad_id = trackside::credentials::add(&server.pool, "gw 1", None).await;
    assert!(bad_id.unwrap_err().to_string().contains("gateway id"));
}

/// The `trackside gateway` command, run as an operator would.
fn trackside_cli(server: &TestServer, args: &[&str]) -> std::process::Output {
    let options = server.pool.connect_options();
    let socket = options
        .get_socket()
        .expect("the test cluster uses a socket");
    let url = format!(
        "postgres://{}@localhost/{}?host={}&port={}",
        options.get_username(),
        options.get_database().expect("a database"),
        socket.display(),
        options.get_port()
    );
    std::process::Command::new(env!("CARGO_BIN_EXE_trackside"))
        .args(args)
        .env("TRACKSIDE_DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running trackside")
}

#[tokio::test]
async fn the_gateway_command_adds_lists_and_revokes() {
    let server = secured().await;
    let port = server.running.mqtt_addr.port();
    let added = trackside_cli(&server, &["gateway", "add", "gw-cli"]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let stdout = String::from_utf8_lossy(&added.stdout);
    let password = stdout
        .split("password `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("the password is printed once");
    assert!(mqtt_accepts(port, "gw-cli", Some(("gw-cli", password))).await);

    let listed = trackside_cli(&server, &["gateway", "list"]);
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listing.contains("gw-cli") && listing.contains("active"),
        "{listing}"
    );
    assert!(
        !listing.contains(password),
        "the list never shows a password"
    );

    let revoked = trackside_cli(&server, &["gateway", "revoke", "gw-cli"]);
    assert!(revoked.status.success());
    assert!(!mqtt_accepts(port, "gw-cli", Some(("gw-cli", password))).await);
    let again = trackside_cli(&server, &["gateway", "revoke", "gw-cli"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no active credentials"));
}
