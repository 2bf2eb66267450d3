//! Configuration: one TOML file, then environment variables, then flags.
//!
//! Every field has a default that runs, so `trackside` with no file and no
//! flags starts a working server (with its own private PostgreSQL).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub yard: YardConfig,
    pub http: HttpConfig,
    pub mqtt: MqttConfig,
    pub database: DatabaseConfig,
    pub ingest: IngestConfig,
    pub demo: DemoConfig,
    pub exceptions: crate::exceptions::ExceptionsConfig,
    pub history: HistoryConfig,
    pub forecast: ForecastConfig,
    pub auth: crate::auth::AuthConfig,
    pub health: crate::health::HealthConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct YardConfig {
    pub name: String,
    /// IANA zone the yard works in; the app shows times in it, with UTC beside.
    pub timezone: String,
    /// The yard's layout file, drawn by the diagram (docs/layout.md).
    /// Absent: `layout.toml` in the data directory, if there is one; the
    /// demo writes its own there. Replacing the layout from the app writes
    /// this file.
    pub layout: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// The built app (`cargo xtask frontend` writes it to target/site).
    pub assets_dir: PathBuf,
    /// The origins (`scheme://host[:port]`) browsers load the app from.
    /// `/ws` and every state-changing request must come from one of them
    /// (their `Origin` header), or they are refused: a web page elsewhere
    /// cannot act with an operator's session. Empty: the listen address,
    /// this host's names and addresses, and `localhost`, on the listen
    /// port. Behind a reverse proxy, name the address users type, as in
    /// `["https://trackside.yard.example"]`.
    pub public_origins: Vec<String>,
    /// PEM certificate chain and private key: with both, the app, the API
    /// and `/ws` are served over HTTPS (rustls) on `listen`, and the
    /// session cookie is marked `Secure`. The files are read again when
    /// they change, so a renewed certificate needs no restart.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Addresses (or `address/prefix` ranges) of reverse proxies whose
    /// `X-Forwarded-For` header names the client. Sign-in throttling and
    /// the audit trail use that address; from anyone else the header is
    /// ignored.
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Plain MQTT listener (3.1.1 and 5), with a password. On loopback by
    /// default: the password travels in clear. Every listener is Trackside's
    /// MQTT front (`ingest::front`), which keeps each gateway to its own
    /// topics; gateways on the network use `tls_listen`.
    pub listen: SocketAddr,
    /// A second plain listener, like `listen` (it was rumqttd's MQTT 5 port;
    /// every listener now serves both versions). `"off"` serves none.
    #[serde(deserialize_with = "listener_or_off")]
    pub listen_v5: Option<SocketAddr>,
    /// MQTT 3.1.1 and 5 over mutual TLS: a gateway's certificate names it
    /// (its Organization), and its client id must be that gateway.
    /// `"off"` serves none.
    #[serde(deserialize_with = "listener_or_off")]
    pub tls_listen: Option<SocketAddr>,
    /// Host names and addresses gateways use to reach the TLS listener, put
    /// in its certificate. Empty: `localhost`, `127.0.0.1` and this
    /// machine's host name.
    pub tls_server_names: Vec<String>,
    /// Where the CA and the server certificate live. Empty: `pki` in the
    /// data directory. With `ca.crt`, `server.crt`, `server.key` and no
    /// `ca.key` there, an operator's own PKI is used as it is.
    pub tls_dir: Option<PathBuf>,
    /// Accept clients without credentials. Off in production: any client
    /// could then publish as any gateway.
    pub allow_anonymous: bool,
    pub max_connections: usize,
    pub max_payload_bytes: usize,
    /// In-flight QoS 1/2 messages per connection: at most this many
    /// readings of one gateway await durability before the front stops
    /// reading its connection. With a PUBACK only after the spool's fsync,
    /// one connection carries about this many readings per fsync cycle;
    /// each costs the front a few bytes (the readings themselves are in
    /// the spool and the store queue, under their own bounds).
    pub max_inflight: usize,
    /// How long a new connection may take for its TLS handshake, and
    /// again for its CONNECT.
    pub connect_timeout_ms: u16,
    /// The broker keeps, per subscription filter, an in-memory log of
    /// `segment_bytes * segment_count`; a reader that falls further behind
    /// loses the oldest segment. Readings no longer pass through it (the
    /// front hands them to ingest), only statuses and what gateways
    /// subscribe to. rumqttd's sample (100 MiB x 10) can grow to about
    /// 1 GiB per filter.
    pub segment_bytes: usize,
    pub segment_count: usize,
    /// Take readings from another MQTT broker instead of running one. The
    /// embedded broker then does not start, and that broker's own
    /// configuration (users, topic ACLs, TLS) governs the gateways.
    pub external: Option<ExternalBroker>,
}

