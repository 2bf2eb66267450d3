//! The simulated yard: gateways that publish track-circuit readings over real
//! MQTT, for `--demo` and as the load generator (`trackside simulate`).
//!
//! The yard is a layout (`crate::yard::layout`): the demo's Millbrook Yard,
//! or for the load generator a generated yard of parallel roads. Trains run
//! along the layout's routes, through adjacent circuits in order, stopping
//! where a route says; a circuit is occupied while any part of a train is
//! on it, so most circuits are clear most of the time, as in a real yard.
//! Every third circuit is an audio-frequency circuit (with carrier
//! frequency and receiver level), the rest are DC. Analogue values carry a
//! little Gaussian noise, follow the day (damp ballast at dawn) and, where
//! planned, slow sags over hours ([`SlowSag`]).
//!
//! With faults on, a [`FaultPlan`] injects one fault at a time on a
//! 56-minute cycle (flicks, a stuck occupation, a sagging and a stepping
//! relay voltage, a silent sensor, a gateway that drops off, a poor shunt,
//! an unstable occupation current, a drifting relay), so every
//! exception rule shows up in the demo; `trackside fault-drill` runs the
//! same yard in simulated time against the rule engine.

pub mod backfill;
pub mod drill;
mod faults;
mod publisher;
pub mod sparkplug;
mod trains;

use std::time::Duration;

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use trackside_wire::Layout;

pub use faults::{Effect, Fault, FaultKind, FaultPlan};
pub use publisher::run;
pub(crate) use trains::Trains;

use crate::yard::layout;

/// The demo yard: every command that simulates a yard (`--demo`,
/// `simulate`, `fault-drill`) starts from this size, rate and seed.
pub const DEFAULT_CIRCUITS: usize = 12;
pub const DEFAULT_GATEWAYS: usize = 3;
/// Readings per second of each analogue parameter.
pub const DEFAULT_RATE_HZ: f64 = 2.0;
pub const DEFAULT_SEED: u64 = 1;
/// A generated yard's roads: up to this many circuits each.
const ROAD_CIRCUITS: usize = 12;
/// Trains per hour on each road of a generated yard: a busy load-test
/// yard, a train every 25 to 70 seconds.
const ROAD_TRAINS_PER_HOUR: f64 = 75.0;

#[derive(Debug, Clone)]
pub struct YardOptions {
    pub host: String,
    pub port: u16,
    pub circuits: usize,
    pub gateways: usize,
    /// Readings per second of each analogue parameter.
    pub rate_hz: f64,
    pub seed: u64,
    /// Every simulated gateway's password; `None` against a broker that
    /// allows anonymous clients.
    pub password: Option<String>,
    /// Inject the faults of [`FaultPlan::cycle`].
    pub faults: bool,
    /// Where in the timetable and fault schedule the run begins, in
    /// seconds (0 for a demo; tests start just before a fault).
    pub start_at_s: f64,
    /// Slow sags of the relay-end values, in the run's seconds (the demo
    /// continues one its backfilled history began).
    pub sags: Vec<SlowSag>,
}

impl YardOptions {
    /// The layout this yard runs on: the demo's for 0 circuits, else a
    /// generated one of `circuits` circuits.
    pub fn layout_text(&self) -> String {
        yard_layout_text(self.circuits)
    }
}

/// The demo layout for 0 circuits, else a generated yard of that many.
pub fn yard_layout_text(circuits: usize) -> String {
    if circuits == 0 {
        layout::DEMO_LAYOUT.to_owned()
    } else {
        layout::generated(circuits, ROAD_CIRCUITS, ROAD_TRAINS_PER_HOUR)
    }
}

/// Discrete channels are re-sent this often even without a change, so a
/// board that connects late learns the state.
const STATE_REFRESH: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Circuit {
    name: String,
    audio_frequency: bool,
    feed_voltage: f64,
    feed_current: f64,
    relay_voltage: f64,
    relay_current: f64,
    carrier_hz: f64,
    rx_level: f64,
}

