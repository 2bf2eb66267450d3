//! The exceptions' tables (and the maintenance windows'): the only SQL
//! that touches them.

use std::collections::HashMap;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use trackside_wire::{
    Criticality, ExceptionDetail, ExceptionEvent, ExceptionInfo, ExceptionKind,
    MaintenanceWindowInfo, NewMaintenanceWindow, Priority, PriorityMix, PriorityShare, Severity,
    ShelfInfo, TransitionInfo, TransitionKind, WindowState,
};
use trackside_wire::{FloodInfo, FloodMark};

use super::engine::Key;

const COLUMNS: &str = "id, rule_id, kind, severity, subject, circuit, gateway_id, message, value, \
     active, open, raised_at, last_raised_at, cleared_at, acked_at, acked_by, ack_comment, occurrences, \
     criticality, base_priority, priority, escalation, escalated_at, suppressed, window_id, shelf_id, shelved_until, \
     flood_id, flood_group";

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    rule_id: String,
    kind: String,
    severity: String,
    subject: String,
    circuit: Option<String>,
    gateway_id: Option<String>,
    message: String,
    value: Option<f64>,
    active: bool,
    open: bool,
    raised_at: DateTime<Utc>,
    last_raised_at: DateTime<Utc>,
    cleared_at: Option<DateTime<Utc>>,
    acked_at: Option<DateTime<Utc>>,
    acked_by: Option<String>,
    ack_comment: Option<String>,
    occurrences: i32,
    criticality: String,
    base_priority: String,
    priority: String,
    escalation: i16,
    escalated_at: Option<DateTime<Utc>>,
    suppressed: bool,
    window_id: Option<i64>,
    shelf_id: Option<i64>,
    shelved_until: Option<DateTime<Utc>>,
    flood_id: Option<i64>,
    flood_group: Option<String>,
}

impl Row {
    fn into_info(self) -> anyhow::Result<ExceptionInfo> {
        Ok(ExceptionInfo {
            id: self.id,
            kind: ExceptionKind::parse(&self.kind)
                .with_context(|| format!("exception {}: unknown kind {:?}", self.id, self.kind))?,
            severity: Severity::parse(&self.severity).with_context(|| {
                format!(
                    "exception {}: unknown severity {:?}",
                    self.id, self.severity
                )
            })?,
            rule: self.rule_id,
            subject: self.subject,
            circuit: self.circuit,
            gateway: self.gateway_id,
            message: self.message,
            value: self.value,
            active: self.active,
            acknowledged: self.acked_at.is_some(),
            open: self.open,
            raised_at: self.raised_at.timestamp_millis(),
            last_raised_at: self.last_raised_at.timestamp_millis(),
            cleared_at: self.cleared_at.map(|t| t.timestamp_millis()),
            acked_at: self.acked_at.map(|t| t.timestamp_millis()),
            acked_by: self.acked_by,
            ack_comment: self.ack_comment,
            occurrences: self.occurrences,
            criticality: Criticality::parse(&self.criticality).with_context(|| {
                format!(
                    "exception {}: unknown criticality {:?}",
                    self.id, self.criticality
                )
            })?,
            base_priority: parse_priority(self.id, &self.base_priority)?,
            priority: parse_priority(self.id, &self.priority)?,
            escalation: u8::try_from(self.escalation).unwrap_or(u8::MAX),
            escalated_at: self.escalated_at.map(|t| t.timestamp_millis()),
            suppressed: self.suppressed,
            window: self.window_id,
            shelf: self.shelf_id,
            shelved_until: self.shelved_until.map(|t| t.timestamp_millis()),
            stored: true,
            flood: self
                .flood_id
                .zip(self.flood_group)
                .map(|(flood, group)| FloodMark { flood, group }),
        })
    }
}

fn parse_priority(id: i64, text: &str) -> anyhow::Result<Priority> {
    Priority::parse(text).with_context(|| format!("exception {id}: unknown priority {text:?}"))
}

