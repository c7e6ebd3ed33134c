//! The house rule "no module imports a module that imports it", checked over src/: every
//! `crate::…` and `super::…` path outside comments is an import edge from the file's module to
//! the longest module the path names; a pair of modules with edges both ways (other than a parent
//! and its own child) fails, naming both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            let mut next = prefix.to_vec();
            next.push(stem);
            modules(&p, &next, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let mut name = prefix.to_vec();
            if stem != "mod" && !(prefix.is_empty() && (stem == "lib" || stem == "main")) {
                name.push(stem);
            }
            if !name.is_empty() {
                out.insert(name.join("::"), std::fs::read_to_string(&p).unwrap());
            }
        }
    }
}

/// The text with `//` comments removed (doc comments mention modules without importing them).
fn code(src: &str) -> String {
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Module paths after each occurrence of `marker` (e.g. `crate::`), as `a::b::c`.
fn paths_after(src: &str, marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find(marker) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + marker.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        found.push(rest[..end].trim_end_matches(':').to_string());
    }
    found
}

fn longest_module(mods: &BTreeMap<String, String>, path: &str) -> Option<String> {
    let segs: Vec<&str> = path.split("::").collect();
    (1..=segs.len())
        .rev()
        .map(|n| segs[..n].join("::"))
        .find(|m| mods.contains_key(m))
}

#[test]
fn no_module_imports_a_module_that_imports_it() {
    let mut mods = BTreeMap::new();
    modules(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut mods,
    );
    assert!(
        mods.len() > 50,
        "expected kiln's modules, found {}",
        mods.len()
    );
    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (m, src) in &mods {
        let src = code(src);
        let parent = m.rsplit_once("::").map(|(p, _)| p.to_string());
        let mut targets: Vec<String> = paths_after(&src, "crate::");
        for p in paths_after(&src, "super::") {
            targets.push(match &parent {
                Some(parent) => format!("{parent}::{p}"),
                None => p,
            });
        }
        for t in targets {
            if let Some(t) = longest_module(&mods, &t) {
                if &t != m {
                    edges.entry(m).or_default().insert(t);
                }
            }
        }
    }
    let nested =
        |a: &str, b: &str| a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"));
    let mut cycles = Vec::new();
    for (a, outs) in &edges {
        for b in outs {
            let back = edges.get(b.as_str()).is_some_and(|o| o.contains(*a));
            if back && *a < b.as_str() && !nested(a, b) {
                cycles.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "modules importing each other:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_check_sees_an_import_cycle() {
    // The parsing the rule relies on, on a known two-way pair.
    let a = code("use crate::b::Thing; // crate::c is only mentioned\n");
    assert_eq!(paths_after(&a, "crate::"), ["b::Thing"]);
    let mut mods = BTreeMap::new();
    mods.insert("b".to_string(), String::new());
    assert_eq!(longest_module(&mods, "b::Thing").as_deref(), Some("b"));
}
