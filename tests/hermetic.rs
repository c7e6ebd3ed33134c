//! Debian toolchains as a user meets them: `fixtures/engine` (a wxBase C++ service and an Ada
//! service, with their libraries and tests) built with this repository's own `toolchains/`,
//! which take g++ 12, GNAT 12 and wxBase from pinned Debian packages.
//!
//! Uses the real Debian archive for the first download; the packages, trees and roots are
//! kept once per machine (see `support::kiln::shared_debian_store`), so only the first test
//! run on a machine pays for them.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::kiln::{Kiln, DEBIAN_STORE_ENV};
use support::workspace::Workspace;

/// `fixtures/engine` without its host toolchains, at `dir`: kiln's built-in ones (g++ 12, GNAT
/// 12 and wxBase from pinned Debian packages) build it.
fn hermetic_engine(dir: &str) -> Workspace {
    let ws = Workspace::fixture_at("engine", dir);
    fs::remove_dir_all(ws.path("toolchains")).unwrap();
    ws
}

/// kiln with a PATH that holds `tools` and nothing else: no compiler, binutils, wx-config or
/// pkg-config of this machine can be what builds.
fn bare_kiln(ws: &Workspace, tools: &[&str]) -> Kiln {
    let bin = ws.scratch().join(format!("bare-bin-{}", tools.join("-")));
    if !bin.exists() {
        fs::create_dir_all(&bin).unwrap();
        for t in tools {
            std::os::unix::fs::symlink(Path::new("/usr/bin").join(t), bin.join(t)).unwrap();
        }
    }
    ws.kiln()
        .env("PATH", &bin)
        .env("SOURCE_DATE_EPOCH", "1700000000")
}

fn image_digests(ws: &Workspace) -> Vec<String> {
    let out = ws
        .kiln()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run(["build"])
        .ok("build");
    let d: Vec<String> = out
        .stderr_text()
        .lines()
        .filter(|l| l.starts_with("kiln: image "))
        .map(|l| l.split(" (").next().unwrap().to_string())
        .collect();
    assert_eq!(d.len(), 2, "{}", out.stderr_text());
    d
}

fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn two_checkouts_on_a_machine_without_compilers_build_the_same_bytes_from_the_lock() {
    let a = hermetic_engine("a");
    // Pinning reads the archive's signed index, which gpgv checks; building needs only bwrap.
    let first = bare_kiln(&a, &["bwrap", "gpgv"])
        .run(["build"])
        .ok("first build");
    let err = first.stderr_text();
    assert!(err.contains("pinned toolchain gcc in kiln.lock"), "{err}");
    assert!(err.contains("pinned toolchain gnat in kiln.lock"), "{err}");
    let lock: toml::Value = toml::from_str(&a.read("kiln.lock")).unwrap();
    let gcc = &lock["toolchain"]["gcc"]["debian"];
    let pinned: Vec<&str> = gcc["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for needed in [
        "g++-12",
        "libstdc++6",
        "libwxbase3.2-1",
        "libc6",
        "libwxgtk3.2-dev",
    ] {
        assert!(pinned.contains(&needed), "{needed} not pinned: {pinned:?}");
    }
    assert!(
        !pinned.contains(&"libgtk-3-0"),
        "libwxgtk3.2-dev was taken with its dependencies: {pinned:?}"
    );
    let list = a.kiln().run(["toolchain", "list"]).ok("toolchain list");
    let text = list.stdout_text();
    for name in [
        "gcc\tc++ (built-in) from debian",
        "gnat\tada (built-in) from debian",
    ] {
        assert!(text.contains(name), "{text}");
    }
    assert!(
        text.contains(&format!("{} package(s) pinned", pinned.len()))
            && text.contains("root materialised"),
        "{text}"
    );
    // The tests run too, inside the root, with nothing of the host's on PATH.
    let t = bare_kiln(&a, &["bwrap"]).run(["test"]).ok("kiln test");
    assert!(
        t.stdout_text().contains("2 passed, 0 failed"),
        "{}",
        t.stdout_text()
    );

    // A second checkout elsewhere, with the lock and its own empty kiln cache.
    let b = hermetic_engine("elsewhere/b");
    fs::copy(a.path("kiln.lock"), b.path("kiln.lock")).unwrap();
    let second = bare_kiln(&b, &["bwrap"])
        .run(["build", "--locked"])
        .ok("second build");
    assert!(
        !second.stderr_text().contains("pinned toolchain"),
        "the lock was rewritten: {}",
        second.stderr_text()
    );
    assert_eq!(a.read("kiln.lock"), b.read("kiln.lock"));
    assert_eq!(image_digests(&a), image_digests(&b));
    for dir in ["out/bin", "out/lib", "out/debug"] {
        assert!(
            files_under(&a.path(dir)) == files_under(&b.path(dir)),
            "{dir} differs between the checkouts"
        );
    }

    // The image's runtime is the pinned packages: its status.d names the locked libc6.
    let libc6 = gcc["package"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("libc6"))
        .unwrap()["version"]
        .as_str()
        .unwrap()
        .to_string();
    let inspect = a.kiln().run(["inspect", "hello"]).ok("inspect");
    assert!(
        inspect.stdout_text().contains(&format!("libc6 {libc6}")),
        "{}",
        inspect.stdout_text()
    );
    assert!(
        inspect
            .stdout_text()
            .contains("toolchain gcc (debian, pinned packages)"),
        "{}",
        inspect.stdout_text()
    );
}

