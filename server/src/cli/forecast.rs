//! `trackside train` and `trackside forecast-eval`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use trackside::config::Config;

use super::serve::{ServeArgs, load_config, open_database};

#[derive(Args)]
pub struct TrainArgs {
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
pub struct EvalArgs {
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

/// `2026-11-20` (midnight UTC) or an RFC 3339 time.
fn parse_time(text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .with_context(|| format!("{text:?} is neither a date (2026-11-20) nor an RFC 3339 time"))
}

pub async fn train(args: TrainArgs) -> anyhow::Result<()> {
    let config = load_config(&args.database)?;
    let from = parse_time(&args.from)?;
    let to = match &args.to {
        Some(text) => parse_time(text)?,
        None => chrono::Utc::now(),
    };
    let epochs = args.epochs.unwrap_or(config.forecast.epochs);
    let (pool, _private_pg) = open_database(&config).await?;
    let actor = trackside::audit::Actor::console(&super::os_user());
    trackside::audit::record(
        &pool,
        &actor,
        trackside::audit::action::TRAIN,
        Some(&args.kind),
        &[
            ("from", &from.to_rfc3339()),
            ("to", &to.to_rfc3339()),
            ("epochs", &epochs.to_string()),
        ],
    )
    .await;
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
    trackside::audit::record(
        &pool,
        &actor,
        trackside::audit::action::MODEL_REPLACED,
        Some(&args.kind),
        &[("validation_mae", &info.validation_mae.to_string())],
    )
    .await;
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

pub fn forecast_eval(args: EvalArgs) -> anyhow::Result<()> {
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
