//! Ending sessions everywhere at once.
//!
//! A change that ends sessions (a user disabled, a role or password
//! changed, a token revoked, a sign-out) deletes rows and, in the same
//! transaction, sends a PostgreSQL `NOTIFY`. Every instance LISTENs and
//! passes the event to its open live feeds, which close if it concerns
//! them. The notification is delivered only if the transaction commits,
//! and reaches every instance on the database, not just this one.
//!
//! A notification can be missed (the listening connection was down at
//! that moment), so each live feed also checks its session once a minute
//! ([`super::watch`]): the bound on how long a missed one goes unnoticed.

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// The channel name of the notifications.
const CHANNEL: &str = "trackside_auth";

/// Events a live feed may wait for; a lagging one re-checks its session.
pub const QUEUE: usize = 256;

/// What ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// Every session and token of this user.
    User(i64),
    /// Every session of this user but one (the one that changed its own
    /// password).
    UserExcept(i64, Vec<u8>),
    /// One session, by the hash of its id (a sign-out).
    Session(Vec<u8>),
    /// One API token.
    Token(i64),
}

impl Revoked {
    fn encode(&self) -> String {
        match self {
            Revoked::User(id) => format!("user:{id}"),
            Revoked::UserExcept(id, keep) => format!("user-except:{id}:{}", hex(keep)),
            Revoked::Session(hash) => format!("session:{}", hex(hash)),
            Revoked::Token(id) => format!("token:{id}"),
        }
    }

    fn decode(text: &str) -> Option<Self> {
        let (kind, rest) = text.split_once(':')?;
        match kind {
            "user" => rest.parse().ok().map(Revoked::User),
            "user-except" => {
                let (id, keep) = rest.split_once(':')?;
                Some(Revoked::UserExcept(id.parse().ok()?, unhex(keep)?))
            }
            "session" => unhex(rest).map(Revoked::Session),
            "token" => rest.parse().ok().map(Revoked::Token),
            _ => None,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Sends `event` to every instance when `tx` commits.
pub async fn notify(tx: &mut sqlx::PgConnection, event: Revoked) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(event.encode())
        .execute(tx)
        .await
        .map(drop)
}

/// The events of this instance, for its live feeds.
#[derive(Clone)]
pub struct Revocations {
    tx: broadcast::Sender<Revoked>,
}

impl Revocations {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(QUEUE).0,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Revoked> {
        self.tx.subscribe()
    }

    /// Listens until `shutdown`, reconnecting after a failure.
    pub async fn listen(self, pool: sqlx::PgPool, shutdown: CancellationToken) {
        loop {
            let run = async {
                let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
                listener.listen(CHANNEL).await?;
                loop {
                    let notification = listener.recv().await?;
                    match Revoked::decode(notification.payload()) {
                        // No receiver (no live feed open) is not an error.
                        Some(event) => drop(self.tx.send(event)),
                        None => tracing::warn!(
                            payload = notification.payload(),
                            "ignoring an unreadable session notification"
                        ),
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                result = run => if let Err(err) = result {
                    tracing::warn!("session notifications interrupted ({err}); live feeds re-check their sessions each minute meanwhile");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            }
        }
    }
}

impl Default for Revocations {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_the_notification_text() {
        for event in [
            Revoked::User(42),
            Revoked::UserExcept(7, vec![0, 1, 254, 255]),
            Revoked::Session(vec![0xab; 32]),
            Revoked::Token(9),
        ] {
            assert_eq!(Revoked::decode(&event.encode()), Some(event));
        }
        assert_eq!(Revoked::decode("session:abc"), None);
        assert_eq!(Revoked::decode("nonsense"), None);
    }
}
