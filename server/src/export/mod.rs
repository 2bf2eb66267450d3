//! `GET /api/export.csv`: readings or rollup buckets of any channels over
//! any range, as CSV streamed from the database while it is read.
//!
//! Everything that can be wrong with a request (parameters, zone, channel
//! patterns that match nothing) is found before the status line is sent, so
//! it is a 400 with a JSON message. After that the rows flow from one
//! query through a small bounded channel to the client, in time order, so
//! the server holds a few chunks of text whatever the size. A failure after
//! the headers ends the chunked body without its terminating chunk: the
//! client sees a broken transfer, never a short file that looks whole.

mod audit;
mod cells;

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures_util::StreamExt as _;
use serde::Deserialize;
use sqlx::pool::PoolConnection;
use sqlx::{AssertSqlSafe, PgConnection, Postgres};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use trackside_wire::{ChannelName, pattern_matches};

use crate::http::{AppError, AppState};
use crate::store::rollup::{self, Tier};
use crate::time::{HOUR_MS, MINUTE_MS, parse_time};

use cells::{Clock, float, text};

/// Most channels one export may name or match. Each is one branch of the
/// query's merge; at this count planning still takes milliseconds.
pub const MAX_CHANNELS: usize = 1_000;

/// Exports running at once. Each holds a database connection for as long
/// as its client reads; more are refused rather than queued, since a
/// queued download would sit silent for minutes.
const CONCURRENT_EXPORTS: usize = 2;

/// Text is handed to the client in chunks of about this size; with
/// [`CHUNKS_IN_FLIGHT`] it bounds what an export holds in memory.
const CHUNK_BYTES: usize = 128 * 1024;
const CHUNKS_IN_FLIGHT: usize = 2;

/// Latest instant an export may reach: the CSV writes four-digit years.
const LAST_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

/// What the export handler needs beyond the shared state.
pub struct ExportSettings {
    /// The yard's zone for the local-time column when a request names none.
    pub zone: Tz,
    permits: Arc<Semaphore>,
}

impl ExportSettings {
    /// A yard zone chrono-tz does not know (a typo) must not fail every
    /// export: the local column falls back to UTC, said once in the log.
    pub fn new(yard_zone: &str) -> Arc<Self> {
        let zone = yard_zone.parse::<Tz>().unwrap_or_else(|_| {
            tracing::warn!(
                zone = yard_zone,
                "unknown yard time zone; CSV exports show local time in UTC \
                 unless a request names a zone"
            );
            Tz::UTC
        });
        Arc::new(Self {
            zone,
            permits: Arc::new(Semaphore::new(CONCURRENT_EXPORTS)),
        })
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/export.csv", get(export))
        .route("/api/audit.csv", get(audit::export))
}

/// This area's routes in the OpenAPI description (`http::openapi`): a
/// handler with `#[utoipa::path]` is listed here.
#[derive(utoipa::OpenApi)]
#[openapi(paths(export, audit::export))]
pub struct Api;

/// The query string; see docs/api.md.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Params {
    pub channels: String,
    pub from: String,
    pub to: String,
    pub resolution: Option<String>,
    pub layout: Option<String>,
    pub tz: Option<String>,
    pub stat: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Raw,
    Minute,
    Hour,
}

impl Resolution {
    fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Minute => "1m",
            Self::Hour => "1h",
        }
    }

    fn bucket_ms(self) -> Option<i64> {
        match self {
            Self::Raw => None,
            Self::Minute => Some(MINUTE_MS),
            Self::Hour => Some(HOUR_MS),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One row per reading or bucket.
    Long,
    /// One row per instant or bucket, one column per channel.
    Wide,
}

/// Which figure of a bucket a wide bucketed export puts in each cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Avg,
    Min,
    Max,
    Count,
}

/// A checked request; channels are still patterns.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub patterns: Vec<String>,
    pub from: i64,
    pub to: i64,
    pub resolution: Resolution,
    pub layout: Layout,
    pub zone: Tz,
    pub stat: Stat,
}

