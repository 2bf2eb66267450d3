//! What every handler can reach: the pool, the live hub and the handles of
//! the long-running parts, built once by [`crate::start`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::YardConfig;
use crate::live::LiveHub;
use crate::live::registry::Registry;
use crate::metrics::Metrics;
use crate::store::spool::Spool;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub admission: Arc<crate::ingest::admission::Admission>,
    pub registry: Arc<Registry>,
    pub live: LiveHub,
    pub metrics: Arc<Metrics>,
    pub spool: Arc<Spool>,
    pub yard: Arc<YardConfig>,
    pub ingest_running: Arc<AtomicBool>,
    /// Ingest reads an external broker, which keeps what is not acknowledged.
    pub redelivers: bool,
    pub shutdown: CancellationToken,
    pub live_send_timeout: Duration,
    pub exceptions: crate::exceptions::Handle,
    pub history: Arc<crate::history::HistorySettings>,
    pub export: Arc<crate::export::ExportSettings>,
    pub forecast: Arc<crate::forecast::Forecasting>,
    pub layout: Arc<crate::yard::YardLayout>,
    pub auth: Arc<crate::auth::Auth>,
    /// Where the gateway CA lives (`mqtt.tls_dir`).
    pub pki_dir: std::path::PathBuf,
    /// The roles this instance holds among those sharing the database.
    pub cluster: Arc<crate::cluster::Cluster>,
}
