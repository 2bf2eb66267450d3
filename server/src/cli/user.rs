//! `trackside user` and `trackside token`: accounts and API tokens from the
//! server's console. This is how the first admin is made; everything here
//! is in the audit trail as `console`.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use trackside::audit::{self, Actor, action};
use trackside::auth::users::{self, AddError, Change, ChangeError};
use trackside::auth::{password, tokens};
use trackside_wire::Role;

use super::serve::{ServeArgs, load_config, open_database};

#[derive(Args)]
pub struct UserArgs {
    #[command(subcommand)]
    action: UserAction,
    #[command(flatten)]
    database: ServeArgs,
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user and print a one-time password (they choose their own at
    /// first sign-in), or read their password from standard input.
    Add {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Read the password from standard input: it is then the user's
        /// own, with no change required.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users, their roles and whether they are enabled.
    List,
    /// Disable a user: their sessions and live feeds end at once, and their
    /// API tokens stop working.
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
    /// Change a user's role; their sessions end at once.
    Role {
        name: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Give a user a new one-time password (or read one from standard
    /// input); their sessions end at once.
    Password {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Print a sign-in link for a user, valid once for 15 minutes.
    Link {
        name: String,
        /// The address users open the app at.
        #[arg(long, default_value = "http://localhost:8080")]
        base: String,
    },
}

#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    action: TokenAction,
    #[command(flatten)]
    database: ServeArgs,
}

#[derive(Subcommand)]
enum TokenAction {
    /// Issue an API token and print it once: `Authorization: Bearer <token>`.
    Add {
        /// The user it acts as.
        #[arg(long)]
        user: String,
        /// What uses it, such as prometheus or grafana.
        #[arg(long)]
        name: String,
        /// At most the user's: metrics (only /metrics), viewer, operator, admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// List API tokens (never their secrets).
    List,
    /// Revoke an API token by its id.
    Revoke { id: i64 },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text)
        .ok_or_else(|| format!("{text:?}: give viewer, operator or admin (metrics for tokens)"))
}

/// A password read from standard input (the user's own), or a one-time
/// one; and whether it is the user's own.
fn new_password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        Ok((read_password()?, true))
    } else {
        Ok((users::one_time_password(), false))
    }
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    password::check_new(&password).map_err(anyhow::Error::msg)?;
    Ok(password)
}

pub async fn user(args: UserArgs) -> anyhow::Result<()> {
    let config = load_config(&args.database)?;
    let (pool, _private_pg) = open_database(&config).await?;
    let console = Actor::console(&super::os_user());
    match args.action {
        UserAction::Add {
            name,
            role,
            password_stdin,
        } => {
            let (password, chosen) = new_password(password_stdin)?;
            let hash = password::hash_now(&password)?;
            let user = match users::add(&pool, &name, role, &hash, chosen).await {
                Ok(user) => user,
                Err(AddError::Invalid(message)) => anyhow::bail!(message),
                Err(AddError::Exists) => anyhow::bail!(
                    "a user named {name:?} exists: `trackside user password {name}` gives them a new password"
                ),
                Err(AddError::Database(err)) => return Err(err.into()),
            };
            audit::record(
                &pool,
                &console,
                action::USER_CREATE,
                Some(&user.name),
                &[("role", role.as_str())],
            )
            .await;
            if chosen {
                println!(
                    "user {}: {role}, with the password read from standard input",
                    user.name
                );
            } else {
                println!("user {}: {role}, one-time password `{password}`", user.name);
                println!("(shown once; they choose their own at first sign-in)");
            }
        }
        UserAction::List => {
            let list = users::list(&pool).await?;
            if list.is_empty() {
                println!(
                    "no users yet: `trackside user add <name> --role admin` makes the first admin"
                );
            }
            for user in list {
                let state = if user.disabled { "disabled" } else { "enabled" };
                let change = if user.password_change_required {
                    ", must choose a password"
                } else {
                    ""
                };
                println!(
                    "{:<24} {:<9} {state}{change}, {} session(s)",
                    user.name, user.role, user.sessions
                );
            }
        }
        UserAction::Disable { name } => {
            change(
                &pool,
                &name,
                Change {
                    disabled: Some(true),
                    ..Change::default()
                },
                &console,
                false,
            )
            .await?;
            println!("user {name}: disabled; their sessions have ended");
        }
        UserAction::Enable { name } => {
            change(
                &pool,
                &name,
                Change {
                    disabled: Some(false),
                    ..Change::default()
                },
                &console,
                false,
            )
            .await?;
            println!("user {name}: enabled");
        }
        UserAction::Role { name, role } => {
            change(
                &pool,
                &name,
                Change {
                    role: Some(role),
                    ..Change::default()
                },
                &console,
                false,
            )
            .await?;
            println!("user {name}: now {role}; their sessions have ended");
        }
        UserAction::Password {
            name,
            password_stdin,
        } => {
            let (password, chosen) = new_password(password_stdin)?;
            let hash = password::hash_now(&password)?;
            change(
                &pool,
                &name,
                Change {
                    password: Some((hash, chosen)),
                    ..Change::default()
                },
                &console,
                true,
            )
            .await?;
            if chosen {
                println!(
                    "user {name}: password set from standard input; their sessions have ended"
                );
            } else {
                println!(
                    "user {name}: one-time password `{password}` (shown once); their sessions have ended"
                );
            }
        }
        UserAction::Link { name, base } => {
            let user = users::by_name(&pool, &name)
                .await?
                .with_context(|| format!("no user named {name:?}"))?;
            anyhow::ensure!(user.disabled_at.is_none(), "{name} is disabled");
            let token = tokens::issue_link(&pool, user.id).await?;
            println!("{}/signin#link={token}", base.trim_end_matches('/'));
            println!(
                "(signs one browser in as {name}, once, within {} minutes)",
                tokens::LINK_LIFETIME.num_minutes()
            );
        }
    }
    pool.close().await;
    Ok(())
}

async fn change(
    pool: &sqlx::PgPool,
    name: &str,
    change: Change,
    console: &Actor,
    password_reset: bool,
) -> anyhow::Result<()> {
    let user = users::by_name(pool, name)
        .await?
        .with_context(|| format!("no user named {name:?} (`trackside user list`)"))?;
    let updated = match users::change(pool, &user, &change).await {
        Ok(updated) => updated,
        Err(ChangeError::Invalid(message)) => anyhow::bail!(message),
        Err(ChangeError::LastAdmin) => {
            anyhow::bail!("this would leave no enabled admin: make someone else an admin first")
        }
        Err(ChangeError::Database(err)) => return Err(err.into()),
    };
    trackside::auth::http::record_user_change(pool, console, &user, &updated, password_reset).await;
    Ok(())
}

pub async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let config = load_config(&args.database)?;
    let (pool, _private_pg) = open_database(&config).await?;
    match args.action {
        TokenAction::Add {
            user,
            name,
            role,
            days,
        } => {
            let owner = users::by_name(&pool, &user)
                .await?
                .with_context(|| format!("no user named {user:?}"))?;
            let (token, info) = tokens::issue(&pool, &owner, &name, role, days)
                .await
                .map_err(anyhow::Error::msg)?;
            audit::record(
                &pool,
                &Actor::console(&super::os_user()),
                action::TOKEN_CREATE,
                Some(&info.id.to_string()),
                &[
                    ("user", &info.user),
                    ("name", &info.name),
                    ("role", role.as_str()),
                    ("days", &days.to_string()),
                ],
            )
            .await;
            println!("{token}");
            eprintln!(
                "token {} ({}) for {}: {role}, expires in {days} days; shown once. \
                 Send it as `Authorization: Bearer <token>`.",
                info.id, info.name, info.user
            );
        }
        TokenAction::List => {
            for token in tokens::list(&pool).await? {
                let state = if token.revoked_at.is_some() {
                    "revoked"
                } else if token.expires_at < chrono::Utc::now().timestamp_millis() {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:>5}  {:<20} {:<20} {:<8} {state}",
                    token.id, token.user, token.name, token.role
                );
            }
        }
        TokenAction::Revoke { id } => {
            anyhow::ensure!(
                tokens::revoke(&pool, id).await?,
                "no active API token {id} (`trackside token list`)"
            );
            audit::record(
                &pool,
                &Actor::console(&super::os_user()),
                action::TOKEN_REVOKE,
                Some(&id.to_string()),
                &[],
            )
            .await;
            println!("token {id}: revoked");
        }
    }
    pool.close().await;
    Ok(())
}
