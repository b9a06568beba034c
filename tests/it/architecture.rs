//! Dependencies between the top-level modules of `src/` point one way. This reads every
//! `crate::…` path in the sources and fails on any cycle, naming it, so a newcomer can read a
//! domain without loading the whole app.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level module a file of `src/` belongs to (`src/chat/web.rs` → `chat`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Top-level modules named after `crate::` in `text`: `crate::a::b`, `crate::{a, b::c}`.
fn referenced_modules(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (index, _) in text.match_indices("crate::") {
        let rest = &text[index + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start && depth == 0 => {
                        found.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found.retain(|m| !m.is_empty() && m != "self");
    found
}

fn dependency_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let edges = graph.entry(module.clone()).or_default();
        for target in referenced_modules(&text) {
            if target != module {
                edges.insert(target);
            }
        }
    }
    graph
}

/// A path from `from` back to `to`, if there is one.
fn path_between(
    graph: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if from == to {
        return Some(vec![to.to_string()]);
    }
    if !seen.insert(from.to_string()) {
        return None;
    }
    for next in graph.get(from).into_iter().flatten() {
        if let Some(mut path) = path_between(graph, next, to, seen) {
            path.insert(0, from.to_string());
            return Some(path);
        }
    }
    None
}

/// The layers of `src/`, bottom first. A module may use modules of lower layers only; a new
/// top-level module must be placed here (docs/ARCHITECTURE.md explains the order).
const LAYERS: &[&[&str]] = &[
    &["error", "metrics", "render", "urls"],
    &["db", "domain", "llm"],
    &["conversations", "settings"],
    &["auth", "generation"],
    &["state"],
    &["session"],
    &["site"],
    &["api_keys"],
    &["accounts", "files", "prompts"],
    &["agents"],
    &["projects"],
    &["chat"],
    // The OpenAI-compatible API: a translation over chat's pipeline.
    &["compat"],
    &["openapi"],
    &["startup"],
    &["backup"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn every_module_uses_only_lower_layers() {
    let mut wrong = Vec::new();
    for (module, targets) in dependency_graph() {
        let Some(layer) = layer_of(&module) else {
            wrong.push(format!("{module} is not placed in LAYERS"));
            continue;
        };
        for target in targets {
            match layer_of(&target) {
                Some(lower) if lower < layer => {}
                _ => wrong.push(format!("{module} uses {target}")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies that point up or sideways:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_parser_sees_single_and_grouped_paths() {
    let found = referenced_modules(
        "use crate::db::PgPool;\nuse crate::{accounts, chat::model::{A, B}, self};\nlet x = crate::metrics::handle();",
    );
    let expected: BTreeSet<String> = ["accounts", "chat", "db", "metrics"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn top_level_modules_have_no_dependency_cycle() {
    let graph = dependency_graph();
    assert!(graph.contains_key("chat") && graph.contains_key("startup"));
    let mut cycles = Vec::new();
    for (module, targets) in &graph {
        for target in targets {
            if let Some(back) = path_between(&graph, target, module, &mut BTreeSet::new()) {
                cycles.push(format!("{module} -> {}", back.join(" -> ")));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "dependency cycles among the modules of src/ (each must point one way):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn services_and_models_take_what_they_use_not_the_whole_app() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let offenders: Vec<String> = rust_files(&src)
        .into_iter()
        .filter(|file| {
            let name = file.file_name().unwrap().to_str().unwrap();
            matches!(name, "service.rs" | "model.rs")
        })
        .filter(|file| std::fs::read_to_string(file).unwrap().contains("AppState"))
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "these take the whole AppState instead of the pool, settings or generator they use: {offenders:?}"
    );
}
