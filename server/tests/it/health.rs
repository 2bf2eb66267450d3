//! Circuit health end to end: readings over MQTT, stored in PostgreSQL,
//! occupations derived by the job, judged by the engine, pushed on `/ws`.

use trackside_wire::{CircuitHealthDetail, ExceptionKind, HealthList, Occupations, TransitionKind};

use fantoccini::Locator;
use trackside_wire::Role;

use crate::browser::{
    attribute, csp_violations, screenshot_to, signed_in_browser, wait_for_attribute, wait_for_text,
};
use crate::exceptions::{exception_frame, exceptions, now_ms};
use crate::harness::{TestServer, eventually, test_config};

const S: i64 = 1_000;

/// A circuit's readings every 500 ms from `from` for `seconds`: clear at
/// 1.5 V and 1.0 A, occupied during each `(start, end)` (ms from `from`)
/// with `residual` volts at the relay and 1.8 A fed. The relay state on
/// change and every 10 s, as a gateway sends it.
pub(crate) fn readings(
    circuit: &str,
    from: i64,
    seconds: i64,
    occupied: &[(i64, i64)],
    residual: f64,
) -> Vec<(String, i64, f64)> {
    let busy = |t: i64| occupied.iter().any(|&(a, b)| t >= a && t < b);
    let mut out = Vec::new();
    let mut last = None;
    for step in 0..seconds * 2 {
        let t = step * 500;
        let occ = busy(t);
        if last != Some(occ) || t % (10 * S) == 0 {
            out.push((
                format!("{circuit}/relay_state"),
                from + t,
                if occ { 0.0 } else { 1.0 },
            ));
        }
        last = Some(occ);
        out.push((
            format!("{circuit}/relay_voltage"),
            from + t,
            if occ { residual } else { 1.5 },
        ));
        out.push((
            format!("{circuit}/feed_current"),
            from + t,
            if occ { 1.8 } else { 1.0 },
        ));
    }
    out
}

pub(crate) async fn publish(
    gateway: &mut crate::harness::Gateway,
    id: &str,
    readings: &[(String, i64, f64)],
) {
    let borrowed: Vec<(&str, i64, f64)> = readings
        .iter()
        .map(|(c, t, v)| (c.as_str(), *t, *v))
        .collect();
    gateway.publish_readings(id, &borrowed).await;
}

async fn occupations(server: &TestServer, circuit: &str, from: i64, to: i64) -> Occupations {
    let response = server
        .get(server.url(&format!(
            "/api/occupations?circuit={circuit}&from={from}&to={to}"
        )))
        .await
        .expect("GET /api/occupations");
    assert_eq!(response.status(), 200);
    response.json().await.expect("occupations")
}

