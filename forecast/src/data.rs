//! From channel series to the network's inputs and targets.
//!
//! Each step of a window becomes four features:
//! 1. the value minus the window's last value, over the scale: the shape of
//!    the recent past, the same for a 1.2 V and a 1.8 V circuit;
//! 2. the value minus the kind's mean, over the scale: where the level sits,
//!    since a circuit near its limit may behave differently;
//! 3. and 4. the sine and cosine of the UTC time of day, for daily cycles
//!    (ballast resistance follows temperature and dew), or zeros when the
//!    spec leaves the time of day out.
//!
//! Targets are the next `horizon` values minus the window's last value, over
//! the scale. The scale is the kind's standard deviation over the training
//! data, so one model serves every circuit of a kind.

use serde::{Deserialize, Serialize};

use crate::Spec;

pub const FEATURES: usize = 4;
const DAY_MS: i64 = 86_400_000;

/// One channel's values at a regular step.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Start of the first step, Unix milliseconds.
    pub start: i64,
    /// `None` where the channel sent nothing in a step.
    pub values: Vec<Option<f32>>,
}

impl Series {
    /// The start of the step after the last one.
    pub fn end(&self, step_ms: i64) -> i64 {
        self.start + self.values.len() as i64 * step_ms
    }
}

/// Centre and scale of a kind's values, fitted on its training data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normaliser {
    pub mean: f32,
    pub scale: f32,
}

impl Normaliser {
    pub fn fit(series: &[Series]) -> Option<Self> {
        let values: Vec<f64> = series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .map(|v| f64::from(*v))
            .collect();
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        // A kind whose values never moved still needs a usable scale.
        let floor = (mean.abs() * 0.01).max(1e-6);
        Some(Self {
            mean: mean as f32,
            scale: variance.sqrt().max(floor) as f32,
        })
    }
}

/// Windows in the network's layout: `inputs` is `count x window x
/// FEATURES`, `targets` `count x horizon` (normalised), `anchors` the last
/// input value of each window (in the parameter's unit).
#[derive(Debug, Default, Clone)]
pub struct Windows {
    pub inputs: Vec<f32>,
    pub targets: Vec<f32>,
    pub anchors: Vec<f32>,
    pub count: usize,
}

fn push_features(
    values: &[f32],
    first_at: i64,
    spec: &Spec,
    norm: &Normaliser,
    out: &mut Vec<f32>,
) {
    let anchor = values[values.len() - 1];
    for (i, value) in values.iter().enumerate() {
        let at = first_at + i as i64 * spec.step_ms();
        let (sin, cos) = if spec.time_of_day {
            let phase = std::f32::consts::TAU * (at.rem_euclid(DAY_MS) as f32 / DAY_MS as f32);
            (phase.sin(), phase.cos())
        } else {
            (0.0, 0.0)
        };
        out.extend([
            (value - anchor) / norm.scale,
            (value - norm.mean) / norm.scale,
            sin,
            cos,
        ]);
    }
}

/// Every complete window of every series, split in time: a series' first
/// `1 - validation_fraction` trains (inputs and targets both inside it),
/// the windows whose targets lie after that point validate.
pub fn windows(
    series: &[Series],
    spec: &Spec,
    norm: &Normaliser,
    validation_fraction: f64,
) -> (Windows, Windows) {
    let (w, h) = (spec.window, spec.horizon);
    let mut train = Windows::default();
    let mut validation = Windows::default();
    for s in series {
        let len = s.values.len();
        if len < w + h {
            continue;
        }
        let split = ((len as f64) * (1.0 - validation_fraction)).floor() as usize;
        for start in 0..=len - (w + h) {
            let end = start + w + h;
            let target_start = start + w;
            let into = if end <= split {
                &mut train
            } else if target_start >= split {
                &mut validation
            } else {
                continue;
            };
            let Some(values) = s.values[start..end]
                .iter()
                .copied()
                .collect::<Option<Vec<f32>>>()
            else {
                continue;
            };
            let anchor = values[w - 1];
            push_features(
                &values[..w],
                s.start + start as i64 * spec.step_ms(),
                spec,
                norm,
                &mut into.inputs,
            );
            into.targets
                .extend(values[w..].iter().map(|v| (v - anchor) / norm.scale));
            into.anchors.push(anchor);
            into.count += 1;
        }
    }
    (train, validation)
}

