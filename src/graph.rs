//! The target graph: recipes and their dependencies, checked across files.
//!
//! Two kinds of edge: `deps` (build time: compile against and link a library) and
//! `[service] depends_on` (run time: deployment order and readiness). Both must be acyclic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::diag::did_you_mean;
use crate::recipe::{Diagnostic, Kind, Recipe};
use crate::toolchain::ToolchainSpec;

/// The recipes and toolchains of a workspace, as the graph sees them: the workspace builds one
/// (`Workspace::graph`), so this module never needs the workspace itself.
#[derive(Clone, Copy)]
pub struct Graph<'a> {
    /// Sorted by name.
    pub recipes: &'a [Recipe],
    pub toolchains: &'a BTreeMap<String, ToolchainSpec>,
}

impl<'a> Graph<'a> {
    pub fn recipe(&self, name: &str) -> Option<&'a Recipe> {
        self.index(name).map(|i| &self.recipes[i])
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.recipes
            .binary_search_by(|r| r.name.as_str().cmp(name))
            .ok()
    }
}

pub fn validate(ws: &Graph<'_>) -> Result<(), Diagnostic> {
    let names: Vec<&str> = ws.recipes.iter().map(|r| r.name.as_str()).collect();
    for r in ws.recipes {
        if !ws.toolchains.contains_key(&r.toolchain.value) {
            let known: Vec<&str> = ws.toolchains.keys().map(String::as_str).collect();
            return Err(r
                .error(
                    r.toolchain.span.clone().or(Some(0..0)),
                    format!(
                        "unknown toolchain `{}` (no toolchains/{}.toml)",
                        r.toolchain.value, r.toolchain.value
                    ),
                )
                .with_help(did_you_mean(&r.toolchain.value, known)));
        }
        let tc = &ws.toolchains[&r.toolchain.value];
        if tc.language != r.language {
            return Err(r.error(
                r.toolchain.span.clone().or(Some(0..0)),
                format!(
                    "toolchain `{}` is for {}, but this recipe is {}",
                    tc.name,
                    tc.language.as_str(),
                    r.language.as_str()
                ),
            ));
        }
        for d in &r.deps {
            let Some(dep) = ws.recipe(&d.value) else {
                return Err(r
                    .error(d.span.clone(), format!("unknown dependency `{}`", d.value))
                    .with_help(did_you_mean(&d.value, names.iter().copied())));
            };
            if dep.kind != Kind::Library {
                return Err(r.error(d.span.clone(), format!("`{}` is a {}; `deps` names libraries (run-time dependencies go in [service] depends_on)", d.value, dep.kind.as_str())));
            }
            if dep.language != r.language {
                return Err(r.error(
                    d.span.clone(),
                    format!(
                        "`{}` is a {} library and cannot be linked into a {} target",
                        d.value,
                        dep.language.as_str(),
                        r.language.as_str()
                    ),
                ));
            }
        }
        for d in &r.depends_on {
            let services = ws
                .recipes
                .iter()
                .filter(|s| s.kind == Kind::Service)
                .map(|s| s.name.as_str());
            match ws.recipe(&d.value) {
                Some(s) if s.kind == Kind::Service => {}
                Some(s) => {
                    return Err(r.error(
                        d.span.clone(),
                        format!("`{}` is a {}, not a service", d.value, s.kind.as_str()),
                    ))
                }
                None => {
                    return Err(r
                        .error(d.span.clone(), format!("unknown service `{}`", d.value))
                        .with_help(did_you_mean(&d.value, services)))
                }
            }
        }
    }
    check_cycles(ws, |r| &r.deps, "dependency cycle")?;
    check_cycles(ws, |r| &r.depends_on, "run-time dependency cycle")?;
    Ok(())
}

