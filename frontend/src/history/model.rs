//! The history page's data, apart from the browser so it can be tested
//! natively: time ranges and their URL form, the series as the chart draws
//! them, the columns joined for uPlot, and the live tail.

use trackside_wire::{ForecastPoint, HistorySeries, MAX_POINTS, SeriesData};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// The range buttons: URL key, label, span.
pub const PRESETS: &[(&str, &str, i64)] = &[
    ("15m", "15 min", 15 * MINUTE_MS),
    ("1h", "1 h", HOUR_MS),
    ("6h", "6 h", 6 * HOUR_MS),
    ("24h", "24 h", DAY_MS),
    ("7d", "7 d", 7 * DAY_MS),
    ("30d", "30 d", 30 * DAY_MS),
];

/// The narrowest range a zoom may reach: below a few readings a chart
/// says nothing, and the API's finest buckets are 10 ms.
pub const MIN_SPAN_MS: i64 = 1_000;
/// The widest range a zoom-out may reach (the API allows more; a chart
/// of years is not what this page is for).
pub const MAX_SPAN_MS: i64 = 400 * DAY_MS;

/// `[from, to)` in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: i64,
    pub to: i64,
}

impl Range {
    pub fn ending_at(to: i64, span: i64) -> Self {
        Self {
            from: to - span,
            to,
        }
    }

    pub fn span(&self) -> i64 {
        self.to - self.from
    }

    /// A range selected by dragging, kept at least [`MIN_SPAN_MS`] wide
    /// around its middle.
    pub fn selected(a: i64, b: i64) -> Self {
        let (from, to) = (a.min(b), a.max(b));
        if to - from >= MIN_SPAN_MS {
            return Self { from, to };
        }
        let middle = from + (to - from) / 2;
        Self {
            from: middle - MIN_SPAN_MS / 2,
            to: middle + MIN_SPAN_MS / 2,
        }
    }

    /// Twice as wide around the same middle, but never past `now`.
    pub fn zoomed_out(&self, now: i64) -> Self {
        let span = (self.span() * 2).min(MAX_SPAN_MS);
        let middle = self.from + self.span() / 2;
        let to = (middle + span / 2).min(now.max(self.to));
        Self {
            from: to - span,
            to,
        }
    }
}

/// What the page shows; it is kept in the URL so that a reload or a shared
/// link shows the same chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageState {
    pub channels: Vec<String>,
    pub range: Range,
    /// The range's end follows the clock and live readings are appended.
    pub live: bool,
}

impl PageState {
    /// From the query string's parameters. A live page keeps only its span
    /// (`span=`), a fixed one its `from` and `to`; anything missing or
    /// unreadable falls back to the last hour, live.
    pub fn from_query(get: impl Fn(&str) -> Option<String>, now: i64) -> Self {
        let channels: Vec<String> = get("channels")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let number = |key: &str| get(key).and_then(|v| v.parse::<i64>().ok());
        let fixed = match (number("from"), number("to")) {
            (Some(from), Some(to)) if from < to => Some(Range { from, to }),
            _ => None,
        };
        let live = get("live").is_some_and(|v| v == "1") || fixed.is_none();
        let range = match fixed {
            Some(range) if !live => range,
            _ => {
                let span = number("span")
                    .or(fixed.map(|r| r.span()))
                    .filter(|&s| (MIN_SPAN_MS..=MAX_SPAN_MS).contains(&s))
                    .unwrap_or(HOUR_MS);
                Range::ending_at(now, span)
            }
        };
        Self {
            channels,
            range,
            live,
        }
    }

    /// The query string (without `?`) that [`PageState::from_query`] reads
    /// back to this state.
    pub fn to_query(&self) -> String {
        let channels = self.channels.join(",");
        if self.live {
            format!("channels={channels}&span={}&live=1", self.range.span())
        } else {
            format!(
                "channels={channels}&from={}&to={}",
                self.range.from, self.range.to
            )
        }
    }
}

/// The `points` to ask for: one per pixel column of the plot.
pub fn points_for_width(width_px: f64) -> u32 {
    let clamped = width_px.round().clamp(100.0, f64::from(MAX_POINTS));
    clamped as u32
}

