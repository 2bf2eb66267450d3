//! Table tests for the alarm side: priority from severity and the
//! layout's criticality, shelving and its expiry, maintenance suppression
//! and release, escalation timing. Times are seconds from an arbitrary
//! origin; each transition is written as
//! `"<seconds> <kind> <subject> <priority> [announced <level>]"`.

use chrono::DateTime;

use super::*;
use crate::exceptions::priority::{Criticalities, Escalation};
use trackside_wire::Layout;

const T0: Ms = 1_800_000_000_000;

fn at(seconds: f64) -> Ms {
    T0 + (seconds * 1000.0).round() as Ms
}

/// `rv` (major) and `rv-info` (info) on relay voltage below 0.8 V.
fn engine(escalation: Escalation) -> Engine {
    #[derive(serde::Deserialize)]
    struct File {
        rules: Vec<Rule>,
    }
    let rules = toml::from_str::<File>(
        r#"
[[rules]]
id = "rv"
target = "*/relay_voltage"
severity = "major"
kind = "limit"
low_set = 0.8
low_clear = 0.9

[[rules]]
id = "rv-critical"
target = "*/feed_current"
severity = "critical"
kind = "limit"
low_set = 0.8
low_clear = 0.9
"#,
    )
    .expect("test rules parse")
    .rules;
    let layout: Layout = serde_json::from_value(serde_json::json!({
        "name": null,
        "circuits": [
            {"id": "S1", "name": null, "criticality": "siding"},
            {"id": "L1", "name": null, "criticality": "loop"},
            {"id": "T1", "name": null, "criticality": "running_line"},
        ],
        "sections": [], "points": [], "signals": [], "labels": [], "routes": [],
        "adjacent": [],
    }))
    .expect("a layout");
    Engine::new(rules, None)
        .expect("valid rules")
        .with_policy(AlarmPolicy {
            criticalities: Criticalities::from_layout(&layout),
            escalation,
        })
}

fn off() -> Escalation {
    Escalation::default()
}

/// A reading of `value` on `channel` from gateway `gw` at `s` seconds.
fn read(engine: &mut Engine, s: f64, channel: &str, value: f64, out: &mut Vec<Transition>) {
    let reading = DecodedReading {
        channel: ChannelName::parse(channel).expect("channel"),
        ts: DateTime::from_timestamp_millis(at(s)).expect("ts"),
        value,
    };
    engine.readings("gw", &[reading], at(s), out);
}

fn lines(out: &[Transition]) -> Vec<String> {
    out.iter()
        .map(|t| {
            let seconds = (t.at - T0) as f64 / 1000.0;
            let announced = t
                .announce
                .map_or(String::new(), |level| format!(" announced {level}"));
            format!(
                "{seconds} {} {} {}{announced}",
                t.kind.as_str(),
                t.key.subject,
                t.alarm.priority.as_str()
            )
        })
        .collect()
}

fn key(rule: &str, subject: &str) -> Key {
    Key {
        rule: rule.into(),
        subject: subject.into(),
    }
}

#[test]
fn priority_comes_from_the_rule_severity_and_the_layout_criticality() {
    use Criticality::*;
    use Priority::*;
    let cases = [
        // (channel, criticality, priority)
        ("S1/relay_voltage", Siding, Low),
        ("L1/relay_voltage", Loop, Medium),
        ("T1/relay_voltage", RunningLine, High),
        // Not in the layout: a running line.
        ("T9/relay_voltage", RunningLine, High),
        ("S1/feed_current", Siding, Medium),
        ("L1/feed_current", Loop, High),
    ];
    for (channel, criticality, priority) in cases {
        let mut engine = engine(off());
        let mut out = Vec::new();
        read(&mut engine, 0.0, channel, 0.5, &mut out);
        assert_eq!(out.len(), 1, "{channel}");
        let alarm = &out[0].alarm;
        assert_eq!(
            (alarm.criticality, alarm.priority, alarm.base_priority),
            (criticality, priority, priority),
            "{channel}"
        );
        assert_eq!(
            out[0].announce,
            Some(0),
            "{channel}: a new exception is announced"
        );
    }
}

#[test]
fn a_new_layout_ranks_what_is_raised_after_it() {
    let mut engine = engine(off());
    let mut out = Vec::new();
    read(&mut engine, 0.0, "S1/relay_voltage", 0.5, &mut out);
    engine.set_criticalities(Criticalities::default());
    read(&mut engine, 1.0, "S2/relay_voltage", 0.5, &mut out);
    assert_eq!(
        lines(&out),
        [
            "0 raised S1/relay_voltage low announced 0",
            "1 raised S2/relay_voltage high announced 0",
        ]
    );
}