/// The open exceptions, whole: the service keeps them in memory, and the
/// engine resumes from them.
pub async fn load_open(pool: &PgPool) -> anyhow::Result<Vec<ExceptionInfo>> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM exceptions WHERE open ORDER BY id"
    )))
    .fetch_all(pool)
    .await
    .context("loading open exceptions")?;
    rows.into_iter().map(Row::into_info).collect()
}

/// Takes `count` ids from the exceptions' sequence ahead of need, so that a
/// raise can be numbered and shown while the database is unreachable.
/// Unused ones are gaps in the numbering, nothing more.
pub async fn reserve_ids(pool: &PgPool, count: usize) -> anyhow::Result<Vec<i64>> {
    let ids: Vec<(i64,)> = sqlx::query_as(
        "SELECT nextval(pg_get_serial_sequence('exceptions', 'id'))
         FROM generate_series(1, $1)",
    )
    .bind(count as i64)
    .fetch_all(pool)
    .await
    .context("reserving exception ids")?;
    Ok(ids.into_iter().map(|(id,)| id).collect())
}

/// Writes events in order: each exception's row as the event shows it
/// (inserted, or replaced), and its transition once. Writing the same
/// events again changes nothing, which makes a replayed journal harmless.
///
/// An event numbered 0 (no id was reserved for it) gets an id here; so do
/// later events of the same rule and subject, through `assigned`, until
/// the exception closes. Their ids are written back into `events`.
pub async fn write(
    pool: &PgPool,
    events: &mut [ExceptionEvent],
    assigned: &mut HashMap<Key, i64>,
) -> Result<(), WriteError> {
    let mut tx = pool.begin().await?;
    for event in events.iter_mut() {
        write_one(&mut tx, event, assigned).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Why a write failed: the database is away (try again later), or it
/// refuses these events for good (a constraint, a value out of range).
#[derive(Debug)]
pub enum WriteError {
    Unreachable(sqlx::Error),
    Refused(sqlx::Error),
}

impl From<sqlx::Error> for WriteError {
    fn from(err: sqlx::Error) -> Self {
        // Integrity (23) and data (22) errors come again on every retry.
        let refused = err
            .as_database_error()
            .and_then(|e| e.code())
            .is_some_and(|code| code.starts_with("23") || code.starts_with("22"));
        if refused {
            WriteError::Refused(err)
        } else {
            WriteError::Unreachable(err)
        }
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Unreachable(err) => write!(f, "{err}"),
            WriteError::Refused(err) => write!(f, "refused for good: {err}"),
        }
    }
}

async fn write_one(
    tx: &mut Transaction<'_, Postgres>,
    event: &mut ExceptionEvent,
    assigned: &mut HashMap<Key, i64>,
) -> Result<(), WriteError> {
    let e = &mut event.exception;
    let key = Key {
        rule: e.rule.clone(),
        subject: e.subject.clone(),
    };
    if e.id == 0
        && let Some(&id) = assigned.get(&key)
    {
        e.id = id;
    }
    let time = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms);
    let id: Option<i64> = (e.id != 0).then_some(e.id);
    let (written,): (i64,) = sqlx::query_as(
        "INSERT INTO exceptions (id, rule_id, kind, severity, subject, circuit, gateway_id,
                                 message, value, active, open, raised_at, last_raised_at,
                                 cleared_at, acked_at, acked_by, ack_comment, occurrences,
                                 criticality, base_priority, priority, escalation,
                                 escalated_at, suppressed, window_id, shelf_id, shelved_until,
                                 flood_id, flood_group)
         OVERRIDING SYSTEM VALUE
         VALUES (COALESCE($1, nextval(pg_get_serial_sequence('exceptions', 'id'))),
                 $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                 $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29)
         ON CONFLICT (id) DO UPDATE SET
             message = EXCLUDED.message, value = EXCLUDED.value, active = EXCLUDED.active,
             open = EXCLUDED.open, last_raised_at = EXCLUDED.last_raised_at,
             cleared_at = EXCLUDED.cleared_at, acked_at = EXCLUDED.acked_at,
             acked_by = EXCLUDED.acked_by, ack_comment = EXCLUDED.ack_comment,
             occurrences = EXCLUDED.occurrences, priority = EXCLUDED.priority,
             escalation = EXCLUDED.escalation, escalated_at = EXCLUDED.escalated_at,
             suppressed = EXCLUDED.suppressed, shelf_id = EXCLUDED.shelf_id,
             shelved_until = EXCLUDED.shelved_until, flood_id = EXCLUDED.flood_id,
             flood_group = EXCLUDED.flood_group
         RETURNING id",
    )
    .bind(id)
    .bind(&e.rule)
    .bind(e.kind.as_str())
    .bind(e.severity.as_str())
    .bind(&e.subject)
    .bind(&e.circuit)
    .bind(&e.gateway)
    .bind(&e.message)
    .bind(e.value)
    .bind(e.active)
    .bind(e.open)
    .bind(time(e.raised_at))
    .bind(time(e.last_raised_at))
    .bind(e.cleared_at.and_then(time))
    .bind(e.acked_at.and_then(time))
    .bind(&e.acked_by)
    .bind(&e.ack_comment)
    .bind(e.occurrences)
    .bind(e.criticality.as_str())
    .bind(e.base_priority.as_str())
    .bind(e.priority.as_str())
    .bind(i16::from(e.escalation))
    .bind(e.escalated_at.and_then(time))
    .bind(e.suppressed)
    .bind(e.window)
    .bind(e.shelf)
    .bind(e.shelved_until.and_then(time))
    .bind(e.flood.as_ref().map(|f| f.flood))
    .bind(e.flood.as_ref().map(|f| f.group.as_str()))
    .fetch_one(&mut **tx)
    .await?;
    e.id = written;
    if e.open {
        if id.is_none() {
            assigned.insert(key, written);
        }
    } else {
        assigned.remove(&key);
    }
    let t = &event.transition;
    sqlx::query(
        "INSERT INTO exception_transitions (exception_id, at, kind, value, message, actor, comment)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (exception_id, at, kind) DO NOTHING",
    )
    .bind(written)
    .bind(time(t.at))
    .bind(t.kind.as_str())
    .bind(t.value)
    .bind(&t.message)
    .bind(&t.by)
    .bind(&t.comment)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `GET /api/exceptions` filters.