/// One channel as the chart holds it: a band (min, max) and a line (avg)
/// per x. Readings are points whose band has no width.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub channel: String,
    pub unit: Option<String>,
    pub t: Vec<i64>,
    pub min: Vec<Option<f64>>,
    pub max: Vec<Option<f64>>,
    pub avg: Vec<Option<f64>>,
    tail: Tail,
}

/// How live readings extend a series.
#[derive(Debug, Clone, PartialEq)]
enum Tail {
    /// Buckets `width` wide; `sum` and `count` keep each bucket's average
    /// exact as readings arrive.
    Buckets {
        width: i64,
        sum: Vec<f64>,
        count: Vec<u64>,
    },
    /// Readings; a silence longer than `gap_after` breaks the line.
    Readings { gap_after: Option<i64> },
}

impl Series {
    /// A forecast drawn like a series: the band from `low` to `high`, the
    /// line through `mean`.
    pub fn forecast(channel: String, unit: Option<String>, points: &[ForecastPoint]) -> Self {
        Self {
            channel,
            unit,
            t: points.iter().map(|p| p.at).collect(),
            min: points.iter().map(|p| Some(p.low)).collect(),
            max: points.iter().map(|p| Some(p.high)).collect(),
            avg: points.iter().map(|p| Some(p.mean)).collect(),
            tail: Tail::Readings { gap_after: None },
        }
    }

    pub fn from_wire(series: HistorySeries, bucket_ms: i64) -> (Self, Option<i64>) {
        let HistorySeries {
            channel,
            unit,
            newest,
            data,
        } = series;
        let built = match data {
            SeriesData::Buckets {
                t,
                count,
                min,
                max,
                avg,
                ..
            } => {
                let sum = avg
                    .iter()
                    .zip(&count)
                    .map(|(a, &n)| a.unwrap_or(0.0) * n as f64)
                    .collect();
                Self {
                    channel,
                    unit,
                    t,
                    min,
                    max,
                    avg,
                    tail: Tail::Buckets {
                        width: bucket_ms,
                        sum,
                        count,
                    },
                }
            }
            SeriesData::Readings { t, value } => {
                let gap_after = gap_threshold(&t, &value);
                Self {
                    channel,
                    unit,
                    t,
                    min: value.clone(),
                    max: value.clone(),
                    avg: value,
                    tail: Tail::Readings { gap_after },
                }
            }
        };
        (built, newest)
    }

    /// Whether these are readings rather than buckets.
    pub fn is_readings(&self) -> bool {
        matches!(self.tail, Tail::Readings { .. })
    }

    /// Appends a live reading newer than everything held. The caller keeps
    /// the newest timestamp per channel and passes only newer readings.
    pub fn append(&mut self, ts: i64, value: f64) {
        match &mut self.tail {
            Tail::Buckets { width, sum, count } => {
                let width = *width;
                let start = match (self.t.first(), self.t.last()) {
                    (Some(&first), Some(&last)) if ts >= last => {
                        // Extend the grid: empty buckets for a silence, so
                        // the chart shows it as a gap.
                        let start = first + (ts - first).div_euclid(width) * width;
                        let mut next = last + width;
                        while next <= start {
                            self.t.push(next);
                            self.min.push(None);
                            self.max.push(None);
                            self.avg.push(None);
                            sum.push(0.0);
                            count.push(0);
                            next += width;
                        }
                        start
                    }
                    (None, _) => {
                        let start = ts.div_euclid(width) * width;
                        self.t.push(start);
                        self.min.push(None);
                        self.max.push(None);
                        self.avg.push(None);
                        sum.push(0.0);
                        count.push(0);
                        start
                    }
                    // Older than the last bucket: it is already counted,
                    // or so late that a refetch is the right way to show it.
                    _ => return,
                };
                let Some(i) = self.t.iter().rposition(|&t| t <= ts) else {
                    return;
                };
                debug_assert!(self.t[i] <= start);
                sum[i] += value;
                count[i] += 1;
                self.min[i] = Some(self.min[i].map_or(value, |m| m.min(value)));
                self.max[i] = Some(self.max[i].map_or(value, |m| m.max(value)));
                self.avg[i] = Some(sum[i] / count[i] as f64);
            }
            Tail::Readings { gap_after } => {
                let last = self.t.last().copied();
                if last.is_some_and(|last| ts <= last) {
                    return;
                }
                if let (Some(last), Some(gap)) = (last, *gap_after)
                    && ts - last > gap
                {
                    self.t.push(last + 1);
                    self.min.push(None);
                    self.max.push(None);
                    self.avg.push(None);
                }
                self.t.push(ts);
                self.min.push(Some(value));
                self.max.push(Some(value));
                self.avg.push(Some(value));
            }
        }
    }