#[tokio::test]
async fn a_poor_shunt_raises_poor_shunt_and_lowers_health() {
    let mut config = test_config();
    config.health.every_s = 10;
    let server = TestServer::start_with(config).await;
    let mut browser = server.websocket().await;
    let mut gateway = server.gateway("gw-health").await;
    // Ten minutes that ended two minutes ago (the job takes readings as
    // complete a minute after their time): three trains on each circuit.
    let from = now_ms() - 12 * 60 * S;
    let trains = [(60 * S, 100 * S), (250 * S, 290 * S), (450 * S, 480 * S)];
    // T201's trains leave a third of its clear voltage at the relay.
    publish(
        &mut gateway,
        "gw-health",
        &readings("T201", from, 600, &trains, 0.5),
    )
    .await;
    publish(
        &mut gateway,
        "gw-health",
        &readings("T202", from, 600, &trains, 0.02),
    )
    .await;

    let raised = exception_frame(&mut browser, |e| {
        e.exception.kind == ExceptionKind::PoorShunt
    })
    .await;
    assert_eq!(raised.transition.kind, TransitionKind::Raised);
    assert_eq!(raised.exception.subject, "T201/relay_voltage");
    assert_eq!(raised.exception.rule, "poor-shunt");
    assert_eq!(raised.exception.value, Some(0.5));
    // At the second poor occupation's end, in the readings' own time.
    assert_eq!(raised.transition.at, from + 290 * S);

    let listed = occupations(&server, "T201", from, from + 600 * S).await;
    assert_eq!(listed.occupations.len(), 3, "{listed:?}");
    let first = &listed.occupations[0];
    assert_eq!((first.start, first.end), (from + 60 * S, from + 100 * S));
    assert_eq!(first.drop_value, Some(1.5));
    assert_eq!(first.pick_value, Some(1.5));
    assert_eq!(first.residual_max, Some(0.5));
    assert!(
        first.current_mean.is_some_and(|m| (m - 1.8).abs() < 1e-9),
        "{first:?}"
    );
    assert_eq!(first.missing_readings, 0);
    assert!(listed.derived_to.is_some_and(|d| d >= from + 480 * S));
    assert!(server.metric("trackside_occupations_derived_total").await >= 3.0);
    assert_eq!(
        server
            .metric("trackside_occupation_job_failures_total")
            .await,
        0.0
    );

    // Health: T201 lowered by its poor shunt, T202 healthy.
    let list: HealthList = eventually("both circuits scored", || async {
        let list: HealthList = server
            .get(server.url("/api/health"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let t201 = list.circuits.iter().find(|h| h.circuit == "T201")?;
        (t201.occupations == 3 && list.circuits.len() == 2).then_some(list)
    })
    .await;
    assert_eq!(list.circuits[0].circuit, "T201", "worst first: {list:?}");
    let t201 = &list.circuits[0];
    // All 3 recent occupations poor: the whole poor-shunt weight, 40.
    assert_eq!(t201.score, 60.0, "{t201:?}");
    assert_eq!(t201.deductions[0].cause, "poor_shunt");
    assert_eq!(t201.deductions[0].points, 40.0);
    assert_eq!(list.circuits[1].score, 100.0);
    assert_eq!(list.alarm_below, 50.0);
    let detail: CircuitHealthDetail = server
        .get(server.url("/api/health/T201"))
        .await
        .expect("GET /api/health/T201")
        .json()
        .await
        .expect("health detail");
    assert_eq!(detail.days.len(), 1);
    assert_eq!(detail.days[0].lowest, 60.0);
    let open = exceptions(&server, "?active=true").await;
    assert!(
        open.iter().all(|e| e.subject != "T202/relay_voltage"),
        "{open:?}"
    );

    // And as CSV.
    let csv = server
        .get(server.url(&format!(
            "/api/occupations.csv?circuit=T201&from={from}&to={}",
            from + 600 * S
        )))
        .await
        .expect("GET /api/occupations.csv")
        .text()
        .await
        .expect("CSV");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("circuit,start_utc,end_utc,duration_s,class,drop_value_v"));
    assert!(lines[1].starts_with("T201,"), "{csv}");
    assert!(
        lines[1].contains(",40.000,normal,1.5,1.5,0.5,0.5,"),
        "{csv}"
    );
}

#[tokio::test]
async fn a_backlog_arriving_late_is_derived_into_the_table() {
    let server = TestServer::start().await;
    let mut gateway = server.gateway("gw-late").await;
    let from = now_ms() - 15 * 60 * S;
    let all = readings(
        "T301",
        from,
        780,
        &[(60 * S, 100 * S), (400 * S, 440 * S)],
        0.02,
    );
    // The gateway lost its link from 300 s to 500 s: that stretch comes last.
    let (late, on_time): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|(_, t, _)| *t >= from + 300 * S && *t < from + 500 * S);
    publish(&mut gateway, "gw-late", &on_time).await;
    let before = eventually("the on-time stretch derived", || async {
        let listed = occupations(&server, "T301", from, from + 780 * S).await;
        listed
            .derived_to
            .is_some_and(|d| d >= from + 700 * S)
            .then_some(listed)
    })
    .await;
    assert_eq!(before.occupations.len(), 1, "{before:?}");
    assert_eq!(before.occupations[0].start, from + 60 * S);

    publish(&mut gateway, "gw-late", &late).await;
    let after = eventually("the backlog derived", || async {
        let listed = occupations(&server, "T301", from, from + 780 * S).await;
        (listed.occupations.len() == 2).then_some(listed)
    })
    .await;
    assert_eq!(after.occupations[0], before.occupations[0]);
    let second = &after.occupations[1];
    assert_eq!((second.start, second.end), (from + 400 * S, from + 440 * S));
    assert_eq!(second.drop_value, Some(1.5));
    assert_eq!(second.missing_readings, 0);
}

#[tokio::test]
async fn bad_occupation_requests_say_what_to_send() {
    let server = TestServer::start().await;
    for query in [
        "/api/occupations?from=0&to=1",
        "/api/occupations?circuit=T1/x&from=0&to=1",
        "/api/occupations?circuit=T1&from=10&to=1",
        "/api/occupations?circuit=T1&from=0&to=9999999999999",
        "/api/health/T1?days=0",
    ] {
        let response = server.get(server.url(query)).await.expect("GET");
        assert_eq!(response.status(), 400, "{query}");
        let body: serde_json::Value = response.json().await.expect("JSON");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{query}: {body}"
        );
    }
}

