//! Ingest benchmark: how fast readings go from MQTT into PostgreSQL and out
//! to WebSocket clients, next to baselines measured in the same run.
//!
//! ```text
//! cargo build --release -p trackside
//! cargo run --release -p trackside --example ingest_bench
//! ```
//!
//! It starts Mosquitto (Debian's `mosquitto`; `cargo xtask setup` does not
//! install it, `apt-get install mosquitto` does) and a Trackside server as
//! child processes on free loopback ports, each with its own temporary
//! directory, then prints one table. Every load is bounded in count and
//! time and goes to 127.0.0.1 only.
//!
//! Flags: `--messages N` (single-reading messages, default 200000),
//! `--batched N` (readings sent in batches of 1000, default 2000000),
//! `--rate N` and `--seconds S` (latency run, default 20000 single-reading
//! messages/s for 5 s), `--clients N` (its WebSocket clients, default 50),
//! `--large-rate N` and `--large-clients N` (the larger yard's latency run:
//! default 50000 readings/s in messages of 10, to 200 clients), `--idle N`
//! (idle MQTT connections, default 1000), `--burst N` (QoS 1 messages of
//! the burst, published as fast as PUBACKs return, default 1000000; 0
//! skips it), `--external N` (single-reading
//! messages through Mosquitto to a Trackside subscribed to it, default
//! 50000; the same count measures a scaled-out instance's CPU beside a
//! lone one's).
//!
//! The spool's group commit is measured against a Trackside with
//! `spool_fsync_ms = "off"`: once with the embedded broker (which
//! acknowledges before the spool) and once through an external broker,
//! where each publish is acknowledged only after the fsync that covers it,
//! so the broker's window of unacknowledged messages bounds the rate. The
//! first latency phase runs against both, the unfsynced one as its baseline.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use futures_util::StreamExt as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::common::{
    Process, admin_token, client_with_token, free_port, start_trackside, wait_ready,
};

mod common;

struct Options {
    messages: usize,
    batched: usize,
    rate: usize,
    seconds: u64,
    clients: usize,
    large_rate: usize,
    large_clients: usize,
    idle: usize,
    external: usize,
    burst: usize,
}

/// Whether a Trackside fsyncs its spool: the default group commit, or
/// never (the baseline of what the fsync costs).
#[derive(Clone, Copy, PartialEq)]
enum Fsync {
    GroupCommit,
    Off,
}

/// Readings per message in the larger yard's latency run: gateways batch
/// what they measured in the last moment.
const LARGE_PER_MESSAGE: usize = 10;

const BATCH: usize = 1_000;
/// Rounds of the batched phase and of its psql baseline, alternating.
const BATCHED_ROUNDS: usize = 3;
/// Channels of the single-reading phase.
const CHANNELS: usize = 100;
/// Channels of the batched phase: a large yard, hundreds of circuits with
/// several parameters each.
const BATCH_CHANNELS: usize = 1_000;
/// Every channel reports at 10 Hz, the top of what track-circuit sensors
/// do. The spacing matters: the rollup job recomputes each minute a write
/// touched, so a denser series makes every write wait on longer passes.
const SAMPLE_MS: i64 = 100;
const T0_MS: i64 = 1_795_800_000_000;

/// A value for reading `n` in `[base, base + 1)`, inside the default limits
/// of the parameters it is used for: a healthy yard raises no exceptions,
/// so the engine's work is its steady state, not a thousand alarms at once.
fn healthy(n: usize, base: f64) -> f64 {
    base + (n % 1000) as f64 / 1000.0
}

