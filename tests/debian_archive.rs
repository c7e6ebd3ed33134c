//! One test against the real Debian archive: resolve g++-12 (+ libc6-dev, libstdc++-12-dev) for
//! bookworm amd64 from the mirror the machine's apt sources name (or `KILN_DEBIAN_MIRROR`),
//! verify against debian-archive-keyring, materialise the toolchain root, and compile and run a
//! C++ program inside bubblewrap with that root as `/`; the same for gnat-12 and an Ada program;
//! and resolve this repository's own `toolchains/gcc.toml`.
//!
//! It needs the network, so it is ignored by default; run it with
//! `cargo test --test debian_archive -- --ignored`. Downloads (about 80 MB) are shared by every
//! run on the machine in `$KILN_TEST_DEB_CACHE` (default `/var/cache/kiln-test-debs`), outside
//! the clone, so only the first run on a machine fetches the .debs.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use kiln::debian::http::ReqwestHttp;
use kiln::debian::sandbox::Sandbox;
use kiln::debian::signature::DEBIAN_KEYRING;
use kiln::debian::sources::{mirror_for, MIRROR_ENV};
use kiln::debian::store::Downloads;
use kiln::debian::Archive;
use kiln::exec::ProcessRunner;

const SUITES: [&str; 3] = ["bookworm", "bookworm-updates", "bookworm-security"];

/// The machine's shared download directory (see `support::kiln::shared_debian_store`).
fn shared_cache() -> PathBuf {
    support::kiln::shared_debian_store()
}

fn with_bookworm<T>(f: impl FnOnce(&Archive) -> T) -> T {
    let env_mirror = std::env::var(MIRROR_ENV).ok();
    let mut mirrors = BTreeMap::new();
    for s in SUITES {
        let m = mirror_for(s, env_mirror.as_deref(), Path::new("/etc/apt")).unwrap();
        mirrors.insert(s.to_string(), m);
    }
    let http = ReqwestHttp::new().unwrap();
    let archive = Archive {
        http: &http,
        cas: None,
        runner: &ProcessRunner,
        keyring: DEBIAN_KEYRING.into(),
        downloads: Downloads::new(&shared_cache()),
        mirrors,
        component: "main".into(),
        architecture: "amd64".into(),
        now: unix_now(),
    };
    f(&archive)
}

fn suites() -> Vec<String> {
    SUITES.iter().map(|s| s.to_string()).collect()
}

#[test]
#[ignore = "uses the real Debian archive; run with --ignored"]
fn gxx_12_from_bookworm_compiles_and_runs_hello_world_in_the_sandbox() {
    with_bookworm(gxx_hello)
}

fn gxx_hello(archive: &Archive) {
    let suites = suites();
    let roots: Vec<String> = ["g++-12", "libc6-dev", "libstdc++-12-dev"]
        .map(String::from)
        .to_vec();
    let packages = archive.resolve(&suites, &roots, false).unwrap();
    let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    for needed in [
        "g++-12",
        "gcc-12",
        "cpp-12",
        "binutils",
        "libc6",
        "libc6-dev",
        "libstdc++-12-dev",
        "libstdc++6",
    ] {
        assert!(names.contains(&needed), "{needed} missing from {names:?}");
    }
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "the closure is sorted by name");
    assert!(
        !names.contains(&"bash") && !names.contains(&"coreutils"),
        "Essential packages are not implied: {names:?}"
    );
    let gxx = packages.iter().find(|p| p.name == "g++-12").unwrap();
    assert_eq!(gxx.source, "gcc-12");

    let (_, root) = archive.root(&packages).unwrap();
    assert!(root.join("usr/bin/g++-12").is_file());
    assert_eq!(
        fs::read_link(root.join("lib64")).unwrap(),
        Path::new("usr/lib64")
    );

    let ws = tempfile::tempdir().unwrap();
    fs::write(
        ws.path().join("hello.cpp"),
        "#include <iostream>\n#include <cstdlib>\nint main() {\n  std::cout << \"hello from \" << __VERSION__ << \" at \" \
         << std::getenv(\"SOURCE_DATE_EPOCH\") << '\\n';\n  return 0;\n}\n",
    )
    .unwrap();
    let sandbox = Sandbox::new(&root, ws.path(), 1_700_000_000).unwrap();
    let args: Vec<String> = ["-O2", "-o", "hello", "hello.cpp"]
        .map(String::from)
        .to_vec();
    let out = sandbox
        .run(&ProcessRunner, "/usr/bin/g++-12", &args, "/ws")
        .unwrap();
    assert!(
        out.success,
        "g++-12 failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = sandbox
        .run(&ProcessRunner, "/ws/hello", &[], "/ws")
        .unwrap();
    assert!(
        run.success,
        "hello failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = String::from_utf8(run.stdout).unwrap();
    // The compiler that ran is the pinned one (its version string is compiled in), and the
    // sandbox's environment is the one kiln set.
    assert!(
        text.starts_with(&format!(
            "hello from {}",
            gxx.version.split('-').next().unwrap()
        )),
        "{text}"
    );
    assert!(text.trim_end().ends_with("at 1700000000"), "{text}");
    // The root is read-only inside the sandbox, even for root.
    let touch = sandbox
        .run(
            &ProcessRunner,
            "/usr/bin/g++-12",
            &["-o".into(), "/usr/bin/x".into(), "hello.cpp".into()],
            "/ws",
        )
        .unwrap();
    assert!(!touch.success);
    assert!(!root.join("usr/bin/x").exists());
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
#[ignore = "uses the real Debian archive; run with --ignored"]
fn gnat_12_from_bookworm_builds_and_runs_ada_in_the_sandbox() {
    with_bookworm(|archive| {
        let packages = archive
            .resolve(&suites(), &["gnat-12".to_string()], false)
            .unwrap();
        let (_, root) = archive.root(&packages).unwrap();
        let ws = tempfile::tempdir().unwrap();
        fs::write(
            ws.path().join("hello.adb"),
            "with Ada.Text_IO;\nprocedure Hello is\nbegin\n   Ada.Text_IO.Put_Line (\"hello from gnat\");\nend Hello;\n",
        )
        .unwrap();
        let sandbox = Sandbox::new(&root, ws.path(), 0).unwrap();
        let out = sandbox
            .run(
                &ProcessRunner,
                "/usr/bin/gnatmake-12",
                &["hello.adb".to_string()],
                "/ws",
            )
            .unwrap();
        assert!(
            out.success,
            "gnatmake failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = sandbox
            .run(&ProcessRunner, "/ws/hello", &[], "/ws")
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&run.stdout), "hello from gnat\n");
    })
}

#[test]
#[ignore = "uses the real Debian archive; run with --ignored"]
fn the_workspace_cxx_toolchain_resolves_from_bookworm() {
    // Resolution only (the index is cached; no .deb is fetched), through the CLI, from this
    // repository's own toolchains/gcc.toml.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "toolchain",
            "resolve",
            "--toolchain",
            "gcc",
        ])
        .env("KILN_CACHE", shared_cache())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: toml::Value = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let names: Vec<&str> = doc["debian"]["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for needed in [
        "g++-12",
        "libwxbase3.2-1",
        "wx3.2-headers",
        "libstdc++6",
        "libc6",
    ] {
        assert!(names.contains(&needed), "{needed} missing from {names:?}");
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "toolchain",
            "resolve",
            "--toolchain",
            "gc",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("there are: gcc, gcc-arm64, gnat, gnat-arm64"));
}
