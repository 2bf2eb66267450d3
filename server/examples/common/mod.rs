//! What the benchmarks share: child processes stopped when dropped, free
//! ports, waiting for a server to be ready, and a database made afresh.
//! Each benchmark uses part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process that is stopped when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        // SIGTERM first so Trackside stops its private PostgreSQL.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `{http}/readyz` answers 200, for at most a minute.
pub async fn wait_ready(http: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = reqwest::get(format!("{http}/readyz")).await
            && response.status().is_success()
        {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "trackside did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Drops and creates the database `name` (a benchmark's own).
pub async fn recreate_database(admin: &PgPool, name: &str) -> anyhow::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(admin)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin)
        .await?;
    Ok(())
}

/// The release `trackside` next to this benchmark's binary.
fn trackside_binary() -> anyhow::Result<std::path::PathBuf> {
    let binary = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("trackside"))
        .context("locating the trackside binary")?;
    ensure!(
        binary.exists(),
        "{} is missing: run `cargo build --release -p trackside` first",
        binary.display()
    );
    Ok(binary)
}

/// Starts the release `trackside` with the configuration file `config`.
pub fn start_trackside(config: &Path) -> anyhow::Result<Process> {
    let child = Command::new(trackside_binary()?)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting trackside")?;
    Ok(Process(child))
}

/// An admin's API token for the benchmark's requests, made the way an
/// operator would: `trackside user add` and `trackside token add` against
/// the running server's database.
pub fn admin_token(config: &Path) -> anyhow::Result<String> {
    let run = |args: &[&str], stdin: Option<&str>| -> anyhow::Result<String> {
        let mut child = Command::new(trackside_binary()?)
            .args(args)
            .env("TRACKSIDE_CONFIG", config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("running trackside")?;
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            std::io::Write::write_all(&mut input, text.as_bytes())?;
        }
        let output = child.wait_with_output()?;
        ensure!(
            output.status.success(),
            "`trackside {}` failed",
            args.join(" ")
        );
        Ok(String::from_utf8(output.stdout)?)
    };
    // A second run finds the user there already; that is fine.
    let _ = run(
        &[
            "user",
            "add",
            "bench",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some("bench password 1234\n"),
    );
    let printed = run(
        &[
            "token", "add", "--user", "bench", "--name", "bench", "--role", "admin", "--days", "1",
        ],
        None,
    )?;
    printed
        .lines()
        .find(|l| l.starts_with("tsk_"))
        .map(str::to_owned)
        .context("`trackside token add` printed no token")
}

/// A reqwest client that sends `token`.
pub fn client_with_token(token: &str) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

/// A one-connection pool on the admin database, and whether the database
/// `name` exists already.
pub async fn admin_pool(admin: &PgConnectOptions, name: &str) -> anyhow::Result<(PgPool, bool)> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(admin.clone())
        .await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&pool)
            .await?;
    Ok((pool, exists))
}