    /// Drops what has scrolled out of a live window, keeping one entry
    /// before `from` so the line enters the chart from its left edge.
    pub fn trim_before(&mut self, from: i64) {
        let keep_from = self
            .t
            .iter()
            .position(|&t| t >= from)
            .unwrap_or(self.t.len());
        let cut = keep_from.saturating_sub(1);
        if cut == 0 {
            return;
        }
        self.t.drain(..cut);
        self.min.drain(..cut);
        self.max.drain(..cut);
        self.avg.drain(..cut);
        if let Tail::Buckets { sum, count, .. } = &mut self.tail {
            sum.drain(..cut);
            count.drain(..cut);
        }
    }
}

/// Three times the median spacing of a series' readings, as the server
/// places gap markers.
fn gap_threshold(t: &[i64], value: &[Option<f64>]) -> Option<i64> {
    let times: Vec<i64> = t
        .iter()
        .zip(value)
        .filter(|(_, v)| v.is_some())
        .map(|(&t, _)| t)
        .collect();
    let mut spacings: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    if spacings.len() < 2 {
        return None;
    }
    let middle = spacings.len() / 2;
    let (_, median, _) = spacings.select_nth_unstable(middle);
    Some((*median).max(1) * 3)
}

/// One cell of a chart column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    Value(f64),
    /// No data here: the line breaks (`null` for uPlot).
    Gap,
    /// This series has no entry at this x, another one has: the line goes
    /// straight through (`undefined` for uPlot).
    Absent,
}

/// Columns for uPlot: one shared x, then min, max and avg of each series.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    pub x: Vec<i64>,
    pub ys: Vec<Vec<Cell>>,
}

