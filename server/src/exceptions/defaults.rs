//! The rules Trackside ships with, for the parameters of DOMAIN.md. They are
//! also written out in trackside.example.toml (a test keeps the two equal).

use trackside_wire::{Check, Rule, Severity};

struct Limits {
    low: Option<(f64, f64)>,
    high: Option<(f64, f64)>,
    on_delay_s: f64,
    off_delay_s: f64,
    only_when_clear: bool,
}

fn limit(id: &str, target: &str, severity: Severity, limits: Limits) -> Rule {
    rule(
        id,
        target,
        severity,
        Check::Limit {
            low_set: limits.low.map(|(set, _)| set),
            low_clear: limits.low.map(|(_, clear)| clear),
            high_set: limits.high.map(|(set, _)| set),
            high_clear: limits.high.map(|(_, clear)| clear),
            on_delay_s: limits.on_delay_s,
            off_delay_s: limits.off_delay_s,
            only_when_clear: limits.only_when_clear,
        },
    )
}

fn rule(id: &str, target: &str, severity: Severity, check: Check) -> Rule {
    Rule {
        id: id.into(),
        target: target.into(),
        exclude: Vec::new(),
        severity,
        realarm_after_s: None,
        escalate_after_s: None,
        check,
    }
}

pub fn rules() -> Vec<Rule> {
    vec![
        // Per occupation (docs/design/health.md): a residual above 15 %
        // of the clear level is far from the relay's drop-away (about
        // half) yet far above a good shunt (a few per cent); two trains in
        // a row, so one light vehicle alone does not raise it.
        rule(
            "poor-shunt",
            "*/relay_voltage",
            Severity::Major,
            Check::PoorShunt {
                max_residual_fraction: 0.15,
                occupations: 2,
            },
        ),
        rule(
            "unstable-occupation-current",
            "*/feed_current",
            Severity::Warning,
            Check::UnstableOccupationCurrent {
                max_relative_spread: 0.1,
                occupations: 2,
            },
        ),
        rule(
            "drop-pick-drift",
            "*/relay_voltage",
            Severity::Warning,
            Check::DropPickDrift {
                max_drift_fraction: 0.15,
                recent: 5,
                baseline_days: 7.0,
                min_baseline: 20,
            },
        ),
        // Health (docs/design/health.md) below 50: two causes at full
        // weight, or one exception of consequence on top of a poor shunt.
        rule(
            "health-low",
            "*/health",
            Severity::Warning,
            Check::HealthLow { below: 50.0 },
        ),
        limit(
            "relay-voltage-limits",
            "*/relay_voltage",
            Severity::Major,
            Limits {
                low: Some((0.8, 0.9)),
                high: Some((2.5, 2.3)),
                on_delay_s: 5.0,
                off_delay_s: 10.0,
                only_when_clear: true,
            },
        ),
        // Below the limit's Major: a warning hours ahead, for the
        // maintainer's list, not the signaller's alarm.
        rule(
            "relay-voltage-predicted",
            "*/relay_voltage",
            Severity::Warning,
            Check::Predicted {
                limit_rule: "relay-voltage-limits".into(),
            },
        ),
        rule(
            "relay-voltage-rate",
            "*/relay_voltage",
            Severity::Warning,
            Check::RateOfChange {
                max_per_s: 0.05,
                window_s: 5.0,
                on_delay_s: 0.0,
                off_delay_s: 10.0,
                only_when_clear: true,
            },
        ),
        limit(
            "relay-current-limits",
            "*/relay_current",
            Severity::Warning,
            Limits {
                low: Some((40.0, 45.0)),
                high: Some((250.0, 240.0)),
                on_delay_s: 5.0,
                off_delay_s: 10.0,
                only_when_clear: true,
            },
        ),
        limit(
            "feed-voltage-limits",
            "*/feed_voltage",
            Severity::Major,
            Limits {
                low: Some((1.5, 1.7)),
                high: Some((13.0, 12.5)),
                on_delay_s: 5.0,
                off_delay_s: 10.0,
                only_when_clear: false,
            },
        ),
        limit(
            "feed-current-high",
            "*/feed_current",
            Severity::Warning,
            Limits {
                low: None,
                high: Some((6.0, 5.5)),
                on_delay_s: 2.0,
                off_delay_s: 10.0,
                only_when_clear: false,
            },
        ),
        limit(
            "af-frequency-band",
            "*/frequency",
            Severity::Warning,
            Limits {
                low: Some((380.0, 382.0)),
                high: Some((515.0, 513.0)),
                on_delay_s: 5.0,
                off_delay_s: 10.0,
                only_when_clear: false,
            },
        ),
        limit(
            "rx-level-low",
            "*/rx_level",
            Severity::Warning,
            Limits {
                low: Some((50.0, 60.0)),
                high: None,
                on_delay_s: 5.0,
                off_delay_s: 10.0,
                only_when_clear: true,
            },
        ),
        rule(
            "relay-flick",
            "*/relay_state",
            Severity::Major,
            Check::Flick {
                min_occupied_s: Some(2.0),
                max_transitions: Some(6),
                window_s: 60.0,
            },
        ),
        rule(
            "long-occupation",
            "*/relay_state",
            Severity::Major,
            Check::LongOccupation {
                max_occupied_s: 600.0,
            },
        ),
        Rule {
            exclude: vec!["*/relay_state".into()],
            ..rule(
                "stale-channel",
                "*",
                Severity::Warning,
                Check::Stale {
                    periods: 5.0,
                    period_s: None,
                },
            )
        },
        rule(
            "stale-relay-state",
            "*/relay_state",
            Severity::Warning,
            Check::Stale {
                periods: 3.0,
                period_s: Some(10.0),
            },
        ),
        rule(
            "gateway-offline",
            "*",
            Severity::Critical,
            Check::GatewayOffline {
                silent_after_s: None,
            },
        ),
        rule(
            "gateway-clock",
            "*",
            Severity::Warning,
            Check::ClockSkew { max_offset_s: 5.0 },
        ),
    ]
}
