//! The build engine against real g++ and GNAT: incremental correctness, the shared cache, errors
//! and concurrency. Each test works on its own copy of fixtures/engine with its own cache.

mod support;

use std::collections::BTreeSet;
use std::process::Stdio;

use support::kiln::{Kiln, Run};
use support::workspace::Workspace;

impl Workspace {
    /// Builds and returns the ids of the actions that ran a command.
    fn build(&self) -> BTreeSet<String> {
        let out = self.kiln().run(["build", "--json", "--no-images", "-j2"]);
        out.assert_ok("build");
        ran(&out)
    }
}

fn ran(out: &Run) -> BTreeSet<String> {
    out.json()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            t["ran"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn cold_build_produces_working_cxx_and_ada_binaries() {
    let ws = Workspace::engine();
    let ran = ws.build();
    assert!(ran.contains("hello compile hello/src/main.cpp"));
    assert!(ran.contains("geometry bind"));
    assert_eq!(ws.run_bin("hello"), "kiln-fixture <hello, wxBase 3>\n");
    assert_eq!(ws.run_bin("geometry"), "geometry area 12 stack 2 top 9\n");
    let lib = std::fs::read(ws.path("out/lib/libgreet.a")).unwrap();
    assert!(lib.starts_with(b"!<arch>\n"));
    // Nothing of the workspace's absolute path in any output.
    let needle = ws.root().to_string_lossy().into_owned();
    for p in [
        "out/bin/hello",
        "out/bin/geometry",
        "out/lib/libgreet.a",
        "out/obj/shapes/shapes.ali",
    ] {
        let bytes = std::fs::read(ws.root().join(p)).unwrap();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{p} contains the workspace path"
        );
    }
}

#[test]
fn incremental_rebuilds_exactly_what_changed() {
    let ws = Workspace::engine();
    ws.build();

    // A second build and a touch without change run nothing.
    assert_eq!(ws.build(), set(&[]));
    let f = std::fs::File::options()
        .append(true)
        .open(ws.path("greet/src/format.cpp"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    assert_eq!(ws.build(), set(&[]), "touching a file must not rebuild");

    // One .cpp: that unit, its archive, and the link of its dependant.
    ws.edit("greet/src/format.cpp", "\"<\"", "\"[\"");
    assert_eq!(
        ws.build(),
        set(&[
            "greet compile greet/src/format.cpp",
            "greet archive",
            "hello link"
        ])
    );
    assert_eq!(ws.run_bin("hello"), "kiln-fixture [hello, wxBase 3>\n");

    // A header: exactly the units that include it.
    ws.edit("hello/src/banner.h", "kiln-fixture", "kiln-banner");
    assert_eq!(
        ws.build(),
        set(&["hello compile hello/src/main.cpp", "hello link"])
    );
    assert!(ws.run_bin("hello").starts_with("kiln-banner "));

    // An Ada spec: its body and the units that with it, then bind and link.
    ws.edit("shapes/shapes-circles.ads", "   overriding function Area", "   function Diameter (C : Circle) return Float is (2.0 * C.Radius);\n   overriding function Area");
    let ran = ws.build();
    assert_eq!(
        ran,
        set(&[
            "shapes compile shapes/shapes-circles.adb",
            "geometry compile geometry/geometry_main.adb",
            "geometry bind",
            "geometry compile-binder",
            "geometry link",
        ]),
    );
    assert!(ws.run_bin("geometry").starts_with("geometry area 12"));

    // A recipe's flags: that recipe's actions only.
    ws.edit(
        "recipes/hello.toml",
        "deps = [\"greet\"]",
        "deps = [\"greet\"]\ndefines = [\"HELLO_EXTRA=1\"]",
    );
    assert_eq!(
        ws.build(),
        set(&[
            "hello compile hello/src/main.cpp",
            "hello compile hello/src/extra.cpp"
        ]),
        "a define that changes no object byte reruns the compiles and nothing after them"
    );
}

#[test]
fn a_different_toolchain_fingerprint_reruns_everything_of_that_toolchain() {
    let ws = Workspace::engine();
    ws.build();
    // Only the fingerprint changes (a package joins the list); no command line does.
    ws.edit(
        "toolchains/gcc.toml",
        "packages = [",
        "packages = [\"make\", ",
    );
    let ran = ws.build();
    for id in [
        "greet compile greet/src/greet.cpp",
        "greet compile greet/src/format.cpp",
        "greet archive",
        "hello compile hello/src/main.cpp",
        "hello compile hello/src/extra.cpp",
        "hello link",
    ] {
        assert!(ran.contains(id), "{id} did not rerun: {ran:?}");
    }
    assert!(
        !ran.iter()
            .any(|id| id.starts_with("shapes") || id.starts_with("geometry")),
        "Ada actions reran: {ran:?}"
    );
}

#[test]
fn clean_then_build_is_served_entirely_from_the_cache() {
    let ws = Workspace::engine();
    ws.build();
    assert!(ws.kiln().run(["clean"]).status.success());
    assert!(!ws.path("out/bin").exists());
    let out = ws.kiln().run(["build", "--json", "--no-images"]);
    assert!(out.status.success());
    assert_eq!(ran(&out), set(&[]), "compilers ran after clean");
    let cached: u64 = out.json()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["actions_cached"].as_u64().unwrap())
        .sum();
    assert_eq!(cached, 13);
    assert_eq!(ws.run_bin("geometry"), "geometry area 12 stack 2 top 9\n");
    assert_eq!(ws.run_bin("hello"), "kiln-fixture <hello, wxBase 3>\n");
}

#[test]
fn a_second_workspace_at_another_path_shares_the_cache() {
    let a = Workspace::engine();
    a.build();
    let b = Workspace::engine();
    let out = Kiln::at(b.root()).env("KILN_CACHE", a.cache()).run([
        "build",
        "--json",
        "--no-images",
        "-j1",
    ]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(ran(&out), set(&[]));
    assert_eq!(
        std::fs::read(a.path("out/bin/hello")).unwrap(),
        std::fs::read(b.path("out/bin/hello")).unwrap()
    );
}

#[test]
fn compile_error_exits_1_with_diagnostics_and_caches_nothing() {
    let ws = Workspace::engine();
    ws.build();
    ws.edit(
        "greet/src/greet.cpp",
        "return decorate",
        "return undeclared_function",
    );
    for _ in 0..2 {
        let out = ws.kiln().run(["build", "--no-images"]);
        assert_eq!(out.status.code(), Some(1));
        let err = out.stderr_text();
        assert!(
            err.contains("target `greet` failed: greet compile greet/src/greet.cpp"),
            "{err}"
        );
        assert!(err.contains("undeclared_function"), "{err}");
        assert_eq!(
            err.matches("was not declared").count(),
            1,
            "diagnostics shown once: {err}"
        );
        // The stale object and everything built from it are gone from out/.
        assert!(!ws
            .root()
            .join("out/obj/greet/greet/src/greet.cpp.o")
            .exists());
        assert!(!ws.path("out/bin/hello").exists());
        assert!(!ws.path("out/lib/libgreet.a").exists());
    }
    // The second failing run failed again by running the compiler, not from the cache: fixing
    // the file restores a working build.
    ws.edit(
        "greet/src/greet.cpp",
        "return undeclared_function",
        "return decorate",
    );
    let ran = ws.build();
    assert!(
        !ran.contains("greet compile greet/src/greet.cpp"),
        "the good object came back from the cache"
    );
    assert_eq!(ws.run_bin("hello"), "kiln-fixture <hello, wxBase 3>\n");
}

#[test]
fn ada_compile_error_names_the_unit() {
    let ws = Workspace::engine();
    ws.edit(
        "shapes/shapes.adb",
        "return \"area\"",
        "return Undefined_Thing",
    );
    let out = ws.kiln().run(["build", "--no-images"]);
    assert_eq!(out.status.code(), Some(1));
    let err = out.stderr_text();
    assert!(
        err.contains("target `shapes` failed: shapes compile shapes/shapes.adb"),
        "{err}"
    );
    assert!(err.contains("Undefined_Thing"), "{err}");
}

#[test]
fn two_builds_started_together_both_succeed() {
    let ws = Workspace::engine();
    let spawn = || {
        ws.kiln()
            .command(["build", "--no-images", "-j1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert_eq!(ws.run_bin("hello"), "kiln-fixture <hello, wxBase 3>\n");
    assert_eq!(ws.run_bin("geometry"), "geometry area 12 stack 2 top 9\n");
}

#[test]
fn two_workspaces_building_into_one_cache_at_once_both_succeed() {
    let a = Workspace::engine();
    let b = Workspace::engine();
    let spawn = |ws: &Workspace| {
        ws.kiln()
            .env("KILN_CACHE", a.cache())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .command(["build", "-j1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (pa, pb) = (spawn(&a), spawn(&b));
    let (oa, ob) = (
        pa.wait_with_output().unwrap(),
        pb.wait_with_output().unwrap(),
    );
    assert!(
        oa.status.success(),
        "{}",
        String::from_utf8_lossy(&oa.stderr)
    );
    assert!(
        ob.status.success(),
        "{}",
        String::from_utf8_lossy(&ob.stderr)
    );
    for ws in [&a, &b] {
        assert_eq!(ws.run_bin("hello"), "kiln-fixture <hello, wxBase 3>\n");
        assert_eq!(ws.run_bin("geometry"), "geometry area 12 stack 2 top 9\n");
    }
    // Same inputs, same bytes, whichever process wrote the shared cache entries.
    for p in [
        "out/bin/hello",
        "out/bin/geometry",
        "out/images/hello/index.json",
        "out/images/geometry/index.json",
    ] {
        assert_eq!(
            std::fs::read(a.root().join(p)).unwrap(),
            std::fs::read(b.root().join(p)).unwrap(),
            "{p}"
        );
    }
    // Every cache entry is whole: a third workspace is served entirely from it.
    let c = Workspace::engine();
    let out =
        Kiln::at(c.root())
            .env("KILN_CACHE", a.cache())
            .run(["build", "--json", "--no-images"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(ran(&out), set(&[]));
    assert_eq!(c.run_bin("hello"), "kiln-fixture <hello, wxBase 3>\n");
}

fn recipe_error(ws: &Workspace, file: &str, text: &str) -> String {
    ws.write(file, text);
    let out = ws.kiln().run(["build", "--no-images"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr_text());
    out.stderr_text()
}

#[test]
fn recipe_errors_point_at_file_line_and_column() {
    let ws = Workspace::engine();
    let base = "kind = \"library\"\nlanguage = \"c++\"\n";

    let err = recipe_error(
        &ws,
        "recipes/extra.toml",
        &format!("{base}srcs = [\"greet/src/*.cpp\"]\n"),
    );
    assert!(
        err.contains("recipes/extra.toml:3:1: unknown key `srcs`"),
        "{err}"
    );
    assert!(
        err.contains("3 | srcs = [\"greet/src/*.cpp\"]\n  | ^^^^"),
        "{err}"
    );
    assert!(err.contains("did you mean `sources`?"), "{err}");

    let err = recipe_error(
        &ws,
        "recipes/extra.toml",
        &format!("{base}sources = \"greet/src/*.cpp\"\n"),
    );
    assert!(
        err.contains(
            "recipes/extra.toml:3:11: `sources` must be an array of strings, found string"
        ),
        "{err}"
    );

    let err = recipe_error(
        &ws,
        "recipes/extra.toml",
        &format!("{base}sources = [\"greet/src/*.cc\"]\n"),
    );
    assert!(
        err.contains("recipes/extra.toml:3:12: glob \"greet/src/*.cc\" matches no file"),
        "{err}"
    );

    let err = recipe_error(
        &ws,
        "recipes/extra.toml",
        &format!("{base}sources = [\"greet/src/*.cpp\"]\ndeps = [\"gret\"]\n"),
    );
    assert!(
        err.contains("recipes/extra.toml:4:9: unknown dependency `gret`"),
        "{err}"
    );
    assert!(err.contains("did you mean `greet`?"), "{err}");

    let err = recipe_error(
        &ws,
        "recipes/extra.toml",
        "kind = \"libary\"\nlanguage = \"c++\"\n",
    );
    assert!(
        err.contains("recipes/extra.toml:1:8: `kind` must be one of"),
        "{err}"
    );
    assert!(err.contains("did you mean `library`?"), "{err}");

    let err = recipe_error(
        &ws,
        "recipes/extra.toml",
        "kind = \"library\"\nlanguage = \"c++\"\nsources = [\"greet/src/*.cpp\"\n",
    );
    assert!(
        err.contains("recipes/extra.toml:4:1: invalid TOML: invalid array; expected `]`"),
        "{err}"
    );
}

#[test]
fn dependency_cycles_are_reported_with_the_whole_path() {
    let ws = Workspace::engine();
    std::fs::write(ws.path("recipes/a.toml"), "kind = \"library\"\nlanguage = \"c++\"\nsources = [\"greet/src/greet.cpp\"]\ndeps = [\"b\"]\n").unwrap();
    std::fs::write(ws.path("recipes/b.toml"), "kind = \"library\"\nlanguage = \"c++\"\nsources = [\"greet/src/format.cpp\"]\ndeps = [\"c\"]\n").unwrap();
    let err = recipe_error(&ws, "recipes/c.toml", "kind = \"library\"\nlanguage = \"c++\"\nsources = [\"greet/src/format.cpp\"]\ndeps = [\"a\"]\n");
    assert!(err.contains("dependency cycle: a -> b -> c -> a"), "{err}");
    assert!(err.contains("recipes/c.toml:4:9:"), "{err}");
}

#[test]
fn a_missing_toolchain_program_names_the_package() {
    let ws = Workspace::engine();
    ws.edit(
        "toolchains/gnat.toml",
        "binder = \"gnatbind\"",
        "binder = \"gnatbind-not-installed\"",
    );
    let out = ws.kiln().run(["build", "--no-images"]);
    assert_eq!(out.status.code(), Some(2));
    let err = out.stderr_text();
    assert!(
        err.contains(
            "`gnatbind-not-installed` is not installed; install it with `apt-get install gnat`"
        ),
        "{err}"
    );
}

#[test]
fn unknown_target_on_the_command_line_is_a_usage_error() {
    let ws = Workspace::engine();
    let out = ws.kiln().run(["build", "helo", "--no-images"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr_text()
            .contains("no target named `helo` (did you mean `hello`?)"),
        "{}",
        out.stderr_text()
    );
}

#[test]
fn graph_and_compile_commands() {
    let ws = Workspace::engine();
    let out = ws.kiln().run(["graph"]);
    assert!(out.status.success());
    let dot = String::from_utf8(out.stdout).unwrap();
    assert!(dot.starts_with("digraph kiln {"));
    assert!(dot.contains("\"hello\" -> \"greet\";"), "{dot}");
    assert!(dot.contains("\"geometry\" -> \"shapes\";"), "{dot}");

    assert!(ws.kiln().run(["compile-commands"]).status.success());
    let cc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path("compile_commands.json")).unwrap()).unwrap();
    let main = cc
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["file"] == "hello/src/main.cpp")
        .expect("main.cpp entry");
    let args: Vec<&str> = main["arguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.contains(&"-Igreet/include") && args.contains(&"-c"),
        "{args:?}"
    );
}