/// An MQTT broker Trackside subscribes to, such as Mosquitto: for yards with
/// more gateways than the embedded broker holds cheaply, or a broker that
/// is already there.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalBroker {
    /// `host:port` of its plain MQTT listener.
    pub address: String,
    /// The client id of Trackside's persistent session: the broker keeps
    /// what arrives for it while Trackside is down, and it is delivered at
    /// the next start. Two instances must not share it.
    #[serde(default = "ExternalBroker::default_client_id")]
    pub client_id: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Scale out (docs/scaling.md): every instance on the database sets the
    /// same group and its own `client_id`; readings are then taken through
    /// the shared subscription `$share/{group}/trackside/#`, each stored by
    /// one instance, and shown and judged through a second, plain QoS 0
    /// subscription on every instance.
    #[serde(default)]
    pub share_group: Option<String>,
    /// Keep Trackside's session at the broker while it is away (the
    /// default). Scaled out, this decides what a dead instance's share
    /// does (measured in docs/scaling.md): persistent, Mosquitto goes on
    /// giving it a share, queued (up to its `max_queued_messages`) until
    /// the instance returns; clean (`false`), the group drops it at once
    /// and the others take everything, but what the broker had sent it
    /// unacknowledged (its in-flight window) is lost.
    #[serde(default = "ExternalBroker::default_persistent_session")]
    pub persistent_session: bool,
}

/// The password stays out of logs and error reports.
impl std::fmt::Debug for ExternalBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalBroker")
            .field("address", &self.address)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("share_group", &self.share_group)
            .finish()
    }
}

impl ExternalBroker {
    fn default_client_id() -> String {
        "trackside".into()
    }

    fn default_persistent_session() -> bool {
        true
    }

