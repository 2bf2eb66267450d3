//! Replay: the state of every circuit at an instant, then every change of
//! it over an interval, with the exceptions that were active, computed in
//! PostgreSQL.
//!
//! Relay states are re-sent unchanged (gateways refresh discrete channels
//! so a late subscriber learns them), so most stored relay readings are not
//! changes. One statement per request walks each circuit's relay channel in
//! key order (`(channel_id, ts)`, no sort) from its last reading at or
//! before the start, and keeps a row only where the value differs from the
//! one before it (`lag`): the answer grows with the changes, not with the
//! re-sends. All statements of a request read one snapshot.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use trackside_wire::{
    ExceptionKind, Movement, ReplayException, ReplayExceptionStep, ReplayStart, Severity,
    StateChange, TransitionKind,
};

/// Replay looks this far before `from` to find when the state at `from`
/// began, and the train movements already under way.
pub const LOOKBACK_MS: i64 = 10 * 60_000;
/// Most changes one answer holds (about 50 bytes of JSON each).
pub const MAX_CHANGES: usize = 500_000;
/// Most exceptions one answer holds.
pub const MAX_EXCEPTIONS: usize = 10_000;

/// The relay channel of a circuit.
#[derive(Debug, Clone)]
pub struct RelayChannel {
    pub id: i32,
    pub circuit: String,
    pub gateway: String,
}

/// Why a replay was not answered.
#[derive(Debug)]
pub enum ReplayError {
    /// More changes than [`MAX_CHANGES`].
    TooMany,
    Database(sqlx::Error),
}

impl From<sqlx::Error> for ReplayError {
    fn from(err: sqlx::Error) -> Self {
        Self::Database(err)
    }
}

/// What one read of the database gives.
pub struct Recorded {
    pub start: Vec<ReplayStart>,
    /// Changes within `(from, to)`.
    pub changes: Vec<StateChange>,
    /// Circuits occupied at `from` with when that began (from the lookback,
    /// or `from - LOOKBACK_MS` when earlier): where movements begin.
    pub occupied_at_start: Vec<(String, i64)>,
    /// Changes in the lookback and the interval, for movement detection.
    pub lookback_changes: Vec<StateChange>,
    pub exceptions: Vec<ReplayException>,
}

/// Reads `[from, to)` for `circuits` (`None`: every circuit with a relay
/// channel) in one read-only snapshot.
pub async fn read(
    pool: &PgPool,
    from: i64,
    to: i64,
    circuits: Option<&[String]>,
) -> Result<Recorded, ReplayError> {
    let time = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT set_config('statement_timeout', '20s', true)")
        .execute(&mut *tx)
        .await?;
    let channels: Vec<(i32, String, String)> = sqlx::query_as(
        "SELECT id, circuit, gateway_id FROM channels
         WHERE parameter = 'relay_state' AND ($1::text[] IS NULL OR circuit = ANY($1))
         ORDER BY circuit",
    )
    .bind(circuits)
    .fetch_all(&mut *tx)
    .await?;
    let channels: Vec<RelayChannel> = channels
        .into_iter()
        .map(|(id, circuit, gateway)| RelayChannel {
            id,
            circuit,
            gateway,
        })
        .collect();
    let ids: Vec<i32> = channels.iter().map(|c| c.id).collect();
    let names: Vec<String> = channels.iter().map(|c| c.circuit.clone()).collect();
    let look_from = from - LOOKBACK_MS;
    // Each channel from its last reading at or before the lookback's start
    // (its state then) to `to`, read in key order; only rows whose value
    // differs from the previous row's are kept.
    let rows: Vec<(String, DateTime<Utc>, f64)> = sqlx::query_as(
        "SELECT ch.circuit, s.ts, s.value
         FROM unnest($1::integer[], $2::text[]) AS ch (id, circuit)
         CROSS JOIN LATERAL (
             SELECT w.ts, w.value FROM (
                 SELECT r.ts, r.value, lag(r.value) OVER (ORDER BY r.ts) AS previous
                 FROM readings r
                 WHERE r.channel_id = ch.id
                   AND r.ts >= coalesce(
                       (SELECT b.ts FROM readings b
                        WHERE b.channel_id = ch.id AND b.ts <= $3
                        ORDER BY b.ts DESC LIMIT 1),
                       $3)
                   AND r.ts < $4
                 ORDER BY r.ts
             ) w
             WHERE w.previous IS DISTINCT FROM w.value
         ) s
         ORDER BY s.ts, ch.circuit
         LIMIT $5",
    )
    .bind(&ids)
    .bind(&names)
    .bind(time(look_from))
    .bind(time(to))
    .bind(MAX_CHANGES as i64 + channels.len() as i64 * 2 + 1)
    .fetch_all(&mut *tx)
    .await?;

    let mut state: HashMap<&str, (f64, Option<i64>)> = HashMap::new();
    let mut lookback_changes = Vec::new();
    let mut changes = Vec::new();
    let mut occupied_before: HashMap<String, i64> = HashMap::new();
    for (circuit, ts, value) in &rows {
        let at = ts.timestamp_millis();
        if at <= look_from {
            // The state when the lookback begins: its start is unknown.
            state.insert(circuit.as_str(), (*value, None));
            if *value == 0.0 {
                occupied_before.insert(circuit.clone(), look_from);
            }
            continue;
        }
        let change = StateChange {
            at,
            circuit: circuit.clone(),
            state: *value,
        };
        if at <= from {
            state.insert(circuit.as_str(), (*value, Some(at)));
        } else {
            changes.push(change.clone());
        }
        lookback_changes.push(change);
    }
    if changes.len() > MAX_CHANGES {
        return Err(ReplayError::TooMany);
    }
    let start = channels
        .iter()
        .map(|c| {
            let known = state.get(c.circuit.as_str());
            ReplayStart {
                circuit: c.circuit.clone(),
                gateway: c.gateway.clone(),
                state: known.map(|(v, _)| *v),
                since: known.and_then(|(_, since)| *since),
            }
        })
        .collect();
    let occupied_at_start = occupied_before.into_iter().collect();
    let exceptions = read_exceptions(&mut tx, from, to, circuits).await?;
    tx.commit().await?;
    Ok(Recorded {
        start,
        changes,
        occupied_at_start,
        lookback_changes,
        exceptions,
    })
}

