//! Which page is showing, kept in the address bar so a reload or a bookmark
//! lands on the same page. Two pages need no router crate: the path is a
//! signal, links push history, and the browser's back button sets it back.

use leptos::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Board,
    Exceptions,
}

impl Page {
    pub fn from_path(path: &str) -> Self {
        match path.trim_end_matches('/') {
            "/exceptions" => Page::Exceptions,
            _ => Page::Board,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Page::Board => "/",
            Page::Exceptions => "/exceptions",
        }
    }
}

fn current() -> Page {
    Page::from_path(&window().location().pathname().unwrap_or_default())
}

/// The page signal, following the address bar.
pub fn start() -> RwSignal<Page> {
    let page = RwSignal::new(current());
    let handle = window_event_listener(leptos::ev::popstate, move |_| page.set(current()));
    // The app lives as long as the page; the listener with it.
    std::mem::forget(handle);
    page
}

/// A navigation link: an ordinary `<a>` (middle-click opens a tab), taken
/// over for a plain click.
#[component]
pub fn NavLink(page: RwSignal<Page>, to: Page, children: Children) -> impl IntoView {
    let testid = match to {
        Page::Board => "nav-board",
        Page::Exceptions => "nav-exceptions",
    };
    view! {
        <a
            class="nav-link"
            href=to.path()
            data-testid=testid
            aria-current=move || (page.get() == to).then_some("page")
            on:click=move |ev: leptos::ev::MouseEvent| {
                if ev.ctrl_key() || ev.meta_key() || ev.shift_key() || ev.button() != 0 {
                    return;
                }
                ev.prevent_default();
                if let Ok(history) = window().history() {
                    let _ = history.push_state_with_url(
                        &wasm_bindgen::JsValue::NULL,
                        "",
                        Some(to.path()),
                    );
                }
                page.set(to);
            }
        >
            {children()}
        </a>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_pages() {
        assert_eq!(Page::from_path("/"), Page::Board);
        assert_eq!(Page::from_path("/exceptions"), Page::Exceptions);
        assert_eq!(Page::from_path("/exceptions/"), Page::Exceptions);
        assert_eq!(Page::from_path("/nonsense"), Page::Board);
        assert_eq!(Page::from_path(Page::Exceptions.path()), Page::Exceptions);
    }
}
