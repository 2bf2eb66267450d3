//! Table tests for alarm floods: the threshold, the sliding window,
//! grouping by cause, what does not count, the high-priority escape,
//! summaries while a group grows, the end after the quiet period, and a
//! restart. The policy here is small so the tables stay short: more than 3
//! raises in 60 s is a flood, it ends after 30 s at or below that, a
//! growing group is summarised again at most every 20 s. Each transition is
//! written `"<seconds> <kind> <subject> <priority> [announced] [<group>]"`.

use chrono::DateTime;

use super::*;
use crate::exceptions::flood::{FloodPolicy, Notice};
use crate::exceptions::priority::{Criticalities, Escalation};
use trackside_wire::Layout;

const T0: Ms = 1_800_000_000_000;

fn at(seconds: f64) -> Ms {
    T0 + (seconds * 1000.0).round() as Ms
}

const POLICY: FloodPolicy = FloodPolicy {
    max_raises: 3,
    window_ms: 60_000,
    quiet_ms: 30_000,
    update_ms: 20_000,
};

/// `rv` (major, relay voltage below 0.8 V), `fc` (critical, feed current
/// below 0.8 A) and `offline` (major, gateway offline); `S*` circuits are
/// sidings (`rv` low, `fc` medium), `T*` running lines (high).
fn engine(policy: Option<FloodPolicy>) -> Engine {
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
id = "fc"
target = "*/feed_current"
severity = "critical"
kind = "limit"
low_set = 0.8
low_clear = 0.9

[[rules]]
id = "offline"
target = "*"
severity = "major"
kind = "gateway_offline"
"#,
    )
    .expect("test rules parse")
    .rules;
    let circuits: Vec<serde_json::Value> = (1..=20)
        .map(|n| serde_json::json!({"id": format!("S{n}"), "name": null, "criticality": "siding"}))
        .collect();
    let layout: Layout = serde_json::from_value(serde_json::json!({
        "name": null, "circuits": circuits,
        "sections": [], "points": [], "signals": [], "labels": [], "routes": [], "adjacent": [],
    }))
    .expect("a layout");
    let engine = Engine::new(rules, None)
        .expect("valid rules")
        .with_policy(AlarmPolicy {
            criticalities: Criticalities::from_layout(&layout),
            escalation: Escalation::default(),
        });
    match policy {
        Some(policy) => engine.with_floods(policy),
        None => engine,
    }
}

/// A reading of `value` on `channel` from `gateway` at `s` seconds.
fn read(
    engine: &mut Engine,
    gateway: &str,
    s: f64,
    channel: &str,
    value: f64,
    out: &mut Vec<Transition>,
) {
    let reading = DecodedReading {
        channel: ChannelName::parse(channel).expect("channel"),
        ts: DateTime::from_timestamp_millis(at(s)).expect("ts"),
        value,
    };
    engine.readings(gateway, &[reading], at(s), out);
}

/// Relay voltage low on sidings `S<from>..=S<to>` from `gateway`, one a
/// second from `s`.
fn burst(
    engine: &mut Engine,
    gateway: &str,
    s: f64,
    from: u32,
    to: u32,
    out: &mut Vec<Transition>,
) {
    for (i, n) in (from..=to).enumerate() {
        read(
            engine,
            gateway,
            s + i as f64,
            &format!("S{n}/relay_voltage"),
            0.5,
            out,
        );
    }
}

fn lines(out: &[Transition]) -> Vec<String> {
    out.iter()
        .map(|t| {
            let seconds = (t.at - T0) as f64 / 1000.0;
            let announced = if t.announce.is_some() {
                " announced"
            } else {
                ""
            };
            let group = t
                .alarm
                .flood
                .as_ref()
                .map_or(String::new(), |f| format!(" [{}]", f.group));
            format!(
                "{seconds} {} {} {}{announced}{group}",
                t.kind.as_str(),
                t.key.subject,
                t.alarm.priority.as_str()
            )
        })
        .collect()
}

/// The notices of every change taken now, as `"<kind> <group or ended>"`.
fn notices(engine: &mut Engine) -> Vec<String> {
    engine
        .take_flood_changes()
        .into_iter()
        .flat_map(|c| c.notices)
        .map(|n| match n {
            Notice::Group { key, update: false } => format!("formed {key}"),
            Notice::Group { key, update: true } => format!("update {key}"),
            Notice::Ended => "ended".into(),
        })
        .collect()
}

