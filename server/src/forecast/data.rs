//! From the minute rollups to the forecaster's series.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use trackside_forecast::Series;

/// Which per-minute statistic a kind is forecast from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    /// The highest reading: for relay-end values, which a train shunts to
    /// near zero, the highest is the clear-circuit level that degrades.
    Max,
    Mean,
}

impl Statistic {
    pub fn for_kind(kind: &str) -> Self {
        match kind {
            "relay_voltage" | "relay_current" | "rx_level" => Statistic::Max,
            _ => Statistic::Mean,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::Max => "max",
            Statistic::Mean => "mean",
        }
    }

    pub fn parse(text: &str) -> Self {
        if text == "max" {
            Statistic::Max
        } else {
            Statistic::Mean
        }
    }
}

/// Every channel of `kind` over `[from, to)` in steps of `step_minutes`,
/// from `history_1m` (fresh even where the rollup job is behind), by
/// channel name. A channel's series starts at its first step with data;
/// steps without data inside it are `None`.
pub async fn load_series(
    pool: &PgPool,
    kind: &str,
    statistic: Statistic,
    step_minutes: u32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Vec<(String, Series)>> {
    let rows: Vec<(String, i64, f64)> = sqlx::query_as(
        "SELECT c.name,
                (extract(epoch FROM date_bin(make_interval(mins => $4), m.bucket,
                                             timestamptz 'epoch')) * 1000)::bigint AS step,
                CASE WHEN $5 THEN max(m.max) ELSE sum(m.sum) / sum(m.count) END AS value
         FROM history_1m m
         JOIN channels c ON c.id = m.channel_id
         WHERE c.parameter = $1 AND m.bucket >= $2 AND m.bucket < $3 AND m.count > 0
         GROUP BY c.name, step
         ORDER BY c.name, step",
    )
    .bind(kind)
    .bind(from)
    .bind(to)
    .bind(step_minutes as i32)
    .bind(statistic == Statistic::Max)
    .fetch_all(pool)
    .await?;
    let step_ms = i64::from(step_minutes) * 60_000;
    let mut out: Vec<(String, Series)> = Vec::new();
    for (channel, at, value) in rows {
        if out.last().is_none_or(|(c, _)| *c != channel) {
            out.push((
                channel.clone(),
                Series {
                    start: at,
                    values: Vec::new(),
                },
            ));
        }
        let Some((_, series)) = out.last_mut() else {
            continue;
        };
        let index = ((at - series.start) / step_ms) as usize;
        if series.values.len() <= index {
            series.values.resize(index + 1, None);
        }
        series.values[index] = Some(value as f32);
    }
    Ok(out)
}

/// `series` laid on the grid `[from_ms, end_ms)`, with `None` where it has
/// no value, so its last step is the grid's last step.
pub fn padded(series: Series, from_ms: i64, end_ms: i64, step_ms: i64) -> Series {
    let steps = ((end_ms - from_ms) / step_ms).max(0) as usize;
    let mut values = vec![None; steps];
    for (i, value) in series.values.into_iter().enumerate() {
        let at = series.start + i as i64 * step_ms;
        if at >= from_ms && at < end_ms {
            values[((at - from_ms) / step_ms) as usize] = value;
        }
    }
    Series {
        start: from_ms,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_puts_a_late_series_at_the_end_of_the_grid() {
        let series = Series {
            start: 3 * 60_000,
            values: vec![Some(1.0), None, Some(3.0)],
        };
        let padded = padded(series, 0, 6 * 60_000, 60_000);
        assert_eq!(padded.start, 0);
        assert_eq!(
            padded.values,
            vec![None, None, None, Some(1.0), None, Some(3.0)]
        );
    }
}
