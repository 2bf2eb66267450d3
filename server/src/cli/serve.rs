//! `trackside [serve]`: configuration, the database, the server, signals.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use rand::distr::{Alphanumeric, SampleString as _};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;
use trackside::config::{Config, YardConfig};
use trackside::store::embedded_pg::{Durability, EmbeddedPostgres};

use super::demo::Demo;

/// The demo's operator account.
const DEMO_USER: &str = "demo";

/// Flags override the environment, which overrides the config file.
#[derive(Args, Default)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "TRACKSIDE_CONFIG")]
    config: Option<PathBuf>,
    /// Also run a simulated yard publishing to the embedded broker.
    #[arg(long, env = "TRACKSIDE_DEMO")]
    demo: bool,
    /// HTTP address for the app, the API and the WebSocket.
    #[arg(long, env = "TRACKSIDE_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// PEM certificate chain: with --http-tls-key, serve HTTPS.
    #[arg(long, env = "TRACKSIDE_HTTP_TLS_CERT")]
    http_tls_cert: Option<PathBuf>,
    /// PEM private key of --http-tls-cert.
    #[arg(long, env = "TRACKSIDE_HTTP_TLS_KEY")]
    http_tls_key: Option<PathBuf>,
    /// An origin users open the app at, as in https://trackside.yard.example
    /// (repeat, or comma-separated in the environment).
    #[arg(long, env = "TRACKSIDE_HTTP_PUBLIC_ORIGINS", value_delimiter = ',')]
    http_public_origin: Vec<String>,
    /// MQTT 3.1.1 address gateways connect to.
    #[arg(long, env = "TRACKSIDE_MQTT_LISTEN")]
    mqtt_listen: Option<SocketAddr>,
    /// MQTT 5 address.
    #[arg(long, env = "TRACKSIDE_MQTT_LISTEN_V5")]
    mqtt_listen_v5: Option<SocketAddr>,
    /// MQTT over mutual TLS, for gateways with certificates.
    #[arg(long, env = "TRACKSIDE_MQTT_TLS_LISTEN")]
    mqtt_tls_listen: Option<SocketAddr>,
    /// A name or address gateways use to reach the TLS listener (repeat, or
    /// comma-separated in the environment).
    #[arg(long, env = "TRACKSIDE_MQTT_TLS_SERVER_NAMES", value_delimiter = ',')]
    mqtt_tls_server_name: Vec<String>,
    /// PostgreSQL URL; without one a private cluster runs under --data-dir.
    #[arg(long, env = "TRACKSIDE_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Directory for the private PostgreSQL cluster and other state.
    #[arg(long, env = "TRACKSIDE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Directory holding the built operator app.
    #[arg(long, env = "TRACKSIDE_ASSETS_DIR")]
    assets_dir: Option<PathBuf>,
    /// The yard's name, shown in the app.
    #[arg(long, env = "TRACKSIDE_YARD_NAME")]
    yard_name: Option<String>,
    /// The yard's IANA time zone, for example Europe/London.
    #[arg(long, env = "TRACKSIDE_TIMEZONE")]
    timezone: Option<String>,
}

/// The demo draws its own layout unless one is configured or already in
/// the data directory, and names the yard after it.
fn prepare_demo(config: &mut Config) -> anyhow::Result<()> {
    if config.yard.layout.is_none() {
        let path = trackside::yard::layout_path(None, &config.database.data_dir);
        Demo::put_layout(&config.demo, &path)?;
    }
    if config.yard.name == YardConfig::default().name
        && let (_, Some(name)) = Demo::layout(&config.demo)
    {
        config.yard.name = name;
    }
    Ok(())
}

pub fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if args.demo {
        config.demo.enabled = true;
    }
    if let Some(addr) = args.http_listen {
        config.http.listen = addr;
    }
    if let Some(cert) = &args.http_tls_cert {
        config.http.tls_cert = Some(cert.clone());
    }
    if let Some(key) = &args.http_tls_key {
        config.http.tls_key = Some(key.clone());
    }
    if !args.http_public_origin.is_empty() {
        config.http.public_origins = args.http_public_origin.clone();
    }
    if let Some(addr) = args.mqtt_listen {
        config.mqtt.listen = addr;
    }
    if let Some(addr) = args.mqtt_listen_v5 {
        config.mqtt.listen_v5 = Some(addr);
    }
    if let Some(addr) = args.mqtt_tls_listen {
        config.mqtt.tls_listen = Some(addr);
    }
    if !args.mqtt_tls_server_name.is_empty() {
        config.mqtt.tls_server_names = args.mqtt_tls_server_name.clone();
    }
    if let Some(url) = &args.database_url {
        config.database.url = Some(url.clone());
    }
    if let Some(dir) = &args.data_dir {
        config.database.data_dir = dir.clone();
    }
    if let Some(dir) = &args.assets_dir {
        config.http.assets_dir = dir.clone();
    }
    if let Some(name) = &args.yard_name {
        config.yard.name = name.clone();
    }
    if let Some(zone) = &args.timezone {
        config.yard.timezone = zone.clone();
    }
    config.validate()?;
    Ok(config)
}

