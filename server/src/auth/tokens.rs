//! API tokens for scripts, and one-time sign-in links.
//!
//! Both are 256 random bits shown once and stored as their SHA-256: a
//! secret that long needs no slow hash, and a lookup by hash is one index
//! probe per request.

use chrono::{DateTime, TimeDelta, Utc};
use rand::distr::{Alphanumeric, SampleString as _};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use trackside_wire::{Role, TokenInfo};

use super::revoke;

/// What every API token starts with, so a leaked one is recognisable
/// (secret scanners, log filters).
pub const PREFIX: &str = "tsk_";
/// Longest life of a token.
pub const MAX_DAYS: u32 = 366;
/// Longest token name.
pub const MAX_NAME: usize = 64;

fn secret() -> String {
    // 43 letters and digits: about 256 bits.
    Alphanumeric.sample_string(&mut rand::rng(), 43)
}

pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: i64,
    user_name: String,
    name: String,
    role: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

impl From<Row> for TokenInfo {
    fn from(row: Row) -> Self {
        TokenInfo {
            id: row.id,
            user: row.user_name,
            name: row.name,
            role: Role::parse(&row.role).unwrap_or(Role::Metrics),
            created_at: row.created_at.timestamp_millis(),
            expires_at: row.expires_at.timestamp_millis(),
            revoked_at: row.revoked_at.map(|t| t.timestamp_millis()),
            last_used_at: row.last_used_at.map(|t| t.timestamp_millis()),
        }
    }
}

const SELECT: &str = "SELECT t.id, u.name AS user_name, t.name, t.role, t.created_at,
        t.expires_at, t.revoked_at, t.last_used_at
     FROM api_tokens t JOIN users u ON u.id = t.user_id";

/// Issues a token for `user` with at most their role; the secret is
/// returned once and never stored.
pub async fn issue(
    pool: &PgPool,
    user: &super::users::User,
    name: &str,
    role: Role,
    days: u32,
) -> Result<(String, TokenInfo), String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(format!(
            "name the token after what uses it (1 to {MAX_NAME} characters), as in \"prometheus\""
        ));
    }
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(format!("days must be between 1 and {MAX_DAYS}"));
    }
    if user.disabled_at.is_some() {
        return Err(format!("{} is disabled", user.name));
    }
    if role > user.role() {
        return Err(format!(
            "a token has at most its user's role: {} is {}",
            user.name,
            user.role()
        ));
    }
    let token = format!("{PREFIX}{}", secret());
    let expires = Utc::now() + TimeDelta::days(i64::from(days));
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO api_tokens (user_id, name, role, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(user.id)
    .bind(name)
    .bind(role.as_str())
    .bind(hash(&token))
    .bind(expires)
    .fetch_one(pool)
    .await
    .map_err(|e| e.to_string())?;
    let info = get(pool, id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the token vanished")?;
    Ok((token, info))
}

pub async fn get(pool: &PgPool, id: i64) -> sqlx::Result<Option<TokenInfo>> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE t.id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(TokenInfo::from))
}

pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<TokenInfo>> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} ORDER BY t.revoked_at IS NOT NULL, t.expires_at < now(), lower(u.name), t.id"
    )))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(TokenInfo::from).collect())
}

/// Revokes a token and closes live feeds opened with it. False when there
/// is no such token or it was already revoked.
pub async fn revoke(pool: &PgPool, id: i64) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let revoked = sqlx::query(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if revoked == 1 {
        revoke::notify(&mut tx, revoke::Revoked::Token(id)).await?;
    }
    tx.commit().await?;
    Ok(revoked == 1)
}

/// A token that may be used: its id and role, and its user's.
#[derive(Debug, Clone)]
pub struct Valid {
    pub id: i64,
    pub role: Role,
    pub user: super::users::User,
}