#[derive(Debug, Default)]
pub struct Filter {
    pub active: Option<bool>,
    pub open: Option<bool>,
    pub acknowledged: Option<bool>,
    pub severities: Option<Vec<String>>,
    pub priorities: Option<Vec<String>>,
    /// Suppressed by a maintenance window (true), or not (false).
    pub suppressed: Option<bool>,
    /// Open and hidden by a shelf now (true), or not (false).
    pub shelved: Option<bool>,
    pub circuit: Option<String>,
    pub rule: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// Unacknowledged first (active before cleared), then acknowledged active,
/// then closed; within each, the highest priority, the most severe, then
/// the latest.
const ORDER: &str = "ORDER BY open DESC,
      CASE WHEN acked_at IS NULL AND active THEN 0
           WHEN acked_at IS NULL THEN 1
           WHEN active THEN 2 ELSE 3 END,
      CASE priority WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END,
      CASE severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 WHEN 'warning' THEN 2 ELSE 3 END,
      last_raised_at DESC, id DESC";

pub async fn list(pool: &PgPool, filter: &Filter) -> anyhow::Result<Vec<ExceptionInfo>> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM exceptions
         WHERE ($1::boolean IS NULL OR active = $1)
           AND ($2::boolean IS NULL OR open = $2)
           AND ($3::boolean IS NULL OR (acked_at IS NOT NULL) = $3)
           AND ($4::text[] IS NULL OR severity = ANY($4))
           AND ($5::text IS NULL OR circuit = $5)
           AND ($6::text IS NULL OR rule_id = $6)
           AND ($7::timestamptz IS NULL OR active OR cleared_at >= $7)
           AND ($8::timestamptz IS NULL OR raised_at <= $8)
           AND ($10::text[] IS NULL OR priority = ANY($10))
           AND ($11::boolean IS NULL OR suppressed = $11)
           AND ($12::boolean IS NULL OR (open AND shelf_id IS NOT NULL) = $12)
         {ORDER}
         LIMIT $9"
    )))
    .bind(filter.active)
    .bind(filter.open)
    .bind(filter.acknowledged)
    .bind(&filter.severities)
    .bind(&filter.circuit)
    .bind(&filter.rule)
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.limit)
    .bind(&filter.priorities)
    .bind(filter.suppressed)
    .bind(filter.shelved)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Row::into_info).collect()
}

