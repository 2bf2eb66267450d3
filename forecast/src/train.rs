//! The training loop: AdamW on the Laplace negative log-likelihood, in
//! shuffled mini-batches, with the validation error measured in the
//! parameter's unit after every epoch.

use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::Optimizer as _;
use candle_nn::optim::{AdamW, ParamsAdamW};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;

use crate::data::{FEATURES, Normaliser, Windows, windows};
use crate::net::{Network, laplace_nll};
use crate::{Error, Forecaster, ModelInfo, Result, Series, Spec};

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub spec: Spec,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f64,
    /// The latest part of every series held out to measure the model.
    pub validation_fraction: f64,
    /// At most this many training windows per epoch (a random sample), so
    /// a long range costs a bounded time.
    pub max_windows_per_epoch: usize,
    pub seed: u64,
    /// The per-minute statistic the series hold, recorded in the metadata.
    pub statistic: String,
    /// Training range and creation time, Unix milliseconds (metadata only:
    /// this crate has no clock).
    pub trained_from: i64,
    pub trained_to: i64,
    pub created_at: i64,
}

/// Reported after every epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub epoch: usize,
    pub epochs: usize,
    pub train_loss: f64,
    pub validation_mae: f64,
}

/// Validation errors in the parameter's unit.
struct Scores {
    mae: f64,
    rmse: f64,
    mae_last_value: f64,
}

fn score(net: &Network, set: &Windows, horizon: usize, norm: &Normaliser) -> Result<Scores> {
    if set.count == 0 {
        return Ok(Scores {
            mae: f64::NAN,
            rmse: f64::NAN,
            mae_last_value: f64::NAN,
        });
    }
    let (mut abs, mut sq, mut naive) = (0.0, 0.0, 0.0);
    let window_len = set.inputs.len() / set.count;
    for chunk_start in (0..set.count).step_by(512) {
        let rows = (set.count - chunk_start).min(512);
        let inputs = &set.inputs[chunk_start * window_len..(chunk_start + rows) * window_len];
        let (means, _) = net.predict(inputs, rows)?;
        let targets = &set.targets[chunk_start * horizon..(chunk_start + rows) * horizon];
        for (mean, target) in means.iter().zip(targets) {
            let error = f64::from((mean - target) * norm.scale);
            abs += error.abs();
            sq += error * error;
            naive += f64::from((target * norm.scale).abs());
        }
    }
    let n = (set.count * horizon) as f64;
    Ok(Scores {
        mae: abs / n,
        rmse: (sq / n).sqrt(),
        mae_last_value: naive / n,
    })
}

/// Trains a model on `series` (each at the spec's step), calling `progress`
/// after every epoch. `cancelled` is polled between batches.
pub fn train(
    series: &[Series],
    options: &TrainOptions,
    progress: &mut dyn FnMut(Progress),
    cancelled: &dyn Fn() -> bool,
) -> Result<Forecaster> {
    let started = Instant::now();
    let spec = &options.spec;
    spec.validate()?;
    if options.epochs == 0 || options.batch == 0 {
        return Err(Error::Invalid("epochs and batch must be at least 1".into()));
    }
    let norm = Normaliser::fit(series)
        .ok_or_else(|| Error::Invalid(format!("no {} values in the range", spec.kind)))?;
    let (train_set, validation_set) = windows(series, spec, &norm, options.validation_fraction);
    if train_set.count == 0 {
        return Err(Error::Invalid(format!(
            "no complete training window of {} steps ({} min each): choose a longer range",
            spec.window + spec.horizon,
            spec.step_minutes
        )));
    }
    let net = Network::new(spec)?;
    let mut optimizer = AdamW::new(
        net.vars.all_vars(),
        ParamsAdamW {
            lr: options.learning_rate,
            weight_decay: 1e-4,
            ..ParamsAdamW::default()
        },
    )?;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut order: Vec<usize> = (0..train_set.count).collect();
    let window_len = spec.window * FEATURES;
    let horizon = spec.horizon;
    let mut batch_inputs = Vec::with_capacity(options.batch * window_len);
    let mut batch_targets = Vec::with_capacity(options.batch * horizon);
    for epoch in 1..=options.epochs {
        // Cosine decay to a tenth: large steps early, then settling, so the
        // last epochs do not leave the weights jittering around a minimum
        // (which shows most at the first horizon step, where the error is
        // smallest).
        let progress_fraction = (epoch - 1) as f64 / options.epochs as f64;
        let decay = 0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress_fraction).cos());
        optimizer.set_learning_rate(options.learning_rate * decay);
        order.shuffle(&mut rng);
        let take = order
            .len()
            .min(options.max_windows_per_epoch.max(options.batch));
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        for chunk in order[..take].chunks(options.batch) {
            if cancelled() {
                return Err(Error::Invalid("training cancelled".into()));
            }
            batch_inputs.clear();
            batch_targets.clear();
            for &i in chunk {
                batch_inputs
                    .extend_from_slice(&train_set.inputs[i * window_len..(i + 1) * window_len]);
                batch_targets.extend_from_slice(&train_set.targets[i * horizon..(i + 1) * horizon]);
            }
            let inputs = net.tensor(&batch_inputs, chunk.len())?;
            let targets = Tensor::from_slice(&batch_targets, (chunk.len(), horizon), &Device::Cpu)?;
            let (median, log_scale) = net.forward(&inputs)?;
            let loss = laplace_nll(&median, &log_scale, &targets)?;
            optimizer.backward_step(&loss)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?);
            batches += 1;
        }
        let validation = score(&net, &validation_set, horizon, &norm)?;
        progress(Progress {
            epoch,
            epochs: options.epochs,
            train_loss: loss_sum / batches.max(1) as f64,
            validation_mae: validation.mae,
        });
    }
    let scores = score(&net, &validation_set, horizon, &norm)?;
    let info = ModelInfo {
        spec: spec.clone(),
        normaliser: norm,
        statistic: options.statistic.clone(),
        trained_from: options.trained_from,
        trained_to: options.trained_to,
        channels: series.len(),
        training_windows: train_set.count,
        validation_windows: validation_set.count,
        epochs: options.epochs,
        validation_mae: scores.mae,
        validation_rmse: scores.rmse,
        validation_mae_last_value: scores.mae_last_value,
        training_seconds: started.elapsed().as_secs_f64(),
        created_at: options.created_at,
    };
    Ok(Forecaster { info, net })
}
