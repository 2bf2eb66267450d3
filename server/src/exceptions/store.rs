//! The exceptions' tables: the only SQL that touches them.

use std::collections::HashMap;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use trackside_wire::{
    ChannelName, ExceptionDetail, ExceptionEvent, ExceptionInfo, ExceptionKind, Severity,
    TransitionInfo, TransitionKind,
};

use super::engine::{Engine, Key, Resumed, Transition};
use super::transition_info;

const COLUMNS: &str = "id, rule_id, kind, severity, subject, circuit, gateway_id, message, value, \
     active, open, raised_at, last_raised_at, cleared_at, acked_at, acked_by, ack_comment, occurrences";

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
        })
    }
}

fn time(ms: i64) -> anyhow::Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).context("time out of range")
}

/// The open exceptions, for the engine to resume from.
pub async fn load_open(pool: &PgPool) -> anyhow::Result<Vec<(i64, Resumed)>> {
    type OpenRow = (i64, String, String, bool, Option<DateTime<Utc>>);
    let rows: Vec<OpenRow> = sqlx::query_as(
        "SELECT id, rule_id, subject, active, acked_at FROM exceptions WHERE open ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .context("loading open exceptions")?;
    Ok(rows
        .into_iter()
        .map(|(id, rule, subject, active, acked_at)| {
            (
                id,
                Resumed {
                    key: Key { rule, subject },
                    active,
                    acked_at: acked_at.map(|t| t.timestamp_millis()),
                },
            )
        })
        .collect())
}

/// Writes one step's transitions in one transaction; returns, per
/// transition, the exception as it is afterwards.
pub async fn apply(
    pool: &PgPool,
    engine: &Engine,
    ids: &HashMap<Key, i64>,
    transitions: &[Transition],
) -> anyhow::Result<Vec<ExceptionEvent>> {
    let mut tx = pool.begin().await?;
    // Later transitions of the same step may refer to an exception this
    // step opened.
    let mut opened: HashMap<&Key, i64> = HashMap::new();
    let mut events = Vec::with_capacity(transitions.len());
    for t in transitions {
        let id = opened.get(&t.key).or_else(|| ids.get(&t.key)).copied();
        let row = match (t.kind, id) {
            (TransitionKind::Raised, None) => {
                let row = insert(&mut tx, engine, t).await?;
                opened.insert(&t.key, row.id);
                row
            }
            (_, None) => anyhow::bail!(
                "transition {:?} for {:?} has no open exception",
                t.kind,
                t.key
            ),
            (kind, Some(id)) => update(&mut tx, id, kind, t).await?,
        };
        sqlx::query(
            "INSERT INTO exception_transitions (exception_id, at, kind, value, message, actor, comment)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(row.id)
        .bind(time(t.at)?)
        .bind(t.kind.as_str())
        .bind(t.value)
        .bind(&t.message)
        .bind(&t.by)
        .bind(&t.comment)
        .execute(&mut *tx)
        .await?;
        events.push(ExceptionEvent {
            transition: transition_info(t),
            exception: row.into_info()?,
        });
    }
    tx.commit().await?;
    Ok(events)
}

async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    engine: &Engine,
    t: &Transition,
) -> anyhow::Result<Row> {
    let (kind, severity) = engine
        .describe_rule(&t.key.rule)
        .with_context(|| format!("no rule {:?}", t.key.rule))?;
    let circuit = (kind != ExceptionKind::GatewayOffline)
        .then(|| ChannelName::parse(&t.key.subject).ok())
        .flatten()
        .map(|c| c.circuit().to_owned());
    let at = time(t.at)?;
    let row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO exceptions (rule_id, kind, severity, subject, circuit, gateway_id, message,
                                 value, active, open, raised_at, last_raised_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true, true, $9, $9)
         RETURNING {COLUMNS}"
    )))
    .bind(&t.key.rule)
    .bind(kind.as_str())
    .bind(severity.as_str())
    .bind(&t.key.subject)
    .bind(circuit)
    .bind(&t.gateway)
    .bind(&t.message)
    .bind(t.value)
    .bind(at)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row)
}

async fn update(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    kind: TransitionKind,
    t: &Transition,
) -> anyhow::Result<Row> {
    let at = time(t.at)?;
    let returning = |set: &str| {
        sqlx::AssertSqlSafe(format!(
            "UPDATE exceptions SET {set} WHERE id = $1 RETURNING {COLUMNS}"
        ))
    };
    // The raise message stays the exception's; later transitions keep
    // theirs in exception_transitions.
    let query = match kind {
        TransitionKind::Raised => sqlx::query_as(returning(
            "active = true, last_raised_at = $2, cleared_at = NULL, message = $3,
             value = COALESCE($4, value), occurrences = occurrences + 1",
        ))
        .bind(id)
        .bind(at)
        .bind(&t.message)
        .bind(t.value),
        TransitionKind::Cleared => sqlx::query_as(returning(
            "active = false, cleared_at = $2, open = acked_at IS NULL,
             value = COALESCE($3, value)",
        ))
        .bind(id)
        .bind(at)
        .bind(t.value),
        TransitionKind::Acknowledged => sqlx::query_as(returning(
            "acked_at = $2, acked_by = $3, ack_comment = $4, open = active",
        ))
        .bind(id)
        .bind(at)
        .bind(&t.by)
        .bind(&t.comment),
        TransitionKind::Realarmed => sqlx::query_as(returning(
            "acked_at = NULL, acked_by = NULL, ack_comment = NULL, last_raised_at = $2",
        ))
        .bind(id)
        .bind(at),
    };
    query
        .fetch_optional(&mut **tx)
        .await?
        .with_context(|| format!("exception {id} vanished"))
}

/// `GET /api/exceptions` filters.
#[derive(Debug, Default)]
pub struct Filter {
    pub active: Option<bool>,
    pub open: Option<bool>,
    pub acknowledged: Option<bool>,
    pub severities: Option<Vec<String>>,
    pub circuit: Option<String>,
    pub rule: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// Unacknowledged first (active before cleared), then acknowledged active,
/// then closed; within each, the most severe, then the latest.
const ORDER: &str = "ORDER BY open DESC,
      CASE WHEN acked_at IS NULL AND active THEN 0
           WHEN acked_at IS NULL THEN 1
           WHEN active THEN 2 ELSE 3 END,
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