    /// The host and port of `address`.
    pub fn host_port(&self) -> anyhow::Result<(&str, u16)> {
        let (host, port) = self.address.rsplit_once(':').with_context(|| {
            format!(
                "mqtt.external.address {:?} needs a port, as in \"broker.yard.local:1883\"",
                self.address
            )
        })?;
        let port = port.parse().with_context(|| {
            format!(
                "mqtt.external.address {:?}: {port:?} is not a port",
                self.address
            )
        })?;
        anyhow::ensure!(
            !host.is_empty(),
            "mqtt.external.address {:?} names no host",
            self.address
        );
        Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// A PostgreSQL URL. Without one, Trackside runs a private cluster under
    /// `data_dir` and stops it on exit.
    pub url: Option<String>,
    pub data_dir: PathBuf,
    /// Where `initdb` and `pg_ctl` live, when not in the usual Debian place.
    pub pg_bin_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Readings the store writer may hold in memory, queued or being
    /// written. A message that does not fit waits in the spool alone and is
    /// read back from there, so this bounds memory, not what is stored.
    pub store_queue_readings: usize,
    /// Most readings written in one statement.
    pub store_batch_rows: usize,
    /// Messages buffered per WebSocket client before it is marked lagged.
    pub live_queue: usize,
    /// A WebSocket client whose socket accepts nothing for this long is
    /// disconnected.
    pub live_send_timeout_secs: u64,
    /// Readings stamped further than this ahead of the server's clock are
    /// rejected: a gateway with a wrong clock must not become "latest" forever.
    pub max_future_secs: i64,
    /// Group commit of the spool: one fsync covers every message appended
    /// within this many milliseconds, so a power cut loses at most this
    /// window plus one fsync of what reached the spool. With an external
    /// broker, a message is acknowledged only once covered. `"off"` never
    /// fsyncs (a process crash still loses nothing written).
    #[serde(deserialize_with = "millis_or_off")]
    pub spool_fsync_ms: Option<u64>,
    /// The spool's bound on disk. At 80 % a warning exception is raised;
    /// at the bound, with the embedded broker, the oldest unstored readings
    /// are dropped (counted), and with an external broker new messages are
    /// left unacknowledged there. About 36 bytes a reading: 4 GiB holds a
    /// day and a half of 1,000 readings/s.
    pub spool_max_bytes: u64,
    /// Channels one gateway may register; a reading for a new channel past
    /// it is rejected (reason `bound`). Sized for a large yard.
    pub max_channels_per_gateway: usize,
    /// Parameter names accepted besides the known table
    /// (`trackside_wire::PARAMETERS`); a reading of any other is rejected.
    pub extra_parameters: Vec<String>,
    /// Rejected messages kept for inspection are deleted after this many
    /// days; 0 keeps them.
    pub rejected_retention_days: u32,
    /// Channels owned by a gateway ahead of its first reading: no other
    /// gateway may write them, and an admin cannot reassign them.
    pub pins: Vec<Pin>,
    /// Sparkplug B edge nodes (`spBv1.0/...`): bounds and channel mapping.
    pub sparkplug: SparkplugConfig,
}

/// `[ingest.sparkplug]`: what Trackside keeps per Sparkplug B edge node
/// (its birth certificate's aliases and its sequence numbers), with its
/// bounds, and how metric names map to channels (docs/gateways.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SparkplugConfig {
    /// Edge nodes with a session kept; a birth from one more is rejected
    /// (reason `bound`) until one dies.
    pub max_nodes: usize,
    /// Devices one edge node may announce (DBIRTH).
    pub max_devices_per_node: usize,
    /// Metrics (aliases) one edge node and its devices may declare at birth.
    pub max_aliases_per_node: usize,
    /// Metrics in one payload; a payload with more is rejected whole.
    pub max_metrics_per_payload: usize,
    /// Publish `NCMD` `Node Control/Rebirth` to a node whose sequence
    /// broke or that sent data before its birth (Sparkplug 3.0), at most
    /// once per node every `rebirth_interval_secs`.
    pub rebirth: bool,
    pub rebirth_interval_secs: u64,
    /// `[[ingest.sparkplug.nodes]]`: per edge node (and device) mapping.
    pub nodes: Vec<SparkplugNode>,
}

/// One edge node's (or one of its devices') mapping of metric names to
/// channels. A metric it does not list follows the default rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparkplugNode {
    /// The Sparkplug group id; absent: any group.
    #[serde(default)]
    pub group: Option<String>,
    /// The edge node id, which is its gateway id.
    pub edge_node: String,
    /// A device of the node; absent: the node's own metrics, and every
    /// device without an entry of its own.
    #[serde(default)]
    pub device: Option<String>,
    /// The circuit a metric named by its parameter alone belongs to
    /// (default: the device id).
    #[serde(default)]
    pub circuit: Option<String>,
    /// Metric name -> `parameter` (of `circuit`) or `circuit/parameter`.
    #[serde(default)]
    pub metrics: std::collections::BTreeMap<String, String>,
}

impl Default for SparkplugConfig {
    fn default() -> Self {
        Self {
            max_nodes: 1_000,
            max_devices_per_node: 256,
            max_aliases_per_node: 10_000,
            max_metrics_per_payload: 10_000,
            rebirth: true,
            rebirth_interval_secs: 10,
            nodes: Vec::new(),
        }
    }
}