#[test]
fn at_the_threshold_nothing_changes_and_over_it_a_flood_groups_the_raises() {
    // (raises, flood)
    let cases = [(2, false), (3, false), (4, true), (6, true)];
    for (raises, flooded) in cases {
        let mut engine = engine(Some(POLICY));
        let mut out = Vec::new();
        burst(&mut engine, "gw", 0.0, 1, raises, &mut out);
        assert_eq!(engine.flood().is_some(), flooded, "{raises} raises");
        let announced = out.iter().filter(|t| t.announce.is_some()).count();
        assert_eq!(
            announced,
            raises.min(3) as usize,
            "{raises} raises: announced one by one"
        );
    }
    let mut engine = engine(Some(POLICY));
    let mut out = Vec::new();
    burst(&mut engine, "gw", 0.0, 1, 5, &mut out);
    assert_eq!(
        lines(&out),
        [
            "0 raised S1/relay_voltage low announced",
            "1 raised S2/relay_voltage low announced",
            "2 raised S3/relay_voltage low announced",
            // The fourth starts the flood; the three before join it.
            "3 raised S4/relay_voltage low [limit@gw]",
            "3 grouped S1/relay_voltage low [limit@gw]",
            "3 grouped S2/relay_voltage low [limit@gw]",
            "3 grouped S3/relay_voltage low [limit@gw]",
            "4 raised S5/relay_voltage low [limit@gw]",
        ]
    );
    let flood = engine.flood().expect("a flood").clone();
    assert_eq!(
        (flood.id, flood.started_at, flood.total, flood.peak),
        (at(3.0), at(3.0), 5, 5)
    );
    assert_eq!(flood.groups.len(), 1);
    assert_eq!(flood.groups[0].summary, "5 limit alarms on gw");
    assert_eq!(flood.groups[0].circuits, ["S1", "S2", "S3", "S4", "S5"]);
    // One summary as the group formed; the fifth raise waits for an update.
    assert_eq!(notices(&mut engine), ["formed limit@gw"]);
    assert!(
        engine
            .alarm(&Key {
                rule: "rv".into(),
                subject: "S1/relay_voltage".into()
            })
            .and_then(|a| a.flood.as_ref())
            .is_some_and(|f| f.flood == flood.id),
        "an exception that started the flood knows it"
    );
}

#[test]
fn the_window_slides_so_raises_spread_out_are_no_flood() {
    let mut engine = engine(Some(POLICY));
    let mut out = Vec::new();
    for (i, s) in [0.0, 20.0, 40.0, 60.0, 80.0, 100.0].into_iter().enumerate() {
        read(
            &mut engine,
            "gw",
            s,
            &format!("S{}/relay_voltage", i + 1),
            0.5,
            &mut out,
        );
    }
    assert!(engine.flood().is_none(), "never more than 3 within 60 s");
    assert!(out.iter().all(|t| t.announce.is_some()));
    // Three within the last minute, and a fourth: a flood.
    read(&mut engine, "gw", 101.0, "S7/relay_voltage", 0.5, &mut out);
    assert!(engine.flood().is_some());
    assert_eq!(
        engine.flood().map(|f| f.total),
        Some(4),
        "S3 (40 s) has slid out"
    );
}

#[test]
fn raises_group_by_kind_and_gateway_and_gateway_kinds_over_the_yard() {
    let mut engine = engine(Some(POLICY));
    let mut out = Vec::new();
    burst(&mut engine, "gw-a", 0.0, 1, 3, &mut out);
    burst(&mut engine, "gw-b", 3.0, 4, 5, &mut out);
    read(&mut engine, "gw-b", 5.0, "S6/feed_current", 0.5, &mut out);
    engine.gateway_status("gw-c", false, at(6.0), &mut out);
    engine.gateway_status("gw-d", false, at(7.0), &mut out);
    let flood = engine.flood().expect("a flood");
    let groups: Vec<(&str, &str)> = flood
        .groups
        .iter()
        .map(|g| (g.key.as_str(), g.summary.as_str()))
        .collect();
    assert_eq!(
        groups,
        [
            ("limit@gw-a", "3 limit alarms on gw-a"),
            ("limit@gw-b", "3 limit alarms on gw-b"),
            ("gateway_offline", "2 gateways offline"),
        ],
        "largest first; relay voltage and feed current are both limits"
    );
    assert_eq!(
        notices(&mut engine),
        [
            "formed limit@gw-a",
            "formed limit@gw-b",
            "formed gateway_offline"
        ]
    );
}

