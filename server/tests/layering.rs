//! The server's modules depend one way: each folder may use its own modules and those of the
//! folders below it, never above, and no two modules import each other, directly or round a
//! loop. Read from the sources: every `crate::`, `super::` and `self::` path outside comments
//! and test modules, resolved to the file of the module it names.
//!
//! The layers, lowest first (docs/architecture.md shows them):
//! `counters` < `transport` < `media` < `sip` < `app` < `front` < `cli` < `main.rs`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

const LAYERS: &[&str] = &["counters", "transport", "media", "sip", "app", "front", "cli", ""];

/// A module: its path from the crate root (`[]` for main.rs).
type Module = Vec<String>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn modules(dir: &Path, prefix: &Module, out: &mut BTreeMap<Module, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            let mut m = prefix.clone();
            m.push(name);
            modules(&path, &m, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let m = if name == "mod" || (prefix.is_empty() && name == "main") {
                prefix.clone()
            } else {
                let mut m = prefix.clone();
                m.push(name);
                m
            };
            out.insert(m, path);
        }
    }
}

/// The source without comments and without the test module at its end.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod ").next().unwrap();
    text.lines().map(|l| if l.trim_start().starts_with("//") { "" } else { l.split(" // ").next().unwrap() }).collect::<Vec<_>>().join("\n")
}

/// The paths a use tree starting at `s` names, each as its segments (`a::{b, c::d}` → `a::b`,
/// `a::c::d`).
fn use_tree(s: &str) -> Vec<Vec<String>> {
    let s = s.trim_start();
    if let Some(inner) = s.strip_prefix('{') {
        // Split the group at top-level commas.
        let (mut depth, mut start, mut out) = (0, 0, Vec::new());
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    out.extend(use_tree(&inner[start..i]));
                    return out;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.extend(use_tree(&inner[start..i]));
                    start = i + 1;
                }
                _ => {}
            }
        }
        return out;
    }
    let ident: String = s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    if ident.is_empty() {
        return Vec::new();
    }
    let rest = &s[ident.len()..];
    match rest.strip_prefix("::") {
        Some(rest) => use_tree(rest)
            .into_iter()
            .map(|mut p| {
                p.insert(0, ident.clone());
                p
            })
            .collect(),
        None => vec![vec![ident]],
    }
}

/// The module a path from `base` names: the longest prefix that is a module file.
fn resolve(base: &Module, path: &[String], known: &BTreeMap<Module, PathBuf>) -> Module {
    let mut m = base.clone();
    for seg in path {
        let mut next = m.clone();
        next.push(seg.clone());
        if !known.contains_key(&next) {
            break;
        }
        m = next;
    }
    m
}

fn references(module: &Module, file: &Path, known: &BTreeMap<Module, PathBuf>) -> BTreeSet<Module> {
    let text = code(&std::fs::read_to_string(file).unwrap());
    let mut out = BTreeSet::new();
    let up = module[..module.len().saturating_sub(1)].to_vec();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", up), ("self::", module.clone())] {
        for (i, _) in text.match_indices(prefix) {
            // Not the tail of a longer path (`mcu_sfu::…` does not end in `crate::`).
            if text[..i].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            for path in use_tree(&text[i + prefix.len()..]) {
                let target = resolve(&base, &path, known);
                if target != *module && !module.starts_with(&target) {
                    out.insert(target);
                }
            }
        }
    }
    out
}

fn layer(m: &Module) -> usize {
    let top = m.first().map(String::as_str).unwrap_or("");
    LAYERS.iter().position(|l| *l == top).unwrap_or_else(|| panic!("module {m:?} is in no layer: add its folder to LAYERS and docs/architecture.md"))
}

fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let mut known = BTreeMap::new();
    modules(&src(), &Vec::new(), &mut known);
    known.iter().map(|(m, f)| (m.clone(), references(m, f, &known))).collect()
}

#[test]
fn the_parser_reads_nested_use_trees() {
    let paths = use_tree("{a::{b, c::d}, e};");
    assert_eq!(paths, vec![vec!["a", "b"], vec!["a", "c", "d"], vec!["e"]]);
    assert_eq!(use_tree("media::room::Room;"), vec![vec!["media", "room", "Room"]]);
}

#[test]
fn modules_use_only_their_layer_and_those_below() {
    let g = graph();
    assert!(g.len() > 20, "the server's modules were not found: {:?}", g.keys());
    let mut wrong = Vec::new();
    for (m, refs) in &g {
        for r in refs {
            if layer(r) > layer(m) {
                wrong.push(format!("{} uses {} (a layer above)", m.join("::"), r.join("::")));
            }
        }
    }
    assert!(wrong.is_empty(), "upward dependencies:\n{}", wrong.join("\n"));
}

#[test]
fn no_module_imports_another_round_a_loop() {
    let g = graph();
    // Depth-first search for a back edge.
    fn visit(m: &Module, g: &BTreeMap<Module, BTreeSet<Module>>, state: &mut BTreeMap<Module, u8>, stack: &mut Vec<Module>) -> Option<Vec<Module>> {
        state.insert(m.clone(), 1);
        stack.push(m.clone());
        for r in g.get(m).into_iter().flatten() {
            match state.get(r).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == r).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(r.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(r, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in g.keys() {
        if state.get(m).copied().unwrap_or(0) == 0
            && let Some(cycle) = visit(m, &g, &mut state, &mut Vec::new())
        {
            panic!("import cycle: {}", cycle.iter().map(|m| if m.is_empty() { "main".to_string() } else { m.join("::") }).collect::<Vec<_>>().join(" → "));
        }
    }
}