/// Reading `n` of a run over `channels` channels: its channel index and its
/// time in Unix milliseconds (round-robin over the channels, one sample
/// period per round).
fn sample(n: usize, channels: usize) -> (usize, i64) {
    (n % channels, T0_MS + (n / channels) as i64 * SAMPLE_MS)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse_args()?;
    let work = tempfile::Builder::new()
        .prefix("trackside-bench-")
        .tempdir()?;
    let mut rows: Vec<Row> = Vec::new();

    println!("Ingest benchmark (2 cores shared by every process below; loopback only)\n");

    // Baseline 1: Mosquitto relaying the same messages, publisher to subscriber.
    let mosquitto = Mosquitto::start(work.path())?;
    let mosquitto_rate = relay_rate(mosquitto.port, options.messages).await?;
    // Baseline 2: Mosquitto's memory for the same idle connections.
    let mosquitto_idle =
        idle_memory(mosquitto.port, || rss_kib(mosquitto.pid), options.idle).await?;
    drop(mosquitto);

    // The same idle connections in external-broker mode: a fresh Mosquitto
    // holds them and a Trackside subscribes to it; both processes count.
    let mosquitto = Mosquitto::start(work.path())?;
    let external = Server::start(work.path(), Some(mosquitto.port), Fsync::GroupCommit).await?;
    external.wait_external_link(mosquitto.port).await?;
    let external_idle = idle_memory(
        mosquitto.port,
        || Ok(rss_kib(mosquitto.pid)? + external.rss_kib()?),
        options.idle,
    )
    .await?;
    drop(external);
    drop(mosquitto);

    // The spool's fsync cost through an external broker: acknowledged
    // only once fsynced (or stored), against the same with fsync off,
    // both running, in alternating rounds so load on the machine hits both.
    let brokers = [
        Mosquitto::start(work.path())?,
        Mosquitto::start(work.path())?,
    ];
    let mut externals = Vec::new();
    for (broker, fsync) in brokers.iter().zip([Fsync::GroupCommit, Fsync::Off]) {
        let external = Server::start(work.path(), Some(broker.port), fsync).await?;
        external.wait_external_link(broker.port).await?;
        externals.push(external);
    }
    let external_rates = alternate(&externals, options.external).await?;
    drop(externals);
    drop(brokers);
    let (grouped_cpu, lone_cpu) = live_subscription_cost(work.path(), options.external).await?;

    let server = Server::start(work.path(), None, Fsync::GroupCommit).await?;

    // Single-reading messages, stored durably (fsync on commit).
    let fsyncs = server.fsyncs().await?;
    let single_rate = stored_rate(&server, options.messages, 1).await?;
    server.print_fsyncs(fsyncs, options.messages).await?;
    rows.push(Row::ratio(
        "single-reading msgs/s stored",
        single_rate,
        "Mosquitto relay msgs/s",
        mosquitto_rate,
        "≥ 50,000 and ≥ 1.0×",
        single_rate >= 50_000.0 && single_rate >= mosquitto_rate,
    ));

    // The same against a Trackside that never fsyncs its spool, in
    // alternating rounds.
    let unsynced = Server::start(work.path(), None, Fsync::Off).await?;
    let pair = [server, unsynced];
    let [synced_rate, unsynced_rate] = alternate(&pair, options.messages).await?;
    // The unsynced server stays for the latency phase's baseline.
    let [server, unsynced] = pair;
    rows.push(Row::ratio(
        "single-reading msgs/s, spool fsynced every 5 ms",
        synced_rate,
        "spool_fsync_ms = \"off\"",
        unsynced_rate,
        "≥ 0.9×",
        synced_rate >= 0.9 * unsynced_rate,
    ));
    rows.push(Row::ratio(
        "external broker msgs/s stored, acked after fsync",
        external_rates[0],
        "spool_fsync_ms = \"off\"",
        external_rates[1],
        "≥ 0.5×",
        external_rates[0] >= 0.5 * external_rates[1],
    ));
    // Stated, not judged: issue 19 asks for the cost of a complete live
    // view on every instance, and names no bound.
    rows.push(Row {
        what: "CPU s per 1,000 readings, instance in a share group (its share stored, every publish shown)"
            .to_owned(),
        value: format!("{grouped_cpu:.4}"),
        baseline: format!(
            "lone [mqtt.external] instance {lone_cpu:.4} ({:.2}×)",
            grouped_cpu / lone_cpu
        ),
        target: "stated".to_owned(),
        met: true,
    });

    // Batches of 1000 readings, against psql's copy of the same rows into
    // the same table (its key, index and rollup trigger) while the same
    // rollup job runs. Each phase starts once the rollup has caught up with
    // the one before.
    // Three alternating rounds, medians: the machine's other load moves
    // either side by a third between runs.
    // The CPU each side used, rollup included (until it has settled),
    // says where a difference lies.
    let (mut batched_rates, mut copy_rates) = (Vec::new(), Vec::new());
    let pid = server.process.0.id();
    for _ in 0..BATCHED_ROUNDS {
        server.rollup_settled()?;
        let before = CpuSplit::now(pid)?;
        batched_rates.push(stored_rate(&server, options.batched, BATCH).await?);
        server.report_round("storing", &before)?;
        let before = CpuSplit::now(pid)?;
        copy_rates.push(server.psql_copy_rate(work.path(), options.batched, "readings")?);
        server.report_round("copying", &before)?;
    }
    let (batched_rate, copy_rate) = (median(&mut batched_rates), median(&mut copy_rates));
    server.rollup_settled()?;
    // For reference: the same copy without the rollup trigger.
    server.psql_copy_rate(work.path(), options.batched, "bench_copy")?;
    rows.push(Row::ratio(
        "batched readings/s stored",
        batched_rate,
        "psql \\copy rows/s",
        copy_rate,
        "≥ 0.9×",
        batched_rate >= 0.9 * copy_rate,
    ));

    server.rollup_settled()?;
    let waited = server.autovacuum_settled()?;
    println!(
        "  waited {:.0} s for autovacuum to finish",
        waited.as_secs_f64()
    );
    let (p50, p99, received) =
        latency(&server, options.rate, 1, options.clients, options.seconds).await?;
    rows.push(Row::plain(
        &format!(
            "publish→WebSocket p50 ms ({} msg/s of 1 reading, {} clients)",
            options.rate, options.clients
        ),
        p50,
        "",
        true,
    ));
    // The same load against the server that never fsyncs: what the
    // group commit costs the live path, if anything.
    let (p50_off, p99_off, _) =
        latency(&unsynced, options.rate, 1, options.clients, options.seconds).await?;
    drop(unsynced);
    rows.last_mut().expect("the p50 row").baseline =
        format!("spool_fsync_ms = \"off\" {p50_off:.2}");
    let mut p99_row = Row::plain(
        &format!("  p99 ms ({received} readings timed)"),
        p99,
        "≤ 5",
        p99 <= 5.0,
    );
    p99_row.baseline = format!("spool_fsync_ms = \"off\" {p99_off:.2}");
    rows.push(p99_row);
    let (p50, p99, received) = latency(
        &server,
        options.large_rate / LARGE_PER_MESSAGE,
        LARGE_PER_MESSAGE,
        options.large_clients,
        options.seconds,
    )
    .await?;
    rows.push(Row::plain(
        &format!(
            "publish→WebSocket p50 ms ({} readings/s in messages of {LARGE_PER_MESSAGE}, {} clients)",
            options.large_rate, options.large_clients
        ),
        p50,
        "",
        true,
    ));
    rows.push(Row::plain(
        &format!("  p99 ms ({received} readings timed)"),
        p99,
        "≤ 20",
        p99 <= 20.0,
    ));

    let per_thousand = idle_memory(server.mqtt_port, || server.rss_kib(), options.idle).await?;
    let mut memory = Row::plain(
        &format!(
            "MB per 1,000 idle MQTT connections ({} opened)",
            options.idle
        ),
        per_thousand,
        "≤ 10",
        per_thousand <= 10.0,
    );
    memory.baseline = format!("Mosquitto {mosquitto_idle:.2} MB");
    rows.push(memory);
    let mut external_memory = Row::plain(
        "the same with [mqtt.external] (Mosquitto + Trackside)",
        external_idle,
        "≤ 10",
        external_idle <= 10.0,
    );
    external_memory.baseline = format!("Mosquitto {mosquitto_idle:.2} MB");
    rows.push(external_memory);

    if options.burst > 0 {
        rows.push(burst(&server, options.burst).await?);
    }

    let overruns = server.metric("trackside_mqtt_log_overruns_total").await?;
    println!("  broker log overruns during the run: {overruns:.0}");
    print_table(&rows);
    Ok(())
}

