//! Unpacking a .deb into a package tree, the way dpkg would lay it out on a merged-/usr system
//! but without running anything from it.
//!
//! A .deb is an `ar` archive: `debian-binary`, `control.tar[.gz|.xz|.zst]` (metadata and
//! maintainer scripts) and `data.tar[.gz|.xz|.zst]` (the files). Only `control` and `md5sums` are
//! read from the first; maintainer scripts are never run, so a tree is exactly the package's
//! files. The second is unpacked with these rules:
//! - usr-merge: `bin`, `sbin`, `lib`, `lib32`, `lib64`, `libx32` are symlinks into `usr/`,
//!   created first, and entries under them land in `usr/` (bookworm's packages still ship
//!   `/lib/x86_64-linux-gnu/...`).
//! - Nothing outside the tree: absolute paths and `..` are refused, no entry is written through
//!   a symlink, a relative symlink may not climb above the tree (absolute ones are fine: they
//!   resolve inside whatever root the tree becomes part of), hard links must name a file
//!   already unpacked, and device nodes and fifos are refused.
//! - Modes: files keep their permission bits minus write permission and setuid/setgid (every
//!   root hardlinks the same inode, so a write through one would change all of them);
//!   directories stay owner-writable so the cache can be cleaned. Owners and times are not
//!   kept: nothing inside the sandbox observes them.
//!
//! The tree is written to a staging directory and renamed into place, so a tree that exists is
//! complete. On disk: `<tree>/root/` (the files) and `<tree>/control.json` ([`DebControl`]).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::control;
use super::store::Downloads;
use crate::digest::Digest;

/// Bump when the tree layout or the unpacking rules change: trees are found by this and the
/// .deb's digest, so old trees are then simply not found.
pub const TREE_FORMAT: &str = "v1";

