//! The history page: channels over a time range, from a week down to
//! seconds. The page keeps its state in the URL, asks `GET /api/history`
//! for about one point per pixel column of the plot, fetches finer data
//! when the operator drags a range (double-click steps back out), and in
//! live mode appends readings from its own feed of the charted channels
//! (`crate::feed`) to the right edge without fetching again.
//!
//! The `data-*` attributes are the browser tests' hooks (frontend/README.md).

mod chart;
mod export;
mod forecast;
pub mod model;

use std::collections::HashMap;

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use trackside_wire::{
    History, HistorySource, MaintenanceWindowInfo, Reading, ServerMessage, YardInfo,
};

use self::chart::{Chart, Frame, Shape, colour};
use self::export::ExportBar;
use self::forecast::{ForecastData, ForecastPanel};
use self::model::{PRESETS, PageState, Range, Series, join, points_for_width};
use crate::api::{self, ApiFailure};
use crate::board::Board;
use crate::feed::{Connection, Event, Feed, Subscription};
use crate::time::{Clock, utc_beside, wall_input, wall_to_utc, zoned_stamp};

/// Where the page stands with its data.
#[derive(Debug, Clone, PartialEq)]
enum Status {
    /// No channel picked.
    Empty,
    Loading,
    Ready,
    Failed(String),
}

impl Status {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Loading => "loading",
            Self::Ready => "ready",
            Self::Failed(_) => "error",
        }
    }
}

/// An answer as the chart holds it, with the live tail appended.
#[derive(Debug, Clone, PartialEq)]
struct Loaded {
    /// Which request this answers; older answers are dropped.
    request: u64,
    range: Range,
    source: HistorySource,
    bucket_ms: i64,
    series: Vec<Series>,
    /// Per channel, the newest reading already in `series`.
    newest: HashMap<String, i64>,
}

impl Loaded {
    fn new(request: u64, answer: History) -> Self {
        let mut newest = HashMap::new();
        let series = answer
            .series
            .into_iter()
            .map(|s| {
                let (series, latest) = Series::from_wire(s, answer.bucket_ms);
                if let Some(latest) = latest {
                    newest.insert(series.channel.clone(), latest);
                }
                series
            })
            .collect();
        Self {
            request,
            range: Range {
                from: answer.from,
                to: answer.to,
            },
            source: answer.source,
            bucket_ms: answer.bucket_ms,
            series,
            newest,
        }
    }

    /// Appends live readings newer than what the answer holds, so nothing
    /// is counted twice and nothing between answer and feed is missing.
    fn append(&mut self, readings: &[Reading]) {
        for reading in readings {
            let Some(series) = self
                .series
                .iter_mut()
                .find(|s| s.channel == reading.channel)
            else {
                continue;
            };
            let newest = self
                .newest
                .entry(reading.channel.clone())
                .or_insert(i64::MIN);
            if reading.ts > *newest {
                series.append(reading.ts, reading.value);
                *newest = reading.ts;
            }
        }
    }
}

