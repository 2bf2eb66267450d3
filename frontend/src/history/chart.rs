//! The history chart: one uPlot with a shared time axis, per channel a
//! min–max band and an average line, one y axis per unit, times on the
//! yard's clock with UTC beside them in the legend, drag to zoom in and
//! double-click to zoom out. A channel whose kind has a trained model
//! also gets its forecast beyond "now": a dashed line through the
//! predicted mean in a lighter band (the 90 % interval).

use std::rc::Rc;

use js_sys::{Array, Object, Reflect};
use leptos::html::Div;
use leptos::prelude::*;
use trackside_wire::{ChannelName, parameter_info};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};

use super::model::{Cell, Columns, Range};
use crate::board::model::format_value;
use crate::time::{utc_beside, zoned_stamp, zoned_time};
use crate::uplot::UPlot;

/// Line colours, in the order channels are added; chosen to stay apart on
/// the dark background and for the common colour-vision deficiencies.
pub const PALETTE: &[&str] = &[
    "#5ea3e8", "#e0a84a", "#46b98f", "#d783c9", "#e86a5e", "#4fc4cf", "#b8c95a", "#9c8cf0",
];

pub fn colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

const HEIGHT_PX: f64 = 440.0;

/// What decides the chart's shape: its series and their units. A change
/// rebuilds the chart; new data for the same shape does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub channels: Vec<(String, Option<String>)>,
    /// Channels (indices into `channels`) drawn with a forecast; their
    /// columns follow all the channels' own, in this order.
    pub forecasts: Vec<usize>,
    pub zone: Option<String>,
}

/// The data and the x range to show.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub columns: Columns,
    pub range: Range,
    /// The request whose answer the data is (live readings appended).
    pub request: u64,
}

/// The request whose data the chart draws next for the first time, and
/// how many points it has.
type FirstDraw = Rc<std::cell::Cell<Option<(u64, usize)>>>;

/// Time spans (Unix ms) shaded behind the series.
type Spans = Rc<std::cell::RefCell<Vec<(i64, i64)>>>;

/// Maintenance shading: the colour of `--maintenance`, faint enough for
/// the lines to stay readable over it.
const MAINTENANCE_FILL: &str = "rgba(79, 196, 207, 0.13)";

/// A live uPlot and the Rust closures its options call, which must live as
/// long as it does.
struct Live {
    plot: UPlot,
    _callbacks: Vec<Box<dyn std::any::Any>>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.plot.destroy();
    }
}

#[component]
pub fn Chart(
    shape: Memo<Option<Shape>>,
    frame: Signal<Option<Frame>>,
    /// Asks the page for a finer look at a dragged range.
    on_zoom: Callback<Range>,
    on_zoom_out: Callback<()>,
    /// The plot's width in CSS pixels, for the page's `points`.
    width: RwSignal<f64>,
    /// Maintenance windows over the charted circuits (Unix ms spans),
    /// shaded behind the series.
    maintenance: Signal<Vec<(i64, i64)>>,
) -> impl IntoView {
    let target = NodeRef::<Div>::new();
    // Arena-held and local (a uPlot is a JS object): dropped, and so
    // destroyed, with this component.
    let chart = StoredValue::new_local(None::<Live>);
    // The request whose data the next draw shows for the first time, and
    // its points: the draw hook marks `history:drawn` with it (crate::perf).
    let first_draw: FirstDraw = Rc::new(std::cell::Cell::new(None));
    let drawn_request = StoredValue::new(0u64);
    // Read by the chart's drawClear hook, so a change repaints without a
    // rebuild.
    let spans: Spans = Rc::new(std::cell::RefCell::new(Vec::new()));
    {
        let spans = spans.clone();
        Effect::new(move |_| {
            *spans.borrow_mut() = maintenance.get();
            chart.with_value(|live| {
                if let Some(live) = live {
                    live.plot.redraw(false, false);
                }
            });
        });
    }

    // Measure before the first request, and follow window resizes; a few
    // pixels (a scrollbar appearing) are not worth another request.
    let measure = move || {
        if let Some(el) = target.get_untracked() {
            let w = f64::from(el.client_width());
            let known = width.get_untracked();
            if w > 0.0 && (known <= 0.0 || (w - known).abs() > known * 0.1) {
                width.set(w);
            }
        }
    };
    Effect::new(move |_| {
        if target.get().is_some() {
            measure();
        }
    });
    let resize = window_event_listener(leptos::ev::resize, move |_| {
        measure();
        if let Some(el) = target.get_untracked() {
            chart.with_value(|live| {
                if let Some(live) = live {
                    live.plot.set_size(&size(f64::from(el.client_width())));
                }
            });
        }
    });
    on_cleanup(move || resize.remove());

    // Rebuild on a new shape; otherwise a frame only replaces the data.
    Effect::new(move |built: Option<Option<Shape>>| {
        let shape = shape.get();
        let frame = frame.get();
        let el = target.get()?;
        if built.flatten() != shape {
            chart.update_value(|live| {
                live.take();
                if let Some(shape) = &shape {
                    let width = f64::from(el.client_width()).max(300.0);
                    *live = Some(build(
                        shape,
                        width,
                        &el,
                        on_zoom,
                        first_draw.clone(),
                        spans.clone(),
                    ));
                }
            });
        }
        if let Some(frame) = frame {
            if drawn_request.get_value() != frame.request {
                drawn_request.set_value(frame.request);
                first_draw.set(Some((frame.request, frame.columns.x.len())));
            }
            chart.with_value(|live| {
                if let Some(live) = live {
                    live.plot.set_data(&data(&frame.columns), true);
                    let limits = Object::new();
                    set(&limits, "min", frame.range.from as f64);
                    set(&limits, "max", frame.range.to as f64);
                    live.plot.set_scale("x", &limits);
                }
            });
        }
        shape
    });

    view! {
        <div
            class="chart"
            node_ref=target
            on:dblclick=move |_| on_zoom_out.run(())
        ></div>
    }
}

