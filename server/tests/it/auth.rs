//! Gateway credentials at CONNECT, through a real MQTT client.

use crate::harness::{Gateway, TestServer, eventually, mqtt_accepts, test_config};

async fn secured() -> TestServer {
    let mut config = test_config();
    config.mqtt.allow_anonymous = false;
    TestServer::start_with(config).await
}

#[tokio::test]
async fn only_a_gateway_with_its_own_credentials_gets_in() {
    let server = secured().await;
    let port = server.running.mqtt_addr.port();
    let password = trackside::ingest::credentials::add(&server.pool, "gw-north", None)
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
    // Each refusal counted once; the missing login is checked like a wrong one.
    eventually("the refusals counted", || async {
        (server.metric("trackside_mqtt_refused_connects_total").await == 4.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_revoked_gateway_is_refused_and_a_new_password_replaces_the_old() {
    let server = secured().await;
    let port = server.running.mqtt_addr.port();
    let old = trackside::ingest::credentials::add(&server.pool, "gw-7", None)
        .await
        .unwrap();
    assert!(
        trackside::ingest::credentials::revoke(&server.pool, "gw-7")
            .await
            .unwrap()
    );
    assert!(!mqtt_accepts(port, "gw-7", Some(("gw-7", &old))).await);
    assert!(
        !trackside::ingest::credentials::revoke(&server.pool, "gw-7")
            .await
            .unwrap()
    );

    let new = trackside::ingest::credentials::add(
        &server.pool,
        "gw-7",
        Some("a-long-enough-secret".into()),
    )
    .await
    .unwrap();
    assert_eq!(new, "a-long-enough-secret");
    assert!(!mqtt_accepts(port, "gw-7", Some(("gw-7", &old))).await);
    assert!(mqtt_accepts(port, "gw-7", Some(("gw-7", &new))).await);

    let listed = trackside::ingest::credentials::list(&server.pool)
        .await
        .unwrap();
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
    let short =
        trackside::ingest::credentials::add(&server.pool, "gw-1", Some("short".into())).await;
    assert!(short.unwrap_err().to_string().contains("at least 12"));
    let bad_id = trackside::ingest::credentials::add(&server.pool, "gw 1", None).await;
    assert!(bad_id.unwrap_err().to_string().contains("gateway id"));
}

/// The `trackside gateway` command, run as an operator would.
pub(crate) fn trackside_cli(server: &TestServer, args: &[&str]) -> std::process::Output {
    let url = crate::harness::database_url(&server.pool);
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

/// Per-gateway topics: on the TLS listener the certificate names the
/// gateway, and the MQTT front does not let it publish as another one.
/// Every refusal is counted.
#[tokio::test]
async fn publishing_to_another_gateways_topic_is_refused() {
    let server = secured().await;
    let tls_port = server.running.mqtt_tls_addr.expect("TLS listener").port();
    let pki = server.config.tls_dir();
    let north = trackside::ingest::credentials::add(&server.pool, "north", None)
        .await
        .unwrap();
    trackside::ingest::credentials::add(&server.pool, "south", None)
        .await
        .unwrap();
    let north_cert = trackside::ingest::pki::issue_gateway(&pki, "north", 30).unwrap();

    // A certificate alone is not enough, and no certificate gets no session.
    let with_cert = crate::harness::tls_transport(&north_cert);
    assert!(
        !crate::harness::mqtt_accepts_over(
            tls_port,
            "north",
            Some(("north", "not-the-password")),
            with_cert
        )
        .await,
        "a wrong password is refused on the TLS listener too"
    );
    let without_cert = rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Simple {
        ca: north_cert.ca_pem.clone().into_bytes(),
        alpn: None,
        client_auth: None,
    });
    assert!(
        !crate::harness::mqtt_accepts_over(
            tls_port,
            "north",
            Some(("north", north.as_str())),
            without_cert
        )
        .await,
        "a client without a certificate is refused"
    );

    let mut gateway = Gateway::connect_tls(tls_port, "north", &north, &north_cert).await;
    eventually("the TLS connection counted", || async {
        (server
            .metric("trackside_mqtt_connections{listener=\"mqtts\"}")
            .await
            == 1.0)
            .then_some(())
    })
    .await;
    let reading = |value: f64| {
        serde_json::json!({"readings": [
            {"channel": "T1/relay_voltage", "value": value, "ts": "2026-11-28T10:00:00Z"}
        ]})
        .to_string()
    };
    gateway
        .publish("/tenants/north/trackside/north/readings", reading(1.5))
        .await;
    eventually("the own reading stored", || async {
        let stored: Vec<(String, f64)> = sqlx::query_as(
            "SELECT c.gateway_id, r.value FROM readings r JOIN channels c ON c.id = r.channel_id",
        )
        .fetch_all(&server.pool)
        .await
        .unwrap();
        (stored == [("north".to_owned(), 1.5)]).then_some(())
    })
    .await;
    // Inside its own prefix but naming another gateway, or outside it: the
    // MQTT front refuses, and on MQTT 3.1.1 that closes the connection.
    gateway
        .client
        .publish(
            "/tenants/north/trackside/south/readings",
            rumqttc::QoS::AtLeastOnce,
            false,
            reading(2.5),
        )
        .await
        .unwrap();
    eventually("the front's refusal counted", || async {
        (server
            .metric("trackside_mqtt_acl_refusals_total{kind=\"publish\"}")
            .await
            == 1.0
            && !gateway.is_connected())
        .then_some(())
    })
    .await;
    let gateway = Gateway::connect_tls(tls_port, "north", &north, &north_cert).await;
    gateway
        .client
        .publish(
            "/tenants/south/trackside/south/readings",
            rumqttc::QoS::AtLeastOnce,
            false,
            reading(3.5),
        )
        .await
        .unwrap();
    eventually("the second refusal counted", || async {
        (server
            .metric("trackside_mqtt_acl_refusals_total{kind=\"publish\"}")
            .await
            == 2.0
            && !gateway.is_connected())
        .then_some(())
    })
    .await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM readings")
        .fetch_one(&server.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1, "nothing stored under another gateway's id");
}

#[tokio::test]
async fn the_gateway_command_issues_certificates_the_tls_listener_accepts() {
    let server = secured().await;
    let tls_port = server.running.mqtt_tls_addr.expect("TLS listener").port();
    let password = trackside::ingest::credentials::add(&server.pool, "east3", None)
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let data_dir = server.config.database.data_dir.to_str().unwrap().to_owned();
    let out_dir = out.path().to_str().unwrap().to_owned();
    let issued = trackside_cli(
        &server,
        &[
            "gateway",
            "--data-dir",
            &data_dir,
            "cert",
            "east3",
            "--out",
            &out_dir,
        ],
    );
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap();
    let certificate = trackside::ingest::pki::GatewayCertificate {
        cert_pem: read("east3.crt"),
        key_pem: read("east3.key"),
        ca_pem: read("ca.crt"),
    };
    let mut gateway = Gateway::connect_tls(tls_port, "east3", &password, &certificate).await;
    gateway
        .publish("/tenants/east3/trackside/east3/channel/T4/relay_state", "1")
        .await;
    eventually("the reading stored", || async {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM readings")
            .fetch_one(&server.pool)
            .await
            .unwrap();
        (stored == 1).then_some(())
    })
    .await;

    let refused = trackside_cli(
        &server,
        &[
            "gateway",
            "--data-dir",
            &data_dir,
            "cert",
            "east-3",
            "--out",
            &out_dir,
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("letters and digits"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
