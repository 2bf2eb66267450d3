//! The simulated yard: gateways that publish track-circuit readings over real
//! MQTT, for `--demo` and as the load generator (`trackside simulate`).
//!
//! The yard is one line of circuits, T101 upward. Trains enter at the first
//! circuit at random intervals and run through to the last; a circuit is
//! occupied while any part of a train is on it. Every third circuit is an
//! audio-frequency circuit (with carrier frequency and receiver level), the
//! rest are DC. Analogue values carry a little Gaussian noise.

use std::time::Duration;

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;
use tokio_util::sync::CancellationToken;

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
}

/// Length of a circuit and of a train, in metres; trains run at `SPEED`.
const CIRCUIT_M: f64 = 400.0;
const TRAIN_M: f64 = 220.0;
const SPEED_M_S: f64 = 15.0;
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

/// Runs the yard until `shutdown`: one MQTT client per gateway.
pub async fn run(options: YardOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    anyhow::ensure!(options.gateways >= 1, "a yard needs at least one gateway");
    anyhow::ensure!(options.circuits >= 1, "a yard needs at least one circuit");
    let circuits = build_circuits(options.circuits, options.seed);
    let per_gateway = circuits.len().div_ceil(options.gateways);
    let mut tasks = Vec::new();
    for (index, owned) in circuits.chunks(per_gateway).enumerate() {
        let gateway = gateway_id(index);
        let (client, eventloop) = connect(&options, &gateway);
        tasks.push(tokio::spawn(drive_eventloop(
            client.clone(),
            eventloop,
            gateway.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(publish_gateway(
            client,
            gateway,
            owned.to_vec(),
            index * per_gateway,
            options.clone(),
            shutdown.clone(),
        )));
    }
    for task in tasks {
        task.await.context("simulated gateway task panicked")??;
    }
    Ok(())
}

/// The id of the simulated yard's `index`-th gateway (from 0).
pub fn gateway_id(index: usize) -> String {
    format!("yard-gw{:02}", index + 1)
}

/// How many gateways a yard of these sizes has (the last may own fewer
/// circuits).
pub fn gateway_count(circuits: usize, gateways: usize) -> usize {
    circuits.div_ceil(circuits.div_ceil(gateways.max(1)).max(1))
}

fn build_circuits(count: usize, seed: u64) -> Vec<Circuit> {
    let mut rng = StdRng::seed_from_u64(seed);
    let carriers = [388.8, 418.8, 448.8, 478.8, 508.8];
    (0..count)
        .map(|i| Circuit {
            name: format!("T{}", 101 + i),
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

fn connect(options: &YardOptions, gateway: &str) -> (AsyncClient, rumqttc::EventLoop) {
    // Client id = username = gateway id, as Trackside's broker requires.
    let mut mqtt = MqttOptions::new(gateway, &options.host, options.port);
    if let Some(password) = &options.password {
        mqtt.set_credentials(gateway, password);
    }
    // rumqttd refuses keep-alive 0, and a short one lets the server notice a
    // vanished gateway quickly.
    mqtt.set_keep_alive(Duration::from_secs(5));
    mqtt.set_max_packet_size(256 * 1024, 256 * 1024);
    // The broker publishes this when the session ends without a clean
    // DISCONNECT, which is how Trackside learns a gateway dropped off.
    mqtt.set_last_will(rumqttc::LastWill::new(
        status_topic(gateway),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    AsyncClient::new(mqtt, 64)
}

fn status_topic(gateway: &str) -> String {
    format!("trackside/{gateway}/status")
}

/// rumqttc does its network I/O only while the event loop is polled. Every
/// (re)connection announces the gateway online, as a real one does.
async fn drive_eventloop(
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    gateway: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut reported = false;
    loop {
        tokio::select! {
            event = eventloop.poll() => match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    reported = false;
                    let _ = client.try_publish(status_topic(&gateway), QoS::AtLeastOnce, true, "online");
                }
                Ok(_) => reported = false,
                Err(err) => {
                    if !reported {
                        tracing::warn!(%gateway, "simulated gateway lost its broker, retrying: {err}");
                        reported = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

async fn publish_gateway(
    client: AsyncClient,
    gateway: String,
    circuits: Vec<Circuit>,
    first_index: usize,
    options: YardOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let topic = format!("trackside/{gateway}/readings");
    let mut rng = StdRng::seed_from_u64(options.seed ^ first_index as u64);
    let trains = Trains::new(options.seed, options.circuits);
    let period = Duration::from_secs_f64(1.0 / options.rate_hz);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = tokio::time::Instant::now();
    let mut last_state: Vec<Option<bool>> = vec![None; circuits.len()];
    let mut last_refresh = started;
    let mut last_ts = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => {
                // A clean goodbye: the will does not fire, so say it here.
                let _ = client.publish(status_topic(&gateway), QoS::AtLeastOnce, true, "offline").await;
                let _ = client.disconnect().await;
                return Ok(());
            }
        }
        let now_s = started.elapsed().as_secs_f64();
        // Strictly increasing even when ticks come faster than the clock's
        // millisecond, so every sample is a distinct reading.
        let ts = chrono::Utc::now().timestamp_millis().max(last_ts + 1);
        last_ts = ts;
        let refresh = last_refresh.elapsed() >= STATE_REFRESH;
        if refresh {
            last_refresh = tokio::time::Instant::now();
        }
        let mut readings = Vec::with_capacity(circuits.len() * 7);
        for (offset, circuit) in circuits.iter().enumerate() {
            let occupied = trains.occupies(first_index + offset, now_s);
            if refresh || last_state[offset] != Some(occupied) {
                last_state[offset] = Some(occupied);
                readings.push(reading(
                    circuit,
                    "relay_state",
                    if occupied { 0.0 } else { 1.0 },
                    ts,
                ));
            }
            for (parameter, value) in circuit.sample(occupied, &mut rng) {
                readings.push(reading(circuit, parameter, value, ts));
            }
        }
        let payload = json!({ "ts": ts, "readings": readings }).to_string();
        // A full client queue means the broker is unreachable; the sample is
        // dropped like a real gateway without buffering would.
        if client
            .try_publish(&topic, QoS::AtLeastOnce, false, payload)
            .is_err()
        {
            tracing::debug!(%gateway, "simulated sample dropped: client queue full");
        }
    }
}

fn reading(circuit: &Circuit, parameter: &str, value: f64, ts: i64) -> serde_json::Value {
    json!({ "channel": format!("{}/{parameter}", circuit.name), "value": value, "ts": ts })
}

impl Circuit {
    fn sample(&self, occupied: bool, rng: &mut StdRng) -> Vec<(&'static str, f64)> {
        let mut noisy = |nominal: f64, relative: f64| nominal * (1.0 + relative * gaussian(rng));
        let shunt = if occupied { 1.0 } else { 0.0 };
        let mut values = vec![
            (
                "feed_voltage",
                round(noisy(self.feed_voltage * (1.0 - 0.05 * shunt), 0.005), 3),
            ),
            (
                "feed_current",
                round(noisy(self.feed_current * (1.0 + 0.8 * shunt), 0.01), 3),
            ),
            (
                "relay_voltage",
                round(
                    noisy(if occupied { 0.02 } else { self.relay_voltage }, 0.01).max(0.0),
                    3,
                ),
            ),
            (
                "relay_current",
                round(
                    noisy(if occupied { 1.0 } else { self.relay_current }, 0.01).max(0.0),
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

/// Train departures: the same seed gives every gateway the same timetable,
/// so gateways agree where the trains are without talking to each other.
struct Trains {
    departures: Vec<f64>,
    line_m: f64,
}

impl Trains {
    fn new(seed: u64, circuits: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(7));
        let mut departures = Vec::new();
        let mut t = 3.0;
        // A day of timetable is plenty for a demo; it is a few KB.
        while t < 86_400.0 {
            departures.push(t);
            t += rng.random_range(25.0..70.0);
        }
        Self {
            departures,
            line_m: circuits as f64 * CIRCUIT_M,
        }
    }

    fn occupies(&self, circuit: usize, now_s: f64) -> bool {
        let start = circuit as f64 * CIRCUIT_M;
        let end = start + CIRCUIT_M;
        let transit = (self.line_m + TRAIN_M) / SPEED_M_S;
        self.departures
            .iter()
            .rev()
            .skip_while(|&&departed| departed > now_s)
            .take_while(|&&departed| now_s - departed <= transit)
            .any(|&departed| {
                let head = (now_s - departed) * SPEED_M_S;
                let tail = head - TRAIN_M;
                head > start && tail < end
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_train_moves_along_the_line() {
        let trains = Trains {
            departures: vec![0.0],
            line_m: 4.0 * CIRCUIT_M,
        };
        // 10 s in, the head is at 150 m: only the first circuit.
        assert!(trains.occupies(0, 10.0));
        assert!(!trains.occupies(1, 10.0));
        // At 40 s the head is at 600 m and the tail at 380 m: both.
        assert!(trains.occupies(0, 40.0));
        assert!(trains.occupies(1, 40.0));
        // Long gone from the first circuit after 60 s.
        assert!(!trains.occupies(0, 60.0));
        assert!(!trains.occupies(0, 1_000.0));
    }

    #[test]
    fn occupied_circuits_read_near_zero_at_the_relay() {
        let mut rng = StdRng::seed_from_u64(1);
        let circuit = build_circuits(3, 1).pop().unwrap();
        let clear: Vec<_> = circuit.sample(false, &mut rng);
        let occupied: Vec<_> = circuit.sample(true, &mut rng);
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
