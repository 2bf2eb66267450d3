//! Gateway credentials and the broker's authentication check.
//!
//! A gateway connects with client id = username = its gateway id and the
//! password it was given (`trackside gateway add`). Passwords are stored as
//! Argon2id hashes. rumqttd calls the check once per CONNECT from its own
//! listener thread and runtime, so the check only passes the request over a
//! channel to a task on the server's runtime, which owns the database pool
//! and does the hashing on a blocking thread.
//!
//! Each check costs an Argon2id verification (19 MiB, tens of ms), so a
//! storm of CONNECTs with wrong passwords must not become a memory or CPU
//! flood: at most [`VERIFYING`] run at once, on threads of their own
//! ([`Verifier`]), the rest wait (at most [`CHECK_QUEUE`], then are
//! refused; one not answered within [`CHECK_DEADLINE`] is refused and
//! skipped where it waits), an unknown or revoked id is
//! verified against a dummy hash so it takes the same time as a wrong
//! password (no probing for which ids exist), and a client id that failed
//! [`FAILURES`] times within [`THROTTLE_WINDOW`] is refused without
//! verifying until the window passes. rumqttd's hook is not given the
//! client's address, so throttling by address is left to the firewall.

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
    anyhow::ensure!(
        !gateway.starts_with(RESERVED_PREFIX),
        "gateway ids starting with `{RESERVED_PREFIX}` are reserved for the server's own link"
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

/// Client ids the server keeps for itself (its link to the broker).
pub const RESERVED_PREFIX: &str = "trackside-ingest";

/// Argon2 verifications at once: each holds 19 MiB.
pub const VERIFYING: usize = 2;
/// Failures of one client id that start its throttling.
pub const FAILURES: u32 = 5;
/// How long failures count, and how long a throttled id is refused.
pub const THROTTLE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// Client ids whose failures are remembered; past this, the oldest go.
const THROTTLED_IDS: usize = 10_000;

/// Why a CONNECT was refused, for the log (never the password).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    IdentityMismatch,
    Throttled,
    UnknownOrRevoked,
    WrongPassword,
    Unavailable,
}

/// The check itself: client id and username must both be the gateway id,
/// which must hold unrevoked credentials matching the password.
pub async fn verify(
    pool: &PgPool,
    verifier: &Verifier,
    client_id: &str,
    username: &str,
    password: &str,
) -> Result<(), Refusal> {
    if client_id != username || !valid_gateway_id(username) || username.starts_with(RESERVED_PREFIX)
    {
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
    // An unknown id is verified too, against a hash nobody's password
    // matches, so that its refusal takes as long as a wrong password's.
    let known = stored.is_some();
    let hash = match stored {
        Some((hash,)) => hash,
        None => DUMMY_HASH.clone(),
    };
    let matches = verifier.verify(hash, password.to_owned()).await?;
    match (known, matches) {
        (true, true) => Ok(()),
        (true, false) => Err(Refusal::WrongPassword),
        (false, _) => Err(Refusal::UnknownOrRevoked),
    }
}

/// Argon2 verifications on [`VERIFYING`] threads of their own. Not the
/// runtime's blocking pool: there each verification may land on another
/// thread, and the allocator keeps up to 19 MiB in every thread's arena it
/// touched (measured: +443 MiB under 2,000 bad CONNECTs); with two
/// threads of its own, at most two arenas ever hold one.
#[derive(Clone)]
pub struct Verifier {
    jobs: std::sync::mpsc::SyncSender<Job>,
}

/// A verification: the hash, the password, when it was asked for, and
/// where the answer goes.
type Job = (String, String, std::time::Instant, oneshot::Sender<bool>);

impl Verifier {
    /// Starts the threads; they end when the last `Verifier` is dropped.
    pub fn start() -> Self {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(CHECK_QUEUE);
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for n in 0..VERIFYING {
            let queue = queue.clone();
            let started = std::thread::Builder::new()
                .name(format!("mqtt-verify-{n}"))
                .spawn(move || {
                    loop {
                        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok((hash, password, asked, reply)) = job else {
                            return;
                        };
                        if reply.is_closed() || asked.elapsed() > CHECK_DEADLINE {
                            // Waited too long, or given up on: no Argon2.
                            continue;
                        }
                        let matches = Argon2::default()
                            .verify_password(password.as_bytes(), hash.as_str())
                            .is_ok();
                        let _ = reply.send(matches);
                    }
                });
            if let Err(err) = started {
                tracing::error!("cannot start a gateway password thread: {err}");
            }
        }
        Self { jobs }
    }

    async fn verify(&self, hash: String, password: String) -> Result<bool, Refusal> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send((hash, password, std::time::Instant::now(), reply))
            .map_err(|_| Refusal::Unavailable)?;
        answer.await.map_err(|_| Refusal::Unavailable)
    }
}