/// Waits until the server scored `circuit` from `occupations` occupations.
async fn scored(server: &TestServer, circuit: &str, occupations: u32) -> HealthList {
    eventually("the circuit scored", || async {
        let list: HealthList = server
            .get(server.url("/api/health"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let health = list.circuits.iter().find(|h| h.circuit == circuit)?;
        (health.occupations == occupations).then_some(list)
    })
    .await
}

#[tokio::test]
async fn a_circuits_health_shows_on_its_card_and_its_page() {
    let mut config = test_config();
    config.health.every_s = 10;
    let layout_dir = tempfile::tempdir().expect("a layout directory");
    let layout = layout_dir.path().join("yard.toml");
    let line = crate::yard::LINE_LAYOUT
        .replace(r#""A""#, r#""T201""#)
        .replace(r#""B""#, r#""T202""#);
    std::fs::write(&layout, line).expect("writing the layout");
    config.yard.layout = Some(layout);
    let server = TestServer::start_with(config).await;
    let mut gateway = server.gateway("gw-cards").await;
    let from = now_ms() - 12 * 60 * S;
    let trains = [(60 * S, 100 * S), (250 * S, 290 * S), (450 * S, 480 * S)];
    publish(
        &mut gateway,
        "gw-cards",
        &readings("T201", from, 600, &trains, 0.5),
    )
    .await;
    publish(
        &mut gateway,
        "gw-cards",
        &readings("T202", from, 600, &trains, 0.02),
    )
    .await;
    scored(&server, "T201", 3).await;
    scored(&server, "T202", 3).await;

    let (_driver, client) = signed_in_browser(&server, "Vera Viewer", Role::Viewer).await;
    let card = "[data-circuit=T201] [data-testid=card-health]";
    wait_for_attribute(&client, card, "data-health", "60").await;
    assert_eq!(
        attribute(&client, card, "data-health-level")
            .await
            .as_deref(),
        Some("fair")
    );
    wait_for_text(&client, &format!("{card} .health-cause"), "poor shunt").await;
    wait_for_attribute(
        &client,
        "[data-circuit=T202] [data-testid=card-health]",
        "data-health",
        "100",
    )
    .await;
    // The worst circuit leads the strip above the board.
    wait_for_text(
        &client,
        "[data-testid=worst-circuits] li:first-child .worst-circuit",
        "T201",
    )
    .await;
    if let Ok(png) = client.screenshot().await {
        screenshot_to("health-board.png", png);
    }

    // Its page: the score, what lowered it, the day, the occupations.
    client
        .find(Locator::Css(card))
        .await
        .expect("the card's health")
        .click()
        .await
        .expect("click");
    wait_for_text(&client, "[data-testid=health-score]", "60 / 100").await;
    let deductions = crate::browser::text(&client, "[data-testid=health-deductions]")
        .await
        .unwrap_or_default();
    assert!(deductions.contains("poor shunt"), "{deductions}");
    assert!(
        deductions.contains("3 of the last 3 occupations shunted poorly"),
        "{deductions}"
    );
    eventually("the occupations listed", || async {
        let rows = client
            .find_all(Locator::Css("[data-testid=occupations] tbody tr"))
            .await
            .ok()?;
        (rows.len() == 3).then_some(())
    })
    .await;
    assert!(
        client
            .find(Locator::Css("[data-testid=health-trend] rect"))
            .await
            .is_ok()
    );
    if let Ok(png) = client.screenshot().await {
        screenshot_to("health-page.png", png);
    }

    // The diagram: each circuit's score under its track, coloured when low.
    client
        .goto(&server.url("/diagram"))
        .await
        .expect("open the diagram");
    let on_diagram = |circuit: &str| format!("text.circuit-health[data-health-of={circuit}]");
    wait_for_text(&client, &on_diagram("T201"), "health 60").await;
    assert_eq!(
        attribute(&client, &on_diagram("T201"), "data-health-level")
            .await
            .as_deref(),
        Some("fair")
    );
    wait_for_attribute(&client, &on_diagram("T202"), "data-health-level", "good").await;
    if let Ok(png) = client.screenshot().await {
        screenshot_to("health-diagram.png", png);
    }
    assert_eq!(csp_violations(&client).await, None);
    client.close().await.expect("closing the browser session");
}
