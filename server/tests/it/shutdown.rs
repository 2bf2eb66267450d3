//! SIGTERM to the real binary: it ends within the stated bound whatever
//! the database and the webhook receivers do, and what it could not store
//! is on disk for the next start.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::exceptions::{FAST_RULES, SilentReceiver, batch, now_ms};
use crate::harness::{Binary, Gateway, OwnCluster, eventually, free_port, site_dir};
use crate::outage::{PER_MESSAGE, message, wait_for_all};

/// The bound docs/api.md states for SIGTERM to exit.
const SIGTERM_BOUND: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_database_stopped_ends_within_the_bound() {
    let mut cluster = OwnCluster::start().await;
    let pool = cluster.pool().await;
    let silent = SilentReceiver::start().await;
    let work = tempfile::tempdir().unwrap();
    let (http, mqtt) = (free_port(), free_port());
    let config_path = work.path().join("trackside.toml");
    std::fs::write(
        &config_path,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\nassets_dir = {assets:?}\n\
             [mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\nlisten_v5 = \"off\"\ntls_listen = \"off\"\nallow_anonymous = true\n\
             [database]\nurl = {url:?}\ndata_dir = {data:?}\n\
             [exceptions]\ntick_ms = 100\nwebhook_url = {hook:?}\n{rules}",
            assets = site_dir(),
            url = cluster.url(),
            data = work.path().join("data"),
            hook = silent.url,
            rules = FAST_RULES.replace("[[rules]]", "[[exceptions.rules]]"),
        ),
    )
    .unwrap();
    let mut binary = Binary::spawn(&config_path, work.path().join("trackside.log"), &[]);
    eventually("trackside ready", || async {
        let ready = reqwest::get(format!("http://127.0.0.1:{http}/readyz"))
            .await
            .ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;

    let mut gateway = Gateway::connect(mqtt, "gw-term").await;
    for m in 0..10 {
        gateway
            .publish("trackside/gw-term/readings", message(m))
            .await;
    }
    wait_for_all(&pool, 10 * PER_MESSAGE).await;
    // An exception whose notification the receiver never answers.
    gateway
        .publish(
            "trackside/gw-term/readings",
            batch(now_ms(), &[("T9/relay_voltage", 0.5)]),
        )
        .await;
    eventually("the webhook attempted", || async {
        (!silent
            .arrivals("T9/relay_voltage", trackside_wire::TransitionKind::Raised)
            .is_empty())
        .then_some(())
    })
    .await;

    let token = crate::harness::metrics_token(&pool).await;
    assert!(
        crate::harness::scrape(&format!("http://127.0.0.1:{http}/metrics"), &token)
            .await
            .is_some(),
        "a scrape with the metrics token"
    );
    cluster.stop().await;
    for m in 10..40 {
        gateway
            .publish("trackside/gw-term/readings", message(m))
            .await;
    }
    // A transition judged during the outage, for the journal.
    gateway
        .publish(
            "trackside/gw-term/readings",
            batch(now_ms(), &[("T8/relay_voltage", 0.5)]),
        )
        .await;
    let metrics = format!("http://127.0.0.1:{http}/metrics");
    // A scrape keeps working while the database is away: the token was
    // checked before it stopped.
    eventually("everything decoded", || async {
        let text = crate::harness::scrape(&metrics, &token).await?;
        let received = text.lines().find_map(|l| {
            l.strip_prefix("trackside_readings_received_total ")?
                .parse::<f64>()
                .ok()
        })?;
        (received >= 402.0).then_some(())
    })
    .await;
    // Time for the engine to judge the last reading.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let asked = Instant::now();
    kill(Pid::from_raw(binary.process.0.id() as i32), Signal::SIGTERM).expect("sending SIGTERM");
    let status = loop {
        if let Some(status) = binary.process.0.try_wait().unwrap() {
            break status;
        }
        if asked.elapsed() > SIGTERM_BOUND * 2 {
            panic!(
                "trackside still running {:?} after SIGTERM:\n{}",
                asked.elapsed(),
                binary.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = asked.elapsed();
    eprintln!("SIGTERM to exit: {took:?}");
    assert!(
        took < SIGTERM_BOUND,
        "SIGTERM took {took:?}:\n{}",
        binary.log()
    );
    assert!(status.success(), "exit {status}:\n{}", binary.log());

    // What it could not store is on disk: with the database back, the
    // next start stores every reading once, and the journalled exception.
    cluster.restart().await;
    let pool = cluster.pool().await;
    let mut config = trackside::config::Config::from_file(&config_path).unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.mqtt.listen = "127.0.0.1:0".parse().unwrap();
    config.exceptions.webhook_urls.clear();
    let restarted = trackside::start(&config, pool.clone())
        .await
        .expect("restart");
    // The message readings, and the two alarm readings.
    wait_for_all(&pool, 40 * PER_MESSAGE + 2).await;
    let readings: Vec<(f64,)> = sqlx::query_as(
        "SELECT r.value FROM readings r JOIN channels c ON c.id = r.channel_id
         WHERE c.name LIKE 'T1__/relay_voltage' ORDER BY r.value",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let readings: Vec<i64> = readings.into_iter().map(|(v,)| v as i64).collect();
    assert_eq!(readings, (0..40 * PER_MESSAGE).collect::<Vec<_>>());
    let (open,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM exceptions WHERE subject = 'T8/relay_voltage' AND open",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(open, 1, "the transition judged during the outage is stored");
    restarted.shutdown().await;
}
