//! The few parts of uPlot (loaded by index.html as the global `uPlot`) that
//! the history chart uses. Options are plain JS objects built in
//! `history::chart`; see uPlot's `uPlot.d.ts` for their meaning.

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// A uPlot chart instance.
    #[wasm_bindgen(js_name = uPlot)]
    pub type UPlot;

    #[wasm_bindgen(constructor, js_class = "uPlot")]
    pub fn new(options: &JsValue, data: &JsValue, target: &web_sys::HtmlElement) -> UPlot;

    /// Replaces the data; with `reset_scales` false the x range stays.
    #[wasm_bindgen(method, js_name = setData)]
    pub fn set_data(this: &UPlot, data: &JsValue, reset_scales: bool);

    /// Sets a scale's `{min, max}`.
    #[wasm_bindgen(method, js_name = setScale)]
    pub fn set_scale(this: &UPlot, key: &str, limits: &JsValue);

    /// Sets `{width, height}` in CSS pixels.
    #[wasm_bindgen(method, js_name = setSize)]
    pub fn set_size(this: &UPlot, size: &JsValue);

    /// Draws (or with zero width clears) the drag selection.
    #[wasm_bindgen(method, js_name = setSelect)]
    pub fn set_select(this: &UPlot, select: &JsValue, fire_hook: bool);

    /// A plot-area CSS pixel position as a value of scale `key`.
    #[wasm_bindgen(method, js_name = posToVal)]
    pub fn pos_to_val(this: &UPlot, pos: f64, key: &str) -> f64;

    /// `{left, top, width, height}` of the current selection.
    #[wasm_bindgen(method, getter)]
    pub fn select(this: &UPlot) -> JsValue;

    #[wasm_bindgen(method)]
    pub fn destroy(this: &UPlot);

    /// Draws again with the same data (hooks included).
    #[wasm_bindgen(method)]
    pub fn redraw(this: &UPlot, rebuild_paths: bool, recalc_axes: bool);

    /// The canvas the hooks draw on.
    #[wasm_bindgen(method, getter)]
    pub fn ctx(this: &UPlot) -> web_sys::CanvasRenderingContext2d;

    /// `{left, top, width, height}` of the plot area, in canvas pixels.
    #[wasm_bindgen(method, getter)]
    pub fn bbox(this: &UPlot) -> JsValue;

    /// A value of scale `key` as a position, in canvas pixels when
    /// `canvas_pixels`.
    #[wasm_bindgen(method, js_name = valToPos)]
    pub fn val_to_pos(this: &UPlot, value: f64, key: &str, canvas_pixels: bool) -> f64;

    /// A `Date` whose local fields read as the wall clock of `zone`, which
    /// is how uPlot places time ticks in a zone other than the browser's.
    #[wasm_bindgen(static_method_of = UPlot, js_class = "uPlot", js_name = tzDate)]
    pub fn tz_date(date: &js_sys::Date, zone: &str) -> js_sys::Date;
}
