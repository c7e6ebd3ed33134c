//! From recipes to actions: one compile per C++ translation unit or Ada unit, then archive,
//! shared-library link, or bind + link.
//!
//! Action command lines are templates: `$OUT/` stands for the action's private staging
//! directory and `$WS` for the workspace's absolute path. Keys are computed over the templates,
//! so the same action in two clones of a repository has the same key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::graph;
use crate::recipe::{Kind, Language, Recipe, SystemLib};
use crate::toolchain::{SystemFlags, Toolchain};
use crate::workspace::Workspace;

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

pub fn obj_dir(r: &Recipe) -> PathBuf {
    Path::new("out/obj").join(&r.name)
}

pub fn product_path(r: &Recipe) -> PathBuf {
    match (r.kind, r.shared) {
        (Kind::Library, false) => Path::new("out/lib").join(format!("lib{}.a", r.output)),
        (Kind::Library, true) => Path::new("out/lib").join(format!("lib{}.so", r.output)),
        (Kind::Service, _) => Path::new("out/bin").join(&r.output),
        (Kind::Test, _) => Path::new("out/tests").join(&r.output),
    }
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

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
            Language::Cxx => plan_cxx(cx, &mut p, i),
            Language::Ada => plan_ada(cx, &mut p, i),
        }
    }
    p
}

fn push(p: &mut Plan, target: usize, a: Action) -> usize {
    let idx = p.actions.len();
    p.actions.push(a);
    p.targets.entry(target).or_default().actions.push(idx);
    idx
}

fn plan_cxx(cx: &Context, p: &mut Plan, i: usize) {
    let ws = cx.ws;
    let r = &ws.recipes[i];
    let tc = &cx.toolchains[&r.toolchain.value];
    let sys = &cx.system_flags[&i];
    let closure = graph::link_closure(&ws.graph(), i);

    let mut includes: Vec<String> = r
        .include_dirs
        .iter()
        .map(|d| format!("-I{}", s(d)))
        .collect();
    for &j in &closure {
        for d in &ws.recipes[j].include_dirs {
            let f = format!("-I{}", s(d));
            if !includes.contains(&f) {
                includes.push(f);
            }
        }
    }

    let mut objects = Vec::new();
    let mut compile_actions = Vec::new();
    for src in &r.sources {
        let obj = obj_dir(r).join(format!("{}.o", s(src)));
        let mut argv: Vec<String> = tc.spec.cflags.clone();
        argv.extend(sys.cflags.iter().cloned());
        argv.push("-ffile-prefix-map=$WS=.".into());
        argv.push(format!("-frandom-seed={}", s(&obj)));
        argv.extend(includes.iter().cloned());
        argv.extend(r.defines.iter().map(|d| format!("-D{d}")));
        argv.extend(r.cflags.iter().cloned());
        argv.extend(["-MD", "-MF", "$OUT/unit.d", "-MT"].map(String::from));
        argv.push(s(&obj));
        argv.extend(["-c".into(), s(src), "-o".into(), "$OUT/unit.o".into()]);
        let a = push(
            p,
            i,
            Action {
                id: format!("{} compile {}", r.name, s(src)),
                target: i,
                kind: "c++-compile",
                toolchain: tc.spec.name.clone(),
                program: "compiler".into(),
                argv,
                in_staging: false,
                inputs: vec![src.clone()],
                deps: Vec::new(),
                outputs: vec![ActionOutput {
                    name: "unit.o".into(),
                    dest: obj.clone(),
                    executable: false,
                }],
                discover: Discover::Depfile("unit.d".into()),
                binder_file: None,
            },
        );
        objects.push(obj);
        compile_actions.push(a);
    }

    let product = product_path(r);
    let product_name = product
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (kind, program, mut argv, mut inputs, mut deps) = match (r.kind, r.shared) {
        (Kind::Library, false) => {
            let mut argv = vec!["rcsD".to_string(), format!("$OUT/{product_name}")];
            argv.extend(objects.iter().map(|o| s(o)));
            (
                "c++-archive",
                "archiver",
                argv,
                objects.clone(),
                compile_actions.clone(),
            )
        }
        _ => {
            let mut argv = Vec::new();
            if r.shared {
                argv.extend(["-shared".to_string(), format!("-Wl,-soname,{product_name}")]);
            }
            argv.extend(objects.iter().map(|o| s(o)));
            (
                "c++-link",
                "compiler",
                argv,
                objects.clone(),
                compile_actions.clone(),
            )
        }
    };
    if kind == "c++-link" {
        let mut any_shared = false;
        for &j in &closure {
            let dep = &ws.recipes[j];
            let lib = product_path(dep);
            argv.push(s(&lib));
            inputs.push(lib);
            any_shared |= dep.shared;
            if let Some(tp) = p.targets.get(&j) {
                if let Some(&last) = tp.actions.last() {
                    deps.push(last);
                }
            }
        }
        argv.extend(sys.libs.iter().cloned());
        argv.extend(tc.spec.ldflags.iter().cloned());
        argv.extend(r.ldflags.iter().cloned());
        if any_shared && !r.shared {
            argv.push("-Wl,-rpath,$ORIGIN/../lib".into());
        }
        argv.extend(["-o".into(), format!("$OUT/{product_name}")]);
    }
    let link_kind = if r.kind == Kind::Library && !r.shared {
        "archive"
    } else {
        "link"
    };
    let a = push(
        p,
        i,
        Action {
            id: format!("{} {link_kind}", r.name),
            target: i,
            kind,
            toolchain: tc.spec.name.clone(),
            program: program.into(),
            argv,
            in_staging: false,
            inputs,
            deps,
            outputs: vec![ActionOutput {
                name: product_name,
                dest: product.clone(),
                executable: r.kind != Kind::Library || r.shared,
            }],
            discover: Discover::None,
            binder_file: None,
        },
    );
    let _ = a;
    p.targets.entry(i).or_default().product = Some(product);
}