fn check_cycles(
    ws: &Graph<'_>,
    edges: impl Fn(&Recipe) -> &Vec<crate::recipe::reader::Spanned<String>>,
    what: &str,
) -> Result<(), Diagnostic> {
    // Iterative DFS with colours; on a back edge, report the whole path.
    #[derive(Clone, Copy, PartialEq)]
    enum C {
        White,
        Grey,
        Black,
    }
    let n = ws.recipes.len();
    let mut colour = vec![C::White; n];
    for start in 0..n {
        if colour[start] != C::White {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        colour[start] = C::Grey;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let list = edges(&ws.recipes[node]);
            if *next < list.len() {
                let e = &list[*next];
                *next += 1;
                let Some(to) = ws.index(&e.value) else {
                    continue;
                };
                match colour[to] {
                    C::White => {
                        colour[to] = C::Grey;
                        stack.push((to, 0));
                    }
                    C::Grey => {
                        let pos = stack.iter().position(|(n, _)| *n == to).unwrap_or(0);
                        let mut path: Vec<&str> = stack[pos..]
                            .iter()
                            .map(|(n, _)| ws.recipes[*n].name.as_str())
                            .collect();
                        path.push(&ws.recipes[to].name);
                        let r = &ws.recipes[node];
                        return Err(
                            r.error(e.span.clone(), format!("{what}: {}", path.join(" -> ")))
                        );
                    }
                    C::Black => {}
                }
            } else {
                colour[node] = C::Black;
                stack.pop();
            }
        }
    }
    Ok(())
}

/// Recipe indices in build order (dependencies first), restricted to `roots` and what they need.
pub fn build_order(ws: &Graph<'_>, roots: &[usize]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(ws: &Graph<'_>, i: usize, seen: &mut BTreeSet<usize>, out: &mut Vec<usize>) {
        if !seen.insert(i) {
            return;
        }
        for d in &ws.recipes[i].deps {
            if let Some(j) = ws.index(&d.value) {
                visit(ws, j, seen, out);
            }
        }
        out.push(i);
    }
    for &r in roots {
        visit(ws, r, &mut seen, &mut out);
    }
    out
}

/// Transitive library dependencies of a recipe, in link order (a library before what it uses).
pub fn link_closure(ws: &Graph<'_>, i: usize) -> Vec<usize> {
    let mut order = build_order(ws, &[i]);
    order.pop();
    order.reverse();
    order
}

/// Deployment tiers of the services: tier 0 needs nothing at run time, tier n needs tier < n.
pub fn deploy_tiers<'a>(ws: &Graph<'a>) -> Vec<Vec<&'a str>> {
    let services: Vec<&Recipe> = ws
        .recipes
        .iter()
        .filter(|r| r.kind == Kind::Service)
        .collect();
    let mut tier: Vec<Option<usize>> = vec![None; ws.recipes.len()];
    fn depth(ws: &Graph<'_>, i: usize, tier: &mut Vec<Option<usize>>) -> usize {
        if let Some(t) = tier[i] {
            return t;
        }
        let t = ws.recipes[i]
            .depends_on
            .iter()
            .filter_map(|d| ws.index(&d.value))
            .map(|j| depth(ws, j, tier) + 1)
            .max()
            .unwrap_or(0);
        tier[i] = Some(t);
        t
    }
    let mut tiers: Vec<Vec<&str>> = Vec::new();
    for s in services {
        let i = ws.index(&s.name).expect("service is in the workspace");
        let t = depth(ws, i, &mut tier);
        if tiers.len() <= t {
            tiers.resize(t + 1, Vec::new());
        }
        tiers[t].push(&s.name);
    }
    tiers
}

/// The graph in Graphviz DOT: solid edges are build dependencies, dashed ones run-time ones;
/// services are ranked by deployment tier.
pub fn to_dot(ws: &Graph<'_>) -> String {
    let mut s = String::from("digraph kiln {\n  rankdir=LR;\n  node [fontname=\"sans-serif\"];\n");
    for r in ws.recipes {
        let shape = match r.kind {
            Kind::Library => "box",
            Kind::Service => "ellipse",
            Kind::Test => "note",
        };
        let _ = writeln!(
            s,
            "  \"{}\" [shape={shape}, label=\"{}\\n{} {}\"];",
            r.name,
            r.name,
            r.language.as_str(),
            r.kind.as_str()
        );
    }
    for r in ws.recipes {
        for d in &r.deps {
            let _ = writeln!(s, "  \"{}\" -> \"{}\";", r.name, d.value);
        }
        for d in &r.depends_on {
            let _ = writeln!(
                s,
                "  \"{}\" -> \"{}\" [style=dashed, label=\"runs after\"];",
                r.name, d.value
            );
        }
    }
    for (t, names) in deploy_tiers(ws).iter().enumerate() {
        let _ = writeln!(s, "  // deploy tier {t}: {}", names.join(", "));
        let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        let _ = writeln!(s, "  {{ rank=same; {} }}", quoted.join("; "));
    }
    s.push_str("}\n");
    s
}
