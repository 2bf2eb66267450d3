//! Notifications through the outbox: a webhook receiver that is down
//! across a restart still gets its notification, and e-mail reaches a real
//! SMTP server (aiosmtpd, installed by `cargo xtask setup`), to the group
//! of each escalation level.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use trackside::exceptions::notify::email::{NotifyGroup, Secret, Security};
use trackside_wire::{ExceptionEvent, Priority, TransitionKind};

use crate::exceptions::{batch, exceptions, fast_config, now_ms};
use crate::harness::{TestServer, eventually, free_port};

/// aiosmtpd in the virtual environment `cargo xtask setup` made.
fn smtpd_python() -> PathBuf {
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"),
    };
    let python = cache.join("trackside/smtpd-venv/bin/python3");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask setup`",
        python.display()
    );
    python
}

/// A real SMTP server on a free port; what it received, one JSON object
/// per message.
pub(crate) struct SmtpServer {
    pub(crate) port: u16,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
    _child: tokio::process::Child,
}

impl SmtpServer {
    /// `tls`: a certificate and key to require STARTTLS with.
    pub(crate) async fn start(user: &str, password: &str, tls: Option<(&Path, &Path)>) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/smtpd.py");
        let mut command = tokio::process::Command::new(smtpd_python());
        command
            .args(["-W", "ignore"])
            .arg(script)
            .arg(free_port().to_string())
            .arg(user)
            .arg(password);
        if let Some((cert, key)) = tls {
            command.arg(cert).arg(key);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting aiosmtpd");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("aiosmtpd started in time")
            .expect("reading aiosmtpd")
            .expect("aiosmtpd said READY");
        let port = ready
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .expect("READY <port>");
        let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let sink = received.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(message) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(message);
                }
            }
        });
        Self {
            port,
            received,
            _child: child,
        }
    }

    pub(crate) fn messages(&self) -> Vec<serde_json::Value> {
        self.received.lock().unwrap().clone()
    }
}

/// A message's decoded text (lettre may encode long or non-ASCII lines).
pub(crate) fn decoded(data: &str) -> String {
    // Unfold headers and undo quoted-printable soft breaks and escapes.
    let unfolded = data.replace("\r\n ", " ").replace("\n ", " ");
    let mut out = String::new();
    let mut bytes = Vec::new();
    let text = unfolded.replace("=\r\n", "").replace("=\n", "");
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '=' {
            let hex: String = chars.clone().take(2).collect();
            if hex.len() == 2
                && let Ok(byte) = u8::from_str_radix(&hex, 16)
            {
                bytes.push(byte);
                chars.next();
                chars.next();
                continue;
            }
        }
        if !bytes.is_empty() {
            out.push_str(&String::from_utf8_lossy(&bytes));
            bytes.clear();
        }
        out.push(c);
    }
    out.push_str(&String::from_utf8_lossy(&bytes));
    out
}

#[tokio::test]
async fn a_webhook_down_across_a_restart_still_gets_its_notification() {
    // Nothing listens on the receiver's port at first.
    let port = free_port();
    let mut config = fast_config();
    config.exceptions.webhook_urls = vec![format!("http://127.0.0.1:{port}/hook")];
    let server = TestServer::start_with(config).await;
    let mut gateway = server.gateway("gw-out").await;
    gateway
        .publish(
            "trackside/gw-out/readings",
            batch(now_ms(), &[("T3/relay_voltage", 0.5)]),
        )
        .await;
    let id = eventually("raised", || async { exceptions(&server, "").await.pop() })
        .await
        .id;
    // The notification is in the outbox, attempted and failing.
    eventually("the outbox row failing", || async {
        let row: Option<(i32, Option<String>)> = sqlx::query_as(
            "SELECT attempts, last_error FROM notification_outbox \
             WHERE exception_id = $1 AND channel = 'webhook' AND sent_at IS NULL AND attempts >= 1",
        )
        .bind(id)
        .fetch_optional(&server.pool)
        .await
        .unwrap();
        row.filter(|(_, error)| error.is_some())
    })
    .await;
    assert!(
        server
            .metric("trackside_notifications_total{channel=\"webhook\",outcome=\"retried\"}")
            .await
            >= 1.0
    );
    let (pool, config) = (server.pool.clone(), server.config.clone());
    drop(gateway);
    server.running.shutdown().await;

    // The receiver comes up; so does the server, from the same database.
    let received: Arc<Mutex<Vec<ExceptionEvent>>> = Arc::default();
    let app = {
        let received = received.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(event): axum::Json<ExceptionEvent>| {
                let received = received.clone();
                async move {
                    received.lock().unwrap().push(event);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let restarted = TestServer::start_in_place(config, pool.clone()).await;
    let got = eventually("the raise delivered after the restart", || async {
        let got = received.lock().unwrap().clone();
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(got[0].exception.id, id);
    assert_eq!(got[0].transition.kind, TransitionKind::Raised);
    eventually("the row marked sent", || async {
        let sent: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM notification_outbox \
             WHERE exception_id = $1 AND channel = 'webhook' AND sent_at IS NOT NULL",
        )
        .bind(id)
        .fetch_optional(&pool)
        .await
        .unwrap();
        sent
    })
    .await;
    assert_eq!(
        restarted
            .metric("trackside_notifications_total{channel=\"webhook\",outcome=\"sent\"}")
            .await,
        1.0
    );
    restarted.running.shutdown().await;
}

#[tokio::test]
async fn e_mail_reaches_the_on_duty_group_then_the_supervisors_on_escalation() {
    let password = "relay-pw-7f3k9q";
    let smtp = SmtpServer::start("trackside", password, None).await;
    let mut config = fast_config();
    config.yard.timezone = "America/New_York".into();
    let email = &mut config.exceptions.email;
    email.smtp_host = Some("127.0.0.1".into());
    email.smtp_port = Some(smtp.port);
    email.security = Security::Plain;
    email.username = Some("trackside".into());
    email.password = Some(Secret::new(password.into()));
    email.from = "Trackside <trackside@yard.example>".into();
    email.app_url = Some("https://trackside.yard.example".into());
    config.exceptions.notify_groups = vec![
        NotifyGroup {
            name: "on-duty".into(),
            level: 0,
            min_priority: Priority::Low,
            circuits: vec!["T*".into()],
            addresses: vec!["duty@yard.example".into()],
        },
        NotifyGroup {
            name: "supervisors".into(),
            level: 1,
            min_priority: Priority::Low,
            circuits: Vec::new(),
            addresses: vec!["supervisor@yard.example".into()],
        },
        NotifyGroup {
            name: "elsewhere".into(),
            level: 0,
            min_priority: Priority::Low,
            circuits: vec!["Z*".into()],
            addresses: vec!["nobody@yard.example".into()],
        },
    ];
    let after = &mut config.exceptions.escalate_after_s;
    (after.low, after.medium, after.high) = (Some(2.0), Some(2.0), Some(2.0));
    config.exceptions.escalation_levels = 1;
    let server = TestServer::start_with(config).await;
    let mut gateway = server.gateway("gw-mail").await;
    let t = now_ms();
    gateway
        .publish(
            "trackside/gw-mail/readings",
            batch(t, &[("T9/relay_voltage", 0.25)]),
        )
        .await;
    let raised = eventually("raised", || async { exceptions(&server, "").await.pop() }).await;

    let first = eventually("the on-duty e-mail", || async {
        smtp.messages()
            .into_iter()
            .find(|m| m["to"][0] == "duty@yard.example")
    })
    .await;
    assert_eq!(first["user"], "trackside", "authenticated to the relay");
    assert_eq!(first["from"], "trackside@yard.example");
    let data = decoded(first["data"].as_str().unwrap());
    let subject = data
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .expect("a subject");
    let priority = raised.priority.label().to_uppercase();
    assert!(
        subject.starts_with(&format!("[{priority}] T9 ")),
        "{subject}"
    );
    assert!(data.contains("Value:     0.25"), "{data}");
    assert!(data.contains("Limit:     at or below"), "{data}");
    // The yard's zone (New York, UTC-5 in winter, -4 in summer) and UTC.
    let at = chrono::DateTime::from_timestamp_millis(raised.raised_at).unwrap();
    let local = at.with_timezone(&chrono_tz::America::New_York);
    assert!(
        data.contains(&format!(
            "Time:      {} {} ({} UTC)",
            local.format("%Y-%m-%d %H:%M:%S"),
            local.format("%Z"),
            at.format("%Y-%m-%d %H:%M:%S")
        )),
        "{data}"
    );
    assert!(
        data.contains(&format!(
            "https://trackside.yard.example/exceptions?id={}",
            raised.id
        )),
        "{data}"
    );
    assert!(!data.contains(password));

    // Nobody acknowledges: the escalation goes to the supervisors.
    let escalated = eventually("the supervisors' e-mail", || async {
        smtp.messages()
            .into_iter()
            .find(|m| m["to"][0] == "supervisor@yard.example")
    })
    .await;
    let data = decoded(escalated["data"].as_str().unwrap());
    assert!(data.contains("ESCALATED to level 1"), "{data}");
    let all = smtp.messages();
    assert!(
        all.iter().all(|m| m["to"][0] != "nobody@yard.example"),
        "a group of other circuits got mail: {all:#?}"
    );
    assert_eq!(
        all.iter()
            .filter(|m| m["to"][0] == "duty@yard.example")
            .count(),
        1,
        "the escalation is not the on-duty group's: {all:#?}"
    );
    assert!(
        server
            .metric("trackside_notifications_total{channel=\"email\",outcome=\"sent\"}")
            .await
            >= 2.0
    );
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notification_outbox WHERE channel = 'email' AND sent_at IS NOT NULL",
    )
    .fetch_one(&server.pool)
    .await
    .unwrap();
    assert!(rows >= 2);
    // The password is in no stored row.
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notification_outbox WHERE body::text LIKE '%' || $1 || '%' \
         OR coalesce(last_error, '') LIKE '%' || $1 || '%'",
    )
    .bind(password)
    .fetch_one(&server.pool)
    .await
    .unwrap();
    assert_eq!(leaked, 0);
    assert!(!format!("{:?}", server.config).contains(password));
    server.running.shutdown().await;
}

/// An HTTP receiver of webhook events that answers 503 while `failing`.
async fn receiver(
    failing: Arc<std::sync::atomic::AtomicBool>,
) -> (String, Arc<Mutex<Vec<ExceptionEvent>>>) {
    let received: Arc<Mutex<Vec<ExceptionEvent>>> = Arc::default();
    let app = {
        let received = received.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(event): axum::Json<ExceptionEvent>| {
                let (received, failing) = (received.clone(), failing.clone());
                async move {
                    if failing.load(std::sync::atomic::Ordering::SeqCst) {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    received.lock().unwrap().push(event);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_go_out_while_the_database_is_down_and_are_written_when_it_returns() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let mut cluster = crate::harness::OwnCluster::start().await;
    let pool = cluster.pool().await;
    let (healthy, to_healthy) = receiver(Arc::new(AtomicBool::new(false))).await;
    let failing = Arc::new(AtomicBool::new(true));
    let (broken, to_broken) = receiver(failing.clone()).await;
    let mut config = fast_config();
    config.exceptions.webhook_urls = vec![healthy, broken];
    let server = TestServer::start_on(config, pool.clone()).await;
    let mut gateway = server.gateway("gw-down").await;

    cluster.stop().await;
    gateway
        .publish(
            "trackside/gw-down/readings",
            batch(now_ms(), &[("T4/relay_voltage", 0.5)]),
        )
        .await;
    let got = eventually("delivered from memory during the outage", || async {
        let got = to_healthy.lock().unwrap().clone();
        (!got.is_empty()).then_some(got)
    })
    .await;
    let id = got[0].exception.id;
    assert!(
        !got[0].exception.stored,
        "judged while the database is away"
    );
    // Back: what is still owed is written, so a restart would not lose it.
    cluster.restart().await;
    let pool = cluster.pool().await;
    eventually("the failing notification in the outbox", || async {
        let pending: Option<i32> = sqlx::query_scalar(
            "SELECT attempts FROM notification_outbox \
             WHERE exception_id = $1 AND sent_at IS NULL AND given_up_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&pool)
        .await
        .ok()
        .flatten();
        pending.filter(|&attempts| attempts >= 1)
    })
    .await;
    assert!(
        server
            .metric("trackside_notifications_total{channel=\"webhook\",outcome=\"retried\"}")
            .await
            >= 1.0
    );
    assert!(to_broken.lock().unwrap().is_empty());
    failing.store(false, SeqCst);
    eventually("delivered once the receiver is back", || async {
        (!to_broken.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    eventually("the row marked sent", || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT id FROM notification_outbox WHERE exception_id = $1 AND sent_at IS NOT NULL",
        )
        .bind(id)
        .fetch_optional(&pool)
        .await
        .ok()
        .flatten()
    })
    .await;
    server.running.shutdown().await;
}

#[tokio::test]
async fn each_user_routes_their_own_e_mail_by_priority_circuit_and_hour() {
    use trackside_wire::{NotifySettings, Role};
    let smtp = SmtpServer::start("trackside", "pw", None).await;
    let mut config = fast_config();
    let email = &mut config.exceptions.email;
    email.smtp_host = Some("127.0.0.1".into());
    email.smtp_port = Some(smtp.port);
    email.security = Security::Plain;
    email.username = Some("trackside".into());
    email.password = Some(Secret::new("pw".into()));
    let zone: chrono_tz::Tz = config.yard.timezone.parse().unwrap();
    let server = TestServer::start_with(config).await;

    // Ann, an operator, sets her own: T9's alarms at this hour of the
    // yard's day (and the next, should the test cross the hour).
    let hour = chrono::Timelike::hour(&chrono::Utc::now().with_timezone(&zone)) as u8;
    let ann = server.sign_in("Ann Signaller", Role::Operator).await;
    let put = |client: &reqwest::Client, path: &str, body: serde_json::Value| {
        client
            .put(server.url(path))
            .header("origin", server.origin())
            .json(&body)
            .send()
    };
    let refused = put(
        &ann.client,
        "/api/me/notifications",
        serde_json::json!({"email": "ann", "routes": []}),
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 400);
    let why: serde_json::Value = refused.json().await.unwrap();
    assert!(
        why["error"].as_str().unwrap().contains("e-mail address"),
        "{why}"
    );
    let now_route = serde_json::json!({"min_priority": "low", "circuits": ["T9"],
        "hours": [hour, (hour + 2) % 24]});
    let saved = put(
        &ann.client,
        "/api/me/notifications",
        serde_json::json!({"email": "ann@yard.example", "routes": [now_route]}),
    )
    .await
    .unwrap();
    assert_eq!(saved.status(), 200);
    let mine: NotifySettings = ann
        .client
        .get(server.url("/api/me/notifications"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine.email.as_deref(), Some("ann@yard.example"));
    assert_eq!(mine.routes[0].circuits, ["T9"]);

    // An admin sets Bob's: only out of his hours now, so nothing now; and
    // Carl's: another circuit.
    server.user("Bob Lineside", Role::Viewer).await;
    server.user("Carl Points", Role::Viewer).await;
    let admin =
        crate::harness::client_with(&[("authorization", format!("Bearer {}", server.token))]);
    let later = serde_json::json!({"min_priority": "low",
        "hours": [(hour + 3) % 24, (hour + 4) % 24]});
    for (user, body) in [
        (
            "Bob Lineside",
            serde_json::json!({"email": "bob@yard.example", "routes": [later]}),
        ),
        (
            "Carl Points",
            serde_json::json!({"email": "carl@yard.example",
            "routes": [{"min_priority": "low", "circuits": ["P*"]}]}),
        ),
    ] {
        let saved = put(&admin, &format!("/api/users/{user}/notifications"), body)
            .await
            .unwrap();
        assert_eq!(saved.status(), 200, "{user}");
    }
    let audited: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT actor, target FROM audit_log WHERE action = 'notifications.set' ORDER BY id",
    )
    .fetch_all(&server.pool)
    .await
    .unwrap();
    assert_eq!(
        audited,
        [
            (Some("Ann Signaller".into()), Some("Ann Signaller".into())),
            (Some("tester".into()), Some("Bob Lineside".into())),
            (Some("tester".into()), Some("Carl Points".into())),
        ]
    );

    // The sender reads routes every few seconds.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut gateway = server.gateway("gw-route").await;
    gateway
        .publish(
            "trackside/gw-route/readings",
            batch(now_ms(), &[("T9/relay_voltage", 0.25)]),
        )
        .await;
    eventually("Ann's e-mail", || async {
        smtp.messages()
            .into_iter()
            .find(|m| m["to"][0] == "ann@yard.example")
    })
    .await;
    // Give any wrong recipient the same time to be sent to.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let to: Vec<String> = smtp
        .messages()
        .iter()
        .map(|m| m["to"][0].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(to, ["ann@yard.example"]);
    server.running.shutdown().await;
}

#[tokio::test]
async fn e_mail_goes_over_starttls_to_a_relay_trusted_through_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.path().join("relay.crt"), dir.path().join("relay.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let smtp = SmtpServer::start("trackside", "tls-pw", Some((&cert, &key))).await;
    let mut config = fast_config();
    let email = &mut config.exceptions.email;
    email.smtp_host = Some("127.0.0.1".into());
    email.smtp_port = Some(smtp.port);
    email.security = Security::Starttls;
    email.ca_file = Some(cert.clone());
    email.username = Some("trackside".into());
    email.password = Some(Secret::new("tls-pw".into()));
    config.exceptions.notify_groups = vec![NotifyGroup {
        name: "on-duty".into(),
        level: 0,
        min_priority: Priority::Low,
        circuits: Vec::new(),
        addresses: vec!["duty@yard.example".into()],
    }];
    let server = TestServer::start_with(config).await;
    let mut gateway = server.gateway("gw-tls").await;
    gateway
        .publish(
            "trackside/gw-tls/readings",
            batch(now_ms(), &[("T5/relay_voltage", 0.25)]),
        )
        .await;
    let message = eventually("the e-mail over STARTTLS", || async {
        smtp.messages().pop()
    })
    .await;
    assert_eq!(message["tls"], true, "sent inside TLS: {message}");
    assert_eq!(message["user"], "trackside");
    server.running.shutdown().await;
}
