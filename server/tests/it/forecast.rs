//! Forecasts through the whole path: history published over MQTT, a model
//! trained by the API from the minute rollups, saved and loaded again, the
//! forecaster's forecast over HTTP, and a predicted exceedance raised by
//! the exception engine before the real limit exception.

use std::time::Duration;

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use trackside::config::Config;
use trackside_wire::{ApiError, ExceptionInfo, Forecast, ForecastStatus, TrainJob, TrainState};

use crate::harness::{Gateway, TestServer, eventually, test_config};

const MINUTE: i64 = 60_000;

/// A small model over one-minute steps, forecast every second, so the test
/// trains in seconds and sees forecasts at once.
pub fn forecast_config() -> Config {
    let mut config = test_config();
    config.forecast.step_minutes = 1;
    config.forecast.window = 20;
    config.forecast.horizon = 30;
    config.forecast.hidden = 16;
    config.forecast.epochs = 30;
    config.forecast.learning_rate = 0.01;
    config.forecast.interval_s = 1.0;
    config
}

pub async fn publish(gateway: &mut Gateway, readings: &[(String, i64, f64)]) {
    for chunk in readings.chunks(500) {
        let batch: Vec<serde_json::Value> = chunk
            .iter()
            .map(|(channel, ts, value)| json!({"channel": channel, "ts": ts, "value": value}))
            .collect();
        gateway
            .publish(
                "trackside/gw-fc/readings",
                json!({ "readings": batch }).to_string(),
            )
            .await;
    }
}

/// Seven hours of eight relay voltages, ending three hours ago, every
/// 30 s: straight stretches of 40 to 80 minutes, mostly falling (up to
/// 0.012 V a minute), some recovering, so what a model can learn is to
/// carry the recent slope on.
pub fn training_history(now: i64) -> Vec<(String, i64, f64)> {
    let mut rng = StdRng::seed_from_u64(3);
    let start = now - 10 * 60 * MINUTE;
    let mut readings = Vec::new();
    for circuit in 0..8 {
        let channel = format!("T{}/relay_voltage", 201 + circuit);
        let mut level: f64 = rng.random_range(1.2..1.8);
        let mut slope = 0.0;
        let mut segment_left = 0.0;
        for half_minute in 0..(7 * 60 * 2) {
            if segment_left <= 0.0 {
                segment_left = rng.random_range(40.0..80.0);
                slope = rng.random_range(-0.012..0.006);
            }
            if (level < 0.5 && slope < 0.0) || (level > 1.9 && slope > 0.0) {
                slope = -slope;
            }
            level += slope / 2.0;
            segment_left -= 0.5;
            let value = level * (1.0 + 0.003 * rng.random_range(-1.0..1.0));
            readings.push((channel.clone(), start + half_minute as i64 * 30_000, value));
        }
    }
    readings
}

/// A channel sagging at 0.01 V a minute over the last 45 minutes, still
/// above the limit's 0.9 V clear threshold.
pub fn sagging_channel(channel: &str, now: i64) -> Vec<(String, i64, f64)> {
    (0..=90)
        .map(|i| {
            let ts = now - 45 * MINUTE + i * 30_000;
            let minutes = i as f64 / 2.0;
            (channel.to_owned(), ts, 1.45 - 0.01 * minutes)
        })
        .collect()
}

pub async fn train(server: &TestServer, from: i64, to: i64) -> TrainJob {
    let response = server
        .client()
        .post(server.url("/api/forecast/train"))
        .json(&json!({"kind": "relay_voltage", "from": from, "to": to}))
        .send()
        .await
        .expect("POST /api/forecast/train");
    assert_eq!(response.status(), 202);
    response.json().await.expect("a job")
}

