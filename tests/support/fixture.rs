//! Fixture workspaces for tests: each test copies one into its own temporary directory (and
//! uses its own cache), so tests never see each other's out/ or cache entries.

use std::path::{Path, PathBuf};

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

/// A fresh copy of `fixtures/engine` (two libraries, two services, two tests) at `dir/ws`.
pub fn engine_workspace(dir: &Path) -> PathBuf {
    let root = dir.join("ws");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/engine"),
        &root,
    );
    root
}