impl SparkplugConfig {
    fn validate(&self) -> anyhow::Result<()> {
        use trackside_wire::ChannelName;
        for (name, value) in [
            ("max_nodes", self.max_nodes),
            ("max_devices_per_node", self.max_devices_per_node),
            ("max_aliases_per_node", self.max_aliases_per_node),
            ("max_metrics_per_payload", self.max_metrics_per_payload),
        ] {
            anyhow::ensure!(
                (1..=1_000_000).contains(&value),
                "ingest.sparkplug.{name} must be between 1 and 1000000"
            );
        }
        anyhow::ensure!(
            (1..=3_600).contains(&self.rebirth_interval_secs),
            "ingest.sparkplug.rebirth_interval_secs must be between 1 and 3600"
        );
        for node in &self.nodes {
            let id = |text: &str| {
                (1..=64).contains(&text.len())
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            };
            anyhow::ensure!(
                id(&node.edge_node),
                "ingest.sparkplug.nodes: edge_node {:?} is not a gateway id (1 to 64 of letters, digits, `_`, `-`, `.`)",
                node.edge_node
            );
            if let Some(circuit) = &node.circuit {
                anyhow::ensure!(
                    ChannelName::from_parts(circuit, "relay_state").is_ok(),
                    "ingest.sparkplug.nodes for {:?}: circuit {circuit:?} is not a circuit name",
                    node.edge_node
                );
            }
            for (metric, target) in &node.metrics {
                let valid = match target.split_once('/') {
                    Some(_) => ChannelName::parse(target).is_ok(),
                    // A parameter needs a circuit: the entry's, or its device id.
                    None => {
                        ChannelName::from_parts("X", target).is_ok()
                            && (node.circuit.is_some() || node.device.is_some())
                    }
                };
                anyhow::ensure!(
                    valid,
                    "ingest.sparkplug.nodes for {:?}: metric {metric:?} maps to {target:?}, which is \
                     neither `circuit/parameter` nor a parameter of the entry's circuit (set `circuit`)",
                    node.edge_node
                );
            }
        }
        Ok(())
    }
}

/// `[[ingest.pins]]`: channel patterns (`T101/*` pins a circuit) that
/// belong to one gateway.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub gateway: String,
    pub channels: Vec<String>,
}

/// Rollups and retention behind `GET /api/history` (see rollup.rs).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Raw readings older than this many days are deleted; 0 keeps them.
    pub raw_retention_days: u32,
    /// Minute rollups older than this many days are deleted; 0 keeps them.
    /// Hour rollups are kept for as long as the database holds them.
    pub minute_retention_days: u32,
    /// How often the plain-PostgreSQL rollup job looks for new readings. An
    /// answer is exact either way (a stale minute is read from raw rows);
    /// this bounds how many minutes are read that way.
    pub rollup_interval_ms: u64,
    /// `auto` uses TimescaleDB (hypertable, compression, retention policy,
    /// continuous aggregates) when the database server has the extension;
    /// `off` keeps the plain tables even then.
    pub timescaledb: TimescaleMode,
    /// TimescaleDB only: raw chunks older than this many days are compressed.
    pub compress_after_days: u32,
}

/// Forecasting models and the periodic forecaster (see forecast/).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForecastConfig {
    /// How often every channel of a trained kind is forecast, in seconds.
    pub interval_s: f64,
    /// The shape of models trained from now on; a saved model keeps its own.
    pub step_minutes: u32,
    pub window: usize,
    pub horizon: usize,
    pub hidden: usize,
    pub epochs: usize,
    pub learning_rate: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            interval_s: 60.0,
            step_minutes: 10,
            window: 48,
            horizon: 36,
            hidden: 32,
            epochs: 30,
            learning_rate: 0.003,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimescaleMode {
    Auto,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    pub enabled: bool,
    /// 0: the demo layout (Millbrook Yard); N: a generated yard of N
    /// circuits.
    pub circuits: usize,
    pub gateways: usize,
    /// Readings per second per analogue parameter.
    pub rate_hz: f64,
    /// Inject one fault at a time on a 56-minute cycle, so every exception
    /// rule shows up in the demo.
    pub faults: bool,
    /// Days of simulated history written at the first start (and the gap
    /// since the last run at later starts), so History and forecasting
    /// have a week to show; 0 writes none.
    pub backfill_days: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            yard: YardConfig::default(),
            http: HttpConfig::default(),
            mqtt: MqttConfig::default(),
            database: DatabaseConfig {
                url: None,
                data_dir: PathBuf::from("trackside-data"),
                pg_bin_dir: None,
            },
            ingest: IngestConfig::default(),
            demo: DemoConfig::default(),
            exceptions: crate::exceptions::ExceptionsConfig::default(),
            history: HistoryConfig::default(),
            forecast: ForecastConfig::default(),
            auth: crate::auth::AuthConfig::default(),
            health: crate::health::HealthConfig::default(),
        }
    }
}

