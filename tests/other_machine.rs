//! Two machines that differ in what they have installed build the same bytes.
//!
//! The other machine is a Debian 12 root made with debootstrap (scripts/fresh-machine's base:
//! minbase plus gcc, git, curl and python3; no g++, no GNAT, no wxWidgets) with bubblewrap and
//! kiln added, entered as / of a private mount namespace that also has a network namespace of its
//! own, so it cannot reach any mirror. It gets the workspace with this machine's kiln.lock, an
//! empty kiln cache and only the .debs this machine downloaded: it must extract the packages and
//! materialise the toolchain roots itself, offline, and every file of its out/ must equal ours.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::kiln::shared_debian_store;
use support::workspace::Workspace;

const EPOCH: &str = "1700000000";

/// scripts/fresh-machine's base root, made once per machine.
fn base_tarball() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fresh-machine");
    let out = Command::new(&script)
        .arg("--base-only")
        .output()
        .expect("running scripts/fresh-machine");
    assert!(
        out.status.success(),
        "scripts/fresh-machine --base-only: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("the script prints the tarball's path")
        .to_string();
    PathBuf::from(path)
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `out/` but kiln's own bookkeeping (`out/.kiln`, which holds inode numbers and
/// mtimes), with its SHA-256.
fn out_files(out: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, base: &Path, into: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == ".kiln" {
                continue;
            }
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                walk(&path, base, into);
            } else if ty.is_file() {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(fs::read(&path).unwrap());
                into.insert(rel, format!("{digest:x}"));
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(out, out, &mut files);
    files
}

/// Copies a directory tree (no special files in a workspace).
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        let ty = e.file_type().unwrap();
        if ty.is_dir() {
            copy_tree(&src, &dst, &[]);
        } else if ty.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

#[test]
fn a_debootstrapped_machine_without_compilers_builds_the_same_bytes_offline() {
    // This machine: the engine fixture on kiln's built-in (pinned Debian) toolchains.
    let here = Workspace::fixture_at("engine", "here");
    fs::remove_dir_all(here.path("toolchains")).unwrap();
    here.kiln()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .run(["build"])
        .ok("build here");
    let ours = out_files(&here.path("out"));
    assert!(
        ours.keys().any(|f| f.starts_with("images/")) && ours.keys().any(|f| f.starts_with("bin/")),
        "{ours:?}"
    );

    // The other machine.
    let root = here.scratch().join("machine");
    fs::create_dir_all(&root).unwrap();
    run(
        Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-xf")
            .arg(base_tarball()),
        "unpacking the base root",
    );
    for absent in [
        "usr/bin/g++",
        "usr/bin/gnat",
        "usr/bin/gnatmake",
        "usr/bin/wx-config",
    ] {
        assert!(
            !root.join(absent).exists(),
            "the other machine has {absent}"
        );
    }
    // bubblewrap, as an administrator would install it: its .deb, through dpkg.
    let debs = here.scratch().join("bwrap-deb");
    fs::create_dir_all(&debs).unwrap();
    run(
        Command::new("apt-get")
            .args(["download", "-q", "bubblewrap"])
            .current_dir(&debs),
        "apt-get download bubblewrap",
    );
    let deb = fs::read_dir(&debs)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    fs::copy(&deb, root.join("tmp/bubblewrap.deb")).unwrap();
    run(
        Command::new("chroot")
            .arg(&root)
            .args(["dpkg", "-i", "/tmp/bubblewrap.deb"]),
        "installing bubblewrap in the other machine",
    );
    fs::create_dir_all(root.join("usr/local/bin")).unwrap();
    fs::copy(env!("CARGO_BIN_EXE_kiln"), root.join("usr/local/bin/kiln")).unwrap();
    // The workspace with this machine's lock (no out/), an empty cache, and only the .debs.
    copy_tree(here.root(), &root.join("work/ws"), &["out"]);
    assert!(root.join("work/ws/kiln.lock").is_file());
    copy_tree(
        &shared_debian_store().join("debian/blobs"),
        &root.join("work/debian/blobs"),
        &[],
    );

    let script = r#"
        root="$1"
        mount --rbind "$root" "$root"
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount --rbind /sys "$root/sys"
        mount -t tmpfs tmpfs "$root/tmp"
        cd "$root"
        mkdir -p .old-root
        pivot_root . .old-root
        umount -l /.old-root
        rmdir /.old-root
        ip link set lo up 2>/dev/null || true
        exec env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
            SOURCE_DATE_EPOCH="$2" KILN_CACHE=/work/cache KILN_DEBIAN_CACHE=/work/debian \
            KILN_DEBIAN_MIRROR=http://127.0.0.1:9/debian \
            kiln -C /work/ws build --locked
    "#;
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--net",
            "--propagation",
            "private",
            "--",
            "bash",
            "-euc",
        ])
        .arg(script)
        .arg("other-machine")
        .arg(&root)
        .arg(EPOCH)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "build on the other machine: {stderr}");
    assert!(
        !stderr.contains("pinned toolchain"),
        "the other machine re-pinned: {stderr}"
    );

    let theirs = out_files(&root.join("work/ws/out"));
    let differ: Vec<&String> = ours
        .keys()
        .chain(theirs.keys())
        .filter(|f| ours.get(*f) != theirs.get(*f))
        .collect();
    assert!(
        differ.is_empty(),
        "files that differ between the machines: {differ:?}\n{stderr}"
    );
    // The other machine built from its own extraction of the .debs, not from ours.
    assert!(root.join("work/debian/trees").is_dir());
    // And `kiln verify`'s independent rebuild agrees here too.
    here.kiln()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .run(["verify"])
        .ok("kiln verify");
}