impl Request {
    pub fn parse(params: &Params, yard_zone: Tz) -> Result<Self, String> {
        let mut patterns: Vec<String> = Vec::new();
        for pattern in params.channels.split(',').map(str::trim) {
            if pattern.is_empty() || patterns.iter().any(|p| p == pattern) {
                continue;
            }
            check_pattern(pattern)?;
            patterns.push(pattern.to_owned());
        }
        if patterns.is_empty() {
            return Err(
                "channels is empty: name channels or patterns, comma-separated, \
                        for example channels=T1*/relay_voltage,T2/feed_current"
                    .into(),
            );
        }
        let from = parse_time("from", &params.from)?;
        let to = parse_time("to", &params.to)?;
        if from >= to {
            return Err("from must be before to".into());
        }
        if to > LAST_MS {
            return Err("to must be before the year 10000".into());
        }
        let resolution = match params.resolution.as_deref().map(str::trim) {
            None | Some("raw") => Resolution::Raw,
            Some("1m") => Resolution::Minute,
            Some("1h") => Resolution::Hour,
            Some(other) => {
                return Err(format!(
                    "resolution={other:?}: give raw (every reading), 1m or 1h (buckets)"
                ));
            }
        };
        let layout = match params.layout.as_deref().map(str::trim) {
            None | Some("long") => Layout::Long,
            Some("wide") => Layout::Wide,
            Some(other) => {
                return Err(format!(
                    "layout={other:?}: give long (a row per reading) or wide (a column per channel)"
                ));
            }
        };
        let zone = match params.tz.as_deref().map(str::trim) {
            None | Some("") => yard_zone,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                format!("tz={name:?} is not an IANA time zone (for example Europe/London or UTC)")
            })?,
        };
        let stat = match params.stat.as_deref().map(str::trim) {
            None => Stat::Avg,
            Some(_) if resolution == Resolution::Raw || layout == Layout::Long => {
                return Err("stat applies to wide exports of 1m or 1h buckets; \
                            long exports carry min, max, avg and count"
                    .into());
            }
            Some("avg") => Stat::Avg,
            Some("min") => Stat::Min,
            Some("max") => Stat::Max,
            Some("count") => Stat::Count,
            Some(other) => {
                return Err(format!("stat={other:?}: give avg, min, max or count"));
            }
        };
        Ok(Self {
            patterns,
            from,
            to,
            resolution,
            layout,
            zone,
            stat,
        })
    }

    /// The file name: selection, range and resolution, safe in any file
    /// system (`trackside_T1-relay_voltage_20261128T0900Z_20261128T1000Z_raw.csv`).
    pub fn file_name(&self) -> String {
        let selection = match self.patterns.as_slice() {
            [one] => one.replace('/', "-").replace('*', "ALL"),
            many => format!("{}-selections", many.len()),
        };
        let stamp = |ms: i64| {
            DateTime::from_timestamp_millis(ms)
                .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
                .unwrap_or_default()
        };
        let layout = match self.layout {
            Layout::Long => "",
            Layout::Wide => "_wide",
        };
        format!(
            "trackside_{selection}_{}_{}_{}{layout}.csv",
            stamp(self.from),
            stamp(self.to),
            self.resolution.name()
        )
    }

    /// The range the query reads: buckets that overlap `[from, to)`, whole.
    fn query_range(&self) -> (i64, i64) {
        match self.resolution.bucket_ms() {
            Some(width) => (self.from.div_euclid(width) * width, self.to),
            None => (self.from, self.to),
        }
    }
}

/// A pattern is a channel name in which `*` stands for any run of
/// characters; one without `*` must be a valid channel name.
fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.contains('*') {
        let bad = pattern
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '*')));
        match bad {
            Some(c) => Err(format!(
                "channel pattern {pattern:?}: character {c:?} is not allowed \
                 (letters, digits, `_`, `-`, `.`, `/` and `*`)"
            )),
            None if pattern.len() > 200 => Err(format!("channel pattern {pattern:?} is too long")),
            None => Ok(()),
        }
    } else {
        ChannelName::parse(pattern)
            .map(drop)
            .map_err(|e| format!("channel {pattern:?}: {e}"))
    }
}

