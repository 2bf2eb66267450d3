//! Test harness: one private PostgreSQL cluster per test process, a fresh
//! database and a fresh server (on free ports) per test, and clients that
//! speak the real protocols.
//!
//! With `TRACKSIDE_TEST_DATABASE_URL` set (a role allowed to create
//! databases, on a server with TimescaleDB, say), every test database is
//! created on that server instead (`it_<pid>_<n>`, left for inspection),
//! so the whole suite runs against it and a server started on it takes
//! the TimescaleDB path. Tests that stop their database keep a private
//! cluster ([`OwnCluster`]).

use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};
use trackside::config::Config;
use trackside::store::embedded_pg::{Durability, EmbeddedPostgres};
use trackside_wire::{ClientMessage, Role, ServerMessage};

/// Long enough for a loaded CI machine, short enough to fail a hung test.
pub const DEADLINE: Duration = Duration::from_secs(20);

struct Cluster {
    // Field order is drop order: stop the server before removing its files.
    pg: EmbeddedPostgres,
    _dir: tempfile::TempDir,
}

static CLUSTER: Mutex<Option<Cluster>> = Mutex::new(None);
static DATABASES: AtomicUsize = AtomicUsize::new(0);

extern "C" fn stop_cluster() {
    if let Ok(mut cluster) = CLUSTER.lock() {
        cluster.take();
    }
}

/// The variable naming a PostgreSQL server to run the tests' databases on.
pub const DATABASE_URL_VAR: &str = "TRACKSIDE_TEST_DATABASE_URL";

/// Where test databases are created: the server `TRACKSIDE_TEST_DATABASE_URL`
/// names, or this process's cluster (started on first use).
async fn admin_options() -> PgConnectOptions {
    if let Ok(url) = std::env::var(DATABASE_URL_VAR) {
        return url
            .parse()
            .unwrap_or_else(|e| panic!("{DATABASE_URL_VAR} is not a PostgreSQL URL: {e}"));
    }
    tokio::task::spawn_blocking(|| {
        let mut cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
        if cluster.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("trackside-it-")
                .tempdir()
                .expect("creating a temporary directory");
            let pg = EmbeddedPostgres::start(dir.path(), None, Durability::Throwaway)
                .expect("starting the test PostgreSQL cluster");
            // The test harness exits through exit(), which runs this; the
            // cluster must not outlive the test process.
            unsafe { nix::libc::atexit(stop_cluster) };
            *cluster = Some(Cluster { pg, _dir: dir });
        }
        cluster.as_ref().map(|c| c.pg.connect_options("postgres"))
    })
    .await
    .expect("cluster start task")
    .expect("cluster is running")
}

/// The URL of `pool`'s database, for a `trackside` command the test runs:
/// on the server `TRACKSIDE_TEST_DATABASE_URL` names (with its
/// credentials), or on this process's cluster through its socket.
pub fn database_url(pool: &PgPool) -> String {
    let options = pool.connect_options();
    let database = options.get_database().expect("a database");
    match std::env::var(DATABASE_URL_VAR) {
        Ok(base) => {
            let mut url = reqwest::Url::parse(&base).expect("a database URL");
            url.set_path(database);
            url.to_string()
        }
        Err(_) => format!(
            "postgres://{}@localhost/{database}?host={}&port={}",
            options.get_username(),
            options
                .get_socket()
                .expect("the test cluster uses a socket")
                .display(),
            options.get_port()
        ),
    }
}

/// A fresh, migrated database in this process's cluster (or on the server
/// `TRACKSIDE_TEST_DATABASE_URL` names).
pub async fn fresh_database() -> PgPool {
    let admin_options = admin_options().await;
    let number = DATABASES.fetch_add(1, Ordering::Relaxed);
    // Several test processes may share one external server.
    let name = if std::env::var_os(DATABASE_URL_VAR).is_some() {
        format!("it_{}_{number}", std::process::id())
    } else {
        format!("it_{number}")
    };
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(admin_options.clone())
        .await
        .expect("connecting to the test cluster");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&admin)
    .await
    .expect("dropping an old test database");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("creating the test database");
    admin.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(admin_options.database(&name))
        .await
        .expect("connecting to the test database");
    trackside::migrate(&pool).await.expect("migrating");
    pool
}

