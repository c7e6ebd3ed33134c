//! From recipes to actions: one compile per C++ translation unit or Ada unit, then archive,
//! shared-library link, or bind + link.
//!
//! Action command lines are templates: `$OUT/` stands for the action's private staging
//! directory and `$WS` for the workspace's absolute path. Keys are computed over the templates,
//! so the same action in two clones of a repository has the same key.
//!
//! Each language family plans its own targets (`cxx`, `ada`); the compile of one source file has
//! the same shape in both and is built by [`push_compile`] alone, so ids, inputs and outputs of
//! compiles cannot drift apart between families.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::graph;
use crate::recipe::{Kind, Language, Recipe, SystemLib};
use crate::toolchain::{SystemFlags, Toolchain};
use crate::workspace::{OutDir, Workspace};

mod ada;
mod cxx;
#[cfg(test)]
mod tests;

/// Relative path from a staging directory (`out/.kiln/tmp/<n>`) back to the workspace root.
pub const FROM_STAGING: &str = "../../../../";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Discover {
    None,
    /// A depfile in the staging directory.
    Depfile(String),
    /// An ALI file in the staging directory; its `D` lines are resolved against these dirs.
    Ali(String, Vec<PathBuf>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionOutput {
    /// File name in the staging directory.
    pub name: String,
    /// Final workspace-relative path.
    pub dest: PathBuf,
    pub executable: bool,
}

#[derive(Clone, Debug)]
pub struct Action {
    /// Stable identity, e.g. `widget-core compile fixtures/services/widget-core/src/main.cpp`.
    pub id: String,
    pub target: usize,
    pub kind: &'static str,
    pub toolchain: String,
    pub program: String,
    pub argv: Vec<String>,
    /// Run in the staging directory instead of the workspace root (gnatbind).
    pub in_staging: bool,
    /// Workspace-relative files whose contents the action reads (sources and other outputs).
    pub inputs: Vec<PathBuf>,
    /// Indices of the actions producing some of `inputs`.
    pub deps: Vec<usize>,
    pub outputs: Vec<ActionOutput>,
    pub discover: Discover,
    /// Ada link: objects come from this binder file, known only after binding.
    pub binder_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Default)]
pub struct TargetPlan {
    /// Indices into `Plan::actions` of every action of the target.
    pub actions: Vec<usize>,
    /// The final product: a binary, an archive or a shared library.
    pub product: Option<PathBuf>,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// By recipe index; only targets in the build are present.
    pub targets: BTreeMap<usize, TargetPlan>,
}

/// A target's object directory, workspace-relative.
pub fn obj_dir(r: &Recipe) -> PathBuf {
    OutDir::relative_for(r.platform.as_ref()).objects(&r.name)
}

/// A target's product, workspace-relative.
pub fn product_path(r: &Recipe) -> PathBuf {
    let out = OutDir::relative_for(r.platform.as_ref());
    match (r.kind, r.shared) {
        (Kind::Library, false) => out.libraries().join(format!("lib{}.a", r.output)),
        (Kind::Library, true) => out.libraries().join(format!("lib{}.so", r.output)),
        (Kind::Service, _) => out.binaries().join(&r.output),
        (Kind::Test, _) => out.tests().join(&r.output),
    }
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The product's file name, which is also its name in the staging directory.
fn file_name(product: &Path) -> String {
    product
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every compile maps the workspace's absolute path to `.` in debug info and `__FILE__`, so
/// objects do not depend on where the workspace is checked out.
const PREFIX_MAP: &str = "-ffile-prefix-map=$WS=.";

/// Everything resolved about the machine that planning needs.
pub struct Context<'a> {
    pub ws: &'a Workspace,
    pub toolchains: &'a BTreeMap<String, Toolchain>,
    /// System-library flags per recipe index (own plus inherited from library deps).
    pub system_flags: &'a BTreeMap<usize, SystemFlags>,
}

/// System libraries of a recipe and of every library it links, in a stable order.
pub fn inherited_system_libs(ws: &Workspace, i: usize) -> Vec<SystemLib> {
    let mut libs = ws.recipes[i].system_libs.clone();
    for j in graph::link_closure(&ws.graph(), i) {
        for l in &ws.recipes[j].system_libs {
            if !libs.contains(l) {
                libs.push(l.clone());
            }
        }
    }
    libs
}

pub fn plan(cx: &Context, order: &[usize]) -> Plan {
    let mut p = Plan::default();
    for &i in order {
        match cx.ws.recipes[i].language {
            Language::Cxx => cxx::plan(Target::new(cx, i), &mut p),
            Language::Ada => ada::plan(Target::new(cx, i), &mut p),
        }
    }
    p
}

/// What planning one target starts from, whichever its language.
struct Target<'a> {
    /// The recipe's index.
    i: usize,
    ws: &'a Workspace,
    r: &'a Recipe,
    tc: &'a Toolchain,
    sys: &'a SystemFlags,
    /// The libraries it links ([`graph::link_closure`]).
    closure: Vec<usize>,
}

impl<'a> Target<'a> {
    fn new(cx: &Context<'a>, i: usize) -> Target<'a> {
        let r = &cx.ws.recipes[i];
        Target {
            i,
            ws: cx.ws,
            r,
            tc: &cx.toolchains[&r.toolchain.value],
            sys: &cx.system_flags[&i],
            closure: graph::link_closure(&cx.ws.graph(), i),
        }
    }
}

fn push(p: &mut Plan, target: usize, a: Action) -> usize {
    let idx = p.actions.len();
    p.actions.push(a);
    p.targets.entry(target).or_default().actions.push(idx);
    idx
}

/// What differs between the families' compiles of one source file; [`push_compile`] adds the
/// rest.
struct Compile<'a> {
    kind: &'static str,
    src: &'a Path,
    argv: Vec<String>,
    /// What the compiler writes, as (name in the staging directory, workspace-relative path).
    outputs: Vec<(String, PathBuf)>,
    discover: Discover,
}

/// Adds the compile of `c.src`, a source of recipe `i`: identity `<recipe> compile <source>`, the
/// toolchain's compiler run in the workspace root, the source as the only declared input (what
/// it includes or withs is discovered after the run), no dependency on other actions (a
/// compile reads sources only), and outputs that are never executable.
fn push_compile(p: &mut Plan, i: usize, r: &Recipe, tc: &Toolchain, c: Compile) -> usize {
    let outputs = c
        .outputs
        .into_iter()
        .map(|(name, dest)| ActionOutput {
            name,
            dest,
            executable: false,
        })
        .collect();
    push(
        p,
        i,
        Action {
            id: format!("{} compile {}", r.name, s(c.src)),
            target: i,
            kind: c.kind,
            toolchain: tc.spec.name.clone(),
            program: "compiler".into(),
            argv: c.argv,
            in_staging: false,
            inputs: vec![c.src.to_path_buf()],
            deps: Vec::new(),
            outputs,
            discover: c.discover,
            binder_file: None,
        },
    )
}
