//! Replay's controls and its clock: pick an interval, load it, play it at
//! 1× to 600×, pause, scrub, step from change to change, with the
//! interval's exceptions on a timeline under the scrubber.
//!
//! Playback runs on animation frames: each frame moves the cursor by the
//! real time elapsed times the speed, and only circuits whose state,
//! marker or trail changed are touched.

use leptos::prelude::*;
use trackside_wire::Severity;

use super::model::{Playback, ReplayQuery, SPEEDS, Shown, advanced};
use super::view::ShownSignals;
use crate::api;
use crate::time::{Clock, utc_beside, wall_input, wall_to_utc, zoned_stamp};

/// Where replay stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Idle,
    Loading,
    Ready,
    Failed(String),
}

impl Status {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Loading => "loading",
            Self::Ready => "ready",
            Self::Failed(_) => "error",
        }
    }
}

/// The replay's state, shared by the bar and the page.
#[derive(Clone, Copy)]
pub struct Replayer {
    pub playback: StoredValue<Option<Playback>>,
    pub status: RwSignal<Status>,
    pub cursor: RwSignal<i64>,
    pub playing: RwSignal<bool>,
    pub speed: RwSignal<u32>,
    /// The interval loaded (or loading).
    pub range: RwSignal<Option<(i64, i64)>>,
    last_frame: StoredValue<f64>,
    /// Bumped on every load, so an old answer arriving late is dropped.
    requests: StoredValue<u64>,
    /// What the circuits show now, to touch only what changes.
    on_show: StoredValue<Vec<Shown>>,
    /// Real frames drawn while playing (a test hook for frame pacing).
    pub frames: RwSignal<u64>,
}

impl Replayer {
    pub fn new() -> Self {
        Self {
            playback: StoredValue::new(None),
            status: RwSignal::new(Status::Idle),
            cursor: RwSignal::new(0),
            playing: RwSignal::new(false),
            speed: RwSignal::new(10),
            range: RwSignal::new(None),
            last_frame: StoredValue::new(0.0),
            requests: StoredValue::new(0),
            on_show: StoredValue::new(Vec::new()),
            frames: RwSignal::new(0),
        }
    }

    /// Loads `query`'s interval and stands at its `at`, paused.
    pub fn load(self, query: ReplayQuery, shown: ShownSignals) {
        let request = self.requests.with_value(|n| n + 1);
        self.requests.set_value(request);
        self.playing.set(false);
        self.speed.set(query.speed);
        self.range.set(Some((query.from, query.to)));
        self.status.set(Status::Loading);
        leptos::task::spawn_local(async move {
            let answer = api::replay(query.from, query.to).await;
            if self.requests.try_get_value() != Some(request) {
                return;
            }
            match answer {
                Ok(replay) => {
                    let playback = Playback::new(replay);
                    self.on_show.set_value(Vec::new());
                    self.playback.set_value(Some(playback));
                    self.status.set(Status::Ready);
                    self.cursor.set(query.at);
                    self.show(shown);
                }
                Err(failure) => self.status.set(Status::Failed(failure.to_string())),
            }
        });
    }

    /// Moves the playback to the cursor and updates the circuits that
    /// show something else now.
    pub fn show(self, shown: ShownSignals) {
        let at = self.cursor.get_untracked();
        let frame = self.playback.try_update_value(|p| {
            p.as_mut().map(|p| {
                p.seek(at);
                (p.circuits.clone(), p.frame())
            })
        });
        let Some(Some((circuits, frame))) = frame else {
            return;
        };
        let before = self.on_show.get_value();
        shown.with_value(|signals| {
            for (i, (circuit, now)) in circuits.iter().zip(&frame).enumerate() {
                if before.get(i) != Some(now)
                    && let Some(signal) = signals.get(circuit)
                {
                    signal.set(*now);
                }
            }
        });
        self.on_show.set_value(frame);
    }

    /// Shows the cursor's state on every circuit, whatever was drawn
    /// before (after live mode wrote the signals).
    pub fn redraw(self, shown: ShownSignals) {
        self.on_show.set_value(Vec::new());
        self.show(shown);
    }

    pub fn play(self, shown: ShownSignals) {
        if self.playing.get_untracked() {
            return;
        }
        // At the end, play from the start again.
        if let Some((from, to)) = self.range.get_untracked()
            && self.cursor.get_untracked() >= to
        {
            self.cursor.set(from);
        }
        self.playing.set(true);
        self.last_frame.set_value(js_sys::Date::now());
        self.next_frame(shown);
    }