pub async fn get(pool: &PgPool, id: i64) -> anyhow::Result<Option<ExceptionDetail>> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM exceptions WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    type TransitionRow = (
        DateTime<Utc>,
        String,
        Option<f64>,
        String,
        Option<String>,
        Option<String>,
    );
    let transitions: Vec<TransitionRow> = sqlx::query_as(
        "SELECT at, kind, value, message, actor, comment FROM exception_transitions
             WHERE exception_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let transitions = transitions
        .into_iter()
        .map(|(at, kind, value, message, by, comment)| {
            Ok(TransitionInfo {
                at: at.timestamp_millis(),
                kind: TransitionKind::parse(&kind)
                    .with_context(|| format!("unknown transition kind {kind:?}"))?,
                value,
                message,
                by,
                comment,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Some(ExceptionDetail {
        exception: row.into_info()?,
        transitions,
    }))
}

/// A maintenance window as the engine needs it.
pub struct PlannedWindow {
    pub id: i64,
    pub circuits: Vec<String>,
    pub gateway: Option<String>,
    pub starts_at: i64,
    pub ends_at: i64,
}

type WindowRow = (
    i64,
    Vec<String>,
    Option<String>,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    String,
    DateTime<Utc>,
    Option<String>,
    i64,
);

const WINDOW_COLUMNS: &str = "w.id, w.circuits, w.gateway_id, w.reason, w.starts_at, w.ends_at, \
     w.created_by, w.created_at, w.ended_by, \
     (SELECT count(*) FROM exceptions e WHERE e.window_id = w.id)";

fn window_info(row: WindowRow, now: i64) -> MaintenanceWindowInfo {
    let (id, circuits, gateway, reason, starts, ends, created_by, created_at, ended_by, count) =
        row;
    let (starts_at, ends_at) = (starts.timestamp_millis(), ends.timestamp_millis());
    MaintenanceWindowInfo {
        id,
        circuits,
        gateway,
        reason,
        starts_at,
        ends_at,
        created_by,
        created_at: created_at.timestamp_millis(),
        ended_by,
        state: if now < starts_at {
            WindowState::Planned
        } else if now < ends_at {
            WindowState::Active
        } else {
            WindowState::Ended
        },
        suppressed: count,
    }
}

/// Stores a new window; answers it as stored.
pub async fn insert_window(
    pool: &PgPool,
    new: &NewMaintenanceWindow,
    starts_at: i64,
    by: &str,
) -> anyhow::Result<MaintenanceWindowInfo> {
    let time = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).context("time out of range");
    let row: WindowRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH w AS (
             INSERT INTO maintenance_windows (circuits, gateway_id, reason, starts_at, ends_at,
                                              created_by)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *)
         SELECT {WINDOW_COLUMNS} FROM w"
    )))
    .bind(&new.circuits)
    .bind(&new.gateway)
    .bind(&new.reason)
    .bind(time(starts_at)?)
    .bind(time(new.ends_at)?)
    .bind(by)
    .fetch_one(pool)
    .await
    .context("storing a maintenance window")?;
    Ok(window_info(row, Utc::now().timestamp_millis()))
}

