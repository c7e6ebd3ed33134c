//! Reproducible release artifacts against real g++ and GNAT: two checkouts of one commit build
//! the same bytes whatever the directory, umask, TZ, LANG and -j; `kiln verify` passes on such a
//! workspace and names the layer, file and byte of a leak kiln cannot pin; `kiln build --locked`
//! refuses a machine whose package versions differ from kiln.lock.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::kiln::Run;
use support::workspace::{copy_dir, fixture_dir, Workspace};

/// HEAD's commit time in every checkout: 2023-11-14T22:13:20Z.
const COMMIT_TIME: &str = "1700000000";

/// A copy of fixtures/engine at `dir` inside a temporary directory of its own, with `overlays`
/// (directories under fixtures/) on top.
fn workspace(dir: &str, overlays: &[&str]) -> Workspace {
    let ws = Workspace::fixture_at("engine", dir);
    for o in overlays {
        copy_dir(&fixture_dir(o), ws.root());
    }
    ws
}

/// `git init` and one commit whose author, committer and dates are fixed, so every checkout of
/// the fixture has the same HEAD hash and commit time.
fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(root)
            .env("GIT_AUTHOR_NAME", "kiln")
            .env("GIT_AUTHOR_EMAIL", "kiln@example.com")
            .env("GIT_COMMITTER_NAME", "kiln")
            .env("GIT_COMMITTER_EMAIL", "kiln@example.com")
            .env("GIT_AUTHOR_DATE", format!("@{COMMIT_TIME} +0000"))
            .env("GIT_COMMITTER_DATE", format!("@{COMMIT_TIME} +0000"))
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&[
        "-c",
        "commit.gpgsign=false",
        "commit",
        "-q",
        "-m",
        "fixture",
    ]);
    git(&["rev-parse", "HEAD"])
}

impl Workspace {
    /// Runs kiln here under `umask` with extra environment, like a person's shell would.
    fn kiln_in(&self, umask: &str, env: &[(&str, &str)], args: &[&str]) -> Run {
        self.kiln()
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("KILN_REVISION")
            .envs(env)
            .umask(umask)
            .run(args)
    }

    fn kiln_run(&self, args: &[&str]) -> Run {
        self.kiln_in("022", &[], args)
    }
}

/// Every file under the given `out/` subdirectories, by relative path, with its bytes.
fn artifacts(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    for sub in ["out/images", "out/bin", "out/debug", "out/lib"] {
        walk(root, &root.join(sub), &mut out);
    }
    out
}

fn manifest(root: &Path, service: &str) -> serde_json::Value {
    let dir = root.join("out/images").join(service);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = dir
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&std::fs::read(blob).unwrap()).unwrap()
}

#[test]
fn two_checkouts_build_identical_bytes_and_verify_agrees() {
    let a = workspace("a", &[]);
    let b = workspace("some/much/deeper/checkout", &[]);
    assert_eq!(
        commit(a.root()),
        commit(b.root()),
        "the checkouts must hold one commit"
    );

    let built = a.kiln_in(
        "022",
        &[("TZ", "UTC"), ("LANG", "C.UTF-8")],
        &["build", "-j1"],
    );
    built.assert_ok("build in a");
    let built = b.kiln_in(
        "077",
        &[
            ("TZ", "Asia/Tokyo"),
            ("LANG", "fr_FR.UTF-8"),
            ("LC_ALL", "fr_FR.UTF-8"),
        ],
        &["build", "-j2"],
    );
    built.assert_ok("build in b");

    let (fa, fb) = (artifacts(a.root()), artifacts(b.root()));
    assert_eq!(
        fa.keys().collect::<Vec<_>>(),
        fb.keys().collect::<Vec<_>>(),
        "the same artifacts"
    );
    for service in ["hello", "geometry"] {
        for must in [
            format!("out/bin/{service}"),
            format!("out/debug/{service}.debug"),
            format!("out/images/{service}/index.json"),
        ] {
            assert!(fa.contains_key(&must), "{must} was not built");
        }
        assert_eq!(
            manifest(a.root(), service)["annotations"]["org.opencontainers.image.created"],
            "2023-11-14T22:13:20Z",
            "created is HEAD's commit time, not the build's"
        );
    }
    let differing: Vec<&String> = fa.keys().filter(|k| fa[*k] != fb[*k]).collect();
    assert!(
        differing.is_empty(),
        "differ between checkouts: {differing:?}"
    );

    let verified = a.kiln_run(&["verify", "-j2"]);
    verified.assert_ok("kiln verify");
    assert!(
        verified
            .stderr_text()
            .contains("2 service image(s) rebuilt bit for bit"),
        "{}",
        verified.stderr_text()
    );
}

