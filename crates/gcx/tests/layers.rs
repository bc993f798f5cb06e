//! The library's top-level modules form no import cycle (ARCHITECTURE.md, "Invariants").
//!
//! Reads `crates/gcx/src` as text: every `crate::<module>` path outside comments and
//! outside a file's trailing `#[cfg(test)]` block is an edge from the module the file
//! sits in to that module. A cycle among those edges fails the test, naming a place of
//! each edge on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `module -> (imported module -> first places it is imported)`.
type Graph = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`assist/stream.rs` -> `assist`,
/// `retry.rs` -> `retry`); `None` for the crate roots.
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The `crate::<name>` paths of one source text, with their line numbers.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let code = text.split("\n#[cfg(test)]").next().unwrap_or(text);
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if !name.is_empty() {
                found.push((n + 1, name));
            }
        }
    }
    found
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap().to_path_buf();
        let Some(from) = module_of(&relative) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let edges = graph.entry(from.clone()).or_default();
        for (line, to) in crate_paths(&text) {
            if to != from {
                let places = edges.entry(to).or_default();
                if places.len() < 3 {
                    places.push(format!("{}:{line}", relative.display()));
                }
            }
        }
    }
    graph
}

/// Every cycle's modules, found by depth-first search from each module in name order
/// (each cycle reported once, from its smallest name).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    fn walk(
        graph: &Graph,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<Vec<String>>,
    ) {
        for next in graph.get(at).into_iter().flat_map(|e| e.keys()) {
            if next == start {
                out.push(path.clone());
            } else if next.as_str() > start && seen.insert(next.clone()) {
                path.push(next.clone());
                walk(graph, start, next, path, seen, out);
                path.pop();
            }
        }
    }
    let mut out = Vec::new();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        walk(
            graph,
            start,
            start,
            &mut vec![start.clone()],
            &mut seen,
            &mut out,
        );
    }
    out
}

#[test]
fn the_top_level_modules_form_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    assert!(graph.len() > 10, "read too few modules: {:?}", graph.keys());
    let found = cycles(&graph);
    let described: Vec<String> = found
        .iter()
        .map(|cycle| {
            let mut text = cycle.join(" -> ") + " -> " + &cycle[0];
            for (i, from) in cycle.iter().enumerate() {
                let to = &cycle[(i + 1) % cycle.len()];
                text += &format!("\n    {from} -> {to}: {:?}", graph[from][to]);
            }
            text
        })
        .collect();
    assert!(
        found.is_empty(),
        "import cycles between top-level modules:\n  {}",
        described.join("\n  ")
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_only_that() {
    let mut graph = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        graph
            .entry(from.into())
            .or_default()
            .insert(to.into(), vec![]);
    }
    assert_eq!(cycles(&graph), vec![vec!["a", "b", "c"]]);
    graph.get_mut("c").unwrap().remove("a");
    assert_eq!(cycles(&graph), Vec::<Vec<String>>::new());
}

#[test]
fn paths_in_comments_and_test_blocks_are_not_imports() {
    let text = "use crate::store::Store;\n// crate::cli is named here\nfn f() { crate::retry::x(); }\n#[cfg(test)]\nmod tests { use crate::cli; }\n";
    assert_eq!(
        crate_paths(text),
        vec![(1, "store".to_string()), (3, "retry".to_string())]
    );
}