/// How many gateways a yard of these sizes has (the last may own fewer
/// circuits), as [`Yard::gateway_models`] makes them.
pub fn gateway_count(circuits: usize, gateways: usize) -> usize {
    circuits.div_ceil(circuits.div_ceil(gateways.clamp(1, circuits.max(1))).max(1))
}

/// What every gateway shares: the circuits, the timetable and the faults.
pub struct Yard {
    circuits: Vec<Circuit>,
    trains: Trains,
    pub faults: FaultPlan,
    gateways: usize,
    sags: Vec<SlowSag>,
    pub layout: Layout,
}

impl Yard {
    pub fn new(options: &YardOptions) -> anyhow::Result<Self> {
        Self::with_layout(&options.layout_text(), options)
    }

    /// The yard of a layout file's text (its routes give the timetable);
    /// `options.circuits` is not used.
    pub fn with_layout(text: &str, options: &YardOptions) -> anyhow::Result<Self> {
        let layout = layout::check(text, &|_| false)
            .map_err(|problems| anyhow::anyhow!(layout::describe(&problems)))
            .context("the simulated yard's layout")?;
        let names: Vec<String> = layout.circuits.iter().map(|c| c.id.clone()).collect();
        anyhow::ensure!(!names.is_empty(), "a yard needs at least one circuit");
        let circuits = build_circuits(&names, options.seed);
        let trains = Trains::new(&layout, options.seed);
        let gateways = options.gateways.clamp(1, circuits.len().max(1));
        // The timetable covers a day, and so do the faults.
        let faults = if options.faults {
            FaultPlan::cycle(circuits.len(), gateways, &trains, 86_400.0)
        } else {
            FaultPlan::default()
        };
        Ok(Self {
            circuits,
            trains,
            faults,
            gateways,
            sags: options.sags.clone(),
            layout,
        })
    }

    /// A circuit's name, by its index in the layout.
    pub fn circuit_name(&self, index: usize) -> &str {
        &self.circuits[index].name
    }

    /// The gateways the yard's circuits are spread over.
    pub fn gateway_names(&self) -> Vec<String> {
        (0..self.circuits.len().div_ceil(self.per_gateway()))
            .map(gateway_name)
            .collect()
    }

    /// The relay-end factor of every slow sag on `circuit` at `now_s`.
    fn sag_factor(&self, circuit: usize, now_s: f64) -> f64 {
        self.sags
            .iter()
            .filter(|s| s.circuit == circuit)
            .map(|s| s.factor(now_s))
            .product()
    }

    fn per_gateway(&self) -> usize {
        self.circuits.len().div_ceil(self.gateways)
    }

    /// One model per gateway, owning its share of the circuits.
    pub fn gateway_models(&self, seed: u64) -> Vec<GatewayModel> {
        let per_gateway = self.per_gateway();
        self.circuits
            .chunks(per_gateway)
            .enumerate()
            .map(|(index, owned)| GatewayModel {
                gateway: gateway_name(index),
                index,
                first_index: index * per_gateway,
                circuits: owned.to_vec(),
                rng: StdRng::seed_from_u64(seed ^ (index * per_gateway) as u64),
                last_state: vec![None; owned.len()],
                last_refresh_s: 0.0,
            })
            .collect()
    }

    /// The gateway that carries a circuit.
    pub fn gateway_of(&self, circuit: usize) -> String {
        gateway_name(circuit / self.per_gateway())
    }
}

pub fn gateway_name(index: usize) -> String {
    format!("yard-gw{:02}", index + 1)
}

pub fn circuit_name(index: usize) -> String {
    format!("T{}", 101 + index)
}

/// One gateway's view of the yard: what it would publish at a moment.
pub struct GatewayModel {
    pub gateway: String,
    pub index: usize,
    first_index: usize,
    circuits: Vec<Circuit>,
    rng: StdRng,
    last_state: Vec<Option<bool>>,
    last_refresh_s: f64,
}