#[component]
pub fn HistoryPage(board: Board, yard: RwSignal<Option<YardInfo>>, clock: Clock) -> impl IntoView {
    let query = use_query_map();
    let initial = query.with_untracked(|q| PageState::from_query(|k| q.get(k), clock.now()));
    let state = RwSignal::new(initial);
    // Where each zoom came from: the range, and whether it was live.
    let zooms = RwSignal::new(Vec::<(Range, bool)>::new());
    let width = RwSignal::new(0.0);
    let status = RwSignal::new(Status::Empty);
    let loaded = RwSignal::new(None::<Loaded>);
    let requests = StoredValue::new(0u64);
    // Bumped to ask again for the same view (after the feed reconnects).
    let reload = RwSignal::new(0u32);
    // Live readings that arrive while a request is in flight: its answer
    // may or may not include them, and `Loaded::append` sorts that out.
    let early = StoredValue::new(None::<Vec<Reading>>);
    // Whether the live subscription is open (a test hook, and the dot).
    let following = RwSignal::new(false);
    let zone = Memo::new(move |_| yard.with(|y| y.as_ref().map(|y| y.timezone.clone())));

    // The URL follows the state (replace: the back button leaves the page,
    // it does not step through every zoom).
    Effect::new(move |_| {
        let text = state.with(PageState::to_query);
        if let Ok(history) = window().history() {
            let _ = history.replace_state_with_url(
                &wasm_bindgen::JsValue::NULL,
                "",
                Some(&format!("/history?{text}")),
            );
        }
    });

    // One request per change of channels, range, live or width; never per
    // live reading or clock tick.
    Effect::new(move |_| {
        let PageState {
            channels,
            range,
            live,
        } = state.get();
        let width = width.get();
        reload.track();
        if width <= 0.0 {
            return;
        }
        let request = requests.with_value(|n| n + 1);
        requests.set_value(request);
        if channels.is_empty() {
            loaded.set(None);
            status.set(Status::Empty);
            return;
        }
        let range = if live {
            Range::ending_at(clock.now_untracked(), range.span())
        } else {
            range
        };
        status.set(Status::Loading);
        early.set_value(live.then(Vec::new));
        let points = points_for_width(width);
        crate::perf::mark(
            "history:request",
            &[
                ("request", request as f64),
                ("from", range.from as f64),
                ("to", range.to as f64),
                ("points", f64::from(points)),
            ],
        );
        let query = format!(
            "channels={}&from={}&to={}&points={points}",
            channels.join(","),
            range.from,
            range.to
        );
        leptos::task::spawn_local(async move {
            let answer = api::history(&query).await;
            crate::perf::mark("history:answered", &[("request", request as f64)]);
            if requests.try_get_value() != Some(request) {
                return;
            }
            match answer {
                Ok(answer) => {
                    let mut fresh = Loaded::new(request, answer);
                    if let Some(early) = early.try_update_value(Option::take).flatten() {
                        fresh.append(&early);
                    }
                    loaded.set(Some(fresh));
                    status.set(Status::Ready);
                }
                Err(failure) => status.set(Status::Failed(failure_text(&failure))),
            }
        });
    });

    // The live feed: a subscription to exactly the charted channels, open
    // while live mode is on.
    let to_follow = Memo::new(move |_| state.with(|s| s.live.then(|| s.channels.clone())));
    Effect::new(move |_| {
        let Some(channels) = to_follow.get().filter(|c| !c.is_empty()) else {
            return;
        };
        let mut greeted_before = false;
        let feed = Feed::open(Subscription::Channels(channels), move |event| match event {
            Event::State(state) => following.set(state == Connection::Live),
            // After a reconnect the answer may miss what was said while
            // disconnected: ask again, once.
            Event::Frame(ServerMessage::Hello { .. }) => {
                if greeted_before {
                    reload.update(|n| *n += 1);
                }
                greeted_before = true;
            }
            // The server skipped readings this page was behind on: the
            // answer on show has a hole only a new request fills.
            Event::Frame(ServerMessage::Lagged { .. }) => reload.update(|n| *n += 1),
            // To the answer on show, and to the request in flight.
            Event::Frame(ServerMessage::Readings { readings }) => {
                early.update_value(|e| {
                    if let Some(e) = e {
                        e.extend(readings.iter().cloned());
                    }
                });
                loaded.update(|l| {
                    if let Some(l) = l {
                        l.append(&readings);
                    }
                });
            }
            Event::Frame(_) => {}
        });
        on_cleanup(move || {
            drop(feed);
            following.set(false);
        });
    });

    // In live mode the window slides with the clock; what scrolls out is
    // dropped, so the chart stays bounded however long it runs.
    let view_range = Memo::new(move |_| {
        let st = state.get();
        if st.live {
            Range::ending_at(clock.now(), st.range.span())
        } else {
            st.range
        }
    });
    Effect::new(move |_| {
        let range = view_range.get();
        if state.with_untracked(|s| s.live) {
            loaded.update(|l| {
                if let Some(l) = l {
                    for series in &mut l.series {
                        series.trim_before(range.from);
                    }
                }
            });
        }
    });

    // Forecasts of the charted channels, polled while the page is open.
    let forecast_data = ForecastData::new();
    let charted = Memo::new(move |_| state.with(|s| s.channels.clone()));
    Effect::new(move |_| {
        let channels = charted.get();
        forecast_data.poke.track();
        let (stop, stopped) = futures::channel::oneshot::channel::<()>();
        leptos::task::spawn_local(forecast::poll(channels, forecast_data, stopped));
        on_cleanup(move || drop(stop));
    });
    // The forecasts that go with the loaded series, in the series' order.
    let shown_forecasts = Memo::new(move |_| {
        let forecasts = forecast_data.forecasts.get();
        loaded.with(|l| {
            l.as_ref().map_or_else(Vec::new, |l| {
                l.series
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| {
                        let f = forecasts.iter().find(|f| f.channel == s.channel)?;
                        Some((
                            i,
                            Series::forecast(s.channel.clone(), s.unit.clone(), &f.points),
                        ))
                    })
                    .collect::<Vec<_>>()
            })
        })
    });

    let shape = Memo::new(move |_| {
        loaded.with(|l| {
            l.as_ref().map(|l| Shape {
                channels: l
                    .series
                    .iter()
                    .map(|s| (s.channel.clone(), s.unit.clone()))
                    .collect(),
                forecasts: shown_forecasts.with(|f| f.iter().map(|(i, _)| *i).collect()),
                zone: zone.get(),
            })
        })
    });
    let frame = Signal::derive(move || {
        let mut range = view_range.get();
        let forecasts = shown_forecasts.get();
        // A view that reaches "now" widens to show the forecast beyond it,
        // by at most half its span, so the history keeps most of the width.
        let reaches_now = range.to >= clock.now_untracked() - 60_000;
        if reaches_now
            && let Some(end) = forecasts
                .iter()
                .filter_map(|(_, f)| f.t.last().copied())
                .max()
        {
            range.to = end.min(range.to + range.span() / 2).max(range.to);
        }
        loaded.with(|l| {
            l.as_ref().map(|l| {
                let mut all = l.series.clone();
                all.extend(forecasts.into_iter().map(|(_, f)| f));
                Frame {
                    columns: join(&all),
                    range,
                    request: l.request,
                }
            })
        })
    });

    let zoom_to = move |range: Range| {
        crate::perf::mark(
            "history:zoom",
            &[("from", range.from as f64), ("to", range.to as f64)],
        );
        let current = state.with_untracked(|s| (s.range, s.live));
        zooms.update(|z| z.push(current));
        state.update(|s| {
            s.range = range;
            s.live = false;
        });
    };
    let zoom_out = move || {
        let previous = zooms.try_update(|z| z.pop()).flatten();
        let now = clock.now_untracked();
        state.update(|s| match previous {
            Some((range, live)) => {
                s.range = range;
                s.live = live;
            }
            None if s.live => {
                let span = (s.range.span() * 2).min(model::MAX_SPAN_MS);
                s.range = Range::ending_at(now, span);
            }
            None => s.range = s.range.zoomed_out(now),
        });
    };
    let on_zoom = Callback::new(zoom_to);
    let on_zoom_out = Callback::new(move |()| zoom_out());

    let requested = move || loaded.with(|l| l.as_ref().map(|l| l.range));

    // Maintenance windows over the charted circuits, for the range shown:
    // asked for again when the range or the channels change.
    let windows = RwSignal::new(Vec::<MaintenanceWindowInfo>::new());
    Effect::new(move |_| {
        let Some(range) = requested() else {
            windows.set(Vec::new());
            return;
        };
        let circuits: Vec<(String, Vec<String>)> = charted.with(|channels| {
            let mut circuits: Vec<String> = channels
                .iter()
                .filter_map(|c| c.split_once('/').map(|(circuit, _)| circuit.to_owned()))
                .collect();
            circuits.sort();
            circuits.dedup();
            circuits
                .into_iter()
                .map(|c| {
                    // Untracked: the board's readings must not refetch.
                    let gateways =
                        untrack(|| board.circuit(&c).map(|x| x.gateways()).unwrap_or_default());
                    (c, gateways)
                })
                .collect()
        });
        leptos::task::spawn_local(async move {
            let Ok(list) = api::maintenance_between(range.from, range.to).await else {
                return;
            };
            windows.set(
                list.into_iter()
                    .filter(|w| {
                        circuits.iter().any(|(circuit, gateways)| {
                            w.covers(circuit, gateways.iter().map(String::as_str))
                        })
                    })
                    .collect(),
            );
        });
    });
    let maintenance_spans = Signal::derive(move || {
        windows.with(|list| list.iter().map(|w| (w.starts_at, w.ends_at)).collect())
    });
    let has_data = Signal::derive(move || {
        loaded.with(|l| {
            l.as_ref()
                .is_some_and(|l| l.series.iter().any(|s| s.avg.iter().any(Option::is_some)))
        })
    });
    view! {
        <main class="history" data-testid="history-page">
            <ChannelPicker board state />
            <section class="history-main" aria-label="History chart">
                <Controls state zooms clock zone on_zoom_out />
                <div class="chart-frame">
                    <div
                        class="chart-box"
                        data-testid="history-chart"
                        data-state=move || status.with(Status::as_str)
                        data-from=move || requested().map(|r| r.from)
                        data-to=move || requested().map(|r| r.to)
                        data-source=move || loaded.with(|l| l.as_ref().map(|l| source_name(l.source)))
                        data-bucket-ms=move || loaded.with(|l| l.as_ref().map(|l| l.bucket_ms))
                        data-newest=move || {
                            loaded.with(|l| l.as_ref().and_then(|l| l.newest.values().max().copied()))
                        }
                        data-following=move || following.get().to_string()
                        data-forecasts=move || shown_forecasts.with(Vec::len)
                        data-forecast-until=move || {
                            shown_forecasts
                                .with(|f| f.iter().filter_map(|(_, s)| s.t.last().copied()).max())
                        }
                    >
                        <Chart shape frame on_zoom on_zoom_out width maintenance=maintenance_spans />
                        <ChartNotice status has_data />
                    </div>
                    <p class="chart-caption">
                        <span class="resolution">{move || caption(&loaded.read())}</span>
                        <span class="hint">
                            "Drag across the chart to zoom in · double-click to zoom out"
                        </span>
                    </p>
                    <MaintenanceInView windows zone />
                </div>
                <ExportBar state clock />
                <ForecastPanel channels=charted data=forecast_data clock zone />
            </section>
        </main>
    }
}

