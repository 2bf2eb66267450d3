//! The spool under faults, through real parts: a spool larger than the
//! server's memory cap, the bound with each broker, and a full disk.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use sqlx::PgPool;
use trackside::durable::WhenFull;
use trackside::reading::{DecodedReading, ReadingBatch};
use trackside::store::spool::{Spool, SpoolConfig};
use trackside_wire::{ChannelName, ExceptionKind};

use crate::exceptions::exception_frame;
use crate::harness::{
    Binary, DEADLINE, Gateway, OwnCluster, TestServer, eventually, free_port, test_config,
};

const T0: i64 = 1_795_850_000_000;

async fn count(pool: &PgPool) -> i64 {
    sqlx::query_as::<_, (i64,)>("SELECT count(*) FROM readings")
        .fetch_one(pool)
        .await
        .map_or(0, |(n,)| n)
}

/// Polls until `readings` holds `want` rows, for up to `limit`.
async fn wait_for_count(pool: &PgPool, want: i64, limit: Duration, why: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n = count(pool).await;
        if n == want {
            return;
        }
        assert!(
            n < want,
            "{n} readings stored, more than the {want} published"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} of {want} readings stored after {limit:?}\n{}",
            why()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The memory test: a spool larger than the server's memory cap
/// (RLIMIT_DATA, set with `prlimit` on the real binary) replays within
/// it. The spool used to be read whole at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_larger_than_the_memory_cap_replays_within_it() {
    const CAP: u64 = 128 * 1024 * 1024;
    const SPOOL: u64 = 160 * 1024 * 1024;
    let cluster = OwnCluster::start().await;
    let pool = cluster.pool().await;
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");

    // What an earlier run left after a long outage: long channel names,
    // so the bytes are many without hours of readings to store.
    let written = tokio::task::spawn_blocking({
        let dir = data.join("spool");
        move || {
            let config = SpoolConfig {
                max_bytes: 1 << 30,
                fsync_window: None,
                when_full: WhenFull::Refuse,
            };
            let spool = Spool::open(&dir, &config, Arc::default()).unwrap();
            let channels: Vec<ChannelName> = (0..10)
                .map(|i| ChannelName::parse(&format!("{:_<60}{i}/relay_voltage", "T")).unwrap())
                .collect();
            let mut n = 0i64;
            while spool.end() < SPOOL {
                let readings = (0..1_000)
                    .map(|_| {
                        n += 1;
                        DecodedReading {
                            channel: channels[(n % 10) as usize].clone(),
                            ts: DateTime::from_timestamp_micros(T0 * 1_000 + n).unwrap(),
                            value: n as f64,
                        }
                    })
                    .collect();
                let batch = ReadingBatch {
                    gateway: "gw-long".into(),
                    readings,
                };
                spool.append(&batch, |_, _| ()).unwrap();
            }
            n
        }
    })
    .await
    .unwrap();

    let http = free_port();
    let config = work.path().join("trackside.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\nlisten_v5 = \"off\"\ntls_listen = \"off\"\nallow_anonymous = true\n\
             [database]\nurl = {url:?}\ndata_dir = {data:?}\n\
             [ingest]\nspool_max_bytes = {max}\n",
            mqtt = free_port(),
            url = cluster.url(),
            max = 1u64 << 30,
        ),
    )
    .unwrap();
    // prlimit is util-linux's, on every Debian.
    let limit = format!("--data={CAP}");
    let mut binary = Binary::spawn(
        &config,
        work.path().join("trackside.log"),
        &["prlimit", &limit],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(status) = binary.process.0.try_wait().unwrap() {
            panic!(
                "trackside ended ({status}) replaying the spool:\n{}",
                binary.log()
            );
        }
        if count(&pool).await == written {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {written} readings replayed in time:\n{}",
            count(&pool).await,
            binary.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", binary.process.0.id())).unwrap();
    let peak = status
        .lines()
        .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmData"))
        .collect::<Vec<_>>();
    eprintln!("replayed {written} readings ({SPOOL} bytes of spool) under --data={CAP}: {peak:?}");
    let token = crate::harness::metrics_token(&pool).await;
    let metrics = crate::harness::scrape(&format!("http://127.0.0.1:{http}/metrics"), &token)
        .await
        .expect("a scrape of /metrics");
    assert!(
        metrics.contains(&format!("trackside_readings_replayed_total {written}")),
        "{metrics}"
    );
}

const PER_MESSAGE: i64 = 1_000;

/// Message `m`: a thousand readings of ten channels, each with its own
/// time, valued by their place in the whole sequence.
fn message(m: i64) -> String {
    let readings: Vec<serde_json::Value> = (0..PER_MESSAGE)
        .map(|i| {
            let n = m * PER_MESSAGE + i;
            serde_json::json!({
                "channel": format!("T{}/relay_voltage", 100 + i % 10),
                "value": n,
                "ts": T0 + n,
            })
        })
        .collect();
    serde_json::json!({ "readings": readings }).to_string()
}

/// A spool bound of 8 MiB, a store queue of one message, and no rules but
/// the spool's own: the database's outage fills the spool fast.
fn small_spool(mut config: trackside::config::Config) -> trackside::config::Config {
    config.ingest.spool_max_bytes = 8 * 1024 * 1024;
    config.ingest.store_queue_readings = PER_MESSAGE as usize;
    config.exceptions.rules = Vec::new();
    config.mqtt.tls_listen = None;
    config
}

async fn readyz(server: &TestServer) -> (u16, String) {
    let response = reqwest::get(server.url("/readyz")).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// With the embedded broker (which acknowledged before Trackside saw the
/// message) a full spool keeps the newest readings: the oldest unstored
/// segment goes, counted exactly; a warning is raised at 80 % and shown
/// at once though the database is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_bound_the_embedded_spool_keeps_the_newest_and_counts_what_it_drops() {
    const MESSAGES: i64 = 400;
    let mut cluster = OwnCluster::start().await;
    let pool = cluster.pool().await;
    let server = TestServer::start_on(small_spool(test_config()), pool.clone()).await;
    // Exceptions only: this test does not read the flood of readings.
    let mut browser = server.websocket().await;
    browser
        .send(&trackside_wire::ClientMessage::Subscribe {
            channels: Vec::new(),
        })
        .await;
    let mut gateway = server.gateway("gw-full").await;
    // Prometheus has scraped before the outage, so it may go on (auth's
    // RecentScrapes).
    server.metric("trackside_spool_bytes").await;
    cluster.stop().await;

    for m in 0..MESSAGES {
        gateway
            .publish("trackside/gw-full/readings", message(m))
            .await;
    }
    let warning = exception_frame(&mut browser, |e| e.exception.kind == ExceptionKind::Spool).await;
    assert!(
        !warning.exception.stored,
        "shown while the database is down"
    );
    assert!(
        warning
            .exception
            .message
            .contains("oldest unstored readings are dropped")
    );
    eventually("everything decoded", || async {
        (server.metric("trackside_readings_received_total").await
            == (MESSAGES * PER_MESSAGE) as f64)
            .then_some(())
    })
    .await;
    assert!(server.metric("trackside_spool_bytes").await <= (8 * 1024 * 1024) as f64);
    let dropped = server
        .metric("trackside_spool_dropped_readings_total")
        .await;
    assert!(dropped > 0.0);
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 503);
    assert!(body.contains("at its bound"), "{body}");

    cluster.restart().await;
    eventually("the spool written", || async {
        (server.metric("trackside_spool_backlog_bytes").await == 0.0
            && server.metric("trackside_store_queue_messages").await == 0.0)
            .then_some(())
    })
    .await;
    let stored = count(&pool).await;
    // Counted at the drop; readings of it the writer still held in memory
    // were stored and taken off the count again.
    let dropped = server
        .metric("trackside_spool_dropped_readings_total")
        .await as i64;
    assert_eq!(
        stored + dropped,
        MESSAGES * PER_MESSAGE,
        "nothing lost uncounted"
    );
    assert_eq!(
        server.metric("trackside_readings_lost_total").await as i64,
        dropped
    );
    let newest: (i64,) = sqlx::query_as("SELECT count(*) FROM readings WHERE value >= $1")
        .bind(((MESSAGES - 100) * PER_MESSAGE) as f64)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        newest.0,
        100 * PER_MESSAGE,
        "the newest hundred messages are all kept"
    );
    // The warning clears once the spool has drained.
    eventually("the spool warning cleared", || async {
        let list: Vec<trackside_wire::ExceptionInfo> = server
            .get(server.url("/api/exceptions?rule=server-spool"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        list.first().is_some_and(|e| !e.active).then_some(())
    })
    .await;
}

/// With an external broker a full spool refuses: the publish is left
/// unacknowledged there and delivered again once there is room, so
/// nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_bound_the_external_spool_leaves_publishes_with_the_broker() {
    const MESSAGES: i64 = 400;
    let mosquitto = crate::harness::Mosquitto::start_with("max_queued_messages 0\n").await;
    let mut cluster = OwnCluster::start().await;
    let pool = cluster.pool().await;
    let mut config = small_spool(test_config());
    config.mqtt.external = Some(trackside::config::ExternalBroker {
        address: format!("127.0.0.1:{}", mosquitto.port),
        client_id: "trackside-bound".into(),
        username: None,
        password: None,
        share_group: None,
        persistent_session: true,
    });
    let server = TestServer::start_on(config, pool.clone()).await;
    server.external_session_up().await;
    // Subscriptions are set up right after the session; give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut gateway = Gateway::connect(mosquitto.port, "gw-ext-full").await;
    cluster.stop().await;

    for m in 0..MESSAGES {
        gateway
            .publish("trackside/gw-ext-full/readings", message(m))
            .await;
    }
    eventually("the spool refusing at its bound", || async {
        (server.metric("trackside_spool_refused_total").await > 0.0).then_some(())
    })
    .await;
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 503);
    assert!(
        body.contains("unacknowledged at the external broker"),
        "{body}"
    );
    assert_eq!(server.metric("trackside_readings_lost_total").await, 0.0);

    cluster.restart().await;
    wait_for_count(&pool, MESSAGES * PER_MESSAGE, DEADLINE * 6, String::new).await;
    assert!(server.metric("trackside_mqtt_redeliveries_total").await >= 1.0);
    assert!(server.metric("trackside_mqtt_unacknowledged_total").await >= 1.0);
    assert_eq!(server.metric("trackside_readings_lost_total").await, 0.0);
}