/// A channel as the export writes it.
#[derive(Debug, Clone)]
pub struct Channel {
    pub id: i32,
    pub name: String,
    pub circuit: String,
    pub parameter: String,
    pub unit: Option<String>,
}

/// The channels the patterns match: in the order of the patterns, each
/// pattern's matches by name, each channel once.
pub async fn resolve(
    conn: &mut PgConnection,
    patterns: &[String],
) -> Result<Vec<Channel>, AppError> {
    let all: Vec<(i32, String, String, String, Option<String>)> =
        sqlx::query_as("SELECT id, name, circuit, parameter, unit FROM channels ORDER BY name")
            .fetch_all(&mut *conn)
            .await?;
    let mut taken = vec![false; all.len()];
    let mut channels = Vec::new();
    let mut unmatched = Vec::new();
    for pattern in patterns {
        let mut matched = false;
        for (i, (id, name, circuit, parameter, unit)) in all.iter().enumerate() {
            if pattern_matches(pattern, name) {
                matched = true;
                if !taken[i] {
                    taken[i] = true;
                    channels.push(Channel {
                        id: *id,
                        name: name.clone(),
                        circuit: circuit.clone(),
                        parameter: parameter.clone(),
                        unit: unit.clone(),
                    });
                }
            }
        }
        if !matched {
            unmatched.push(pattern.as_str());
        }
    }
    if !unmatched.is_empty() {
        return Err(AppError::BadRequest(format!(
            "no channel matches {} (GET /api/channels lists them)",
            unmatched.join(", ")
        )));
    }
    if channels.len() > MAX_CHANNELS {
        return Err(AppError::BadRequest(format!(
            "the selection matches {} channels; at most {MAX_CHANNELS} per export",
            channels.len()
        )));
    }
    Ok(channels)
}

fn ms_to_time(ms: i64) -> DateTime<Utc> {
    // Requests are checked to lie between 1970 and 9999.
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The statement that reads an export's rows in time order, then channel:
/// one branch per channel (an index range scan on its key, in its own
/// parentheses with its own ORDER BY, which is what lets the planner see
/// each branch as ordered), merged by PostgreSQL's Merge Append; an
/// incremental sort then orders the channels of each instant. Rows stream
/// in order and nothing ever holds more than one instant. Channel ids come
/// from the database and are written as integer literals.
///
/// Raw: `channel_id, ts, value` over `[$1, $2)`. Buckets: `channel_id,
/// bucket, min, max, avg, count` from the rollup table before `$3` (the
/// earliest dirty minute) and from the exact view after it, as the history
/// API reads them; `avg` is `rollup_avg` (sum / count, or the readings'
/// mean where the sum is beyond the double range).
pub fn export_sql(resolution: Resolution, ids: &[i32]) -> String {
    let mut sql = String::from("SELECT * FROM (");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            sql.push_str("\nUNION ALL ");
        }
        let branch = match resolution {
            Resolution::Raw => format!(
                "(SELECT channel_id, ts, value FROM readings \
                 WHERE channel_id = {id} AND ts >= $1 AND ts < $2 ORDER BY ts, channel_id)"
            ),
            Resolution::Minute | Resolution::Hour => {
                let (table, view, width) = match resolution {
                    Resolution::Minute => ("readings_1m", "history_1m", "1 minute"),
                    _ => ("readings_1h", "history_1h", "1 hour"),
                };
                let avg = format!(
                    "rollup_avg(sum, count, channel_id, bucket, bucket + interval '{width}')"
                );
                format!(
                    "(SELECT channel_id, bucket AS ts, min, max, {avg}, count FROM {table} \
                     WHERE channel_id = {id} AND bucket >= $1 AND bucket < $3 \
                     ORDER BY ts, channel_id) \
                     UNION ALL (SELECT channel_id, bucket, min, max, {avg}, count FROM {view} \
                     WHERE channel_id = {id} AND bucket >= $3 AND bucket < $2 \
                     ORDER BY bucket, channel_id)"
                )
            }
        };
        sql.push_str(&branch);
    }
    sql.push_str(") AS r ORDER BY ts, channel_id");
    sql
}

