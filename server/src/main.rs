//! The `trackside` command: configuration, the database, signals. The server
//! itself lives in the library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use rand::distr::{Alphanumeric, SampleString as _};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;
use trackside::config::Config;
use trackside::embedded_pg::{Durability, EmbeddedPostgres};
use trackside::sim::{self, YardOptions};

#[derive(Parser)]
#[command(version, about = "Real-time telemetry for railway-yard track circuits")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Publish a simulated yard to an MQTT broker (demo data, load tests).
    Simulate(SimulateArgs),
    /// Manage gateway credentials (uses the same database as `serve`).
    Gateway(GatewayArgs),
    /// Run the simulated yard with injected faults in simulated time through
    /// the exception rules, and print injected versus detected faults.
    FaultDrill(DrillArgs),
    /// Train (or retrain) the forecasting model of one parameter kind on a
    /// range of the logged history; a running server picks it up within a
    /// forecast interval.
    Train(TrainArgs),
    /// Train on a simulated week and print forecast errors on held-out
    /// simulated days against baselines, and the warning that predicted
    /// exceedances gave before slow sags crossed the limit.
    ForecastEval(EvalArgs),
}

#[derive(Args)]
struct TrainArgs {
    /// The parameter kind, for example relay_voltage.
    #[arg(long)]
    kind: String,
    /// Start of the range: a date (2026-11-20, midnight UTC) or an RFC 3339 time.
    #[arg(long)]
    from: String,
    /// End of the range (exclusive), like --from; default now.
    #[arg(long)]
    to: Option<String>,
    /// Passes over the training windows (default: forecast.epochs).
    #[arg(long)]
    epochs: Option<usize>,
    #[command(flatten)]
    database: ServeArgs,
}

#[derive(Args)]
struct EvalArgs {
    #[arg(long, default_value_t = 12)]
    circuits: usize,
    /// Simulated days to train on.
    #[arg(long, default_value_t = 7.0)]
    train_days: f64,
    /// Held-out simulated days to test on.
    #[arg(long, default_value_t = 3.0)]
    test_days: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    epochs: Option<usize>,
    /// Model shape and rules from this configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct GatewayArgs {
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

/// Flags override the environment, which overrides the config file.
#[derive(Args, Default)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "TRACKSIDE_CONFIG")]
    config: Option<PathBuf>,
    /// Also run a simulated yard publishing to the embedded broker.
    #[arg(long, env = "TRACKSIDE_DEMO")]
    demo: bool,
    /// HTTP address for the app, the API and the WebSocket.
    #[arg(long, env = "TRACKSIDE_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
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

#[derive(Args)]
struct SimulateArgs {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(long, default_value_t = 1883)]
    port: u16,
    #[arg(long, default_value_t = 12)]
    circuits: usize,
    #[arg(long, default_value_t = 3)]
    gateways: usize,
    /// Readings per second of each analogue parameter.
    #[arg(long, default_value_t = 2.0)]
    rate_hz: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Password of every simulated gateway (ids yard-gw01, yard-gw02, ...).
    #[arg(long, env = "TRACKSIDE_SIM_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Inject faults (flicks, stuck occupation, voltage sag and step, a
    /// silent sensor, a gateway dropping off) on a 35-minute cycle.
    #[arg(long)]
    faults: bool,
}

