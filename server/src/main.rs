//! The `trackside` command: parses the command line and runs one command
//! on a tokio runtime; see `cli/` for each.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command};

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
            Some(Command::Simulate(args)) => cli::simulate(args).await,
            Some(Command::Gateway(args)) => cli::gateway(args).await,
            Some(Command::Layout(args)) => cli::layout(args).await,
            Some(Command::User(args)) => cli::user(args).await,
            Some(Command::Token(args)) => cli::token(args).await,
            Some(Command::FaultDrill(args)) => cli::fault_drill(args),
            Some(Command::Train(args)) => cli::train(args).await,
            Some(Command::ForecastEval(args)) => cli::forecast_eval(args),
            Some(Command::Serve(args)) => cli::serve(args).await,
            Some(Command::Openapi) => {
                println!("{}", trackside::http::openapi::document().to_pretty_json()?);
                Ok(())
            }
            Some(Command::Db(args)) => cli::db(args).await,
            None => cli::serve(cli.serve).await,
        }
    });
    // Blocking work still running (a model being trained, a read the
    // database never answers) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