pub fn site_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/site")
}

/// The configuration every test server starts from: loopback, free ports.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.http.listen = "127.0.0.1:0".parse().expect("address");
    config.http.assets_dir = site_dir();
    config.mqtt.listen = "127.0.0.1:0".parse().expect("address");
    config.mqtt.listen_v5 = None;
    config.mqtt.tls_listen = Some("127.0.0.1:0".parse().expect("address"));
    // Most tests are not about credentials; tests/it/auth.rs turns them on.
    config.mqtt.allow_anonymous = true;
    config.yard.name = "Test yard".into();
    config
}

/// The password of every user the tests make.
pub const PASSWORD: &str = "a test password, long enough";

/// Its Argon2id hash, computed once per test process.
fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| trackside::auth::password::hash_now(PASSWORD).expect("hashing"))
}

pub struct TestServer {
    pub pool: PgPool,
    pub running: trackside::Running,
    /// An admin's API token: what [`TestServer::client`] sends.
    pub token: String,
    /// The configuration it runs with, including its own data directory, so
    /// a test can start it again on the same state.
    pub config: Config,
    _data_dir: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(test_config()).await
    }

    pub async fn start_with(config: Config) -> Self {
        Self::start_on(config, fresh_database().await).await
    }

    /// A server on this database, with a fresh data directory (the spool).
    pub async fn start_on(mut config: Config, pool: PgPool) -> Self {
        let data_dir = tempfile::Builder::new()
            .prefix("trackside-data-")
            .tempdir()
            .expect("creating a data directory");
        config.database.data_dir = data_dir.path().to_path_buf();
        let mut server = Self::start_in_place(config, pool).await;
        server._data_dir = Some(data_dir);
        server
    }

    /// A server on this database with the data directory `config` names.
    pub async fn start_in_place(config: Config, pool: PgPool) -> Self {
        let running = trackside::start(&config, pool.clone())
            .await
            .expect("starting the server");
        let token = issue_token(&pool, "tester", Role::Admin).await;
        Self {
            pool,
            running,
            token,
            config,
            _data_dir: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// `http://127.0.0.1:port`: what a browser on the page sends as Origin.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.running.http_scheme, self.running.http_addr)
    }

    /// An HTTP client signed in as an admin, with an API token.
    pub fn client(&self) -> reqwest::Client {
        client_with(&[("authorization", format!("Bearer {}", self.token))])
    }

    /// `GET` as an admin (what `reqwest::get` was before sign-in).
    pub async fn get(&self, url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
        self.client().get(url).send().await
    }

    /// A user with this role and [`PASSWORD`] (their own: no change
    /// required), made if missing.
    pub async fn user(&self, name: &str, role: Role) -> trackside::auth::users::User {
        make_user(&self.pool, name, role).await
    }

    /// An API token of a user with this role (made if missing).
    pub async fn token_of(&self, name: &str, role: Role) -> String {
        issue_token(&self.pool, name, role).await
    }

    /// Signs in as `name` (a user with this role, made if missing) with a
    /// password, as the app does: a client that sends the session cookie
    /// and the page's Origin.
    pub async fn sign_in(&self, name: &str, role: Role) -> Browserless {
        self.user(name, role).await;
        let response = reqwest::Client::new()
            .post(self.url("/api/session"))
            .header("origin", self.origin())
            .json(&serde_json::json!({"name": name, "password": PASSWORD}))
            .send()
            .await
            .expect("POST /api/session");
        assert_eq!(response.status(), 200, "signing in as {name}");
        let cookie = session_cookie(&response).expect("a session cookie");
        Browserless {
            cookie: cookie.clone(),
            client: client_with(&[("cookie", cookie), ("origin", self.origin())]),
        }
    }

    pub async fn gateway(&self, id: &str) -> Gateway {
        Gateway::connect(self.running.mqtt_addr.port(), id).await
    }

    /// The live feed, as an admin's script would open it (with a token).
    pub async fn websocket(&self) -> LiveClient {
        LiveClient::connect_with(
            &self.ws_url(),
            &[("authorization", &format!("Bearer {}", self.token))],
        )
        .await
    }

    pub fn ws_url(&self) -> String {
        let scheme = if self.running.http_scheme == "https" {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}/ws", self.running.http_addr)
    }

    pub async fn stored(&self, channel: &str) -> Vec<(i64, f64)> {
        sqlx::query_as(
            "SELECT (extract(epoch FROM r.ts) * 1000)::bigint, r.value
             FROM readings r JOIN channels c ON c.id = r.channel_id
             WHERE c.name = $1 ORDER BY r.ts",
        )
        .bind(channel)
        .fetch_all(&self.pool)
        .await
        .expect("reading stored readings")
    }

    /// Waits until the link to an external broker is up.
    pub async fn external_session_up(&self) {
        eventually("the session with the external broker up", || async {
            let text = self
                .get(self.url("/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.lines()
                .any(|l| l.starts_with("trackside_mqtt_external_connected{") && l.ends_with("} 1"))
                .then_some(())
        })
        .await;
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .get(self.url("/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
    }
}

/// A signed-in HTTP client without a browser: the session cookie it got,
/// and a client that sends it with the page's Origin.
pub struct Browserless {
    /// `name=value` of the session cookie.
    pub cookie: String,
    pub client: reqwest::Client,
}

/// The `name=value` of the `Set-Cookie` header that sets the session.
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("trackside=") || v.starts_with("__Host-trackside="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// `GET url` (a server's `/metrics`) with an API token, as Prometheus
/// scrapes it; `None` unless it answers 200.
pub async fn scrape(url: &str, token: &str) -> Option<String> {
    let response = client_with(&[("authorization", format!("Bearer {token}"))])
        .get(url)
        .send()
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    response.text().await.ok()
}

pub fn client_with(headers: &[(&str, String)]) -> reqwest::Client {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            value.parse().expect("header value"),
        );
    }
    reqwest::Client::builder()
        .default_headers(map)
        .build()
        .expect("an HTTP client")
}

pub async fn make_user(pool: &PgPool, name: &str, role: Role) -> trackside::auth::users::User {
    use trackside::auth::users;
    if let Some(user) = users::by_name(pool, name).await.expect("looking up a user") {
        return user;
    }
    match users::add(pool, name, role, password_hash(), true).await {
        Ok(user) => user,
        // Servers started at once on one database (the start-up race
        // tests) each make the test user; the first one wins.
        Err(users::AddError::Exists) => users::by_name(pool, name)
            .await
            .expect("looking up a user")
            .expect("a user that exists"),
        Err(err) => panic!("adding user {name}: {err:?}"),
    }
}

pub async fn issue_token(pool: &PgPool, name: &str, role: Role) -> String {
    let user = make_user(pool, name, role).await;
    trackside::auth::tokens::issue(pool, &user, "tests", role, 1)
        .await
        .expect("issuing a token")
        .0
}

/// A `metrics` API token, as a Prometheus scrape is given (held by a viewer).
pub async fn metrics_token(pool: &PgPool) -> String {
    let user = make_user(pool, "Prometheus", Role::Viewer).await;
    trackside::auth::tokens::issue(pool, &user, "scrape", Role::Metrics, 1)
        .await
        .expect("issuing a metrics token")
        .0
}

/// Polls `probe` until it returns `Some`, or fails the test at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A gateway: a real rumqttc client over TCP.
pub struct Gateway {
    pub client: AsyncClient,
    acks: tokio::sync::mpsc::UnboundedReceiver<()>,
    eventloop: tokio::task::JoinHandle<()>,
}

impl Gateway {
    pub async fn connect(port: u16, id: &str) -> Self {
        Self::connect_with(port, id, |_| {}).await
    }

    /// Like a real gateway: its will marks it offline, and it says online.
    pub async fn connect_with_status(port: u16, id: &str) -> Self {
        let topic = format!("trackside/{id}/status");
        let will = topic.clone();
        let mut gateway = Self::connect_with(port, id, move |options| {
            options.set_last_will(rumqttc::LastWill::new(
                will,
                "offline",
                QoS::AtLeastOnce,
                true,
            ));
        })
        .await;
        gateway.publish(&topic, "online").await;
        gateway
    }

    /// A gateway on the TLS listener, identified by its certificate and
    /// logging in with its password.
    pub async fn connect_tls(
        port: u16,
        id: &str,
        password: &str,
        certificate: &trackside::ingest::pki::GatewayCertificate,
    ) -> Self {
        let transport = tls_transport(certificate);
        let (id, password) = (id.to_owned(), password.to_owned());
        Self::connect_with(port, &id.clone(), move |options| {
            options.set_transport(transport);
            options.set_credentials(id, password);
        })
        .await
    }

    /// Whether the event loop still runs: it ends when the broker closes the
    /// connection.
    pub fn is_connected(&self) -> bool {
        !self.eventloop.is_finished()
    }

    /// Drops the TCP connection without a DISCONNECT, as a power cut would.
    pub fn kill(self) {
        self.eventloop.abort();
    }

    async fn connect_with(port: u16, id: &str, configure: impl FnOnce(&mut MqttOptions)) -> Self {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(1 << 20, 1 << 20);
        configure(&mut options);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        let (acks_tx, acks) = tokio::sync::mpsc::unbounded_channel();
        let eventloop = tokio::spawn(async move {
            let mut connected = Some(connected_tx);
            let mut attempts = 0;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = connected.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let _ = acks_tx.send(());
                    }
                    Ok(_) => {}
                    // Before its first CONNACK a gateway tries again, as a
                    // real one does (the next poll reconnects); once
                    // connected, a closed connection ends the loop, which
                    // `is_connected` reports.
                    Err(err) if connected.is_some() && attempts < 3 => {
                        attempts += 1;
                        eprintln!("gateway: connecting failed ({err}); trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(_) => return,
                }
            }
        });
        tokio::time::timeout(DEADLINE, connected_rx)
            .await
            .expect("MQTT CONNACK within the deadline")
            .expect("MQTT connection");
        Self {
            client,
            acks,
            eventloop,
        }
    }

    /// Publishes at QoS 1 and waits for the broker's PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("queueing a publish");
        tokio::time::timeout(DEADLINE, self.acks.recv())
            .await
            .expect("PUBACK within the deadline")
            .expect("event loop alive");
    }
}

impl Gateway {
    /// Queues a QoS 1 publish without waiting for its PUBACK, as a gateway
    /// does within its in-flight window (100 publishes).
    pub async fn publish_in_flight(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("queueing a publish");
    }

    /// How many PUBACKs have come back since the last wait, without waiting.
    pub fn acks_so_far(&mut self) -> usize {
        std::iter::from_fn(|| self.acks.try_recv().ok()).count()
    }

    /// Waits for `count` PUBACKs.
    pub async fn wait_for_acks(&mut self, count: usize) {
        for _ in 0..count {
            tokio::time::timeout(DEADLINE, self.acks.recv())
                .await
                .expect("PUBACK within the deadline")
                .expect("event loop alive");
        }
    }

    /// Publishes `(channel, Unix ms, value)` readings as JSON batches of at
    /// most 1,000 on this gateway's readings topic, each acknowledged.
    pub async fn publish_readings(&mut self, gateway_id: &str, readings: &[(&str, i64, f64)]) {
        for chunk in readings.chunks(1_000) {
            let batch: Vec<serde_json::Value> = chunk
                .iter()
                .map(|(channel, ts, value)| {
                    serde_json::json!({"channel": channel, "ts": ts, "value": value})
                })
                .collect();
            self.publish(
                &format!("trackside/{gateway_id}/readings"),
                serde_json::json!({ "readings": batch }).to_string(),
            )
            .await;
        }
    }
}

/// A browser-less WebSocket client of `/ws`.
pub struct LiveClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl LiveClient {
    /// Opens the feed with these request headers (a token, a cookie, an
    /// Origin) and reads its greeting.
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Self {
        let socket = try_websocket(url, headers)
            .await
            .expect("WebSocket handshake");
        let mut client = Self { socket };
        match client.next().await {
            ServerMessage::Hello { .. } => client,
            other => panic!("expected hello first, got {other:?}"),
        }
    }

    pub async fn next(&mut self) -> ServerMessage {
        self.next_or_close()
            .await
            .unwrap_or_else(|close| panic!("the feed closed: {close:?}"))
    }

    /// The next frame, or the close frame that ended the feed.
    pub async fn next_or_close(
        &mut self,
    ) -> Result<ServerMessage, Option<tungstenite::protocol::CloseFrame>> {
        loop {
            let frame = tokio::time::timeout(DEADLINE, self.socket.next())
                .await
                .expect("a WebSocket frame within the deadline")
                .expect("WebSocket open")
                .expect("WebSocket frame");
            match frame {
                tungstenite::Message::Text(text) => {
                    return Ok(serde_json::from_str(&text).expect("a ServerMessage"));
                }
                tungstenite::Message::Close(close) => return Err(close),
                _ => {}
            }
        }
    }

    pub async fn send(&mut self, message: &ClientMessage) {
        let text = serde_json::to_string(message).expect("serialising");
        self.socket
            .send(tungstenite::Message::Text(text.into()))
            .await
            .expect("sending on the WebSocket");
    }

    /// Reads frames until `want` readings of `channel` have arrived.
    pub async fn readings_of(&mut self, channel: &str, want: usize) -> Vec<(i64, f64)> {
        let mut got = Vec::new();
        while got.len() < want {
            if let ServerMessage::Readings { readings } = self.next().await {
                got.extend(
                    readings
                        .into_iter()
                        .filter(|r| r.channel == channel)
                        .map(|r| (r.ts, r.value)),
                );
            }
        }
        got
    }
}

/// A WebSocket handshake with these headers; the refusal's HTTP status on
/// failure.
pub async fn try_websocket(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, u16> {
    use tungstenite::client::IntoClientRequest as _;
    let mut request = url.into_client_request().expect("a WebSocket URL");
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            value.parse().expect("header value"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(err) => panic!("WebSocket handshake failed: {err}"),
    }
}

/// A PostgreSQL cluster of a test's own, for tests that stop the database:
/// the shared cluster must stay up for every other test.
pub struct OwnCluster {
    pg: EmbeddedPostgres,
    dir: tempfile::TempDir,
}

impl OwnCluster {
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("trackside-own-pg-")
            .tempdir()
            .expect("creating a temporary directory");
        let path = dir.path().to_path_buf();
        let pg = tokio::task::spawn_blocking(move || {
            EmbeddedPostgres::start(&path, None, Durability::Throwaway)
        })
        .await
        .expect("cluster task")
        .expect("starting a test cluster");
        Self { pg, dir }
    }

    /// A migrated pool on the cluster's `postgres` database.
    pub async fn pool(&self) -> PgPool {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(2))
            .connect_with(self.pg.connect_options("postgres"))
            .await
            .expect("connecting to the test cluster");
        trackside::migrate(&pool).await.expect("migrating");
        pool
    }

    /// A URL of the cluster's `postgres` database, for a `trackside`
    /// process of its own.
    pub fn url(&self) -> String {
        let options = self.pg.connect_options("postgres");
        let socket = options
            .get_socket()
            .expect("the test cluster uses a socket");
        format!(
            "postgres://{}@localhost/postgres?host={}&port={}",
            options.get_username(),
            socket.display(),
            options.get_port()
        )
    }

    pub async fn stop(&mut self) {
        tokio::task::block_in_place(|| self.pg.stop()).expect("stopping the cluster");
    }

    pub async fn restart(&mut self) {
        let path = self.dir.path().to_path_buf();
        self.pg = tokio::task::spawn_blocking(move || {
            EmbeddedPostgres::start(&path, None, Durability::Throwaway)
        })
        .await
        .expect("cluster task")
        .expect("restarting the test cluster");
    }
}