/// The export transaction's settings. No statement timeout: an export of
/// years runs as long as its client reads. No sort: on a fresh or
/// unanalysed table the planner may prefer sorting a whole range to
/// merging index scans, and a sort must read every row before the first
/// is sent (and spills gigabytes to disk); with it priced out, the merge
/// of per-channel index scans is always chosen and rows flow at once.
/// JIT would compile expressions that the merge evaluates cheaply.
pub const SESSION_SETTINGS: &str = "SELECT set_config('jit', 'off', true), \
     set_config('statement_timeout', '0', true), set_config('enable_sort', 'off', true)";

/// A bucket row: channel, start, min, max, avg, count.
type BucketRow = (i32, DateTime<Utc>, f64, f64, Option<f64>, i64);

#[utoipa::path(
    get, path = "/api/export.csv", tag = "export",
    summary = "Readings as CSV",
    description = "Streams raw readings or minute/hour rollups as RFC 4180 CSV, with UTC and local time columns.",
    params(Params),
    responses(
        (status = 200, description = "CSV, streamed", content_type = "text/csv", body = String),
        (status = 400, description = "A parameter is not valid", body = trackside_wire::ApiError),
        (status = 503, description = "Too many exports at once: try again", body = trackside_wire::ApiError),
    )
)]
async fn export(
    State(state): State<AppState>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(params) = params.map_err(|e| AppError::BadRequest(e.body_text()))?;
    let request = Request::parse(&params, state.export.zone).map_err(AppError::BadRequest)?;
    let permit = export_permit(&state.export)?;
    let mut conn = state.pool.acquire().await?;
    let prepared = prepare(&mut conn, &request).await;
    let channels = match prepared {
        Ok(channels) => channels,
        Err(err) => {
            // The connection may be inside the export's transaction.
            let _ = conn.close().await;
            return Err(err);
        }
    };
    let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    let file_name = request.file_name();
    let job = Job {
        request,
        channels,
        sender,
        shutdown: state.shutdown.clone(),
        _permit: permit,
    };
    tokio::spawn(job.run(conn));
    csv_response(&file_name, receiver)
}

/// Opens the export's snapshot and resolves its channels.
async fn prepare(conn: &mut PgConnection, request: &Request) -> Result<Vec<Channel>, AppError> {
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *conn)
        .await?;
    sqlx::query(SESSION_SETTINGS).execute(&mut *conn).await?;
    resolve(conn, &request.patterns).await
}

/// Why an export stopped before its end.
enum Stop {
    /// The client went away; nobody is left to tell.
    ClientGone,
    Database(String),
    ShuttingDown,
}

struct Job {
    request: Request,
    channels: Vec<Channel>,
    sender: mpsc::Sender<io::Result<Bytes>>,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
}

impl Job {
    async fn run(self, mut conn: PoolConnection<Postgres>) {
        let shutdown = self.shutdown.clone();
        let outcome = tokio::select! {
            outcome = self.write(&mut conn) => outcome,
            () = shutdown.cancelled() => Err(Stop::ShuttingDown),
        };
        conclude(outcome, &self.sender, conn).await;
    }

