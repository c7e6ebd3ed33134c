//! Planning a C++ target: one compile per translation unit, then an archive (static library),
//! or a link (shared library, service, test) against every library in the link closure.
//!
//! Include directories of the libraries linked are visible to every compile; a compile writes a
//! depfile, so the headers it read become discovered inputs. Binaries linking a shared library
//! find it through an `$ORIGIN`-relative rpath, so `out/` can move as a whole.

use super::{
    file_name, obj_dir, product_path, push, push_compile, s, Action, ActionOutput, Compile,
    Discover, Plan, Target, PREFIX_MAP,
};
use crate::recipe::Kind;

pub(super) fn plan(t: Target, p: &mut Plan) {
    let (i, ws, r, tc, sys, closure) = (t.i, t.ws, t.r, t.tc, t.sys, t.closure);

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
        argv.push(PREFIX_MAP.into());
        argv.push(format!("-frandom-seed={}", s(&obj)));
        argv.extend(includes.iter().cloned());
        argv.extend(r.defines.iter().map(|d| format!("-D{d}")));
        argv.extend(r.cflags.iter().cloned());
        argv.extend(["-MD", "-MF", "$OUT/unit.d", "-MT"].map(String::from));
        argv.push(s(&obj));
        argv.extend(["-c".into(), s(src), "-o".into(), "$OUT/unit.o".into()]);
        let compile = Compile {
            kind: "c++-compile",
            src,
            argv,
            outputs: vec![("unit.o".into(), obj.clone())],
            discover: Discover::Depfile("unit.d".into()),
        };
        let a = push_compile(p, i, r, tc, compile);
        objects.push(obj);
        compile_actions.push(a);
    }

    let product = product_path(r);
    let product_name = file_name(&product);
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
    push(
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
    p.targets.entry(i).or_default().product = Some(product);
}