/// Ends a window at `at` (or cancels one not begun); `None` when there is
/// no such window, `Some(false)` when it had ended already.
pub async fn end_window(
    pool: &PgPool,
    id: i64,
    at: i64,
    by: &str,
) -> anyhow::Result<Option<(bool, MaintenanceWindowInfo)>> {
    let at_time = DateTime::<Utc>::from_timestamp_millis(at).context("time out of range")?;
    let mut tx = pool.begin().await?;
    let ends: Option<(DateTime<Utc>,)> =
        sqlx::query_as("SELECT ends_at FROM maintenance_windows WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((ends,)) = ends else {
        return Ok(None);
    };
    let ended_now = ends > at_time;
    if ended_now {
        // A window not yet begun is cancelled: it starts and ends now.
        sqlx::query(
            "UPDATE maintenance_windows
             SET ends_at = $2, starts_at = LEAST(starts_at, $2 - interval '1 millisecond'),
                 ended_by = $3
             WHERE id = $1",
        )
        .bind(id)
        .bind(at_time)
        .bind(by)
        .execute(&mut *tx)
        .await?;
    }
    let row: WindowRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {WINDOW_COLUMNS} FROM maintenance_windows w WHERE w.id = $1"
    )))
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some((ended_now, window_info(row, at))))
}

/// Windows that have not ended, and those that ended within `recent_ms`,
/// soonest first.
pub async fn list_windows(
    pool: &PgPool,
    now: i64,
    from: i64,
    to: Option<i64>,
) -> anyhow::Result<Vec<MaintenanceWindowInfo>> {
    let time = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).context("time");
    let rows: Vec<WindowRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {WINDOW_COLUMNS} FROM maintenance_windows w
         WHERE w.ends_at >= $1 AND ($2::timestamptz IS NULL OR w.starts_at <= $2)
         ORDER BY w.starts_at, w.id LIMIT {MAX_WINDOWS_LISTED}"
    )))
    .bind(time(from)?)
    .bind(to.map(time).transpose()?)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| window_info(r, now)).collect())
}

/// At most this many windows in one answer.
pub const MAX_WINDOWS_LISTED: usize = 1_000;

/// The exceptions raised from `from` to `to` (Unix ms) outside maintenance
/// windows, by the priority they were raised with, and by 10 minutes.
pub async fn priority_mix(pool: &PgPool, from: i64, to: i64) -> anyhow::Result<PriorityMix> {
    let time = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).context("time");
    let (start, end) = (time(from)?, time(to)?);
    let by_priority: Vec<(String, i64)> = sqlx::query_as(
        "SELECT base_priority, count(*) FROM exceptions
         WHERE raised_at >= $1 AND raised_at < $2 AND NOT suppressed
         GROUP BY base_priority",
    )
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await
    .context("counting exceptions by priority")?;
    let (peak, flooded): (Option<i64>, i64) = sqlx::query_as(
        "SELECT max(raised), count(*) FILTER (WHERE raised > 10) FROM (
             SELECT count(*) AS raised FROM exceptions
             WHERE raised_at >= $1 AND raised_at < $2 AND NOT suppressed
             GROUP BY date_bin('10 minutes', raised_at, $1)) AS intervals",
    )
    .bind(start)
    .bind(end)
    .fetch_one(pool)
    .await
    .context("counting exceptions by 10 minutes")?;
    let raised: i64 = by_priority.iter().map(|(_, n)| n).sum();
    let priorities = Priority::ALL
        .into_iter()
        .map(|priority| {
            let count = by_priority
                .iter()
                .find(|(p, _)| p == priority.as_str())
                .map_or(0, |(_, n)| *n);
            PriorityShare {
                priority,
                raised: count,
                share: (raised > 0).then(|| count as f64 / raised as f64),
                target: priority.target_share(),
            }
        })
        .collect();
    let span_ms = (to - from).max(1) as f64;
    let intervals = (span_ms / 600_000.0).ceil().max(1.0);
    Ok(PriorityMix {
        from,
        to,
        priorities,
        raised,
        per_hour: raised as f64 * 3_600_000.0 / span_ms,
        peak_10min: peak.unwrap_or(0),
        flood_share: flooded as f64 / intervals,
    })
}