fn size(width: f64) -> JsValue {
    let size = Object::new();
    set(&size, "width", width);
    set(&size, "height", HEIGHT_PX);
    size.into()
}

fn set(target: &Object, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(target, &key.into(), &value.into());
}

fn object(pairs: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    for (key, value) in pairs {
        set(&o, key, value.clone());
    }
    o
}

/// The scale a unit's series use; `u:` keeps it apart from `x`.
/// A uPlot band filled between series `lower` and `lower + 1`, the bounds
/// a channel's range or forecast pushes in that order.
fn band(lower: u32, fill: &str) -> JsValue {
    object(&[
        (
            "series",
            Array::of2(&(lower + 1).into(), &lower.into()).into(),
        ),
        ("fill", fill.into()),
    ])
    .into()
}

fn scale_key(unit: &Option<String>) -> String {
    format!("u:{}", unit.as_deref().unwrap_or("-"))
}

fn label(channel: &str, unit: &Option<String>) -> String {
    let pretty = ChannelName::parse(channel)
        .ok()
        .and_then(|name| {
            let (_, p) = parameter_info(name.parameter())?;
            Some(format!("{} {}", name.circuit(), p.label.to_lowercase()))
        })
        .unwrap_or_else(|| channel.to_owned());
    match unit {
        Some(unit) => format!("{pretty} ({unit})"),
        None => pretty,
    }
}

fn forecast_label(channel: &str, unit: &Option<String>) -> String {
    let pretty = label(channel, &None);
    match unit {
        Some(unit) => format!("{pretty} forecast ({unit})"),
        None => format!("{pretty} forecast"),
    }
}

fn decimals(channel: &str) -> u8 {
    ChannelName::parse(channel)
        .ok()
        .and_then(|n| parameter_info(n.parameter()).map(|(_, p)| p.decimals))
        .unwrap_or(2)
}

