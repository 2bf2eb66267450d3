//! The network learns a simple series, and a saved model forecasts exactly
//! as the one that was trained.

use trackside_forecast::{Forecaster, Series, Spec, TrainOptions, train};

const STEP_MS: i64 = 60_000;

/// A sine of period 24 steps and amplitude 0.3 on a rising trend, with a
/// little deterministic jitter; each series has its own phase.
fn sine_and_trend(phase: usize, len: usize) -> Series {
    Series {
        start: 0,
        values: (0..len)
            .map(|t| {
                let x = (t + phase) as f32;
                let jitter = 0.004 * ((t * 7919 + phase * 104_729) % 13) as f32 / 13.0;
                Some(1.5 + 0.3 * (std::f32::consts::TAU * x / 24.0).sin() + 0.002 * x + jitter)
            })
            .collect(),
    }
}

fn options(epochs: usize) -> TrainOptions {
    TrainOptions {
        spec: Spec {
            kind: "relay_voltage".into(),
            step_minutes: 1,
            window: 24,
            horizon: 6,
            hidden: 16,
            time_of_day: false,
        },
        epochs,
        batch: 32,
        learning_rate: 0.01,
        validation_fraction: 0.2,
        max_windows_per_epoch: 10_000,
        seed: 7,
        statistic: "max".into(),
        trained_from: 0,
        trained_to: 600 * STEP_MS,
        created_at: 0,
    }
}

/// The stated target: a validation mean absolute error below 0.03 (a tenth
/// of the amplitude), and under a third of the last-value baseline's.
#[test]
fn a_sine_with_a_trend_is_learnt() {
    let series: Vec<Series> = (0..4).map(|p| sine_and_trend(p * 5, 600)).collect();
    let mut epochs_seen = Vec::new();
    let model = train(
        &series,
        &options(40),
        &mut |p| epochs_seen.push(p.epoch),
        &|| false,
    )
    .expect("training runs");
    assert_eq!(epochs_seen, (1..=40).collect::<Vec<_>>());
    let info = model.info();
    println!(
        "validation MAE {:.4}, RMSE {:.4}, last value MAE {:.4}, {:.1} s",
        info.validation_mae,
        info.validation_rmse,
        info.validation_mae_last_value,
        info.training_seconds
    );
    assert!(info.validation_windows > 0);
    assert!(info.validation_mae < 0.03, "MAE {}", info.validation_mae);
    assert!(info.validation_mae < info.validation_mae_last_value / 3.0);

    // A series of a phase it never saw: every step within a third of the
    // amplitude, and the band wider the further ahead it looks.
    let fresh = sine_and_trend(3, 600);
    let history = Series {
        start: 0,
        values: fresh.values[..550].to_vec(),
    };
    let points = model.forecast(&history).unwrap().expect("a forecast");
    assert_eq!(points.len(), 6);
    assert_eq!(points[0].at, 550 * STEP_MS);
    for (point, truth) in points.iter().zip(&fresh.values[550..556]) {
        let truth = f64::from(truth.unwrap());
        assert!((point.mean - truth).abs() < 0.1, "{point:?} vs {truth}");
        assert!(point.low < point.mean && point.mean < point.high);
    }
    assert!(points[5].high - points[5].low > points[0].high - points[0].low);
}

#[test]
fn a_saved_model_loads_and_forecasts_identically() {
    let series: Vec<Series> = (0..2).map(|p| sine_and_trend(p * 3, 200)).collect();
    let model = train(&series, &options(2), &mut |_| {}, &|| false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let loaded = Forecaster::load(dir.path()).unwrap();
    assert_eq!(loaded.info(), model.info());
    let histories: Vec<Series> = (0..3).map(|p| sine_and_trend(p, 100)).collect();
    let before = model.forecast_many(&histories).unwrap();
    let after = loaded.forecast_many(&histories).unwrap();
    assert_eq!(before, after);
    assert!(
        before
            .iter()
            .all(|f| f.as_ref().is_some_and(|p| p.len() == 6))
    );

    // A directory without a model is a clear error, not a panic.
    let empty = tempfile::tempdir().unwrap();
    assert!(Forecaster::load(empty.path()).is_err());
}
