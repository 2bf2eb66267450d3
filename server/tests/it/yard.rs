//! The yard: layout over HTTP, replay and movements from relay states sent
//! over MQTT and stored in PostgreSQL, and the demo's backfilled history.

use serde_json::json;
use trackside::config::Config;
use trackside::sim::{Yard, YardOptions, backfill};
use trackside_wire::{
    AuditEntry, ExceptionKind, Layout, LayoutRejected, Movements, Replay, Role, TransitionKind,
};

use crate::harness::{TestServer, eventually, test_config};

/// Three circuits in a line, A-B-C, and a siding D off B's far end.
pub const LINE_LAYOUT: &str = r#"
name = "Test line"

[[circuit]]
id = "A"

[[circuit]]
id = "B"

[[circuit]]
id = "C"

[[circuit]]
id = "D"
criticality = "siding"

[[section]]
circuit = "A"
path = [[0, 0], [100, 0]]

[[section]]
circuit = "B"
path = [[100, 0], [200, 0]]

[[section]]
circuit = "C"
path = [[200, 0], [300, 0]]

[[section]]
circuit = "D"
path = [[200, 0], [260, -40], [320, -40]]

[[points]]
id = "P1"
at = [200, 0]
common = "B"
normal = "C"
reverse = "D"
"#;

/// A server whose layout file is [`LINE_LAYOUT`]; the directory holding it
/// lives as long as the returned guard.
pub async fn server_with_layout(mut config: Config) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a layout directory");
    let path = dir.path().join("yard.toml");
    std::fs::write(&path, LINE_LAYOUT).expect("writing the layout");
    config.yard.layout = Some(path);
    (TestServer::start_with(config).await, dir)
}

fn batch(ts: i64, readings: &[(&str, f64)]) -> String {
    let readings: Vec<_> = readings
        .iter()
        .map(|(channel, value)| json!({"channel": channel, "value": value}))
        .collect();
    json!({"ts": ts, "readings": readings}).to_string()
}

/// Publishes `(offset ms, channel, value)` at `t0 + offset` and waits until
/// every one is stored.
async fn publish_script(server: &TestServer, t0: i64, script: &[(i64, &str, f64)]) {
    let mut gateway = server.gateway("gw-yard").await;
    for &(offset, channel, value) in script {
        gateway
            .publish(
                "trackside/gw-yard/readings",
                batch(t0 + offset, &[(channel, value)]),
            )
            .await;
    }
    let want = script.len() as i64;
    eventually("the script stored", || async {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM readings")
            .fetch_one(&server.pool)
            .await
            .ok()?;
        (n == want).then_some(())
    })
    .await;
}

async fn get<T: serde::de::DeserializeOwned>(server: &TestServer, path: &str) -> T {
    let response = server.get(server.url(path)).await.expect("GET");
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("JSON")
}

#[tokio::test]
async fn replay_gives_the_state_at_from_then_exactly_the_changes() {
    let server = TestServer::start().await;
    let t0 = chrono::Utc::now().timestamp_millis() - 600_000;
    publish_script(
        &server,
        t0,
        &[
            // Before the interval: T1 clear, T2 occupied, re-sent.
            (0, "T1/relay_state", 1.0),
            (1_000, "T2/relay_state", 0.0),
            (9_000, "T2/relay_state", 0.0),
            // The interval starts at 10 s.
            (12_000, "T1/relay_state", 1.0),
            (15_000, "T1/relay_state", 0.0),
            (18_000, "T1/relay_state", 0.0),
            (20_000, "T2/relay_state", 1.0),
            (22_000, "T2/relay_state", 1.0),
            (25_000, "T1/relay_state", 1.0),
            // T3 reports first inside the interval.
            (26_000, "T3/relay_state", 1.0),
            (27_000, "T3/relay_state", 1.0),
            // Analogue channels are not relay states.
            (16_000, "T1/relay_voltage", 0.02),
            // After the interval.
            (40_000, "T1/relay_state", 0.0),
        ],
    )
    .await;
    let (from, to) = (t0 + 10_000, t0 + 30_000);
    let replay: Replay = get(&server, &format!("/api/replay?from={from}&to={to}")).await;
    let start: Vec<(&str, Option<f64>, &str)> = replay
        .start
        .iter()
        .map(|s| (s.circuit.as_str(), s.state, s.gateway.as_str()))
        .collect();
    assert_eq!(
        start,
        [
            ("T1", Some(1.0), "gw-yard"),
            ("T2", Some(0.0), "gw-yard"),
            ("T3", None, "gw-yard")
        ]
    );
    // T2's state began at its first report (the re-send is not a change).
    assert_eq!(replay.start[1].since, Some(t0 + 1_000));
    let changes: Vec<(i64, &str, f64)> = replay
        .changes
        .iter()
        .map(|c| (c.at - t0, c.circuit.as_str(), c.state))
        .collect();
    assert_eq!(
        changes,
        [
            (15_000, "T1", 0.0),
            (20_000, "T2", 1.0),
            (25_000, "T1", 1.0),
            (26_000, "T3", 1.0),
        ]
    );
    // One circuit only.
    let only: Replay = get(
        &server,
        &format!("/api/replay?from={from}&to={to}&circuits=T2"),
    )
    .await;
    assert_eq!(only.start.len(), 1);
    assert_eq!(only.changes.len(), 1);

    // Bad requests say what to do.
    for (query, says) in [
        (format!("from={to}&to={from}"), "from must be before to"),
        ("from=yesterday&to=1".to_owned(), "not a time"),
        (format!("from=0&to={to}"), "longer than 31 days"),
        (format!("from={from}&to={to}&circuits=T 1"), "not allowed"),
        (format!("from={from}"), "missing field `to`"),
    ] {
        let response = server
            .get(server.url(&format!("/api/replay?{query}")))
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: serde_json::Value = response.json().await.unwrap();
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{query}: {error}");
    }
}