/// Connects to the configured database, or starts the private cluster,
/// and applies the migrations. The cluster handle, when there is one, must
/// live as long as the pool.
pub async fn open_database(config: &Config) -> anyhow::Result<(PgPool, Option<EmbeddedPostgres>)> {
    let mut private_pg = None;
    let connect: PgConnectOptions = match &config.database.url {
        Some(url) => url.parse().context("parsing the database URL")?,
        None => {
            let data_dir = config.database.data_dir.clone();
            let bin_dir = config.database.pg_bin_dir.clone();
            let pg = tokio::task::spawn_blocking(move || {
                EmbeddedPostgres::start(&data_dir, bin_dir.as_deref(), Durability::Durable)
            })
            .await??;
            let options = pg.connect_options("postgres");
            private_pg = Some(pg);
            options
        }
    };
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect_with(connect)
        .await
        .context("connecting to PostgreSQL")?;
    trackside::migrate(&pool).await?;
    Ok((pool, private_pg))
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = load_config(&args)?;
    if config.demo.enabled {
        prepare_demo(&mut config)?;
    }
    let (pool, private_pg) = open_database(&config).await?;
    // The simulated gateways get credentials like real ones, made afresh at
    // every start and never shown: nothing outside this process needs them.
    let demo_password = if config.demo.enabled && !config.mqtt.allow_anonymous {
        let password = Alphanumeric.sample_string(&mut rand::rng(), 24);
        for gateway in Demo::gateways(&config.demo)? {
            trackside::ingest::credentials::add(&pool, &gateway, Some(password.clone())).await?;
        }
        Some(password)
    } else {
        None
    };
    // The demo opens straight into the app: a demo operator with a fresh
    // password each start, and a one-time link that signs a browser in.
    let demo_user = if config.demo.enabled {
        let password = trackside::auth::users::one_time_password();
        let hash = trackside::auth::password::hash_now(&password)?;
        let user = trackside::auth::users::ensure_demo_operator(&pool, DEMO_USER, &hash).await?;
        Some((user, password))
    } else {
        None
    };
    let running = trackside::start(&config, pool.clone()).await?;

    let demo = CancellationToken::new();
    let demo_task = if config.demo.enabled {
        let yard = Demo::new(&config.demo, running.mqtt_addr.port(), demo_password)?;
        Some(tokio::spawn(yard.run(
            pool.clone(),
            running.storage,
            running.forecast.clone(),
            demo.clone(),
        )))
    } else {
        None
    };

    let http_port = running.http_addr.port();
    let base = format!("{}://localhost:{http_port}", running.http_scheme);
    println!();
    match &demo_user {
        Some((user, password)) => {
            let link = trackside::auth::tokens::issue_link(&pool, user.id).await?;
            println!("  Trackside is running: open {base}/signin#link={link}");
            println!(
                "  (that link signs one browser in as the demo operator, once, within {} minutes;",
                trackside::auth::tokens::LINK_LIFETIME.num_minutes()
            );
            println!(
                "  after that, sign in at {base}/ as `{DEMO_USER}` with password `{password}`)"
            );
        }
        None => println!("  Trackside is running: open {base}/"),
    }
    if !trackside::auth::users::any_admin(&pool).await? {
        println!(
            "  No administrator yet: create one with `trackside user add <name> --role admin` \
             (it prints a one-time password)"
        );
    }
    if let Some(external) = &config.mqtt.external {
        println!(
            "  Readings from the MQTT broker at {} (session {:?}); gateways connect there",
            external.address, external.client_id
        );
    } else {
        print_listeners(&running, config.demo.enabled);
    }
    println!("  Stop with Ctrl-C.");
    println!();

    shutdown_signal().await;
    // Bounded whatever the database and the webhooks do (docs/api.md):
    // the writers get trackside::SHUTDOWN_DRAIN, the private PostgreSQL
    // its own few seconds.
    let stopping = std::time::Instant::now();
    tracing::info!("shutting down: flushing readings to the database");
    demo.cancel();
    if let Some(task) = demo_task {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), task).await;
    }
    running.shutdown().await;
    if tokio::time::timeout(std::time::Duration::from_secs(1), pool.close())
        .await
        .is_err()
    {
        tracing::warn!("database connections did not close within 1 s; leaving them");
    }
    if let Some(mut pg) = private_pg {
        tokio::task::spawn_blocking(move || pg.stop()).await??;
    }
    tracing::info!(
        seconds = format!("{:.1}", stopping.elapsed().as_secs_f64()),
        "stopped"
    );
    Ok(())
}

fn print_listeners(running: &trackside::Running, demo: bool) {
    if let Some(addr) = running.mqtt_tls_addr {
        println!("  MQTT for gateways: {addr} (v3.1.1 over mutual TLS: `trackside gateway cert`)");
    }
    println!(
        "  MQTT without TLS: {} (v3.1.1){}{}",
        running.mqtt_addr,
        running
            .mqtt_v5_addr
            .map(|a| format!(", {a} (v5)"))
            .unwrap_or_default(),
        if demo {
            ", with a simulated yard publishing"
        } else {
            ""
        }
    );
}

pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(err) => {
                tracing::error!("cannot watch SIGTERM: {err}");
                let _ = interrupt.await;
                return;
            }
        };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}