fn source_name(source: HistorySource) -> &'static str {
    match source {
        HistorySource::Raw => "raw",
        HistorySource::Minute => "minute",
        HistorySource::FiveMinute => "5-minute",
        HistorySource::QuarterHour => "15-minute",
        HistorySource::Hour => "hour",
        HistorySource::SixHour => "6-hour",
    }
}

fn failure_text(failure: &ApiFailure) -> String {
    match failure {
        ApiFailure::Rejected { status, message } if *status < 500 => message.clone(),
        other => other.to_string(),
    }
}

/// "15-minute buckets from the minute rollup": what the operator is looking
/// at, so a flat line is not mistaken for raw data.
fn caption(loaded: &Option<Loaded>) -> String {
    let Some(l) = loaded else {
        return String::new();
    };
    let width = human_span(l.bucket_ms);
    let readings = l.series.iter().filter(|s| s.is_readings()).count();
    match l.source {
        HistorySource::Raw if readings == l.series.len() => "Raw readings".to_owned(),
        HistorySource::Raw if readings > 0 => {
            format!("Raw readings; {width} buckets where readings are dense")
        }
        HistorySource::Raw => format!("{width} buckets from raw readings"),
        source => format!("{width} buckets from the {} rollup", source_name(source)),
    }
}

/// `15 min`, `2 h`, `1 d`, `500 ms`.
pub fn human_span(ms: i64) -> String {
    const UNITS: &[(i64, &str)] = &[
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "min"),
        (1_000, "s"),
    ];
    UNITS
        .iter()
        .find(|(unit, _)| ms >= *unit && ms % unit == 0)
        .map_or_else(
            || format!("{ms} ms"),
            |(unit, name)| format!("{} {name}", ms / unit),
        )
}

