//! Planning the engine fixture (C++ and Ada libraries, services and tests) with toolchains that
//! need no installed compiler: what every compile action has in common, whichever family.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{plan, Context, Discover, Plan};
use crate::digest::Digest;
use crate::graph;
use crate::recipe::Language;
use crate::toolchain::{SystemFlags, Toolchain};
use crate::workspace::Workspace;

fn engine() -> Workspace {
    Workspace::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/engine")).unwrap()
}

fn plan_all(ws: &Workspace) -> Plan {
    let toolchains: BTreeMap<String, Toolchain> = ws
        .toolchains
        .iter()
        .map(|(name, spec)| {
            let tc = Toolchain {
                spec: spec.clone(),
                programs: BTreeMap::new(),
                fingerprint: Digest::of(name.as_bytes()),
                package_versions: BTreeMap::new(),
                library_paths: Vec::new(),
                ada_include: Some(PathBuf::from("/usr/lib/gcc/adainclude")),
                root: None,
            };
            (name.clone(), tc)
        })
        .collect();
    let all: Vec<usize> = (0..ws.recipes.len()).collect();
    let order = graph::build_order(&ws.graph(), &all);
    let system_flags: BTreeMap<usize, SystemFlags> = order
        .iter()
        .map(|&i| {
            let flags = SystemFlags {
                cflags: vec!["-I/usr/include/sys".into(), "-pthread".into()],
                libs: vec!["-lsys".into()],
            };
            (i, flags)
        })
        .collect();
    let cx = Context {
        ws,
        toolchains: &toolchains,
        system_flags: &system_flags,
    };
    plan(&cx, &order)
}

#[test]
fn every_source_is_one_compile_with_the_shared_shape() {
    let ws = engine();
    let p = plan_all(&ws);
    let mut seen = 0;
    for (i, r) in ws.recipes.iter().enumerate() {
        let compiles: Vec<_> = p.targets[&i]
            .actions
            .iter()
            .map(|&a| &p.actions[a])
            .filter(|a| a.kind.ends_with("-compile"))
            .collect();
        assert_eq!(compiles.len(), r.sources.len(), "{}", r.name);
        for (a, src) in compiles.iter().zip(&r.sources) {
            let src_s = src.to_string_lossy();
            assert_eq!(a.id, format!("{} compile {src_s}", r.name));
            assert_eq!(a.target, i);
            assert_eq!(a.toolchain, r.toolchain.value);
            assert_eq!(a.program, "compiler");
            assert!(!a.in_staging, "{}", a.id);
            assert_eq!(a.inputs, std::slice::from_ref(src), "{}", a.id);
            assert!(a.deps.is_empty(), "{}", a.id);
            assert_eq!(a.binder_file, None);
            assert!(a.argv.contains(&"-ffile-prefix-map=$WS=.".to_string()));
            assert!(a.argv.contains(&src_s.to_string()), "{}", a.id);
            let obj = Path::new("out/obj").join(&r.name);
            for o in &a.outputs {
                assert!(!o.executable, "{}: {}", a.id, o.name);
                assert!(o.dest.starts_with(&obj), "{}: {}", a.id, o.dest.display());
            }
            match r.language {
                Language::Cxx => {
                    assert_eq!(a.kind, "c++-compile");
                    assert_eq!(a.discover, Discover::Depfile("unit.d".into()));
                    assert_eq!(a.outputs.len(), 1);
                    assert_eq!(a.outputs[0].name, "unit.o");
                    assert_eq!(a.outputs[0].dest, obj.join(format!("{src_s}.o")));
                    // Every system cflag reaches a C++ compile.
                    assert!(a.argv.contains(&"-pthread".to_string()), "{}", a.id);
                }
                Language::Ada => {
                    let unit = src.file_stem().unwrap().to_string_lossy();
                    assert_eq!(a.kind, "ada-compile");
                    let names: Vec<&str> = a.outputs.iter().map(|o| o.name.as_str()).collect();
                    assert_eq!(names, [format!("{unit}.o"), format!("{unit}.ali")]);
                    let Discover::Ali(ali, dirs) = &a.discover else {
                        panic!("{}: {:?}", a.id, a.discover)
                    };
                    assert_eq!(ali, &format!("{unit}.ali"));
                    assert_eq!(dirs.last(), Some(&PathBuf::from("/usr/lib/gcc/adainclude")));
                    // Only the include directories of system flags reach GNAT.
                    assert!(a.argv.contains(&"-I/usr/include/sys".to_string()));
                    assert!(!a.argv.contains(&"-pthread".to_string()), "{}", a.id);
                }
            }
            seen += 1;
        }
    }
    assert!(seen >= 6, "expected the fixture's sources, planned {seen}");
    let kinds: Vec<&str> = p.actions.iter().map(|a| a.kind).collect();
    for k in [
        "c++-compile",
        "c++-archive",
        "c++-link",
        "ada-compile",
        "ada-bind",
        "ada-link",
    ] {
        assert!(kinds.contains(&k), "no {k} action in {kinds:?}");
    }
}
