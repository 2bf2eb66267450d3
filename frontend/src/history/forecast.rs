//! The history page's forecasts: fetching them for the charted channels,
//! and the Forecast panel that shows the models and trains them.

use futures::future::Either;
use leptos::prelude::*;
use trackside_wire::{
    ChannelName, Forecast, ForecastModel, ForecastStatus, Role, TrainJob, TrainRequest, TrainState,
    parameter_info,
};

use crate::api::{self, ApiFailure};
use crate::session::Session;
use crate::time::{Clock, utc_beside, zoned_stamp};

/// How often forecasts and the models are fetched again: the server
/// recomputes forecasts about once a minute; a running training job is
/// followed more closely.
const POLL_MS: u32 = 15_000;
const POLL_TRAINING_MS: u32 = 1_000;

/// Where the page's forecast data lives.
#[derive(Clone, Copy)]
pub struct ForecastData {
    pub status: RwSignal<Option<ForecastStatus>>,
    /// Forecasts of the charted channels that have one.
    pub forecasts: RwSignal<Vec<Forecast>>,
    pub failure: RwSignal<Option<String>>,
    /// Bumped to poll at once (training was started).
    pub poke: RwSignal<u32>,
}

impl ForecastData {
    pub fn new() -> Self {
        Self {
            status: RwSignal::new(None),
            forecasts: RwSignal::new(Vec::new()),
            failure: RwSignal::new(None),
            poke: RwSignal::new(0),
        }
    }

    fn training(&self) -> bool {
        self.status.with_untracked(|s| {
            s.as_ref()
                .and_then(|s| s.job.as_ref())
                .is_some_and(|j| j.state == TrainState::Running)
        })
    }
}

fn kind_of(channel: &str) -> Option<String> {
    ChannelName::parse(channel)
        .ok()
        .map(|n| n.parameter().to_owned())
}

/// Polls the models and, for every charted channel of a trained kind, its
/// forecast, until `stopped`.
pub async fn poll(
    channels: Vec<String>,
    data: ForecastData,
    mut stopped: futures::channel::oneshot::Receiver<()>,
) {
    loop {
        match api::forecast_status().await {
            Ok(status) => {
                let trained: Vec<String> = status.models.iter().map(|m| m.kind.clone()).collect();
                let mut fresh = Vec::new();
                let mut failure = None;
                for channel in &channels {
                    if !kind_of(channel).is_some_and(|k| trained.contains(&k)) {
                        continue;
                    }
                    match api::forecast(channel).await {
                        Ok(Some(forecast)) => fresh.push(forecast),
                        Ok(None) => {}
                        Err(err) => failure = Some(err.to_string()),
                    }
                }
                if data.status.try_set(Some(status)).is_some() {
                    return;
                }
                data.forecasts.set(fresh);
                data.failure.set(failure);
            }
            Err(err) => {
                if data.failure.try_set(Some(err.to_string())).is_some() {
                    return;
                }
            }
        }
        let wait = if data.training() {
            POLL_TRAINING_MS
        } else {
            POLL_MS
        };
        let pause = gloo_timers::future::TimeoutFuture::new(wait);
        futures::pin_mut!(pause);
        if let Either::Right(_) = futures::future::select(pause, &mut stopped).await {
            return;
        }
    }
}

fn when(ms: i64, zone: Option<&str>) -> String {
    match zone.and_then(|z| zoned_stamp(ms, z)) {
        Some(local) => format!("{local} ({})", utc_beside(ms)),
        None => utc_beside(ms),
    }
}

fn unit_of(kind: &str) -> String {
    parameter_info(kind)
        .and_then(|(_, p)| p.unit)
        .map(|u| format!(" {u}"))
        .unwrap_or_default()
}

fn label_of(kind: &str) -> String {
    parameter_info(kind).map_or_else(|| kind.to_owned(), |(_, p)| p.label.to_owned())
}

/// The training ranges offered, in days back from now.
const TRAIN_DAYS: [i64; 5] = [1, 3, 7, 14, 30];

