//! The toolchain root: every package tree of a lock stacked into one directory, made once per
//! set digest ([`super::locked::set_digest`]) at `debian/roots/v2/<hex>/`.
//!
//! Files are hard links to the trees (no copy, so a root of a few hundred megabytes costs only
//! directory entries), directories are real, and the usr-merge links and the sandbox's mount
//! points (`proc`, `dev`, `tmp`, `ws`: a read-only root cannot grow them at mount time) are
//! made for every root. Two packages shipping the same path with different contents is an
//! error naming both: dpkg would refuse it too without a `Replaces`, and silently picking one
//! would make the root depend on the order of the stack.
//!
//! The root also gets the dpkg database its packages would have had once installed
//! (`var/lib/dpkg/status` from each .deb's own control paragraph, `info/<package>:<arch>.list`
//! from its files; a cross root holds one package name in two architectures), so the image code attributes files, reads versions and writes `status.d` from the
//! pinned packages exactly as it does from a host's dpkg, and scanners see the same.
//!
//! The root is built in a staging directory and renamed into place, so one that exists is
//! complete; a process killed half-way leaves only a staging directory, which the next run
//! sweeps (see [`Downloads::sweep_stale`]) before building the root again.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::extract::{Tree, USR_MERGED};
use super::store::Downloads;
use crate::digest::Digest;

/// Bumped whenever what a root holds changes (v2: the dpkg database).
pub const ROOT_FORMAT: &str = "v2";

/// Directories the sandbox mounts over; they must exist in a read-only root.
pub const MOUNT_POINTS: [&str; 4] = ["dev", "proc", "tmp", "ws"];

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("{path} is shipped by both {first} and {second} with different contents")]
    Conflict {
        path: String,
        first: String,
        second: String,
    },
    #[error("materialising the toolchain root at {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub fn root_dir(downloads: &Downloads, set: &Digest) -> PathBuf {
    downloads
        .root()
        .join("roots")
        .join(ROOT_FORMAT)
        .join(set.hex())
}

/// The root for `trees` (named by `set`, their set digest), built unless it exists.
pub fn materialise(
    downloads: &Downloads,
    set: &Digest,
    trees: &[Tree],
) -> Result<PathBuf, RootError> {
    let dir = root_dir(downloads, set);
    if dir.is_dir() {
        return Ok(dir);
    }
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RootError::Io { path, source }
    };
    downloads
        .sweep_stale()
        .map_err(io_err(&downloads.tmp_dir()))?;
    let staging = downloads
        .staging_dir("root")
        .map_err(io_err(&downloads.tmp_dir()))?;
    let stage = staging.path().join("root");
    fs::create_dir(&stage).map_err(io_err(&stage))?;
    for d in USR_MERGED {
        fs::create_dir_all(stage.join("usr").join(d)).map_err(io_err(&stage))?;
        symlink(format!("usr/{d}"), stage.join(d)).map_err(io_err(&stage))?;
    }
    for d in MOUNT_POINTS {
        fs::create_dir(stage.join(d)).map_err(io_err(&stage))?;
    }
    let mut sorted: Vec<&Tree> = trees.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.control.package, &a.control.architecture)
            .cmp(&(&b.control.package, &b.control.architecture))
    });
    // Owners are `package:arch`: a cross root holds `libc6:amd64` and `libc6:arm64` side by side.
    let mut owners: BTreeMap<PathBuf, String> = BTreeMap::new();
    for tree in &sorted {
        link_tree(
            &tree.root(),
            &stage,
            Path::new(""),
            &owner_label(tree),
            &mut owners,
        )?;
    }
    write_dpkg_database(&stage, &sorted, &owners).map_err(io_err(&stage))?;
    let parent = dir.parent().expect("root dir has a parent");
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    if let Err(e) = fs::rename(&stage, &dir) {
        // A concurrent kiln finished the same root first; the staging copy goes with `staging`.
        if !dir.is_dir() {
            return Err(io_err(&dir)(e));
        }
    }
    Ok(dir)
}

