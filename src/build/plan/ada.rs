//! Planning an Ada target: one compile per compilation unit; a library is then its objects and
//! ALI files, while a service or test is bound (`gnatbind`, in the staging directory), its
//! binder file compiled, and linked with the objects the binder lists.
//!
//! The search path is the recipe's source directories, those of its sources, then those of the
//! libraries it links; ALI dependencies are also resolved against the runtime's sources.

use std::path::PathBuf;

use super::{
    file_name, obj_dir, product_path, push, push_compile, s, Action, ActionOutput, Compile,
    Discover, Plan, Target, FROM_STAGING, PREFIX_MAP,
};
use crate::recipe::Kind;

pub(super) fn plan(t: Target, p: &mut Plan) {
    let (i, ws, r, tc, sys, closure) = (t.i, t.ws, t.r, t.tc, t.sys, t.closure);

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
        argv.push(PREFIX_MAP.into());
        argv.extend(search.iter().map(|d| format!("-I{}", s(d))));
        argv.extend([s(src), "-o".into(), format!("$OUT/{unit}.o")]);
        let (object, ali) = (format!("{unit}.o"), format!("{unit}.ali"));
        let compile = Compile {
            kind: "ada-compile",
            src,
            argv,
            outputs: vec![
                (object.clone(), od.join(&object)),
                (ali.clone(), od.join(&ali)),
            ],
            discover: Discover::Ali(ali.clone(), discover_dirs.clone()),
        };
        let a = push_compile(p, i, r, tc, compile);
        objects.push(od.join(object));
        alis.push(od.join(ali));
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
    argv.push(PREFIX_MAP.into());
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
    let product_name = file_name(&product);
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