/// The Forecast panel: per charted kind, its model (or that it has none),
/// and a control that trains one on the last days of history, with the
/// job's progress.
#[component]
pub fn ForecastPanel(
    channels: Memo<Vec<String>>,
    data: ForecastData,
    clock: Clock,
    zone: Memo<Option<String>>,
) -> impl IntoView {
    let kinds = Memo::new(move |_| {
        let mut kinds: Vec<String> = channels.get().iter().filter_map(|c| kind_of(c)).collect();
        kinds.sort();
        kinds.dedup();
        kinds
    });
    let session = expect_context::<Session>();
    let chosen = RwSignal::new(None::<String>);
    let days = RwSignal::new(7i64);
    let refused = RwSignal::new(None::<String>);
    let kind = Memo::new(move |_| {
        let kinds = kinds.get();
        chosen
            .get()
            .filter(|k| kinds.contains(k))
            .or_else(|| kinds.first().cloned())
    });
    let model_of = move |kind: &str| -> Option<ForecastModel> {
        data.status.with(|s| {
            s.as_ref()
                .and_then(|s| s.models.iter().find(|m| m.kind == kind).cloned())
        })
    };
    let job = move || data.status.with(|s| s.as_ref().and_then(|s| s.job.clone()));
    let running = move || job().is_some_and(|j| j.state == TrainState::Running);
    let start = move |_| {
        let Some(kind) = kind.get_untracked() else {
            return;
        };
        let to = clock.now_untracked();
        let request = TrainRequest {
            kind,
            from: to - days.get_untracked() * 86_400_000,
            to,
            epochs: None,
        };
        refused.set(None);
        leptos::task::spawn_local(async move {
            match api::train(&request).await {
                Ok(job) => {
                    data.status.update(|s| {
                        if let Some(s) = s {
                            s.job = Some(job);
                        }
                    });
                    data.poke.update(|n| *n += 1);
                }
                Err(ApiFailure::Rejected { message, .. }) => refused.set(Some(message)),
                Err(other) => refused.set(Some(other.to_string())),
            }
        });
    };

    view! {
        <section class="forecast-panel" data-testid="forecast-panel" aria-label="Forecast">
            <h2>"Forecast"</h2>
            {move || {
                let kinds = kinds.get();
                if kinds.is_empty() {
                    return view! {
                        <p class="muted">"Chart a channel to see or train its forecast model."</p>
                    }
                    .into_any();
                }
                kinds
                    .into_iter()
                    .map(|kind| {
                        let unit = unit_of(&kind);
                        let label = label_of(&kind);
                        match model_of(&kind) {
                            Some(m) => {
                                let zone = zone.get();
                                view! {
                                    <p class="model" data-kind=kind.clone() data-trained="true">
                                        <strong>{label}</strong>
                                        {format!(
                                            ": GRU model trained on {} to {} ({} channels, {} epochs in {:.0} s). \
                                             Looks {} ahead in {}-minute steps. Validation error {:.3}{unit} \
                                             (\"no change\" would be {:.3}{unit}).",
                                            when(m.trained_from, zone.as_deref()),
                                            when(m.trained_to, zone.as_deref()),
                                            m.channels,
                                            m.epochs,
                                            m.training_seconds,
                                            horizon_words(m.horizon as i64 * i64::from(m.step_minutes)),
                                            m.step_minutes,
                                            m.validation_mae,
                                            m.validation_mae_last_value,
                                        )}
                                    </p>
                                }
                                .into_any()
                            }
                            None => view! {
                                <p class="model" data-kind=kind.clone() data-trained="false">
                                    <strong>{label}</strong>
                                    ": no model yet. Train one to forecast every channel of this kind \
                                     and warn before a limit is crossed."
                                </p>
                            }
                            .into_any(),
                        }
                    })
                    .collect_view()
                    .into_any()
            }}
            <Show
                when=move || session.may(Role::Admin)
                fallback=|| view! {
                    <p class="role-note" data-testid="train-needs-admin">
                        "Training a model needs the admin role."
                    </p>
                }
            >
            <div class="train-controls" data-testid="train-controls">
                <label>
                    "Train "
                    <select
                        aria-label="Parameter to train"
                        on:change=move |ev| chosen.set(Some(event_target_value(&ev)))
                        prop:value=move || kind.get().unwrap_or_default()
                    >
                        {move || {
                            kinds
                                .get()
                                .into_iter()
                                .map(|k| view! { <option value=k.clone()>{label_of(&k)}</option> })
                                .collect_view()
                        }}
                    </select>
                </label>
                <label>
                    " on the last "
                    <select
                        aria-label="Training range"
                        on:change=move |ev| {
                            if let Ok(d) = event_target_value(&ev).parse() {
                                days.set(d);
                            }
                        }
                        prop:value=move || days.get().to_string()
                    >
                        {TRAIN_DAYS
                            .iter()
                            .map(|d| {
                                let text = if *d == 1 { "day".to_owned() } else { format!("{d} days") };
                                view! { <option value=d.to_string()>{text}</option> }
                            })
                            .collect_view()}
                    </select>
                </label>
                <button
                    data-testid="train-button"
                    on:click=start
                    disabled=move || running() || kind.get().is_none()
                >
                    {move || if running() { "Training…" } else { "Train model" }}
                </button>
            </div>
            </Show>
            {move || job().map(|j| job_view(j, zone.get()))}
            {move || {
                refused
                    .get()
                    .map(|m| {
                        view! {
                            <p class="problem" role="alert">
                                {format!("Training was not started: {m}")}
                            </p>
                        }
                    })
            }}
            {move || {
                data.failure
                    .get()
                    .map(|m| view! { <p class="problem" role="alert">{m}</p> })
            }}
        </section>
    }
}

fn horizon_words(minutes: i64) -> String {
    if minutes < 120 {
        format!("{minutes} minutes")
    } else {
        format!("{:.0} hours", minutes as f64 / 60.0)
    }
}

fn job_view(job: TrainJob, zone: Option<String>) -> impl IntoView {
    let state = match job.state {
        TrainState::Running => "running",
        TrainState::Succeeded => "succeeded",
        TrainState::Failed => "failed",
    };
    let text = match job.state {
        TrainState::Running => format!(
            "Training {}: {} (started {}).",
            label_of(&job.kind),
            job.stage,
            when(job.started_at, zone.as_deref())
        ),
        TrainState::Succeeded => format!(
            "Training {} finished {}: validation error {}{}.",
            label_of(&job.kind),
            job.finished_at
                .map_or_else(String::new, |t| when(t, zone.as_deref())),
            job.validation_mae.map_or("—".into(), |v| format!("{v:.3}")),
            unit_of(&job.kind),
        ),
        TrainState::Failed => format!(
            "Training {} failed: {}. Choose a longer range or check the server log.",
            label_of(&job.kind),
            job.error.clone().unwrap_or_default()
        ),
    };
    view! {
        <div class="train-job" data-testid="train-job" data-state=state>
            <progress max=job.epochs.max(1) value=job.epoch></progress>
            <span class=if job.state == TrainState::Failed { "problem" } else { "" }>{text}</span>
        </div>
    }
}
