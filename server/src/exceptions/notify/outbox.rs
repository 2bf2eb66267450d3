//! The outbox table's SQL: the only statements on `notification_outbox`.
//!
//! Every statement runs under a short timeout chosen by the caller: the
//! sender goes on delivering from memory while the database is away, and
//! writes what it owes once it is back.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A notification as a row is inserted.
pub struct NewRow<'a> {
    pub channel: &'a str,
    pub receiver: &'a str,
    pub target: &'a str,
    /// The exception's id, or a flood's id negated (its summaries).
    pub exception: i64,
    pub severity: &'a str,
    pub body: &'a serde_json::Value,
}

/// A pending row loaded at a takeover or a restart.
#[derive(sqlx::FromRow)]
pub struct PendingRow {
    pub id: i64,
    pub target: String,
    /// The exception's id, or a flood's id negated.
    #[sqlx(rename = "exception_id")]
    pub exception: i64,
    pub severity: String,
    pub body: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
}

/// What became of an attempt, written back to its row.
#[derive(Debug, Clone)]
pub enum Outcome {
    Sent {
        attempts: u32,
    },
    Retry {
        attempts: u32,
        next: DateTime<Utc>,
        error: String,
    },
    GaveUp {
        attempts: u32,
        error: String,
    },
}

/// Rows not yet sent nor given up, over every receiver.
pub async fn pending_count(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM notification_outbox WHERE sent_at IS NULL AND given_up_at IS NULL",
    )
    .fetch_one(pool)
    .await
}

/// Inserts the rows in one transaction and returns their ids, in order.
pub async fn insert(pool: &PgPool, rows: &[NewRow<'_>]) -> sqlx::Result<Vec<i64>> {
    let mut tx = pool.begin().await?;
    let mut ids = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO notification_outbox \
             (channel, receiver, target, exception_id, flood_id, severity, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(row.channel)
        .bind(row.receiver)
        .bind(row.target)
        .bind((row.exception >= 0).then_some(row.exception))
        .bind((row.exception < 0).then(|| -row.exception))
        .bind(row.severity)
        .bind(row.body)
        .fetch_one(&mut *tx)
        .await?;
        ids.push(id);
    }
    tx.commit().await?;
    Ok(ids)
}

/// Writes attempts' outcomes in one transaction.
pub async fn record(pool: &PgPool, outcomes: &[(i64, Outcome)]) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    for (id, outcome) in outcomes {
        let query = match outcome {
            Outcome::Sent { attempts } => sqlx::query(
                "UPDATE notification_outbox SET sent_at = now(), attempts = $2, last_error = NULL \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(*attempts as i32),
            Outcome::Retry {
                attempts,
                next,
                error,
            } => sqlx::query(
                "UPDATE notification_outbox SET attempts = $2, next_attempt_at = $3, last_error = $4 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(*attempts as i32)
            .bind(next)
            .bind(error),
            Outcome::GaveUp { attempts, error } => sqlx::query(
                "UPDATE notification_outbox SET given_up_at = now(), attempts = $2, last_error = $3 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(*attempts as i32)
            .bind(error),
        };
        query.execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Gives up rows older than `max_age_s` that are still pending (returns
/// how many), and deletes finished rows older than `keep_s`.
pub async fn prune(pool: &PgPool, max_age_s: u64, keep_s: u64) -> sqlx::Result<u64> {
    let expired = sqlx::query(
        "UPDATE notification_outbox SET given_up_at = now(), \
         last_error = coalesce(last_error || '; ', '') || 'expired unsent' \
         WHERE sent_at IS NULL AND given_up_at IS NULL \
         AND created_at < now() - make_interval(secs => $1)",
    )
    .bind(max_age_s as f64)
    .execute(pool)
    .await?
    .rows_affected();
    sqlx::query(
        "DELETE FROM notification_outbox \
         WHERE (sent_at IS NOT NULL OR given_up_at IS NOT NULL) \
         AND created_at < now() - make_interval(secs => $1)",
    )
    .bind(keep_s as f64)
    .execute(pool)
    .await?;
    Ok(expired)
}

/// A receiver's pending rows, oldest first, at most `limit`.
pub async fn load(pool: &PgPool, receiver: &str, limit: usize) -> sqlx::Result<Vec<PendingRow>> {
    sqlx::query_as(
        "SELECT id, target, COALESCE(exception_id, -flood_id) AS exception_id, severity, body, \
         created_at, attempts, next_attempt_at \
         FROM notification_outbox \
         WHERE receiver = $1 AND sent_at IS NULL AND given_up_at IS NULL \
         ORDER BY id LIMIT $2",
    )
    .bind(receiver)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
}
