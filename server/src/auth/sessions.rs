//! Browser sessions in PostgreSQL, behind tower-sessions.
//!
//! tower-sessions keeps the cookie and the session record; this is its
//! store. The published PostgreSQL store (tower-sessions-sqlx-store 0.15)
//! is built on sqlx 0.8, and one binary must not carry two sqlx versions,
//! so the four methods are implemented here on the server's own pool.
//! Sessions live in the database, not in memory, so that several
//! instances behind one load balancer share them and a restart signs
//! nobody out.
//!
//! Three choices beyond the published store:
//! - the table keys sessions by the SHA-256 of their id, so a copy of it
//!   (a backup, a read replica) holds nothing that signs anyone in;
//! - `save` only updates: a session ended while one of its requests was
//!   under way (its user disabled, say) is not written back to life;
//! - the signed-in user's id is a column, so that disabling a user or
//!   changing their role or password ends all their sessions in one
//!   statement ([`end_for_user`]).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use tower_sessions::cookie::time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

/// The key of the signed-in user's facts in a session's record.
pub const AUTH_KEY: &str = "auth";

/// Who a session belongs to and since when. Times are Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionAuth {
    pub user: i64,
    pub signed_in_at: i64,
    /// The last request (or live-feed check) seen, to the minute: what the
    /// idle timeout counts from.
    pub seen_at: i64,
}

/// The store's key for a session id.
pub fn id_hash(id: &Id) -> Vec<u8> {
    Sha256::digest(id.0.to_le_bytes()).to_vec()
}

#[derive(Debug, Clone)]
pub struct PgSessionStore {
    pool: PgPool,
    /// A session unused this long is gone, whatever its record says.
    idle: Duration,
}

impl PgSessionStore {
    pub fn new(pool: PgPool, idle: Duration) -> Self {
        Self { pool, idle }
    }

    fn idle_secs(&self) -> f64 {
        self.idle.as_secs_f64()
    }
}

fn backend(err: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(err.to_string())
}

fn user_of(record: &Record) -> Option<i64> {
    record
        .data
        .get(AUTH_KEY)
        .and_then(|v| serde_json::from_value::<SessionAuth>(v.clone()).ok())
        .map(|auth| auth.user)
}

fn to_chrono(at: OffsetDateTime) -> DateTime<Utc> {
    let nanos = at.unix_timestamp_nanos();
    DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
}

fn to_offset(at: DateTime<Utc>) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.timestamp_nanos_opt().unwrap_or(0)))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[async_trait]
impl SessionStore for PgSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = serde_json::to_value(&record.data).map_err(backend)?;
        // 128 random bits collide never in practice; a new id settles it if
        // they ever do.
        for _ in 0..4 {
            let inserted = sqlx::query(
                "INSERT INTO sessions (id_hash, user_id, data, expires_at)
                 VALUES ($1, $2, $3, LEAST($4, now() + make_interval(secs => $5)))
                 ON CONFLICT (id_hash) DO NOTHING",
            )
            .bind(id_hash(&record.id))
            .bind(user_of(record))
            .bind(&data)
            .bind(to_chrono(record.expiry_date))
            .bind(self.idle_secs())
            .execute(&self.pool)
            .await
            .map_err(backend)?
            .rows_affected();
            if inserted == 1 {
                return Ok(());
            }
            record.id = Id::default();
        }
        Err(backend("could not find a free session id"))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_value(&record.data).map_err(backend)?;
        sqlx::query(
            "UPDATE sessions SET user_id = $2, data = $3,
                 expires_at = LEAST($4, now() + make_interval(secs => $5))
             WHERE id_hash = $1 AND expires_at > now()",
        )
        .bind(id_hash(&record.id))
        .bind(user_of(record))
        .bind(&data)
        .bind(to_chrono(record.expiry_date))
        .bind(self.idle_secs())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let row: Option<(serde_json::Value, DateTime<Utc>)> = sqlx::query_as(
            "SELECT data, expires_at FROM sessions WHERE id_hash = $1 AND expires_at > now()",
        )
        .bind(id_hash(id))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let Some((data, expires_at)) = row else {
            return Ok(None);
        };
        let data = serde_json::from_value(data)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date: to_offset(expires_at),
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash(id))
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// Ends every session of `user`, in `tx`. The caller notifies
/// ([`super::revoke`]) in the same transaction, which closes their live
/// feeds.
pub async fn end_for_user(tx: &mut sqlx::PgConnection, user: i64) -> sqlx::Result<u64> {
    Ok(sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user)
        .execute(tx)
        .await?
        .rows_affected())
}

/// Ends every session of `user` but one (the one that changed the password).
pub async fn end_others(pool: &PgPool, user: i64, keep: &[u8]) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2")
            .bind(user)
            .bind(keep)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// Whether a session still exists, and marks it seen now (a live feed
/// open on a screen is activity). Returns its user, or `None` when it has
/// ended.
pub async fn touch(
    pool: &PgPool,
    id_hash: &[u8],
    idle: Duration,
    absolute_end: DateTime<Utc>,
) -> sqlx::Result<Option<i64>> {
    let now = Utc::now().timestamp_millis();
    let user: Option<(Option<i64>,)> = sqlx::query_as(
        "UPDATE sessions
         SET expires_at = LEAST($3, now() + make_interval(secs => $2)),
             data = jsonb_set(data, '{auth,seen_at}', to_jsonb($4::bigint))
         WHERE id_hash = $1 AND expires_at > now()
         RETURNING user_id",
    )
    .bind(id_hash)
    .bind(idle.as_secs_f64())
    .bind(absolute_end)
    .bind(now)
    .fetch_optional(pool)
    .await?;
    Ok(user.and_then(|(user,)| user))
}

/// Deletes sessions past their end; run now and then.
pub async fn delete_expired(pool: &PgPool) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM sessions WHERE expires_at <= now()")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// Open sessions per user.
pub async fn count_by_user(pool: &PgPool) -> sqlx::Result<Vec<(i64, i64)>> {
    sqlx::query_as(
        "SELECT user_id, count(*) FROM sessions
         WHERE expires_at > now() AND user_id IS NOT NULL GROUP BY user_id",
    )
    .fetch_all(pool)
    .await
}