/// The windows the engine must know at start: those not ended.
pub async fn open_windows(pool: &PgPool, now: i64) -> anyhow::Result<Vec<PlannedWindow>> {
    let now = DateTime::<Utc>::from_timestamp_millis(now).context("time")?;
    type Row = (
        i64,
        Vec<String>,
        Option<String>,
        DateTime<Utc>,
        DateTime<Utc>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, circuits, gateway_id, starts_at, ends_at FROM maintenance_windows
             WHERE ends_at > $1",
    )
    .bind(now)
    .fetch_all(pool)
    .await
    .context("loading maintenance windows")?;
    Ok(rows
        .into_iter()
        .map(|(id, circuits, gateway, starts, ends)| PlannedWindow {
            id,
            circuits,
            gateway,
            starts_at: starts.timestamp_millis(),
            ends_at: ends.timestamp_millis(),
        })
        .collect())
}

/// A shelf as the engine needs it, and as stored.
type ShelfRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    String,
    DateTime<Utc>,
    String,
    DateTime<Utc>,
    Option<String>,
    i64,
);

const SHELF_COLUMNS: &str = "s.id, s.rule_id, s.subject, s.circuit, s.reason, s.created_at, \
     s.created_by, s.until, s.ended_by, \
     (SELECT count(*) FROM exceptions e WHERE e.shelf_id = s.id AND e.open)";

fn shelf_info(row: ShelfRow, now: i64) -> ShelfInfo {
    let (id, rule, subject, circuit, reason, created_at, created_by, until, ended_by, hidden) = row;
    let until = until.timestamp_millis();
    ShelfInfo {
        id,
        rule,
        subject,
        circuit,
        reason,
        created_at: created_at.timestamp_millis(),
        created_by,
        until,
        ended_by,
        active: now < until,
        hidden,
    }
}

/// Stores a new shelf (`subject` or `circuit`); answers it as stored.
pub async fn insert_shelf(
    pool: &PgPool,
    rule: &str,
    subject: Option<&str>,
    circuit: Option<&str>,
    reason: &str,
    until: i64,
    by: &str,
) -> anyhow::Result<ShelfInfo> {
    let until_time = DateTime::<Utc>::from_timestamp_millis(until).context("time out of range")?;
    let row: ShelfRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH s AS (
             INSERT INTO shelves (rule_id, subject, circuit, reason, until, created_by)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *)
         SELECT {SHELF_COLUMNS} FROM s"
    )))
    .bind(rule)
    .bind(subject)
    .bind(circuit)
    .bind(reason)
    .bind(until_time)
    .bind(by)
    .fetch_one(pool)
    .await
    .context("storing a shelf")?;
    Ok(shelf_info(row, Utc::now().timestamp_millis()))
}

/// Ends a shelf at `at`; `None` when there is no such shelf,
/// `Some((false, _))` when it had run out or been ended already.
pub async fn end_shelf(
    pool: &PgPool,
    id: i64,
    at: i64,
    by: &str,
) -> anyhow::Result<Option<(bool, ShelfInfo)>> {
    let at_time = DateTime::<Utc>::from_timestamp_millis(at).context("time out of range")?;
    let mut tx = pool.begin().await?;
    let until: Option<(DateTime<Utc>,)> =
        sqlx::query_as("SELECT until FROM shelves WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((until,)) = until else {
        return Ok(None);
    };
    let ended_now = until > at_time;
    if ended_now {
        sqlx::query(
            "UPDATE shelves SET until = GREATEST($2, created_at + interval '1 millisecond'),
                 ended_by = $3
             WHERE id = $1",
        )
        .bind(id)
        .bind(at_time)
        .bind(by)
        .execute(&mut *tx)
        .await?;
    }
    let row: ShelfRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SHELF_COLUMNS} FROM shelves s WHERE s.id = $1"
    )))
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some((ended_now, shelf_info(row, at))))
}

/// Shelves that hold, and those that ended within `recent_ms`, latest
/// first.
pub async fn list_shelves(
    pool: &PgPool,
    now: i64,
    recent_ms: i64,
) -> anyhow::Result<Vec<ShelfInfo>> {
    let since = DateTime::<Utc>::from_timestamp_millis(now - recent_ms).context("time")?;
    let rows: Vec<ShelfRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SHELF_COLUMNS} FROM shelves s WHERE s.until >= $1
         ORDER BY s.until DESC, s.id DESC LIMIT 1000"
    )))
    .bind(since)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| shelf_info(r, now)).collect())
}

