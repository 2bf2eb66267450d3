//! Train movements from occupations: a train entering a circuit occupies
//! it while it still occupies the one it came from (or within a few
//! seconds of leaving it, across a short gap between circuits), and that
//! circuit is adjacent in the layout. Chaining such occupations gives the
//! train's path with its times.
//!
//! Pure: the changes come from the replay query, the adjacency from the
//! layout. Each occupation has at most one successor, so two trains
//! following each other on a line stay two movements: the second one's
//! first occupation finds the first train's occupation already continued.

use std::collections::HashMap;

use trackside_wire::{Movement, MovementStep, StateChange};

/// An occupation may follow one that ended at most this long before.
pub const GAP_MS: i64 = 15_000;

/// One occupation while chaining.
struct Occupation {
    circuit: String,
    entered: i64,
    left: Option<i64>,
    movement: usize,
    continued: bool,
}

/// Chains the occupations in `changes` (time order) into movements of at
/// least two circuits. `occupied_at_start` lists circuits already occupied
/// when the changes begin, with when that began (or the start).
pub fn detect(
    occupied_at_start: &[(String, i64)],
    changes: &[StateChange],
    adjacent: &HashMap<&str, &[String]>,
) -> Vec<Movement> {
    let mut occupations: Vec<Occupation> = Vec::new();
    let mut current: HashMap<String, usize> = HashMap::new();
    // Occupations a new one may still continue: under way, or ended within
    // the gap. Pruned as time passes, so it stays as small as the yard.
    let mut candidates: Vec<usize> = Vec::new();
    let mut movements = 0usize;
    for (circuit, since) in occupied_at_start {
        current.insert(circuit.clone(), occupations.len());
        candidates.push(occupations.len());
        occupations.push(Occupation {
            circuit: circuit.clone(),
            entered: *since,
            left: None,
            movement: movements,
            continued: false,
        });
        movements += 1;
    }
    for change in changes {
        let occupied = change.state == 0.0;
        match (occupied, current.get(&change.circuit).copied()) {
            (true, None) => {
                candidates.retain(|&i| {
                    let o = &occupations[i];
                    !o.continued && o.left.is_none_or(|left| left >= change.at - GAP_MS)
                });
                let neighbours = adjacent
                    .get(change.circuit.as_str())
                    .copied()
                    .unwrap_or(&[]);
                let predecessor = candidates
                    .iter()
                    .copied()
                    .filter(|&i| {
                        let o = &occupations[i];
                        o.entered <= change.at && neighbours.contains(&o.circuit)
                    })
                    .max_by_key(|&i| occupations[i].entered);
                let movement = match predecessor {
                    Some(i) => {
                        occupations[i].continued = true;
                        occupations[i].movement
                    }
                    None => {
                        movements += 1;
                        movements - 1
                    }
                };
                current.insert(change.circuit.clone(), occupations.len());
                candidates.push(occupations.len());
                occupations.push(Occupation {
                    circuit: change.circuit.clone(),
                    entered: change.at,
                    left: None,
                    movement,
                    continued: false,
                });
            }
            (false, Some(i)) => {
                occupations[i].left = Some(change.at);
                current.remove(&change.circuit);
            }
            // A re-sent state, or a clear circuit clearing again.
            _ => {}
        }
    }
    let mut grouped: HashMap<usize, Vec<MovementStep>> = HashMap::new();
    for o in occupations {
        grouped.entry(o.movement).or_default().push(MovementStep {
            circuit: o.circuit,
            entered: o.entered,
            left: o.left,
        });
    }
    let mut found: Vec<Movement> = grouped
        .into_values()
        .filter(|steps| steps.len() >= 2)
        .map(|mut steps| {
            steps.sort_by_key(|s| s.entered);
            Movement { steps }
        })
        .collect();
    found.sort_by_key(|m| (m.start(), m.steps[0].circuit.clone()));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(at: i64, circuit: &str, state: f64) -> StateChange {
        StateChange {
            at,
            circuit: circuit.into(),
            state,
        }
    }

    fn line(circuits: &[&str]) -> Vec<(String, Vec<String>)> {
        circuits
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut next = Vec::new();
                if i > 0 {
                    next.push(circuits[i - 1].to_string());
                }
                if i + 1 < circuits.len() {
                    next.push(circuits[i + 1].to_string());
                }
                (c.to_string(), next)
            })
            .collect()
    }

    fn lookup(adjacent: &[(String, Vec<String>)]) -> HashMap<&str, &[String]> {
        adjacent
            .iter()
            .map(|(c, n)| (c.as_str(), n.as_slice()))
            .collect()
    }

    /// Movements as `circuit@entered-left` chains.
    fn render(movements: &[Movement]) -> Vec<String> {
        movements
            .iter()
            .map(|m| {
                m.steps
                    .iter()
                    .map(|s| match s.left {
                        Some(left) => format!("{}@{}-{}", s.circuit, s.entered, left),
                        None => format!("{}@{}-", s.circuit, s.entered),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    fn check(start: &[(&str, i64)], changes: &[StateChange], expected: &[&str]) {
        let adjacent = line(&["A", "B", "C", "D"]);
        let start: Vec<(String, i64)> = start.iter().map(|(c, t)| (c.to_string(), *t)).collect();
        let found = detect(&start, changes, &lookup(&adjacent));
        assert_eq!(render(&found), expected);
    }

    #[test]
    fn a_train_passing_three_sections_is_one_movement() {
        check(
            &[],
            &[
                change(0, "A", 0.0),
                change(20, "B", 0.0),
                change(35, "A", 1.0),
                change(50, "C", 0.0),
                change(65, "B", 1.0),
                change(95, "C", 1.0),
            ],
            &["A@0-35 B@20-65 C@50-95"],
        );
    }

    #[test]
    fn re_sent_states_and_lone_flicks_are_not_movements() {
        check(
            &[],
            &[
                change(0, "D", 0.0),
                change(1, "D", 1.0),
                change(10, "A", 1.0),
                change(20, "A", 1.0),
            ],
            &[],
        );
    }

    #[test]
    fn two_trains_following_each_other_stay_apart() {
        check(
            &[],
            &[
                change(0, "A", 0.0),
                change(20, "B", 0.0),
                change(35, "A", 1.0),
                change(50, "C", 0.0),
                // The second train enters A while the first is on B and C.
                change(60, "A", 0.0),
                change(65, "B", 1.0),
                change(80, "B", 0.0),
                change(95, "C", 1.0),
                change(100, "A", 1.0),
                change(130, "B", 1.0),
            ],
            &["A@0-35 B@20-65 C@50-95", "A@60-100 B@80-130"],
        );
    }

    #[test]
    fn a_short_gap_between_circuits_is_bridged_and_a_long_one_is_not() {
        check(
            &[],
            &[
                change(0, "A", 0.0),
                change(30, "A", 1.0),
                change(40, "B", 0.0),
                change(70, "B", 1.0),
                change(70 + GAP_MS + 1, "C", 0.0),
                change(70 + GAP_MS + 30, "C", 1.0),
            ],
            &["A@0-30 B@40-70"],
        );
    }

    #[test]
    fn a_train_already_on_a_circuit_at_the_start_continues() {
        check(
            &[("B", -5)],
            &[change(10, "C", 0.0), change(20, "B", 1.0)],
            &["B@-5-20 C@10-"],
        );
    }

    #[test]
    fn a_train_that_reverses_comes_back_as_the_same_movement() {
        check(
            &[],
            &[
                change(0, "B", 0.0),
                change(20, "C", 0.0),
                change(40, "B", 1.0),
                // Stops in C, reverses, comes back through B.
                change(200, "B", 0.0),
                change(230, "C", 1.0),
                change(260, "B", 1.0),
            ],
            &["B@0-40 C@20-230 B@200-260"],
        );
    }
}