const USAGE: &str = "ingest_bench [--messages N] [--batched N] [--rate N] [--seconds S] \
[--clients N] [--large-rate N] [--large-clients N] [--idle N] [--burst N] [--external N]
(see the head of server/examples/ingest_bench.rs for what each phase measures)";

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options {
        messages: 200_000,
        batched: 2_000_000,
        rate: 20_000,
        seconds: 5,
        clients: 50,
        large_rate: 50_000,
        large_clients: 200,
        idle: 1_000,
        external: 50_000,
        burst: 1_000_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value: usize = args
            .next()
            .with_context(|| format!("{flag} needs a number"))?
            .parse()
            .with_context(|| format!("{flag} needs a number"))?;
        match flag.as_str() {
            "--messages" => options.messages = value,
            "--batched" => options.batched = value.div_ceil(BATCH) * BATCH,
            "--rate" => options.rate = value,
            "--seconds" => options.seconds = value as u64,
            "--clients" => options.clients = value,
            "--large-rate" => options.large_rate = value,
            "--large-clients" => options.large_clients = value,
            "--idle" => options.idle = value,
            "--external" => options.external = value,
            "--burst" => options.burst = value,
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    ensure!(
        options.messages > 0 && options.batched > 0,
        "counts must be positive"
    );
    Ok(options)
}

struct Mosquitto {
    port: u16,
    pid: u32,
    _process: Process,
}

impl Mosquitto {
    fn start(work: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let config = work.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\npersistence false\n"
            ),
        )?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mosquitto (apt-get install mosquitto)")?;
        let pid = child.id();
        let process = Process(child);
        wait_for_port(port)?;
        Ok(Self {
            port,
            pid,
            _process: process,
        })
    }
}

fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

struct Server {
    http: String,
    mqtt_port: u16,
    data_dir: PathBuf,
    process: Process,
    /// An admin's API token: /metrics and /ws need one.
    token: String,
}

impl Server {
    /// A Trackside with its own broker, or with `external_broker` (a
    /// port on loopback) as its `[mqtt.external]`.
    async fn start(
        work: &Path,
        external_broker: Option<u16>,
        fsync: Fsync,
    ) -> anyhow::Result<Self> {
        Self::start_in_group(work, external_broker, None, fsync).await
    }