fn plan_ada(cx: &Context, p: &mut Plan, i: usize) {
    let ws = cx.ws;
    let r = &ws.recipes[i];
    let tc = &cx.toolchains[&r.toolchain.value];
    let sys = &cx.system_flags[&i];
    let closure = graph::link_closure(&ws.graph(), i);

    let mut search: Vec<PathBuf> = r.source_dirs.clone();
    for src in &r.sources {
        if let Some(parent) = src.parent() {
            if !search.contains(&parent.to_path_buf()) {
                search.push(parent.to_path_buf());
            }
        }
    }
    for &j in &closure {
        for d in &ws.recipes[j].source_dirs {
            if !search.contains(d) {
                search.push(d.clone());
            }
        }
    }
    let mut discover_dirs = search.clone();
    if let Some(inc) = &tc.ada_include {
        discover_dirs.push(inc.clone());
    }

    let od = obj_dir(r);
    let mut objects = Vec::new();
    let mut alis = Vec::new();
    let mut compile_actions = Vec::new();
    // `sources` holds compilation units only (`crate::ada`): subunits reach GNAT through their
    // parent, which finds them on the search path and lists them in its ALI `D` lines, so they
    // are discovered inputs of the parent's compile rather than actions of their own.
    for src in &r.sources {
        let unit = src
            .file_stem()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut argv = vec!["-c".to_string()];
        argv.extend(tc.spec.cflags.iter().cloned());
        argv.extend(r.cflags.iter().cloned());
        argv.extend(sys.cflags.iter().filter(|f| f.starts_with("-I")).cloned());
        argv.push("-ffile-prefix-map=$WS=.".into());
        argv.extend(search.iter().map(|d| format!("-I{}", s(d))));
        argv.extend([s(src), "-o".into(), format!("$OUT/{unit}.o")]);
        let a = push(
            p,
            i,
            Action {
                id: format!("{} compile {}", r.name, s(src)),
                target: i,
                kind: "ada-compile",
                toolchain: tc.spec.name.clone(),
                program: "compiler".into(),
                argv,
                in_staging: false,
                inputs: vec![src.clone()],
                deps: Vec::new(),
                outputs: vec![
                    ActionOutput {
                        name: format!("{unit}.o"),
                        dest: od.join(format!("{unit}.o")),
                        executable: false,
                    },
                    ActionOutput {
                        name: format!("{unit}.ali"),
                        dest: od.join(format!("{unit}.ali")),
                        executable: false,
                    },
                ],
                discover: Discover::Ali(format!("{unit}.ali"), discover_dirs.clone()),
                binder_file: None,
            },
        );
        objects.push(od.join(format!("{unit}.o")));
        alis.push(od.join(format!("{unit}.ali")));
        compile_actions.push(a);
    }

    let product = product_path(r);
    if r.kind == Kind::Library {
        // An Ada library is its objects and ALI files; dependants bind against them directly.
        p.targets.entry(i).or_default().product = Some(od);
        return;
    }
    let main = r.main.clone().unwrap_or_default();
    let mut all_alis = alis.clone();
    let mut all_objects = objects.clone();
    let mut deps = compile_actions.clone();
    let mut obj_dirs = vec![od.clone()];
    for &j in &closure {
        let dep = &ws.recipes[j];
        obj_dirs.push(obj_dir(dep));
        if let Some(tp) = p.targets.get(&j) {
            for &a in &tp.actions {
                for o in &p.actions[a].outputs {
                    if o.name.ends_with(".ali") {
                        all_alis.push(o.dest.clone());
                    } else {
                        all_objects.push(o.dest.clone());
                    }
                }
                deps.push(a);
            }
        }
    }
    let binder = format!("b~{main}");
    let mut argv: Vec<String> = tc.spec.bindflags.clone();
    argv.extend(
        obj_dirs
            .iter()
            .map(|d| format!("-aO{FROM_STAGING}{}", s(d))),
    );
    argv.push(format!(
        "{FROM_STAGING}{}",
        s(&od.join(format!("{main}.ali")))
    ));
    let bind = push(
        p,
        i,
        Action {
            id: format!("{} bind", r.name),
            target: i,
            kind: "ada-bind",
            toolchain: tc.spec.name.clone(),
            program: "binder".into(),
            argv,
            in_staging: true,
            inputs: all_alis,
            deps,
            outputs: vec![
                ActionOutput {
                    name: format!("{binder}.adb"),
                    dest: od.join(format!("{binder}.adb")),
                    executable: false,
                },
                ActionOutput {
                    name: format!("{binder}.ads"),
                    dest: od.join(format!("{binder}.ads")),
                    executable: false,
                },
            ],
            discover: Discover::None,
            binder_file: None,
        },
    );
    let mut argv = vec![
        "-c".to_string(),
        "-gnatA".into(),
        "-gnatWb".into(),
        "-gnatiw".into(),
        "-gnatws".into(),
    ];
    argv.extend(
        tc.spec
            .cflags
            .iter()
            .filter(|f| !f.starts_with("-gnatw"))
            .cloned(),
    );
    argv.push("-ffile-prefix-map=$WS=.".into());
    argv.extend([
        s(&od.join(format!("{binder}.adb"))),
        "-o".into(),
        format!("$OUT/{binder}.o"),
    ]);
    let bc = push(
        p,
        i,
        Action {
            id: format!("{} compile-binder", r.name),
            target: i,
            kind: "ada-compile-binder",
            toolchain: tc.spec.name.clone(),
            program: "compiler".into(),
            argv,
            in_staging: false,
            inputs: vec![
                od.join(format!("{binder}.adb")),
                od.join(format!("{binder}.ads")),
            ],
            deps: vec![bind],
            outputs: vec![ActionOutput {
                name: format!("{binder}.o"),
                dest: od.join(format!("{binder}.o")),
                executable: false,
            }],
            discover: Discover::None,
            binder_file: None,
        },
    );
    let product_name = product
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut inputs = vec![
        od.join(format!("{binder}.o")),
        od.join(format!("{binder}.adb")),
    ];
    inputs.extend(all_objects);
    let mut link_deps = vec![bc];
    link_deps.extend(p.actions[bind].deps.clone());
    // The argv is completed at run time from the binder file's object list.
    let mut argv = vec![s(&od.join(format!("{binder}.o")))];
    argv.push("@BINDER_LIST@".into());
    argv.extend(sys.libs.iter().cloned());
    argv.extend(tc.spec.ldflags.iter().cloned());
    argv.extend(r.ldflags.iter().cloned());
    argv.extend(["-o".into(), format!("$OUT/{product_name}")]);
    push(
        p,
        i,
        Action {
            id: format!("{} link", r.name),
            target: i,
            kind: "ada-link",
            toolchain: tc.spec.name.clone(),
            program: "compiler".into(),
            argv,
            in_staging: false,
            inputs,
            deps: link_deps,
            outputs: vec![ActionOutput {
                name: product_name,
                dest: product.clone(),
                executable: true,
            }],
            discover: Discover::None,
            binder_file: Some(od.join(format!("{binder}.adb"))),
        },
    );
    p.targets.entry(i).or_default().product = Some(product);
}
