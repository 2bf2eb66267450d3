//! Argon2id password hashes, computed on blocking threads, a few at a time.
//!
//! Each hash takes about 19 MiB and tens of milliseconds of a core, on
//! purpose. A flood of sign-ins must not turn that into an exhausted
//! machine: [`Hasher`] runs at most [`HASHING`] at once, lets at most
//! [`WAITING`] wait, and refuses the rest at once (counted as
//! `trackside_signin_busy_total`).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;

/// Hashes computed at once: one per core of a small server.
const HASHING: usize = 2;
/// Requests that may wait for a hashing slot; more are refused.
const WAITING: usize = 32;
/// How long one waits before giving up.
const WAIT: Duration = Duration::from_secs(10);

/// Fewest characters of a password a person chooses.
pub const MIN_LENGTH: usize = 10;
/// Most characters: hashing cost grows with length.
pub const MAX_LENGTH: usize = 256;

/// The password rules, checked before anything is hashed or stored.
pub fn check_new(password: &str) -> Result<(), String> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(format!(
            "a password needs at least {MIN_LENGTH} characters (a phrase of a few words is easiest)"
        ));
    }
    if length > MAX_LENGTH {
        return Err(format!("a password has at most {MAX_LENGTH} characters"));
    }
    Ok(())
}

/// Why no hash could be computed.
#[derive(Debug)]
pub enum Busy {
    /// Too many sign-ins at once; try again in a moment.
    Overloaded,
    Failed(anyhow::Error),
}

#[derive(Clone)]
pub struct Hasher {
    hashing: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Hasher {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            hashing: Arc::new(Semaphore::new(HASHING)),
            waiting: Arc::new(Semaphore::new(WAITING)),
            metrics,
        }
    }

    /// A new hash of `password`.
    pub async fn hash(&self, password: &str) -> Result<String, Busy> {
        let password = password.to_owned();
        self.run(move || hash_now(&password)).await
    }

    /// Whether `password` matches `hash`. With no hash (an unknown user) a
    /// fixed hash is checked instead, so the answer takes as long and says
    /// nothing about which names exist.
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool, Busy> {
        let password = password.to_owned();
        self.run(move || {
            let known = hash.is_some();
            let hash = hash.unwrap_or_else(|| UNKNOWN_USER.to_owned());
            Ok(verify_now(&password, &hash) && known)
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, Busy> {
        let Ok(_queued) = self.waiting.try_acquire() else {
            self.metrics.signin_busy.fetch_add(1, Relaxed);
            return Err(Busy::Overloaded);
        };
        let permit = tokio::time::timeout(WAIT, self.hashing.acquire()).await;
        let Ok(Ok(_permit)) = permit else {
            self.metrics.signin_busy.fetch_add(1, Relaxed);
            return Err(Busy::Overloaded);
        };
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| Busy::Failed(e.into()))?
            .map_err(Busy::Failed)
    }
}

/// Hashes synchronously (the command line has no hasher to share).
pub fn hash_now(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| anyhow::anyhow!("hashing the password: {err}"))
}

pub fn verify_now(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// An Argon2id hash (default parameters) of a random password nobody
/// knows: what an unknown name is checked against.
const UNKNOWN_USER: &str = "$argon2id$v=19$m=19456,t=2,p=1$3G1y8Xj6xN3v7V5o0m3sVQ$Vx6m4Cq7Q5xWcZ7h0C0nGQwzVq9l0b3m0S3bqv0dQ2A";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_the_unknown_user_hash_parses() {
        let hash = hash_now("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_now("correct horse battery", &hash));
        assert!(!verify_now("correct horse batterY", &hash));
        // A hash that did not parse would fail fast, and a wrong name
        // would answer sooner than a wrong password.
        let started = std::time::Instant::now();
        assert!(!verify_now("guess", UNKNOWN_USER));
        let unknown = started.elapsed();
        let started = std::time::Instant::now();
        assert!(!verify_now("guess", &hash));
        let known = started.elapsed();
        assert!(unknown * 3 > known, "unknown {unknown:?}, known {known:?}");
    }

    #[test]
    fn new_passwords_have_a_length() {
        assert!(check_new("short").is_err());
        assert!(check_new("ten chars!").is_ok());
        assert!(check_new(&"x".repeat(257)).is_err());
    }
}