/// The TLS transport of a gateway with this certificate; without one, a
/// client that trusts the server but shows no certificate of its own.
pub fn tls_transport(
    certificate: &trackside::ingest::pki::GatewayCertificate,
) -> rumqttc::Transport {
    rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Simple {
        ca: certificate.ca_pem.clone().into_bytes(),
        alpn: None,
        client_auth: Some((
            certificate.cert_pem.clone().into_bytes(),
            certificate.key_pem.clone().into_bytes(),
        )),
    })
}

/// Whether the broker accepts a CONNECT with these credentials: a CONNACK
/// arrives, or the socket is closed (rumqttd sends a refused client none).
pub async fn mqtt_accepts(port: u16, client_id: &str, login: Option<(&str, &str)>) -> bool {
    mqtt_accepts_over(port, client_id, login, rumqttc::Transport::Tcp).await
}

pub async fn mqtt_accepts_over(
    port: u16,
    client_id: &str,
    login: Option<(&str, &str)>,
    transport: rumqttc::Transport,
) -> bool {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_transport(transport);
    if let Some((username, password)) = login {
        options.set_credentials(username, password);
    }
    let (_client, mut eventloop) = AsyncClient::new(options, 10);
    let answer = tokio::time::timeout(DEADLINE, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await;
    answer.expect("the broker answers a CONNECT within the deadline")
}

/// Debian's Mosquitto on a free loopback port, anonymous and without
/// persistence: the broker of the external-broker tests.
pub struct Mosquitto {
    pub port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// With `settings` (mosquitto.conf lines) added to the test defaults.
    pub async fn start_with(settings: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("trackside-mosquitto-")
            .tempdir()
            .expect("creating a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|probe| probe.local_addr())
            .expect("a free port")
            .port();
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{settings}"
            ),
        )
        .expect("writing mosquitto.conf");
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting mosquitto (`cargo xtask setup` installs it)");
        let mosquitto = Self {
            port,
            child,
            _dir: dir,
        };
        eventually("mosquitto listening", || async {
            TcpStream::connect(("127.0.0.1", port)).await.ok().map(drop)
        })
        .await;
        mosquitto
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Dirty-minute marks waiting for the rollup job.
pub async fn dirty_marks(pool: &sqlx::PgPool) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM rollup_dirty")
        .fetch_one(pool)
        .await
        .unwrap();
    n
}

/// Runs the rollup job's passes (of the server's storage path) until no
/// dirty minute is left. A pass that finds the server's own job holding
/// the lock claims nothing; the next one, or that job, finishes the work.
pub async fn rolled_up(server: &TestServer) {
    let config = trackside::config::HistoryConfig::default();
    eventually("no dirty minute left", || async {
        trackside::store::rollup::settle(&server.pool, &config, server.running.storage)
            .await
            .expect("a rollup pass");
        (dirty_marks(&server.pool).await == 0).then_some(())
    })
    .await;
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .expect("a free port")
        .port()
}

/// The `trackside` binary run with a configuration file (after `wrapper`,
/// such as `prlimit`), its log kept in `log`.
pub struct Binary {
    pub process: ChildProcess,
    log: PathBuf,
}

impl Binary {
    pub fn spawn(config: &std::path::Path, log: PathBuf, wrapper: &[&str]) -> Self {
        let binary = env!("CARGO_BIN_EXE_trackside");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = std::process::Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => std::process::Command::new(binary),
        };
        let child = command
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info,sqlx=warn,rumqttd=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("the log file"))
            .spawn()
            .expect("starting trackside");
        Self {
            process: ChildProcess(child),
            log,
        }
    }

    /// What it logged so far, for a failure's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A process a test started, killed if the test ends before it does.
pub struct ChildProcess(pub std::process::Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Whether the test databases' server can load TimescaleDB. A test of the
/// TimescaleDB path calls this first and returns when it says no; the
/// note it prints is not captured, so a skipped test is visible in the
/// output.
pub async fn timescale_available(test: &str) -> bool {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(admin_options().await)
        .await
        .expect("connecting to the test server");
    let available: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
            AND current_setting('shared_preload_libraries') LIKE '%timescaledb%'",
    )
    .fetch_one(&admin)
    .await
    .expect("asking for TimescaleDB");
    admin.close().await;
    if !available {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: the test server has no TimescaleDB; set {DATABASE_URL_VAR} \
             to a server that preloads it to run this test"
        );
    }
    available
}