/// The shelves the engine must know at start: those that still hold.
pub async fn open_shelves(pool: &PgPool, now: i64) -> anyhow::Result<Vec<ShelfInfo>> {
    let since = DateTime::<Utc>::from_timestamp_millis(now).context("time")?;
    let rows: Vec<ShelfRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SHELF_COLUMNS} FROM shelves s WHERE s.until > $1"
    )))
    .bind(since)
    .fetch_all(pool)
    .await
    .context("loading shelves")?;
    Ok(rows.into_iter().map(|r| shelf_info(r, now)).collect())
}

/// Stores a flood as it is now (its row is replaced: a repeat is
/// harmless).
pub async fn write_flood(pool: &PgPool, flood: &FloodInfo) -> anyhow::Result<()> {
    let time = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms);
    sqlx::query(
        "INSERT INTO floods (id, started_at, ended_at, peak, total, max_raises, window_s, groups)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET
             ended_at = EXCLUDED.ended_at, peak = EXCLUDED.peak, total = EXCLUDED.total,
             groups = EXCLUDED.groups, updated_at = now()",
    )
    .bind(flood.id)
    .bind(time(flood.started_at))
    .bind(flood.ended_at.and_then(time))
    .bind(i64::from(flood.peak))
    .bind(i64::from(flood.total))
    .bind(i64::from(flood.max_raises))
    .bind(i64::from(flood.window_s))
    .bind(sqlx::types::Json(&flood.groups))
    .execute(pool)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct FloodRow {
    id: i64,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    peak: i64,
    total: i64,
    max_raises: i64,
    window_s: i64,
    groups: sqlx::types::Json<Vec<trackside_wire::FloodGroupInfo>>,
}

impl From<FloodRow> for FloodInfo {
    fn from(row: FloodRow) -> Self {
        let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
        FloodInfo {
            id: row.id,
            started_at: row.started_at.timestamp_millis(),
            ended_at: row.ended_at.map(|t| t.timestamp_millis()),
            peak: count(row.peak),
            total: count(row.total),
            max_raises: count(row.max_raises),
            window_s: count(row.window_s),
            groups: row.groups.0,
        }
    }
}

const FLOOD_COLUMNS: &str = "id, started_at, ended_at, peak, total, max_raises, window_s, groups";

/// The flood that was on when the engine last ran, if any.
pub async fn running_flood(pool: &PgPool) -> anyhow::Result<Option<FloodInfo>> {
    let row: Option<FloodRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {FLOOD_COLUMNS} FROM floods WHERE ended_at IS NULL ORDER BY id DESC LIMIT 1"
    )))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(FloodInfo::from))
}

/// The floods that overlap `from..to` (Unix ms), newest first.
pub async fn list_floods(
    pool: &PgPool,
    from: i64,
    to: i64,
    limit: i64,
) -> anyhow::Result<Vec<FloodInfo>> {
    let time = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms);
    let rows: Vec<FloodRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {FLOOD_COLUMNS} FROM floods
         WHERE started_at < $2 AND (ended_at IS NULL OR ended_at >= $1)
         ORDER BY id DESC LIMIT $3"
    )))
    .bind(time(from))
    .bind(time(to))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(FloodInfo::from).collect())
}

/// The open, unacknowledged members of one flood group (at most `limit`),
/// and how many of its members are acknowledged or closed.
pub async fn group_members(
    pool: &PgPool,
    flood: i64,
    group: &str,
    limit: i64,
) -> anyhow::Result<(Vec<i64>, Vec<i64>)> {
    let rows: Vec<(i64, bool)> = sqlx::query_as(
        "SELECT id, open AND acked_at IS NULL FROM exceptions
         WHERE flood_id = $1 AND flood_group = $2 ORDER BY id LIMIT $3",
    )
    .bind(flood)
    .bind(group)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let (waiting, done): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(_, w)| *w);
    Ok((
        waiting.into_iter().map(|(id, _)| id).collect(),
        done.into_iter().map(|(id, _)| id).collect(),
    ))
}