fn build(
    shape: &Shape,
    width: f64,
    target: &web_sys::HtmlElement,
    on_zoom: Callback<Range>,
    first_draw: FirstDraw,
    spans: Spans,
) -> Live {
    let mut callbacks: Vec<Box<dyn std::any::Any>> = Vec::new();
    let text = "#93a1b1";
    let grid = "#243141";

    let options = object(&[
        ("width", width.into()),
        ("height", HEIGHT_PX.into()),
        // Timestamps are Unix milliseconds.
        ("ms", 1.into()),
    ]);

    // Ticks on the yard's clock.
    if let Some(zone) = shape.zone.clone() {
        let tz = Closure::<dyn Fn(f64) -> js_sys::Date>::new(move |ts: f64| {
            UPlot::tz_date(&js_sys::Date::new(&JsValue::from_f64(ts)), &zone)
        });
        set(&options, "tzDate", tz.as_ref().clone());
        callbacks.push(Box::new(tz));
    }

    // The time cell of the legend: the yard's time, and UTC beside it.
    let zone = shape.zone.clone();
    let time_value = Closure::<dyn Fn(JsValue, JsValue) -> String>::new(move |_u, ts: JsValue| {
        let Some(ms) = ts.as_f64() else {
            return "—".to_owned();
        };
        let ms = ms as i64;
        let local = zone.as_deref().and_then(|z| zoned_stamp(ms, z));
        match local {
            Some(local) => format!("{local} · {}", utc_beside(ms)),
            None => utc_beside(ms),
        }
    });
    let series = Array::new();
    series.push(
        &object(&[
            ("label", "Time".into()),
            ("value", time_value.as_ref().clone()),
        ])
        .into(),
    );
    callbacks.push(Box::new(time_value));

    let bands = Array::new();
    let scales = object(&[("x", object(&[("time", true.into())]).into())]);
    let axes = Array::new();
    // Tick labels on the yard's 24-hour clock, with the date at midnight
    // (and on every tick once ticks are days apart).
    let zone = shape.zone.clone();
    let ticks = Closure::<dyn Fn(JsValue, Array, u32, f64, f64) -> Array>::new(
        move |_u: JsValue, splits: Array, _axis: u32, _space: f64, step: f64| {
            splits
                .iter()
                .map(|split| match split.as_f64() {
                    Some(ms) => tick_label(ms as i64, step as i64, zone.as_deref()).into(),
                    None => JsValue::from_str(""),
                })
                .collect()
        },
    );
    axes.push(
        &object(&[
            ("stroke", text.into()),
            ("values", ticks.as_ref().clone()),
            ("space", 70.into()),
            (
                "grid",
                object(&[("stroke", grid.into()), ("width", 1.into())]).into(),
            ),
            ("ticks", object(&[("stroke", grid.into())]).into()),
        ])
        .into(),
    );
    callbacks.push(Box::new(ticks));
    let mut units_seen: Vec<String> = Vec::new();
    for (i, (channel, unit)) in shape.channels.iter().enumerate() {
        let colour = colour(i);
        let key = scale_key(unit);
        let base = 1 + 3 * i as u32;
        let edge = |name: &str| {
            object(&[
                ("label", format!("{channel} {name}").into()),
                ("scale", key.clone().into()),
                ("stroke", colour.into()),
                ("width", 0.into()),
                ("class", "band-edge".into()),
                ("points", object(&[("show", false.into())]).into()),
            ])
        };
        series.push(&edge("min").into());
        series.push(&edge("max").into());
        let places = decimals(channel);
        let unit_text = unit.clone().map(|u| format!(" {u}")).unwrap_or_default();
        // avg, with the bucket's range beside it.
        let avg_value = Closure::<dyn Fn(JsValue, JsValue, u32, JsValue) -> String>::new(
            move |u: JsValue, value: JsValue, _series: u32, idx: JsValue| {
                let Some(v) = value.as_f64() else {
                    return "—".to_owned();
                };
                let at = |column: u32| -> Option<f64> {
                    let data = Reflect::get(&u, &"data".into()).ok()?;
                    let column = Reflect::get_u32(&data, column).ok()?;
                    Reflect::get(&column, &idx).ok()?.as_f64()
                };
                let avg = format!("{}{unit_text}", format_value(v, places));
                match (at(base), at(base + 1)) {
                    (Some(lo), Some(hi)) if lo != hi => format!(
                        "{avg} ({} – {})",
                        format_value(lo, places),
                        format_value(hi, places)
                    ),
                    _ => avg,
                }
            },
        );
        series.push(
            &object(&[
                ("label", label(channel, unit).into()),
                ("scale", key.clone().into()),
                ("stroke", colour.into()),
                ("width", 1.5.into()),
                ("value", avg_value.as_ref().clone()),
                ("points", object(&[("show", false.into())]).into()),
            ])
            .into(),
        );
        callbacks.push(Box::new(avg_value));
        bands.push(&band(base, &format!("{colour}38")));
        if !units_seen.contains(&key) {
            // Left for the first unit, then alternate sides.
            let side = if units_seen.len().is_multiple_of(2) {
                3
            } else {
                1
            };
            set(&scales, &key, object(&[("auto", true.into())]));
            axes.push(
                &object(&[
                    ("scale", key.clone().into()),
                    ("side", side.into()),
                    ("label", unit.clone().unwrap_or_default().into()),
                    ("stroke", text.into()),
                    ("size", 64.into()),
                    (
                        "grid",
                        object(&[
                            ("show", units_seen.is_empty().into()),
                            ("stroke", grid.into()),
                            ("width", 1.into()),
                        ])
                        .into(),
                    ),
                    ("ticks", object(&[("stroke", grid.into())]).into()),
                ])
                .into(),
            );
            units_seen.push(key);
        }
    }
    let first_forecast_column = 1 + 3 * shape.channels.len() as u32;
    for (k, &i) in shape.forecasts.iter().enumerate() {
        let Some((channel, unit)) = shape.channels.get(i) else {
            continue;
        };
        let colour = colour(i);
        let key = scale_key(unit);
        let base = first_forecast_column + 3 * k as u32;
        for name in ["forecast low", "forecast high"] {
            series.push(
                &object(&[
                    ("label", format!("{channel} {name}").into()),
                    ("scale", key.clone().into()),
                    ("stroke", colour.into()),
                    ("width", 0.into()),
                    ("class", "band-edge".into()),
                    ("points", object(&[("show", false.into())]).into()),
                ])
                .into(),
            );
        }
        let places = decimals(channel);
        let unit_text = unit.clone().map(|u| format!(" {u}")).unwrap_or_default();
        let forecast_value = Closure::<dyn Fn(JsValue, JsValue, u32, JsValue) -> String>::new(
            move |u: JsValue, value: JsValue, _series: u32, idx: JsValue| {
                let Some(v) = value.as_f64() else {
                    return "—".to_owned();
                };
                let at = |column: u32| -> Option<f64> {
                    let data = Reflect::get(&u, &"data".into()).ok()?;
                    let column = Reflect::get_u32(&data, column).ok()?;
                    Reflect::get(&column, &idx).ok()?.as_f64()
                };
                let mean = format!("{}{unit_text}", format_value(v, places));
                match (at(base), at(base + 1)) {
                    (Some(lo), Some(hi)) => format!(
                        "{mean} (90 %: {} – {})",
                        format_value(lo, places),
                        format_value(hi, places)
                    ),
                    _ => mean,
                }
            },
        );
        series.push(
            &object(&[
                ("label", forecast_label(channel, unit).into()),
                ("scale", key.clone().into()),
                ("stroke", colour.into()),
                ("width", 1.5.into()),
                ("dash", Array::of2(&6.into(), &4.into()).into()),
                ("value", forecast_value.as_ref().clone()),
                ("points", object(&[("show", false.into())]).into()),
            ])
            .into(),
        );
        callbacks.push(Box::new(forecast_value));
        bands.push(&band(base, &format!("{colour}20")));
    }
    set(&options, "series", series);
    set(&options, "bands", bands);
    set(&options, "scales", scales);
    set(&options, "axes", axes);

    // Drag selects a range without zooming: the page fetches finer data
    // for it. Double-click is the page's (zoom out), not uPlot's (reset).
    // A closure, not `new Function`: the CSP allows no eval.
    let no_handler = Closure::<dyn Fn(JsValue, JsValue, JsValue) -> JsValue>::new(
        |_: JsValue, _: JsValue, _: JsValue| JsValue::NULL,
    );
    set(
        &options,
        "cursor",
        object(&[
            (
                "drag",
                object(&[
                    ("x", true.into()),
                    ("y", false.into()),
                    ("setScale", false.into()),
                ])
                .into(),
            ),
            (
                "bind",
                object(&[("dblclick", no_handler.as_ref().clone())]).into(),
            ),
        ]),
    );
    callbacks.push(Box::new(no_handler));
    let on_select = Closure::<dyn Fn(UPlot)>::new(move |u: UPlot| {
        let select = u.select();
        let number = |key: &str| {
            Reflect::get(&select, &key.into())
                .ok()
                .and_then(|v| v.as_f64())
        };
        if let (Some(left), Some(w)) = (number("left"), number("width"))
            && w > 3.0
        {
            let from = u.pos_to_val(left, "x");
            let to = u.pos_to_val(left + w, "x");
            if from.is_finite() && to.is_finite() {
                on_zoom.run(Range::selected(from as i64, to as i64));
            }
        }
        let none = object(&[
            ("left", 0.into()),
            ("top", 0.into()),
            ("width", 0.into()),
            ("height", 0.into()),
        ]);
        u.set_select(&none, false);
    });
    // After a draw: the first of a request's data is marked (crate::perf).
    let on_draw = Closure::<dyn Fn(UPlot)>::new(move |_u: UPlot| {
        if let Some((request, points)) = first_draw.take() {
            crate::perf::mark(
                "history:drawn",
                &[("request", request as f64), ("points", points as f64)],
            );
        }
    });
    // After the canvas is cleared, before the series: the maintenance
    // windows as full-height bands, clipped to the plot area.
    let on_clear = Closure::<dyn Fn(UPlot)>::new(move |u: UPlot| {
        let spans = spans.borrow();
        if spans.is_empty() {
            return;
        }
        let bbox = u.bbox();
        let number = |key: &str| {
            Reflect::get(&bbox, &key.into())
                .ok()
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0)
        };
        let (left, top, width, height) = (
            number("left"),
            number("top"),
            number("width"),
            number("height"),
        );
        let ctx = u.ctx();
        ctx.save();
        ctx.set_fill_style_str(MAINTENANCE_FILL);
        for &(from, to) in spans.iter() {
            let x0 = u
                .val_to_pos(from as f64, "x", true)
                .clamp(left, left + width);
            let x1 = u.val_to_pos(to as f64, "x", true).clamp(left, left + width);
            if x1 > x0 {
                ctx.fill_rect(x0, top, x1 - x0, height);
            }
        }
        ctx.restore();
    });
    set(
        &options,
        "hooks",
        object(&[
            ("setSelect", Array::of1(on_select.as_ref()).into()),
            ("drawClear", Array::of1(on_clear.as_ref()).into()),
            ("draw", Array::of1(on_draw.as_ref()).into()),
        ]),
    );
    callbacks.push(Box::new(on_select));
    callbacks.push(Box::new(on_clear));
    callbacks.push(Box::new(on_draw));

    let empty = Array::new();
    for _ in 0..(1 + 3 * (shape.channels.len() + shape.forecasts.len())) {
        empty.push(&Array::new());
    }
    let plot = UPlot::new(&options, &empty, target);
    Live {
        plot,
        _callbacks: callbacks,
    }
}