/// The hash unknown ids are verified against: of a random password, with
/// the same parameters as every stored one.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let password = Alphanumeric.sample_string(&mut rand::rng(), 32);
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .unwrap_or_default()
});

/// Recent failures per client id.
#[derive(Default)]
struct Throttle {
    failures: std::collections::HashMap<String, (u32, std::time::Instant)>,
}

impl Throttle {
    fn throttled(&mut self, client_id: &str, now: std::time::Instant) -> bool {
        match self.failures.get(client_id) {
            Some(&(count, since)) if now.duration_since(since) < THROTTLE_WINDOW => {
                count >= FAILURES
            }
            Some(_) => {
                self.failures.remove(client_id);
                false
            }
            None => false,
        }
    }

    fn failed(&mut self, client_id: &str, now: std::time::Instant) {
        if !self.failures.contains_key(client_id) && self.failures.len() >= THROTTLED_IDS {
            self.failures
                .retain(|_, (_, since)| now.duration_since(*since) < THROTTLE_WINDOW);
            if self.failures.len() >= THROTTLED_IDS {
                // Still full of live entries: forget the oldest.
                if let Some(oldest) = self
                    .failures
                    .iter()
                    .min_by_key(|(_, (_, since))| *since)
                    .map(|(id, _)| id.clone())
                {
                    self.failures.remove(&oldest);
                }
            }
        }
        let entry = self
            .failures
            .entry(client_id.to_owned())
            .or_insert((0, now));
        if now.duration_since(entry.1) >= THROTTLE_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    fn succeeded(&mut self, client_id: &str) {
        self.failures.remove(client_id);
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

/// How long a check may wait for a verification thread; one that waited
/// longer is refused without one (rumqttd waits for it without a deadline,
/// so a storm's backlog would otherwise hold up every CONNECT after it).
pub const CHECK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

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
    let verifier = Verifier::start();
    let throttle = Arc::new(std::sync::Mutex::new(Throttle::default()));
    tokio::spawn(async move {
        while let Some(check) = incoming.recv().await {
            let pool = pool.clone();
            let metrics = metrics.clone();
            let verifier = verifier.clone();
            let throttle = throttle.clone();
            tokio::spawn(async move {
                if check.reply.is_closed() {
                    return;
                }
                let lock = || throttle.lock().unwrap_or_else(|e| e.into_inner());
                let verdict = if lock().throttled(&check.client_id, std::time::Instant::now()) {
                    metrics.mqtt_throttled_connects.fetch_add(1, Relaxed);
                    Err(Refusal::Throttled)
                } else {
                    verify(
                        &pool,
                        &verifier,
                        &check.client_id,
                        &check.username,
                        &check.password,
                    )
                    .await
                };
                match &verdict {
                    Ok(()) => {
                        lock().succeeded(&check.client_id);
                        tracing::info!(gateway = %check.username, "gateway authenticated");
                    }
                    Err(refusal) => {
                        // Only a real check that failed counts towards
                        // throttling: not one refused unchecked.
                        if !matches!(refusal, Refusal::Throttled | Refusal::Unavailable) {
                            lock().failed(&check.client_id, std::time::Instant::now());
                        }
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_client_id_is_throttled_after_its_failures_until_the_window_passes() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        for _ in 0..FAILURES {
            assert!(!throttle.throttled("gw1", start));
            throttle.failed("gw1", start);
        }
        assert!(throttle.throttled("gw1", start));
        assert!(!throttle.throttled("gw2", start));
        assert!(!throttle.throttled("gw1", start + THROTTLE_WINDOW + Duration::from_secs(1)));
    }

    #[test]
    fn the_dummy_hash_is_a_real_argon2_hash() {
        assert!(DUMMY_HASH.starts_with("$argon2id$"), "{}", *DUMMY_HASH);
    }
}