pub const USR_MERGED: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// A .deb's own metadata, kept next to its tree for SBOMs and `status.d` records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebControl {
    pub package: String,
    pub version: String,
    pub architecture: String,
    pub source: String,
    pub source_version: String,
    /// Path (as dpkg records it, without a leading `/`) → md5, from the .deb's `md5sums`.
    pub md5sums: BTreeMap<String, String>,
    /// The whole `control` paragraph, as shipped.
    pub control: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("{deb}: {problem}")]
    Format { deb: String, problem: String },
    #[error("{deb}: unsafe entry {entry:?}: {problem}")]
    Unsafe {
        deb: String,
        entry: String,
        problem: &'static str,
    },
    #[error("{deb}: reading the archive")]
    Read {
        deb: String,
        #[source]
        source: io::Error,
    },
    #[error("{deb}: writing {}", path.display())]
    Write {
        deb: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A complete package tree in the cache.
#[derive(Clone, Debug)]
pub struct Tree {
    pub dir: PathBuf,
    pub control: DebControl,
}

impl Tree {
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
}

pub fn tree_dir(downloads: &Downloads, deb: &Digest) -> PathBuf {
    downloads
        .root()
        .join("trees")
        .join(TREE_FORMAT)
        .join(deb.hex())
}

/// The tree of a .deb digest, if the cache has it (complete: trees appear only by rename).
pub fn existing_tree(downloads: &Downloads, deb: &Digest) -> Option<Tree> {
    let dir = tree_dir(downloads, deb);
    let control = serde_json::from_slice(&fs::read(dir.join("control.json")).ok()?).ok()?;
    Some(Tree { dir, control })
}

/// The tree of the .deb at `deb_path` (whose digest the caller has checked), unpacked unless
/// the cache already has it.
pub fn tree_for(
    downloads: &Downloads,
    deb_path: &Path,
    digest: &Digest,
) -> Result<Tree, ExtractError> {
    let name = deb_path.display().to_string();
    let dir = tree_dir(downloads, digest);
    let write_err = |path: &Path| {
        let (deb, path) = (name.clone(), path.to_path_buf());
        move |source| ExtractError::Write { deb, path, source }
    };
    if let Some(tree) = existing_tree(downloads, digest) {
        return Ok(tree);
    }
    let staging = downloads
        .staging_dir("tree")
        .map_err(write_err(&downloads.tmp_dir()))?;
    let control = unpack(deb_path, &staging.path().join("root"), &name)?;
    let json = serde_json::to_vec_pretty(&control).expect("control serialises");
    fs::write(staging.path().join("control.json"), json).map_err(write_err(staging.path()))?;
    let parent = dir.parent().expect("tree dir has a parent");
    fs::create_dir_all(parent).map_err(write_err(parent))?;
    let staged = staging.keep();
    if let Err(e) = fs::rename(&staged, &dir) {
        // Another process finished the same tree first: theirs is as good as ours.
        let _ = fs::remove_dir_all(&staged);
        if !dir.join("control.json").is_file() {
            return Err(write_err(&dir)(e));
        }
    }
    Ok(Tree { dir, control })
}

/// Unpacks `deb` into `dest` (which must not exist) and returns its control data.
pub fn unpack(deb: &Path, dest: &Path, name: &str) -> Result<DebControl, ExtractError> {
    let read_err = |source| ExtractError::Read {
        deb: name.to_string(),
        source,
    };
    let format = |problem: String| ExtractError::Format {
        deb: name.to_string(),
        problem,
    };
    let file = fs::File::open(deb).map_err(read_err)?;
    let mut archive = ar::Archive::new(io::BufReader::new(file));
    let mut control_files: Option<(String, String)> = None;
    let mut seen_data = false;
    let mut first = true;
    while let Some(entry) = archive.next_entry() {
        let mut entry = entry.map_err(read_err)?;
        let member = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        if first {
            if member != "debian-binary" {
                return Err(format(format!("not a .deb: first member is {member:?}")));
            }
            let mut v = String::new();
            entry.read_to_string(&mut v).map_err(read_err)?;
            if !v.starts_with("2.") {
                return Err(format(format!("unsupported .deb format {:?}", v.trim())));
            }
            first = false;
        } else if let Some(c) = member.strip_prefix("control.tar") {
            let reader = decompressor(c, Box::new(&mut entry)).map_err(format)?;
            control_files = Some(read_control(reader).map_err(read_err)?);
        } else if let Some(c) = member.strip_prefix("data.tar") {
            let reader = decompressor(c, Box::new(&mut entry)).map_err(format)?;
            create_dir(dest).map_err(|source| ExtractError::Write {
                deb: name.to_string(),
                path: dest.to_path_buf(),
                source,
            })?;
            unpack_data(reader, dest, name)?;
            seen_data = true;
        }
    }
    let (control_text, md5_text) =
        control_files.ok_or_else(|| format("no control.tar member".into()))?;
    if !seen_data {
        return Err(format("no data.tar member".into()));
    }
    let paragraph = control::parse(&control_text, &format!("{name}: control"))
        .map_err(|e| format(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| format("empty control file".into()))?;
    let field = |f: &str| {
        paragraph
            .get(f)
            .map(str::to_string)
            .ok_or_else(|| format(format!("control file has no {f} field")))
    };
    let (package, version) = (field("Package")?, field("Version")?);
    let (source, source_version) = match paragraph.get("Source") {
        None => (package.clone(), version.clone()),
        Some(s) => match s.split_once('(') {
            Some((n, v)) => (
                n.trim().to_string(),
                v.trim_end_matches(')').trim().to_string(),
            ),
            None => (s.trim().to_string(), version.clone()),
        },
    };
    let md5sums = md5_text
        .lines()
        .filter_map(|l| l.split_once(char::is_whitespace))
        .map(|(sum, path)| (path.trim().to_string(), sum.to_string()))
        .collect();
    Ok(DebControl {
        architecture: field("Architecture")?,
        package,
        version,
        source,
        source_version,
        md5sums,
        control: control_text,
    })
}

fn decompressor<'a>(suffix: &str, inner: Box<dyn Read + 'a>) -> Result<Box<dyn Read + 'a>, String> {
    Ok(match suffix {
        "" => inner,
        ".gz" => Box::new(flate2::read::GzDecoder::new(inner)),
        ".xz" => Box::new(xz2::read::XzDecoder::new(inner)),
        ".zst" => Box::new(
            ruzstd::decoding::StreamingDecoder::new(inner).map_err(|e| format!("zstd: {e}"))?,
        ),
        other => return Err(format!("unsupported compression {other:?}")),
    })
}

/// `./control` and `./md5sums` from the control archive.
fn read_control(reader: Box<dyn Read + '_>) -> io::Result<(String, String)> {
    let mut tar = tar::Archive::new(reader);
    let (mut control, mut md5sums) = (None, String::new());
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let name = path
            .strip_prefix("./")
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        match name.as_str() {
            "control" => {
                let mut s = String::new();
                entry.read_to_string(&mut s)?;
                control = Some(s);
            }
            "md5sums" => {
                entry.read_to_string(&mut md5sums)?;
            }
            _ => {}
        }
    }
    let control = control.ok_or_else(|| io::Error::other("control.tar has no control file"))?;
    Ok((control, md5sums))
}

fn create_dir(dest: &Path) -> io::Result<()> {
    fs::create_dir_all(dest)?;
    for d in USR_MERGED {
        fs::create_dir_all(dest.join("usr").join(d))?;
        symlink(format!("usr/{d}"), dest.join(d))?;
    }
    Ok(())
}

/// The path an archive entry lands at inside the tree (usr-merge applied), or why it may not.
pub fn tree_path(raw: &Path) -> Result<Option<PathBuf>, &'static str> {
    let mut parts: Vec<String> = Vec::new();
    for c in raw.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => return Err("contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("is absolute"),
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    if USR_MERGED.contains(&parts[0].as_str()) {
        parts.insert(0, "usr".into());
    }
    Ok(Some(parts.iter().collect()))
}