    /// [`Server::start`], subscribed through `share_group` when given (a
    /// scaled-out instance: a share to store, every publish to show).
    async fn start_in_group(
        work: &Path,
        external_broker: Option<u16>,
        share_group: Option<&str>,
        fsync: Fsync,
    ) -> anyhow::Result<Self> {
        let (http_port, mut mqtt_port, mqtt5_port, mqtts_port) =
            (free_port()?, free_port()?, free_port()?, free_port()?);
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let started = STARTED.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "trackside{}{}-{}",
            if external_broker.is_some() {
                "-external"
            } else {
                ""
            },
            if fsync == Fsync::Off { "-nofsync" } else { "" },
            started
        );
        let ingest = if fsync == Fsync::Off {
            "[ingest]\nspool_fsync_ms = \"off\"\n"
        } else {
            ""
        };
        let data_dir = work.join(format!("{name}-data"));
        let config = work.join(format!("{name}.toml"));
        let external = match external_broker {
            Some(port) => {
                mqtt_port = port;
                let group = share_group
                    .map(|g| format!("share_group = \"{g}\"\n"))
                    .unwrap_or_default();
                format!(
                    "[mqtt.external]\naddress = \"127.0.0.1:{port}\"\nclient_id = \"trackside-bench-{started}\"\n{group}"
                )
            }
            None => String::new(),
        };
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:{http_port}\"\n\
                 [mqtt]\nlisten = \"127.0.0.1:{mqtt_port}\"\nlisten_v5 = \"127.0.0.1:{mqtt5_port}\"\n\
                 tls_listen = \"127.0.0.1:{mqtts_port}\"\n\
                 allow_anonymous = true\n\
                 {external}\
                 {ingest}\
                 [database]\ndata_dir = \"{}\"\n",
                data_dir.display()
            ),
        )?;
        let process = start_trackside(&config)?;
        let http = format!("http://127.0.0.1:{http_port}");
        wait_ready(&http).await?;
        let token = admin_token(&config)?;
        Ok(Self {
            http,
            mqtt_port,
            data_dir,
            process,
            token,
        })
    }

    async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = client_with_token(&self.token)?
            .get(format!("{}/metrics", self.http))
            .send()
            .await?
            .text()
            .await?;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .with_context(|| format!("metric {name} missing"))
    }

    fn rss_kib(&self) -> anyhow::Result<f64> {
        rss_kib(self.process.0.id())
    }

    /// The spool's fsync count and time so far.
    async fn fsyncs(&self) -> anyhow::Result<(f64, f64)> {
        Ok((
            self.metric("trackside_spool_fsyncs_total").await?,
            self.metric("trackside_spool_fsync_microseconds_total")
                .await?,
        ))
    }

    /// Prints how many messages each fsync covered since `before`.
    async fn print_fsyncs(&self, before: (f64, f64), messages: usize) -> anyhow::Result<()> {
        let (count, micros) = self.fsyncs().await?;
        let (count, micros) = (count - before.0, micros - before.1);
        if count > 0.0 {
            println!(
                "    {count:.0} spool fsyncs: {:.0} messages each, {:.2} ms each",
                messages as f64 / count,
                micros / count / 1000.0
            );
        }
        Ok(())
    }

    /// Waits until an external-broker Trackside holds its session.
    async fn wait_external_link(&self, port: u16) -> anyhow::Result<()> {
        let name = format!("trackside_mqtt_external_connected{{broker=\"127.0.0.1:{port}\"}}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.metric(&name).await.unwrap_or_default() < 1.0 {
            ensure!(
                Instant::now() < deadline,
                "Trackside did not connect to Mosquitto"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .context("VmRSS missing")
}

/// CPU time (user and system) a process has used, in seconds.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: utime and stime are the 14th and 15th fields of the line.
    let rest = stat.rsplit_once(')').context("a /proc stat line")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .context("utime and stime")?
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    Ok(ticks / clock_ticks_per_second()?)
}

/// CPU seconds used so far: by `trackside` (the server's pid), by each
/// PostgreSQL process (its exited children, the backends, included), and
/// by the whole machine.
struct CpuSplit {
    trackside: f64,
    postgres: HashMap<u32, f64>,
    machine: f64,
}

impl CpuSplit {
    fn now(trackside: u32) -> anyhow::Result<Self> {
        let ticks = clock_ticks_per_second()?;
        let mut postgres = HashMap::new();
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            if !head.ends_with("(postgres") {
                continue;
            }
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime, stime, cutime, cstime.
            let used = fields.get(11..15).map_or(0.0, |f| {
                f.iter().map(|v| v.parse::<f64>().unwrap_or(0.0)).sum()
            });
            postgres.insert(pid, used / ticks);
        }
        let machine_line = std::fs::read_to_string("/proc/stat")?;
        let busy: f64 = machine_line
            .lines()
            .next()
            .context("/proc/stat")?
            .split_whitespace()
            .skip(1)
            .enumerate()
            // user, nice, system, (idle, iowait skipped), irq, softirq, steal.
            .filter(|(i, _)| !matches!(i, 3 | 4) && *i < 8)
            .map(|(_, v)| v.parse::<f64>().unwrap_or(0.0))
            .sum();
        Ok(Self {
            trackside: cpu_seconds(trackside)?,
            postgres,
            machine: busy / ticks,
        })
    }

    /// What was used since `before`, as one line. PostgreSQL's share is
    /// summed per process, so a cluster that stopped in between (another
    /// server's) takes nothing away from it.
    fn since(&self, before: &Self) -> String {
        let postgres: f64 = self
            .postgres
            .iter()
            .map(|(pid, now)| now - before.postgres.get(pid).copied().unwrap_or(0.0))
            .sum();
        let (t, p, m) = (
            self.trackside - before.trackside,
            postgres,
            self.machine - before.machine,
        );
        format!(
            "CPU s: trackside {t:.1}, PostgreSQL {p:.1}, everything else {:.1}",
            (m - t - p).max(0.0)
        )
    }
}

struct AutovacuumRuns {
    vacuums: u64,
    analyzes: u64,
}

impl AutovacuumRuns {
    fn since(&self, before: &Self) -> String {
        format!(
            "autovacuum: {} vacuums, {} analyzes",
            self.vacuums.saturating_sub(before.vacuums),
            self.analyzes.saturating_sub(before.analyzes)
        )
    }
}

fn clock_ticks_per_second() -> anyhow::Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK")
}

