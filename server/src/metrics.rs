//! Pipeline counters, read by `/metrics` in Prometheus text format.
//!
//! Plain atomics: every counter is bumped on the ingest path, so a metrics
//! registry with label maps and locks would cost more than it gives.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::reading::RejectionKind;

/// Where a notification goes, for `trackside_notifications_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyChannel {
    Webhook,
    Chat,
    Email,
}

impl NotifyChannel {
    pub const ALL: [NotifyChannel; 3] = [Self::Webhook, Self::Chat, Self::Email];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Chat => "chat",
            Self::Email => "email",
        }
    }
}

/// What became of a notification attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOutcome {
    Sent,
    /// Failed, to be retried.
    Retried,
    /// Failed its last attempt.
    GivenUp,
    /// Neither in memory nor in the outbox: a full queue, or shutdown.
    Dropped,
}

impl NotifyOutcome {
    pub const ALL: [NotifyOutcome; 4] = [Self::Sent, Self::Retried, Self::GivenUp, Self::Dropped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Retried => "retried",
            Self::GivenUp => "given_up",
            Self::Dropped => "dropped",
        }
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub mqtt_messages: AtomicU64,
    pub mqtt_refused_connects: AtomicU64,
    /// Publishes refused by closing the connection: too large for the
    /// front, or refused by the broker behind it.
    pub mqtt_refused_publishes: AtomicU64,
    /// Times the ingest link fell a whole broker log behind and skipped to
    /// the oldest segment still held: those publishes never reached ingest.
    pub mqtt_log_overruns: AtomicU64,
    /// The broker's listeners by name, for the connection gauge.
    pub mqtt_listeners: OnceLock<Vec<(&'static str, u16)>>,
    /// 1 while the link to an external broker is up, 0 while it is down;
    /// reported only when one is configured.
    pub mqtt_external_connected: AtomicI64,
    pub mqtt_external: OnceLock<String>,
    /// The last count of connections per listener and when it was taken.
    mqtt_connections_seen: Mutex<Option<(Instant, Vec<u64>)>>,
    /// Rejections by `RejectionKind`, in the order of `RejectionKind::ALL`.
    pub rejections: [AtomicU64; RejectionKind::ALL.len()],
    pub readings_received: AtomicU64,
    pub readings_stored: AtomicU64,
    pub readings_duplicate: AtomicU64,
    pub rejected_payloads: AtomicU64,
    pub rejected_readings: AtomicU64,
    /// Rejections counted but not kept because their queue was full (a flood
    /// of garbage must not grow memory).
    pub rejected_not_kept: AtomicU64,
    /// Rejections past their gateway's byte budget: counted, not kept.
    pub rejected_over_budget: AtomicU64,
    /// CONNECTs refused without checking: their client id failed too often.
    pub mqtt_throttled_connects: AtomicU64,
    /// The MQTT front: publishes and subscriptions refused outside the
    /// gateway's own topics, TLS handshakes or CONNECTs not finished in
    /// time, connections refused at `mqtt.max_connections`, open sessions.
    pub mqtt_acl_refused_publishes: AtomicU64,
    pub mqtt_acl_refused_subscriptions: AtomicU64,
    pub mqtt_handshake_failures: AtomicU64,
    pub mqtt_front_full: AtomicU64,
    pub mqtt_front_sessions: AtomicI64,
    pub store_queue_depth: AtomicI64,
    /// Messages that found the store queue full and live only in the spool
    /// until the writer reads them back.
    pub store_queue_overflow: AtomicU64,
    pub readings_replayed: AtomicU64,
    pub spool_errors: AtomicU64,
    /// Readings neither queued nor spooled (queue full and disk failing),
    /// or dropped with the spool's oldest segment at its bound.
    pub readings_lost: AtomicU64,
    /// External mode: publishes neither the spool nor the store queue could
    /// take, left unacknowledged for the broker to deliver again.
    pub mqtt_unacknowledged: AtomicU64,
    /// Times the link to the external broker reconnected to have
    /// unacknowledged publishes delivered again.
    pub mqtt_redeliveries: AtomicU64,
    pub store_batches: AtomicU64,
    pub store_errors: AtomicU64,
    pub store_batch_micros: AtomicU64,
    pub ws_clients: AtomicI64,
    pub ws_lagged_messages: AtomicU64,
    pub ws_dropped_clients: AtomicU64,
    /// Messages the exception engine's full queue could not take.
    pub exception_events_dropped: AtomicU64,
    /// Exception transitions not relayed to the other instances sharing
    /// the database (relay queue full, or the notification failed).
    pub exception_relay_dropped: AtomicU64,
    /// Publishes taken by the non-shared live subscription of a shared
    /// (scaled-out) external ingest: shown live and judged, not stored.
    pub mqtt_live_messages: AtomicU64,
    /// Sparkplug B messages whose `seq` was not the one due (also kept as
    /// a `sequence` rejection).
    pub sparkplug_sequence_gaps: AtomicU64,
    /// `NCMD` `Node Control/Rebirth` requests queued for an edge node.
    pub sparkplug_rebirth_requests: AtomicU64,
    /// Rebirth requests dropped: the command queue was full.
    pub sparkplug_commands_dropped: AtomicU64,
    /// Edge nodes with a session kept (born, not dead).
    pub sparkplug_nodes: AtomicI64,
    pub exceptions_raised: AtomicU64,
    pub exceptions_cleared: AtomicU64,
    pub exceptions_acknowledged: AtomicU64,
    pub exceptions_realarmed: AtomicU64,
    /// Unacknowledged exceptions escalated, and ones a maintenance window
    /// suppressed that were raised normally at its end.
    pub exceptions_escalated: AtomicU64,
    pub exceptions_released: AtomicU64,
    /// New exceptions by the priority they were raised with: low, medium,
    /// high (`Priority as usize`); suppressed ones are not counted.
    pub exceptions_raised_by_priority: [AtomicU64; 3],
    /// Open exceptions by their priority now, and those suppressed.
    pub exceptions_open_by_priority: [AtomicI64; 3],
    pub exceptions_open_suppressed: AtomicI64,
    /// Open exceptions an operator's shelf hides now.
    pub exceptions_open_shelved: AtomicI64,
    /// Alarm floods started; raises grouped in one (not announced one by
    /// one); summaries sent; 1 while a flood is on.
    pub floods_started: AtomicU64,
    pub flood_raises_grouped: AtomicU64,
    pub flood_summaries: AtomicU64,
    pub flood_on: AtomicI64,
    pub exception_store_errors: AtomicU64,
    pub exceptions_open: AtomicI64,
    pub webhook_sent: AtomicU64,
    /// Failed webhook attempts (each is retried until the attempts run out).
    pub webhook_failures: AtomicU64,
    /// Notifications given up on, or not queued because the queue was full.
    pub webhook_dropped: AtomicU64,
    /// Rollup units (a channel's minute; on TimescaleDB a refresh range)
    /// that failed and were set aside to be retried alone.
    pub rollup_failed_minutes: AtomicU64,
    /// Minute rollups whose readings' sum is beyond the double range.
    pub rollup_overflows: AtomicU64,
    /// Messages the live batcher's full queue could not take.
    pub live_dropped_messages: AtomicU64,
    /// Readings frames the live batcher built, each shared by every client.
    pub live_frames: AtomicU64,
    /// Minutes set aside after failing, waiting for their retry.
    pub rollup_set_aside: AtomicI64,
    /// Occupations the health job derived, re-derivations included.
    pub occupations_derived: AtomicU64,
    pub occupation_job_failures: AtomicU64,
    /// Seconds the circuit furthest behind is derived up to, before now.
    pub occupation_lag_seconds: AtomicI64,
    /// Per webhook receiver: when its oldest undelivered notification was
    /// queued (Unix ms), 0 when it has none.
    pub webhook_oldest_ms: OnceLock<Vec<AtomicI64>>,
    pub webhook_pending: AtomicI64,
    /// Notifications by channel and outcome (`NotifyChannel`, `NotifyOutcome`).
    pub notifications: [[AtomicU64; NotifyOutcome::ALL.len()]; NotifyChannel::ALL.len()],
    /// Notifications not written to the full outbox (sent from memory).
    pub notify_outbox_overflow: AtomicU64,
    /// Outbox rows given up unsent at `exceptions.outbox_max_age_s`.
    pub notify_outbox_expired: AtomicU64,
    /// Exception transitions judged but not yet stored (the database is
    /// away), in the journal on disk or in memory.
    pub exception_journal_pending: AtomicI64,
    /// Transitions neither the journal nor its memory overflow could keep.
    pub exception_transitions_lost: AtomicU64,
    /// Acknowledgements answered 503 because the database was away.
    pub exception_acks_refused: AtomicU64,
    /// Sign-ins refused for a wrong name or password, a disabled account,
    /// or the throttle.
    pub signin_failures: AtomicU64,
    /// Sign-ins refused because too many were being checked at once.
    pub signin_busy: AtomicU64,
    /// Requests refused because their Origin is not a public origin.
    pub http_origin_refused: AtomicU64,
    /// Live feeds closed because their session or token ended.
    pub ws_sessions_ended: AtomicU64,
    /// TLS handshakes of the HTTPS listener that failed or timed out.
    pub https_handshake_failures: AtomicU64,
}

/// The spool's figures at scrape time: the spool lives in `store`, above
/// this module, so it hands them in.
#[derive(Debug, Default, Clone)]
pub struct SpoolFigures {
    pub backlog_bytes: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// The last write (or fsync) failed and nothing succeeded since.
    pub failing: bool,
    pub write_errors: u64,
    pub fsyncs: u64,
    pub fsync_errors: u64,
    pub fsync_micros: u64,
    pub dropped_bytes: u64,
    pub dropped_readings: u64,
    pub refused: u64,
    pub damaged_bytes: u64,
}

impl Metrics {
    pub fn count_notification(&self, channel: NotifyChannel, outcome: NotifyOutcome, n: usize) {
        Self::add(&self.notifications[channel as usize][outcome as usize], n);
    }

    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Relaxed);
    }

    pub fn rejected(&self, kind: RejectionKind) {
        self.rejections[kind as usize].fetch_add(1, Relaxed);
    }

    /// `spool`: the spool's figures, read at scrape time.
    pub fn render(&self, spool: &SpoolFigures) -> String {
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "trackside_mqtt_messages_total",
            "MQTT publishes read from the broker.",
            self.mqtt_messages.load(Relaxed),
        );
        counter(
            "trackside_mqtt_refused_connects_total",
            "MQTT CONNECTs refused: wrong or revoked credentials, or client id not the username.",
            self.mqtt_refused_connects.load(Relaxed),
        );
        counter(
            "trackside_mqtt_throttled_connects_total",
            "MQTT CONNECTs refused without a password check: the client id failed 5 times within a minute (also counted as refused).",
            self.mqtt_throttled_connects.load(Relaxed),
        );
        counter(
            "trackside_mqtt_handshake_failures_total",
            "MQTT connections dropped before their session: a TLS handshake that failed or did not finish, or no CONNECT within mqtt.connect_timeout_ms.",
            self.mqtt_handshake_failures.load(Relaxed),
        );
        counter(
            "trackside_mqtt_connections_refused_full_total",
            "MQTT connections refused because mqtt.max_connections were open.",
            self.mqtt_front_full.load(Relaxed),
        );
        counter(
            "trackside_mqtt_refused_publishes_total",
            "Publishes refused by closing the connection: larger than mqtt.max_payload_bytes, or refused by the broker behind the MQTT front.",
            self.mqtt_refused_publishes.load(Relaxed),
        );
        counter(
            "trackside_mqtt_log_overruns_total",
            "Times ingest fell a whole broker log behind and skipped its oldest segment (publishes lost before decoding).",
            self.mqtt_log_overruns.load(Relaxed),
        );
        counter(
            "trackside_readings_received_total",
            "Readings decoded from MQTT.",
            self.readings_received.load(Relaxed),
        );
        counter(
            "trackside_readings_stored_total",
            "Readings written to PostgreSQL.",
            self.readings_stored.load(Relaxed),
        );
        counter(
            "trackside_readings_duplicate_total",
            "Readings skipped because the same channel and timestamp were already stored.",
            self.readings_duplicate.load(Relaxed),
        );
        counter(
            "trackside_rejected_payloads_total",
            "Whole MQTT payloads that could not be decoded.",
            self.rejected_payloads.load(Relaxed),
        );
        counter(
            "trackside_rejected_readings_total",
            "Single readings of a batch that could not be decoded.",
            self.rejected_readings.load(Relaxed),
        );
        counter(
            "trackside_rejected_not_kept_total",
            "Rejections counted but not stored because their queue was full.",
            self.rejected_not_kept.load(Relaxed),
        );
        counter(
            "trackside_rejected_over_budget_total",
            "Rejections counted but not stored because their gateway used up its budget (1 MiB, refilled at 2 KiB/s).",
            self.rejected_over_budget.load(Relaxed),
        );
        counter(
            "trackside_store_queue_overflow_total",
            "Messages that found the store queue full and were kept in the spool only.",
            self.store_queue_overflow.load(Relaxed),
        );
        counter(
            "trackside_readings_replayed_total",
            "Readings the store writer read back from the spool.",
            self.readings_replayed.load(Relaxed),
        );
        counter(
            "trackside_spool_errors_total",
            "Failed spool writes or unreadable spool ranges.",
            self.spool_errors.load(Relaxed),
        );
        counter(
            "trackside_readings_lost_total",
            "Readings lost: neither the spool nor the store queue could take them, or the spool dropped them at its bound.",
            self.readings_lost.load(Relaxed) + spool.dropped_readings,
        );
        counter(
            "trackside_spool_write_errors_total",
            "Spool writes the disk refused (each is cut off again; the message goes to the store queue alone).",
            spool.write_errors,
        );
        counter(
            "trackside_spool_fsyncs_total",
            "Group commits: fsyncs of the spool, each covering every message appended in its window.",
            spool.fsyncs,
        );
        counter(
            "trackside_spool_fsync_errors_total",
            "Failed spool fsyncs (what they covered counts as safe only once stored).",
            spool.fsync_errors,
        );
        counter(
            "trackside_spool_fsync_microseconds_total",
            "Time spent in spool fsyncs.",
            spool.fsync_micros,
        );
        counter(
            "trackside_spool_dropped_bytes_total",
            "Unstored spool bytes dropped with the oldest segment at ingest.spool_max_bytes (embedded broker).",
            spool.dropped_bytes,
        );
        counter(
            "trackside_spool_dropped_readings_total",
            "Unstored readings dropped with the spool's oldest segment at its bound (also in trackside_readings_lost_total).",
            spool.dropped_readings,
        );
        counter(
            "trackside_spool_refused_total",
            "Messages the spool refused at its bound (external broker: left unacknowledged there).",
            spool.refused,
        );
        counter(
            "trackside_spool_damaged_bytes_total",
            "Spool bytes that were not whole records (torn tail, damaged blocks), skipped; the records around them are kept.",
            spool.damaged_bytes,
        );
        counter(
            "trackside_mqtt_unacknowledged_total",
            "Publishes left unacknowledged because neither the spool nor the store queue could take them: an external broker delivers them again; a gateway on the MQTT front is disconnected and sends them again.",
            self.mqtt_unacknowledged.load(Relaxed),
        );
        counter(
            "trackside_mqtt_redeliveries_total",
            "External broker: reconnections made to have unacknowledged publishes delivered again.",
            self.mqtt_redeliveries.load(Relaxed),
        );
        counter(
            "trackside_store_batches_total",
            "Write statements the store writer committed.",
            self.store_batches.load(Relaxed),
        );
        counter(
            "trackside_store_errors_total",
            "Failed store writes (each is retried).",
            self.store_errors.load(Relaxed),
        );
        counter(
            "trackside_store_batch_microseconds_total",
            "Time spent in committed store writes.",
            self.store_batch_micros.load(Relaxed),
        );
        counter(
            "trackside_ws_lagged_messages_total",
            "Live messages skipped for WebSocket clients that fell behind.",
            self.ws_lagged_messages.load(Relaxed),
        );
        counter(
            "trackside_ws_dropped_clients_total",
            "WebSocket clients disconnected for not reading.",
            self.ws_dropped_clients.load(Relaxed),
        );
        counter(
            "trackside_exception_events_dropped_total",
            "Messages the exception engine skipped because its queue was full.",
            self.exception_events_dropped.load(Relaxed),
        );
        counter(
            "trackside_exception_relay_dropped_total",
            "Exception transitions not relayed to the other instances on the database (their browsers see them at the next list refresh).",
            self.exception_relay_dropped.load(Relaxed),
        );
        counter(
            "trackside_mqtt_live_messages_total",
            "Publishes taken by the live (non-shared) subscription of a shared external ingest: shown live and judged, stored by whichever instance the shared subscription gave them to.",
            self.mqtt_live_messages.load(Relaxed),
        );
        counter(
            "trackside_sparkplug_sequence_gaps_total",
            "Sparkplug B messages whose seq was not the one due (lost or reordered messages); each is kept as a rejection.",
            self.sparkplug_sequence_gaps.load(Relaxed),
        );
        counter(
            "trackside_sparkplug_rebirth_requests_total",
            "NCMD Node Control/Rebirth requests queued for Sparkplug B edge nodes.",
            self.sparkplug_rebirth_requests.load(Relaxed),
        );
        counter(
            "trackside_sparkplug_commands_dropped_total",
            "Rebirth requests dropped because the Sparkplug command queue (64) was full.",
            self.sparkplug_commands_dropped.load(Relaxed),
        );
        counter(
            "trackside_exceptions_raised_total",
            "Exception raises (new, or reactivated while unacknowledged).",
            self.exceptions_raised.load(Relaxed),
        );
        counter(
            "trackside_exceptions_cleared_total",
            "Exceptions whose condition ended.",
            self.exceptions_cleared.load(Relaxed),
        );
        counter(
            "trackside_exceptions_acknowledged_total",
            "Exception acknowledgements.",
            self.exceptions_acknowledged.load(Relaxed),
        );
        counter(
            "trackside_exceptions_realarmed_total",
            "Acknowledged exceptions raised again because their condition persisted.",
            self.exceptions_realarmed.load(Relaxed),
        );
        counter(
            "trackside_exceptions_escalated_total",
            "Escalations of exceptions nobody acknowledged in time.",
            self.exceptions_escalated.load(Relaxed),
        );
        counter(
            "trackside_exceptions_released_total",
            "Exceptions a maintenance window suppressed, raised normally at its end.",
            self.exceptions_released.load(Relaxed),
        );
        counter(
            "trackside_floods_total",
            "Alarm floods started (more raises within the window than exceptions.flood.max_raises).",
            self.floods_started.load(Relaxed),
        );
        counter(
            "trackside_flood_raises_grouped_total",
            "Raises announced during a flood, grouped under their summary instead of one by one.",
            self.flood_raises_grouped.load(Relaxed),
        );
        counter(
            "trackside_flood_summaries_total",
            "Flood summaries handed to the notification outbox (a group formed or grew, a flood ended).",
            self.flood_summaries.load(Relaxed),
        );
        counter(
            "trackside_exception_store_errors_total",
            "Failed writes of exception transitions (each is retried).",
            self.exception_store_errors.load(Relaxed),
        );
        counter(
            "trackside_webhook_sent_total",
            "Notifications the webhook accepted.",
            self.webhook_sent.load(Relaxed),
        );
        counter(
            "trackside_webhook_failures_total",
            "Failed webhook attempts.",
            self.webhook_failures.load(Relaxed),
        );
        counter(
            "trackside_webhook_dropped_total",
            "Notifications given up after all attempts, dropped because the queue was full, or left at shutdown.",
            self.webhook_dropped.load(Relaxed),
        );
        counter(
            "trackside_notification_outbox_overflow_total",
            "Notifications the full outbox table could not take; sent from memory only.",
            self.notify_outbox_overflow.load(Relaxed),
        );
        counter(
            "trackside_notification_outbox_expired_total",
            "Outbox notifications given up unsent after exceptions.outbox_max_age_s.",
            self.notify_outbox_expired.load(Relaxed),
        );
        counter(
            "trackside_live_dropped_messages_total",
            "Messages the live fan-out's full queue could not take; every WebSocket client was then resynchronised.",
            self.live_dropped_messages.load(Relaxed),
        );
        counter(
            "trackside_live_frames_total",
            "Readings frames the live fan-out built, each serialised once and shared by every WebSocket client that takes it whole.",
            self.live_frames.load(Relaxed),
        );
        counter(
            "trackside_rollup_failures_total",
            "Rollup units (a channel's minute, or a refresh range on TimescaleDB) that failed; each is set aside and retried alone while history answers it from raw readings.",
            self.rollup_failed_minutes.load(Relaxed),
        );
        counter(
            "trackside_rollup_overflows_total",
            "Minute rollups computed whose readings sum beyond the double range (stored as +-Infinity; averages come from the readings).",
            self.rollup_overflows.load(Relaxed),
        );
        counter(
            "trackside_exception_transitions_lost_total",
            "Exception transitions that could be kept neither in the database, nor the journal, nor its memory overflow.",
            self.exception_transitions_lost.load(Relaxed),
        );
        counter(
            "trackside_exception_acks_refused_total",
            "Acknowledgements answered 503 because the database was unreachable.",
            self.exception_acks_refused.load(Relaxed),
        );
        counter(
            "trackside_signin_failures_total",
            "Refused sign-ins (wrong name or password, disabled account, throttled); each is in the audit trail.",
            self.signin_failures.load(Relaxed),
        );
        counter(
            "trackside_signin_busy_total",
            "Sign-ins refused because too many passwords were being checked at once.",
            self.signin_busy.load(Relaxed),
        );
        counter(
            "trackside_http_origin_refused_total",
            "Requests and WebSocket handshakes refused because their Origin is not a public origin.",
            self.http_origin_refused.load(Relaxed),
        );
        counter(
            "trackside_ws_sessions_ended_total",
            "Live feeds closed because their session or API token ended.",
            self.ws_sessions_ended.load(Relaxed),
        );
        counter(
            "trackside_https_handshake_failures_total",
            "TLS handshakes on the HTTPS listener that failed or timed out.",
            self.https_handshake_failures.load(Relaxed),
        );
        counter(
            "trackside_occupations_derived_total",
            "Occupation events derived from stored readings (a stretch derived again after late readings counts again).",
            self.occupations_derived.load(Relaxed),
        );
        counter(
            "trackside_occupation_job_failures_total",
            "Passes of the occupation job that failed and were retried.",
            self.occupation_job_failures.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP trackside_notifications_total Notification attempts by channel and outcome (sent; retried: failed, tried again; given_up: failed its last attempt; dropped: lost to a full queue or shutdown).\n\
             # TYPE trackside_notifications_total counter"
        );
        for channel in NotifyChannel::ALL {
            for outcome in NotifyOutcome::ALL {
                let _ = writeln!(
                    out,
                    "trackside_notifications_total{{channel=\"{}\",outcome=\"{}\"}} {}",
                    channel.as_str(),
                    outcome.as_str(),
                    self.notifications[channel as usize][outcome as usize].load(Relaxed)
                );
            }
        }
        let name = "trackside_rejections_total";
        let _ = writeln!(
            out,
            "# HELP {name} Rejected MQTT messages and readings, kept in rejected_messages, by kind: \
             topic (unknown topic), acl (a gateway's certificate does not allow the topic's gateway, or \
             a channel another gateway owns), payload (a whole payload that does not decode), reading \
             (one element of a batch, or an unknown parameter), bound (a new channel past \
             ingest.max_channels_per_gateway).\n\
             # TYPE {name} counter"
        );
        for kind in RejectionKind::ALL {
            let value = self.rejections[kind as usize].load(Relaxed);
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {value}", kind.label());
        }
        if let Some(broker) = self.mqtt_external.get() {
            let name = "trackside_mqtt_external_connected";
            let _ = writeln!(
                out,
                "# HELP {name} 1 while Trackside's session with the external MQTT broker is up.\n\
                 # TYPE {name} gauge\n{name}{{broker=\"{broker}\"}} {}",
                self.mqtt_external_connected.load(Relaxed)
            );
        }
        if let Some(listeners) = self.mqtt_listeners.get() {
            let name = "trackside_mqtt_connections";
            let _ = writeln!(
                out,
                "# HELP {name} Open TCP connections on each MQTT listener (counted at most once a second).\n# TYPE {name} gauge"
            );
            let counts = self.mqtt_connections(listeners);
            for ((listener, _), count) in listeners.iter().zip(counts) {
                let _ = writeln!(out, "{name}{{listener=\"{listener}\"}} {count}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP trackside_mqtt_acl_refusals_total Publishes and subscriptions the MQTT front refused: outside the gateway's own topics.\n\
             # TYPE trackside_mqtt_acl_refusals_total counter\n\
             trackside_mqtt_acl_refusals_total{{kind=\"publish\"}} {}\n\
             trackside_mqtt_acl_refusals_total{{kind=\"subscribe\"}} {}",
            self.mqtt_acl_refused_publishes.load(Relaxed),
            self.mqtt_acl_refused_subscriptions.load(Relaxed),
        );
        let mut gauge = |name: &str, help: &str, value: i64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            "trackside_mqtt_sessions",
            "Gateway sessions open through the MQTT front.",
            self.mqtt_front_sessions.load(Relaxed),
        );
        gauge(
            "trackside_sparkplug_nodes",
            "Sparkplug B edge nodes with a session kept (born and not dead).",
            self.sparkplug_nodes.load(Relaxed),
        );
        gauge(
            "trackside_store_queue_messages",
            "Decoded messages waiting for the store writer.",
            self.store_queue_depth.load(Relaxed),
        );
        gauge(
            "trackside_spool_backlog_bytes",
            "Bytes in the spool not yet stored in PostgreSQL.",
            spool.backlog_bytes as i64,
        );
        gauge(
            "trackside_spool_bytes",
            "Size of the spool's files on disk.",
            spool.bytes as i64,
        );
        gauge(
            "trackside_spool_max_bytes",
            "The spool's bound, ingest.spool_max_bytes.",
            spool.max_bytes as i64,
        );
        gauge(
            "trackside_spool_writable",
            "1 while the spool's last write succeeded, 0 while the disk refuses (full or failing).",
            i64::from(!spool.failing),
        );
        gauge(
            "trackside_exception_journal_pending",
            "Exception transitions judged while the database was away, not yet stored.",
            self.exception_journal_pending.load(Relaxed),
        );
        gauge(
            "trackside_webhook_pending",
            "Webhook notifications queued or being retried, over all receivers.",
            self.webhook_pending.load(Relaxed),
        );

        gauge(
            "trackside_exceptions_open",
            "Exceptions not yet both cleared and acknowledged.",
            self.exceptions_open.load(Relaxed),
        );
        gauge(
            "trackside_exceptions_open_suppressed",
            "Open exceptions raised inside a maintenance window that is still on.",
            self.exceptions_open_suppressed.load(Relaxed),
        );
        gauge(
            "trackside_occupation_lag_seconds",
            "How far behind now the circuit furthest behind is derived (at least the 60 s readings are given to arrive).",
            self.occupation_lag_seconds.load(Relaxed),
        );
        gauge(
            "trackside_flood_on",
            "1 while an alarm flood is on.",
            self.flood_on.load(Relaxed),
        );
        gauge(
            "trackside_exceptions_open_shelved",
            "Open exceptions an operator's shelf hides now (recorded, not sounded or notified).",
            self.exceptions_open_shelved.load(Relaxed),
        );
        gauge(
            "trackside_rollup_set_aside_minutes",
            "Minutes whose rollup failed and waits for a retry.",
            self.rollup_set_aside.load(Relaxed),
        );
        gauge(
            "trackside_ws_clients",
            "Connected WebSocket clients.",
            self.ws_clients.load(Relaxed),
        );
        let now = chrono::Utc::now().timestamp_millis();
        let oldest = self
            .webhook_oldest_ms
            .get()
            .into_iter()
            .flatten()
            .map(|queued| queued.load(Relaxed))
            .filter(|&queued| queued > 0)
            .min();
        let _ = writeln!(
            out,
            "# HELP trackside_webhook_oldest_undelivered_seconds Age of the oldest webhook notification not yet delivered (0: none).\n\
             # TYPE trackside_webhook_oldest_undelivered_seconds gauge\n\
             trackside_webhook_oldest_undelivered_seconds {:.3}",
            oldest.map_or(0.0, |queued| (now - queued).max(0) as f64 / 1000.0)
        );
        self.priority_mix(&mut out);
        out
    }
}

