//! A kiln workspace of one test's own: a temporary directory holding the workspace root (`ws/`)
//! and a cache (`cache/`) beside it, so tests never see each other's `out/` or cache entries.
//! The workspace is either written from a list of files or copied from a directory under
//! `fixtures/`; either way it is removed when the [`Workspace`] drops.

use std::path::{Path, PathBuf};

use super::kiln::Kiln;

pub struct Workspace {
    tmp: tempfile::TempDir,
    root: PathBuf,
    cache: PathBuf,
}

impl Workspace {
    /// A workspace holding exactly `files` (path relative to the root, text), plus the
    /// `recipes/` directory that makes a directory a workspace.
    pub fn with_files(files: &[(&str, &str)]) -> Workspace {
        let ws = Workspace::empty("ws");
        std::fs::create_dir_all(ws.root.join("recipes")).unwrap();
        for (rel, text) in files {
            ws.write(rel, text);
        }
        ws
    }

    /// A fresh copy of `fixtures/<name>` at `ws/`.
    pub fn fixture(name: &str) -> Workspace {
        Workspace::fixture_at(name, "ws")
    }

    /// A fresh copy of `fixtures/engine` (two libraries, two services, two tests).
    pub fn engine() -> Workspace {
        Workspace::fixture("engine")
    }

    /// A fresh copy of `fixtures/<name>` at `dir` (relative, maybe nested) inside the temporary
    /// directory, for tests where the workspace's own path matters.
    pub fn fixture_at(name: &str, dir: &str) -> Workspace {
        let ws = Workspace::empty(dir);
        copy_dir(&fixture_dir(name), &ws.root);
        ws
    }

    fn empty(dir: &str) -> Workspace {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join(dir);
        std::fs::create_dir_all(&root).unwrap();
        Workspace {
            cache: tmp.path().join("cache"),
            root,
            tmp,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The workspace's own cache directory (`KILN_CACHE` of [`Workspace::kiln`]).
    pub fn cache(&self) -> &Path {
        &self.cache
    }

    /// The temporary directory holding the root and the cache, for a test's other files (a
    /// home directory, a docker config, a second checkout).
    pub fn scratch(&self) -> &Path {
        self.tmp.path()
    }

    /// `rel` under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        let p = self.path(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
    }

    /// Writes `text` to `rel` under the root, making its directories.
    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    }

    /// Replaces the first `from` in `rel` with `to`; `from` must be there, so a fixture change
    /// cannot turn an edit into a silent no-op.
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        assert!(text.contains(from), "{rel} does not contain {from:?}");
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// kiln in this workspace with its own cache, as CI runs it, and without the user's kiln
    /// config (a `[remote]` there would serve builds from someone's remote cache).
    pub fn kiln(&self) -> Kiln {
        Kiln::at(&self.root)
            .env("KILN_CACHE", &self.cache)
            .env("CI", "1")
            .env("XDG_CONFIG_HOME", self.tmp.path().join("config"))
    }

    /// Runs `out/bin/<name>`, which must succeed, and returns its stdout.
    pub fn run_bin(&self, name: &str) -> String {
        let bin = self.root.join("out/bin").join(name);
        let out = std::process::Command::new(&bin)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
        assert!(
            out.status.success(),
            "{name} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// `fixtures/<name>` in the repository.
pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Copies a directory tree, leaving out any `out/` (a fixture's own build products).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_name() == "out" {
            continue;
        }
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}
