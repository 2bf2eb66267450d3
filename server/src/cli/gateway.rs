//! `trackside gateway`: gateway credentials and certificates, and who
//! owns a channel.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use trackside::config::Config;

use super::serve::{ServeArgs, load_config, open_database};

#[derive(Args)]
pub struct GatewayArgs {
    #[command(subcommand)]
    action: GatewayAction,
    #[command(flatten)]
    database: ServeArgs,
}

#[derive(Subcommand)]
enum GatewayAction {
    /// Give a gateway a password (replacing any old one) and print it once.
    Add {
        /// The gateway id, also its MQTT client id and username.
        id: String,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List gateways with credentials.
    List,
    /// Revoke a gateway's credentials; its next CONNECT is refused.
    Revoke { id: String },
    /// Give a channel to another gateway: from now on only that gateway's
    /// readings of it are taken, on every running server.
    Reassign {
        /// The channel, `circuit/parameter`.
        channel: String,
        /// The gateway id that owns it from now on.
        gateway: String,
    },
    /// Issue a certificate for the MQTT TLS listener. It names the gateway,
    /// so it may publish only under /tenants/{id}/; it connects with its
    /// password as well, so revoking the password shuts it out.
    Cert {
        /// The gateway id: letters and digits only on the TLS listener.
        id: String,
        /// Directory to write `{id}.crt`, `{id}.key` and `ca.crt` into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
}

pub async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let config = load_config(&args.database)?;
    // A private cluster that a running server owns is used and left running.
    let (pool, _private_pg) = open_database(&config).await?;
    let console = trackside::audit::Actor::console(&super::os_user());
    if let GatewayAction::Cert { id, out, days } = &args.action {
        issue_certificate(&config, id, out, *days)?;
        trackside::audit::record(
            &pool,
            &console,
            trackside::audit::action::GATEWAY_CERTIFICATE,
            Some(id),
            &[("days", &days.to_string())],
        )
        .await;
        pool.close().await;
        return Ok(());
    }
    match args.action {
        GatewayAction::Add { id, password_stdin } => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("reading the password from standard input")?;
                Some(line.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                None
            };
            let password = trackside::ingest::credentials::add(&pool, &id, password).await?;
            trackside::audit::record(
                &pool,
                &console,
                trackside::audit::action::GATEWAY_ADD,
                Some(&id),
                &[],
            )
            .await;
            println!("gateway {id}: client id and username `{id}`, password `{password}`");
            println!("(shown once; stored only as a hash)");
        }
        GatewayAction::List => {
            let credentials = trackside::ingest::credentials::list(&pool).await?;
            if credentials.is_empty() {
                println!("no gateway credentials yet: `trackside gateway add <id>`");
            }
            for credential in credentials {
                let state = match credential.revoked_at {
                    Some(at) => format!("revoked {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
                    None => "active".to_owned(),
                };
                println!(
                    "{:<24} added {}  {state}",
                    credential.gateway_id,
                    credential.created_at.format("%Y-%m-%d %H:%M:%S UTC")
                );
            }
        }
        GatewayAction::Revoke { id } => {
            if trackside::ingest::credentials::revoke(&pool, &id).await? {
                trackside::audit::record(
                    &pool,
                    &console,
                    trackside::audit::action::GATEWAY_REVOKE,
                    Some(&id),
                    &[],
                )
                .await;
                println!("gateway {id}: credentials revoked");
            } else {
                anyhow::bail!("gateway {id} has no active credentials");
            }
        }
        GatewayAction::Reassign { channel, gateway } => {
            use trackside::ingest::admission::{self, Admission, ReassignError};
            anyhow::ensure!(
                trackside::ingest::decode::valid_gateway_id(&gateway),
                "{gateway:?} is not a gateway id: 1 to 64 of letters, digits, `_`, `-`, `.`"
            );
            if let Err(ReassignError::Pinned(pinned)) =
                Admission::new(&config.ingest).check_reassign(&channel, &gateway)
            {
                anyhow::bail!(
                    "channel {channel} is pinned to gateway {pinned} by ingest.pins: change the configuration instead"
                );
            }
            let Some(previous) = admission::reassign(&pool, &channel, &gateway).await? else {
                anyhow::bail!("no channel {channel}: a channel is registered by its first reading");
            };
            trackside::audit::record(
                &pool,
                &console,
                trackside::audit::action::CHANNEL_REASSIGN,
                Some(&channel),
                &[("from", &previous), ("to", &gateway)],
            )
            .await;
            println!("channel {channel}: now gateway {gateway}'s (was {previous}'s)");
        }
        GatewayAction::Cert { .. } => unreachable!("handled before the database opens"),
    }
    pool.close().await;
    Ok(())
}

fn issue_certificate(config: &Config, id: &str, out: &Path, days: u32) -> anyhow::Result<()> {
    let pki_dir = config.tls_dir();
    // The CA is made here if the server has not run yet; the server then
    // adds its own certificate at start.
    if !pki_dir.join("ca.crt").exists() {
        trackside::ingest::pki::prepare(&pki_dir, &["localhost".to_owned()])?;
    }
    let issued = trackside::ingest::pki::issue_gateway(&pki_dir, id, days)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let key_path = out.join(format!("{id}.key"));
    let cert_path = out.join(format!("{id}.crt"));
    let ca_path = out.join("ca.crt");
    trackside::ingest::pki::write_private(&key_path, &issued.key_pem)?;
    trackside::ingest::pki::write_public(&cert_path, &issued.cert_pem)?;
    trackside::ingest::pki::write_public(&ca_path, &issued.ca_pem)?;
    println!(
        "gateway {id}: {} and {} (valid {days} days), trusting {}",
        cert_path.display(),
        key_path.display(),
        ca_path.display()
    );
    println!(
        "connect to the TLS listener (port 8883 by default) with client id and username `{id}` \
         and its password; publish under /tenants/{id}/trackside/{id}/"
    );
    Ok(())
}