    async fn write(&self, conn: &mut PgConnection) -> Result<(), Stop> {
        let request = &self.request;
        let mut out = Output {
            buffer: Vec::with_capacity(CHUNK_BYTES + 4096),
            sender: &self.sender,
            clock: Clock::new(request.zone),
            floats: ryu::Buffer::new(),
        };
        let ids: Vec<i32> = self.channels.iter().map(|c| c.id).collect();
        let (lo, hi) = request.query_range();
        let (lo, hi) = (ms_to_time(lo), ms_to_time(hi));
        let sql = export_sql(request.resolution, &ids);
        let layout = Rows::new(request, &self.channels);
        layout.header(&mut out.buffer, &self.channels, request.resolution);
        out.flush().await?;
        match request.resolution {
            Resolution::Raw => {
                let mut rows = sqlx::query_as::<_, (i32, DateTime<Utc>, f64)>(AssertSqlSafe(sql))
                    .persistent(false)
                    .bind(lo)
                    .bind(hi)
                    .fetch(&mut *conn);
                let mut layout = layout;
                while let Some(row) = rows.next().await {
                    let (id, ts, value) = row.map_err(database)?;
                    layout.reading(&mut out, id, ts.timestamp_micros(), value);
                    out.flush_if_full().await?;
                }
                layout.finish(&mut out);
            }
            Resolution::Minute | Resolution::Hour => {
                let tier = match request.resolution {
                    Resolution::Minute => Tier::Minute,
                    _ => Tier::Hour,
                };
                // Bucketed exports are UTC minutes and hours: no zone.
                let split = rollup::dirty_split(&mut *conn, tier, &ids, lo, hi, "UTC")
                    .await
                    .map_err(database)?;
                let mut rows = sqlx::query_as::<_, BucketRow>(AssertSqlSafe(sql))
                    .persistent(false)
                    .bind(lo)
                    .bind(hi)
                    .bind(split)
                    .fetch(&mut *conn);
                let mut layout = layout;
                while let Some(row) = rows.next().await {
                    let (id, bucket, min, max, avg, count) = row.map_err(database)?;
                    let figures = Bucket {
                        min,
                        max,
                        // Rounding may put a mean a hair outside its extremes.
                        avg: avg.filter(|a| a.is_finite()).map(|a| a.max(min).min(max)),
                        count,
                    };
                    layout.bucket(&mut out, id, bucket.timestamp_micros(), &figures);
                    out.flush_if_full().await?;
                }
                layout.finish(&mut out);
            }
        }
        out.flush().await
    }
}

/// Commits the export's snapshot, or ends the body without its last chunk
/// so that the client sees a broken transfer, never a short file.
async fn conclude(
    outcome: Result<(), Stop>,
    sender: &mpsc::Sender<io::Result<Bytes>>,
    mut conn: PoolConnection<Postgres>,
) {
    let outcome = match outcome {
        Ok(()) => sqlx::query("COMMIT")
            .execute(&mut *conn)
            .await
            .map(drop)
            .map_err(database),
        Err(stop) => Err(stop),
    };
    let Err(stop) = outcome else {
        return;
    };
    let reason = match stop {
        Stop::ClientGone => {
            tracing::debug!("CSV export stopped: the client went away");
            None
        }
        Stop::Database(err) => {
            tracing::error!("CSV export failed mid-stream: {err}");
            Some("the database failed during the export")
        }
        Stop::ShuttingDown => Some("the server is shutting down"),
    };
    if let Some(reason) = reason {
        // Ends the body without its last chunk, so the client knows.
        let _ = sender.send(Err(io::Error::other(reason))).await;
    }
    // Mid-query: the connection must not go back to the pool, which
    // would read the rest of the result to reuse it.
    let _ = conn.close().await;
}

/// The CSV answer: its headers now, its body as the job sends chunks.
fn csv_response(
    file_name: &str,
    mut receiver: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<Response, AppError> {
    let disposition = format!("attachment; filename=\"{file_name}\"");
    let disposition = HeaderValue::from_str(&disposition)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("file name header: {e}")))?;
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| {
        receiver.poll_recv(cx)
    }));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// One of the [`CONCURRENT_EXPORTS`] slots, or a 503 that says to wait.
fn export_permit(settings: &ExportSettings) -> Result<OwnedSemaphorePermit, AppError> {
    settings.permits.clone().try_acquire_owned().map_err(|_| {
        AppError::Unavailable(format!(
            "{CONCURRENT_EXPORTS} exports are running; try again when one has finished"
        ))
    })
}

fn database(err: sqlx::Error) -> Stop {
    Stop::Database(err.to_string())
}

/// The text being built and where it goes.
struct Output<'a> {
    buffer: Vec<u8>,
    sender: &'a mpsc::Sender<io::Result<Bytes>>,
    clock: Clock,
    floats: ryu::Buffer,
}

