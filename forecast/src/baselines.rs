//! The forecasts a network has to beat, over the same series: the last
//! value, the value one season (a day) earlier, and Holt's linear
//! exponential smoothing (level and trend).

/// Predicts step `t + h` (h from 1) from `history[..=t]`.
pub fn last_value(history: &[f32], h: usize) -> f32 {
    let _ = h;
    history[history.len() - 1]
}

/// The value one `period` before the predicted step; the last value when
/// the history is shorter than that.
pub fn seasonal_naive(history: &[f32], h: usize, period: usize) -> f32 {
    let target = history.len() - 1 + h;
    let back = period * h.div_ceil(period).max(1);
    match target.checked_sub(back) {
        Some(i) if i < history.len() => history[i],
        _ => last_value(history, h),
    }
}

/// Holt's linear method with smoothing weights `alpha` (level) and `beta`
/// (trend), run over the whole history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Holt {
    pub alpha: f32,
    pub beta: f32,
}

impl Holt {
    /// Level and trend after the whole history.
    pub fn state(&self, history: &[f32]) -> (f32, f32) {
        let mut level = history[0];
        let mut trend = 0.0;
        for &value in &history[1..] {
            let previous = level;
            level = self.alpha * value + (1.0 - self.alpha) * (level + trend);
            trend = self.beta * (level - previous) + (1.0 - self.beta) * trend;
        }
        (level, trend)
    }

    pub fn forecast(state: (f32, f32), h: usize) -> f32 {
        state.0 + h as f32 * state.1
    }

    /// The weights from a small grid that give the lowest mean absolute
    /// error over `horizon` steps on `series` (judged every `stride` steps).
    pub fn fit(series: &[Vec<f32>], horizon: usize, stride: usize) -> Self {
        let mut best = (
            f64::INFINITY,
            Holt {
                alpha: 0.5,
                beta: 0.1,
            },
        );
        for alpha in [0.05, 0.1, 0.2, 0.4, 0.7] {
            for beta in [0.01, 0.05, 0.1, 0.2] {
                let holt = Holt { alpha, beta };
                let (mut error, mut n) = (0.0, 0usize);
                for values in series {
                    let mut t = horizon;
                    while t + horizon < values.len() {
                        let state = holt.state(&values[t.saturating_sub(200)..=t]);
                        for h in 1..=horizon {
                            error += f64::from((Holt::forecast(state, h) - values[t + h]).abs());
                            n += 1;
                        }
                        t += stride.max(1);
                    }
                }
                let mae = error / n.max(1) as f64;
                if mae < best.0 {
                    best = (mae, holt);
                }
            }
        }
        best.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seasonal_naive_looks_one_period_back() {
        let history: Vec<f32> = (0..10).map(|i| i as f32).collect();
        // Step 10 + 1 is predicted by step 11 - 4 = 7.
        assert_eq!(seasonal_naive(&history, 2, 4), 7.0);
        // Step 9 + 5 = 14 is more than a period ahead: 14 - 8 = 6.
        assert_eq!(seasonal_naive(&history, 5, 4), 6.0);
        assert_eq!(seasonal_naive(&history[..2], 1, 4), 1.0);
    }

    #[test]
    fn holt_follows_a_straight_line() {
        let line: Vec<f32> = (0..50).map(|i| 2.0 - 0.01 * i as f32).collect();
        let holt = Holt {
            alpha: 0.5,
            beta: 0.3,
        };
        let predicted = Holt::forecast(holt.state(&line), 10);
        assert!((predicted - (2.0 - 0.59)).abs() < 0.01, "{predicted}");
    }
}