impl Default for YardConfig {
    fn default() -> Self {
        Self {
            name: "Trackside yard".into(),
            timezone: "Europe/London".into(),
            layout: None,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            assets_dir: PathBuf::from("target/site"),
            public_origins: Vec::new(),
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            listen_v5: Some(SocketAddr::from(([127, 0, 0, 1], 1884))),
            tls_listen: Some(SocketAddr::from(([0, 0, 0, 0], 8883))),
            tls_server_names: Vec::new(),
            tls_dir: None,
            allow_anonymous: false,
            max_connections: 10_000,
            max_payload_bytes: 256 * 1024,
            max_inflight: 1_000,
            connect_timeout_ms: 5_000,
            segment_bytes: 4 * 1024 * 1024,
            segment_count: 8,
            external: None,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            store_queue_readings: 100_000,
            store_batch_rows: 10_000,
            live_queue: 1_024,
            live_send_timeout_secs: 10,
            max_future_secs: 10,
            spool_fsync_ms: Some(5),
            spool_max_bytes: 4 * 1024 * 1024 * 1024,
            max_channels_per_gateway: 5_000,
            extra_parameters: Vec::new(),
            rejected_retention_days: 7,
            pins: Vec::new(),
            sparkplug: SparkplugConfig::default(),
        }
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            circuits: 0,
            // The simulator's own defaults (its DEFAULT_* constants; a test
            // there checks): configuration sits below what it configures.
            gateways: 3,
            rate_hz: 2.0,
            faults: true,
            backfill_days: 7,
        }
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            raw_retention_days: 0,
            minute_retention_days: 0,
            rollup_interval_ms: 1_000,
            timescaledb: TimescaleMode::Auto,
            compress_after_days: 7,
        }
    }
}

impl Config {
    /// The MQTT TLS listener's certificates: `mqtt.tls_dir`, or `pki` in
    /// the data directory.
    pub fn tls_dir(&self) -> PathBuf {
        self.mqtt
            .tls_dir
            .clone()
            .unwrap_or_else(|| self.database.data_dir.join("pki"))
    }

