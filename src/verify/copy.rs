//! The fresh copy `kiln verify` rebuilds: what a new clone of the repository would contain.
//!
//! In a git checkout that is exactly the files git tracks (`git ls-files`, submodules included),
//! with their working-tree contents, so an untracked file the build silently depends on shows up
//! as a failure here rather than on the release machine. Outside git it is everything but `out/`.
//!
//! Modification times are deliberately *not* preserved: a clone gets fresh ones, and a build that
//! leaks them (`__TIMESTAMP__`) must be caught, not hidden. Permission bits are copied (git
//! tracks the executable bit), symlinks are recreated as symlinks.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::VerifyError;
use crate::exec::{Command, Env, Runner};

/// How the copy was chosen, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopySource {
    GitTracked,
    Tree,
}

/// Copies the workspace at `root` into `dest` (created); returns how files were chosen. git is
/// asked through `runner`.
pub fn copy_workspace(
    runner: &dyn Runner,
    root: &Path,
    dest: &Path,
) -> Result<CopySource, VerifyError> {
    let (files, source) = match git_tracked(runner, root) {
        Some(files) => (files, CopySource::GitTracked),
        None => (walk(root)?, CopySource::Tree),
    };
    if !files.iter().any(|f| f.starts_with("recipes")) {
        return Err(VerifyError::Copy {
            path: root.to_path_buf(),
            reason: match source {
                CopySource::GitTracked => {
                    "git tracks no file under recipes/; kiln verify rebuilds from tracked files \
                     only, so add and commit the workspace first"
                }
                CopySource::Tree => "the workspace has no recipes/ directory",
            }
            .into(),
        });
    }
    for rel in &files {
        copy_one(&root.join(rel), &dest.join(rel))?;
    }
    Ok(source)
}

/// Tracked files relative to `root`, or None when `root` is not inside a git work tree (or git
/// is not installed).
fn git_tracked(runner: &dyn Runner, root: &Path) -> Option<Vec<PathBuf>> {
    let cmd = Command::new("git")
        .args(["ls-files", "-z", "--cached", "--recurse-submodules"])
        .cwd(root)
        .env(Env::inherited());
    let out = runner.run(&cmd).ok()?;
    if !out.success {
        return None;
    }
    let mut files: Vec<PathBuf> = out
        .stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(OsStr::from_bytes(p)))
        // Tracked but deleted in the working tree: the original build did not see it either.
        .filter(|p| root.join(p).symlink_metadata().is_ok())
        .collect();
    files.sort();
    files.dedup();
    Some(files)
}

/// Every file and symlink under `root` except the top-level `out/`, relative to `root`.
fn walk(root: &Path) -> Result<Vec<PathBuf>, VerifyError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = std::fs::read_dir(&dir).map_err(VerifyError::io("listing", &dir))?;
        for e in entries {
            let e = e.map_err(VerifyError::io("listing", &dir))?;
            let child = rel.join(e.file_name());
            if child == crate::workspace::OutDir::relative().path() {
                continue;
            }
            let ty = e
                .file_type()
                .map_err(VerifyError::io("reading", e.path()))?;
            if ty.is_dir() {
                stack.push(child);
            } else if ty.is_file() || ty.is_symlink() {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn copy_one(from: &Path, to: &Path) -> Result<(), VerifyError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(VerifyError::io("creating", parent))?;
    }
    let meta = from
        .symlink_metadata()
        .map_err(VerifyError::io("reading", from))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from).map_err(VerifyError::io("reading", from))?;
        std::os::unix::fs::symlink(&target, to).map_err(VerifyError::io("creating", to))?;
    } else {
        std::fs::copy(from, to).map_err(VerifyError::io("copying", from))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::scripted::{self, Scripted};

    /// A workspace with recipes/a.toml, src/a.c and an untracked scratch file.
    fn workspace() -> tempfile::TempDir {
        let src = tempfile::tempdir().unwrap();
        let root = src.path();
        std::fs::create_dir_all(root.join("recipes")).unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("recipes/a.toml"), "kind = \"library\"\n").unwrap();
        std::fs::write(root.join("src/a.c"), "int a;\n").unwrap();
        std::fs::write(root.join("scratch.txt"), "untracked").unwrap();
        src
    }

    #[test]
    fn in_a_checkout_exactly_the_files_git_lists_are_copied() {
        let src = workspace();
        // Tracked but deleted from the working tree: skipped, as the original build never saw it.
        let runner = scripted::replying(scripted::ok(
            "src/a.c\0recipes/a.toml\0gone.c\0src/a.c\0".as_bytes(),
        ));
        let dst = tempfile::tempdir().unwrap();
        let to = dst.path().join("ws");
        assert_eq!(
            copy_workspace(&runner, src.path(), &to).unwrap(),
            CopySource::GitTracked
        );
        assert!(to.join("recipes/a.toml").is_file());
        assert!(to.join("src/a.c").is_file());
        assert!(
            !to.join("scratch.txt").exists(),
            "an untracked file was copied"
        );
        assert!(!to.join("gone.c").exists());
        let calls = runner.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].program, Path::new("git"));
        assert_eq!(
            calls[0].args,
            ["ls-files", "-z", "--cached", "--recurse-submodules"]
        );
        assert_eq!(calls[0].cwd.as_deref(), Some(src.path()));
        assert_eq!(calls[0].env, Env::inherited());
    }

    #[test]
    fn outside_a_checkout_or_without_git_the_tree_is_copied() {
        let not_a_repo = scripted::replying(scripted::failed(
            128,
            "fatal: not a git repository (or any of the parent directories): .git",
        ));
        let no_git = Scripted::new(scripted::not_found);
        for runner in [&not_a_repo as &dyn Runner, &no_git] {
            let src = workspace();
            let dst = tempfile::tempdir().unwrap();
            let to = dst.path().join("ws");
            assert_eq!(
                copy_workspace(runner, src.path(), &to).unwrap(),
                CopySource::Tree
            );
            assert!(to.join("scratch.txt").is_file());
        }
    }

    #[test]
    fn git_tracking_no_recipe_is_an_error_that_says_to_commit() {
        let src = workspace();
        let runner = scripted::replying(scripted::ok("src/a.c\0".as_bytes()));
        let dst = tempfile::tempdir().unwrap();
        let e = copy_workspace(&runner, src.path(), &dst.path().join("ws")).unwrap_err();
        assert!(e.to_string().contains("commit the workspace first"), "{e}");
    }

    #[test]
    fn a_plain_tree_is_copied_without_out_and_with_symlinks() {
        let src = tempfile::tempdir().unwrap();
        let root = src.path();
        std::fs::create_dir_all(root.join("recipes")).unwrap();
        std::fs::write(root.join("recipes/a.toml"), "kind = \"library\"\n").unwrap();
        std::fs::create_dir_all(root.join("out/bin")).unwrap();
        std::fs::write(root.join("out/bin/a"), "old").unwrap();
        std::os::unix::fs::symlink("recipes/a.toml", root.join("link")).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let to = dst.path().join("ws");
        assert_eq!(
            copy_workspace(&Scripted::new(scripted::not_found), root, &to).unwrap(),
            CopySource::Tree
        );
        assert!(to.join("recipes/a.toml").is_file());
        assert!(!to.join("out").exists());
        assert_eq!(
            std::fs::read_link(to.join("link")).unwrap(),
            Path::new("recipes/a.toml")
        );
    }
}
