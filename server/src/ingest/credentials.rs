//! Gateway credentials and the broker's authentication check.
//!
//! A gateway connects with client id = username = its gateway id and the
//! password it was given (`trackside gateway add`). Passwords are stored as
//! Argon2id hashes. rumqttd calls the check once per CONNECT from its own
//! listener thread and runtime, so the check only passes the request over a
//! channel to a task on the server's runtime, which owns the database pool
//! and does the hashing on a blocking thread.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use anyhow::Context as _;
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString as _};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::decode::valid_gateway_id;
use crate::metrics::Metrics;

/// Adds (or replaces) a gateway's password and returns it. Without one, a
/// random 24-character password is made: about 143 bits.
pub async fn add(pool: &PgPool, gateway: &str, password: Option<String>) -> anyhow::Result<String> {
    anyhow::ensure!(
        valid_gateway_id(gateway),
        "gateway id must be 1 to 64 of letters, digits, `_`, `-`, `.`"
    );
    let password = password.unwrap_or_else(|| Alphanumeric.sample_string(&mut rand::rng(), 24));
    anyhow::ensure!(
        password.len() >= 12,
        "a gateway password needs at least 12 characters"
    );
    let to_hash = password.clone();
    let hash = tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(to_hash.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|err| anyhow::anyhow!("hashing the password: {err}"))
    })
    .await??;
    sqlx::query(
        "INSERT INTO gateway_credentials (gateway_id, password_hash) VALUES ($1, $2)
         ON CONFLICT (gateway_id) DO UPDATE
         SET password_hash = EXCLUDED.password_hash, created_at = now(), revoked_at = NULL",
    )
    .bind(gateway)
    .bind(hash)
    .execute(pool)
    .await
    .context("storing the credentials")?;
    Ok(password)
}

/// Revokes a gateway's credentials; its next CONNECT is refused. False when
/// the gateway had none, or they were already revoked.
pub async fn revoke(pool: &PgPool, gateway: &str) -> anyhow::Result<bool> {
    let revoked = sqlx::query(
        "UPDATE gateway_credentials SET revoked_at = now()
         WHERE gateway_id = $1 AND revoked_at IS NULL",
    )
    .bind(gateway)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(revoked == 1)
}

#[derive(Debug, sqlx::FromRow)]
pub struct Credential {
    pub gateway_id: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn list(pool: &PgPool) -> anyhow::Result<Vec<Credential>> {
    Ok(sqlx::query_as(
        "SELECT gateway_id, created_at, revoked_at FROM gateway_credentials ORDER BY gateway_id",
    )
    .fetch_all(pool)
    .await?)
}

/// Why a CONNECT was refused, for the log (never the password).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    IdentityMismatch,
    UnknownOrRevoked,
    WrongPassword,
    Unavailable,
}

/// The check itself: client id and username must both be the gateway id,
/// which must hold unrevoked credentials matching the password.
pub async fn verify(
    pool: &PgPool,
    client_id: &str,
    username: &str,
    password: &str,
) -> Result<(), Refusal> {
    if client_id != username || !valid_gateway_id(username) {
        return Err(Refusal::IdentityMismatch);
    }
    let stored: Option<(String,)> = sqlx::query_as(
        "SELECT password_hash FROM gateway_credentials WHERE gateway_id = $1 AND revoked_at IS NULL",
    )
    .bind(username)
    .fetch_optional(pool)
    .await
    .map_err(|err| {
        tracing::error!("cannot check gateway credentials: {err}");
        Refusal::Unavailable
    })?;
    let Some((hash,)) = stored else {
        return Err(Refusal::UnknownOrRevoked);
    };
    let password = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .map_err(|_| Refusal::Unavailable)?;
    if matches {
        Ok(())
    } else {
        Err(Refusal::WrongPassword)
    }
}

struct Check {
    client_id: String,
    username: String,
    password: String,
    reply: oneshot::Sender<bool>,
}

/// The sending half handed to rumqttd's auth hook.
#[derive(Clone)]
pub struct Checker {
    requests: mpsc::Sender<Check>,
    metrics: Arc<Metrics>,
}

impl Checker {
    pub async fn check(&self, client_id: String, username: String, password: String) -> bool {
        let (reply, answer) = oneshot::channel();
        let check = Check {
            client_id,
            username,
            password,
            reply,
        };
        // A full queue (a reconnect storm) or a stopped server refuses: the
        // gateway retries, which is better than an unbounded backlog.
        if self.requests.try_send(check).is_err() {
            self.metrics.mqtt_refused_connects.fetch_add(1, Relaxed);
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

/// CONNECT checks waiting for the task that answers them; a full queue
/// refuses the connection.
pub const CHECK_QUEUE: usize = 256;

/// Starts the task that answers the broker's checks on this runtime.
pub fn spawn_checker(pool: PgPool, metrics: Arc<Metrics>) -> Checker {
    let (requests, mut incoming) = mpsc::channel::<Check>(CHECK_QUEUE);
    let checker = Checker {
        requests,
        metrics: metrics.clone(),
    };
    tokio::spawn(async move {
        while let Some(check) = incoming.recv().await {
            let pool = pool.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let verdict =
                    verify(&pool, &check.client_id, &check.username, &check.password).await;
                match &verdict {
                    Ok(()) => {
                        tracing::info!(gateway = %check.username, "gateway authenticated");
                    }
                    Err(refusal) => {
                        metrics.mqtt_refused_connects.fetch_add(1, Relaxed);
                        tracing::warn!(
                            client_id = %check.client_id,
                            username = %check.username,
                            ?refusal,
                            "MQTT CONNECT refused"
                        );
                    }
                }
                let _ = check.reply.send(verdict.is_ok());
            });
        }
    });
    checker
}
