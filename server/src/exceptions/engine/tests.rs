//! Table tests: for each rule kind, timestamped inputs in, the exact
//! transitions out. Times are seconds from an arbitrary origin; every
//! reading is received at its own timestamp.

use chrono::DateTime;

use super::*;

const T0: Ms = 1_800_000_000_000;

#[derive(Clone, Copy)]
enum Step {
    /// (seconds, channel, value) from gateway `gw`.
    R(f64, &'static str, f64),
    /// Several readings in one message at one receive time.
    Batch(f64, &'static [(&'static str, f64)]),
    Tick(f64),
    Status(f64, &'static str, bool),
    Ack(f64, &'static str, &'static str),
    /// (seconds, spool fill in percent, write error).
    Spool(f64, f64, Option<&'static str>),
}
use Step::*;

fn rules(toml_rules: &str) -> Vec<Rule> {
    #[derive(serde::Deserialize)]
    struct File {
        rules: Vec<Rule>,
    }
    toml::from_str::<File>(toml_rules)
        .expect("test rules parse")
        .rules
}

fn at(seconds: f64) -> Ms {
    T0 + (seconds * 1000.0).round() as Ms
}

fn reading(channel: &str, ts: Ms, value: f64) -> DecodedReading {
    DecodedReading {
        channel: ChannelName::parse(channel).expect("channel"),
        ts: DateTime::from_timestamp_millis(ts).expect("ts"),
        value,
    }
}

/// Runs the steps; every transition is written as
/// `"<seconds> <kind> <rule> <subject>"`.
fn run(engine: &mut Engine, steps: &[Step]) -> Vec<String> {
    let mut out = Vec::new();
    for step in steps {
        match *step {
            R(s, channel, value) => {
                engine.readings("gw", &[reading(channel, at(s), value)], at(s), &mut out)
            }
            Batch(s, values) => {
                let batch: Vec<_> = values.iter().map(|(c, v)| reading(c, at(s), *v)).collect();
                engine.readings("gw", &batch, at(s), &mut out);
            }
            Tick(s) => engine.tick(at(s), &mut out),
            Spool(s, percent, error) => {
                let state = SpoolState {
                    fill: percent / 100.0,
                    bytes: (percent * 1e7) as u64,
                    max_bytes: 1_000_000_000,
                    error: error.map(str::to_owned),
                    at_bound_policy: "the oldest are dropped",
                };
                engine.spool(&state, at(s), &mut out);
            }
            Status(s, gateway, online) => engine.gateway_status(gateway, online, at(s), &mut out),
            Ack(s, rule, subject) => {
                let key = Key {
                    rule: rule.into(),
                    subject: subject.into(),
                };
                if let Err(err) = engine.acknowledge(&key, "ann", "seen", at(s), &mut out) {
                    out.push(Transition {
                        key,
                        kind: TransitionKind::Acknowledged,
                        at: at(s),
                        value: None,
                        message: format!("refused: {err:?}"),
                        by: None,
                        comment: None,
                        opens: false,
                        closes: false,
                        gateway: None,
                        alarm: AlarmState::new(Priority::Low, Criticality::Siding),
                        announce: None,
                    });
                }
            }
        }
    }
    out.iter()
        .map(|t| {
            let seconds = (t.at - T0) as f64 / 1000.0;
            let refused = if t.message.starts_with("refused") {
                format!(" {}", t.message)
            } else {
                String::new()
            };
            format!(
                "{seconds} {} {} {}{refused}",
                t.kind.as_str(),
                t.key.rule,
                t.key.subject
            )
        })
        .collect()
}

fn check(toml_rules: &str, steps: &[Step], expected: &[&str]) {
    let mut engine = Engine::new(rules(toml_rules), None).expect("valid rules");
    assert_eq!(run(&mut engine, steps), expected);
}

const LIMIT: &str = r#"
[[rules]]
id = "rv"
target = "*/relay_voltage"
severity = "major"
kind = "limit"
low_set = 0.8
low_clear = 0.9
high_set = 2.0
high_clear = 1.9
"#;

#[test]
fn limit_raises_at_the_set_threshold_and_clears_past_the_clear_threshold() {
    check(
        LIMIT,
        &[
            R(0.0, "T1/relay_voltage", 1.5),
            R(1.0, "T1/relay_voltage", 0.8),
            // Between the thresholds: hysteresis keeps it raised.
            R(2.0, "T1/relay_voltage", 0.85),
            R(3.0, "T1/relay_voltage", 0.79),
            R(4.0, "T1/relay_voltage", 0.95),
            // Now clear, 0.85 does not raise again (not at low_set).
            R(5.0, "T1/relay_voltage", 0.85),
            R(6.0, "T1/relay_voltage", 2.1),
            R(7.0, "T1/relay_voltage", 1.95),
            R(8.0, "T1/relay_voltage", 1.8),
        ],
        &[
            "1 raised rv T1/relay_voltage",
            "4 cleared rv T1/relay_voltage",
            // Cleared but not acknowledged: the same exception is raised again.
            "6 raised rv T1/relay_voltage",
            "8 cleared rv T1/relay_voltage",
        ],
    );
}

const LIMIT_DELAYED: &str = r#"
[[rules]]
id = "fv"
target = "*/feed_voltage"
severity = "warning"
kind = "limit"
low_set = 2.0
low_clear = 2.5
on_delay_s = 3
off_delay_s = 5
"#;

#[test]
fn limit_waits_for_its_on_and_off_delays() {
    check(
        LIMIT_DELAYED,
        &[
            R(0.0, "T1/feed_voltage", 9.0),
            // A dip shorter than the on-delay raises nothing.
            R(1.0, "T1/feed_voltage", 1.0),
            R(2.0, "T1/feed_voltage", 9.0),
            Tick(5.0),
            // A dip that holds: raised by the tick once 3 s have passed.
            R(10.0, "T1/feed_voltage", 1.0),
            Tick(12.0),
            Tick(13.0),
            R(14.0, "T1/feed_voltage", 1.2),
            // Back up, but only for 2 s: stays raised.
            R(15.0, "T1/feed_voltage", 9.0),
            R(17.0, "T1/feed_voltage", 1.0),
            R(18.0, "T1/feed_voltage", 9.0),
            Tick(22.0),
            Tick(23.0),
        ],
        &[
            "13 raised fv T1/feed_voltage",
            "23 cleared fv T1/feed_voltage",
        ],
    );
}

const RELAY_VOLTAGE_WHEN_CLEAR: &str = r#"
[[rules]]
id = "rv"
target = "*/relay_voltage"
severity = "major"
kind = "limit"
low_set = 0.8
low_clear = 0.9
on_delay_s = 2
only_when_clear = true
"#;

#[test]
fn relay_end_limits_ignore_trains() {
    check(
        RELAY_VOLTAGE_WHEN_CLEAR,
        &[
            Batch(0.0, &[("T1/relay_voltage", 1.5), ("T1/relay_state", 1.0)]),
            // A train: the relay voltage collapses, which is normal.
            Batch(1.0, &[("T1/relay_voltage", 0.02), ("T1/relay_state", 0.0)]),
            R(2.0, "T1/relay_voltage", 0.02),
            Tick(10.0),
            Batch(40.0, &[("T1/relay_voltage", 1.5), ("T1/relay_state", 1.0)]),
            // A sag while clear is what the rule is for.
            R(50.0, "T1/relay_voltage", 0.7),
            Tick(51.0),
            Tick(52.0),
        ],
        &["52 raised rv T1/relay_voltage"],
    );
}

const RATE: &str = r#"
[[rules]]
id = "rate"
target = "*/relay_voltage"
severity = "warning"
kind = "rate_of_change"
max_per_s = 0.05
window_s = 4
off_delay_s = 2
"#;

#[test]
fn rate_of_change_is_measured_across_its_window() {
    check(
        RATE,
        &[
            R(0.0, "T1/relay_voltage", 1.50),
            R(1.0, "T1/relay_voltage", 1.52),
            R(2.0, "T1/relay_voltage", 1.49),
            R(3.0, "T1/relay_voltage", 1.51),
            R(4.0, "T1/relay_voltage", 1.50),
            // A step down of 0.5 V: 0.125 V/s across the window.
            R(5.0, "T1/relay_voltage", 1.00),
            R(6.0, "T1/relay_voltage", 1.00),
            R(7.0, "T1/relay_voltage", 1.00),
            R(8.0, "T1/relay_voltage", 1.00),
            R(9.0, "T1/relay_voltage", 1.00),
            R(10.0, "T1/relay_voltage", 1.00),
            R(11.0, "T1/relay_voltage", 1.00),
        ],
        &[
            "5 raised rate T1/relay_voltage",
            "11 cleared rate T1/relay_voltage",
        ],
    );
}

const FLICK: &str = r#"
[[rules]]
id = "flick"
target = "*/relay_state"
severity = "major"
kind = "flick"
min_occupied_s = 2
max_transitions = 4
window_s = 30
"#;

#[test]
fn a_short_occupation_is_a_flick_and_clears_after_a_quiet_window() {
    check(
        FLICK,
        &[
            R(0.0, "T1/relay_state", 1.0),
            // A real train: 40 s occupied.
            R(10.0, "T1/relay_state", 0.0),
            R(50.0, "T1/relay_state", 1.0),
            // A refresh of the same value is no change.
            R(55.0, "T1/relay_state", 1.0),
            // 0.5 s occupied: a flick.
            R(60.0, "T1/relay_state", 0.0),
            R(60.5, "T1/relay_state", 1.0),
            // Another while raised: no duplicate, but it restarts the window.
            R(70.0, "T1/relay_state", 0.0),
            R(70.4, "T1/relay_state", 1.0),
            Tick(95.0),
            Tick(100.4),
        ],
        &[
            "60.5 raised flick T1/relay_state",
            "100.4 cleared flick T1/relay_state",
        ],
    );
}

const BOBBING: &str = r#"
[[rules]]
id = "bob"
target = "*/relay_state"
severity = "major"
kind = "flick"
max_transitions = 4
window_s = 60
"#;

#[test]
fn too_many_changes_within_the_window_is_bobbing() {
    check(
        BOBBING,
        &[
            R(0.0, "T1/relay_state", 1.0),
            R(10.0, "T1/relay_state", 0.0),
            R(20.0, "T1/relay_state", 1.0),
            R(30.0, "T1/relay_state", 0.0),
            R(40.0, "T1/relay_state", 1.0),
            // The fifth change within 60 s.
            R(50.0, "T1/relay_state", 0.0),
            Tick(109.0),
            Tick(110.0),
            // Slow changes later are fine.
            R(200.0, "T1/relay_state", 1.0),
        ],
        &[
            "50 raised bob T1/relay_state",
            "110 cleared bob T1/relay_state",
        ],
    );
}

const LONG: &str = r#"
[[rules]]
id = "long"
target = "*/relay_state"
severity = "major"
kind = "long_occupation"
max_occupied_s = 600
"#;

#[test]
fn long_occupation_is_raised_by_the_clock_and_cleared_by_the_relay() {
    check(
        LONG,
        &[
            R(0.0, "T1/relay_state", 0.0),
            // Refreshes of "occupied" do not restart the timer.
            R(300.0, "T1/relay_state", 0.0),
            Tick(599.0),
            Tick(600.0),
            Tick(700.0),
            R(750.0, "T1/relay_state", 1.0),
            R(800.0, "T1/relay_state", 0.0),
            Tick(1000.0),
        ],
        &[
            "600 raised long T1/relay_state",
            "750 cleared long T1/relay_state",
        ],
    );
}

const STALE: &str = r#"
[[rules]]
id = "stale"
target = "*"
exclude = ["*/relay_state"]
severity = "warning"
kind = "stale"
periods = 3
"#;

#[test]
fn a_channel_is_stale_after_k_observed_periods_while_its_gateway_talks() {
    check(
        STALE,
        &[
            Batch(0.0, &[("T1/feed_voltage", 9.0), ("T1/feed_current", 1.0)]),
            Batch(1.0, &[("T1/feed_voltage", 9.0), ("T1/feed_current", 1.0)]),
            Batch(2.0, &[("T1/feed_voltage", 9.0), ("T1/feed_current", 1.0)]),
            Batch(3.0, &[("T1/feed_voltage", 9.0), ("T1/feed_current", 1.0)]),
            // feed_current stops; the gateway goes on.
            R(4.0, "T1/feed_voltage", 9.0),
            R(5.0, "T1/feed_voltage", 9.0),
            Tick(5.5),
            R(6.0, "T1/feed_voltage", 9.0),
            R(7.0, "T1/feed_voltage", 9.0),
            Tick(7.5),
            R(8.0, "T1/feed_current", 1.0),
            // The excluded relay never counts.
            R(9.0, "T1/relay_state", 1.0),
        ],
        &[
            "7.5 raised stale T1/feed_current",
            "8 cleared stale T1/feed_current",
        ],
    );
}

#[test]
fn a_reconnecting_gateway_s_channels_are_not_stale_while_they_catch_up() {
    check(
        OFFLINE,
        &[
            Status(0.0, "gw", true),
            Batch(0.0, &[("T1/feed_voltage", 9.0), ("T1/feed_current", 1.0)]),
            Batch(1.0, &[("T1/feed_voltage", 9.0), ("T1/feed_current", 1.0)]),
            Batch(2.0, &[("T1/feed_voltage", 9.0), ("T1/feed_current", 1.0)]),
            Batch(3.0, &[("T1/feed_voltage", 9.0), ("T1/feed_current", 1.0)]),
            Status(4.0, "gw", false),
            Tick(30.0),
            Status(60.0, "gw", true),
            // The first message after the return carries one channel only.
            R(60.2, "T1/feed_voltage", 9.0),
            Tick(60.5),
            R(61.0, "T1/feed_current", 1.0),
            Tick(61.5),
        ],
        &["4 raised gw-offline gw", "60 cleared gw-offline gw"],
    );
}

#[test]
fn a_pending_limit_survives_a_train() {
    check(
        RELAY_VOLTAGE_WHEN_CLEAR,
        &[
            Batch(0.0, &[("T1/relay_voltage", 0.7), ("T1/relay_state", 1.0)]),
            Batch(1.0, &[("T1/relay_voltage", 0.02), ("T1/relay_state", 0.0)]),
            Tick(3.0),
            // Still low when the train has gone: raised at once.
            Batch(30.0, &[("T1/relay_voltage", 0.7), ("T1/relay_state", 1.0)]),
        ],
        &["30 raised rv T1/relay_voltage"],
    );
}

#[test]
fn a_silent_gateway_is_not_a_stale_channel() {
    check(
        STALE,
        &[
            R(0.0, "T1/feed_voltage", 9.0),
            R(1.0, "T1/feed_voltage", 9.0),
            R(2.0, "T1/feed_voltage", 9.0),
            R(3.0, "T1/feed_voltage", 9.0),
            // Nothing at all from the gateway: no stale channel.
            Tick(10.0),
            Tick(60.0),
        ],
        &[],
    );
}

const OFFLINE: &str = r#"
[[rules]]
id = "gw-offline"
target = "*"
severity = "critical"
kind = "gateway_offline"

[[rules]]
id = "stale"
target = "*"
severity = "warning"
kind = "stale"
periods = 3
"#;

#[test]
fn a_gateway_offline_is_raised_by_its_will_and_cleared_when_it_returns() {
    check(
        OFFLINE,
        &[
            Status(0.0, "gw", true),
            R(0.0, "T1/feed_voltage", 9.0),
            R(1.0, "T1/feed_voltage", 9.0),
            R(2.0, "T1/feed_voltage", 9.0),
            R(3.0, "T1/feed_voltage", 9.0),
            Status(4.0, "gw", false),
            // The same will again (retained, redelivered): no duplicate.
            Status(5.0, "gw", false),
            Tick(30.0),
            Status(40.0, "gw", true),
        ],
        &["4 raised gw-offline gw", "40 cleared gw-offline gw"],
    );
}

const SILENT: &str = r#"
[[rules]]
id = "gw-silent"
target = "gw*"
severity = "critical"
kind = "gateway_offline"
silent_after_s = 30
"#;

#[test]
fn a_gateway_silent_for_its_limit_is_offline_until_it_speaks() {
    check(
        SILENT,
        &[
            R(0.0, "T1/feed_voltage", 9.0),
            Tick(29.0),
            Tick(30.0),
            Tick(31.0),
            R(45.0, "T1/feed_voltage", 9.0),
        ],
        &["30 raised gw-silent gw", "45 cleared gw-silent gw"],
    );
}

const REALARM: &str = r#"
[[rules]]
id = "rv"
target = "*/relay_voltage"
severity = "major"
kind = "limit"
low_set = 0.8
realarm_after_s = 60
"#;

#[test]
fn an_acknowledged_condition_that_persists_is_raised_again() {
    check(
        REALARM,
        &[
            R(0.0, "T1/relay_voltage", 0.5),
            Ack(10.0, "rv", "T1/relay_voltage"),
            Ack(11.0, "rv", "T1/relay_voltage"),
            Tick(69.0),
            Tick(70.0),
            Tick(71.0),
            Ack(80.0, "rv", "T1/relay_voltage"),
            // Clears while acknowledged: closed; the next raise is new.
            R(90.0, "T1/relay_voltage", 1.5),
            Ack(91.0, "rv", "T1/relay_voltage"),
            R(100.0, "T1/relay_voltage", 0.5),
        ],
        &[
            "0 raised rv T1/relay_voltage",
            "10 acknowledged rv T1/relay_voltage",
            "11 acknowledged rv T1/relay_voltage refused: AlreadyAcknowledged",
            "70 realarmed rv T1/relay_voltage",
            "80 acknowledged rv T1/relay_voltage",
            "90 cleared rv T1/relay_voltage",
            "91 acknowledged rv T1/relay_voltage refused: NotOpen",
            "100 raised rv T1/relay_voltage",
        ],
    );
}

#[test]
fn opening_and_closing_are_marked() {
    let mut engine = Engine::new(rules(REALARM), None).unwrap();
    let mut out = Vec::new();
    engine.readings(
        "gw",
        &[reading("T1/relay_voltage", at(0.0), 0.5)],
        at(0.0),
        &mut out,
    );
    engine.readings(
        "gw",
        &[reading("T1/relay_voltage", at(1.0), 1.5)],
        at(1.0),
        &mut out,
    );
    engine.readings(
        "gw",
        &[reading("T1/relay_voltage", at(2.0), 0.5)],
        at(2.0),
        &mut out,
    );
    let key = out[0].key.clone();
    engine.readings(
        "gw",
        &[reading("T1/relay_voltage", at(3.0), 1.5)],
        at(3.0),
        &mut out,
    );
    engine
        .acknowledge(&key, "ann", "ok", at(4.0), &mut out)
        .unwrap();
    let flags: Vec<(TransitionKind, bool, bool)> =
        out.iter().map(|t| (t.kind, t.opens, t.closes)).collect();
    assert_eq!(
        flags,
        [
            (TransitionKind::Raised, true, false),
            (TransitionKind::Cleared, false, false),
            (TransitionKind::Raised, false, false),
            (TransitionKind::Cleared, false, false),
            (TransitionKind::Acknowledged, false, true),
        ]
    );
    assert_eq!(out[0].gateway.as_deref(), Some("gw"));
    assert_eq!(out[0].message, "Relay voltage low: 0.500 V (limit 0.800 V)");
    assert_eq!(engine.open_count(), 0);
}

#[test]
fn a_resumed_engine_neither_raises_again_nor_forgets() {
    let mut engine = Engine::new(rules(LIMIT), None).unwrap();
    let mut out = Vec::new();
    let key = Key {
        rule: "rv".into(),
        subject: "T1/relay_voltage".into(),
    };
    engine.resume(
        vec![
            Resumed {
                key: key.clone(),
                active: true,
                acked_at: None,
                alarm: AlarmState::new(Priority::High, Criticality::RunningLine),
            },
            Resumed {
                key: Key {
                    rule: "retired".into(),
                    subject: "T2/relay_voltage".into(),
                },
                active: true,
                acked_at: None,
                alarm: AlarmState::new(Priority::High, Criticality::RunningLine),
            },
        ],
        at(0.0),
        &mut out,
    );
    let after_resume = run(
        &mut engine,
        &[
            R(1.0, "T1/relay_voltage", 0.5),
            R(2.0, "T1/relay_voltage", 1.5),
        ],
    );
    let resumed: Vec<String> = out
        .iter()
        .map(|t| format!("{} {}", t.kind.as_str(), t.key.rule))
        .collect();
    assert_eq!(resumed, ["cleared retired"]);
    assert_eq!(after_resume, ["2 cleared rv T1/relay_voltage"]);
    assert_eq!(engine.open_count(), 2, "both cleared, neither acknowledged");
}

#[test]
fn a_backlog_older_than_the_judged_readings_changes_nothing() {
    check(
        LIMIT,
        &[
            R(10.0, "T1/relay_voltage", 1.5),
            R(5.0, "T1/relay_voltage", 0.1),
            R(11.0, "T1/relay_voltage", 1.5),
        ],
        &[],
    );
}

#[test]
fn bad_rules_are_refused_with_a_reason() {
    let cases = [
        (
            "[[rules]]\nid='a'\ntarget='*'\nseverity='info'\nkind='limit'\n",
            "needs low_set or high_set",
        ),
        (
            "[[rules]]\nid='a'\ntarget='*'\nseverity='info'\nkind='limit'\nlow_set=1.0\nlow_clear=0.5\n",
            "hysteresis",
        ),
        (
            "[[rules]]\nid='a'\ntarget='*'\nseverity='info'\nkind='stale'\nperiods=0.5\n",
            "periods",
        ),
        (
            "[[rules]]\nid='a'\ntarget='*'\nseverity='info'\nkind='long_occupation'\nmax_occupied_s=1\n\
             [[rules]]\nid='a'\ntarget='*'\nseverity='info'\nkind='long_occupation'\nmax_occupied_s=1\n",
            "unique",
        ),
    ];
    for (text, want) in cases {
        let err = Engine::new(rules(text), None).err().expect("refused");
        assert!(err.contains(want), "{err} should mention {want}");
    }
}

const PREDICTED: &str = r#"
[[rules]]
id = "rv-limits"
target = "*/relay_voltage"
severity = "major"
kind = "limit"
low_set = 0.8
low_clear = 0.9

[[rules]]
id = "rv-predicted"
target = "*/relay_voltage"
severity = "warning"
kind = "predicted"
limit_rule = "rv-limits"
"#;

/// A forecast of a straight line from `from` to `to` over six 10-minute
/// steps starting at `start` seconds.
fn line(start: f64, from: f64, to: f64) -> Vec<(Ms, f64)> {
    (0..6)
        .map(|i| {
            (
                at(start + 600.0 * i as f64),
                from + (to - from) * i as f64 / 5.0,
            )
        })
        .collect()
}

#[test]
fn a_forecast_crossing_a_limit_raises_a_predicted_exceedance_until_it_recovers() {
    let mut engine = Engine::new(rules(PREDICTED), None).unwrap();
    let mut out = Vec::new();
    engine.readings(
        "gw",
        &[reading("T1/relay_voltage", at(0.0), 1.2)],
        at(0.0),
        &mut out,
    );
    // Sagging, but every step stays above 0.8 V: nothing.
    engine.forecast(
        "T1/relay_voltage",
        &line(60.0, 1.2, 0.85),
        at(0.0),
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    // The fifth step (0.74 V) is the first at or below 0.8 V, 70 minutes
    // after the forecast was made.
    engine.forecast(
        "T1/relay_voltage",
        &line(3_600.0, 1.1, 0.65),
        at(1_800.0),
        &mut out,
    );
    assert_eq!(out.len(), 1, "{out:?}");
    let raised = &out[0];
    assert_eq!(raised.kind, TransitionKind::Raised);
    assert_eq!(raised.key.rule, "rv-predicted");
    assert_eq!(raised.gateway.as_deref(), Some("gw"));
    assert!((raised.value.unwrap() - 0.74).abs() < 1e-9, "{raised:?}");
    assert!(
        raised
            .message
            .contains("forecast to reach its low limit 0.800 V")
            && raised.message.contains("(in 70.0 min)"),
        "{}",
        raised.message
    );
    // The same forecast again changes nothing; one between 0.8 and 0.9 V
    // holds it (hysteresis); one above 0.9 V throughout clears it.
    out.clear();
    engine.forecast(
        "T1/relay_voltage",
        &line(3_600.0, 1.1, 0.65),
        at(1_860.0),
        &mut out,
    );
    engine.forecast(
        "T1/relay_voltage",
        &line(3_660.0, 1.0, 0.85),
        at(1_920.0),
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    engine.forecast(
        "T1/relay_voltage",
        &line(3_720.0, 1.0, 0.95),
        at(1_980.0),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, TransitionKind::Cleared);
    assert!(out[0].message.contains("forecast back within limits"));
    // Raised again, then an empty forecast (model removed) clears it.
    out.clear();
    engine.forecast(
        "T1/relay_voltage",
        &line(3_780.0, 0.9, 0.5),
        at(2_040.0),
        &mut out,
    );
    engine.forecast("T1/relay_voltage", &[], at(2_100.0), &mut out);
    let kinds: Vec<_> = out.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [TransitionKind::Raised, TransitionKind::Cleared]);
    // Other parameters are not the rule's business.
    out.clear();
    engine.forecast(
        "T1/relay_current",
        &line(0.0, 100.0, 0.0),
        at(2_200.0),
        &mut out,
    );
    assert!(out.is_empty());
}

#[test]
fn a_predicted_rule_must_name_a_limit_rule() {
    let bad = PREDICTED.replace("limit_rule = \"rv-limits\"", "limit_rule = \"nope\"");
    let err = Engine::new(rules(&bad), None).err().unwrap();
    assert!(
        err.contains("rv-predicted") && err.contains("limit_rule"),
        "{err}"
    );
}

const SPOOL: &str = r#"
[[rules]]
id = "spool"
target = "spool"
severity = "warning"
kind = "spool"
fill_percent = 80
"#;

#[test]
fn a_filling_spool_warns_at_its_threshold_and_clears_below_it_with_hysteresis() {
    check(
        SPOOL,
        &[
            Spool(0.0, 50.0, None),
            Spool(1.0, 80.0, None),
            Spool(2.0, 90.0, None),
            // Within 5 points of the threshold: still raised.
            Spool(3.0, 76.0, None),
            Spool(4.0, 74.0, None),
            // A disk that refuses writes raises it whatever the fill.
            Spool(5.0, 10.0, Some("No space left on device")),
            Spool(6.0, 10.0, Some("No space left on device")),
            Spool(7.0, 10.0, None),
        ],
        &[
            "1 raised spool spool",
            "4 cleared spool spool",
            "5 raised spool spool",
            "7 cleared spool spool",
        ],
    );
    let mut engine = Engine::new(rules(SPOOL), None).unwrap();
    let mut out = Vec::new();
    let state = SpoolState {
        fill: 0.85,
        bytes: 3_650_722_201,
        max_bytes: 4_294_967_296,
        error: None,
        at_bound_policy: "the oldest unstored readings are dropped",
    };
    engine.spool(&state, T0, &mut out);
    assert_eq!(
        out[0].message,
        "server spool 85 % full (3.4 GiB of 4.0 GiB): readings are waiting for the database; \
         at 100 % the oldest unstored readings are dropped"
    );
    assert_eq!(out[0].value, Some(85.0));
    let bad = rules(&SPOOL.replace("80", "0"));
    assert!(validate(&bad).unwrap_err().contains("fill_percent"));
}