fn shelf(id: i64, scope: ShelfScope, until_s: f64) -> Shelf {
    Shelf {
        id,
        rule: "rv".into(),
        scope,
        until: at(until_s),
        by: "ann".into(),
        reason: "known fault, fitter on site".into(),
    }
}

#[test]
fn a_shelf_hides_until_it_runs_out_and_then_announces_again() {
    let mut engine = engine(off());
    let mut out = Vec::new();
    read(&mut engine, 0.0, "T1/relay_voltage", 0.5, &mut out);
    let hidden = engine
        .shelve(
            shelf(1, ShelfScope::Subject("T1/relay_voltage".into()), 60.0),
            at(5.0),
            &mut out,
        )
        .expect("shelved");
    assert_eq!(hidden, 1);
    // The circuit shelf covers what is raised on it later, silently.
    engine
        .shelve(
            shelf(2, ShelfScope::Circuit("L1".into()), 30.0),
            at(6.0),
            &mut out,
        )
        .expect("shelved");
    read(&mut engine, 10.0, "L1/relay_voltage", 0.5, &mut out);
    engine.tick(at(29.0), &mut out);
    engine.tick(at(30.0), &mut out);
    engine.tick(at(59.9), &mut out);
    engine.tick(at(60.0), &mut out);
    assert_eq!(
        lines(&out),
        [
            "0 raised T1/relay_voltage high announced 0",
            "5 shelved T1/relay_voltage high",
            "10 raised L1/relay_voltage medium",
            "30 unshelved L1/relay_voltage medium announced 0",
            "60 unshelved T1/relay_voltage high announced 0",
        ]
    );
    assert_eq!(engine.shelves().count(), 0);
    assert_eq!(out[1].by.as_deref(), Some("ann"));
    assert_eq!(
        out[1].comment.as_deref(),
        Some("known fault, fitter on site")
    );
}

#[test]
fn shelves_are_refused_for_unknown_rules_and_past_times_and_end_by_hand() {
    let mut engine = engine(off());
    let mut out = Vec::new();
    let mut unknown = shelf(1, ShelfScope::Circuit("T1".into()), 60.0);
    unknown.rule = "nope".into();
    assert_eq!(
        engine.shelve(unknown, at(0.0), &mut out),
        Err(ShelveError::UnknownRule)
    );
    assert_eq!(
        engine.shelve(
            shelf(1, ShelfScope::Circuit("T1".into()), 1.0),
            at(1.0),
            &mut out
        ),
        Err(ShelveError::Expired)
    );
    read(&mut engine, 2.0, "T1/relay_voltage", 0.5, &mut out);
    engine
        .shelve(
            shelf(3, ShelfScope::Circuit("T1".into()), 600.0),
            at(3.0),
            &mut out,
        )
        .expect("shelved");
    assert!(engine.unshelve(3, "bob", at(4.0), &mut out));
    assert!(
        !engine.unshelve(3, "bob", at(5.0), &mut out),
        "ended already"
    );
    assert_eq!(
        lines(&out),
        [
            "2 raised T1/relay_voltage high announced 0",
            "3 shelved T1/relay_voltage high",
            "4 unshelved T1/relay_voltage high announced 0",
        ]
    );
    assert_eq!(out[2].message, "unshelved by bob");
}

fn window(id: i64, circuits: &[&str], gateway: Option<&str>, from: f64, to: f64) -> Window {
    Window {
        id,
        circuits: circuits.iter().map(|c| (*c).to_owned()).collect(),
        gateway: gateway.map(str::to_owned),
        starts: at(from),
        ends: at(to),
    }
}