impl GatewayModel {
    /// The readings this gateway publishes at `now_s` seconds into the run,
    /// as (channel, value); `None` while the fault plan has it off the air.
    pub fn sample(&mut self, yard: &Yard, now_s: f64) -> Option<Vec<(String, f64)>> {
        if yard.faults.gateway_down(self.index, now_s) {
            return None;
        }
        let refresh = now_s - self.last_refresh_s >= STATE_REFRESH.as_secs_f64();
        if refresh {
            self.last_refresh_s = now_s;
        }
        let mut readings = Vec::with_capacity(self.circuits.len() * 7);
        for (offset, circuit) in self.circuits.iter().enumerate() {
            let index = self.first_index + offset;
            let effect = yard.faults.effect(index, now_s);
            let occupied = effect.stuck || effect.dropped || yard.trains.occupies(index, now_s);
            if refresh || self.last_state[offset] != Some(occupied) {
                self.last_state[offset] = Some(occupied);
                readings.push((
                    format!("{}/relay_state", circuit.name),
                    if occupied { 0.0 } else { 1.0 },
                ));
            }
            let relay_factor =
                effect.relay_factor * ballast_factor(now_s) * yard.sag_factor(index, now_s);
            let under_train = Shunt {
                residual: effect.residual,
                current_swing: effect.current_swing,
            };
            for (parameter, value) in
                circuit.sample_under(occupied, relay_factor, under_train, &mut self.rng)
            {
                if effect.silent != Some(parameter) {
                    readings.push((format!("{}/{parameter}", circuit.name), value));
                }
            }
        }
        Some(readings)
    }
}

fn build_circuits(names: &[String], seed: u64) -> Vec<Circuit> {
    let mut rng = StdRng::seed_from_u64(seed);
    let carriers = [388.8, 418.8, 448.8, 478.8, 508.8];
    names
        .iter()
        .enumerate()
        .map(|(i, name)| Circuit {
            name: name.clone(),
            audio_frequency: i % 3 == 2,
            feed_voltage: rng.random_range(6.0..10.0),
            feed_current: rng.random_range(0.8..2.5),
            relay_voltage: rng.random_range(1.2..1.8),
            relay_current: rng.random_range(80.0..160.0),
            carrier_hz: carriers[i % carriers.len()],
            rx_level: rng.random_range(200.0..400.0),
        })
        .collect()
}

impl Circuit {
    /// A clear circuit's relay voltage reading.
    fn relay_voltage(&self, relay_factor: f64, rng: &mut StdRng) -> f64 {
        let noisy = self.relay_voltage * relay_factor * (1.0 + 0.01 * gaussian(rng));
        round(noisy.max(0.0), 3)
    }

    /// `relay_factor` scales the relay-end values while clear (a sagging
    /// or failing circuit; 1 when healthy).
    fn sample(
        &self,
        occupied: bool,
        relay_factor: f64,
        rng: &mut StdRng,
    ) -> Vec<(&'static str, f64)> {
        self.sample_under(occupied, relay_factor, Shunt::default(), rng)
    }

    /// As [`Circuit::sample`], with how a train shunts the circuit.
    fn sample_under(
        &self,
        occupied: bool,
        relay_factor: f64,
        under_train: Shunt,
        rng: &mut StdRng,
    ) -> Vec<(&'static str, f64)> {
        let swing = if occupied {
            under_train.current_swing * gaussian(rng)
        } else {
            0.0
        };
        let mut noisy = |nominal: f64, relative: f64| nominal * (1.0 + relative * gaussian(rng));
        let shunt = if occupied { 1.0 } else { 0.0 };
        let mut values = vec![
            (
                "feed_voltage",
                round(noisy(self.feed_voltage * (1.0 - 0.05 * shunt), 0.005), 3),
            ),
            (
                "feed_current",
                round(
                    noisy(
                        self.feed_current * (1.0 + 0.8 * shunt) * (1.0 + swing),
                        0.01,
                    )
                    .max(0.0),
                    3,
                ),
            ),
            (
                "relay_voltage",
                round(
                    noisy(
                        if occupied {
                            0.02 + under_train.residual * self.relay_voltage * relay_factor
                        } else {
                            self.relay_voltage * relay_factor
                        },
                        0.01,
                    )
                    .max(0.0),
                    3,
                ),
            ),
            (
                "relay_current",
                round(
                    noisy(
                        if occupied {
                            1.0
                        } else {
                            self.relay_current * relay_factor
                        },
                        0.01,
                    )
                    .max(0.0),
                    1,
                ),
            ),
        ];
        if self.audio_frequency {
            values.push(("frequency", round(noisy(self.carrier_hz, 0.0002), 2)));
            values.push((
                "rx_level",
                round(
                    noisy(if occupied { 5.0 } else { self.rx_level }, 0.02).max(0.0),
                    1,
                ),
            ));
        }
        values
    }
}

