//! The faults the simulated yard injects, one at a time on a 56-minute
//! cycle, so every exception rule shows up in the demo and the drill can
//! tell injected faults apart.

use super::Trains;

/// A fault the simulated yard can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// The relay drops for 0.6 s every 8 s while no train is on the circuit.
    Flick,
    /// The circuit shows occupied for longer than the long-occupation limit.
    StuckOccupied,
    /// The relay-end values sag slowly (wet ballast) below the low limit.
    VoltageSag,
    /// The relay-end values step down by a third within 2 s (a failing bond).
    VoltageStep,
    /// One sensor (feed current) stops reporting; the gateway goes on.
    StaleSensor,
    /// A gateway falls silent without a goodbye: its session times out.
    GatewayDrop,
    /// Trains leave a residual relay voltage (rusty rail, leaf fall), a
    /// third of the clear level, more on damp ballast.
    PoorShunt,
    /// The feed current swings while a train is on the circuit (a loose
    /// bond under the wheels).
    UnstableCurrent,
    /// The relay-end level, and with it the drop and pick values, drifts
    /// down by a quarter and stays there. Days in a real yard; compressed
    /// into minutes so the cycle shows it.
    RelayDrift,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Flick,
        FaultKind::StuckOccupied,
        FaultKind::VoltageSag,
        FaultKind::VoltageStep,
        FaultKind::StaleSensor,
        FaultKind::GatewayDrop,
        FaultKind::PoorShunt,
        FaultKind::UnstableCurrent,
        FaultKind::RelayDrift,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FaultKind::Flick => "flicks",
            FaultKind::StuckOccupied => "stuck occupied",
            FaultKind::VoltageSag => "relay voltage sag",
            FaultKind::VoltageStep => "relay voltage step",
            FaultKind::StaleSensor => "silent sensor",
            FaultKind::GatewayDrop => "gateway drops off",
            FaultKind::PoorShunt => "poor shunt",
            FaultKind::UnstableCurrent => "unstable current",
            FaultKind::RelayDrift => "relay drift",
        }
    }

    /// The exception kind that must report this fault, and the parameter of
    /// the channel it must name (`None`: the gateway itself).
    pub fn expected(self) -> (trackside_wire::ExceptionKind, Option<&'static str>) {
        use trackside_wire::ExceptionKind as K;
        match self {
            FaultKind::Flick => (K::Flick, Some("relay_state")),
            FaultKind::StuckOccupied => (K::LongOccupation, Some("relay_state")),
            FaultKind::VoltageSag => (K::Limit, Some("relay_voltage")),
            FaultKind::VoltageStep => (K::RateOfChange, Some("relay_voltage")),
            FaultKind::StaleSensor => (K::Stale, Some("feed_current")),
            FaultKind::GatewayDrop => (K::GatewayOffline, None),
            FaultKind::PoorShunt => (K::PoorShunt, Some("relay_voltage")),
            FaultKind::UnstableCurrent => (K::UnstableOccupationCurrent, Some("feed_current")),
            FaultKind::RelayDrift => (K::DropPickDrift, Some("relay_voltage")),
        }
    }
}

/// One injected fault, in seconds from the start of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    pub circuit: usize,
    pub gateway: usize,
    pub start_s: f64,
    pub end_s: f64,
}

/// The faults of a run, sorted and never overlapping: one at a time, so an
/// operator (and the drill) can tell them apart.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    pub faults: Vec<Fault>,
}

/// What the current fault does to one circuit at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Effect {
    pub stuck: bool,
    pub dropped: bool,
    pub relay_factor: f64,
    pub silent: Option<&'static str>,
    /// Under a train: the relay voltage left, as a share of the clear
    /// level (0 for a good shunt).
    pub residual: f64,
    /// Under a train: the feed current's extra relative noise.
    pub current_swing: f64,
}

const HEALTHY: Effect = Effect {
    stuck: false,
    dropped: false,
    relay_factor: 1.0,
    silent: None,
    residual: 0.0,
    current_swing: 0.0,
};

/// Every kind once per cycle: (kind, offset in the cycle, duration), in
/// seconds. The first comes a minute after start, so a demo shows it soon.
pub(super) const CYCLE_S: f64 = 3_360.0;
const SCHEDULE: [(FaultKind, f64, f64); 9] = [
    (FaultKind::Flick, 60.0, 40.0),
    (FaultKind::StaleSensor, 240.0, 60.0),
    (FaultKind::VoltageStep, 400.0, 120.0),
    (FaultKind::GatewayDrop, 700.0, 45.0),
    // Long enough below the limit to be seen between trains in a busy yard.
    (FaultKind::VoltageSag, 800.0, 480.0),
    (FaultKind::StuckOccupied, 1_340.0, 630.0),
    // Judged per occupation: each lasts long enough for several trains.
    (FaultKind::PoorShunt, 2_030.0, 300.0),
    (FaultKind::UnstableCurrent, 2_390.0, 300.0),
    (FaultKind::RelayDrift, 2_750.0, 480.0),
];