#[component]
fn ChartNotice(status: RwSignal<Status>, has_data: Signal<bool>) -> impl IntoView {
    move || {
        match status.get() {
        Status::Ready if !has_data.get() => Some(
            view! {
                <div class="chart-notice">
                    <p class="notice-title">"No readings in this range"</p>
                    <p class="notice-text">"Zoom out, or pick another range."</p>
                </div>
            }
            .into_any(),
        ),
        Status::Empty => Some(
            view! {
                <div class="chart-notice">
                    <p class="notice-title">"Pick a channel"</p>
                    <p class="notice-text">"Choose circuits and parameters on the left to chart them."</p>
                </div>
            }
            .into_any(),
        ),
        Status::Failed(message) => Some(
            view! {
                <div class="chart-notice problem" role="alert">
                    <p class="notice-title">"Cannot load history"</p>
                    <p class="notice-text">{message}</p>
                </div>
            }
            .into_any(),
        ),
        Status::Loading => Some(view! { <div class="chart-loading" aria-hidden="true"></div> }.into_any()),
        Status::Ready => None,
    }
    }
}

/// Range buttons, the range on the yard's clock (UTC on hover), custom
/// from/to, live, zoom out.
#[component]
fn Controls(
    state: RwSignal<PageState>,
    zooms: RwSignal<Vec<(Range, bool)>>,
    clock: Clock,
    zone: Memo<Option<String>>,
    on_zoom_out: Callback<()>,
) -> impl IntoView {
    let pick = move |span: i64| {
        crate::perf::mark("history:preset", &[("span", span as f64)]);
        zooms.set(Vec::new());
        state.update(|s| {
            s.range = Range::ending_at(clock.now_untracked(), span);
            s.live = true;
        });
    };
    let shown = Memo::new(move |_| {
        let s = state.get();
        if s.live {
            Range::ending_at(clock.now(), s.range.span())
        } else {
            s.range
        }
    });
    let stamp = move |ms: i64| {
        zone.get()
            .and_then(|z| zoned_stamp(ms, &z))
            .unwrap_or_else(|| utc_beside(ms))
    };
    let from_input = RwSignal::new(String::new());
    let to_input = RwSignal::new(String::new());
    let custom_error = RwSignal::new(None::<String>);
    // The custom fields show the range on view, until the operator edits.
    Effect::new(move |_| {
        let range = state.with(|s| s.range);
        if let Some(z) = zone.get() {
            from_input.set(wall_input(range.from, &z).unwrap_or_default());
            to_input.set(wall_input(range.to, &z).unwrap_or_default());
        }
    });
    let apply_custom = move || {
        let Some(z) = zone.get_untracked() else {
            custom_error.set(Some("the yard's time zone is not known yet".into()));
            return;
        };
        match (
            wall_to_utc(&from_input.get_untracked(), &z),
            wall_to_utc(&to_input.get_untracked(), &z),
        ) {
            (Some(from), Some(to)) if from < to => {
                custom_error.set(None);
                zooms.set(Vec::new());
                state.update(|s| {
                    s.range = Range { from, to };
                    s.live = false;
                });
            }
            (Some(_), Some(_)) => custom_error.set(Some("From must be before To.".into())),
            _ => custom_error.set(Some("Enter both times as date and time.".into())),
        }
    };
    view! {
        <div class="controls">
            <div class="segmented" role="group" aria-label="Time range">
                {PRESETS
                    .iter()
                    .map(|&(key, label, span)| {
                        let active = move || state.with(|s| s.live && s.range.span() == span);
                        view! {
                            <button
                                type="button"
                                data-range=key
                                class:active=active
                                aria-pressed=move || active().to_string()
                                on:click=move |_| pick(span)
                            >
                                {label}
                            </button>
                        }
                    })
                    .collect_view()}
            </div>
            <label class="live-toggle" title="Follow the clock and append readings as they arrive">
                <input
                    type="checkbox"
                    data-testid="history-live"
                    prop:checked=move || state.with(|s| s.live)
                    on:change=move |ev| {
                        let on = event_target_checked(&ev);
                        let now = clock.now_untracked();
                        state.update(|s| {
                            s.live = on;
                            if !on {
                                s.range = Range::ending_at(now, s.range.span());
                            }
                        });
                    }
                />
                <span class="live-dot" aria-hidden="true"></span>
                "Live"
            </label>
            <button
                type="button"
                class="zoom-out"
                data-testid="zoom-out"
                on:click=move |_| on_zoom_out.run(())
            >
                "Zoom out"
            </button>
            <p
                class="range-text"
                data-testid="history-range"
                title=move || {
                    let r = shown.get();
                    format!("{} → {}", utc_beside(r.from), utc_beside(r.to))
                }
            >
                {move || {
                    let r = shown.get();
                    format!("{} → {}", stamp(r.from), stamp(r.to))
                }}
            </p>
            <form
                class="custom-range"
                on:submit=move |ev| {
                    ev.prevent_default();
                    apply_custom();
                }
            >
                <label>
                    "From"
                    <input
                        type="datetime-local"
                        data-testid="custom-from"
                        prop:value=move || from_input.get()
                        on:input=move |ev| from_input.set(event_target_value(&ev))
                    />
                </label>
                <label>
                    "To"
                    <input
                        type="datetime-local"
                        data-testid="custom-to"
                        prop:value=move || to_input.get()
                        on:input=move |ev| to_input.set(event_target_value(&ev))
                    />
                </label>
                <button type="submit" data-range="custom">"Show"</button>
                <span class="zone-note">{move || zone.get().map(|z| format!("times in {z}"))}</span>
                {move || custom_error.get().map(|e| view! { <span class="field-error" role="alert">{e}</span> })}
            </form>
        </div>
    }
}