impl Output<'_> {
    async fn flush_if_full(&mut self) -> Result<(), Stop> {
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush().await
        } else {
            Ok(())
        }
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES + 4096));
        self.sender
            .send(Ok(Bytes::from(chunk)))
            .await
            .map_err(|_| Stop::ClientGone)
    }

    fn float(&mut self, value: f64) {
        float(&mut self.buffer, &mut self.floats, value);
    }
}

/// One bucket's figures. `avg` is empty only where the readings' sum is
/// beyond the double range and the readings are past raw retention.
struct Bucket {
    min: f64,
    max: f64,
    avg: Option<f64>,
    count: i64,
}

/// Turns rows into CSV lines for one layout.
enum Rows {
    Long {
        /// Per channel id: its `channel,circuit,parameter,` cells and its
        /// `,unit` cell, encoded once.
        cells: HashMap<i32, (Vec<u8>, Vec<u8>)>,
    },
    Wide {
        column: HashMap<i32, usize>,
        stat: Stat,
        /// The instant being collected, and its cells.
        at: Option<i64>,
        values: Vec<Option<f64>>,
        counts: Vec<Option<i64>>,
    },
}

impl Rows {
    fn new(request: &Request, channels: &[Channel]) -> Self {
        match request.layout {
            Layout::Long => Self::Long {
                cells: channels
                    .iter()
                    .map(|c| {
                        let mut front = Vec::new();
                        for part in [&c.name, &c.circuit, &c.parameter] {
                            text(&mut front, part);
                            front.push(b',');
                        }
                        let mut back = vec![b','];
                        text(&mut back, c.unit.as_deref().unwrap_or(""));
                        back.extend_from_slice(b"\r\n");
                        (c.id, (front, back))
                    })
                    .collect(),
            },
            Layout::Wide => Self::Wide {
                column: channels
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.id, i))
                    .collect(),
                stat: request.stat,
                at: None,
                values: vec![None; channels.len()],
                counts: vec![None; channels.len()],
            },
        }
    }

    fn header(&self, out: &mut Vec<u8>, channels: &[Channel], resolution: Resolution) {
        out.extend_from_slice(b"time_utc,time_local");
        match (self, resolution) {
            (Self::Long { .. }, Resolution::Raw) => {
                out.extend_from_slice(b",channel,circuit,parameter,value,unit");
            }
            (Self::Long { .. }, _) => {
                out.extend_from_slice(b",channel,circuit,parameter,min,max,avg,count,unit");
            }
            (Self::Wide { .. }, _) => {
                for channel in channels {
                    out.push(b',');
                    text(out, &channel.name);
                }
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    fn reading(&mut self, out: &mut Output<'_>, id: i32, micros: i64, value: f64) {
        match self {
            Self::Long { cells } => {
                let Some((front, back)) = cells.get(&id) else {
                    return;
                };
                out.clock.both(&mut out.buffer, micros);
                out.buffer.push(b',');
                out.buffer.extend_from_slice(front);
                out.float(value);
                out.buffer.extend_from_slice(back);
            }
            Self::Wide { .. } => self.wide_cell(out, id, micros, Some(value), None),
        }
    }

    fn bucket(&mut self, out: &mut Output<'_>, id: i32, micros: i64, bucket: &Bucket) {
        match self {
            Self::Long { cells } => {
                let Some((front, back)) = cells.get(&id) else {
                    return;
                };
                out.clock.both(&mut out.buffer, micros);
                out.buffer.push(b',');
                out.buffer.extend_from_slice(front);
                out.float(bucket.min);
                out.buffer.push(b',');
                out.float(bucket.max);
                out.buffer.push(b',');
                if let Some(avg) = bucket.avg {
                    out.float(avg);
                }
                out.buffer.push(b',');
                integer(&mut out.buffer, bucket.count);
                out.buffer.extend_from_slice(back);
            }
            Self::Wide { stat, .. } => {
                let (value, count) = match stat {
                    Stat::Avg => (bucket.avg, None),
                    Stat::Min => (Some(bucket.min), None),
                    Stat::Max => (Some(bucket.max), None),
                    Stat::Count => (None, Some(bucket.count)),
                };
                self.wide_cell(out, id, micros, value, count);
            }
        }
    }

    fn wide_cell(
        &mut self,
        out: &mut Output<'_>,
        id: i32,
        micros: i64,
        value: Option<f64>,
        count: Option<i64>,
    ) {
        let Self::Wide {
            column,
            at,
            values,
            counts,
            ..
        } = self
        else {
            return;
        };
        let Some(&i) = column.get(&id) else {
            return;
        };
        if *at != Some(micros) {
            if let Some(previous) = *at {
                wide_line(out, previous, values, counts);
            }
            *at = Some(micros);
        }
        values[i] = value;
        counts[i] = count;
    }

    fn finish(&mut self, out: &mut Output<'_>) {
        if let Self::Wide {
            at: Some(previous),
            values,
            counts,
            ..
        } = self
        {
            wide_line(out, *previous, values, counts);
        }
    }
}

fn integer(out: &mut Vec<u8>, n: i64) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{n}");
}

/// Writes one wide line and empties its cells for the next instant.
fn wide_line(
    out: &mut Output<'_>,
    micros: i64,
    values: &mut [Option<f64>],
    counts: &mut [Option<i64>],
) {
    out.clock.both(&mut out.buffer, micros);
    for (value, count) in values.iter_mut().zip(counts.iter_mut()) {
        out.buffer.push(b',');
        if let Some(v) = value.take() {
            float(&mut out.buffer, &mut out.floats, v);
        }
        if let Some(n) = count.take() {
            integer(&mut out.buffer, n);
        }
    }
    out.buffer.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(channels: &str, extra: &[(&str, &str)]) -> Result<Request, String> {
        let mut params = Params {
            channels: channels.into(),
            from: "2026-11-28T09:00:00Z".into(),
            to: "2026-11-28T10:30:00Z".into(),
            ..Params::default()
        };
        for &(key, value) in extra {
            let slot = match key {
                "resolution" => &mut params.resolution,
                "layout" => &mut params.layout,
                "tz" => &mut params.tz,
                _ => &mut params.stat,
            };
            *slot = Some(value.into());
        }
        Request::parse(&params, Tz::Europe__London)
    }

    #[test]
    fn files_are_named_after_selection_range_and_resolution() {
        let one = request("T1*/relay_voltage", &[]).unwrap();
        assert_eq!(
            one.file_name(),
            "trackside_T1ALL-relay_voltage_20261128T090000Z_20261128T103000Z_raw.csv"
        );
        let two = request(
            "T1/relay_voltage, T2/*,T1/relay_voltage",
            &[("resolution", "1h"), ("layout", "wide")],
        )
        .unwrap();
        assert_eq!(two.patterns, ["T1/relay_voltage", "T2/*"]);
        assert_eq!(
            two.file_name(),
            "trackside_2-selections_20261128T090000Z_20261128T103000Z_1h_wide.csv"
        );
    }

    #[test]
    fn bucketed_ranges_take_whole_buckets() {
        let hours = request("T1/a", &[("resolution", "1h")]).unwrap();
        assert_eq!(hours.query_range(), (hours.from, hours.to));
        let from = request("T1/a", &[]).unwrap().from;
        let minutes = request("T1/a", &[("resolution", "1m"), ("tz", "Asia/Tokyo")]).unwrap();
        assert_eq!(minutes.zone, Tz::Asia__Tokyo);
        assert_eq!(minutes.query_range().0, from);
        let mut odd = Params {
            channels: "T1/a".into(),
            from: "2026-11-28T09:59:59.999Z".into(),
            to: "2026-11-28T10:00:00.001Z".into(),
            resolution: Some("1h".into()),
            ..Params::default()
        };
        let request = Request::parse(&odd, Tz::UTC).unwrap();
        assert_eq!(
            request.query_range(),
            (request.from - 3_599_999, request.to)
        );
        odd.resolution = Some("1m".into());
        let request = Request::parse(&odd, Tz::UTC).unwrap();
        assert_eq!(request.query_range(), (request.from - 59_999, request.to));
    }
}