#[test]
fn shelved_and_suppressed_raises_do_not_count() {
    let mut engine = engine(Some(POLICY));
    let mut out = Vec::new();
    engine.add_window(Window {
        id: 1,
        circuits: vec!["S1*".into()],
        gateway: None,
        starts: at(0.0),
        ends: at(600.0),
    });
    engine
        .shelve(
            Shelf {
                id: 1,
                rule: "rv".into(),
                scope: ShelfScope::Circuit("S2".into()),
                until: at(600.0),
                by: "ann".into(),
                reason: "known".into(),
            },
            at(0.0),
            &mut out,
        )
        .expect("shelved");
    // S10..S19 are under the window, S2 under the shelf: eleven raises,
    // none counted.
    burst(&mut engine, "gw", 1.0, 10, 19, &mut out);
    read(&mut engine, "gw", 12.0, "S2/relay_voltage", 0.5, &mut out);
    assert!(engine.flood().is_none());
    assert!(
        out.iter()
            .all(|t| t.announce.is_none() && t.alarm.flood.is_none())
    );
    // Three more that count: still at the threshold.
    burst(&mut engine, "gw", 13.0, 3, 5, &mut out);
    assert!(engine.flood().is_none());
    read(&mut engine, "gw", 16.0, "S6/relay_voltage", 0.5, &mut out);
    assert_eq!(engine.flood().map(|f| f.total), Some(4));
}

#[test]
fn a_high_raise_forming_a_group_is_announced_on_its_own() {
    let mut engine = engine(Some(POLICY));
    let mut out = Vec::new();
    burst(&mut engine, "gw", 0.0, 1, 4, &mut out);
    assert_eq!(notices(&mut engine), ["formed limit@gw"]);
    out.clear();
    // A running line on another gateway: a new group, high: announced.
    read(&mut engine, "gw-2", 5.0, "T1/relay_voltage", 0.5, &mut out);
    // High on an announced low group: covered, but the group's update goes
    // out at once (its priority rose).
    read(&mut engine, "gw", 6.0, "T2/relay_voltage", 0.5, &mut out);
    // High on the announced high group: covered by it.
    read(&mut engine, "gw-2", 7.0, "T3/relay_voltage", 0.5, &mut out);
    assert_eq!(
        lines(&out),
        [
            "5 raised T1/relay_voltage high announced [limit@gw-2]",
            "6 raised T2/relay_voltage high [limit@gw]",
            "7 raised T3/relay_voltage high [limit@gw-2]",
        ]
    );
    assert_eq!(notices(&mut engine), ["formed limit@gw-2"]);
    engine.tick(at(8.0), &mut out);
    assert_eq!(
        notices(&mut engine),
        ["update limit@gw"],
        "priority rose: at once"
    );
    let flood = engine.flood().expect("a flood");
    let gw = flood
        .groups
        .iter()
        .find(|g| g.key == "limit@gw")
        .expect("group");
    assert_eq!(
        (gw.count, gw.priority, gw.notified_count),
        (5, Priority::High, 5)
    );
}

#[test]
fn a_growing_group_is_summarised_again_at_most_every_update_period() {
    let mut engine = engine(Some(POLICY));
    let mut out = Vec::new();
    burst(&mut engine, "gw", 0.0, 1, 4, &mut out);
    assert_eq!(notices(&mut engine), ["formed limit@gw"]);
    // (second, new raise, notices at the tick)
    let cases: [(f64, Option<u32>, &[&str]); 5] = [
        (5.0, Some(5), &[]),
        (10.0, Some(6), &[]),
        (23.0, None, &["update limit@gw"]),
        (30.0, Some(7), &[]),
        (43.0, None, &["update limit@gw"]),
    ];
    for (s, raise, expected) in cases {
        if let Some(n) = raise {
            read(
                &mut engine,
                "gw",
                s,
                &format!("S{n}/relay_voltage"),
                0.5,
                &mut out,
            );
        }
        engine.tick(at(s), &mut out);
        assert_eq!(notices(&mut engine), expected, "at {s} s");
    }
    // Nothing new: no update.
    engine.tick(at(70.0), &mut out);
    assert_eq!(notices(&mut engine), Vec::<String>::new());
}