/// Circuits and their parameters, as the board knows them; a click adds or
/// removes a channel.
#[component]
fn ChannelPicker(board: Board, state: RwSignal<PageState>) -> impl IntoView {
    let filter = RwSignal::new(String::new());
    let toggle = move |name: String| {
        state.update(|s| {
            if let Some(i) = s.channels.iter().position(|c| *c == name) {
                s.channels.remove(i);
            } else if s.channels.len() < trackside_wire::MAX_CHANNELS {
                s.channels.push(name);
            }
        });
    };
    let circuits = move || {
        let wanted = filter.get().to_lowercase();
        board
            .circuits()
            .into_iter()
            .filter(|c| wanted.is_empty() || c.name.to_lowercase().contains(&wanted))
            .collect::<Vec<_>>()
    };
    view! {
        <aside class="picker" aria-label="Channels">
            <input
                class="picker-filter"
                type="search"
                placeholder="Filter circuits"
                prop:value=move || filter.get()
                on:input=move |ev| filter.set(event_target_value(&ev))
            />
            <ul class="picker-list">
                <For
                    each=circuits
                    key=|circuit| circuit.name.clone()
                    children=move |circuit| {
                        let channels = circuit.channels.clone();
                        view! {
                            <li class="picker-circuit">
                                <span class="picker-name">{circuit.name.clone()}</span>
                                <span class="picker-params">
                                    {move || {
                                        channels
                                            .get()
                                            .into_iter()
                                            .map(|channel| {
                                                let name = channel.name.clone();
                                                let position = {
                                                    let name = name.clone();
                                                    move || state.with(|s| s.channels.iter().position(|c| *c == name))
                                                };
                                                let selected = {
                                                    let position = position.clone();
                                                    move || position().is_some()
                                                };
                                                // Through the CSSOM, not a style attribute:
                                                // the CSP allows no inline style.
                                                let chip = move || {
                                                    position().map(|i| colour(i).to_string()).unwrap_or_default()
                                                };
                                                let click = name.clone();
                                                view! {
                                                    <button
                                                        type="button"
                                                        class="chip"
                                                        class:selected=selected.clone()
                                                        style=("--chip", chip)
                                                        aria-pressed=move || selected().to_string()
                                                        data-channel-toggle=name.clone()
                                                        title=name.clone()
                                                        on:click=move |_| toggle(click.clone())
                                                    >
                                                        {channel.label.clone()}
                                                    </button>
                                                }
                                            })
                                            .collect_view()
                                    }}
                                </span>
                            </li>
                        }
                    }
                />
            </ul>
        </aside>
    }
}

