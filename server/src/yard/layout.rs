//! The layout file: parsing, and every check an admin needs before a
//! control room draws it, each reported with the line it is about.
//!
//! The format is TOML, like the configuration. A layout names its circuits
//! (with their criticality), draws sections as polylines tied to them,
//! joins sections with points, and adds signals, labels and the routes the
//! simulator runs trains on. `trackside layout check FILE` and
//! `PUT /api/layout` run the same [`check`]; the demo yard's layout
//! (`demo-yard.toml` beside this file) is the worked example.
//!
//! Which circuits a train can move between is not written in the file but
//! derived from the geometry: sections whose ends meet are connected, and at
//! a set of points only the common leg connects to the other two. That one
//! rule serves the movement detector, the route checks and the simulator,
//! and it cannot disagree with what the diagram shows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;
use toml::Spanned;
use trackside_wire::{
    ChannelName, Criticality, Facing, Layout, LayoutCircuit, LayoutLabel, LayoutPoints,
    LayoutProblem, LayoutRoute, LayoutSection, LayoutSignal, RouteStop,
};

/// The largest layout file taken, from disk or over HTTP.
pub const MAX_LAYOUT_BYTES: usize = 1024 * 1024;
/// Most sections, points, signals or labels of each kind.
const MAX_ITEMS: usize = 10_000;
/// Most points of one section's polyline.
const MAX_PATH_POINTS: usize = 1_000;
/// Coordinates beyond this are a typo (a diagram is a few thousand units wide).
const MAX_COORDINATE: f64 = 100_000.0;
const MAX_TEXT: usize = 120;
/// Ends closer than this (in schematic units) meet.
const JOIN_TOLERANCE: f64 = 1e-6;

/// Parses and checks a layout. `known` says whether the server has seen a
/// circuit (from its channels); a section's circuit must be declared in
/// `[[circuit]]` or known. Every problem is reported, not only the first.
pub fn check(text: &str, known: &dyn Fn(&str) -> bool) -> Result<Layout, Vec<LayoutProblem>> {
    if text.len() > MAX_LAYOUT_BYTES {
        return Err(vec![LayoutProblem {
            line: None,
            message: format!(
                "the layout is {} bytes; at most {MAX_LAYOUT_BYTES} are taken",
                text.len()
            ),
        }]);
    }
    let file: File = toml::from_str(text).map_err(|err| {
        let line = err.span().map(|span| line_of(text, span.start));
        vec![LayoutProblem {
            line,
            message: err.message().trim().to_owned(),
        }]
    })?;
    let mut checker = Checker {
        text,
        problems: Vec::new(),
    };
    let layout = checker.layout(file, known);
    if checker.problems.is_empty() {
        Ok(layout)
    } else {
        checker.problems.sort_by_key(|p| p.line);
        Err(checker.problems)
    }
}