    /// Reads a TOML file; every key it leaves out keeps its default.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("in config file {}", path.display()))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(external) = &self.mqtt.external {
            external.host_port()?;
            anyhow::ensure!(
                !external.client_id.is_empty(),
                "mqtt.external.client_id must not be empty: the broker keeps Trackside's \
                 session under it"
            );
            anyhow::ensure!(
                !self.demo.enabled,
                "the demo yard publishes to the embedded broker: run --demo without \
                 [mqtt.external]"
            );
            if let Some(group) = &external.share_group {
                anyhow::ensure!(
                    !group.is_empty() && !group.contains(['/', '+', '#']),
                    "mqtt.external.share_group {group:?} must be a non-empty name without \
                     '/', '+' or '#' (for example \"trackside\"), the same on every instance"
                );
            }
        }
        anyhow::ensure!(
            self.mqtt.segment_bytes >= 1024,
            "mqtt.segment_bytes must be at least 1024 (rumqttd panics below that)"
        );
        anyhow::ensure!(
            self.mqtt.segment_count >= 1,
            "mqtt.segment_count must be at least 1"
        );
        anyhow::ensure!(
            self.mqtt.max_connections >= 1,
            "mqtt.max_connections must be at least 1"
        );
        anyhow::ensure!(
            (1..=u32::MAX as usize).contains(&self.ingest.store_queue_readings),
            "ingest.store_queue_readings must be between 1 and 4294967295"
        );
        anyhow::ensure!(
            self.ingest.store_batch_rows >= 1,
            "ingest.store_batch_rows must be at least 1"
        );
        anyhow::ensure!(
            self.ingest.live_queue >= 1,
            "ingest.live_queue must be at least 1"
        );
        // Beyond a day a wrong gateway clock is not a timing detail, and far
        // larger values overflow the time arithmetic.
        anyhow::ensure!(
            (0..=86_400).contains(&self.ingest.max_future_secs),
            "ingest.max_future_secs must be between 0 and 86400"
        );
        anyhow::ensure!(
            (1..=1_000_000).contains(&self.ingest.max_channels_per_gateway),
            "ingest.max_channels_per_gateway must be between 1 and 1000000"
        );
        for name in &self.ingest.extra_parameters {
            anyhow::ensure!(
                trackside_wire::ChannelName::parse(&format!("X/{name}")).is_ok(),
                "ingest.extra_parameters: {name:?} is not a valid parameter name"
            );
        }
        for pin in &self.ingest.pins {
            anyhow::ensure!(
                (1..=64).contains(&pin.gateway.len())
                    && pin
                        .gateway
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)),
                "ingest.pins: {:?} is not a gateway id (1 to 64 of letters, digits, `_`, `-`, `.`)",
                pin.gateway
            );
            anyhow::ensure!(
                !pin.channels.is_empty() && pin.channels.iter().all(|p| p.contains('/')),
                "ingest.pins for {:?}: channels must be patterns such as \"T101/*\"",
                pin.gateway
            );
        }
        self.ingest.sparkplug.validate()?;
        anyhow::ensure!(
            self.ingest.spool_fsync_ms.is_none_or(|ms| ms <= 1_000),
            "ingest.spool_fsync_ms must be between 0 and 1000 (or \"off\"): it is how much a power cut may lose"
        );
        anyhow::ensure!(
            self.ingest.spool_max_bytes >= crate::durable::MIN_BOUND,
            "ingest.spool_max_bytes must be at least {} (8 MiB)",
            crate::durable::MIN_BOUND
        );
        anyhow::ensure!(
            self.forecast.interval_s.is_finite() && self.forecast.interval_s >= 0.1,
            "forecast.interval_s must be at least 0.1"
        );
        anyhow::ensure!(
            self.forecast.epochs >= 1 && self.forecast.learning_rate > 0.0,
            "forecast.epochs must be at least 1 and forecast.learning_rate positive"
        );
        anyhow::ensure!(
            !self.yard.timezone.is_empty(),
            "yard.timezone must name an IANA zone"
        );
        anyhow::ensure!(
            self.demo.rate_hz > 0.0 && self.demo.rate_hz <= 1000.0,
            "demo.rate_hz must be in (0, 1000]"
        );
        anyhow::ensure!(
            self.demo.backfill_days <= 60,
            "demo.backfill_days must be at most 60"
        );
        anyhow::ensure!(
            self.http.tls_cert.is_some() == self.http.tls_key.is_some(),
            "http.tls_cert and http.tls_key go together: give both to serve HTTPS, or neither"
        );
        for origin in &self.http.public_origins {
            crate::auth::origin::check_configured(origin)?;
        }
        for proxy in &self.http.trusted_proxies {
            crate::auth::address::IpRange::parse(proxy)?;
        }
        self.exceptions.validate()?;
        self.history.validate()?;
        self.auth.validate()?;
        self.health.validate().map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

impl HistoryConfig {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (100..=60_000).contains(&self.rollup_interval_ms),
            "history.rollup_interval_ms must be between 100 and 60000"
        );
        // Minute rollups are computed from raw rows; deleting them first
        // would leave a stretch that only the hour rollup covers while raw
        // readings still exist.
        anyhow::ensure!(
            self.minute_retention_days == 0
                || (self.raw_retention_days != 0
                    && self.minute_retention_days >= self.raw_retention_days),
            "history.minute_retention_days must be 0 (keep) or at least raw_retention_days"
        );
        anyhow::ensure!(
            self.compress_after_days >= 1,
            "history.compress_after_days must be at least 1"
        );
        Ok(())
    }
}

/// Milliseconds, or `"off"`.
fn millis_or_off<'de, D: Deserializer<'de>>(value: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum MillisOrOff {
        Millis(u64),
        Text(String),
    }
    match MillisOrOff::deserialize(value)? {
        MillisOrOff::Millis(ms) => Ok(Some(ms)),
        MillisOrOff::Text(text) if text == "off" => Ok(None),
        MillisOrOff::Text(text) => Err(serde::de::Error::custom(format!(
            "{text:?} is neither a number of milliseconds nor \"off\""
        ))),
    }
}

