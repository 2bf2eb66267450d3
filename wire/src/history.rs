//! `GET /api/history`: a time range of one or more channels at a resolution
//! that suits a chart of about `points` pixels.
//!
//! The answer is columnar (one array per figure) because that is what a
//! chart library draws from, and it is half the size of an array of objects.

use serde::{Deserialize, Serialize};

/// The most `points` a request may ask for.
pub const MAX_POINTS: u32 = 5_000;
/// The most channels in one request.
pub const MAX_CHANNELS: usize = 100;
/// The widest range one request may span, in days.
pub const MAX_RANGE_DAYS: i64 = 3_660;

/// The answer of `GET /api/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct History {
    /// The requested range, Unix milliseconds, `from` inclusive, `to`
    /// exclusive.
    pub from: i64,
    pub to: i64,
    /// The stored data that answered the bucketed series.
    pub source: HistorySource,
    /// The buckets' nominal width in milliseconds. Buckets wider than an
    /// hour follow the yard's wall clock (a day bucket starts at local
    /// midnight), so on a daylight-saving change one is an hour shorter or
    /// longer; the next bucket's `t` is always where a bucket ends.
    pub bucket_ms: i64,
    /// One per requested channel, in the order requested.
    pub series: Vec<HistorySeries>,
}

/// Which stored data answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HistorySource {
    /// The readings themselves (buckets narrower than a minute).
    Raw,
    /// The per-minute rollup (1- and 2-minute buckets).
    Minute,
    /// The 5-minute rollup (5- and 10-minute buckets).
    FiveMinute,
    /// The 15-minute rollup (15- and 30-minute buckets).
    QuarterHour,
    /// The per-hour rollup (1-, 2- and 3-hour buckets).
    Hour,
    /// The 6-hour rollup on the yard's wall clock (6- and 12-hour and day
    /// buckets).
    SixHour,
}

/// One channel's data over the range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistorySeries {
    pub channel: String,
    pub unit: Option<String>,
    /// The timestamp of the newest reading the answer includes, if any. A
    /// live chart appends readings newer than this and no others, so it
    /// neither counts a reading twice nor leaves a seam.
    pub newest: Option<i64>,
    #[serde(flatten)]
    pub data: SeriesData,
}

/// A series is either the readings themselves or buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SeriesData {
    /// The range holds few enough readings to send them all (at most twice
    /// `points`). `value` is `null` at a gap marker, placed just after a
    /// reading that is followed by a silence of more than three times the
    /// series' median spacing: the chart breaks its line there.
    Readings {
        t: Vec<i64>,
        value: Vec<Option<f64>>,
    },
    /// One entry per bucket on the grid, `t` its start. Buckets are whole:
    /// the first may start before `from` and the last may end after `to`.
    /// A bucket without readings has `count` 0 and `null` figures, so a
    /// chart draws a gap rather than a line across an outage.
    Buckets {
        t: Vec<i64>,
        count: Vec<u64>,
        min: Vec<Option<f64>>,
        max: Vec<Option<f64>>,
        avg: Vec<Option<f64>>,
        /// The bucket's earliest and latest reading: with min and max, the
        /// four values that draw a line exactly at one bucket per pixel.
        first: Vec<Option<f64>>,
        last: Vec<Option<f64>>,
    },
}

impl SeriesData {
    /// Bucket starts or reading times.
    pub fn times(&self) -> &[i64] {
        match self {
            Self::Readings { t, .. } | Self::Buckets { t, .. } => t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_flat_objects_tagged_by_kind() {
        let series = HistorySeries {
            channel: "T101/relay_voltage".into(),
            unit: Some("V".into()),
            newest: Some(60_500),
            data: SeriesData::Buckets {
                t: vec![0, 60_000],
                count: vec![0, 2],
                min: vec![None, Some(1.5)],
                max: vec![None, Some(1.75)],
                avg: vec![None, Some(1.625)],
                first: vec![None, Some(1.75)],
                last: vec![None, Some(1.5)],
            },
        };
        let text = serde_json::to_string(&series).unwrap();
        assert_eq!(
            text,
            r#"{"channel":"T101/relay_voltage","unit":"V","newest":60500,"kind":"buckets","t":[0,60000],"count":[0,2],"min":[null,1.5],"max":[null,1.75],"avg":[null,1.625],"first":[null,1.75],"last":[null,1.5]}"#
        );
        assert_eq!(
            serde_json::from_str::<HistorySeries>(&text).unwrap(),
            series
        );
        let readings = r#"{"channel":"T1/rx_level","unit":null,"newest":null,"kind":"readings","t":[5,6],"value":[1.0,null]}"#;
        let parsed: HistorySeries = serde_json::from_str(readings).unwrap();
        assert_eq!(parsed.data.times(), [5, 6]);
    }

    #[test]
    fn sources_are_snake_case() {
        assert_eq!(
            serde_json::to_string(&HistorySource::Minute).unwrap(),
            r#""minute""#
        );
    }
}
