//! What a transition does to an exception's row, computed in memory.
//!
//! The service keeps every open exception as it last pushed it, and
//! derives the next state here, so it can show a transition at once (and
//! number it, from ids reserved ahead) whether or not the database is
//! there to store it; the store then writes the row exactly as computed.
//! This is the only place these rules live.

use trackside_wire::{ChannelName, ExceptionInfo, ExceptionKind, Severity, TransitionKind};

use super::engine::Transition;

/// The exception after `t`: a new one when `previous` is `None` (then `id`,
/// `kind` and `severity` describe it), else `previous` moved on.
pub fn advance(
    previous: Option<&ExceptionInfo>,
    t: &Transition,
    id: i64,
    kind: ExceptionKind,
    severity: Severity,
) -> ExceptionInfo {
    let Some(previous) = previous else {
        let circuit = (kind != ExceptionKind::GatewayOffline)
            .then(|| ChannelName::parse(&t.key.subject).ok())
            .flatten()
            .map(|c| c.circuit().to_owned());
        return ExceptionInfo {
            id,
            rule: t.key.rule.clone(),
            kind,
            severity,
            subject: t.key.subject.clone(),
            circuit,
            gateway: t.gateway.clone(),
            message: t.message.clone(),
            value: t.value,
            active: true,
            acknowledged: false,
            open: true,
            raised_at: t.at,
            last_raised_at: t.at,
            cleared_at: None,
            acked_at: None,
            acked_by: None,
            ack_comment: None,
            occurrences: 1,
            criticality: t.alarm.criticality,
            base_priority: t.alarm.base_priority,
            priority: t.alarm.priority,
            escalation: t.alarm.escalation,
            escalated_at: t.alarm.escalated_at,
            suppressed: t.alarm.suppressed,
            window: t.alarm.window,
            shelf: t.alarm.shelf.map(|(id, _)| id),
            shelved_until: t.alarm.shelf.map(|(_, until)| until),
            stored: true,
            flood: t.alarm.flood.clone(),
        };
    };
    let mut next = previous.clone();
    next.stored = true;
    // The engine keeps the alarm side; the row shows it as it is now.
    next.priority = t.alarm.priority;
    next.escalation = t.alarm.escalation;
    next.escalated_at = t.alarm.escalated_at;
    next.suppressed = t.alarm.suppressed;
    next.shelf = t.alarm.shelf.map(|(id, _)| id);
    next.shelved_until = t.alarm.shelf.map(|(_, until)| until);
    next.flood = t.alarm.flood.clone();
    match t.kind {
        // A cleared, unacknowledged exception raised again: the same one,
        // once more.
        TransitionKind::Raised => {
            next.active = true;
            next.last_raised_at = t.at;
            next.cleared_at = None;
            next.message = t.message.clone();
            next.value = t.value.or(previous.value);
            next.occurrences += 1;
        }
        TransitionKind::Cleared => {
            next.active = false;
            next.cleared_at = Some(t.at);
            // Acknowledged already, or suppressed by a maintenance window
            // (nobody was alarmed): closed.
            next.open = previous.acked_at.is_none() && !t.alarm.suppressed;
            next.value = t.value.or(previous.value);
        }
        // The raise message stays the exception's; later transitions keep
        // theirs in the transition history.
        TransitionKind::Acknowledged => {
            next.acked_at = Some(t.at);
            next.acked_by = t.by.clone();
            next.ack_comment = t.comment.clone();
            next.acknowledged = true;
            next.open = previous.active;
        }
        TransitionKind::Realarmed => {
            next.acked_at = None;
            next.acked_by = None;
            next.ack_comment = None;
            next.acknowledged = false;
            next.last_raised_at = t.at;
        }
        // The alarm side only, copied above; the transition is in the
        // history.
        TransitionKind::Shelved
        | TransitionKind::Unshelved
        | TransitionKind::Escalated
        | TransitionKind::Released
        | TransitionKind::Grouped => {}
    }
    next
}

#[cfg(test)]
mod tests {
    use super::super::engine::{AlarmState, Key};
    use super::*;
    use trackside_wire::{Criticality, Priority};