/// Problems as one line each, `line 12: ...`, for logs and the terminal.
pub fn describe(problems: &[LayoutProblem]) -> String {
    problems
        .iter()
        .map(|p| match p.line {
            Some(line) => format!("line {line}: {}", p.message),
            None => p.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn line_of(text: &str, offset: usize) -> u32 {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u32
        + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<String>,
    /// Metres per schematic unit, for sections that give no `length_m`.
    metres_per_unit: Option<Spanned<f64>>,
    #[serde(default, rename = "circuit")]
    circuits: Vec<Spanned<CircuitEntry>>,
    #[serde(default, rename = "section")]
    sections: Vec<Spanned<SectionEntry>>,
    #[serde(default)]
    points: Vec<Spanned<PointsEntry>>,
    #[serde(default, rename = "signal")]
    signals: Vec<Spanned<SignalEntry>>,
    #[serde(default, rename = "label")]
    labels: Vec<Spanned<LabelEntry>>,
    #[serde(default, rename = "route")]
    routes: Vec<Spanned<RouteEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CircuitEntry {
    id: String,
    name: Option<String>,
    /// A circuit not declared, or declared without one, counts as a
    /// running line: an unknown asset must not be under-prioritised.
    criticality: Option<Criticality>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SectionEntry {
    /// Defaults to the circuit's id (give one when a circuit has several).
    id: Option<String>,
    circuit: String,
    path: Vec<[f64; 2]>,
    length_m: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointsEntry {
    id: String,
    at: [f64; 2],
    common: String,
    normal: String,
    reverse: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalEntry {
    id: String,
    at: [f64; 2],
    facing: Facing,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelEntry {
    text: String,
    at: [f64; 2],
    #[serde(default)]
    heading: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    name: String,
    circuits: Vec<String>,
    stop: Option<StopEntry>,
    #[serde(default = "default_trains_per_hour")]
    trains_per_hour: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StopEntry {
    circuit: String,
    seconds: f64,
}

fn default_trains_per_hour() -> f64 {
    4.0
}

struct Checker<'a> {
    text: &'a str,
    problems: Vec<LayoutProblem>,
}

impl Checker<'_> {
    fn problem(&mut self, span: std::ops::Range<usize>, message: String) {
        let line = Some(line_of(self.text, span.start));
        self.problems.push(LayoutProblem { line, message });
    }

    fn layout(&mut self, file: File, known: &dyn Fn(&str) -> bool) -> Layout {
        let metres_per_unit = match &file.metres_per_unit {
            Some(m) if !(m.get_ref().is_finite() && *m.get_ref() > 0.0) => {
                self.problem(m.span(), "metres_per_unit must be a positive number".into());
                1.0
            }
            Some(m) => *m.get_ref(),
            None => 1.0,
        };
        for (what, count, first) in [
            (
                "circuit",
                file.circuits.len(),
                file.circuits.get(MAX_ITEMS).map(Spanned::span),
            ),
            (
                "section",
                file.sections.len(),
                file.sections.get(MAX_ITEMS).map(Spanned::span),
            ),
            (
                "points",
                file.points.len(),
                file.points.get(MAX_ITEMS).map(Spanned::span),
            ),
            (
                "signal",
                file.signals.len(),
                file.signals.get(MAX_ITEMS).map(Spanned::span),
            ),
            (
                "label",
                file.labels.len(),
                file.labels.get(MAX_ITEMS).map(Spanned::span),
            ),
            (
                "route",
                file.routes.len(),
                file.routes.get(MAX_ITEMS).map(Spanned::span),
            ),
        ] {
            if let Some(span) = first {
                self.problem(
                    span,
                    format!("{count} [[{what}]] entries; at most {MAX_ITEMS} are taken"),
                );
            }
        }
        if let Some(name) = &file.name
            && name.chars().count() > MAX_TEXT
        {
            self.problems.push(LayoutProblem {
                line: None,
                message: format!("name is longer than {MAX_TEXT} characters"),
            });
        }

        let circuits = self.circuits(&file.circuits);
        let declared: BTreeSet<String> = circuits.iter().map(|c| c.id.clone()).collect();
        let mut circuits = circuits;
        let sections = self.sections(
            &file.sections,
            metres_per_unit,
            &declared,
            known,
            &mut circuits,
        );
        let points = self.points(&file.points, &sections);
        let signals = self.signals(&file.signals);
        let labels = self.labels(&file.labels);
        for circuit in &circuits {
            if !sections.iter().any(|s| s.circuit == circuit.id) {
                let span = file
                    .circuits
                    .iter()
                    .find(|c| c.get_ref().id == circuit.id)
                    .map_or(0..0, Spanned::span);
                self.problem(
                    span,
                    format!(
                        "circuit {} has no [[section]]: draw it, or leave it out",
                        circuit.id
                    ),
                );
            }
        }
        let adjacent = self.adjacency(&file.sections, &sections, &points);
        let routes = self.routes(&file.routes, &circuits, &adjacent);
        Layout {
            name: file.name,
            circuits,
            sections,
            points,
            signals,
            labels,
            routes,
            adjacent: adjacent
                .into_iter()
                .map(|(circuit, next)| (circuit, next.into_iter().collect()))
                .collect(),
        }
    }

    fn circuits(&mut self, entries: &[Spanned<CircuitEntry>]) -> Vec<LayoutCircuit> {
        let mut seen = HashMap::new();
        let mut circuits = Vec::new();
        for entry in entries {
            let span = entry.span();
            let c = entry.get_ref();
            if let Err(err) = ChannelName::from_parts(&c.id, "relay_state") {
                self.problem(span, format!("circuit {:?}: {err}", c.id));
                continue;
            }
            if let Some(first) = seen.insert(c.id.clone(), line_of(self.text, span.start)) {
                self.problem(
                    span,
                    format!("circuit {} is declared twice (first on line {first})", c.id),
                );
                continue;
            }
            if c.name
                .as_ref()
                .is_some_and(|n| n.chars().count() > MAX_TEXT)
            {
                self.problem(
                    span.clone(),
                    format!(
                        "circuit {}: name is longer than {MAX_TEXT} characters",
                        c.id
                    ),
                );
            }
            circuits.push(LayoutCircuit {
                id: c.id.clone(),
                name: c.name.clone(),
                criticality: c.criticality.unwrap_or(Criticality::RunningLine),
            });
        }
        circuits
    }

    fn coordinate(&mut self, span: &std::ops::Range<usize>, what: &str, at: [f64; 2]) -> bool {
        if at
            .iter()
            .all(|v| v.is_finite() && v.abs() <= MAX_COORDINATE)
        {
            return true;
        }
        self.problem(
            span.clone(),
            format!(
                "{what}: coordinate [{}, {}] is outside ±{MAX_COORDINATE}",
                at[0], at[1]
            ),
        );
        false
    }

    fn sections(
        &mut self,
        entries: &[Spanned<SectionEntry>],
        metres_per_unit: f64,
        declared: &BTreeSet<String>,
        known: &dyn Fn(&str) -> bool,
        circuits: &mut Vec<LayoutCircuit>,
    ) -> Vec<LayoutSection> {
        let mut seen: HashMap<String, u32> = HashMap::new();
        let mut sections = Vec::new();
        for entry in entries {
            let span = entry.span();
            let s = entry.get_ref();
            let id = s.id.clone().unwrap_or_else(|| s.circuit.clone());
            let what = format!("section {id}");
            if let Some(first) = seen.insert(id.clone(), line_of(self.text, span.start)) {
                self.problem(
                    span.clone(),
                    format!(
                        "two sections are called {id} (the first on line {first}): give each an `id` when a circuit has several"
                    ),
                );
                continue;
            }
            if !declared.contains(&s.circuit) {
                if known(&s.circuit) {
                    if !circuits.iter().any(|c| c.id == s.circuit) {
                        circuits.push(LayoutCircuit {
                            id: s.circuit.clone(),
                            name: None,
                            criticality: Criticality::RunningLine,
                        });
                    }
                } else {
                    self.problem(
                        span.clone(),
                        format!(
                            "{what}: circuit {} is neither declared in a [[circuit]] nor known to the server (no gateway has reported it)",
                            s.circuit
                        ),
                    );
                    continue;
                }
            }
            if s.path.len() < 2 {
                self.problem(
                    span.clone(),
                    format!("{what}: a path needs at least two points"),
                );
                continue;
            }
            if s.path.len() > MAX_PATH_POINTS {
                self.problem(
                    span.clone(),
                    format!("{what}: {} points; at most {MAX_PATH_POINTS}", s.path.len()),
                );
                continue;
            }
            if !s.path.iter().all(|&p| self.coordinate(&span, &what, p)) {
                continue;
            }
            if s.path
                .windows(2)
                .any(|w| distance(w[0], w[1]) <= JOIN_TOLERANCE)
            {
                self.problem(
                    span.clone(),
                    format!("{what}: two consecutive points are the same; remove one"),
                );
                continue;
            }
            let drawn: f64 = s.path.windows(2).map(|w| distance(w[0], w[1])).sum();
            let length_m = match s.length_m {
                Some(l) if l.is_finite() && l > 0.0 && l <= 100_000.0 => l,
                Some(l) => {
                    self.problem(
                        span.clone(),
                        format!("{what}: length_m = {l} must be between 0 and 100000 metres"),
                    );
                    continue;
                }
                None => drawn * metres_per_unit,
            };
            sections.push(LayoutSection {
                id,
                circuit: s.circuit.clone(),
                path: s.path.clone(),
                length_m,
            });
        }
        sections
    }

    fn points(
        &mut self,
        entries: &[Spanned<PointsEntry>],
        sections: &[LayoutSection],
    ) -> Vec<LayoutPoints> {
        let mut seen = BTreeSet::new();
        let mut points = Vec::new();
        for entry in entries {
            let span = entry.span();
            let p = entry.get_ref();
            let what = format!("points {}", p.id);
            if p.id.is_empty() || p.id.chars().count() > MAX_TEXT || !seen.insert(p.id.clone()) {
                self.problem(
                    span,
                    format!("{what}: every set of points needs its own id"),
                );
                continue;
            }
            if !self.coordinate(&span, &what, p.at) {
                continue;
            }
            let legs = [&p.common, &p.normal, &p.reverse];
            if legs[0] == legs[1] || legs[0] == legs[2] || legs[1] == legs[2] {
                self.problem(
                    span,
                    format!("{what}: common, normal and reverse must be three different sections"),
                );
                continue;
            }
            let mut ok = true;
            for leg in legs {
                match sections.iter().find(|s| &s.id == leg) {
                    None => {
                        self.problem(span.clone(), format!("{what}: no section {leg}"));
                        ok = false;
                    }
                    Some(section) if !ends_at(section, p.at) => {
                        self.problem(
                            span.clone(),
                            format!(
                                "{what}: section {leg} does not end at [{}, {}]",
                                p.at[0], p.at[1]
                            ),
                        );
                        ok = false;
                    }
                    Some(_) => {}
                }
            }
            if ok {
                points.push(LayoutPoints {
                    id: p.id.clone(),
                    at: p.at,
                    common: p.common.clone(),
                    normal: p.normal.clone(),
                    reverse: p.reverse.clone(),
                });
            }
        }
        points
    }

    fn signals(&mut self, entries: &[Spanned<SignalEntry>]) -> Vec<LayoutSignal> {
        let mut seen = BTreeSet::new();
        let mut signals = Vec::new();
        for entry in entries {
            let span = entry.span();
            let s = entry.get_ref();
            let what = format!("signal {}", s.id);
            if s.id.is_empty() || s.id.chars().count() > MAX_TEXT || !seen.insert(s.id.clone()) {
                self.problem(span, format!("{what}: every signal needs its own id"));
                continue;
            }
            if self.coordinate(&span, &what, s.at) {
                signals.push(LayoutSignal {
                    id: s.id.clone(),
                    at: s.at,
                    facing: s.facing,
                });
            }
        }
        signals
    }

    fn labels(&mut self, entries: &[Spanned<LabelEntry>]) -> Vec<LayoutLabel> {
        let mut labels = Vec::new();
        for entry in entries {
            let span = entry.span();
            let l = entry.get_ref();
            let length = l.text.trim().chars().count();
            if length == 0 || length > MAX_TEXT {
                self.problem(
                    span,
                    format!("a label's text must be 1 to {MAX_TEXT} characters"),
                );
                continue;
            }
            if self.coordinate(&span, "label", l.at) {
                labels.push(LayoutLabel {
                    text: l.text.trim().to_owned(),
                    at: l.at,
                    heading: l.heading,
                });
            }
        }
        labels
    }

    /// Which circuits connect, from where section ends meet.
    fn adjacency(
        &mut self,
        entries: &[Spanned<SectionEntry>],
        sections: &[LayoutSection],
        points: &[LayoutPoints],
    ) -> BTreeMap<String, BTreeSet<String>> {
        let mut adjacent: BTreeMap<String, BTreeSet<String>> = sections
            .iter()
            .map(|s| (s.circuit.clone(), BTreeSet::new()))
            .collect();
        let mut connect = |a: &LayoutSection, b: &LayoutSection| {
            if a.circuit != b.circuit {
                adjacent
                    .entry(a.circuit.clone())
                    .or_default()
                    .insert(b.circuit.clone());
                adjacent
                    .entry(b.circuit.clone())
                    .or_default()
                    .insert(a.circuit.clone());
            }
        };
        // Every end, grouped with the ends that meet it.
        let mut nodes: Vec<([f64; 2], Vec<usize>)> = Vec::new();
        for (i, section) in sections.iter().enumerate() {
            let ends = [section.path[0], section.path[section.path.len() - 1]];
            for end in ends {
                match nodes
                    .iter_mut()
                    .find(|(at, _)| distance(*at, end) <= JOIN_TOLERANCE)
                {
                    Some((_, members)) if !members.contains(&i) => members.push(i),
                    Some(_) => {}
                    None => nodes.push((end, vec![i])),
                }
            }
        }
        for (at, members) in &nodes {
            if members.len() < 2 {
                continue;
            }
            match points
                .iter()
                .find(|p| distance(p.at, *at) <= JOIN_TOLERANCE)
            {
                Some(p) => {
                    let find = |id: &str| sections.iter().find(|s| s.id == id);
                    if let (Some(common), Some(normal), Some(reverse)) =
                        (find(&p.common), find(&p.normal), find(&p.reverse))
                    {
                        connect(common, normal);
                        connect(common, reverse);
                    }
                    for &m in members {
                        let id = &sections[m].id;
                        if ![&p.common, &p.normal, &p.reverse].contains(&id) {
                            let span = section_span(entries, sections, m);
                            self.problem(
                                span,
                                format!(
                                    "section {id} ends at points {} but is none of its legs",
                                    p.id
                                ),
                            );
                        }
                    }
                }
                None if members.len() == 2 => connect(&sections[members[0]], &sections[members[1]]),
                None => {
                    let names: Vec<&str> =
                        members.iter().map(|&m| sections[m].id.as_str()).collect();
                    let span = section_span(entries, sections, members[members.len() - 1]);
                    self.problem(
                        span,
                        format!(
                            "sections {} meet at [{}, {}] without points: add a [[points]] there",
                            names.join(", "),
                            at[0],
                            at[1]
                        ),
                    );
                }
            }
        }
        adjacent
    }

    fn routes(
        &mut self,
        entries: &[Spanned<RouteEntry>],
        circuits: &[LayoutCircuit],
        adjacent: &BTreeMap<String, BTreeSet<String>>,
    ) -> Vec<LayoutRoute> {
        let mut routes = Vec::new();
        for entry in entries {
            let span = entry.span();
            let r = entry.get_ref();
            let what = format!("route {:?}", r.name);
            if r.circuits.len() < 2 {
                self.problem(
                    span,
                    format!("{what}: a route runs through at least two circuits"),
                );
                continue;
            }
            if let Some(unknown) = r
                .circuits
                .iter()
                .find(|c| !circuits.iter().any(|k| &k.id == *c))
            {
                self.problem(
                    span,
                    format!("{what}: circuit {unknown} is not in the layout"),
                );
                continue;
            }
            if let Some(pair) = r.circuits.windows(2).find(|w| {
                w[0] != w[1] && !adjacent.get(&w[0]).is_some_and(|next| next.contains(&w[1]))
            }) {
                self.problem(
                    span,
                    format!(
                        "{what}: {} and {} do not meet (no section ends join them, or points lead elsewhere)",
                        pair[0], pair[1]
                    ),
                );
                continue;
            }
            if !(r.trains_per_hour > 0.0 && r.trains_per_hour <= 120.0) {
                self.problem(span, format!("{what}: trains_per_hour must be in (0, 120]"));
                continue;
            }
            let stop = match &r.stop {
                Some(stop) if !r.circuits.contains(&stop.circuit) => {
                    self.problem(
                        span,
                        format!(
                            "{what}: it stops at {}, which it does not run through",
                            stop.circuit
                        ),
                    );
                    continue;
                }
                Some(stop)
                    if !(stop.seconds.is_finite()
                        && stop.seconds > 0.0
                        && stop.seconds <= 3_600.0) =>
                {
                    self.problem(
                        span,
                        format!("{what}: a stop lasts between 0 and 3600 seconds"),
                    );
                    continue;
                }
                Some(stop) => Some(RouteStop {
                    circuit: stop.circuit.clone(),
                    seconds: stop.seconds,
                }),
                None => None,
            };
            routes.push(LayoutRoute {
                name: r.name.clone(),
                circuits: r.circuits.clone(),
                stop,
                trains_per_hour: r.trains_per_hour,
            });
        }
        routes
    }
}

fn section_span(
    entries: &[Spanned<SectionEntry>],
    sections: &[LayoutSection],
    index: usize,
) -> std::ops::Range<usize> {
    let id = &sections[index].id;
    entries
        .iter()
        .find(|e| e.get_ref().id.as_ref().unwrap_or(&e.get_ref().circuit) == id)
        .map_or(0..0, Spanned::span)
}

fn distance(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

fn ends_at(section: &LayoutSection, at: [f64; 2]) -> bool {
    let last = section.path.len() - 1;
    distance(section.path[0], at) <= JOIN_TOLERANCE
        || distance(section.path[last], at) <= JOIN_TOLERANCE
}

/// The circuits a train can reach from each circuit, as a lookup.
pub fn adjacency(layout: &Layout) -> HashMap<&str, &[String]> {
    layout
        .adjacent
        .iter()
        .map(|(c, next)| (c.as_str(), next.as_slice()))
        .collect()
}

/// The layout of the demo yard, which `--demo` simulates.
pub const DEMO_LAYOUT: &str = include_str!("demo-yard.toml");

/// A plain yard of `circuits` circuits for the load generator and the
/// benchmarks: parallel roads of up to `per_road` circuits each, 400 m per
/// circuit, every road a route of its own.
pub fn generated(circuits: usize, per_road: usize, trains_per_hour: f64) -> String {
    use std::fmt::Write as _;
    let per_road = per_road.max(1);
    let mut text =
        format!("name = \"Generated yard ({circuits} circuits)\"\nmetres_per_unit = 2.0\n");
    let names: Vec<String> = (0..circuits).map(|i| format!("T{}", 101 + i)).collect();
    for name in &names {
        let _ = writeln!(text, "\n[[circuit]]\nid = \"{name}\"");
    }
    for (road, chunk) in names.chunks(per_road).enumerate() {
        let y = 60.0 + 60.0 * road as f64;
        for (k, name) in chunk.iter().enumerate() {
            let x = 40.0 + 200.0 * k as f64;
            let _ = writeln!(
                text,
                "\n[[section]]\ncircuit = \"{name}\"\npath = [[{x}, {y}], [{}, {y}]]",
                x + 200.0
            );
        }
        if chunk.len() >= 2 {
            let list: Vec<String> = chunk.iter().map(|n| format!("\"{n}\"")).collect();
            let _ = writeln!(
                text,
                "\n[[route]]\nname = \"Road {}\"\ncircuits = [{}]\ntrains_per_hour = {trains_per_hour}",
                road + 1,
                list.join(", ")
            );
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "Test yard"
metres_per_unit = 2.0

[[circuit]]
id = "T1"
criticality = "running_line"

[[circuit]]
id = "T2"

[[circuit]]
id = "T3"
criticality = "loop"

[[circuit]]
id = "T4"
criticality = "siding"

[[section]]
circuit = "T1"
path = [[0, 0], [100, 0]]

[[section]]
circuit = "T2"
path = [[100, 0], [200, 0]]

[[section]]
circuit = "T3"
path = [[100, 0], [150, 50], [200, 50]]
length_m = 300

[[section]]
circuit = "T4"
path = [[200, 0], [300, 0]]

[[points]]
id = "P1"
at = [100, 0]
common = "T1"
normal = "T2"
reverse = "T3"

[[signal]]
id = "S1"
at = [95, -10]
facing = "right"

[[label]]
text = "Platform 1"
at = [150, 70]

[[route]]
name = "Main"
circuits = ["T1", "T2", "T4"]
stop = { circuit = "T2", seconds = 60 }
"#;

    fn nothing_known(_: &str) -> bool {
        false
    }

    #[test]
    fn a_good_layout_parses_with_its_geometry_and_connections() {
        let layout = check(GOOD, &nothing_known).unwrap();
        assert_eq!(layout.name.as_deref(), Some("Test yard"));
        assert_eq!(layout.circuits.len(), 4);
        assert_eq!(layout.circuits[1].criticality, Criticality::RunningLine);
        assert_eq!(layout.circuits[3].criticality, Criticality::Siding);
        assert_eq!(layout.sections[0].length_m, 200.0);
        assert_eq!(layout.sections[2].length_m, 300.0);
        let adjacent = adjacency(&layout);
        assert_eq!(adjacent["T1"], ["T2", "T3"]);
        // Normal and reverse legs of the points do not lead into each other.
        assert_eq!(adjacent["T2"], ["T1", "T4"]);
        assert_eq!(adjacent["T3"], ["T1"]);
        assert_eq!(layout.routes[0].stop.as_ref().unwrap().seconds, 60.0);
    }

    /// One broken variant of [`GOOD`] and the problem expected, at its line.
    fn check_bad(replace: &str, with: &str, line: u32, expected: &str) {
        assert!(
            GOOD.contains(replace),
            "{replace:?} is not in the good file"
        );
        let text = GOOD.replacen(replace, with, 1);
        let problems = check(&text, &nothing_known).expect_err(expected);
        assert!(
            problems
                .iter()
                .any(|p| p.line == Some(line) && p.message.contains(expected)),
            "expected line {line}: {expected:?}, got {problems:#?}"
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_line_at_fault() {
        check_bad("name = \"Test yard\"", "name = ", 2, "string");
        check_bad(
            "metres_per_unit = 2.0",
            "metres_per_unit = -1.0",
            3,
            "positive",
        );
        check_bad(
            "criticality = \"loop\"",
            "criticality = \"main\"",
            14,
            "unknown variant",
        );
        check_bad(
            "[[circuit]]\nid = \"T2\"",
            "[[circuit]]\nid = \"T1\"",
            9,
            "declared twice",
        );
        check_bad("id = \"T4\"", "id = \"T 4\"", 16, "not allowed");
        check_bad(
            "circuit = \"T4\"\npath",
            "circuit = \"T9\"\npath",
            33,
            "neither declared",
        );
        check_bad(
            "[[100, 0], [200, 0]]",
            "[[100, 0]]",
            24,
            "at least two points",
        );
        check_bad(
            "[[200, 0], [300, 0]]",
            "[[200, 0], [3e9, 0]]",
            33,
            "outside",
        );
        check_bad(
            "[[200, 0], [300, 0]]",
            "[[200, 0], [200, 0]]",
            33,
            "the same",
        );
        check_bad("length_m = 300", "length_m = 0", 28, "length_m");
        check_bad(
            "reverse = \"T3\"",
            "reverse = \"T2\"",
            37,
            "three different",
        );
        check_bad("reverse = \"T3\"", "reverse = \"T7\"", 37, "no section T7");
        check_bad("at = [100, 0]", "at = [200, 0]", 37, "does not end at");
        check_bad(
            "facing = \"right\"",
            "facing = \"up\"",
            47,
            "unknown variant",
        );
        check_bad("text = \"Platform 1\"", "text = \"\"", 49, "label");
        check_bad(
            "[\"T1\", \"T2\", \"T4\"]",
            "[\"T1\", \"T4\"]",
            53,
            "do not meet",
        );
        check_bad(
            "[\"T1\", \"T2\", \"T4\"]",
            "[\"T2\", \"T3\"]",
            53,
            "do not meet",
        );
        check_bad(
            "circuit = \"T2\", seconds",
            "circuit = \"T3\", seconds",
            53,
            "does not run through",
        );
    }

    #[test]
    fn unknown_keys_and_circles_of_ends_are_refused() {
        check_bad(
            "[[label]]",
            "[[label]]\ncolour = \"red\"",
            50,
            "unknown field `colour`",
        );
        // A third section ending where two meet, without points.
        let text = format!(
            "{GOOD}\n[[circuit]]\nid = \"T5\"\n[[section]]\ncircuit = \"T5\"\npath = [[200, 0], [200, 100]]\n"
        );
        let problems = check(&text, &nothing_known).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("without points")),
            "{problems:?}"
        );
        // A declared circuit nobody drew.
        let text = format!("{GOOD}\n[[circuit]]\nid = \"T6\"\n");
        let problems = check(&text, &nothing_known).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, Some(58));
        assert!(problems[0].message.contains("no [[section]]"));
    }

    #[test]
    fn a_circuit_the_server_knows_needs_no_declaration() {
        let text = GOOD.replacen("circuit = \"T4\"\npath", "circuit = \"T9\"\npath", 1);
        let text = text.replace("\"T1\", \"T2\", \"T4\"", "\"T1\", \"T2\", \"T9\"");
        let text = text.replacen(
            "[[circuit]]\nid = \"T4\"\ncriticality = \"siding\"\n",
            "",
            1,
        );
        let layout = check(&text, &|c| c == "T9").unwrap();
        let t9 = layout.circuits.iter().find(|c| c.id == "T9").unwrap();
        assert_eq!(t9.criticality, Criticality::RunningLine);
    }

    #[test]
    fn toml_syntax_errors_carry_their_line() {
        let problems = check("name = \"x\"\n[[section]\n", &nothing_known).unwrap_err();
        assert_eq!(problems[0].line, Some(2), "{problems:?}");
        let huge = "#".repeat(MAX_LAYOUT_BYTES + 1);
        assert!(
            check(&huge, &nothing_known).unwrap_err()[0]
                .message
                .contains("at most")
        );
    }

    #[test]
    fn the_demo_and_generated_layouts_are_valid() {
        let demo =
            check(DEMO_LAYOUT, &nothing_known).unwrap_or_else(|p| panic!("{}", describe(&p)));
        assert!(demo.circuits.len() >= 16, "a demo yard worth looking at");
        assert!(demo.routes.len() >= 4);
        for circuits in [1, 12, 200] {
            let text = generated(circuits, 12, 60.0);
            let layout =
                check(&text, &nothing_known).unwrap_or_else(|p| panic!("{}", describe(&p)));
            assert_eq!(layout.circuits.len(), circuits);
        }
    }
}