#[tokio::test]
async fn replay_includes_the_exceptions_of_the_interval() {
    let mut config = test_config();
    config.exceptions.rules = vec![trackside_wire::Rule {
        id: "flick".into(),
        target: "*/relay_state".into(),
        exclude: Vec::new(),
        severity: trackside_wire::Severity::Major,
        realarm_after_s: None,
        escalate_after_s: None,
        check: trackside_wire::Check::Flick {
            min_occupied_s: Some(2.0),
            max_transitions: None,
            window_s: 60.0,
        },
    }];
    config.exceptions.tick_ms = 100;
    let server = TestServer::start_with(config).await;
    let t0 = chrono::Utc::now().timestamp_millis() - 5_000;
    publish_script(
        &server,
        t0,
        &[
            (0, "T1/relay_state", 1.0),
            (1_000, "T1/relay_state", 0.0),
            (1_400, "T1/relay_state", 1.0),
        ],
    )
    .await;
    let raised_at = eventually("the flick raised", || async {
        let (at,): (chrono::DateTime<chrono::Utc>,) =
            sqlx::query_as("SELECT raised_at FROM exceptions WHERE rule_id = 'flick'")
                .fetch_one(&server.pool)
                .await
                .ok()?;
        Some(at.timestamp_millis())
    })
    .await;
    let replay: Replay = get(
        &server,
        &format!("/api/replay?from={}&to={}", t0 - 1_000, raised_at + 1_000),
    )
    .await;
    assert_eq!(replay.exceptions.len(), 1, "{:?}", replay.exceptions);
    let flick = &replay.exceptions[0];
    assert_eq!(flick.kind, ExceptionKind::Flick);
    assert_eq!(flick.circuit.as_deref(), Some("T1"));
    assert!(!flick.active_at_start);
    assert_eq!(flick.steps[0].kind, TransitionKind::Raised);
    assert_eq!(flick.steps[0].at, raised_at);
    // An interval that ends before the raise has no exception.
    let before: Replay = get(
        &server,
        &format!("/api/replay?from={}&to={}", t0 - 1_000, t0 + 500),
    )
    .await;
    assert!(before.exceptions.is_empty());
}

#[tokio::test]
async fn a_train_passing_three_sections_is_one_movement() {
    let (server, _layout) = server_with_layout(test_config()).await;
    let t0 = chrono::Utc::now().timestamp_millis() - 300_000;
    publish_script(
        &server,
        t0,
        &[
            (0, "A/relay_state", 1.0),
            (0, "B/relay_state", 1.0),
            (0, "C/relay_state", 1.0),
            (0, "D/relay_state", 1.0),
            (10_000, "A/relay_state", 0.0),
            (30_000, "B/relay_state", 0.0),
            (40_000, "A/relay_state", 1.0),
            (45_000, "A/relay_state", 1.0),
            (60_000, "C/relay_state", 0.0),
            (70_000, "B/relay_state", 1.0),
            (100_000, "C/relay_state", 1.0),
            // A flick on D is nobody's movement.
            (120_000, "D/relay_state", 0.0),
            (120_500, "D/relay_state", 1.0),
        ],
    )
    .await;
    let (from, to) = (t0 + 5_000, t0 + 200_000);
    let found: Movements = get(
        &server,
        &format!("/api/movements?from={from}&to={to}&circuit=B"),
    )
    .await;
    assert_eq!(found.movements.len(), 1, "{found:?}");
    let steps: Vec<(&str, i64, Option<i64>)> = found.movements[0]
        .steps
        .iter()
        .map(|s| (s.circuit.as_str(), s.entered - t0, s.left.map(|l| l - t0)))
        .collect();
    assert_eq!(
        steps,
        [
            ("A", 10_000, Some(40_000)),
            ("B", 30_000, Some(70_000)),
            ("C", 60_000, Some(100_000)),
        ]
    );
    let none: Movements = get(
        &server,
        &format!("/api/movements?from={from}&to={to}&circuit=D"),
    )
    .await;
    assert!(none.movements.is_empty());
    // Replay carries the same movement.
    let replay: Replay = get(&server, &format!("/api/replay?from={from}&to={to}")).await;
    assert_eq!(replay.movements, found.movements);
}