impl Metrics {
    /// The priority mix: open exceptions and raises by priority, and the
    /// share of raises at each against the alarm-management standard's
    /// target (about 80 % low, 15 % medium, 5 % high).
    fn priority_mix(&self, out: &mut String) {
        use trackside_wire::Priority;
        let raised = self
            .exceptions_raised_by_priority
            .each_ref()
            .map(|c| c.load(Relaxed));
        let total: u64 = raised.iter().sum();
        let mut family =
            |name: &str, kind: &str, help: &str, value: &dyn Fn(Priority) -> String| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for priority in Priority::ALL {
                    let _ = writeln!(
                        out,
                        "{name}{{priority=\"{}\"}} {}",
                        priority.as_str(),
                        value(priority)
                    );
                }
            };
        family(
            "trackside_exceptions_open_by_priority",
            "gauge",
            "Open exceptions by their priority now (escalation included).",
            &|p| {
                self.exceptions_open_by_priority[p as usize]
                    .load(Relaxed)
                    .to_string()
            },
        );
        family(
            "trackside_exceptions_raised_by_priority_total",
            "counter",
            "New exceptions by the priority they were raised with (suppressed ones not counted).",
            &|p| raised[p as usize].to_string(),
        );
        family(
            "trackside_exceptions_priority_share",
            "gauge",
            "Share of raised exceptions at each priority since the server started (0 to 1).",
            &|p| {
                let share = if total == 0 {
                    0.0
                } else {
                    raised[p as usize] as f64 / total as f64
                };
                format!("{share:.4}")
            },
        );
        family(
            "trackside_exceptions_priority_target_share",
            "gauge",
            "The alarm-management standard's target share at each priority (ISA-18.2 / EEMUA 191).",
            &|p| format!("{:.2}", p.target_share()),
        );
    }
}