impl FaultPlan {
    /// The repeating schedule up to `horizon_s`, on a different circuit and
    /// gateway each cycle. Flicks and steps start at a moment their circuit
    /// is clear, since under a train they would not show at all.
    pub(super) fn cycle(circuits: usize, gateways: usize, trains: &Trains, horizon_s: f64) -> Self {
        let mut faults = Vec::new();
        let mut cycle = 0usize;
        while (cycle as f64) * CYCLE_S < horizon_s {
            let base = cycle as f64 * CYCLE_S;
            for (k, (kind, offset, duration)) in SCHEDULE.into_iter().enumerate() {
                let mut circuit = (cycle * 5 + k * 7 + 1) % circuits;
                let mut start_s = base + offset;
                let needs_clear = match kind {
                    FaultKind::Flick => Some((1.0, 3.0)),
                    FaultKind::VoltageStep => Some((3.0, 3.0)),
                    _ => None,
                };
                if matches!(
                    kind,
                    FaultKind::PoorShunt | FaultKind::UnstableCurrent | FaultKind::RelayDrift
                ) {
                    // The first circuit, in rotation, that trains cross at
                    // least four times while it lasts: a circuit no train
                    // uses shows no occupation to judge.
                    let occupations = |circuit: usize| {
                        let mut count = 0;
                        let mut was = trains.occupies(circuit, start_s);
                        let mut t = start_s;
                        while t < start_s + duration {
                            let now = trains.occupies(circuit, t);
                            if now && !was {
                                count += 1;
                            }
                            was = now;
                            t += 1.0;
                        }
                        count
                    };
                    if let Some(busy) = (0..circuits)
                        .map(|i| (circuit + i) % circuits)
                        .find(|c| occupations(*c) >= 4)
                    {
                        circuit = busy;
                    }
                }
                if let Some((before, after)) = needs_clear {
                    let clear = |circuit: usize, t: f64| {
                        let mut probe = t - before;
                        while probe <= t + after {
                            if trains.occupies(circuit, probe) {
                                return false;
                            }
                            probe += 0.25;
                        }
                        true
                    };
                    // The first circuit, in rotation, that is clear around
                    // the moment, else a little later. The schedule leaves
                    // 2 minutes after these two, so they never run into the
                    // next fault.
                    let latest = start_s + 120.0;
                    'search: while start_s < latest {
                        for candidate in (0..circuits).map(|i| (circuit + i) % circuits) {
                            if clear(candidate, start_s) {
                                circuit = candidate;
                                break 'search;
                            }
                        }
                        start_s += 0.5;
                    }
                }
                faults.push(Fault {
                    kind,
                    circuit,
                    gateway: cycle % gateways,
                    start_s,
                    end_s: start_s + duration,
                });
            }
            cycle += 1;
        }
        faults.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        Self { faults }
    }

    /// The fault under way at `now_s`, if any.
    pub fn current(&self, now_s: f64) -> Option<&Fault> {
        let after = self.faults.partition_point(|f| f.start_s <= now_s);
        after
            .checked_sub(1)
            .map(|i| &self.faults[i])
            .filter(|f| now_s < f.end_s)
    }

    pub fn gateway_down(&self, gateway: usize, now_s: f64) -> bool {
        self.current(now_s)
            .is_some_and(|f| f.kind == FaultKind::GatewayDrop && f.gateway == gateway)
    }

    pub fn effect(&self, circuit: usize, now_s: f64) -> Effect {
        let Some(fault) = self.current(now_s).filter(|f| f.circuit == circuit) else {
            return HEALTHY;
        };
        let into = now_s - fault.start_s;
        let left = fault.end_s - now_s;
        match fault.kind {
            FaultKind::Flick => Effect {
                dropped: into % 8.0 < 0.6,
                ..HEALTHY
            },
            FaultKind::StuckOccupied => Effect {
                stuck: true,
                ..HEALTHY
            },
            // Down to 40 % over 2 minutes, held 4.5 minutes, back over 90 s.
            FaultKind::VoltageSag => Effect {
                relay_factor: 1.0 - 0.6 * (into / 120.0).min(1.0).min(left / 90.0),
                ..HEALTHY
            },
            // Down by 35 % within 2 s, held, back slowly over the last minute.
            FaultKind::VoltageStep => Effect {
                relay_factor: 1.0 - 0.35 * (into / 2.0).min(1.0).min(left / 60.0),
                ..HEALTHY
            },
            FaultKind::StaleSensor => Effect {
                silent: Some("feed_current"),
                ..HEALTHY
            },
            FaultKind::GatewayDrop => HEALTHY,
            // Worse on damp ballast (dawn): 30 % of the clear level at
            // noon, up to 45 % at dawn.
            FaultKind::PoorShunt => Effect {
                residual: 0.3 + 5.0 * (1.0 - super::ballast_factor(now_s)).max(0.0),
                ..HEALTHY
            },
            FaultKind::UnstableCurrent => Effect {
                current_swing: 0.3,
                ..HEALTHY
            },
            // Down by a quarter over 3 minutes, held, back in the last one.
            FaultKind::RelayDrift => Effect {
                relay_factor: 1.0 - 0.25 * (into / 180.0).min(1.0).min(left / 60.0),
                ..HEALTHY
            },
        }
    }
}