/// What taking every publish twice costs a scaled-out instance (issue 19):
/// one Mosquitto, a lone `[mqtt.external]` Trackside and one subscribed
/// through a share group (alone in it, so it stores every publish from its
/// share and shows every one from its second, plain subscription), both
/// taking the same `messages`. Returns the CPU seconds per 1,000 readings
/// of each: (in the group, lone).
async fn live_subscription_cost(work: &Path, messages: usize) -> anyhow::Result<(f64, f64)> {
    let mosquitto = Mosquitto::start(work)?;
    let lone = Server::start(work, Some(mosquitto.port), Fsync::GroupCommit).await?;
    lone.wait_external_link(mosquitto.port).await?;
    let grouped = Server::start_in_group(
        work,
        Some(mosquitto.port),
        Some("bench"),
        Fsync::GroupCommit,
    )
    .await?;
    grouped.wait_external_link(mosquitto.port).await?;
    let stored_before = grouped.metric("trackside_readings_stored_total").await?;
    let cpu_before = [
        cpu_seconds(grouped.process.0.id())?,
        cpu_seconds(lone.process.0.id())?,
    ];
    // Publishes to Mosquitto; both take every message.
    stored_rate(&lone, messages, 1).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while grouped.metric("trackside_readings_stored_total").await? - stored_before < messages as f64
    {
        ensure!(
            Instant::now() < deadline,
            "the grouped instance did not store every reading"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let per_thousand = |after: f64, before: f64| (after - before) / messages as f64 * 1000.0;
    let grouped_cpu = per_thousand(cpu_seconds(grouped.process.0.id())?, cpu_before[0]);
    let lone_cpu = per_thousand(cpu_seconds(lone.process.0.id())?, cpu_before[1]);
    println!(
        "  {messages} readings to a share-group instance and a lone one: \
         {grouped_cpu:.4} and {lone_cpu:.4} CPU s per 1,000"
    );
    Ok((grouped_cpu, lone_cpu))
}

/// A publisher at QoS 1 whose event loop runs in its own task.
async fn publisher(port: u16, id: &str) -> anyhow::Result<AsyncClient> {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(1 << 20, 1 << 20);
    options.set_inflight(1_000);
    // Nagle off, as Trackside's own clients: with it on, every latency
    // figure would depend on when the server's PUBACKs happen to go out.
    let (client, mut eventloop) = trackside::ingest::mqtt_client(options, 10_000);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::ConnAck(_)) = event
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(());
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .context("no CONNACK")??;
    Ok(client)
}

fn single_payload(n: usize) -> String {
    let (channel, ts) = sample(n, CHANNELS);
    let value = healthy(n, 10.0);
    format!(r#"{{"readings":[{{"channel":"S{channel}/feed_voltage","value":{value},"ts":{ts}}}]}}"#)
}

/// Issue 14's burst: `count` single-reading QoS 1 messages from one
/// client, published as fast as PUBACKs come back; then every acknowledged
/// reading must be in PostgreSQL. Before the MQTT front, rumqttd
/// acknowledged from its memory log and a burst overran it: 353,769 of
/// 1,000,000 acknowledged readings were stored.
async fn burst(server: &Server, count: usize) -> anyhow::Result<Row> {
    const GATEWAY: &str = "bench-burst";
    let mut options = MqttOptions::new(GATEWAY, "127.0.0.1", server.mqtt_port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(1_000);
    let (client, mut eventloop) = trackside::ingest::mqtt_client(options, 10_000);
    let acked = Arc::new(AtomicUsize::new(0));
    let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
    let events = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut connected = Some(connected_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = connected.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(err) => return Some(err.to_string()),
                }
            }
        })
    };
    tokio::time::timeout(Duration::from_secs(10), connected_rx)
        .await
        .context("no CONNACK for the burst")??;
    let started = Instant::now();
    for n in 0..count {
        let channel = n % CHANNELS;
        let ts = T0_MS + 86_400_000 + n as i64;
        let value = healthy(n, 10.0);
        let payload = format!(
            r#"{{"readings":[{{"channel":"U{channel}/feed_voltage","value":{value},"ts":{ts}}}]}}"#
        );
        client
            .publish(
                format!("trackside/{GATEWAY}/readings"),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await?;
    }
    while acked.load(Ordering::Relaxed) < count {
        if events.is_finished() {
            let error = events.await.ok().flatten().unwrap_or_default();
            bail!("the burst's connection ended: {error}");
        }
        ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "only {acked:?} of {count} acknowledged in 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let acked = acked.load(Ordering::Relaxed);
    let count_stored = || {
        server
            .psql(&format!(
                "SELECT count(*) FROM readings r JOIN channels c ON c.id = r.channel_id \
                 WHERE c.gateway_id = '{GATEWAY}'"
            ))
            .map(|(_, out)| out.trim().parse::<usize>().unwrap_or(0))
    };
    // Acknowledged means durable, not yet stored: wait for the writer.
    let (mut stored, mut last_change) = (count_stored()?, Instant::now());
    while stored < acked && last_change.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = count_stored()?;
        if now > stored {
            (stored, last_change) = (now, Instant::now());
        }
    }
    println!(
        "  burst: {count} QoS 1 messages published and {acked} acknowledged in {seconds:.1} s \
         ({:.0} msg/s); {stored} stored in PostgreSQL after {:.1} s",
        acked as f64 / seconds,
        started.elapsed().as_secs_f64()
    );
    Ok(Row {
        what: format!(
            "QoS 1 burst, {count} single-reading msgs, one client: stored of acknowledged"
        ),
        value: format!(
            "{stored} of {acked}, acked in {seconds:.1} s ({:.0} msg/s)",
            acked as f64 / seconds
        ),
        baseline: "before the front: 353,769 of 1,000,000 (issue 14)".to_owned(),
        target: "all".to_owned(),
        met: stored == acked && acked == count,
    })
}

