//! The simulated yard on the wire: one rumqttc client per gateway over real
//! TCP, publishing what [`GatewayModel::sample`] gives, with a last will on
//! its status topic as a real gateway has.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use anyhow::Context as _;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{GatewayModel, Yard, YardOptions};

/// Runs the yard until `shutdown`: one MQTT client per gateway.
pub async fn run(options: YardOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    anyhow::ensure!(options.gateways >= 1, "a yard needs at least one gateway");
    let yard = Arc::new(Yard::new(&options)?);
    let mut tasks = Vec::new();
    for model in yard.gateway_models(options.seed) {
        let (client, eventloop) = connect(&options, &model.gateway);
        // While the plan has this gateway "drop off", its event loop is not
        // polled: no pings, so the broker ends the session at 1.5 x
        // keep-alive and publishes the will, as with a real dead gateway.
        let paused = Arc::new(AtomicBool::new(false));
        tasks.push(tokio::spawn(drive_eventloop(
            client.clone(),
            eventloop,
            model.gateway.clone(),
            paused.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(publish_gateway(
            client,
            model,
            yard.clone(),
            paused,
            (options.rate_hz, options.start_at_s),
            shutdown.clone(),
        )));
    }
    for task in tasks {
        task.await.context("simulated gateway task panicked")??;
    }
    Ok(())
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
    crate::ingest::mqtt_client(mqtt, PUBLISH_QUEUE)
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
    paused: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut reported = false;
    loop {
        if paused.load(Relaxed) {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                () = shutdown.cancelled() => return Ok(()),
            }
        }
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
    mut model: GatewayModel,
    yard: Arc<Yard>,
    paused: Arc<AtomicBool>,
    (rate_hz, start_at_s): (f64, f64),
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let topic = format!("trackside/{}/readings", model.gateway);
    let period = Duration::from_secs_f64(1.0 / rate_hz);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = tokio::time::Instant::now();
    let mut last_ts = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => {
                // A clean goodbye: the will does not fire, so say it here.
                paused.store(false, Relaxed);
                let _ = client.publish(status_topic(&model.gateway), QoS::AtLeastOnce, true, "offline").await;
                let _ = client.disconnect().await;
                return Ok(());
            }
        }
        let now_s = start_at_s + started.elapsed().as_secs_f64();
        let Some(samples) = model.sample(&yard, now_s) else {
            if !paused.swap(true, Relaxed) {
                tracing::info!(gateway = %model.gateway, "simulated fault: gateway drops off the network");
            }
            continue;
        };
        paused.store(false, Relaxed);
        // Strictly increasing even when ticks come faster than the clock's
        // millisecond, so every sample is a distinct reading.
        let ts = chrono::Utc::now().timestamp_millis().max(last_ts + 1);
        last_ts = ts;
        let readings: Vec<serde_json::Value> = samples
            .into_iter()
            .map(|(channel, value)| json!({ "channel": channel, "value": value, "ts": ts }))
            .collect();
        let payload = json!({ "ts": ts, "readings": readings }).to_string();
        // A full client queue means the broker is unreachable; the sample is
        // dropped like a real gateway without buffering would.
        if client
            .try_publish(&topic, QoS::AtLeastOnce, false, payload)
            .is_err()
        {
            tracing::debug!(gateway = %model.gateway, "simulated sample dropped: client queue full");
        }
    }
}

/// Publishes a simulated gateway's client may hold before its event loop
/// sends them; the publisher waits beyond it, as a real gateway would.
const PUBLISH_QUEUE: usize = 64;