#[test]
fn a_maintenance_window_suppresses_and_its_end_releases_what_is_still_active() {
    let mut engine = engine(off());
    let mut out = Vec::new();
    engine.add_window(window(7, &["T1", "L*"], None, 10.0, 100.0));
    // Before the window: raised normally.
    read(&mut engine, 5.0, "T1/relay_voltage", 0.5, &mut out);
    read(&mut engine, 6.0, "T1/relay_voltage", 1.0, &mut out);
    engine
        .acknowledge(
            &key("rv", "T1/relay_voltage"),
            "ann",
            "ok",
            at(7.0),
            &mut out,
        )
        .expect("acknowledged");
    // Inside: recorded, suppressed, not announced.
    read(&mut engine, 20.0, "T1/relay_voltage", 0.5, &mut out);
    read(&mut engine, 21.0, "L1/relay_voltage", 0.5, &mut out);
    // Not covered: announced.
    read(&mut engine, 22.0, "S1/relay_voltage", 0.5, &mut out);
    // Cleared inside the window: closed, nobody need acknowledge it.
    read(&mut engine, 30.0, "L1/relay_voltage", 1.0, &mut out);
    engine.tick(at(99.0), &mut out);
    engine.tick(at(100.0), &mut out);
    assert_eq!(
        lines(&out),
        [
            "5 raised T1/relay_voltage high announced 0",
            "6 cleared T1/relay_voltage high",
            "7 acknowledged T1/relay_voltage high",
            "20 raised T1/relay_voltage high",
            "21 raised L1/relay_voltage medium",
            "22 raised S1/relay_voltage low announced 0",
            "30 cleared L1/relay_voltage medium",
            "100 released T1/relay_voltage high announced 0",
        ]
    );
    let suppressed: Vec<(bool, Option<i64>)> = out[3..5]
        .iter()
        .map(|t| (t.alarm.suppressed, t.alarm.window))
        .collect();
    assert_eq!(suppressed, [(true, Some(7)), (true, Some(7))]);
    assert!(
        out[6].closes,
        "cleared under the window: closed unacknowledged"
    );
    assert!(!out[7].alarm.suppressed);
    assert_eq!(engine.open_count(), 2);
    assert_eq!(engine.windows().count(), 0, "an ended window is forgotten");
}

#[test]
fn a_window_on_a_gateway_covers_its_channels_and_ends_early_by_hand() {
    let mut engine = engine(off());
    let mut out = Vec::new();
    engine.add_window(window(3, &[], Some("gw"), 0.0, 3_600.0));
    read(&mut engine, 10.0, "S1/relay_voltage", 0.5, &mut out);
    assert!(engine.end_window(3, at(20.0), &mut out));
    assert!(!engine.end_window(3, at(21.0), &mut out), "ended already");
    read(&mut engine, 30.0, "T1/relay_voltage", 0.5, &mut out);
    assert_eq!(
        lines(&out),
        [
            "10 raised S1/relay_voltage low",
            "20 released S1/relay_voltage low announced 0",
            "30 raised T1/relay_voltage high announced 0",
        ]
    );
}

#[test]
fn unacknowledged_exceptions_escalate_by_priority_until_the_levels_run_out() {
    let escalation = Escalation {
        after_s: [None, Some(1_800.0), Some(300.0)],
        levels: 2,
    };
    let mut engine = engine(escalation);
    let mut out = Vec::new();
    read(&mut engine, 0.0, "T1/relay_voltage", 0.5, &mut out); // high
    read(&mut engine, 0.0, "L1/relay_voltage", 0.5, &mut out); // medium
    read(&mut engine, 0.0, "S1/relay_voltage", 0.5, &mut out); // low: never
    read(&mut engine, 0.0, "T2/relay_voltage", 0.5, &mut out); // high, acknowledged
    engine
        .acknowledge(
            &key("rv", "T2/relay_voltage"),
            "ann",
            "ok",
            at(100.0),
            &mut out,
        )
        .expect("acknowledged");
    for s in [
        299.0, 300.0, 599.0, 600.0, 900.0, 1_799.0, 1_800.0, 2_099.0, 2_100.0, 9_000.0,
    ] {
        engine.tick(at(s), &mut out);
    }
    assert_eq!(
        lines(&out)[5..],
        [
            "300 escalated T1/relay_voltage high announced 1",
            "600 escalated T1/relay_voltage high announced 2",
            "1800 escalated L1/relay_voltage high announced 1",
            "2100 escalated L1/relay_voltage high announced 2",
        ]
    );
    let medium = &out[7].alarm;
    assert_eq!(
        (medium.base_priority, medium.priority, medium.escalation),
        (Priority::Medium, Priority::High, 1)
    );
    assert!(
        out[7].message.contains("(was medium)"),
        "{}",
        out[7].message
    );
}

