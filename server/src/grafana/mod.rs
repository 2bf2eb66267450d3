//! Grafana on the same data: a read-only PostgreSQL role for dashboards.
//!
//! Analysts already have Grafana; a second copy of the readings would
//! drift and double the disk. So Grafana's PostgreSQL data source reads
//! the server's own database, through a role of its own that may use the
//! `grafana` schema's views (channels, readings and every rollup tier;
//! migration 20261207710000, docs/grafana.md) and nothing else: it holds no
//! grant on any table, so users, sessions, tokens, gateway credentials and
//! the audit trail stay out of its reach, and its sessions are read-only
//! with a statement timeout and a connection limit, so a heavy dashboard
//! cannot hold the server's database for long or take all its connections.
//!
//! The password is turned into a SCRAM-SHA-256 verifier here, as `psql`'s
//! `\password` does, so that it never reaches PostgreSQL (or a statement
//! log there) in clear.

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sqlx::{ConnectOptions as _, Connection as _, PgPool};

/// The role's name unless told otherwise.
pub const DEFAULT_ROLE: &str = "trackside_grafana";
/// Where the password comes from when it is not prompted for.
pub const PASSWORD_ENV: &str = "TRACKSIDE_READER_PASSWORD";
/// A dashboard's query is cut off after this long.
pub const STATEMENT_TIMEOUT: &str = "30s";
/// At most this many sessions of the role at once (Grafana pools its own).
pub const CONNECTION_LIMIT: u32 = 10;
/// PBKDF2 rounds of the verifier: PostgreSQL's own default.
const SCRAM_ITERATIONS: u32 = 4096;

/// Whether the role was made or already there (its password and grants are
/// set again either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
}

/// A role name PostgreSQL takes unquoted: lower-case letters, digits and
/// `_`, starting with a letter or `_`, at most 63 bytes.
pub fn check_role_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !first_ok
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        || name.starts_with("pg_")
    {
        return Err(format!(
            "role name {name:?}: use 1 to 63 lower-case letters, digits and _, starting with a \
             letter (not pg_)"
        ));
    }
    Ok(())
}

/// PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802, 7677).
pub fn scram_verifier(password: &str) -> String {
    let salt: [u8; 16] = rand::random();
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, SCRAM_ITERATIONS, &mut salted);
    let hmac = |text: &[u8]| {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&salted).expect("HMAC takes a key of any length");
        mac.update(text);
        mac.finalize().into_bytes()
    };
    let stored_key = Sha256::digest(hmac(b"Client Key"));
    let server_key = hmac(b"Server Key");
    format!(
        "SCRAM-SHA-256${SCRAM_ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// Makes (or updates) the read-only role `name` with this password: it may
/// connect to this database and read the `grafana` views, including views
/// made again later (the TimescaleDB set-up replaces them), and nothing
/// else. The connecting role needs CREATEROLE.
pub async fn ensure_reader_role(
    pool: &PgPool,
    name: &str,
    password: &str,
) -> anyhow::Result<Outcome> {
    check_role_name(name).map_err(anyhow::Error::msg)?;
    let verifier = scram_verifier(password);
    // A connection of its own whose statements are not logged: the
    // verifier is no password, but it is what an attacker would guess at.
    let options = (*pool.connect_options())
        .clone()
        .log_statements(log::LevelFilter::Off);
    let mut conn = options
        .connect()
        .await
        .context("connecting to PostgreSQL")?;
    let mut tx = conn.begin().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut *tx)
        .await?;
    let database = quote_ident(&database);
    // The verifier is base64 and `$`, `:`: no quote can occur in it.
    let attributes = format!(
        "LOGIN PASSWORD '{verifier}' NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT \
         NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {CONNECTION_LIMIT}"
    );
    let statements = [
        if exists {
            format!("ALTER ROLE {name} WITH {attributes}")
        } else {
            format!("CREATE ROLE {name} WITH {attributes}")
        },
        format!("ALTER ROLE {name} IN DATABASE {database} SET default_transaction_read_only = on"),
        format!(
            "ALTER ROLE {name} IN DATABASE {database} SET statement_timeout = '{STATEMENT_TIMEOUT}'"
        ),
        format!("ALTER ROLE {name} IN DATABASE {database} SET search_path = grafana"),
        format!("GRANT CONNECT ON DATABASE {database} TO {name}"),
        format!("GRANT USAGE ON SCHEMA grafana TO {name}"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA grafana TO {name}"),
        format!("ALTER DEFAULT PRIVILEGES IN SCHEMA grafana GRANT SELECT ON TABLES TO {name}"),
    ];
    for statement in &statements {
        // Audited: the role name is checked to be a plain identifier, the
        // database's is quoted, the verifier holds no quote.
        sqlx::query(sqlx::AssertSqlSafe(statement.as_str()))
            .execute(&mut *tx)
            .await
            .map_err(|e| refusal(e, statement.split(" WITH ").next().unwrap_or_default()))?;
    }
    tx.commit().await?;
    Ok(if exists {
        Outcome::Updated
    } else {
        Outcome::Created
    })
}

/// A refused statement, named without its password, with what to do.
fn refusal(err: sqlx::Error, what: &str) -> anyhow::Error {
    let denied = err
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "42501");
    let hint = if denied {
        "; the database URL's role needs CREATEROLE (or run this as the database's owner with \
         CREATEROLE, e.g. --database-url postgres://postgres@.../trackside)"
    } else {
        ""
    };
    anyhow::Error::new(err).context(format!("{what} failed{hint}"))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Checks a password for the role, as the app checks a user's.
pub fn check_password(password: &str) -> anyhow::Result<()> {
    crate::auth::password::check_new(password)
        .map_err(anyhow::Error::msg)
        .context("the reader role's password")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_plain_identifiers() {
        for good in ["trackside_grafana", "_r", "grafana2"] {
            assert_eq!(check_role_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Grafana",
            "g-r",
            "g r",
            "x\";drop",
            "pg_reader",
            "1abc",
            &"a".repeat(64),
        ] {
            assert!(check_role_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_verifier_has_postgresql_s_form_and_a_fresh_salt() {
        let a = scram_verifier("correct horse battery");
        let b = scram_verifier("correct horse battery");
        assert_ne!(a, b, "salted");
        let rest = a.strip_prefix("SCRAM-SHA-256$4096:").expect(&a);
        let (salt, keys) = rest.split_once('$').expect(&a);
        let (stored, server) = keys.split_once(':').expect(&a);
        assert_eq!(STANDARD.decode(salt).unwrap().len(), 16);
        assert_eq!(STANDARD.decode(stored).unwrap().len(), 32);
        assert_eq!(STANDARD.decode(server).unwrap().len(), 32);
        assert!(!a.contains('\''));
    }
}