/// The maintenance windows shaded on the chart, in words: what they cover,
/// why, and when on the yard's clock (UTC on hover).
#[component]
fn MaintenanceInView(
    windows: RwSignal<Vec<MaintenanceWindowInfo>>,
    zone: Memo<Option<String>>,
) -> impl IntoView {
    let when = move |ms: i64| {
        zone.with(|z| z.as_deref().and_then(|z| zoned_stamp(ms, z)))
            .unwrap_or_else(|| utc_beside(ms))
    };
    move || {
        let list = windows.get();
        (!list.is_empty()).then(|| {
            view! {
                <ul class="chart-maintenance" data-testid="chart-maintenance" aria-label="Maintenance windows in view">
                    {list
                        .into_iter()
                        .map(|w| {
                            let (from, to) = (w.starts_at, w.ends_at);
                            view! {
                                <li data-window-id=w.id>
                                    <span class="maintenance-swatch" aria-hidden="true"></span>
                                    <strong>{format!("Maintenance {}", crate::maintenance::scope(&w))}</strong>
                                    {format!(" — {} · ", w.reason)}
                                    <span title=format!("{} to {}", utc_beside(from), utc_beside(to))>
                                        {format!("{} to {}", when(from), when(to))}
                                    </span>
                                    {format!(" · {} suppressed", w.suppressed)}
                                </li>
                            }
                        })
                        .collect_view()}
                </ul>
            }
        })
    }
}