    fn transition(kind: TransitionKind, at: i64, value: Option<f64>) -> Transition {
        Transition {
            key: Key {
                rule: "rv".into(),
                subject: "T7/relay_voltage".into(),
            },
            kind,
            at,
            value,
            message: format!("{} at {at}", kind.as_str()),
            by: (kind == TransitionKind::Acknowledged).then(|| "ann".into()),
            comment: (kind == TransitionKind::Acknowledged).then(|| "seen".into()),
            opens: false,
            closes: false,
            gateway: Some("gw".into()),
            alarm: AlarmState::new(Priority::High, Criticality::RunningLine),
            announce: None,
        }
    }

    /// The lifecycle the database used to compute, step by step: raise,
    /// clear, raise again, acknowledge, re-alarm, clear (still
    /// unacknowledged, so still open), acknowledge (closed).
    #[test]
    fn every_transition_moves_the_row_as_stored() {
        use TransitionKind::*;
        let raised = advance(
            None,
            &transition(Raised, 1_000, Some(0.7)),
            42,
            ExceptionKind::Limit,
            Severity::Major,
        );
        assert_eq!(
            (
                raised.id,
                raised.circuit.as_deref(),
                raised.active,
                raised.open
            ),
            (42, Some("T7"), true, true)
        );
        assert_eq!(
            (raised.raised_at, raised.last_raised_at, raised.occurrences),
            (1_000, 1_000, 1)
        );

        let cleared = advance(
            Some(&raised),
            &transition(Cleared, 2_000, None),
            0,
            ExceptionKind::Limit,
            Severity::Major,
        );
        assert_eq!(
            (cleared.active, cleared.open, cleared.cleared_at),
            (false, true, Some(2_000))
        );
        assert_eq!(
            cleared.value,
            Some(0.7),
            "a transition without a value keeps the last"
        );
        assert_eq!(
            cleared.message, "raised at 1000",
            "the raise's message stays"
        );

        let again = advance(
            Some(&cleared),
            &transition(Raised, 3_000, Some(0.6)),
            0,
            ExceptionKind::Limit,
            Severity::Major,
        );
        assert_eq!(
            (
                again.id,
                again.occurrences,
                again.raised_at,
                again.last_raised_at
            ),
            (42, 2, 1_000, 3_000)
        );
        assert_eq!(
            (again.cleared_at, again.message.as_str()),
            (None, "raised at 3000")
        );

        let acked = advance(
            Some(&again),
            &transition(Acknowledged, 4_000, None),
            0,
            ExceptionKind::Limit,
            Severity::Major,
        );
        assert_eq!(
            (acked.acknowledged, acked.open, acked.acked_by.as_deref()),
            (true, true, Some("ann"))
        );

        let realarmed = advance(
            Some(&acked),
            &transition(Realarmed, 5_000, None),
            0,
            ExceptionKind::Limit,
            Severity::Major,
        );
        assert_eq!(
            (
                realarmed.acknowledged,
                realarmed.acked_at,
                realarmed.last_raised_at
            ),
            (false, None, 5_000)
        );

        let cleared = advance(
            Some(&realarmed),
            &transition(Cleared, 6_000, Some(0.95)),
            0,
            ExceptionKind::Limit,
            Severity::Major,
        );
        assert!(cleared.open, "cleared but not acknowledged");
        let closed = advance(
            Some(&cleared),
            &transition(Acknowledged, 7_000, None),
            0,
            ExceptionKind::Limit,
            Severity::Major,
        );
        assert!(!closed.open && !closed.active && closed.acknowledged);
    }

    #[test]
    fn a_gateway_or_server_subject_has_no_circuit() {
        let mut t = transition(TransitionKind::Raised, 1, None);
        t.key.subject = "gw-1".into();
        let info = advance(None, &t, 1, ExceptionKind::GatewayOffline, Severity::Major);
        assert_eq!(info.circuit, None);
        t.key.subject = "spool".into();
        let info = advance(None, &t, 2, ExceptionKind::Spool, Severity::Warning);
        assert_eq!(info.circuit, None);
    }
}