/// How a train shunts a circuit: perfectly by default.
#[derive(Debug, Clone, Copy, Default)]
struct Shunt {
    /// The relay voltage left, as a share of the clear level.
    residual: f64,
    /// The feed current's extra relative noise.
    current_swing: f64,
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// A standard normal sample (Box-Muller): noise needs no distribution crate.
fn gaussian(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Damp ballast leaks more current between the rails, so relay-end values
/// follow the day: 3 % below nominal at dawn (06:00 into the run's day),
/// 3 % above twelve hours later. Well inside every limit.
pub fn ballast_factor(now_s: f64) -> f64 {
    1.0 - 0.03 * (std::f64::consts::TAU * (now_s - 21_600.0) / 86_400.0).cos()
}

/// A slow degradation over hours (fouled ballast, a failing insulated
/// joint): the relay-end values fall linearly to `floor` times nominal
/// over `ramp_s`, stay there `hold_s`, then are restored by maintenance.
/// The 56-minute demo cycle has no room for it; the forecast evaluation
/// (`trackside forecast-eval`) injects it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowSag {
    pub circuit: usize,
    pub start_s: f64,
    pub ramp_s: f64,
    pub hold_s: f64,
    pub floor: f64,
}

impl SlowSag {
    pub fn factor(&self, now_s: f64) -> f64 {
        let into = now_s - self.start_s;
        if into < 0.0 || into > self.ramp_s + self.hold_s {
            return 1.0;
        }
        1.0 - (1.0 - self.floor) * (into / self.ramp_s).min(1.0)
    }

    /// `count` sags within `span_s`, on circuits chosen at random, each
    /// ramping over 6 to 18 hours to 30-42 % of nominal (below the 0.8 V
    /// limit for every simulated circuit); sags on one circuit never
    /// overlap.
    pub fn plan(circuits: usize, span_s: f64, count: usize, seed: u64) -> Vec<SlowSag> {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(31));
        let mut sags: Vec<SlowSag> = Vec::new();
        let mut attempts = 0;
        while sags.len() < count && attempts < 1_000 {
            attempts += 1;
            let ramp_s = rng.random_range(6.0..18.0) * 3_600.0;
            let hold_s = 2.0 * 3_600.0;
            // Leave a day before it, so every sag has a window of history.
            let latest = span_s - ramp_s - hold_s;
            if latest <= 86_400.0 {
                break;
            }
            let sag = SlowSag {
                circuit: rng.random_range(0..circuits.max(1)),
                start_s: rng.random_range(86_400.0..latest),
                ramp_s,
                hold_s,
                floor: rng.random_range(0.3..0.42),
            };
            let clashes = sags.iter().any(|other| {
                other.circuit == sag.circuit
                    && sag.start_s < other.start_s + other.ramp_s + other.hold_s + 3_600.0
                    && other.start_s < sag.start_s + sag.ramp_s + sag.hold_s + 3_600.0
            });
            if !clashes {
                sags.push(sag);
            }
        }
        sags.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        sags
    }
}

impl Yard {
    pub fn circuit_count(&self) -> usize {
        self.circuits.len()
    }