    fn next_frame(self, shown: ShownSignals) {
        request_animation_frame(move || {
            if !self.playing.try_get_untracked().unwrap_or(false) {
                return;
            }
            let now = js_sys::Date::now();
            let elapsed = now - self.last_frame.get_value();
            self.last_frame.set_value(now);
            let Some((_, to)) = self.range.get_untracked() else {
                return;
            };
            let at = advanced(
                self.cursor.get_untracked(),
                elapsed,
                self.speed.get_untracked(),
                to,
            );
            self.cursor.set(at);
            self.show(shown);
            self.frames.update(|n| *n += 1);
            if at >= to {
                self.playing.set(false);
            } else {
                self.next_frame(shown);
            }
        });
    }

    pub fn seek(self, at: i64, shown: ShownSignals) {
        self.cursor.set(at);
        self.show(shown);
    }

    pub fn step(self, forward: bool, shown: ShownSignals) {
        self.playing.set(false);
        let to = self.playback.with_value(|p| {
            p.as_ref().and_then(|p| {
                if forward {
                    p.next_change()
                } else {
                    p.previous_change()
                }
            })
        });
        if let Some(at) = to {
            self.seek(at, shown);
        }
    }
}

/// The replay bar: interval, transport, clock, scrubber and timeline.
#[component]
pub fn ReplayBar(
    replayer: Replayer,
    shown: ShownSignals,
    clock: Clock,
    zone: Memo<Option<String>>,
) -> impl IntoView {
    let wall = move |ms: i64| {
        zone.get()
            .and_then(|z| wall_input(ms, &z))
            .unwrap_or_default()
    };
    let from_text = RwSignal::new(String::new());
    let to_text = RwSignal::new(String::new());
    // The inputs follow the loaded interval.
    Effect::new(move |_| {
        if let Some((from, to)) = replayer.range.get() {
            from_text.set(wall(from));
            to_text.set(wall(to));
        }
    });
    let input_error = RwSignal::new(None::<String>);
    let load_typed = move || {
        let Some(zone) = zone.get_untracked() else {
            return;
        };
        match (
            wall_to_utc(&from_text.get_untracked(), &zone),
            wall_to_utc(&to_text.get_untracked(), &zone),
        ) {
            (Some(from), Some(to)) if from < to => {
                input_error.set(None);
                replayer.load(
                    ReplayQuery {
                        from,
                        to,
                        at: from,
                        speed: replayer.speed.get_untracked(),
                    },
                    shown,
                );
            }
            (Some(_), Some(_)) => input_error.set(Some("The end must be after the start".into())),
            _ => input_error.set(Some("Give a start and an end, in yard time".into())),
        }
    };
    let preset = move |span: i64| {
        let to = clock.now_untracked();
        replayer.load(
            ReplayQuery {
                from: to - span,
                to,
                at: to - span,
                speed: replayer.speed.get_untracked(),
            },
            shown,
        );
    };
    let cursor_text = move || {
        let at = replayer.cursor.get();
        let local = zone
            .get()
            .and_then(|z| zoned_stamp(at, &z))
            .unwrap_or_else(|| utc_beside(at));
        (local, utc_beside(at))
    };
    let ready = move || replayer.status.with(|s| *s == Status::Ready);
    let range = move || replayer.range.get().unwrap_or((0, 1));
    view! {
        <section
            class="replay-bar"
            data-testid="replay-bar"
            data-state=move || replayer.status.with(Status::as_str)
            data-playing=move || replayer.playing.get().to_string()
            data-frames=move || replayer.frames.get()
            aria-label="Replay"
        >
            <div class="replay-pick">
                <span class="replay-title">"Replay"</span>
                {[("15 min", 900_000i64), ("1 h", 3_600_000), ("6 h", 21_600_000), ("24 h", 86_400_000)]
                    .into_iter()
                    .map(|(label, span)| view! {
                        <button type="button" class="preset" on:click=move |_| preset(span)>
                            {format!("Last {label}")}
                        </button>
                    })
                    .collect_view()}
                <label>
                    "From "
                    <input
                        type="datetime-local"
                        data-testid="replay-from"
                        prop:value=move || from_text.get()
                        on:change=move |ev| from_text.set(event_target_value(&ev))
                    />
                </label>
                <label>
                    "to "
                    <input
                        type="datetime-local"
                        data-testid="replay-to"
                        prop:value=move || to_text.get()
                        on:change=move |ev| to_text.set(event_target_value(&ev))
                    />
                </label>
                <button type="button" data-testid="replay-load" on:click=move |_| load_typed()>
                    "Load"
                </button>
                <span class="replay-note">"(yard time)"</span>
                {move || input_error.get().map(|e| view! { <span class="problem">{e}</span> })}
            </div>
            {move || match replayer.status.get() {
                Status::Idle => view! {
                    <p class="muted">"Pick an interval to replay, or use Replay ▸ on an exception."</p>
                }
                .into_any(),
                Status::Loading => view! {
                    <p class="muted"><span class="spinner" aria-hidden="true"></span>" Loading the interval…"</p>
                }
                .into_any(),
                Status::Failed(message) => view! {
                    <p class="problem" role="alert">{format!("Cannot replay: {message}")}</p>
                }
                .into_any(),
                Status::Ready => ().into_any(),
            }}
            <div class="transport" class:disabled=move || !ready()>
                <button
                    type="button"
                    data-testid="replay-prev"
                    title="Previous change"
                    on:click=move |_| replayer.step(false, shown)
                >
                    "◀ Previous change"
                </button>
                <button
                    type="button"
                    class="play"
                    data-testid="replay-play"
                    title="Play or pause"
                    on:click=move |_| {
                        if replayer.playing.get_untracked() {
                            replayer.playing.set(false);
                        } else {
                            replayer.play(shown);
                        }
                    }
                >
                    {move || if replayer.playing.get() { "⏸ Pause" } else { "▶ Play" }}
                </button>
                <button
                    type="button"
                    data-testid="replay-next"
                    title="Next change"
                    on:click=move |_| replayer.step(true, shown)
                >
                    "Next change ▶"
                </button>
                <span class="speeds" role="group" aria-label="Speed">
                    {SPEEDS
                        .into_iter()
                        .map(|s| view! {
                            <button
                                type="button"
                                data-speed=s
                                aria-pressed=move || (replayer.speed.get() == s).to_string()
                                on:click=move |_| replayer.speed.set(s)
                            >
                                {format!("{s}×")}
                            </button>
                        })
                        .collect_view()}
                </span>
                <span class="replay-clock" data-testid="replay-time" data-at=move || replayer.cursor.get()>
                    <span class="replay-local">{move || cursor_text().0}</span>
                    <span class="replay-utc">{move || cursor_text().1}</span>
                </span>
            </div>
            <input
                type="range"
                class="scrubber"
                data-testid="replay-scrub"
                min=move || range().0
                max=move || range().1
                step="1000"
                prop:value=move || replayer.cursor.get().to_string()
                on:input=move |ev| {
                    if let Ok(at) = event_target_value(&ev).parse::<i64>() {
                        replayer.playing.set(false);
                        replayer.seek(at, shown);
                    }
                }
            />
            <Timeline replayer shown />
        </section>
    }
}

