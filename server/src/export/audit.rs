//! `GET /api/audit.csv`: the audit trail as CSV, through the same
//! machinery as readings: one snapshot, checked before the status line,
//! streamed in bounded chunks, a broken transfer rather than a short file,
//! and the same two export slots.

use std::io;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use sqlx::PgConnection;
use tokio::sync::mpsc;

use super::cells::{Clock, text};
use super::{CHUNK_BYTES, CHUNKS_IN_FLIGHT, Stop, conclude, csv_response, database, export_permit};
use crate::audit::{self, Filter, Params};
use crate::http::{AppError, AppState};

pub const HEADER: &str = "id,time_utc,time_local,actor,role,address,action,target,detail\r\n";

#[utoipa::path(
    get, path = "/api/audit.csv", tag = "audit",
    summary = "The audit trail as CSV",
    params(crate::audit::Params),
    responses(
        (status = 200, description = "CSV, streamed", content_type = "text/csv", body = String),
        (status = 400, description = "A filter is not valid", body = trackside_wire::ApiError),
    )
)]
pub async fn export(
    State(state): State<AppState>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(params) = params
        .map_err(|e| AppError::BadRequest(format!("{}; {}", e.body_text(), audit::http::USAGE)))?;
    if params.limit.is_some() {
        return Err(AppError::BadRequest(
            "the CSV holds every matching row: leave out limit, narrow with from and to".into(),
        ));
    }
    let filter = Filter::parse(&params)
        .map_err(|e| AppError::BadRequest(format!("{e}; {}", audit::http::USAGE)))?;
    let permit = export_permit(&state.export)?;
    let mut conn = state.pool.acquire().await?;
    let begun = sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *conn)
        .await;
    if let Err(err) = begun {
        let _ = conn.close().await;
        return Err(err.into());
    }
    let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    let zone = state.export.zone;
    let shutdown = state.shutdown.clone();
    let stamp = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
            .unwrap_or_else(|| "all".to_owned())
    };
    let file_name = format!(
        "trackside_audit_{}_{}.csv",
        stamp(filter.from),
        stamp(filter.to)
    );
    tokio::spawn(async move {
        let _permit = permit;
        let outcome = tokio::select! {
            outcome = write(&mut conn, &filter, zone, &sender) => outcome,
            () = shutdown.cancelled() => Err(Stop::ShuttingDown),
        };
        conclude(outcome, &sender, conn).await;
    });
    csv_response(&file_name, receiver)
}

async fn write(
    conn: &mut PgConnection,
    filter: &Filter,
    zone: chrono_tz::Tz,
    sender: &mpsc::Sender<io::Result<Bytes>>,
) -> Result<(), Stop> {
    let sql = format!(
        "SELECT {} FROM audit_log {} ORDER BY at, id",
        audit::COLUMNS,
        audit::WHERE
    );
    let mut clock = Clock::new(zone);
    let mut buffer = Vec::with_capacity(CHUNK_BYTES + 4096);
    buffer.extend_from_slice(HEADER.as_bytes());
    let mut rows = filter
        .bind(sqlx::query_as::<_, audit::Row>(sqlx::AssertSqlSafe(sql)))
        .fetch(&mut *conn);
    while let Some(row) = rows.next().await {
        let entry = audit::entry(row.map_err(database)?);
        buffer.extend_from_slice(entry.id.to_string().as_bytes());
        buffer.push(b',');
        clock.both(&mut buffer, entry.at * 1_000);
        for cell in [
            entry.actor.as_deref(),
            entry.role.as_deref(),
            entry.address.as_deref(),
            Some(entry.action.as_str()),
            entry.target.as_deref(),
        ] {
            buffer.push(b',');
            text(&mut buffer, cell.unwrap_or(""));
        }
        buffer.push(b',');
        if !entry.detail.is_empty() {
            text(
                &mut buffer,
                &serde_json::to_string(&entry.detail).unwrap_or_default(),
            );
        }
        buffer.extend_from_slice(b"\r\n");
        if buffer.len() >= CHUNK_BYTES {
            let chunk = std::mem::replace(&mut buffer, Vec::with_capacity(CHUNK_BYTES + 4096));
            sender
                .send(Ok(Bytes::from(chunk)))
                .await
                .map_err(|_| Stop::ClientGone)?;
        }
    }
    if !buffer.is_empty() {
        sender
            .send(Ok(Bytes::from(buffer)))
            .await
            .map_err(|_| Stop::ClientGone)?;
    }
    Ok(())
}