/// How long a count of MQTT connections is served before it is taken again.
/// Reading the kernel's socket tables walks its whole connection hash (about
/// 10 ms here), so a client polling `/metrics` in a loop would otherwise
/// spend a core on it.
const CONNECTIONS_MAX_AGE: Duration = Duration::from_secs(1);

impl Metrics {
    fn mqtt_connections(&self, listeners: &[(&'static str, u16)]) -> Vec<u64> {
        let mut seen = self
            .mqtt_connections_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*seen {
            Some((at, counts)) if at.elapsed() < CONNECTIONS_MAX_AGE => counts.clone(),
            _ => {
                let counts = established_connections(listeners.iter().map(|(_, port)| *port));
                *seen = Some((Instant::now(), counts.clone()));
                counts
            }
        }
    }
}

/// Established TCP connections whose local port is each of `ports`, from
/// the kernel's socket tables (state `01`). rumqttd keeps no such count;
/// its router meter counts sessions only while messages flow.
fn established_connections(ports: impl Iterator<Item = u16>) -> Vec<u64> {
    let ports: Vec<String> = ports.map(|port| format!(":{port:04X}")).collect();
    let mut counts = vec![0; ports.len()];
    crate::socket_table::visit_tcp_sockets(|local, state| {
        if state == "01"
            && let Some(index) = ports.iter().position(|port| local.ends_with(port.as_str()))
        {
            counts[index] += 1;
        }
    });
    counts
}