#[test]
fn a_flood_ends_once_quiet_for_the_quiet_period_with_its_final_counts() {
    let mut engine = engine(Some(POLICY));
    let mut out = Vec::new();
    burst(&mut engine, "gw", 0.0, 1, 6, &mut out);
    let _ = notices(&mut engine);
    // The count is over 3 until S3 (at 2 s) leaves the window at 62 s; quiet
    // from then, it ends 30 s later.
    for s in [30.0, 61.0, 62.0, 91.0] {
        engine.tick(at(s), &mut out);
        assert!(engine.flood().is_some(), "still on at {s} s");
    }
    // The two raises after the group formed, summarised once meanwhile.
    assert_eq!(notices(&mut engine), ["update limit@gw"]);
    engine.tick(at(92.0), &mut out);
    assert!(engine.flood().is_none());
    let changes = engine.take_flood_changes();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].notices, [Notice::Ended]);
    let flood = &changes[0].flood;
    assert_eq!(
        (flood.ended_at, flood.total, flood.peak),
        (Some(at(92.0)), 6, 6)
    );
    // A raise now is announced on its own again.
    out.clear();
    read(&mut engine, "gw", 93.0, "S7/relay_voltage", 0.5, &mut out);
    assert_eq!(lines(&out), ["93 raised S7/relay_voltage low announced"]);
}

#[test]
fn a_raise_quiet_period_is_interrupted_by_a_new_burst() {
    let mut engine = engine(Some(POLICY));
    let mut out = Vec::new();
    burst(&mut engine, "gw", 0.0, 1, 4, &mut out);
    engine.tick(at(61.0), &mut out);
    // Quiet since 61 s; a new burst at 80 s is over the threshold again.
    burst(&mut engine, "gw", 80.0, 5, 8, &mut out);
    engine.tick(at(100.0), &mut out);
    assert!(engine.flood().is_some(), "the burst broke the quiet period");
    assert_eq!(
        engine.flood().map(|f| f.total),
        Some(8),
        "one flood, not two"
    );
}

#[test]
fn without_a_policy_every_raise_is_announced() {
    let mut engine = engine(None);
    let mut out = Vec::new();
    burst(&mut engine, "gw", 0.0, 1, 12, &mut out);
    assert!(engine.flood().is_none());
    assert_eq!(out.iter().filter(|t| t.announce.is_some()).count(), 12);
    assert!(engine.take_flood_changes().is_empty());
}

#[test]
fn a_restart_resumes_the_flood_and_its_groups() {
    let mut first = engine(Some(POLICY));
    let mut out = Vec::new();
    burst(&mut first, "gw", 0.0, 1, 5, &mut out);
    let flood = first.flood().expect("a flood").clone();
    let open: Vec<Resumed> = ["S1", "S2", "S3", "S4", "S5"]
        .iter()
        .map(|c| {
            let key = Key {
                rule: "rv".into(),
                subject: format!("{c}/relay_voltage"),
            };
            Resumed {
                alarm: first.alarm(&key).expect("open").clone(),
                key,
                active: true,
                acked_at: None,
            }
        })
        .collect();

    let mut second = engine(Some(POLICY));
    second.resume_flood(flood.clone(), at(10.0));
    let mut out = Vec::new();
    second.resume(open, at(10.0), &mut out);
    assert!(out.is_empty(), "nothing raised twice");
    assert_eq!(second.flood().map(|f| f.id), Some(flood.id));
    // A raise of the same cause joins the same group of the same flood,
    // covered by its summary.
    read(&mut second, "gw", 11.0, "S6/relay_voltage", 0.5, &mut out);
    assert_eq!(lines(&out), ["11 raised S6/relay_voltage low [limit@gw]"]);
    let resumed = second.flood().expect("still on");
    assert_eq!((resumed.total, resumed.groups[0].count), (6, 6));
    // The window starts empty at the restart: quiet from 10 s on, it ends
    // 30 s later.
    second.tick(at(39.0), &mut out);
    assert!(second.flood().is_some());
    second.tick(at(40.0), &mut out);
    assert!(second.flood().is_none());
    let ended = second.take_flood_changes().pop().expect("a change");
    assert_eq!(ended.notices.last(), Some(&Notice::Ended));
    assert_eq!(ended.flood.id, flood.id);
}

#[test]
fn the_default_policy_is_the_standards_benchmark() {
    let policy = crate::exceptions::ExceptionsConfig::default()
        .flood
        .policy();
    assert_eq!(
        policy,
        Some(FloodPolicy {
            max_raises: 10,
            window_ms: 600_000,
            quiet_ms: 300_000,
            update_ms: 300_000,
        })
    );
}