#[test]
fn an_edited_toolchain_is_refused_under_locked_and_repinned_without() {
    let ws = hermetic_engine("ws");
    ws.kiln().run(["build", "--no-images"]).ok("first build");
    let lock = ws.read("kiln.lock");
    // The workspace takes over the built-in gnat with one more package.
    let builtin = kiln::toolchain::BUILTIN[1].1;
    let edited = builtin.replace(
        "packages = [\"gnat\", \"gcc\", \"libc6-dev\"]",
        "packages = [\"gnat\", \"gcc\", \"libc6-dev\", \"make\"]",
    );
    assert_ne!(edited, builtin);
    ws.write("toolchains/gnat.toml", &edited);
    let refused = ws.kiln().run(["build", "--locked", "geometry"]);
    assert_eq!(refused.code(), Some(1), "{}", refused.stderr_text());
    let err = refused.stderr_text();
    assert!(err.contains("toolchain `gnat` is not locked"), "{err}");
    assert!(err.contains("make"), "{err}");
    assert_eq!(ws.read("kiln.lock"), lock, "--locked wrote the lock");

    let repinned = ws
        .kiln()
        .run(["build", "--no-images", "geometry"])
        .ok("rebuild");
    assert!(
        repinned.stderr_text().contains("pinned toolchain gnat"),
        "{}",
        repinned.stderr_text()
    );
    assert!(ws.read("kiln.lock").contains("name = \"make\""));
    // A different root is a different toolchain: every Ada action runs again.
    assert!(
        repinned.stderr_text().contains(" 0 from cache")
            && !repinned.stderr_text().contains(" 0 actions run"),
        "{}",
        repinned.stderr_text()
    );
}