/// Joins series onto one x axis. Bucket series of one answer share their
/// grid, so this is usually a copy; readings differ per channel.
pub fn join(series: &[Series]) -> Columns {
    let mut x: Vec<i64> = series.iter().flat_map(|s| s.t.iter().copied()).collect();
    x.sort_unstable();
    x.dedup();
    let mut ys = Vec::with_capacity(series.len() * 3);
    for s in series {
        let mut columns = [
            Vec::with_capacity(x.len()),
            Vec::with_capacity(x.len()),
            Vec::with_capacity(x.len()),
        ];
        let mut i = 0;
        for &at in &x {
            let here = s.t.get(i) == Some(&at);
            for (column, values) in columns.iter_mut().zip([&s.min, &s.max, &s.avg]) {
                column.push(if here {
                    values[i].map_or(Cell::Gap, Cell::Value)
                } else {
                    Cell::Absent
                });
            }
            if here {
                i += 1;
            }
        }
        ys.extend(columns);
    }
    Columns { x, ys }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_url_round_trips_the_state() {
        let now = 1_800_000_000_000;
        let fixed = PageState {
            channels: vec!["T1/relay_voltage".into(), "T2/feed_current".into()],
            range: Range { from: 5, to: 99 },
            live: false,
        };
        let text = fixed.to_query();
        assert_eq!(
            text,
            "channels=T1/relay_voltage,T2/feed_current&from=5&to=99"
        );
        let pairs: Vec<(&str, &str)> = text
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        assert_eq!(PageState::from_query(query(&pairs), now), fixed);

        let live = PageState::from_query(query(&[("span", "21600000"), ("live", "1")]), now);
        assert_eq!(live.range, Range::ending_at(now, 6 * HOUR_MS));
        assert!(live.live && live.channels.is_empty());
        assert_eq!(live.to_query(), "channels=&span=21600000&live=1");

        // Nothing usable: the last hour, live.
        let fallback = PageState::from_query(query(&[("from", "9"), ("to", "3")]), now);
        assert_eq!(
            (fallback.range, fallback.live),
            (Range::ending_at(now, HOUR_MS), true)
        );
    }

    #[test]
    fn zooming_keeps_sane_ranges() {
        let now = 10 * DAY_MS;
        let r = Range::selected(5_000, 2_000);
        assert_eq!(
            r,
            Range {
                from: 2_000,
                to: 5_000
            }
        );
        assert_eq!(Range::selected(10_000, 10_100).span(), MIN_SPAN_MS);
        // Out around the middle...
        let day = Range {
            from: 2 * DAY_MS,
            to: 3 * DAY_MS,
        };
        assert_eq!(
            day.zoomed_out(now),
            Range {
                from: 2 * DAY_MS - DAY_MS / 2,
                to: 3 * DAY_MS + DAY_MS / 2
            }
        );
        // ...but not into the future.
        let recent = Range::ending_at(now, HOUR_MS);
        assert_eq!(recent.zoomed_out(now), Range::ending_at(now, 2 * HOUR_MS));
        assert_eq!(
            Range::ending_at(now, MAX_SPAN_MS).zoomed_out(now).span(),
            MAX_SPAN_MS
        );
    }

    fn buckets(t: &[i64], avg: &[Option<f64>], count: &[u64]) -> Series {
        let wire = HistorySeries {
            channel: "T1/relay_voltage".into(),
            unit: Some("V".into()),
            newest: None,
            data: SeriesData::Buckets {
                t: t.to_vec(),
                count: count.to_vec(),
                min: avg.to_vec(),
                max: avg.to_vec(),
                avg: avg.to_vec(),
                first: avg.to_vec(),
                last: avg.to_vec(),
            },
        };
        Series::from_wire(wire, 1_000).0
    }

    #[test]
    fn live_readings_fill_the_last_bucket_then_open_new_ones() {
        let mut s = buckets(&[0, 1_000], &[Some(1.0), Some(2.0)], &[1, 1]);
        s.append(1_500, 4.0);
        assert_eq!(s.avg, [Some(1.0), Some(3.0)]);
        assert_eq!((s.min[1], s.max[1]), (Some(2.0), Some(4.0)));
        // Two silent seconds, then a reading: two empty buckets between.
        s.append(4_200, 5.0);
        assert_eq!(s.t, [0, 1_000, 2_000, 3_000, 4_000]);
        assert_eq!(s.avg, [Some(1.0), Some(3.0), None, None, Some(5.0)]);
        // A reading older than the last bucket is not drawn twice.
        s.append(1_700, 9.0);
        assert_eq!(s.max[1], Some(4.0));
        s.trim_before(3_500);
        assert_eq!(s.t, [3_000, 4_000]);
        s.append(4_900, 7.0);
        assert_eq!(s.avg, [None, Some(6.0)]);
    }

    #[test]
    fn live_readings_extend_readings_with_gaps() {
        let wire = HistorySeries {
            channel: "T1/rx_level".into(),
            unit: None,
            newest: Some(3_000),
            data: SeriesData::Readings {
                t: vec![0, 1_000, 2_000, 3_000],
                value: vec![Some(1.0), Some(1.0), Some(1.0), Some(1.0)],
            },
        };
        let (mut s, newest) = Series::from_wire(wire, 10);
        assert_eq!(newest, Some(3_000));
        s.append(4_000, 2.0);
        s.append(9_000, 3.0); // five seconds of silence: more than 3 x 1 s
        assert_eq!(s.t, [0, 1_000, 2_000, 3_000, 4_000, 4_001, 9_000]);
        assert_eq!(s.avg[5], None);
        assert_eq!(s.min[6], Some(3.0));
    }

    #[test]
    fn columns_join_on_one_axis() {
        let a = buckets(&[0, 1_000], &[Some(1.0), None], &[1, 0]);
        let mut b = a.clone();
        b.t = vec![500, 1_000];
        b.min = vec![Some(7.0), Some(8.0)];
        b.max = b.min.clone();
        b.avg = b.min.clone();
        let columns = join(&[a, b]);
        assert_eq!(columns.x, [0, 500, 1_000]);
        assert_eq!(columns.ys.len(), 6);
        assert_eq!(columns.ys[2], [Cell::Value(1.0), Cell::Absent, Cell::Gap]);
        assert_eq!(
            columns.ys[5],
            [Cell::Absent, Cell::Value(7.0), Cell::Value(8.0)]
        );
    }

    #[test]
    fn points_follow_the_plot_width() {
        assert_eq!(points_for_width(1234.4), 1234);
        assert_eq!(points_for_width(12.0), 100);
        assert_eq!(points_for_width(1e9), MAX_POINTS);
    }
}
