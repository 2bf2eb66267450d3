//! The alarm nobody misses: a sound, the page's title and favicon, and
//! desktop notifications, for unacknowledged high-priority exceptions.
//!
//! A control room does not watch one tab all night. A list that turns red
//! is seen only by whoever looks; so what must be acted on *now* (high
//! priority, unacknowledged, not suppressed by maintenance) repeats a
//! sound until someone acknowledges it, or mutes it here for a few
//! minutes, and shows its count in the tab's title and icon, where it is
//! seen from another tab or across the room. Which exceptions count is
//! [`Exceptions::sounding`], tested natively; this module only presents
//! it. Muting is this browser's alone (it changes nothing on the server,
//! so it is not audited); acknowledging is the operator's record.
//!
//! Browsers refuse sound until the page has had a click: then the control
//! offers "Allow sound", and the title and icon still count.

use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Notification, NotificationOptions, NotificationPermission};

use crate::exceptions::Exceptions;
use crate::time::Clock;

/// How long "Mute" silences the sound; new high-priority raises during it
/// still count in the title, icon and header.
const MUTE_MS: i64 = 5 * 60 * 1000;
/// The sound, synthesised by `cargo xtask frontend`.
const SOUND: &str = "/alarm.wav";

/// The header's alarm control, the sound itself, and the tab's title and
/// icon.
#[component]
pub fn AlarmControl(exceptions: Exceptions, clock: Clock) -> impl IntoView {
    let sounding = Memo::new(move |_| exceptions.sounding());
    let muted_until = RwSignal::new(None::<i64>);
    let muted = Memo::new(move |_| muted_until.get().is_some_and(|until| clock.now() < until));
    // The browser refused to play without a click first.
    let blocked = RwSignal::new(false);
    // Bumped to ask for another attempt (after a click).
    let attempt = RwSignal::new(0u32);
    let audio = NodeRef::<leptos::html::Audio>::new();

    Effect::new(move |_| {
        attempt.track();
        let want = sounding.get() > 0 && !muted.get();
        let Some(audio) = audio.get() else {
            return;
        };
        if !want {
            let _ = audio.pause();
            audio.set_current_time(0.0);
            return;
        }
        if !audio.paused() {
            return;
        }
        match audio.play() {
            Ok(promise) => spawn_local(async move {
                blocked.set(JsFuture::from(promise).await.is_err());
            }),
            Err(_) => blocked.set(true),
        }
    });

    Effect::new(move |_| {
        let count = sounding.get();
        let document = document();
        document.set_title(&title(count));
        if let Ok(Some(icon)) = document.query_selector("link[rel=icon]") {
            let _ = icon.set_attribute("href", &favicon(count));
        }
    });

    // Desktop notifications for what is announced while they are allowed.
    let permission = RwSignal::new(notification_permission());
    Effect::new(move |_| {
        let Some(e) = exceptions.last_announced() else {
            return;
        };
        if permission.get_untracked() != Some(NotificationPermission::Granted) {
            return;
        }
        let options = NotificationOptions::new();
        options.set_body(&e.message);
        // One notification per exception: an escalation replaces it.
        options.set_tag(&format!("exception-{}", e.id));
        let place = e.circuit.clone().unwrap_or_else(|| e.subject.clone());
        let heading = if e.escalation > 0 {
            format!("ESCALATED: {place} · {}", e.kind.label())
        } else {
            format!("HIGH: {place} · {}", e.kind.label())
        };
        let _ = Notification::new_with_options(&heading, &options);
    });
    let ask_permission = move |_| {
        if let Ok(promise) = Notification::request_permission() {
            spawn_local(async move {
                let _ = JsFuture::from(promise).await;
                permission.set(notification_permission());
            });
        }
    };

    let state = move || {
        if sounding.get() == 0 {
            "quiet"
        } else if muted.get() {
            "muted"
        } else if blocked.get() {
            "blocked"
        } else {
            "sounding"
        }
    };
    view! {
        <audio node_ref=audio src=SOUND loop=true preload="auto" data-testid="alarm-sound"></audio>
        <Show when=move || { sounding.get() > 0 }>
            <div
                class="alarm-control"
                role="alert"
                data-testid="alarm-control"
                data-state=state
            >
                <span class="alarm-count">
                    {move || match sounding.get() {
                        1 => "1 HIGH-PRIORITY ALARM".to_owned(),
                        n => format!("{n} HIGH-PRIORITY ALARMS"),
                    }}
                </span>
                {move || match state() {
                    "muted" => {
                        let left = muted_until.get().unwrap_or(0) - clock.now();
                        view! {
                            <button
                                class="secondary"
                                data-testid="alarm-unmute"
                                title="Sound the alarm again now"
                                on:click=move |_| muted_until.set(None)
                            >
                                {format!("Muted {} · Unmute", minutes_seconds(left))}
                            </button>
                        }
                        .into_any()
                    }
                    "blocked" => view! {
                        <button
                            data-testid="alarm-allow"
                            title="The browser plays sound only after a click on the page"
                            on:click=move |_| attempt.update(|n| *n += 1)
                        >
                            "Sound blocked · Allow sound"
                        </button>
                    }
                    .into_any(),
                    _ => view! {
                        <button
                            class="secondary"
                            data-testid="alarm-mute"
                            title="Silence the sound in this browser for 5 minutes; acknowledge to stop it"
                            on:click=move |_| muted_until.set(Some(clock.now_untracked() + MUTE_MS))
                        >
                            "Mute 5 min"
                        </button>
                    }
                    .into_any(),
                }}
                // Offered where it matters: with the first alarm, and the
                // header stays as it was while the yard is quiet.
                <Show when=move || permission.get() == Some(NotificationPermission::Default)>
                    <button
                        class="secondary notify-offer"
                        data-testid="notifications-offer"
                        title="Show high-priority alarms as desktop notifications, even when this tab is hidden"
                        on:click=ask_permission
                    >
                        "Desktop alerts"
                    </button>
                </Show>
            </div>
        </Show>
    }
}