/// The features of the last `window` steps of `history`, its last value,
/// and the start of the first forecast step. Gaps are carried forward (the
/// first present value fills the front); `None` when the last step is
/// missing or fewer than half the window's steps hold a value.
pub fn inference_window(
    history: &Series,
    spec: &Spec,
    norm: &Normaliser,
) -> Option<(Vec<f32>, f64, i64)> {
    let len = history.values.len();
    if len < spec.window {
        return None;
    }
    let tail = &history.values[len - spec.window..];
    let last = (*tail.last()?)?;
    if tail.iter().flatten().count() * 2 < spec.window {
        return None;
    }
    let mut carried = tail.iter().flatten().next().copied().unwrap_or(last);
    let values: Vec<f32> = tail
        .iter()
        .map(|v| {
            if let Some(v) = v {
                carried = *v;
            }
            carried
        })
        .collect();
    let first_at = history.start + (len - spec.window) as i64 * spec.step_ms();
    let mut features = Vec::with_capacity(spec.window * FEATURES);
    push_features(&values, first_at, spec, norm, &mut features);
    Some((features, f64::from(last), history.end(spec.step_ms())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(window: usize, horizon: usize) -> Spec {
        Spec {
            kind: "relay_voltage".into(),
            step_minutes: 1,
            window,
            horizon,
            hidden: 4,
            time_of_day: false,
        }
    }

    #[test]
    fn windows_split_in_time_and_skip_gaps() {
        let mut values: Vec<Option<f32>> = (0..20).map(|i| Some(i as f32)).collect();
        values[3] = None;
        let series = [Series { start: 0, values }];
        let norm = Normaliser {
            mean: 0.0,
            scale: 2.0,
        };
        let (train, validation) = windows(&series, &spec(3, 2), &norm, 0.25);
        // Split at 15: training windows end by 15 and avoid step 3
        // (starts 4..=10), validation targets start at 15 or later
        // (starts 12..=15).
        assert_eq!(train.count, 7);
        assert_eq!(validation.count, 4);
        assert_eq!(train.inputs.len(), 7 * 3 * FEATURES);
        // First training window: 4, 5, 6 -> targets 7, 8 relative to 6.
        assert_eq!(train.anchors[0], 6.0);
        assert_eq!(&train.targets[..2], &[0.5, 1.0]);
        assert_eq!(train.inputs[0], (4.0 - 6.0) / 2.0);
        assert_eq!(train.inputs[1], 4.0 / 2.0);
    }

    #[test]
    fn inference_carries_gaps_forward_and_needs_the_last_step() {
        let norm = Normaliser {
            mean: 1.0,
            scale: 1.0,
        };
        let history = Series {
            start: 60_000,
            values: vec![Some(1.0), None, Some(3.0), None, Some(5.0)],
        };
        let (features, anchor, first_at) = inference_window(&history, &spec(4, 2), &norm).unwrap();
        assert_eq!(anchor, 5.0);
        assert_eq!(first_at, 6 * 60_000);
        let relative: Vec<f32> = features.chunks(FEATURES).map(|f| f[0]).collect();
        assert_eq!(relative, vec![-2.0, -2.0, -2.0, 0.0]);

        let silent = Series {
            start: 0,
            values: vec![Some(1.0), Some(1.0), Some(1.0), None],
        };
        assert!(inference_window(&silent, &spec(3, 1), &norm).is_none());
    }
}
