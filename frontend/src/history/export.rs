//! The history page's CSV export: the charted channels over the range on
//! view, at a resolution and in a layout the operator picks, downloaded
//! through `fetch` so the page can show its progress (rows, bytes, how far
//! through the range) and offer a cancel. The finished file is handed to
//! the browser as a Blob under the server's file name.
//!
//! The `data-*` attributes on the status line are the browser tests' hooks.

use js_sys::{Array, Reflect, Uint8Array};
use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, ReadableStreamDefaultReader};

use super::model::{PageState, Range};
use crate::time::Clock;

/// Where an export stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Idle,
    Running(Tally),
    Done { tally: Tally, file: String },
    Failed { tally: Tally, message: String },
    Cancelled(Tally),
}

impl Progress {
    fn state(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Running(_) => "running",
            Self::Done { .. } => "done",
            Self::Failed { .. } => "error",
            Self::Cancelled(_) => "cancelled",
        }
    }

    fn tally(&self) -> Option<&Tally> {
        match self {
            Self::Idle => None,
            Self::Running(t) | Self::Done { tally: t, .. } | Self::Failed { tally: t, .. } => {
                Some(t)
            }
            Self::Cancelled(t) => Some(t),
        }
    }
}

/// What has arrived so far.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tally {
    pub bytes: u64,
    /// Line ends seen; the first line is the header.
    pub lines: u64,
    /// How far through the range the last complete row is, 0 to 1.
    pub fraction: f64,
}

impl Tally {
    pub fn rows(&self) -> u64 {
        self.lines.saturating_sub(1)
    }

    /// Counts a chunk, and places its last complete row in `range` by its
    /// `time_utc` cell (rows come in time order).
    pub fn add(&mut self, chunk: &[u8], range: Range) {
        self.bytes += chunk.len() as u64;
        self.lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        if let Some(at) = last_row_time(chunk)
            && range.to > range.from
        {
            let done = (at - range.from) as f64 / (range.to - range.from) as f64;
            self.fraction = done.clamp(self.fraction, 1.0);
        }
    }
}

/// The UTC time of the last complete row in `chunk`, when the chunk holds
/// one whole (its start and its end).
fn last_row_time(chunk: &[u8]) -> Option<i64> {
    let end = chunk.iter().rposition(|&b| b == b'\n')?;
    let start = chunk[..end].iter().rposition(|&b| b == b'\n')? + 1;
    utc_millis(chunk.get(start..start + 23)?)
}

/// `2026-11-28T09:00:00.250` (as the export writes `time_utc`) to Unix
/// milliseconds.
fn utc_millis(stamp: &[u8]) -> Option<i64> {
    let number = |at: usize, len: usize| -> Option<i64> {
        let digits = stamp.get(at..at + len)?;
        digits.iter().try_fold(0i64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    };
    let (y, m, d) = (number(0, 4)?, number(5, 2)?, number(8, 2)?);
    let (h, mi, s, ms) = (
        number(11, 2)?,
        number(14, 2)?,
        number(17, 2)?,
        number(20, 3)?,
    );
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((((days * 24 + h) * 60 + mi) * 60 + s) * 1_000 + ms)
}

/// `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `56 KB`, `1.2 MB`.
pub fn size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{} KB", bytes / 1_000),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.2} GB", bytes as f64 / 1e9),
    }
}

/// The query of `GET /api/export.csv` for a selection.
pub fn export_url(channels: &[String], range: Range, resolution: &str, layout: &str) -> String {
    format!(
        "/api/export.csv?channels={}&from={}&to={}&resolution={resolution}&layout={layout}",
        channels.join(","),
        range.from,
        range.to
    )
}

/// The file name from `Content-Disposition: attachment; filename="..."`.
pub fn file_name(disposition: Option<&str>) -> String {
    disposition
        .and_then(|d| d.split_once("filename=\""))
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(name, _)| name.to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "trackside-export.csv".to_owned())
}

const RESOLUTIONS: &[(&str, &str)] = &[
    ("raw", "Every reading"),
    ("1m", "1-minute buckets (min, max, avg, count)"),
    ("1h", "1-hour buckets (min, max, avg, count)"),
];
const LAYOUTS: &[(&str, &str)] = &[
    ("long", "A row per reading"),
    ("wide", "A column per channel"),
];