#[tokio::test]
async fn the_layout_is_served_and_replaced_only_when_it_checks_out() {
    let (server, dir) = server_with_layout(test_config()).await;
    let layout: Layout = get(&server, "/api/layout").await;
    assert_eq!(layout.name.as_deref(), Some("Test line"));
    assert_eq!(layout.sections.len(), 4);
    // Replacing it is an admin's, signed in as the app does.
    let client = server.sign_in("Ada Admin", Role::Admin).await.client;

    // A file with problems is refused with every problem and its line.
    let broken = LINE_LAYOUT
        .replacen("circuit = \"C\"\npath", "circuit = \"Z\"\npath", 1)
        .replacen("reverse = \"D\"", "reverse = \"Q\"", 1);
    let response = client
        .put(server.url("/api/layout"))
        .body(broken)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let refused: LayoutRejected = response.json().await.unwrap();
    for (line, says) in [(25, "circuit Z is neither declared"), (33, "no section Q")] {
        assert!(
            refused
                .problems
                .iter()
                .any(|p| p.line == Some(line) && p.message.contains(says)),
            "line {line}: {says:?} in {refused:?}"
        );
    }
    assert!(refused.error.contains("problems"), "{}", refused.error);
    // Nothing changed.
    let still: Layout = get(&server, "/api/layout").await;
    assert_eq!(still, layout);

    // A circuit the server has seen needs no declaration.
    server
        .gateway("gw-new")
        .await
        .publish(
            "trackside/gw-new/readings",
            batch(
                chrono::Utc::now().timestamp_millis(),
                &[("N1/relay_state", 1.0)],
            ),
        )
        .await;
    let extended =
        format!("{LINE_LAYOUT}\n[[section]]\ncircuit = \"N1\"\npath = [[300, 0], [400, 0]]\n");
    let accepted = eventually("the new layout accepted", || {
        let client = client.clone();
        let body = extended.clone();
        let url = server.url("/api/layout");
        async move {
            let response = client.put(url).body(body).send().await.ok()?;
            (response.status() == 200).then_some(response)
        }
    })
    .await;
    let replaced: Layout = accepted.json().await.unwrap();
    assert_eq!(replaced.sections.len(), 5);
    // The replacement is in the audit trail, under the admin's name.
    let trail: Vec<AuditEntry> = get(&server, "/api/audit?action=layout.replace").await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(trail[0].actor.as_deref(), Some("Ada Admin"));
    assert_eq!(trail[0].target.as_deref(), Some("Test line"));
    // An operator may read the layout but not replace it.
    let operator = server.sign_in("Otto Operator", Role::Operator).await.client;
    let response = operator
        .put(server.url("/api/layout"))
        .body(LINE_LAYOUT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(get::<Layout>(&server, "/api/layout").await, replaced);
    let on_disk = std::fs::read_to_string(dir.path().join("yard.toml")).unwrap();
    assert_eq!(on_disk, extended);
    let previous = std::fs::read_to_string(dir.path().join("yard.toml.previous")).unwrap();
    assert_eq!(previous, LINE_LAYOUT);
    // C and N1 now meet.
    let adjacent: Vec<String> = replaced
        .adjacent
        .iter()
        .find(|(c, _)| c == "C")
        .map(|(_, next)| next.clone())
        .unwrap();
    assert_eq!(adjacent, ["B", "N1"]);

    // Too large, or not text.
    let huge = vec![b'#'; 1024 * 1024 + 10];
    let response = client
        .put(server.url("/api/layout"))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert!(matches!(response.status().as_u16(), 400 | 413));
    let response = client
        .put(server.url("/api/layout"))
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn without_a_layout_the_api_says_how_to_get_one() {
    let server = TestServer::start().await;
    let response = server.get(server.url("/api/layout")).await.unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("yard.layout"),
        "{body}"
    );
}

#[tokio::test]
async fn the_backfill_writes_its_hours_once_and_later_only_the_gap() {
    let pool = crate::harness::fresh_database().await;
    // Plain tables here; TimescaleDB with TRACKSIDE_TEST_DATABASE_URL.
    let config = test_config();
    let storage = trackside::store::rollup::prepare(&pool, &config.history, &config.yard.timezone)
        .await
        .unwrap();
    let yard = Yard::new(&YardOptions {
        host: String::new(),
        port: 0,
        circuits: 0,
        gateways: 3,
        rate_hz: 2.0,
        seed: 1,
        password: None,
        faults: false,
        start_at_s: 0.0,
        sags: Vec::new(),
    })
    .unwrap();
    let now = 1_800_000_000_000;
    let span = 2 * 3_600_000;
    let plan = backfill::plan(&pool, &yard, now, span).await.unwrap();
    assert_eq!(plan.range, Some((now - span, now)));
    let mut seen = Vec::new();
    let written = backfill::write(&pool, storage, &yard, plan, now, 1, |p| {
        seen.push(p.written_to)
    })
    .await
    .unwrap();
    assert_eq!(seen, [now - 3_600_000, now], "an hour per step");

    let stored = |channel: &'static str| {
        let pool = pool.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM readings r JOIN channels c ON c.id = r.channel_id
                 WHERE c.name = $1",
            )
            .bind(channel)
            .fetch_one(&pool)
            .await
            .unwrap();
            n
        }
    };
    let (total,): (i64,) = sqlx::query_as("SELECT count(*) FROM readings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(total as u64, written);
    // Analogue channels every 15 s; relay states every 10 s and at every
    // change; the AF channels only on AF circuits.
    assert_eq!(stored("T101/relay_voltage").await, 480);
    assert_eq!(stored("T103/rx_level").await, 480);
    assert_eq!(stored("T101/rx_level").await, 0);
    let relay = stored("T101/relay_state").await;
    assert!(relay > 720, "refreshes plus changes: {relay}");
    let (channels,): (i64,) = sqlx::query_as("SELECT count(*) FROM channels")
        .fetch_one(&pool)
        .await
        .unwrap();
    let analogue = channels - 20;
    assert_eq!(total, analogue * 480 + relay_total(&pool).await);

    // Rolled up as written: no backlog for the rollup job.
    assert_eq!(crate::harness::dirty_marks(&pool).await, 0);
    let (minutes, per_minute): (i64, Option<i64>) = sqlx::query_as(
        "SELECT count(*), min(m.count) FROM readings_1m m JOIN channels c ON c.id = m.channel_id
         WHERE c.name = 'T101/relay_voltage'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((minutes, per_minute), (120, Some(4)));
    // And every coarser tier, so history at any width reads no raw rows.
    for (tier, buckets) in [
        ("readings_5m", Some(24)),
        ("readings_15m", Some(8)),
        ("readings_1h", Some(2)),
        // Six-hour buckets follow the yard's clock: one or two here.
        ("readings_6h", None),
    ] {
        let (n, readings): (i64, Option<i64>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), sum(t.count)::bigint FROM {tier} t
             JOIN channels c ON c.id = t.channel_id WHERE c.name = 'T101/relay_voltage'"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(readings, Some(480), "{tier}");
        if let Some(buckets) = buckets {
            assert_eq!(n, buckets, "{tier}");
        }
    }

    // A second start at the same moment writes nothing.
    let again = backfill::plan(&pool, &yard, now, span).await.unwrap();
    assert_eq!(again.range, None);
    assert_eq!(again.epoch, now);
    assert_eq!(
        backfill::write(&pool, storage, &yard, again, now, 1, |_| {})
            .await
            .unwrap(),
        0
    );
    // Half an hour later, only that half hour.
    let later = backfill::plan(&pool, &yard, now + 1_800_000, span)
        .await
        .unwrap();
    assert_eq!(later.range, Some((now, now + 1_800_000)));
    assert_eq!(later.epoch, now, "the demo keeps its first start");
    backfill::write(&pool, storage, &yard, later, now, 1, |_| {})
        .await
        .unwrap();
    assert_eq!(stored("T101/relay_voltage").await, 480 + 120);
}

async fn relay_total(pool: &sqlx::PgPool) -> i64 {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM readings r JOIN channels c ON c.id = r.channel_id
         WHERE c.parameter = 'relay_state'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    n
}