/// A raise judged late (a backlog, a demo backfill, an occupation derived
/// after the fact) carries its reading's time, hours ago: nobody could
/// have acknowledged it then, so it escalates only once it has waited the
/// policy's time since the engine raised it.
#[test]
fn a_raise_judged_late_escalates_from_when_it_was_raised() {
    let escalation = Escalation {
        after_s: [None, Some(1_800.0), Some(300.0)],
        levels: 2,
    };
    let mut engine = engine(escalation);
    let mut out = Vec::new();
    engine.tick(at(4.0 * 3_600.0), &mut out);
    read(&mut engine, 0.0, "T1/relay_voltage", 0.5, &mut out); // high, 4 h old
    for s in [
        4.0 * 3_600.0 + 1.0,
        4.0 * 3_600.0 + 299.0,
        4.0 * 3_600.0 + 300.0,
    ] {
        engine.tick(at(s), &mut out);
    }
    assert_eq!(
        lines(&out),
        [
            "0 raised T1/relay_voltage high announced 0",
            "14700 escalated T1/relay_voltage high announced 1",
        ]
    );
}

#[test]
fn acknowledging_or_shelving_stops_the_escalation_clock() {
    let escalation = Escalation {
        after_s: [None, None, Some(60.0)],
        levels: 3,
    };
    let mut engine = engine(escalation);
    let mut out = Vec::new();
    read(&mut engine, 0.0, "T1/relay_voltage", 0.5, &mut out);
    read(&mut engine, 0.0, "T2/relay_voltage", 0.5, &mut out);
    engine.tick(at(60.0), &mut out);
    engine
        .acknowledge(
            &key("rv", "T1/relay_voltage"),
            "ann",
            "ok",
            at(70.0),
            &mut out,
        )
        .expect("acknowledged");
    engine
        .shelve(
            shelf(1, ShelfScope::Subject("T2/relay_voltage".into()), 200.0),
            at(70.0),
            &mut out,
        )
        .expect("shelved");
    engine.tick(at(199.0), &mut out);
    // Unshelved at 200: the clock starts again from there.
    engine.tick(at(200.0), &mut out);
    engine.tick(at(259.0), &mut out);
    engine.tick(at(260.0), &mut out);
    assert_eq!(
        lines(&out),
        [
            "0 raised T1/relay_voltage high announced 0",
            "0 raised T2/relay_voltage high announced 0",
            "60 escalated T1/relay_voltage high announced 1",
            "60 escalated T2/relay_voltage high announced 1",
            "70 acknowledged T1/relay_voltage high",
            "70 shelved T2/relay_voltage high",
            "200 unshelved T2/relay_voltage high announced 0",
            "260 escalated T2/relay_voltage high announced 2",
        ]
    );
}

#[test]
fn a_resumed_suppressed_exception_stays_so_while_its_window_holds() {
    let mut engine = engine(off());
    let mut out = Vec::new();
    // After a restart: the window is back, but no reading has said which
    // gateway the channel is on yet.
    engine.add_window(window(5, &[], Some("gw"), 0.0, 100.0));
    let mut alarm = AlarmState::new(Priority::High, Criticality::RunningLine);
    alarm.suppressed = true;
    alarm.window = Some(5);
    engine.resume(
        vec![Resumed {
            key: key("rv", "T1/relay_voltage"),
            active: true,
            acked_at: None,
            alarm,
        }],
        at(10.0),
        &mut out,
    );
    engine.tick(at(50.0), &mut out);
    assert!(out.is_empty(), "{:?}", lines(&out));
    engine.tick(at(100.0), &mut out);
    assert_eq!(
        lines(&out),
        ["100 released T1/relay_voltage high announced 0"]
    );
}

#[test]
fn a_resumed_shelved_exception_stays_so_and_one_whose_shelf_ran_out_comes_back() {
    let shelved = |subject: &str, shelf_id: i64| {
        let mut alarm = AlarmState::new(Priority::High, Criticality::RunningLine);
        alarm.shelf = Some((shelf_id, at(100.0)));
        Resumed {
            key: key("rv", subject),
            active: true,
            acked_at: None,
            alarm,
        }
    };
    let mut engine = engine(off());
    let mut out = Vec::new();
    // Shelf 1 still holds; shelf 2 ran out while the server was down.
    engine.restore(
        vec![shelf(
            1,
            ShelfScope::Subject("T1/relay_voltage".into()),
            100.0,
        )],
        Vec::new(),
    );
    engine.resume(
        vec![
            shelved("T1/relay_voltage", 1),
            shelved("T2/relay_voltage", 2),
        ],
        at(10.0),
        &mut out,
    );
    engine.tick(at(50.0), &mut out);
    engine.tick(at(100.0), &mut out);
    assert_eq!(
        lines(&out),
        [
            "10 unshelved T2/relay_voltage high announced 0",
            "100 unshelved T1/relay_voltage high announced 0",
        ],
        "no second shelving of what was shelved before the restart"
    );
}