#[component]
pub fn ExportBar(state: RwSignal<PageState>, clock: Clock) -> impl IntoView {
    let resolution = RwSignal::new("raw".to_owned());
    let layout = RwSignal::new("long".to_owned());
    let progress = RwSignal::new(Progress::Idle);
    let url = RwSignal::new(None::<String>);
    let controller = StoredValue::new_local(None::<AbortController>);
    let no_channels = move || state.with(|s| s.channels.is_empty());
    let running = move || matches!(progress.get(), Progress::Running(_));

    let start = move || {
        let (channels, range) = state.with_untracked(|s| {
            let range = if s.live {
                Range::ending_at(clock.now_untracked(), s.range.span())
            } else {
                s.range
            };
            (s.channels.clone(), range)
        });
        if channels.is_empty() {
            return;
        }
        let address = export_url(
            &channels,
            range,
            &resolution.get_untracked(),
            &layout.get_untracked(),
        );
        let Ok(abort) = AbortController::new() else {
            progress.set(Progress::Failed {
                tally: Tally::default(),
                message: "This browser cannot run a download it can cancel.".into(),
            });
            return;
        };
        let signal = abort.signal();
        controller.set_value(Some(abort));
        url.set(Some(address.clone()));
        progress.set(Progress::Running(Tally::default()));
        leptos::task::spawn_local(async move {
            let outcome = download(&address, &signal, range, progress).await;
            controller.set_value(None);
            let tally = progress.with_untracked(|p| p.tally().copied().unwrap_or_default());
            progress.set(match outcome {
                Ok(file) => Progress::Done { tally, file },
                Err(_) if signal.aborted() => Progress::Cancelled(tally),
                Err(message) => Progress::Failed { tally, message },
            });
        });
    };
    let cancel = move || {
        controller.with_value(|c| {
            if let Some(c) = c {
                c.abort();
            }
        });
    };

    let status_text = move || {
        let p = progress.get();
        let counted = |t: &Tally| format!("{} rows ({})", grouped(t.rows()), size(t.bytes));
        match &p {
            Progress::Idle => String::new(),
            Progress::Running(t) => format!(
                "Exporting… {} · {:.0} % of the range",
                counted(t),
                t.fraction * 100.0
            ),
            Progress::Done { tally, file } => format!("Exported {} as {file}", counted(tally)),
            Progress::Failed { tally, message } if tally.bytes > 0 => format!(
                "Export failed after {}: {message} Nothing was saved; try again.",
                counted(tally)
            ),
            Progress::Failed { message, .. } => format!("Export failed: {message}"),
            Progress::Cancelled(t) => format!("Export cancelled after {}.", counted(t)),
        }
    };

    view! {
        <div class="export-bar" role="group" aria-label="Export to CSV">
            <span class="export-title">"Export CSV"</span>
            <label>
                "Resolution"
                <select
                    data-testid="export-resolution"
                    prop:value=move || resolution.get()
                    on:change=move |ev| resolution.set(event_target_value(&ev))
                    prop:disabled=running
                >
                    {RESOLUTIONS
                        .iter()
                        .map(|&(value, label)| view! { <option value=value>{label}</option> })
                        .collect_view()}
                </select>
            </label>
            <label>
                "Layout"
                <select
                    data-testid="export-layout"
                    prop:value=move || layout.get()
                    on:change=move |ev| layout.set(event_target_value(&ev))
                    prop:disabled=running
                >
                    {LAYOUTS
                        .iter()
                        .map(|&(value, label)| view! { <option value=value>{label}</option> })
                        .collect_view()}
                </select>
            </label>
            {move || {
                if running() {
                    view! {
                        <button type="button" class="export-cancel" data-testid="export-cancel" on:click=move |_| cancel()>
                            "Cancel"
                        </button>
                    }
                    .into_any()
                } else {
                    view! {
                        <button
                            type="button"
                            class="export-start"
                            data-testid="export-start"
                            prop:disabled=no_channels
                            title="The chosen channels over the range on view, times in UTC and the yard's zone"
                            on:click=move |_| start()
                        >
                            "Download"
                        </button>
                    }
                    .into_any()
                }
            }}
            <span
                class="export-status"
                class:problem=move || matches!(progress.get(), Progress::Failed { .. })
                data-testid="export-status"
                data-state=move || progress.with(Progress::state)
                data-rows=move || progress.with(|p| p.tally().map(Tally::rows))
                data-bytes=move || progress.with(|p| p.tally().map(|t| t.bytes))
                data-url=move || url.get()
                role="status"
            >
                {move || {
                    progress.with(|p| match p {
                        Progress::Running(t) => Some(view! {
                            <progress max="1" value=t.fraction.to_string()></progress>
                        }),
                        _ => None,
                    })
                }}
                {status_text}
            </span>
            {move || no_channels().then(|| view! { <span class="export-hint">"Choose channels to export."</span> })}
        </div>
    }
}