/// Training in a debug build takes longer than the harness's deadline.
pub async fn finished(server: &TestServer, id: u64) -> TrainJob {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let job: TrainJob = server
            .get(server.url(&format!("/api/forecast/jobs/{id}")))
            .await
            .expect("GET job")
            .json()
            .await
            .expect("a job");
        if job.state != TrainState::Running {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "training still running: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn exceptions_of(server: &TestServer, channel: &str) -> Vec<ExceptionInfo> {
    let list: Vec<ExceptionInfo> = server
        .get(server.url("/api/exceptions?open=true"))
        .await
        .expect("GET /api/exceptions")
        .json()
        .await
        .expect("exceptions");
    list.into_iter().filter(|e| e.subject == channel).collect()
}

#[tokio::test]
async fn a_sagging_channel_raises_a_predicted_exceedance_before_the_limit() {
    let server = TestServer::start_with(forecast_config()).await;
    let mut gateway = server.gateway("gw-fc").await;
    let now = Utc::now().timestamp_millis();
    let history = training_history(now);
    publish(&mut gateway, &history).await;
    eventually("the history stored", || async {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM readings")
            .fetch_one(&server.pool)
            .await
            .unwrap();
        (n == history.len() as i64).then_some(())
    })
    .await;

    // Bad requests are told what to fix.
    let client = server.client();
    for (body, fragment) in [
        (
            json!({"kind": "nonsense", "from": 0, "to": now}),
            "unknown parameter kind",
        ),
        (
            json!({"kind": "relay_voltage", "from": now, "to": now - 1}),
            "must end after",
        ),
        (json!({"kind": "relay_voltage"}), "missing field"),
    ] {
        let response = client
            .post(server.url("/api/forecast/train"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: ApiError = response.json().await.unwrap();
        assert!(error.error.contains(fragment), "{}", error.error);
    }
    let no_model = server
        .get(server.url("/api/forecast?channel=T201/relay_voltage"))
        .await
        .unwrap();
    assert_eq!(no_model.status(), 404);

    let job = train(&server, now - 11 * 60 * MINUTE, now).await;
    assert_eq!(job.state, TrainState::Running);
    // One job at a time.
    let busy = client
        .post(server.url("/api/forecast/train"))
        .json(&json!({"kind": "relay_voltage", "from": now - MINUTE * 600, "to": now}))
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 409);
    let done = finished(&server, job.id).await;
    assert_eq!(done.state, TrainState::Succeeded, "{done:?}");
    assert_eq!(done.epoch, 30);
    // Who started the training and who replaced the model, in the trail.
    let trail: Vec<trackside_wire::AuditEntry> = eventually("the model's audit row", || async {
        let trail: Vec<trackside_wire::AuditEntry> = server
            .get(server.url("/api/audit?action=forecast.*"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (trail.len() == 2).then_some(trail)
    })
    .await;
    let actions: Vec<(&str, &str, &str)> = trail
        .iter()
        .rev()
        .map(|e| {
            (
                e.action.as_str(),
                e.actor.as_deref().unwrap_or(""),
                e.target.as_deref().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("forecast.train", "tester", "relay_voltage"),
            ("forecast.model_replaced", "tester", "relay_voltage"),
        ]
    );
    let status: ForecastStatus = server
        .get(server.url("/api/forecast/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let model = &status.models[0];
    assert_eq!(
        (model.kind.as_str(), model.channels, model.horizon),
        ("relay_voltage", 8, 30)
    );
    assert!(
        model.validation_mae < model.validation_mae_last_value,
        "{model:?}"
    );

    // The saved model is what a restart loads.
    let reloaded = trackside::forecast::Forecasting::new(
        server.pool.clone(),
        server.config.forecast.clone(),
        &server.config.database.data_dir,
    );
    assert_eq!(reloaded.models(), status.models);

    // A channel sagging towards its limit, still above it.
    let channel = "T299/relay_voltage";
    publish(&mut gateway, &sagging_channel(channel, now)).await;
    let forecast: Forecast = eventually("a forecast of the sagging channel", || async {
        let response = server
            .get(server.url(&format!("/api/forecast?channel={channel}")))
            .await
            .ok()?;
        if response.status() != 200 {
            return None;
        }
        response.json::<Forecast>().await.ok()
    })
    .await;
    assert_eq!(forecast.points.len(), 30);
    assert_eq!(forecast.unit.as_deref(), Some("V"));
    assert!(forecast.points[0].at >= now - MINUTE);
    assert!(
        forecast
            .points
            .iter()
            .all(|p| p.low <= p.mean && p.mean <= p.high)
    );
    assert!(
        forecast.points[29].mean < forecast.points[0].mean - 0.1,
        "the sag goes on: {:?}",
        forecast.points
    );

    let predicted = eventually("the predicted exceedance", || async {
        exceptions_of(&server, channel)
            .await
            .into_iter()
            .find(|e| e.rule == "relay-voltage-predicted")
    })
    .await;
    assert_eq!(predicted.kind, trackside_wire::ExceptionKind::Predicted);
    assert_eq!(predicted.severity, trackside_wire::Severity::Warning);
    assert!(
        predicted
            .message
            .contains("forecast to reach its low limit"),
        "{}",
        predicted.message
    );
    assert!(
        exceptions_of(&server, channel)
            .await
            .iter()
            .all(|e| e.rule != "relay-voltage-limits"),
        "the real limit is not crossed yet"
    );

    // Now the voltage really falls below the limit, live.
    for second in 0..8 {
        let ts = Utc::now().timestamp_millis();
        publish(&mut gateway, &[(channel.to_owned(), ts, 0.7)]).await;
        tokio::time::sleep(Duration::from_millis(if second < 7 { 1_000 } else { 0 })).await;
    }
    let limit = eventually("the limit exception", || async {
        exceptions_of(&server, channel)
            .await
            .into_iter()
            .find(|e| e.rule == "relay-voltage-limits")
    })
    .await;
    assert!(
        predicted.raised_at < limit.raised_at,
        "predicted at {}, limit at {}",
        predicted.raised_at,
        limit.raised_at
    );
}
