//! What a build is over: the targets named on the command line, the toolchains they use and the
//! action plan that builds them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::DriverError;
use crate::build::plan::{self, Context, Plan};
use crate::diag::did_you_mean;
use crate::exec::Runner;
use crate::graph;
use crate::recipe::{Kind, Recipe};
use crate::toolchain::hermetic::{self, PinPolicy};
use crate::toolchain::{SystemFlags, Toolchain, ToolchainError, ToolchainSource};
use crate::workspace::Workspace;

/// Resolves target names (all when empty) to recipe indices, with suggestions for typos.
pub fn select(
    ws: &Workspace,
    names: &[String],
    filter: impl Fn(&Recipe) -> bool,
) -> Result<Vec<usize>, DriverError> {
    if names.is_empty() {
        return Ok((0..ws.recipes.len())
            .filter(|&i| filter(&ws.recipes[i]))
            .collect());
    }
    names
        .iter()
        .map(|n| {
            ws.index(n).ok_or_else(|| {
                let help = did_you_mean(n, ws.recipes.iter().map(|r| r.name.as_str()))
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                DriverError::Usage(format!("no target named `{n}`{help}"))
            })
        })
        .collect()
}

/// The names of the targets `names` select that must all be of `kind` (every one of that kind
/// when `names` is empty), for commands that only make sense for services or tests.
pub fn select_kind(
    ws: &Workspace,
    names: &[String],
    kind: Kind,
) -> Result<Vec<String>, DriverError> {
    let selected = select(ws, names, |r| r.kind == kind)?;
    selected
        .into_iter()
        .map(|i| {
            let r = &ws.recipes[i];
            if r.kind == kind {
                Ok(r.name.clone())
            } else {
                Err(DriverError::Usage(format!(
                    "`{}` is a {}, not a {}",
                    r.name,
                    r.kind.as_str(),
                    kind.as_str()
                )))
            }
        })
        .collect()
}

/// The toolchains the recipes `used` name, probed and fingerprinted.
pub fn resolve_toolchains(
    runner: &dyn Runner,
    ws: &Workspace,
    used: &[usize],
    cache_dir: &Path,
    pins: PinPolicy,
) -> Result<BTreeMap<String, Toolchain>, DriverError> {
    resolve_toolchains_with(runner, ws, used, cache_dir, pins, None)
}

/// [`resolve_toolchains`], with the .debs of a root to materialise asked of `cas` (the
/// remote cache) before the mirrors.
pub fn resolve_toolchains_with(
    runner: &dyn Runner,
    ws: &Workspace,
    used: &[usize],
    cache_dir: &Path,
    pins: PinPolicy,
    cas: Option<&dyn crate::debian::DebSource>,
) -> Result<BTreeMap<String, Toolchain>, DriverError> {
    let names: BTreeSet<&String> = used
        .iter()
        .map(|&i| &ws.recipes[i].toolchain.value)
        .collect();
    // Pins first and one at a time: a toolchain met for the first time writes kiln.lock.
    let mut pinned = BTreeMap::new();
    for name in &names {
        let spec = &ws.toolchains[*name];
        if let ToolchainSource::Debian { .. } = spec.source {
            pinned.insert(
                name.to_string(),
                hermetic::pins(runner, &ws.root, spec, cache_dir, pins)?,
            );
        }
    }
    let pinned = std::sync::Mutex::new(pinned);
    let pinned = &pinned;
    // Fingerprinting hashes each compiler (tens of MB) the first time: do the toolchains at once.
    let resolved: Vec<(String, Result<Toolchain, ToolchainError>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| {
                let spec = &ws.toolchains[*name];
                (
                    name.to_string(),
                    scope.spawn(move || {
                        // A statement of its own, so the guard is dropped before resolving.
                        let pins = pinned.lock().unwrap().remove(*name);
                        match pins {
                            None => Toolchain::resolve(runner, spec, cache_dir),
                            Some(p) => hermetic::resolve(runner, spec, p, cache_dir, &ws.root, cas),
                        }
                    }),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(n, h)| (n, h.join().expect("toolchain probe panicked")))
            .collect()
    });
    let mut out = BTreeMap::new();
    for (name, tc) in resolved {
        out.insert(name, tc?);
    }
    Ok(out)
}

/// A build ready to run: the targets in build order, their toolchains and the action plan.
pub struct Prepared {
    pub order: Vec<usize>,
    pub toolchains: BTreeMap<String, Toolchain>,
    pub plan: Plan,
}

/// A target of `roots` (or one they need) that the view's platform has no toolchain for is a
/// usage error naming the platform, the target and the toolchain to define.
pub fn check_platform_toolchains(ws: &Workspace, roots: &[usize]) -> Result<(), DriverError> {
    // The targets named first, so the error is about what was asked for when it can be.
    let order = graph::build_order(&ws.graph(), roots);
    for &i in roots.iter().chain(&order) {
        if let Some(e) = ws.no_toolchain.get(&ws.recipes[i].name) {
            return Err(DriverError::Usage(e.clone()));
        }
    }
    Ok(())
}

pub fn prepare(
    runner: &dyn Runner,
    ws: &Workspace,
    roots: &[usize],
    cache_dir: &Path,
    cas: Option<&dyn crate::debian::DebSource>,
) -> Result<Prepared, DriverError> {
    check_platform_toolchains(ws, roots)?;
    let order = graph::build_order(&ws.graph(), roots);
    let toolchains =
        resolve_toolchains_with(runner, ws, &order, cache_dir, PinPolicy::Update, cas)?;
    let mut system_flags: BTreeMap<usize, SystemFlags> = BTreeMap::new();
    for &i in &order {
        let libs = plan::inherited_system_libs(ws, i);
        let tc = &toolchains[&ws.recipes[i].toolchain.value];
        system_flags.insert(i, tc.system_lib_flags(runner, &libs, cache_dir)?);
    }
    let cx = Context {
        ws,
        toolchains: &toolchains,
        system_flags: &system_flags,
    };
    let plan = plan::plan(&cx, &order);
    Ok(Prepared {
        order,
        toolchains,
        plan,
    })
}