/// Mosquitto's publisher-to-subscriber rate for `count` messages.
async fn relay_rate(port: u16, count: usize) -> anyhow::Result<f64> {
    let mut options = MqttOptions::new("bench-sub", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (subscriber, mut eventloop) = trackside::ingest::mqtt_client(options, 100);
    subscriber.subscribe("bench/#", QoS::AtLeastOnce).await?;
    let received = Arc::new(AtomicUsize::new(0));
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    {
        let received = received.clone();
        tokio::spawn(async move {
            let mut subscribed = Some(subscribed_tx);
            while let Ok(event) = eventloop.poll().await {
                match event {
                    Event::Incoming(Packet::SubAck(_)) => {
                        if let Some(tx) = subscribed.take() {
                            let _ = tx.send(());
                        }
                    }
                    Event::Incoming(Packet::Publish(_)) => {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
        .await
        .context("no SUBACK from mosquitto")??;
    let client = publisher(port, "bench-pub").await?;
    let started = Instant::now();
    for n in 0..count {
        client
            .publish("bench/readings", QoS::AtLeastOnce, false, single_payload(n))
            .await?;
    }
    let deadline = started + Duration::from_secs(300);
    while received.load(Ordering::Relaxed) < count {
        ensure!(
            Instant::now() < deadline,
            "mosquitto relayed only {received:?} of {count}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    println!("  mosquitto relayed {count} messages: {rate:.0} msg/s");
    Ok(rate)
}

/// Single-reading message rates of two servers, measured in four
/// alternating rounds of `messages / 4` each (so a change in the machine's
/// load hits both), with the spool fsyncs each made.
async fn alternate(servers: &[Server], messages: usize) -> anyhow::Result<[f64; 2]> {
    ensure!(servers.len() == 2, "two servers to compare");
    let round = (messages / 4).max(1);
    let mut seconds = [0.0; 2];
    let fsyncs = [servers[0].fsyncs().await?, servers[1].fsyncs().await?];
    for r in 0..4 {
        for i in [r % 2, 1 - r % 2] {
            seconds[i] += round as f64 / stored_rate(&servers[i], round, 1).await?;
        }
    }
    for (server, before) in servers.iter().zip(fsyncs) {
        server.print_fsyncs(before, 4 * round).await?;
    }
    Ok(seconds.map(|s| 4.0 * round as f64 / s))
}

/// Readings per second from the first publish until the server reports
/// `readings` more stored. `per_message` readings go in each message;
async fn stored_rate(server: &Server, readings: usize, per_message: usize) -> anyhow::Result<f64> {
    let before = server.metric("trackside_readings_stored_total").await?;
    // The gateway's id is its topic's: the MQTT front refuses any other.
    let client = publisher(server.mqtt_port, "bench").await?;
    let messages = readings.div_ceil(per_message);
    // Every call sends readings no call sent before (a later sample time):
    // repeated ones would be duplicates, never counted as stored.
    static SENT: AtomicUsize = AtomicUsize::new(0);
    let base = SENT.fetch_add(
        (messages * per_message).next_multiple_of(BATCH_CHANNELS),
        Ordering::Relaxed,
    );
    // Payloads are built before the clock starts, as a gateway builds them
    // on its own hardware: the bench shares the server's two cores, and
    // formatting a million readings here would be charged to ingest. No
    // pacing is needed: the front acknowledges a reading only once it is
    // durable, so the client's in-flight window is the back-pressure.
    let payloads: Vec<String> = (0..messages)
        .map(|m| {
            if per_message == 1 {
                single_payload(base + m)
            } else {
                let first = base + m * per_message;
                let body: Vec<String> = (first..first + per_message)
                    .map(|n| {
                        let (channel, ts) = sample(n, BATCH_CHANNELS);
                        let value = healthy(n, 1.0);
                        format!(
                            r#"{{"channel":"B{channel}/feed_current","value":{value},"ts":{ts}}}"#
                        )
                    })
                    .collect();
                format!(r#"{{"readings":[{}]}}"#, body.join(","))
            }
        })
        .collect();
    let busy_before = server
        .metric("trackside_store_batch_microseconds_total")
        .await?;
    let started = Instant::now();
    for payload in payloads {
        client
            .publish("trackside/bench/readings", QoS::AtLeastOnce, false, payload)
            .await?;
    }
    let target = before + (messages * per_message) as f64;
    let (mut last, mut last_change) = (before, Instant::now());
    loop {
        let stored = server.metric("trackside_readings_stored_total").await?;
        if stored >= target {
            break;
        }
        if stored > last {
            (last, last_change) = (stored, Instant::now());
        }
        // Nothing stored for a while and not all there: messages were lost
        // between the publisher and ingest (the broker's log overflowed).
        ensure!(
            last_change.elapsed() < Duration::from_secs(15),
            "stalled at {} of {} readings: the broker dropped messages ingest did not read in time",
            stored - before,
            target - before
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = (messages * per_message) as f64 / elapsed;
    let busy = (server
        .metric("trackside_store_batch_microseconds_total")
        .await?
        - busy_before)
        / 1e6;
    println!(
        "  trackside stored {} readings in messages of {per_message}: {rate:.0} readings/s \
         (store writer in PostgreSQL {:.0} % of the time)",
        messages * per_message,
        100.0 * busy / elapsed
    );
    Ok(rate)
}

impl Server {
    /// Runs one psql command against the server's PostgreSQL; returns how
    /// long it took and what it printed.
    fn psql(&self, sql: &str) -> anyhow::Result<(Duration, String)> {
        let started = Instant::now();
        let output = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.data_dir.join("postgres"))
            .args(["-p", "5432", "-U", "trackside", "-d", "postgres", "-c", sql])
            .output()
            .context("running psql")?;
        ensure!(
            output.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok((
            started.elapsed(),
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        ))
    }

    /// After one side of a batched round (its work began at `before`):
    /// waits for the rollup, then prints the CPU each process used while
    /// working and while rolling up, and the autovacuum runs meanwhile.
    fn report_round(&self, working: &str, before: &CpuSplit) -> anyhow::Result<()> {
        let pid = self.process.0.id();
        let done = CpuSplit::now(pid)?;
        let vacuumed = self.autovacuum_runs()?;
        self.rollup_settled()?;
        println!(
            "    while {working}: {}; then until rolled up: {}; {}",
            done.since(before),
            CpuSplit::now(pid)?.since(&done),
            self.autovacuum_runs()?.since(&vacuumed)
        );
        Ok(())
    }

    /// Autovacuum's runs so far over every table: its work is PostgreSQL
    /// CPU time that neither side of the batched phase asked for.
    fn autovacuum_runs(&self) -> anyhow::Result<AutovacuumRuns> {
        let (_, counts) = self.psql(
            "SELECT coalesce(sum(autovacuum_count), 0) || ' ' || coalesce(sum(autoanalyze_count), 0) \
             FROM pg_stat_user_tables",
        )?;
        let mut counts = counts.split_whitespace().map(str::parse::<u64>);
        match (counts.next(), counts.next()) {
            (Some(Ok(vacuums)), Some(Ok(analyzes))) => Ok(AutovacuumRuns { vacuums, analyzes }),
            _ => bail!("unexpected autovacuum counts"),
        }
    }

    /// Waits until no autovacuum worker runs: after the batched phase's
    /// millions of rows, vacuuming `readings` takes minutes of a core, and
    /// a latency phase measured meanwhile measures that.
    fn autovacuum_settled(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(900);
        while self
            .psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")?
            .1
            != "0"
        {
            ensure!(
                Instant::now() < deadline,
                "autovacuum still running after 15 minutes"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(started.elapsed())
    }

    /// Waits until the rollup job has no dirty minute left, so one phase's
    /// rollup work does not land in the next phase's time.
    fn rollup_settled(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.psql("SELECT count(*) FROM rollup_dirty")?.1 != "0" {
            ensure!(
                Instant::now() < deadline,
                "the rollup did not catch up within 5 minutes"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// psql's `\copy` of the batched phase's rows (under channel ids no
    /// gateway uses) into `table`: `readings` itself, or `bench_copy`, a
    /// copy of it without the trigger.
    fn psql_copy_rate(&self, work: &Path, rows: usize, table: &str) -> anyhow::Result<f64> {
        let csv = work.join("copy.csv");
        let mut text = String::with_capacity(rows * 48);
        for n in 0..rows {
            let (channel, ts) = sample(n, BATCH_CHANNELS);
            let ts = chrono::DateTime::from_timestamp_millis(ts).context("timestamp")?;
            text.push_str(&format!(
                "{},{},{}\n",
                1_000_000 + channel,
                ts.format("%Y-%m-%d %H:%M:%S%.3f+00"),
                healthy(n, 1.0)
            ));
        }
        std::fs::write(&csv, text)?;
        self.psql(
            "DROP TABLE IF EXISTS bench_copy; CREATE TABLE bench_copy (LIKE readings INCLUDING ALL)",
        )?;
        self.psql("DELETE FROM readings WHERE channel_id >= 1000000")?;
        let (elapsed, _) = self.psql(&format!(
            "\\copy {table} (channel_id, ts, value) FROM '{}' WITH (FORMAT csv)",
            csv.display()
        ))?;
        let rate = rows as f64 / elapsed.as_secs_f64();
        println!("  psql \\copy of {rows} rows into {table}: {rate:.0} rows/s");
        self.psql("DROP TABLE bench_copy")?;
        Ok(rate)
    }
}

/// The `"value"` numbers of a readings frame, in order.
fn values(frame: &str) -> impl Iterator<Item = f64> + '_ {
    frame.split("\"value\":").skip(1).filter_map(|rest| {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        rest[..end].parse().ok()
    })
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// The latency phase's channels carry their send time in their value, as
/// a healthy feed voltage: `SEND_TIME_BASE` volts plus the send time's
/// microseconds modulo `SEND_TIME_WRAP`, scaled into one volt. Latencies up
/// to 100 s are told apart, and no value trips a limit.
const SEND_TIME_BASE: f64 = 10.0;
const SEND_TIME_WRAP: u64 = 100_000_000;

fn send_time_value(micros: u64) -> f64 {
    SEND_TIME_BASE + (micros % SEND_TIME_WRAP) as f64 / SEND_TIME_WRAP as f64
}

/// Microseconds from the send time `value` carries to `received_micros`;
/// `None` for a value sent before `started_micros`: the latest values a
/// subscription starts with, left by an earlier run.
fn latency_micros(value: f64, received_micros: u64, started_micros: u64) -> Option<u64> {
    let sent = ((value - SEND_TIME_BASE) * SEND_TIME_WRAP as f64).round() as u64;
    let received = received_micros % SEND_TIME_WRAP;
    let age = (received + SEND_TIME_WRAP - sent) % SEND_TIME_WRAP;
    (age <= received_micros.saturating_sub(started_micros)).then_some(age)
}

/// A reader's latencies, counted in 10 µs buckets up to a second; longer
/// ones are kept as they are. Readers that pushed every sample into a
/// growing Vec all reallocated at the same moments (they take the same
/// readings, so their Vecs double in step), which showed as spikes at
/// fixed times into every run.
struct Latencies {
    buckets: Vec<u32>,
    longer: Vec<u64>,
    count: usize,
}

const BUCKET_MICROS: u64 = 10;

impl Latencies {
    fn new() -> Self {
        Self {
            buckets: vec![0; 100_000],
            longer: Vec::new(),
            count: 0,
        }
    }

    fn record(&mut self, micros: u64) {
        match self.buckets.get_mut((micros / BUCKET_MICROS) as usize) {
            Some(bucket) => *bucket += 1,
            None => self.longer.push(micros),
        }
        self.count += 1;
    }

    fn merge(&mut self, other: Latencies) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.longer.extend(other.longer);
        self.count += other.count;
    }

    /// The `q` quantile in milliseconds (a bucket's middle).
    fn quantile_ms(&mut self, q: f64) -> f64 {
        let rank = ((self.count.saturating_sub(1)) as f64 * q) as usize;
        let mut seen = 0;
        for (index, &count) in self.buckets.iter().enumerate() {
            seen += count as usize;
            if seen > rank {
                return (index as u64 * BUCKET_MICROS + BUCKET_MICROS / 2) as f64 / 1000.0;
            }
        }
        self.longer.sort_unstable();
        self.longer
            .get(rank - seen)
            .map_or(f64::NAN, |&micros| micros as f64 / 1000.0)
    }
}

/// Publishes `rate` messages/s of `per_message` readings for `seconds`
/// while `clients` WebSocket clients read; each reading's value carries
/// its send time.
async fn latency(
    server: &Server,
    rate: usize,
    per_message: usize,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<(f64, f64, usize)> {
    let ws_url = server.http.replace("http://", "ws://") + "/ws";
    let started = now_micros();
    let mut readers = Vec::new();
    for _ in 0..clients {
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                ws_url.as_str(),
            )?;
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {}", server.token).parse()?);
        // tungstenite zeroes its whole read buffer (128 KiB unless told)
        // before every read, which a browser does not: at 50 readers and
        // a thousand frames a second that took a seventh of a core from
        // the machine the server is measured on.
        let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
        let (mut socket, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), false).await?;
        let subscribe = r#"{"type":"subscribe","channels":["L*"]}"#;
        futures_util::SinkExt::send(&mut socket, Message::Text(subscribe.into())).await?;
        readers.push(tokio::spawn(async move {
            let mut samples = Latencies::new();
            while let Some(Ok(frame)) = socket.next().await {
                let Message::Text(text) = frame else { continue };
                if !text.starts_with(r#"{"type":"readings""#) {
                    continue;
                }
                let received = now_micros();
                // Only "L" channels are subscribed, and each reading's value
                // carries its send time. Scanning for the values instead of
                // deserialising every frame keeps the 50 readers' parsing
                // (a million readings a second on the server's two cores)
                // out of the figure.
                for value in values(&text) {
                    if value < 0.0 {
                        return samples;
                    }
                    if let Some(micros) = latency_micros(value, received, started) {
                        samples.record(micros);
                    }
                }
            }
            samples
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = publisher(server.mqtt_port, "bench").await?;
    let frames_before = server.metric("trackside_live_frames_total").await?;
    let cpu_before = CpuSplit::now(server.process.0.id())?;
    let total = rate * seconds as usize;
    // Each run its own times, so no reading repeats an earlier run's.
    let t0 = T0_MS + 60_000 * per_message as i64;
    let started = Instant::now();
    for n in 0..total {
        let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let sent = send_time_value(now_micros());
        let readings: Vec<String> = (0..per_message)
            .map(|i| {
                let k = n * per_message + i;
                format!(
                    r#"{{"channel":"L{}/feed_voltage","value":{sent},"ts":{}}}"#,
                    k % CHANNELS,
                    t0 + (k / CHANNELS) as i64
                )
            })
            .collect();
        let payload = format!(r#"{{"readings":[{}]}}"#, readings.join(","));
        client
            .publish("trackside/bench/readings", QoS::AtLeastOnce, false, payload)
            .await?;
    }
    // A negative value tells every reader to stop.
    let stop = format!(
        r#"{{"readings":[{{"channel":"L0/feed_voltage","value":-1,"ts":{}}}]}}"#,
        t0 - 1
    );
    client
        .publish("trackside/bench/readings", QoS::AtLeastOnce, false, stop)
        .await?;
    let mut samples = Latencies::new();
    for reader in readers {
        match tokio::time::timeout(Duration::from_secs(60), reader).await {
            Ok(Ok(got)) => samples.merge(got),
            _ => bail!("a WebSocket reader did not finish"),
        }
    }
    ensure!(samples.count > 0, "no latency samples");
    let cpu = CpuSplit::now(server.process.0.id())?.since(&cpu_before);
    let frames = server.metric("trackside_live_frames_total").await? - frames_before;
    let (p50, p99, max) = (
        samples.quantile_ms(0.5),
        samples.quantile_ms(0.99),
        samples.quantile_ms(1.0),
    );
    println!(
        "  latency, {rate} msg/s of {per_message} to {clients} clients: {} readings timed, \
         p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms; {:.0} frames/s; {cpu}",
        samples.count,
        frames / seconds as f64,
    );
    Ok((p50, p99, samples.count))
}

/// A broker's resident memory growth per 1,000 idle MQTT connections.
async fn idle_memory(
    port: u16,
    rss_kib: impl Fn() -> anyhow::Result<f64>,
    count: usize,
) -> anyhow::Result<f64> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib()?;
    let mut clients = Vec::with_capacity(count);
    for i in 0..count {
        let mut options = MqttOptions::new(format!("idle-{i}"), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(60));
        let (client, mut eventloop) = trackside::ingest::mqtt_client(options, 1);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(Packet::ConnAck(_)) = event
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .with_context(|| format!("idle connection {i} got no CONNACK"))??;
        clients.push((client, task));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib()?;
    let per_thousand = (after - before) / 1024.0 * 1000.0 / count as f64;
    println!(
        "  {count} idle connections: RSS {:.1} MB -> {:.1} MB",
        before / 1024.0,
        after / 1024.0
    );
    for (_, task) in clients {
        task.abort();
    }
    Ok(per_thousand)
}

struct Row {
    what: String,
    value: String,
    baseline: String,
    target: String,
    met: bool,
}

impl Row {
    fn ratio(
        what: &str,
        value: f64,
        baseline_name: &str,
        baseline: f64,
        target: &str,
        met: bool,
    ) -> Self {
        Self {
            what: what.to_owned(),
            value: format!("{value:.0}"),
            baseline: format!("{baseline_name} {baseline:.0} ({:.2}×)", value / baseline),
            target: target.to_owned(),
            met,
        }
    }

    fn plain(what: &str, value: f64, target: &str, met: bool) -> Self {
        Self {
            what: what.to_owned(),
            value: format!("{value:.2}"),
            baseline: String::new(),
            target: target.to_owned(),
            met,
        }
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| measure | value | baseline (same run) | target | met |");
    println!("|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            row.what,
            row.value,
            row.baseline,
            row.target,
            if row.met { "yes" } else { "no" }
        );
    }
}

/// The middle value (the upper one of an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}
