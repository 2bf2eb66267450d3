//! The only SQL on `users`, and what changing a user means: every change
//! of role, password or state ends their sessions and closes their live
//! feeds, in the transaction that makes it.

use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString as _};
use sqlx::{PgConnection, PgPool};
use trackside_wire::{Role, UserInfo};

use super::{revoke, sessions};

/// Longest user name.
pub const MAX_NAME: usize = 64;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub password_hash: String,
    pub password_change_required: bool,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

impl User {
    pub fn role(&self) -> Role {
        // The table's CHECK allows only people's roles.
        Role::parse(&self.role).unwrap_or(Role::Viewer)
    }
}

/// A user name: what people type to sign in and what acknowledgements show.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | ' ' | '\''))
        && name.trim() == name;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a user name is 1 to {MAX_NAME} letters, digits, spaces, `.`, `_`, `-` or `'`, \
             without spaces at either end"
        ))
    }
}

pub fn check_role(role: Role) -> Result<(), String> {
    if role.for_people() {
        Ok(())
    } else {
        Err("a person is a viewer, an operator or an admin (`metrics` is for API tokens)".into())
    }
}

/// A password nobody chose: 20 letters and digits, about 119 bits.
pub fn one_time_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 20)
}

const COLUMNS: &str =
    "id, name, role, password_hash, password_change_required, created_at, disabled_at";

pub async fn by_name(pool: &PgPool, name: &str) -> sqlx::Result<Option<User>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE lower(name) = lower($1)"
    )))
    .bind(name)
    .fetch_optional(pool)
    .await
}

pub async fn by_id(pool: &PgPool, id: i64) -> sqlx::Result<Option<User>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Why a user could not be added.
#[derive(Debug)]
pub enum AddError {
    Invalid(String),
    Exists,
    Database(sqlx::Error),
}

/// Adds a user with this password hash. `chosen`: the password is the
/// user's own (read from their terminal), not one to change at first
/// sign-in.
pub async fn add(
    pool: &PgPool,
    name: &str,
    role: Role,
    hash: &str,
    chosen: bool,
) -> Result<User, AddError> {
    check_name(name).map_err(AddError::Invalid)?;
    check_role(role).map_err(AddError::Invalid)?;
    let added = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (name, role, password_hash, password_change_required)
         VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
    )))
    .bind(name)
    .bind(role.as_str())
    .bind(hash)
    .bind(!chosen)
    .fetch_one(pool)
    .await;
    match added {
        Ok(user) => Ok(user),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Err(AddError::Exists),
        Err(err) => Err(AddError::Database(err)),
    }
}

/// The demo's operator: made, or given this password (and the operator
/// role, enabled), without ending its sessions: a browser signed in to the
/// demo stays signed in across restarts.
pub async fn ensure_demo_operator(pool: &PgPool, name: &str, hash: &str) -> sqlx::Result<User> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (name, role, password_hash, password_change_required)
         VALUES ($1, 'operator', $2, false)
         ON CONFLICT (lower(name)) DO UPDATE
         SET password_hash = EXCLUDED.password_hash, role = 'operator',
             password_change_required = false, disabled_at = NULL
         RETURNING {COLUMNS}"
    )))
    .bind(name)
    .bind(hash)
    .fetch_one(pool)
    .await
}

/// What to change about a user.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// A new password hash, and whether its owner chose it.
    pub password: Option<(String, bool)>,
}

/// Applies `change`, ends the user's sessions and notifies every instance,
/// all in one transaction. Refuses to leave no enabled admin.
pub async fn change(pool: &PgPool, user: &User, change: &Change) -> Result<User, ChangeError> {
    if let Some(role) = change.role {
        check_role(role).map_err(ChangeError::Invalid)?;
    }
    let mut tx = pool.begin().await?;
    // One admin change at a time, so two admins cannot demote each other
    // past the last one.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('trackside users'))")
        .execute(&mut *tx)
        .await?;
    let updated: User = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE users SET
             role = COALESCE($2, role),
             disabled_at = CASE WHEN $3::boolean IS NULL THEN disabled_at
                                WHEN $3 THEN COALESCE(disabled_at, now()) ELSE NULL END,
             password_hash = COALESCE($4, password_hash),
             password_change_required = COALESCE($5, password_change_required)
         WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(user.id)
    .bind(change.role.map(Role::as_str))
    .bind(change.disabled)
    .bind(change.password.as_ref().map(|(hash, _)| hash.as_str()))
    .bind(change.password.as_ref().map(|(_, chosen)| !chosen))
    .fetch_one(&mut *tx)
    .await?;
    if enabled_admins(&mut tx).await? == 0 {
        return Err(ChangeError::LastAdmin);
    }
    sessions::end_for_user(&mut tx, user.id).await?;
    revoke::notify(&mut tx, revoke::Revoked::User(user.id)).await?;
    tx.commit().await?;
    Ok(updated)
}

#[derive(Debug)]
pub enum ChangeError {
    Invalid(String),
    /// The change would leave no enabled admin.
    LastAdmin,
    Database(sqlx::Error),
}

impl From<sqlx::Error> for ChangeError {
    fn from(err: sqlx::Error) -> Self {
        Self::Database(err)
    }
}

/// Sets the user's own new password, keeping the session that set it.
pub async fn set_own_password(
    pool: &PgPool,
    user: i64,
    hash: &str,
    keep_session: &[u8],
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE users SET password_hash = $2, password_change_required = false WHERE id = $1",
    )
    .bind(user)
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2")
        .bind(user)
        .bind(keep_session)
        .execute(&mut *tx)
        .await?;
    revoke::notify(
        &mut tx,
        revoke::Revoked::UserExcept(user, keep_session.to_vec()),
    )
    .await?;
    tx.commit().await
}

async fn enabled_admins(tx: &mut PgConnection) -> sqlx::Result<i64> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL")
            .fetch_one(tx)
            .await?;
    Ok(n)
}

pub async fn any_admin(pool: &PgPool) -> sqlx::Result<bool> {
    let mut conn = pool.acquire().await?;
    Ok(enabled_admins(&mut conn).await? > 0)
}

/// A row of [`list`].
#[derive(sqlx::FromRow)]
struct Listed {
    name: String,
    role: String,
    password_change_required: bool,
    created_at: DateTime<Utc>,
    disabled_at: Option<DateTime<Utc>>,
    last_sign_in_at: Option<DateTime<Utc>>,
    sessions: i64,
}

/// Every user, for the admin page and `trackside user list`.
pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<UserInfo>> {
    let rows: Vec<Listed> = sqlx::query_as(
        "SELECT u.name, u.role, u.password_change_required, u.created_at, u.disabled_at,
                (SELECT max(a.at) FROM audit_log a
                  WHERE a.action = 'signin' AND a.actor = u.name) AS last_sign_in_at,
                (SELECT count(*) FROM sessions s
                  WHERE s.user_id = u.id AND s.expires_at > now()) AS sessions
         FROM users u ORDER BY lower(u.name)",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| UserInfo {
            role: Role::parse(&row.role).unwrap_or(Role::Viewer),
            disabled: row.disabled_at.is_some(),
            password_change_required: row.password_change_required,
            created_at: row.created_at.timestamp_millis(),
            last_sign_in_at: row.last_sign_in_at.map(|t| t.timestamp_millis()),
            sessions: row.sessions,
            name: row.name,
        })
        .collect())
}

pub async fn info(pool: &PgPool, name: &str) -> sqlx::Result<Option<UserInfo>> {
    Ok(list(pool)
        .await?
        .into_iter()
        .find(|u| u.name.eq_ignore_ascii_case(name)))
}