/// An optional listener: an address such as `"0.0.0.0:8883"`, or `"off"`.
fn listener_or_off<'de, D: Deserializer<'de>>(text: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(text)?;
    if text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|err| {
        serde::de::Error::custom(format!(
            "{text:?} is neither an address such as \"0.0.0.0:8883\" nor \"off\": {err}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_external_broker_needs_a_host_and_port() {
        let config: Config = toml::from_str(
            "[mqtt.external]\naddress = \"broker.yard.local:1883\"\nusername = \"trackside\"\n",
        )
        .unwrap();
        let external = config.mqtt.external.as_ref().unwrap();
        assert_eq!(external.host_port().unwrap(), ("broker.yard.local", 1883));
        assert_eq!(external.client_id, "trackside");
        config.validate().unwrap();
        for bad in ["broker.yard.local", ":1883", "broker:mqtt"] {
            let config: Config =
                toml::from_str(&format!("[mqtt.external]\naddress = \"{bad}\"\n")).unwrap();
            assert!(config.validate().is_err(), "{bad}");
        }
        let config: Config =
            toml::from_str("[mqtt.external]\naddress = \"b:1883\"\npassword = \"s3cret\"\n")
                .unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
        let mut demo = config.clone();
        demo.demo.enabled = true;
        assert!(demo.validate().unwrap_err().to_string().contains("--demo"));
    }

    #[test]
    fn optional_listeners_can_be_switched_off() {
        let config: Config =
            toml::from_str("[mqtt]\nlisten_v5 = \"off\"\ntls_listen = \"off\"\n").unwrap();
        assert_eq!(
            (config.mqtt.listen_v5, config.mqtt.tls_listen),
            (None, None)
        );
        let moved: Config = toml::from_str("[mqtt]\ntls_listen = \"10.0.0.5:8884\"\n").unwrap();
        assert_eq!(
            moved.mqtt.tls_listen,
            Some("10.0.0.5:8884".parse().unwrap())
        );
        let err = toml::from_str::<Config>("[mqtt]\ntls_listen = \"of\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nor \"off\""), "{err}");
    }

    #[test]
    fn partial_file_keeps_defaults() {
        let config: Config = toml::from_str("[yard]\nname = \"Ashford West\"\n").unwrap();
        assert_eq!(config.yard.name, "Ashford West");
        assert_eq!(config.yard.timezone, "Europe/London");
        assert_eq!(config.mqtt.listen.port(), 1883);
        config.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = toml::from_str::<Config>("[mqtt]\nlisten_port = 1\n").unwrap_err();
        assert!(err.to_string().contains("listen_port"), "{err}");
    }

    #[test]
    fn a_future_allowance_beyond_a_day_is_refused() {
        let mut config = Config::default();
        config.ingest.max_future_secs = i64::MAX;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("max_future_secs"), "{err}");
        config.ingest.max_future_secs = 86_400;
        config.validate().unwrap();
    }

    #[test]
    fn minute_rollups_outlive_raw_readings() {
        let mut config = Config::default();
        config.history.raw_retention_days = 30;
        config.history.minute_retention_days = 7;
        assert!(config.validate().is_err());
        config.history.minute_retention_days = 90;
        config.validate().unwrap();
        config.history.raw_retention_days = 0;
        assert!(config.validate().is_err(), "raw kept forever, minutes not");
        let off: Config = toml::from_str("[history]\ntimescaledb = \"off\"\n").unwrap();
        assert_eq!(off.history.timescaledb, TimescaleMode::Off);
    }

    #[test]
    fn the_spool_fsync_window_is_milliseconds_or_off() {
        let config: Config = toml::from_str("[ingest]\nspool_fsync_ms = 20\n").unwrap();
        assert_eq!(config.ingest.spool_fsync_ms, Some(20));
        let off: Config = toml::from_str("[ingest]\nspool_fsync_ms = \"off\"\n").unwrap();
        assert_eq!(off.ingest.spool_fsync_ms, None);
        let err = toml::from_str::<Config>("[ingest]\nspool_fsync_ms = \"of\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"off\""), "{err}");
        let mut config = Config::default();
        config.ingest.spool_max_bytes = 1024;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("spool_max_bytes")
        );
    }

    #[test]
    fn tiny_segments_are_refused() {
        let mut config = Config::default();
        config.mqtt.segment_bytes = 100;
        assert!(config.validate().is_err());
    }
}

#[cfg(test)]
mod example_file {
    #[test]
    fn the_shipped_example_is_valid_and_matches_the_defaults() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../trackside.example.toml");
        let config = super::Config::from_file(&path).unwrap();
        config.validate().unwrap();
        let defaults = super::Config::default();
        assert_eq!(format!("{config:?}"), format!("{defaults:?}"));
    }
}