/// The interval's exceptions as bars along the scrubber; a click jumps to
/// the start of one.
#[component]
fn Timeline(replayer: Replayer, shown: ShownSignals) -> impl IntoView {
    let spans = move || {
        replayer.status.track();
        replayer
            .playback
            .with_value(|p| p.as_ref().map(|p| (p.from, p.to, p.timeline())))
    };
    view! {
        <svg class="timeline" viewBox="0 0 1000 24" preserveAspectRatio="none" data-testid="replay-timeline">
            {move || {
                let Some((from, to, list)) = spans() else {
                    return ().into_any();
                };
                let width = (to - from).max(1) as f64;
                let x = move |t: i64| ((t - from) as f64 / width * 1000.0).clamp(0.0, 1000.0);
                list.into_iter()
                    .enumerate()
                    .map(|(row, (severity, start, end, text, id))| {
                        let y = 2.0 + (row % 4) as f64 * 5.0;
                        view! {
                            <rect
                                class="span"
                                data-severity=Severity::as_str(severity)
                                data-exception=id
                                x=x(start)
                                y=y
                                width=(x(end) - x(start)).max(2.0)
                                height="4"
                                on:click=move |_| {
                                    replayer.playing.set(false);
                                    replayer.seek(start, shown);
                                }
                            >
                                <title>{text}</title>
                            </rect>
                        }
                    })
                    .collect_view()
                    .into_any()
            }}
            <line
                class="cursor"
                x1=move || {
                    let (from, to) = replayer.range.get().unwrap_or((0, 1));
                    ((replayer.cursor.get() - from) as f64 / (to - from).max(1) as f64 * 1000.0)
                        .clamp(0.0, 1000.0)
                }
                x2=move || {
                    let (from, to) = replayer.range.get().unwrap_or((0, 1));
                    ((replayer.cursor.get() - from) as f64 / (to - from).max(1) as f64 * 1000.0)
                        .clamp(0.0, 1000.0)
                }
                y1="0"
                y2="24"
            />
        </svg>
    }
}
