//! Checks of the codebase's shape that are cheaper as tests than as review:
//! the server's modules import along the data flow, without circles.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The top-level modules of `server/src` and the top-level modules each
/// one names through `crate::...`, outside comments.
pub fn server_module_graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let src = root.join("server/src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let Ok(relative) = path.strip_prefix(&src) else {
                continue;
            };
            let first = relative
                .components()
                .next()
                .map(|c| {
                    c.as_os_str()
                        .to_string_lossy()
                        .trim_end_matches(".rs")
                        .to_owned()
                })
                .unwrap_or_default();
            // The binary's own modules, and the crate root that wires
            // everything, are not part of the library's layering.
            if matches!(first.as_str(), "main" | "cli" | "lib") {
                continue;
            }
            let text = fs::read_to_string(&path).unwrap_or_default();
            let targets = graph.entry(first.clone()).or_default();
            for target in crate_references(&strip_comments(&text)) {
                if target != first {
                    targets.insert(target);
                }
            }
        }
    }
    graph
}

/// The first path segment after every `crate::`, expanding `crate::{a, b}`.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            found.insert(first_segment(&item));
        } else {
            found.insert(first_segment(rest));
        }
    }
    found.remove("");
    found
}

fn first_segment(path: &str) -> String {
    path.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A circle in the layering, if there is one, as the modules along it.
/// The one circle axum apps have is allowed: the router mounts each
/// area's handlers, and the handlers name its state and error types.
pub fn layering_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let mut graph = graph.clone();
    for (module, targets) in graph.iter_mut() {
        if module != "http" {
            targets.remove("http");
        }
    }
    find_cycle(&graph)
}

/// A circle in `graph`, if there is one, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Modules below every stage of the reading path: they may import each
    /// other and nothing else of the crate's.
    const SHARED: &[&str] = &["metrics", "reading", "socket_table", "time"];

    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        server_module_graph(&crate::repo_root())
    }

    #[test]
    fn server_modules_import_along_the_data_flow_without_circles() {
        let graph = graph();
        assert_eq!(layering_cycle(&graph), None, "module graph: {graph:#?}");
    }

    #[test]
    fn shared_modules_import_only_each_other() {
        for (module, targets) in graph() {
            if SHARED.contains(&module.as_str()) {
                let outside: Vec<_> = targets
                    .iter()
                    .filter(|t| !SHARED.contains(&t.as_str()))
                    .collect();
                assert!(outside.is_empty(), "{module} imports {outside:?}");
            }
        }
    }

    /// The router may name ingest: it mounts ingest's admin routes (gateway
    /// credentials), the same allowed circle `layering_cycle` describes.
    /// sqlx keys applied migrations by the number before the name: two
    /// files with one number (branches merged the same day) would stop
    /// every start with a duplicate key.
    #[test]
    fn migration_versions_are_unique() {
        let mut seen = BTreeMap::<String, String>::new();
        let dir = crate::repo_root().join("migrations");
        for entry in std::fs::read_dir(&dir).expect("the migrations directory") {
            let name = entry.expect("a directory entry").file_name();
            let name = name.to_string_lossy().into_owned();
            let Some((version, _)) = name.split_once('_') else {
                continue;
            };
            if let Some(other) = seen.insert(version.to_owned(), name.clone()) {
                panic!("{name} and {other} share the version {version}: renumber one");
            }
        }
        assert!(seen.len() > 10, "read {}", dir.display());
    }

    #[test]
    fn nothing_downstream_imports_ingest() {
        for (module, targets) in graph() {
            if !matches!(module.as_str(), "ingest" | "sim" | "http") {
                assert!(!targets.contains("ingest"), "{module} imports ingest");
            }
        }
    }

    #[test]
    fn finds_references_and_circles() {
        let refs = crate_references("use crate::a::b;\nuse crate::{c::{d, e}, f};\nx(crate::g)");
        assert_eq!(refs.into_iter().collect::<Vec<_>>(), ["a", "c", "f", "g"]);
        let graph: BTreeMap<String, BTreeSet<String>> = [
            ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
            ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
        ]
        .into();
        assert_eq!(
            find_cycle(&graph),
            Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()])
        );
    }
}