#[test]
fn verify_names_the_layer_file_and_byte_of_a_timestamp_leak() {
    let ws = workspace("ws", &["repro/stamp"]);
    // A checkout made long ago: the fresh copy verify builds gets today's mtime instead.
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(ws.path("stamp/main.cpp"))
        .unwrap()
        .set_modified(old)
        .unwrap();

    let out = ws.kiln_run(&["verify", "stamp", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layer = report["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["artifact"].as_str().unwrap().starts_with("layer "))
        .unwrap_or_else(|| panic!("no layer mismatch in {report:#}"));
    let artifact = layer["artifact"].as_str().unwrap();
    assert!(
        artifact.contains("sha256:") && artifact.contains("kiln: service stamp"),
        "the layer is named by index, digest and history: {artifact}"
    );
    assert_eq!(layer["path"], "/usr/local/bin/stamp");
    let detail = layer["detail"].as_str().unwrap();
    assert!(
        detail.contains("content differs from byte") && detail.contains("ELF section .rodata"),
        "{detail}"
    );
    assert!(detail.contains("Sun Sep  9 01:46:40 2001"), "{detail}");
    let err = out.stderr_text();
    assert!(
        err.contains("stamp: layer ") && err.contains("/usr/local/bin/stamp: content differs"),
        "{err}"
    );
    // The rebuild is kept for inspection; this test has seen enough of it.
    let kept = PathBuf::from(report["kept"].as_str().unwrap());
    assert!(kept.join("out/bin/stamp").is_file());
    std::fs::remove_dir_all(kept.parent().unwrap()).unwrap();
}

#[test]
fn locked_builds_refuse_host_toolchains_and_write_nothing() {
    // fixtures/engine's toolchains are `source = "host"`: the machine's own compilers.
    let ws = workspace("ws", &[]);

    // `kiln lock` still records the machine a quick local build came from...
    ws.kiln_run(&["lock"]).assert_ok("kiln lock");
    let lock: toml::Table = toml::from_str(&ws.read("kiln.lock")).unwrap();
    let gxx = lock["toolchain"]["gcc"]["packages"]["g++-12"]
        .as_str()
        .unwrap();
    assert!(!gxx.is_empty(), "the installed g++-12 is recorded");
    std::fs::remove_dir_all(ws.path("out")).unwrap(); // `kiln lock` built the services

    // ...but no lock makes another machine have those packages, so --locked refuses them,
    // naming each host toolchain and its file, before anything is built.
    let out = ws.kiln_run(&["build", "--locked"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr_text());
    let err = out.stderr_text();
    assert!(
        err.contains("--locked builds only from pinned packages")
            && err.contains("toolchains gcc, gnat are `source = \"host\"`")
            && err.contains("toolchains/gcc.toml, toolchains/gnat.toml"),
        "{err}"
    );
    assert!(
        !ws.path("out/bin").exists(),
        "a refused build writes nothing"
    );

    // `kiln inspect` labels an image built that way.
    ws.kiln_run(&["build", "hello"]).assert_ok("build");
    let shown = ws.kiln_run(&["inspect", "hello"]);
    shown.assert_ok("inspect");
    assert!(
        shown
            .stdout_text()
            .contains("toolchain gcc (host: NOT REPRODUCIBLE"),
        "{}",
        shown.stdout_text()
    );
    let json = ws.kiln_run(&["inspect", "--json", "hello"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["toolchain"]["reproducible"], false, "{v}");
}
