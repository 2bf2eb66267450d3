//! `trackside simulate` and `trackside fault-drill`: the simulated yard on
//! a real broker, and in simulated time through the rules.

use std::path::PathBuf;

use clap::Args;
use tokio_util::sync::CancellationToken;
use trackside::config::Config;
use trackside::sim::{self, YardOptions, drill};

use super::serve::shutdown_signal;

#[derive(Args)]
pub struct SimulateArgs {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// 0: the demo yard's layout (Millbrook Yard, 20 circuits); N: a
    /// generated yard of N circuits in roads of 12.
    #[arg(long, default_value_t = 0)]
    circuits: usize,
    #[arg(long, default_value_t = sim::DEFAULT_GATEWAYS)]
    gateways: usize,
    /// Readings per second of each analogue parameter.
    #[arg(long, default_value_t = sim::DEFAULT_RATE_HZ)]
    rate_hz: f64,
    #[arg(long, default_value_t = sim::DEFAULT_SEED)]
    seed: u64,
    /// Password of every simulated gateway (ids yard-gw01, yard-gw02, ...).
    #[arg(long, env = "TRACKSIDE_SIM_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Inject faults (flicks, stuck occupation, voltage sag and step, a
    /// silent sensor, a gateway dropping off, a poor shunt, an unstable
    /// occupation current, a drifting relay) on a 56-minute cycle.
    #[arg(long)]
    faults: bool,
    /// Publish as Sparkplug B edge nodes (`spBv1.0/{group}/...`, births
    /// with aliases, data by alias, death as the will) instead of JSON.
    #[arg(long)]
    sparkplug: bool,
    /// The Sparkplug B group id, with `--sparkplug`.
    #[arg(long, default_value = sim::sparkplug::DEFAULT_GROUP, requires = "sparkplug")]
    group: String,
}

#[derive(Args)]
pub struct DrillArgs {
    /// Simulated hours to run.
    #[arg(long, default_value_t = drill::DEFAULT_HOURS)]
    hours: f64,
    #[arg(long, default_value_t = sim::DEFAULT_CIRCUITS)]
    circuits: usize,
    #[arg(long, default_value_t = sim::DEFAULT_GATEWAYS)]
    gateways: usize,
    #[arg(long, default_value_t = sim::DEFAULT_RATE_HZ)]
    rate_hz: f64,
    #[arg(long, default_value_t = sim::DEFAULT_SEED)]
    seed: u64,
    /// Take the rules from this configuration file instead of the shipped ones.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A maintenance window, repeatable: `T1*,T20@1-2.5` (circuits, from
    /// 1 h to 2.5 h of simulated time) or `gateway=yard-gw02@0.5-1`. What
    /// it suppresses is counted as detected and suppressed, not missed.
    #[arg(long = "maintenance", value_name = "CIRCUITS@FROM-TO")]
    maintenance: Vec<drill::Maintenance>,
}

pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
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
        sags: Vec::new(),
    };
    anyhow::ensure!(options.rate_hz > 0.0, "--rate-hz must be positive");
    let stop = CancellationToken::new();
    let running = if args.sparkplug {
        tokio::spawn(sim::sparkplug::run(options, args.group, stop.clone()))
    } else {
        tokio::spawn(sim::run(options, stop.clone()))
    };
    shutdown_signal().await;
    stop.cancel();
    running.await?
}

pub fn fault_drill(args: DrillArgs) -> anyhow::Result<()> {
    let rules = match &args.config {
        Some(path) => Config::from_file(path)?.exceptions.rules,
        None => Config::default().exceptions.rules,
    };
    let options = trackside::sim::drill::DrillOptions {
        hours: args.hours,
        circuits: args.circuits,
        gateways: args.gateways,
        rate_hz: args.rate_hz,
        seed: args.seed,
        maintenance: args.maintenance,
    };
    let started = std::time::Instant::now();
    let report = trackside::sim::drill::run(&options, rules)?;
    print!("{report}");
    println!("(ran in {:.1} s)", started.elapsed().as_secs_f64());
    anyhow::ensure!(report.meets_target(), "the detection target was not met");
    Ok(())
}
