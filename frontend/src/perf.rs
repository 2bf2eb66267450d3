//! Marks on the page's Performance timeline (`performance.mark`), so that
//! what an operator waits for can be timed where it happens, in the page:
//! `cargo xtask bench-ui` reads them over WebDriver. A mark costs a few
//! microseconds and is kept only until the page is left.
//!
//! The history page marks `history:request` (a request for data, with
//! `request`, `from`, `to`, `points`), `history:preset` and `history:zoom` (the
//! operator's action), and `history:drawn` (the first draw of a request's
//! data, with `request` and `points`); between them `history:answered`
//! (the answer decoded). Every API answer marks `received <path>` when its
//! body has arrived, before it is decoded.

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

/// `performance.mark(name, { detail })`, or nothing where the browser has
/// no Performance API.
pub fn mark(name: &str, detail: &[(&str, f64)]) {
    let Some(performance) = web_sys::window()
        .and_then(|w| Reflect::get(&w, &"performance".into()).ok())
        .filter(|p| !p.is_undefined())
    else {
        return;
    };
    let Some(mark) = Reflect::get(&performance, &"mark".into())
        .ok()
        .and_then(|m| m.dyn_into::<Function>().ok())
    else {
        return;
    };
    let fields = Object::new();
    for (key, value) in detail {
        let _ = Reflect::set(&fields, &(*key).into(), &JsValue::from_f64(*value));
    }
    let options = Object::new();
    let _ = Reflect::set(&options, &"detail".into(), &fields);
    let _ = mark.call2(&performance, &name.into(), &options);
}