/// The browser's permission, or `None` where there are no notifications.
fn notification_permission() -> Option<NotificationPermission> {
    let supported = js_sys::Reflect::has(&window(), &"Notification".into()).unwrap_or(false);
    supported.then(Notification::permission)
}

/// The tab's title: the count first, so it shows in a narrow tab.
pub fn title(count: usize) -> String {
    match count {
        0 => "Trackside".to_owned(),
        n => format!("({n}) HIGH · Trackside"),
    }
}

/// The tab's icon: the app's rails, or a red badge with the count.
pub fn favicon(count: usize) -> String {
    if count == 0 {
        return "/favicon.svg".to_owned();
    }
    let text = if count > 99 {
        "99+".to_owned()
    } else {
        count.to_string()
    };
    let size = if text.len() > 2 { 14 } else { 20 };
    let svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'>\
         <rect width='32' height='32' rx='6' fill='%23d7263d'/>\
         <text x='16' y='23' font-family='sans-serif' font-weight='bold' font-size='{size}' \
         text-anchor='middle' fill='white'>{text}</text></svg>"
    );
    format!("data:image/svg+xml,{svg}")
}

fn minutes_seconds(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    format!("{}:{:02}", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_and_icon_carry_the_count() {
        assert_eq!(title(0), "Trackside");
        assert_eq!(title(3), "(3) HIGH · Trackside");
        assert_eq!(favicon(0), "/favicon.svg");
        assert!(favicon(7).starts_with("data:image/svg+xml,"));
        assert!(favicon(7).contains(">7</text>"));
        assert!(favicon(250).contains(">99+</text>"));
        assert_eq!(minutes_seconds(299_500), "4:59");
    }
}
