//! The timetable: trains along the layout's routes.
//!
//! Every route has its own departures, a day of them drawn from the seed,
//! so every gateway computes the same trains without talking to the
//! others. A train runs at a constant speed, stops where its route says
//! (its head at the far end of that circuit), and occupies every circuit
//! its body covers. A route that names a circuit twice in a row reverses
//! there: the train runs back through the whole of it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use trackside_wire::Layout;

/// A train's length and speed.
pub(crate) const TRAIN_M: f64 = 220.0;
pub(crate) const SPEED_M_S: f64 = 15.0;
const DAY_S: f64 = 86_400.0;

struct Route {
    /// Departure times within a day, ascending.
    departures: Vec<f64>,
    /// Head position (metres along the route) and seconds of the stop.
    stop: Option<(f64, f64)>,
    /// From departure until the tail has left the route.
    transit_s: f64,
}

impl Route {
    /// Where the head is, `since_s` after departure.
    fn head_m(&self, since_s: f64) -> f64 {
        match self.stop {
            Some((at_m, stop_s)) => {
                let arrive_s = at_m / SPEED_M_S;
                if since_s < arrive_s {
                    since_s * SPEED_M_S
                } else if since_s < arrive_s + stop_s {
                    at_m
                } else {
                    (since_s - stop_s) * SPEED_M_S
                }
            }
            None => since_s * SPEED_M_S,
        }
    }
}

pub(crate) struct Trains {
    routes: Vec<Route>,
    /// Per circuit (layout order): the stretches of routes over it, as
    /// (route, start metre, end metre).
    stretches: Vec<Vec<(usize, f64, f64)>>,
}

impl Trains {
    pub(crate) fn new(layout: &Layout, seed: u64) -> Self {
        let index = |id: &str| layout.circuits.iter().position(|c| c.id == id);
        let length = |id: &str| -> f64 {
            layout
                .sections
                .iter()
                .filter(|s| s.circuit == id)
                .map(|s| s.length_m)
                .fold(0.0, f64::max)
                .max(1.0)
        };
        let mut stretches = vec![Vec::new(); layout.circuits.len()];
        let mut routes = Vec::new();
        for (r, route) in layout.routes.iter().enumerate() {
            let mut at_m = 0.0;
            let mut stop = None;
            for circuit in &route.circuits {
                let Some(c) = index(circuit) else { continue };
                let end_m = at_m + length(circuit);
                stretches[c].push((r, at_m, end_m));
                if stop.is_none()
                    && let Some(s) = route.stop.as_ref().filter(|s| &s.circuit == circuit)
                {
                    stop = Some((end_m - 10.0, s.seconds));
                }
                at_m = end_m;
            }
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(7).wrapping_add(r as u64 * 101));
            let mean_s = 3_600.0 / route.trains_per_hour;
            let mut departures = Vec::new();
            let mut t = rng.random_range(3.0..mean_s.max(4.0));
            while t < DAY_S {
                departures.push(t);
                t += rng.random_range(0.55 * mean_s..1.45 * mean_s);
            }
            let transit_s = (at_m + TRAIN_M) / SPEED_M_S + stop.map_or(0.0, |(_, s)| s);
            routes.push(Route {
                departures,
                stop,
                transit_s,
            });
        }
        Self { routes, stretches }
    }

    /// Whether a train is on `circuit` at `now_s`. The timetable repeats
    /// every day, so a run of any length has trains.
    pub(crate) fn occupies(&self, circuit: usize, now_s: f64) -> bool {
        let Some(stretches) = self.stretches.get(circuit) else {
            return false;
        };
        let today = now_s.rem_euclid(DAY_S);
        stretches.iter().any(|&(r, start_m, end_m)| {
            let route = &self.routes[r];
            // Trains that left today, and those that left late yesterday.
            [today, today + DAY_S].into_iter().any(|now| {
                let departed = route.departures.partition_point(|&d| d <= now);
                route.departures[..departed]
                    .iter()
                    .rev()
                    .take_while(|&&d| now - d <= route.transit_s)
                    .any(|&d| {
                        let head = route.head_m(now - d);
                        head > start_m && head - TRAIN_M < end_m
                    })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yard::layout;

    fn trains(text: &str) -> (Layout, Trains) {
        let layout = layout::check(text, &|_| false).unwrap();
        let trains = Trains::new(&layout, 1);
        (layout, trains)
    }

    #[test]
    fn a_train_moves_along_its_route_in_order() {
        let text = layout::generated(4, 12, 1.0);
        let (_, mut trains) = trains(&text);
        trains.routes[0].departures = vec![0.0];
        // Circuits are 400 m: 10 s in, the head is at 150 m.
        assert!(trains.occupies(0, 10.0));
        assert!(!trains.occupies(1, 10.0));
        // At 40 s the head is at 600 m and the tail at 380 m: both.
        assert!(trains.occupies(0, 40.0) && trains.occupies(1, 40.0));
        assert!(!trains.occupies(0, 60.0));
        assert!(trains.occupies(3, 110.0));
        assert!(!trains.occupies(3, 200.0));
    }

    #[test]
    fn a_stopping_train_waits_with_its_head_at_the_end_of_the_platform() {
        let text = layout::generated(3, 12, 1.0).replace(
            "trains_per_hour = 1",
            "trains_per_hour = 1\nstop = { circuit = \"T102\", seconds = 100 }",
        );
        let (_, mut trains) = trains(&text);
        trains.routes[0].departures = vec![0.0];
        // Head reaches 790 m at about 52.7 s and waits there 100 s.
        assert!(trains.occupies(1, 120.0));
        assert!(!trains.occupies(2, 120.0));
        assert!(!trains.occupies(0, 120.0));
        assert!(trains.occupies(2, 160.0));
    }

    #[test]
    fn the_demo_yard_is_mostly_clear() {
        let (layout, trains) = trains(layout::DEMO_LAYOUT);
        let mut occupied = 0usize;
        let mut samples = 0usize;
        let mut t = 0.0;
        while t < 6.0 * 3_600.0 {
            for c in 0..layout.circuits.len() {
                samples += 1;
                occupied += usize::from(trains.occupies(c, t));
            }
            t += 7.0;
        }
        let share = occupied as f64 / samples as f64;
        assert!(
            (0.02..0.25).contains(&share),
            "a circuit should be occupied a few minutes an hour, not {:.0} %",
            share * 100.0
        );
        // Every circuit sees a train within six hours.
        for c in 0..layout.circuits.len() {
            assert!(
                (0..(6 * 3_600)).any(|s| trains.occupies(c, f64::from(s))),
                "{} never occupied",
                layout.circuits[c].id
            );
        }
    }
}