/// Whether a relative symlink at `link` (tree-relative) pointing to `target` stays in the tree.
fn stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return true;
    }
    let depth = link.components().count().saturating_sub(1);
    !crate::relpath::climbs_out(depth, target)
}

fn unpack_data(reader: Box<dyn Read + '_>, dest: &Path, name: &str) -> Result<(), ExtractError> {
    let read_err = |source| ExtractError::Read {
        deb: name.to_string(),
        source,
    };
    let mut tar = tar::Archive::new(reader);
    for entry in tar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry.path().map_err(read_err)?.into_owned();
        let unsafe_entry = |problem| ExtractError::Unsafe {
            deb: name.to_string(),
            entry: raw.display().to_string(),
            problem,
        };
        let Some(rel) = tree_path(&raw).map_err(unsafe_entry)? else {
            continue;
        };
        let target = dest.join(&rel);
        let write_err = |source| ExtractError::Write {
            deb: name.to_string(),
            path: rel.clone(),
            source,
        };
        // Every parent must be a real directory of the tree: a symlink planted by an earlier
        // entry must not carry a later one out of it.
        let mut parent = dest.to_path_buf();
        for c in rel.parent().into_iter().flat_map(Path::components) {
            parent.push(c);
            match fs::symlink_metadata(&parent) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(unsafe_entry("goes through a symlink or file")),
                Err(_) => fs::create_dir(&parent).map_err(write_err)?,
            }
        }
        let mode = entry.header().mode().map_err(read_err)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(unsafe_entry("directory over a non-directory")),
                Err(_) => fs::create_dir(&target).map_err(write_err)?,
            }
            fs::set_permissions(&target, fs::Permissions::from_mode((mode & 0o777) | 0o700))
                .map_err(write_err)?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            if fs::symlink_metadata(&target).is_ok() {
                return Err(unsafe_entry("appears twice"));
            }
            let mut out = fs::File::create_new(&target).map_err(write_err)?;
            io::copy(&mut entry, &mut out).map_err(write_err)?;
            fs::set_permissions(&target, fs::Permissions::from_mode(mode & 0o555))
                .map_err(write_err)?;
        } else if kind.is_symlink() {
            let link = entry
                .link_name()
                .map_err(read_err)?
                .ok_or_else(|| unsafe_entry("symlink without a target"))?
                .into_owned();
            if !stays_inside(&rel, &link) {
                return Err(unsafe_entry("symlink points outside the tree"));
            }
            symlink(&link, &target).map_err(write_err)?;
        } else if kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(read_err)?
                .ok_or_else(|| unsafe_entry("hard link without a target"))?;
            let Some(src) = tree_path(&link).map_err(unsafe_entry)? else {
                return Err(unsafe_entry("hard link to the root"));
            };
            let src = dest.join(src);
            if !fs::symlink_metadata(&src).is_ok_and(|m| m.is_file()) {
                return Err(unsafe_entry(
                    "hard link to something not unpacked before it",
                ));
            }
            fs::hard_link(&src, &target).map_err(write_err)?;
        } else {
            return Err(unsafe_entry(
                "device nodes and fifos are not allowed in a package tree",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usr_merge_moves_top_level_library_and_binary_paths() {
        assert_eq!(
            tree_path(Path::new("./lib/x86_64-linux-gnu/libc.so.6"))
                .unwrap()
                .unwrap(),
            Path::new("usr/lib/x86_64-linux-gnu/libc.so.6")
        );
        assert_eq!(
            tree_path(Path::new("./bin")).unwrap().unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(
            tree_path(Path::new("./usr/bin/g++-12")).unwrap().unwrap(),
            Path::new("usr/bin/g++-12")
        );
        assert_eq!(
            tree_path(Path::new("./library/x")).unwrap().unwrap(),
            Path::new("library/x")
        );
        assert_eq!(tree_path(Path::new("./")).unwrap(), None);
    }

    #[test]
    fn escaping_paths_are_refused() {
        assert_eq!(tree_path(Path::new("/etc/passwd")), Err("is absolute"));
        assert_eq!(
            tree_path(Path::new("./usr/../../etc")),
            Err("contains `..`")
        );
        assert!(stays_inside(
            Path::new("usr/bin/cc"),
            Path::new("../lib/gcc/cc1")
        ));
        assert!(stays_inside(
            Path::new("usr/bin/cc"),
            Path::new("/etc/alternatives/cc")
        ));
        assert!(!stays_inside(
            Path::new("usr/bin/cc"),
            Path::new("../../../etc/shadow")
        ));
        assert!(!stays_inside(Path::new("x"), Path::new("..")));
    }
}