fn link_tree(
    from: &Path,
    to: &Path,
    rel: &Path,
    package: &str,
    owners: &mut BTreeMap<PathBuf, String>,
) -> Result<(), RootError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RootError::Io { path, source }
    };
    let src_dir = from.join(rel);
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(&src_dir)
        .map_err(io_err(&src_dir))?
        .collect::<Result<_, _>>()
        .map_err(io_err(&src_dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let rel = rel.join(e.file_name());
        let (src, dst) = (from.join(&rel), to.join(&rel));
        let kind = e.file_type().map_err(io_err(&src))?;
        let existing = fs::symlink_metadata(&dst).ok();
        let conflict = |owners: &BTreeMap<PathBuf, String>| RootError::Conflict {
            path: rel.display().to_string(),
            first: owners
                .get(&rel)
                .cloned()
                .unwrap_or_else(|| "kiln (usr-merge)".into()),
            second: package.to_string(),
        };
        if kind.is_dir() {
            match existing {
                Some(m) if m.is_dir() => {}
                Some(_) => return Err(conflict(owners)),
                None => fs::create_dir(&dst).map_err(io_err(&dst))?,
            }
            link_tree(from, to, &rel, package, owners)?;
            continue;
        }
        if let Some(m) = existing {
            if !same_entry(&src, &dst, &m).map_err(io_err(&dst))? {
                return Err(conflict(owners));
            }
            continue;
        }
        if kind.is_symlink() {
            let target = fs::read_link(&src).map_err(io_err(&src))?;
            symlink(target, &dst).map_err(io_err(&dst))?;
        } else {
            fs::hard_link(&src, &dst).map_err(io_err(&dst))?;
        }
        owners.insert(rel, package.to_string());
    }
    Ok(())
}

/// `var/lib/dpkg/status` and `info/<package>:<arch>.list` for the stacked packages. A path
/// shipped identically by two packages is listed for the first (by name), as `owners` has it.
fn write_dpkg_database(
    stage: &Path,
    trees: &[&Tree],
    owners: &BTreeMap<PathBuf, String>,
) -> io::Result<()> {
    let dpkg = stage.join("var/lib/dpkg");
    fs::create_dir_all(dpkg.join("info"))?;
    let mut status = String::new();
    for tree in trees {
        let c = &tree.control;
        for line in c.control.trim_end().lines() {
            // The archive's paragraph has no Status; an installed package's does, after Package.
            status.push_str(line);
            status.push('\n');
            if line.starts_with("Package:") {
                status.push_str("Status: install ok installed\n");
            }
        }
        status.push('\n');
        let mut list = String::new();
        let label = owner_label(tree);
        for (path, owner) in owners {
            if owner == &label {
                list.push('/');
                list.push_str(&path.to_string_lossy());
                list.push('\n');
            }
        }
        fs::write(
            dpkg.join("info")
                .join(format!("{}:{}.list", c.package, c.architecture)),
            list,
        )?;
    }
    fs::write(dpkg.join("status"), status)
}

/// How a tree's files are attributed while stacking: `package:arch`, dpkg's own name for an
/// installed package.
fn owner_label(tree: &Tree) -> String {
    format!("{}:{}", tree.control.package, tree.control.architecture)
}

/// Whether `src` can share `dst`'s path: same symlink target, or same file contents.
fn same_entry(src: &Path, dst: &Path, dst_meta: &fs::Metadata) -> io::Result<bool> {
    let src_meta = fs::symlink_metadata(src)?;
    if src_meta.file_type().is_symlink() || dst_meta.file_type().is_symlink() {
        return Ok(src_meta.file_type().is_symlink()
            && dst_meta.file_type().is_symlink()
            && fs::read_link(src)? == fs::read_link(dst)?);
    }
    Ok(src_meta.len() == dst_meta.len() && Digest::of_file(src)?.0 == Digest::of_file(dst)?.0)
}