/// A small filesystem of the test's own that it can fill: a tmpfs, which
/// needs root (CAP_SYS_ADMIN). Unmounted (lazily, the server may still hold
/// files) when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("trackside-disk-")
            .tempdir()
            .unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            mounted.status.success(),
            "this test mounts a small tmpfs to fill it, which needs root (CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a file until the disk refuses; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A full disk: failed spool writes touch nothing already in the spool
/// (they are cut off again), the readings wait in the store queue, and
/// once space returns the spool takes messages again by itself; `/readyz`
/// and `/metrics` show the state. Every reading is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to mount a small tmpfs; `cargo xtask test` runs it when run as root, as CI does"]
async fn a_full_disk_costs_no_spooled_reading_and_ingest_resumes_when_space_returns() {
    let disk = SmallDisk::mount(4 * 1024 * 1024);
    let mut cluster = OwnCluster::start().await;
    let pool = cluster.pool().await;
    let mut config = small_spool(test_config());
    config.ingest.store_queue_readings = 100_000;
    config.database.data_dir = disk.path().join("data");
    let server = TestServer::start_in_place(config.clone(), pool.clone()).await;
    let mut gateway = server.gateway("gw-disk").await;
    // Scraped before the outage, as Prometheus would (auth's RecentScrapes).
    server.metric("trackside_spool_writable").await;
    cluster.stop().await;
    let small = |m: i64| crate::outage::message(m);

    // Spooled.
    for m in 0..20 {
        gateway
            .publish("trackside/gw-disk/readings", small(m))
            .await;
    }
    // The disk fills up: these cannot be spooled, so with the database
    // away they are not safe and get no PUBACK yet (the gateway keeps
    // them in its in-flight window).
    let filler = disk.fill();
    for m in 20..60 {
        gateway
            .publish_in_flight("trackside/gw-disk/readings", small(m))
            .await;
    }
    eventually("the spool failing", || async {
        (server.metric("trackside_spool_writable").await == 0.0).then_some(())
    })
    .await;
    assert!(server.metric("trackside_spool_write_errors_total").await > 0.0);
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 503);
    assert!(body.contains("spool cannot be written"), "{body}");

    // A message that still fit in the spool's last page is safe, and
    // acknowledged; the rest wait.
    let early = gateway.acks_so_far();
    assert!(early < 5, "{early} of 40 unspooled messages acknowledged");

    // Space returns: the next message is spooled, nothing else needed.
    // Acknowledgements go in order, so these wait behind the unsafe ones.
    std::fs::remove_file(filler).unwrap();
    for m in 60..80 {
        gateway
            .publish_in_flight("trackside/gw-disk/readings", small(m))
            .await;
    }
    eventually("the spool writable again", || async {
        (server.metric("trackside_spool_writable").await == 1.0).then_some(())
    })
    .await;

    cluster.restart().await;
    // Stored now: every publish is acknowledged.
    gateway.wait_for_acks(60 - early).await;
    let total = 80 * crate::outage::PER_MESSAGE;
    let stored = crate::outage::wait_for_all(&pool, total).await;
    assert_eq!(stored, (0..total).collect::<Vec<_>>(), "every reading once");
    assert_eq!(server.metric("trackside_readings_lost_total").await, 0.0);
    assert_eq!(
        server.metric("trackside_spool_damaged_bytes_total").await,
        0.0
    );
    let TestServer { running, .. } = server;
    running.shutdown().await;

    // What the failed writes left on disk: whole records only.
    let stats = Arc::new(trackside::durable::LogStats::default());
    let spool = Spool::open(
        &config.database.data_dir.join("spool"),
        &SpoolConfig {
            max_bytes: config.ingest.spool_max_bytes,
            fsync_window: None,
            when_full: WhenFull::DropOldest,
        },
        stats.clone(),
    )
    .unwrap();
    let replay = spool.read(0, spool.end(), u64::MAX).unwrap();
    assert_eq!(replay.reached, spool.end());
    assert_eq!(
        stats
            .damaged_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no torn or damaged record"
    );
}
