//! `trackside db`: the database as other tools see it. `reader-role` makes
//! the read-only role Grafana connects as (see `trackside::grafana`).

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use trackside::grafana::{self, Outcome};

use super::serve::{ServeArgs, load_config, open_database};

#[derive(Args)]
pub struct DbArgs {
    #[command(subcommand)]
    action: DbAction,
    #[command(flatten)]
    database: ServeArgs,
}

#[derive(Subcommand)]
enum DbAction {
    /// Create (or update) a read-only PostgreSQL role that sees the
    /// `grafana` schema's views of channels, readings and rollups, and
    /// nothing else. The password comes from TRACKSIDE_READER_PASSWORD, or
    /// is asked for (read from standard input when it is not a terminal).
    /// The database URL's role needs CREATEROLE.
    ReaderRole {
        /// The role's name.
        #[arg(long, default_value = grafana::DEFAULT_ROLE)]
        name: String,
    },
}

pub async fn db(args: DbArgs) -> anyhow::Result<()> {
    let config = load_config(&args.database)?;
    match args.action {
        DbAction::ReaderRole { name } => {
            grafana::check_role_name(&name).map_err(anyhow::Error::msg)?;
            let password = password(&name)?;
            grafana::check_password(&password)?;
            let (pool, _private_pg) = open_database(&config).await?;
            let outcome = grafana::ensure_reader_role(&pool, &name, &password).await?;
            let database: String = sqlx::query_scalar("SELECT current_database()")
                .fetch_one(&pool)
                .await?;
            println!(
                "{} read-only role {name} on database {database}: it reads the views of schema \
                 grafana (statement timeout {}, at most {} connections).\n\
                 In Grafana, add a PostgreSQL data source with user {name}, database {database}, \
                 and this password; docs/grafana.md has the queries.",
                match outcome {
                    Outcome::Created => "Created",
                    Outcome::Updated => "Updated",
                },
                grafana::STATEMENT_TIMEOUT,
                grafana::CONNECTION_LIMIT,
            );
            Ok(())
        }
    }
}

/// The role's password: from the environment, else asked for twice on a
/// terminal without echo, else one line of standard input.
fn password(name: &str) -> anyhow::Result<String> {
    if let Ok(password) = std::env::var(grafana::PASSWORD_ENV) {
        return Ok(password);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return read_line();
    }
    let first = prompt(&format!("Password for {name}: "))?;
    let again = prompt("Again: ")?;
    anyhow::ensure!(
        first == again,
        "the two passwords differ; nothing was changed"
    );
    Ok(first)
}

fn read_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Reads a line from the terminal with echo off.
fn prompt(text: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    eprint!("{text}");
    std::io::stderr().flush()?;
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turning echo off")?;
    let line = read_line();
    let restored = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    restored.context("turning echo back on")?;
    line
}