#[test]
fn with_the_root_in_the_store_a_build_needs_no_mirror_and_without_it_names_the_package() {
    let ws = hermetic_engine("ws");
    ws.kiln().run(["build", "--no-images"]).ok("pinning build");
    ws.kiln().run(["clean"]).ok("clean");
    // Nothing listens on port 9 of loopback: any request fails at once.
    let offline = ws
        .kiln()
        .env("KILN_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
        .run(["build", "--locked", "--no-images", "geometry"]);
    offline.assert_ok("offline build with the root materialised");

    // An empty store: the root must be fetched, and the mirror is unreachable.
    ws.kiln().run(["clean"]).ok("clean");
    let empty = ws.scratch().join("empty-store");
    let failed = ws
        .kiln()
        .env("KILN_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
        .env(DEBIAN_STORE_ENV, &empty)
        .run(["build", "--locked", "--no-images", "geometry"]);
    assert_eq!(failed.code(), Some(1), "{}", failed.stderr_text());
    let err = failed.stderr_text();
    // The toolchain, the package and version, and where it was to come from.
    assert!(err.contains("error: toolchain `g"), "{err}");
    assert!(err.contains("fetching "), "{err}");
    assert!(
        err.contains("cannot reach http://127.0.0.1:9/debian/pool/"),
        "{err}"
    );
    assert!(!ws.path("out/bin/geometry").exists());
    // Nothing half-made is left as if it were whole: no root appeared.
    assert!(
        !empty.join("roots").exists()
            || fs::read_dir(empty.join("roots/v2")).map_or(true, |mut d| d.next().is_none())
    );
}

/// A tmpfs mounted for one test, unmounted when dropped (the test runs as root, as CI does).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, bytes: u64) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs at {} (needs root)", at.display());
        Tmpfs(at.to_path_buf())
    }

    fn resize(&self, bytes: u64) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "resizing {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_while_extracting_is_a_clear_error_and_the_next_run_finishes_the_job() {
    let ws = hermetic_engine("ws");
    // The repository's own lock pins the built-in toolchains this workspace uses (its services
    // are others).
    let repo_lock = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("kiln.lock"));
    let mut lock: toml::Table = toml::from_str(&repo_lock.unwrap()).unwrap();
    lock.remove("image");
    ws.write("kiln.lock", &toml::to_string(&lock).unwrap());
    // A store on a small disk that holds the downloaded .debs with 16 MiB to spare: the trees
    // unpacked from them (hundreds of MiB) cannot fit.
    let shared = std::env::var_os(DEBIAN_STORE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| support::kiln::shared_debian_store().join("debian"));
    // Make sure the shared store has every pinned .deb (a no-image build fetches what is missing).
    ws.kiln()
        .run(["build", "--locked", "--no-images", "hello"])
        .ok("filling the shared store");
    fs::remove_dir_all(ws.path("out")).unwrap();
    let blobs = shared.join("blobs");
    let size: u64 = walk_files(&blobs)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    let disk = Tmpfs::mount(&ws.scratch().join("small-disk"), size + (16 << 20));
    let store = disk.0.join("debian");
    for f in walk_files(&blobs) {
        let to = store.join(f.strip_prefix(&shared).unwrap());
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(&f, &to).unwrap();
    }
    let offline = [
        (DEBIAN_STORE_ENV, store.to_str().unwrap()),
        ("KILN_DEBIAN_MIRROR", "http://127.0.0.1:9/debian"),
    ];

    let full = ws.kiln().envs(&offline).run(["build", "--locked"]);
    let err = full.stderr_text();
    assert_eq!(full.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    // The error names the package being unpacked, with its version.
    assert!(
        err.lines()
            .any(|l| l.contains("unpacking ") && l.contains(" (")),
        "{err}"
    );
    assert!(!ws.path("out/bin").exists(), "{err}");
    // Nothing half-extracted is left where a later run would take it: every tree is whole, no
    // root is materialised, the staging area is empty.
    for tree in dirs_in(&store.join("trees")) {
        assert!(tree.join("control.json").is_file(), "{}", tree.display());
    }
    assert!(
        dirs_in(&store.join("roots")).is_empty(),
        "{:?}",
        dirs_in(&store.join("roots"))
    );
    let left: Vec<_> = fs::read_dir(store.join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // With room again the next run finishes what was left, offline.
    disk.resize(4 << 30);
    ws.kiln()
        .envs(&offline)
        .run(["build", "--locked"])
        .ok("build after the disk was grown");
    assert!(ws.path("out/bin/hello").is_file());
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The directories two levels under a store area: `trees/<format>/<digest>`,
/// `roots/<format>/<set digest>`.
fn dirs_in(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for format in fs::read_dir(dir).into_iter().flatten().flatten() {
        for e in fs::read_dir(format.path()).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}