/// Runs one download; on success the browser has been handed the file,
/// and the answer is its name.
async fn download(
    address: &str,
    signal: &web_sys::AbortSignal,
    range: Range,
    progress: RwSignal<Progress>,
) -> Result<String, String> {
    let response = gloo_net::http::Request::get(address)
        .abort_signal(Some(signal))
        .send()
        .await
        .map_err(|_| {
            "the Trackside server could not be reached. Check the connection and try again."
                .to_owned()
        })?;
    if !response.ok() {
        let status = response.status();
        let message = response
            .json::<trackside_wire::ApiError>()
            .await
            .map(|e| e.error)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        return Err(if status < 500 {
            format!("the server refused the export ({message}).")
        } else {
            format!("the server could not export ({message}); try again in a moment.")
        });
    }
    let name = file_name(response.headers().get("content-disposition").as_deref());
    let body = response
        .body()
        .ok_or_else(|| "the answer had no body.".to_owned())?;
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let parts = Array::new();
    let broken = |_| "the download broke off (the server or the network failed).".to_owned();
    loop {
        let step = JsFuture::from(reader.read()).await.map_err(broken)?;
        let done = Reflect::get(&step, &JsValue::from_str("done"))
            .ok()
            .and_then(|d| d.as_bool())
            .unwrap_or(true);
        if done {
            break;
        }
        let Ok(value) = Reflect::get(&step, &JsValue::from_str("value")) else {
            break;
        };
        let chunk: Uint8Array = value.unchecked_into();
        let bytes = chunk.to_vec();
        progress.update(|p| {
            if let Progress::Running(t) = p {
                t.add(&bytes, range);
            }
        });
        parts.push(&chunk);
    }
    save(&parts, &name).map_err(|_| "the browser refused to save the file.".to_owned())?;
    Ok(name)
}

/// Hands the parts to the browser as one CSV file.
fn save(parts: &Array, name: &str) -> Result<(), JsValue> {
    crate::download::save(parts, name, "text/csv")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_an_operator_expects() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_234), "1,234");
        assert_eq!(grouped(12_345_678), "12,345,678");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(56_789), "56 KB");
        assert_eq!(size(1_234_567), "1.2 MB");
        assert_eq!(size(2_500_000_000), "2.50 GB");
    }

    #[test]
    fn the_file_name_comes_from_the_server() {
        assert_eq!(
            file_name(Some(
                "attachment; filename=\"trackside_T1-relay_state_raw.csv\""
            )),
            "trackside_T1-relay_state_raw.csv"
        );
        assert_eq!(file_name(None), "trackside-export.csv");
        assert_eq!(file_name(Some("attachment")), "trackside-export.csv");
    }

    #[test]
    fn the_url_carries_the_selection() {
        let range = Range {
            from: 1_000,
            to: 2_000,
        };
        assert_eq!(
            export_url(
                &["T1/relay_state".into(), "T2/feed_current".into()],
                range,
                "1m",
                "wide"
            ),
            "/api/export.csv?channels=T1/relay_state,T2/feed_current&from=1000&to=2000\
             &resolution=1m&layout=wide"
        );
    }

    #[test]
    fn row_times_place_the_progress() {
        assert_eq!(utc_millis(b"1970-01-01T00:00:00.000"), Some(0));
        assert_eq!(
            utc_millis(b"2026-11-28T09:00:00.250"),
            Some(1_795_856_400_250)
        );
        assert_eq!(
            utc_millis(b"2024-02-29T00:00:01.000"),
            Some(1_709_164_801_000)
        );
        assert_eq!(utc_millis(b"time_utc,time_local,chan"), None);
        let mut tally = Tally::default();
        let range = Range {
            from: 1_795_856_400_000,
            to: 1_795_856_400_000 + 4_000,
        };
        tally.add(
            b"x\r\n2026-11-28T09:00:01.000Z,a\r\n2026-11-28T09:00:03.000Z,b\r\n2026-11-2",
            range,
        );
        assert_eq!(tally.fraction, 0.75);
        assert_eq!(tally.rows(), 2);
    }

    #[test]
    fn lines_and_bytes_are_counted_across_chunks() {
        let mut tally = Tally::default();
        let range = Range { from: 0, to: 1 };
        tally.add(b"time_utc,time_local,channel\r\nrow one", range);
        tally.add(b" continues\r\nrow two\r\n", range);
        assert_eq!((tally.rows(), tally.bytes), (2, 57));
    }
}
