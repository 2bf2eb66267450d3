//! The `trackside` command line: one module per command family, each with
//! its arguments and what it runs. The server itself lives in the library.

mod db;
mod demo;
mod forecast;
mod gateway;
mod layout;
mod serve;
mod simulate;
mod user;

use clap::{Parser, Subcommand};

/// Who runs the command, for the audit trail's detail.
pub fn os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()))
}

pub use db::db;
pub use forecast::{forecast_eval, train};
pub use gateway::gateway;
pub use layout::layout;
pub use serve::serve;
pub use simulate::{fault_drill, simulate};
pub use user::{token, user};

use db::DbArgs;
use forecast::{EvalArgs, TrainArgs};
use gateway::GatewayArgs;
use layout::LayoutArgs;
use serve::ServeArgs;
use simulate::{DrillArgs, SimulateArgs};
use user::{TokenArgs, UserArgs};

#[derive(Parser)]
#[command(version, about = "Real-time telemetry for railway-yard track circuits")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Publish a simulated yard to an MQTT broker (demo data, load tests).
    Simulate(SimulateArgs),
    /// Manage gateway credentials and channel owners (uses the same database as `serve`).
    Gateway(GatewayArgs),
    /// Work with yard layout files (the diagram's schematic).
    Layout(LayoutArgs),
    /// Manage users: add (the first admin, too), list, disable, enable,
    /// role, password, link.
    User(UserArgs),
    /// Manage API tokens for scripts: add, list, revoke.
    Token(TokenArgs),
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
    /// Print the HTTP API's OpenAPI 3.1 description (what the server
    /// serves at /api/openapi.json), for client generators.
    Openapi,
    /// The database for other tools: `reader-role` makes the read-only
    /// role Grafana connects as.
    Db(DbArgs),
}