/// A time-axis label: `14:00`, `14:00:05`, `14:00:05.250`, or the date
/// (`Sat 28 Nov`) at midnight and when ticks are a day or more apart.
fn tick_label(ms: i64, step: i64, zone: Option<&str>) -> String {
    let Some(t) = zone.and_then(|z| zoned_time(ms, z)) else {
        return utc_beside(ms);
    };
    let hh_mm = &t.time[..5];
    if step >= 86_400_000 {
        t.date
    } else if hh_mm == "00:00" && step >= 60_000 {
        format!("{hh_mm}\n{}", t.date)
    } else if step >= 60_000 {
        hh_mm.to_owned()
    } else if step >= 1_000 {
        t.time
    } else {
        format!("{}.{:03}", t.time, ms.rem_euclid(1_000))
    }
}

/// uPlot's aligned data: the x column, then one column per series, `null`
/// for a gap and `undefined` where a series has no entry.
fn data(columns: &Columns) -> JsValue {
    let all = Array::new();
    let x: Array = columns
        .x
        .iter()
        .map(|&t| JsValue::from_f64(t as f64))
        .collect();
    all.push(&x);
    for column in &columns.ys {
        let values: Array = column
            .iter()
            .map(|cell| match cell {
                Cell::Value(v) => JsValue::from_f64(*v),
                Cell::Gap => JsValue::NULL,
                Cell::Absent => JsValue::UNDEFINED,
            })
            .collect();
        all.push(&values);
    }
    all.unchecked_into()
}
