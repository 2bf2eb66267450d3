//! Saving what the app made (a CSV export, a gateway's certificate) as a
//! file, through a Blob and a download link.

use js_sys::Array;
use leptos::prelude::document;
use wasm_bindgen::{JsCast as _, JsValue};
use web_sys::{Blob, BlobPropertyBag, HtmlAnchorElement, Url};

/// Hands `parts` (strings or byte arrays) to the browser as one file.
pub fn save(parts: &Array, name: &str, mime: &str) -> Result<(), JsValue> {
    let options = BlobPropertyBag::new();
    options.set_type(mime);
    let blob = Blob::new_with_u8_array_sequence_and_options(parts, &options)?;
    let href = Url::create_object_url_with_blob(&blob)?;
    let link: HtmlAnchorElement = document().create_element("a")?.unchecked_into();
    link.set_href(&href);
    link.set_download(name);
    link.click();
    // The click has started the save; the URL can go once it has run.
    leptos::task::spawn_local(async move {
        gloo_timers::future::TimeoutFuture::new(10_000).await;
        let _ = Url::revoke_object_url(&href);
    });
    Ok(())
}

/// Saves one text as a file.
pub fn save_text(text: &str, name: &str, mime: &str) -> Result<(), JsValue> {
    save(&Array::of1(&JsValue::from_str(text)), name, mime)
}