type ExceptionRow = (
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
);

/// Exceptions active at some moment of `[from, to)`: whether each was
/// active at `from` (its last raise or clear before it), and its steps
/// within. Gateway exceptions are included whatever `circuits` says.
async fn read_exceptions(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    from: i64,
    to: i64,
    circuits: Option<&[String]>,
) -> Result<Vec<ReplayException>, ReplayError> {
    let time = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let rows: Vec<ExceptionRow> = sqlx::query_as(
        "SELECT e.id, e.rule_id, e.kind, e.severity, e.subject, e.circuit, e.gateway_id,
                e.message,
                (SELECT t.kind FROM exception_transitions t
                 WHERE t.exception_id = e.id AND t.kind IN ('raised', 'cleared', 'realarmed')
                   AND t.at <= $1
                 ORDER BY t.at DESC, t.id DESC LIMIT 1)
         FROM exceptions e
         WHERE e.raised_at < $2
           AND (e.active OR e.cleared_at >= $1)
           AND ($3::text[] IS NULL OR e.circuit IS NULL OR e.circuit = ANY($3))
         ORDER BY e.raised_at, e.id
         LIMIT $4",
    )
    .bind(time(from))
    .bind(time(to))
    .bind(circuits)
    .bind(MAX_EXCEPTIONS as i64)
    .fetch_all(&mut **tx)
    .await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let steps: Vec<(i64, DateTime<Utc>, String)> = sqlx::query_as(
        "SELECT exception_id, at, kind FROM exception_transitions
         WHERE exception_id = ANY($1) AND at > $2 AND at < $3
         ORDER BY at, id",
    )
    .bind(&ids)
    .bind(time(from))
    .bind(time(to))
    .fetch_all(&mut **tx)
    .await?;
    let mut by_exception: HashMap<i64, Vec<ReplayExceptionStep>> = HashMap::new();
    for (id, at, kind) in steps {
        if let Some(kind) = TransitionKind::parse(&kind) {
            by_exception
                .entry(id)
                .or_default()
                .push(ReplayExceptionStep {
                    at: at.timestamp_millis(),
                    kind,
                });
        }
    }
    let mut exceptions = Vec::new();
    for (id, rule, kind, severity, subject, circuit, gateway, message, last) in rows {
        let (Some(kind), Some(severity)) =
            (ExceptionKind::parse(&kind), Severity::parse(&severity))
        else {
            continue;
        };
        let active_at_start = matches!(last.as_deref(), Some("raised" | "realarmed"));
        let steps = by_exception.remove(&id).unwrap_or_default();
        let raised_within = steps
            .iter()
            .any(|s| matches!(s.kind, TransitionKind::Raised));
        if !active_at_start && !raised_within {
            continue;
        }
        exceptions.push(ReplayException {
            id,
            rule,
            kind,
            severity,
            subject,
            circuit,
            gateway,
            message,
            active_at_start,
            steps,
        });
    }
    Ok(exceptions)
}

/// Movements overlapping `[from, to)`, from what [`read`] found.
pub fn movements_within(
    recorded: &Recorded,
    adjacent: &HashMap<&str, &[String]>,
    from: i64,
    to: i64,
) -> Vec<Movement> {
    super::movement::detect(
        &recorded.occupied_at_start,
        &recorded.lookback_changes,
        adjacent,
    )
    .into_iter()
    .filter(|m| m.start() < to && m.end().is_none_or(|end| end >= from))
    .collect()
}
