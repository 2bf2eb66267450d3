//! Maintenance windows in the app: the page that plans, lists and ends
//! them, and the store the diagram reads to mark the circuits a window
//! covers (the history chart asks for the windows over its own range).
//!
//! Windows change seldom and are not on the live feed, so the store asks
//! for them on a timer and after every change made here. The engine, not
//! the app, decides what a window suppresses; the app only shows it.

mod page;

use std::time::Duration;

use leptos::prelude::*;
use trackside_wire::MaintenanceWindowInfo;

pub use page::MaintenancePage;

use crate::api::{self, ApiFailure};

/// How often the windows are fetched again: a planned window starting is
/// seen from the clock, so this only catches windows others made.
const REFRESH: Duration = Duration::from_secs(30);

/// The windows planned, active, and ended in the last 7 days.
#[derive(Clone, Copy)]
pub struct Maintenance {
    windows: RwSignal<Vec<MaintenanceWindowInfo>>,
    /// The last fetch's failure; the windows already shown stay.
    failure: RwSignal<Option<ApiFailure>>,
    loaded: RwSignal<bool>,
}

impl Maintenance {
    /// Starts fetching, now and on a timer, and puts it in the context.
    pub fn start() -> Self {
        let store = Self {
            windows: RwSignal::new(Vec::new()),
            failure: RwSignal::new(None),
            loaded: RwSignal::new(false),
        };
        store.load();
        if let Ok(handle) = set_interval_with_handle(move || store.load(), REFRESH) {
            on_cleanup(move || handle.clear());
        }
        provide_context(store);
        store
    }

    pub fn load(self) {
        leptos::task::spawn_local(async move {
            match api::maintenance_windows().await {
                Ok(list) => {
                    self.windows.set(list);
                    self.failure.set(None);
                    self.loaded.set(true);
                }
                Err(failure) => self.failure.set(Some(failure)),
            }
        });
    }

    pub fn windows(self) -> Vec<MaintenanceWindowInfo> {
        self.windows.get()
    }

    pub fn failure(self) -> Option<ApiFailure> {
        self.failure.get()
    }

    pub fn loaded(self) -> bool {
        self.loaded.get()
    }
}

/// What a window covers, in words: `T10*, T20 · gateway yard-gw02`.
pub fn scope(window: &MaintenanceWindowInfo) -> String {
    let mut parts = Vec::new();
    if !window.circuits.is_empty() {
        parts.push(window.circuits.join(", "));
    }
    if let Some(gateway) = &window.gateway {
        parts.push(format!("gateway {gateway}"));
    }
    parts.join(" · ")
}

/// The windows among `windows` that hold at `at` over `circuit`, fed by
/// `gateways`.
pub fn covering<'w>(
    windows: &'w [MaintenanceWindowInfo],
    circuit: &str,
    gateways: &[String],
    at: i64,
) -> impl Iterator<Item = &'w MaintenanceWindowInfo> {
    let circuit = circuit.to_owned();
    let gateways = gateways.to_vec();
    windows
        .iter()
        .filter(move |w| w.holds_at(at) && w.covers(&circuit, gateways.iter().map(String::as_str)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackside_wire::WindowState;

    fn window(circuits: &[&str], gateway: Option<&str>) -> MaintenanceWindowInfo {
        MaintenanceWindowInfo {
            id: 1,
            circuits: circuits.iter().map(|c| (*c).to_owned()).collect(),
            gateway: gateway.map(str::to_owned),
            reason: "tamping".into(),
            starts_at: 1_000,
            ends_at: 2_000,
            created_by: "Otto".into(),
            created_at: 0,
            ended_by: None,
            state: WindowState::Active,
            suppressed: 0,
        }
    }

    #[test]
    fn a_window_covers_its_patterns_and_its_gateway_while_it_holds() {
        let windows = [window(&["T1*", "B2"], None), window(&[], Some("gw-2"))];
        let count = |circuit: &str, gateways: &[&str], at| {
            let gateways: Vec<String> = gateways.iter().map(|g| (*g).to_owned()).collect();
            covering(&windows, circuit, &gateways, at).count()
        };
        assert_eq!(count("T101", &[], 1_500), 1);
        assert_eq!(count("B2", &[], 1_000), 1, "from its start");
        assert_eq!(count("B2", &[], 2_000), 0, "until its end");
        assert_eq!(count("B20", &[], 1_500), 0);
        assert_eq!(count("X1", &["gw-1", "gw-2"], 1_500), 1, "by its gateway");
        assert_eq!(count("T1", &["gw-2"], 1_500), 2);
        assert_eq!(count("X1", &["gw-2"], 999), 0);
        assert_eq!(scope(&windows[0]), "T1*, B2");
        assert_eq!(scope(&window(&["A"], Some("gw"))), "A · gateway gw");
    }
}