    /// One circuit's relay voltage as the minute rollups would hold it,
    /// reduced to steps of `step_s`: the highest reading of each step, from
    /// readings every `sample_s` (trains shunt the relay to near zero, so
    /// the highest is the clear-circuit level). `None` for a step that a
    /// train covered throughout. `now_s` 0 is the first step's start.
    pub fn relay_voltage_steps(
        &self,
        circuit: usize,
        steps: usize,
        step_s: f64,
        sample_s: f64,
        sags: &[SlowSag],
        seed: u64,
    ) -> Vec<Option<f32>> {
        let mut rng = StdRng::seed_from_u64(seed ^ (circuit as u64).wrapping_mul(0x9e37_79b9));
        let sags: Vec<&SlowSag> = sags.iter().filter(|s| s.circuit == circuit).collect();
        let per_step = (step_s / sample_s).round().max(1.0) as usize;
        (0..steps)
            .map(|step| {
                let mut highest: Option<f64> = None;
                for i in 0..per_step {
                    let now_s = step as f64 * step_s + i as f64 * sample_s;
                    if self.trains.occupies(circuit, now_s) {
                        continue;
                    }
                    let factor = ballast_factor(now_s)
                        * sags.iter().map(|s| s.factor(now_s)).product::<f64>();
                    let value = self.circuits[circuit].relay_voltage(factor, &mut rng);
                    highest = Some(highest.map_or(value, |h| h.max(value)));
                }
                highest.map(|v| v as f32)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::faults::CYCLE_S;
    use super::*;

    #[test]
    fn the_fault_plan_injects_every_kind_one_at_a_time() {
        let layout = crate::yard::layout::check(&yard_layout_text(12), &|_| false).unwrap();
        let trains = Trains::new(&layout, 1);
        let plan = FaultPlan::cycle(12, 3, &trains, 2.0 * CYCLE_S);
        assert_eq!(plan.faults.len(), 2 * FaultKind::ALL.len());
        for pair in plan.faults.windows(2) {
            assert!(pair[0].end_s <= pair[1].start_s, "{pair:?} overlap");
        }
        let kinds: std::collections::HashSet<FaultKind> =
            plan.faults.iter().map(|f| f.kind).collect();
        assert_eq!(kinds.len(), FaultKind::ALL.len());
        let flick = &plan.faults[0];
        assert_eq!(flick.kind, FaultKind::Flick);
        assert!(!trains.occupies(flick.circuit, flick.start_s + 0.3));
        assert!(plan.effect(flick.circuit, flick.start_s + 0.3).dropped);
        assert!(!plan.effect(flick.circuit, flick.start_s + 1.0).dropped);
        assert!(
            !plan
                .effect((flick.circuit + 1) % 12, flick.start_s + 0.3)
                .dropped
        );
        let sag = plan
            .faults
            .iter()
            .find(|f| f.kind == FaultKind::VoltageSag)
            .unwrap();
        let deepest = plan.effect(sag.circuit, sag.start_s + 150.0).relay_factor;
        assert!((deepest - 0.4).abs() < 1e-9, "{deepest}");
        assert_eq!(plan.effect(sag.circuit, sag.end_s + 1.0).relay_factor, 1.0);
    }

    #[test]
    fn the_demo_configuration_defaults_to_the_simulators_own() {
        let demo = crate::config::DemoConfig::default();
        assert_eq!(demo.gateways, DEFAULT_GATEWAYS);
        assert_eq!(demo.rate_hz, DEFAULT_RATE_HZ);
    }

    #[test]
    fn occupied_circuits_read_near_zero_at_the_relay() {
        let mut rng = StdRng::seed_from_u64(1);
        let names: Vec<String> = (0..3).map(circuit_name).collect();
        let circuit = build_circuits(&names, 1).pop().unwrap();
        let clear: Vec<_> = circuit.sample(false, 1.0, &mut rng);
        let occupied: Vec<_> = circuit.sample(true, 1.0, &mut rng);
        let get =
            |values: &[(&str, f64)], name: &str| values.iter().find(|(n, _)| *n == name).unwrap().1;
        assert!(get(&clear, "relay_voltage") > 1.0);
        assert!(get(&occupied, "relay_voltage") < 0.1);
        assert!(get(&occupied, "feed_current") > get(&clear, "feed_current"));
        assert!(
            clear.iter().any(|(n, _)| *n == "frequency"),
            "third circuit is AF"
        );
    }
}