#[derive(Args)]
struct DrillArgs {
    /// Simulated hours to run.
    #[arg(long, default_value_t = 6.0)]
    hours: f64,
    #[arg(long, default_value_t = 12)]
    circuits: usize,
    #[arg(long, default_value_t = 3)]
    gateways: usize,
    #[arg(long, default_value_t = 2.0)]
    rate_hz: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Take the rules from this configuration file instead of the shipped ones.
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,rumqttd=warn,tower_http=info".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Simulate(args)) => simulate(args).await,
            Some(Command::Gateway(args)) => gateway(args).await,
            Some(Command::FaultDrill(args)) => fault_drill(args),
            Some(Command::Train(args)) => train(args).await,
            Some(Command::ForecastEval(args)) => forecast_eval(args),
            Some(Command::Serve(args)) => serve(args).await,
            None => serve(cli.serve).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
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
async fn open_database(config: &Config) -> anyhow::Result<(PgPool, Option<EmbeddedPostgres>)> {
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let (pool, private_pg) = open_database(&config).await?;
    // The simulated gateways get credentials like real ones, made afresh at
    // every start and never shown: nothing outside this process needs them.
    let demo_password = if config.demo.enabled && !config.mqtt.allow_anonymous {
        let password = Alphanumeric.sample_string(&mut rand::rng(), 24);
        for index in 0..sim::gateway_count(config.demo.circuits, config.demo.gateways) {
            trackside::credentials::add(&pool, &sim::gateway_name(index), Some(password.clone()))
                .await?;
        }
        Some(password)
    } else {
        None
    };
    let running = trackside::start(&config, pool.clone()).await?;

    let demo = CancellationToken::new();
    let demo_task = config.demo.enabled.then(|| {
        let options = YardOptions {
            host: "127.0.0.1".into(),
            port: running.mqtt_addr.port(),
            circuits: config.demo.circuits,
            gateways: config.demo.gateways,
            rate_hz: config.demo.rate_hz,
            seed: 1,
            password: demo_password,
            faults: config.demo.faults,
            start_at_s: 0.0,
        };
        tokio::spawn(sim::run(options, demo.clone()))
    });

    let http_port = running.http_addr.port();
    println!();
    println!("  Trackside is running: open http://localhost:{http_port}/");
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
    tracing::info!("shutting down: flushing readings to the database");
    demo.cancel();
    if let Some(task) = demo_task {
        let _ = task.await;
    }
    running.shutdown().await;
    pool.close().await;
    if let Some(mut pg) = private_pg {
        tokio::task::spawn_blocking(move || pg.stop()).await??;
    }
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

async fn shutdown_signal() {
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

async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let config = load_config(&args.database)?;
    if let GatewayAction::Cert { id, out, days } = &args.action {
        return issue_certificate(&config, id, out, *days);
    }
    // A private cluster that a running server owns is used and left running.
    let (pool, _private_pg) = open_database(&config).await?;
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
            let password = trackside::credentials::add(&pool, &id, password).await?;
            println!("gateway {id}: client id and username `{id}`, password `{password}`");
            println!("(shown once; stored only as a hash)");
        }
        GatewayAction::List => {
            let credentials = trackside::credentials::list(&pool).await?;
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
            if trackside::credentials::revoke(&pool, &id).await? {
                println!("gateway {id}: credentials revoked");
            } else {
                anyhow::bail!("gateway {id} has no active credentials");
            }
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
        trackside::pki::prepare(&pki_dir, &["localhost".to_owned()])?;
    }
    let issued = trackside::pki::issue_gateway(&pki_dir, id, days)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let key_path = out.join(format!("{id}.key"));
    let cert_path = out.join(format!("{id}.crt"));
    let ca_path = out.join("ca.crt");
    trackside::pki::write_private(&key_path, &issued.key_pem)?;
    trackside::pki::write_public(&cert_path, &issued.cert_pem)?;
    trackside::pki::write_public(&ca_path, &issued.ca_pem)?;
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

async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let options = YardOptions {
        host: args.host,
        port: args.port,
        circuits: args.circuits,
        gateways: args.gateways,
        rate_hz: args.rate_hz,
        seed: args.seed,
        password: args.password,
        faults: args.faults,
        start_at_s: 0.0,
    };
    anyhow::ensure!(options.rate_hz > 0.0, "--rate-hz must be positive");
    let stop = CancellationToken::new();
    let running = tokio::spawn(sim::run(options, stop.clone()));
    shutdown_signal().await;
    stop.cancel();
    running.await?
}

fn fault_drill(args: DrillArgs) -> anyhow::Result<()> {
    let rules = match &args.config {
        Some(path) => Config::from_file(path)?.exceptions.rules,
        None => Config::default().exceptions.rules,
    };
    let options = trackside::drill::DrillOptions {
        hours: args.hours,
        circuits: args.circuits,
        gateways: args.gateways,
        rate_hz: args.rate_hz,
        seed: args.seed,
    };
    let started = std::time::Instant::now();
    let report = trackside::drill::run(&options, rules)?;
    print!("{report}");
    println!("(ran in {:.1} s)", started.elapsed().as_secs_f64());
    anyhow::ensure!(report.meets_target(), "the detection target was not met");
    Ok(())
}

/// `2026-11-20` (midnight UTC) or an RFC 3339 time.
fn parse_time(text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .with_context(|| format!("{text:?} is neither a date (2026-11-20) nor an RFC 3339 time"))
}

async fn train(args: TrainArgs) -> anyhow::Result<()> {
    let config = load_config(&args.database)?;
    let from = parse_time(&args.from)?;
    let to = match &args.to {
        Some(text) => parse_time(text)?,
        None => chrono::Utc::now(),
    };
    let epochs = args.epochs.unwrap_or(config.forecast.epochs);
    let (pool, _private_pg) = open_database(&config).await?;
    let bar = indicatif::ProgressBar::new(epochs as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} training {prefix} [{bar:30}] epoch {pos}/{len} {msg} ({elapsed}, about {eta} left)",
        )?
        .progress_chars("=> "),
    );
    bar.set_prefix(args.kind.clone());
    bar.set_message("reading history");
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let progress_bar = bar.clone();
    let model = trackside::forecast::train_from_database(
        &pool,
        &config.forecast,
        &args.kind,
        (from, to),
        epochs,
        move |p| {
            progress_bar.set_position(p.epoch as u64);
            progress_bar.set_message(format!("validation MAE {:.4}", p.validation_mae));
        },
        || false,
    )
    .await;
    bar.finish_and_clear();
    let model = model?;
    let dir = trackside::forecast::models_dir(&config.database.data_dir).join(&args.kind);
    model.save(&dir)?;
    let info = model.info();
    println!(
        "trained {} on {} channels ({} windows, {} epochs) in {:.1} s",
        args.kind, info.channels, info.training_windows, info.epochs, info.training_seconds
    );
    println!(
        "validation MAE {:.4} (last value {:.4}), RMSE {:.4}; saved to {}",
        info.validation_mae,
        info.validation_mae_last_value,
        info.validation_rmse,
        dir.display()
    );
    pool.close().await;
    Ok(())
}

fn forecast_eval(args: EvalArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    let options = trackside::forecast::eval::EvalOptions {
        circuits: args.circuits,
        train_days: args.train_days,
        test_days: args.test_days,
        seed: args.seed,
        epochs: args.epochs.unwrap_or(config.forecast.epochs),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let report = trackside::forecast::eval::run(
        &options,
        &config.forecast,
        config.exceptions.rules.clone(),
        &mut |p| {
            eprintln!(
                "epoch {:>3}/{}: loss {:.4}, validation MAE {:.4}",
                p.epoch, p.epochs, p.train_loss, p.validation_mae
            )
        },
    )?;
    print!("{report}");
    println!("(ran in {:.1} s)", started.elapsed().as_secs_f64());
    anyhow::ensure!(
        report.meets_target(),
        "the network does not beat the last-value baseline at every horizon"
    );
    Ok(())
}