/// Looks a presented token up; `None` when unknown, expired, revoked, or
/// its user disabled. Marks it used (at most once a minute).
pub async fn authenticate(pool: &PgPool, presented: &str) -> sqlx::Result<Option<Valid>> {
    if !presented.starts_with(PREFIX) || presented.len() > 128 {
        return Ok(None);
    }
    let row: Option<(i64, String, i64)> = sqlx::query_as(
        "UPDATE api_tokens SET last_used_at = now()
         WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()
           AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
         RETURNING id, role, user_id",
    )
    .bind(hash(presented))
    .fetch_optional(pool)
    .await?;
    let row = match row {
        Some(row) => Some(row),
        None => {
            sqlx::query_as(
                "SELECT id, role, user_id FROM api_tokens
                 WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()",
            )
            .bind(hash(presented))
            .fetch_optional(pool)
            .await?
        }
    };
    let Some((id, role, user)) = row else {
        return Ok(None);
    };
    let Some(user) = super::users::by_id(pool, user).await? else {
        return Ok(None);
    };
    if user.disabled_at.is_some() {
        return Ok(None);
    }
    let role = Role::parse(&role).unwrap_or(Role::Metrics).min(user.role());
    Ok(Some(Valid { id, role, user }))
}

/// Whether a token (by id) is neither revoked nor expired.
pub async fn still_valid(pool: &PgPool, id: i64) -> sqlx::Result<bool> {
    let (valid,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM api_tokens
                        WHERE id = $1 AND revoked_at IS NULL AND expires_at > now())",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    Ok(valid)
}

/// How long a one-time sign-in link is valid.
pub const LINK_LIFETIME: TimeDelta = TimeDelta::minutes(15);

/// A one-time sign-in link's token for `user`.
pub async fn issue_link(pool: &PgPool, user: i64) -> sqlx::Result<String> {
    let token = secret();
    sqlx::query("INSERT INTO signin_links (token_hash, user_id, expires_at) VALUES ($1, $2, $3)")
        .bind(hash(&token))
        .bind(user)
        .bind(Utc::now() + LINK_LIFETIME)
        .execute(pool)
        .await?;
    Ok(token)
}

/// Uses a link: its user, if it was valid and unused (it is used now).
pub async fn redeem_link(pool: &PgPool, token: &str) -> sqlx::Result<Option<i64>> {
    if token.len() > 128 {
        return Ok(None);
    }
    let user: Option<(i64,)> = sqlx::query_as(
        "UPDATE signin_links SET used_at = now()
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
         RETURNING user_id",
    )
    .bind(hash(token))
    .fetch_optional(pool)
    .await?;
    Ok(user.map(|(u,)| u))
}

/// Deletes links past their end; run now and then.
pub async fn delete_old_links(pool: &PgPool) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM signin_links WHERE expires_at < now() - interval '1 day'")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// Tokens that recently read `/metrics`, so that a scrape keeps working
/// while the database is unreachable: an outage is when its figures (the
/// spool filling, alarms waiting to be stored) matter most, and checking a
/// token needs the database. Only `/metrics` falls back on this, only for a
/// token the database confirmed within [`SCRAPE_GRACE`], and a check that
/// finds the token revoked forgets it at once. Nothing can be revoked
/// while the database is away, so the one window is a token revoked
/// moments before an outage: it may read counters until the grace ends.
#[derive(Debug, Default)]
pub struct RecentScrapes {
    seen: std::sync::Mutex<
        std::collections::HashMap<Vec<u8>, (super::Principal, std::time::Instant)>,
    >,
}

/// How long a confirmed scrape token stays good without the database.
pub const SCRAPE_GRACE: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// How long a scrape waits for the database to check its token.
pub const SCRAPE_CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Scrape tokens remembered at once (Prometheus servers, not users).
const MAX_SCRAPERS: usize = 32;

impl RecentScrapes {
    /// The database's answer for `presented`: remembered when valid,
    /// forgotten when not.
    pub fn confirmed(&self, presented: &str, principal: Option<&super::Principal>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let key = hash(presented);
        match principal {
            Some(principal) => {
                let now = std::time::Instant::now();
                seen.retain(|_, (_, at)| now.duration_since(*at) < SCRAPE_GRACE);
                if seen.len() < MAX_SCRAPERS || seen.contains_key(&key) {
                    seen.insert(key, (principal.clone(), now));
                }
            }
            None => {
                seen.remove(&key);
            }
        }
    }

    /// Who `presented` was when the database last confirmed it, if that
    /// was within the grace.
    pub fn recall(&self, presented: &str) -> Option<super::Principal> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (principal, at) = seen.get(&hash(presented))?;
        (at.elapsed() < SCRAPE_GRACE).then(|| principal.clone())
    }
}
