//! The input root: a flat list of files becomes a Merkle tree of REAPI `Directory` messages.
//!
//! The root's digest enters the Action digest, so the encoding must be canonical (REAPI's
//! rules): names sorted by code point within each directory, files and subdirectories in their
//! own lists, no `.`/`..`/empty components, no absolute paths, no name used twice. prost writes
//! fields in tag order, which is the canonical order. No node properties (mtime, mode) are
//! written: they would make equal inputs hash differently on two machines.

use std::collections::BTreeMap;

use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
use prost::Message;

use super::blob::BlobDigest;
use super::error::RemoteError;

/// One file of an action's input root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    /// Relative to the input root (kiln: the workspace), `/`-separated.
    pub path: String,
    pub blob: BlobDigest,
    pub executable: bool,
}

/// The encoded tree: the root's digest and every `Directory` blob (root included), which remote
/// execution uploads and the cache does not need.
#[derive(Clone, Debug)]
pub struct InputRoot {
    pub digest: BlobDigest,
    pub directories: Vec<(BlobDigest, Vec<u8>)>,
}

#[derive(Default)]
struct Dir {
    files: BTreeMap<String, (BlobDigest, bool)>,
    dirs: BTreeMap<String, Dir>,
}

/// Whether an input root can hold `path` (relative, no `.`, `..` or empty component).
pub fn is_root_path(path: &str) -> bool {
    components(path, |reason| RemoteError::InputPath {
        path: String::new(),
        reason,
    })
    .is_ok()
}

/// Checks a relative path and splits it into its components.
pub fn components(
    path: &str,
    err: impl Fn(&'static str) -> RemoteError,
) -> Result<Vec<&str>, RemoteError> {
    if path.is_empty() {
        return Err(err("it is empty"));
    }
    if path.starts_with('/') {
        return Err(err("it is absolute"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    for p in &parts {
        match *p {
            "" => return Err(err("it has an empty component")),
            "." | ".." => return Err(err("it has a '.' or '..' component")),
            _ if p.contains('\0') => return Err(err("it has a NUL byte")),
            _ => {}
        }
    }
    Ok(parts)
}

pub fn input_root(files: &[InputFile]) -> Result<InputRoot, RemoteError> {
    let mut root = Dir::default();
    for f in files {
        let err = |reason| RemoteError::InputPath {
            path: f.path.clone(),
            reason,
        };
        let parts = components(&f.path, err)?;
        let (name, dirs) = parts.split_last().expect("components are never empty");
        let mut d = &mut root;
        for part in dirs {
            if d.files.contains_key(*part) {
                return Err(err("a parent of it is also an input file"));
            }
            d = d.dirs.entry(part.to_string()).or_default();
        }
        if d.dirs.contains_key(*name) {
            return Err(err("it is also a directory of other inputs"));
        }
        match d.files.insert(name.to_string(), (f.blob, f.executable)) {
            Some(prev) if prev != (f.blob, f.executable) => {
                return Err(err("it is given twice with different contents"));
            }
            _ => {}
        }
    }
    let mut directories = Vec::new();
    let digest = encode(&root, &mut directories);
    Ok(InputRoot {
        digest,
        directories,
    })
}

fn encode(d: &Dir, out: &mut Vec<(BlobDigest, Vec<u8>)>) -> BlobDigest {
    let msg = reapi::Directory {
        files: d
            .files
            .iter()
            .map(|(name, (blob, executable))| reapi::FileNode {
                name: name.clone(),
                digest: Some(blob.to_proto()),
                is_executable: *executable,
                node_properties: None,
            })
            .collect(),
        directories: d
            .dirs
            .iter()
            .map(|(name, sub)| reapi::DirectoryNode {
                name: name.clone(),
                digest: Some(encode(sub, out).to_proto()),
            })
            .collect(),
        symlinks: Vec::new(),
        node_properties: None,
    };
    let bytes = msg.encode_to_vec();
    let digest = BlobDigest::of(&bytes);
    out.push((digest, bytes));
    digest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &[u8]) -> InputFile {
        InputFile {
            path: path.into(),
            blob: BlobDigest::of(content),
            executable: false,
        }
    }

    #[test]
    fn the_tree_nests_directories_in_sorted_order() {
        let root = input_root(&[
            file("src/b.cpp", b"b"),
            file("include/x.h", b"x"),
            file("src/a.cpp", b"a"),
            file("top", b"t"),
        ])
        .unwrap();
        // include, src, root (children before parents).
        assert_eq!(root.directories.len(), 3);
        let (d, bytes) = root.directories.last().unwrap();
        assert_eq!(*d, root.digest);
        let top = reapi::Directory::decode(bytes.as_slice()).unwrap();
        let names: Vec<_> = top.directories.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["include", "src"]);
        assert_eq!(top.files[0].name, "top");
        let src = reapi::Directory::decode(root.directories[1].1.as_slice()).unwrap();
        let names: Vec<_> = src.files.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a.cpp", "b.cpp"]);
    }

    #[test]
    fn order_of_the_list_does_not_matter_but_contents_and_mode_do() {
        let a = input_root(&[file("x/a", b"1"), file("x/b", b"2")]).unwrap();
        let b = input_root(&[file("x/b", b"2"), file("x/a", b"1")]).unwrap();
        assert_eq!(a.digest, b.digest);
        let c = input_root(&[file("x/b", b"2"), file("x/a", b"3")]).unwrap();
        assert_ne!(a.digest, c.digest, "file contents ignored");
        let mut exe = file("x/a", b"1");
        exe.executable = true;
        let d = input_root(&[exe, file("x/b", b"2")]).unwrap();
        assert_ne!(a.digest, d.digest, "executable bit ignored");
        let e = input_root(&[file("y/a", b"1"), file("x/b", b"2")]).unwrap();
        assert_ne!(a.digest, e.digest, "paths ignored");
    }

    #[test]
    fn unusable_paths_are_refused() {
        for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/"] {
            assert!(input_root(&[file(bad, b"")]).is_err(), "{bad:?} accepted");
        }
        assert!(input_root(&[file("a", b"1"), file("a/b", b"2")]).is_err());
        assert!(input_root(&[file("a/b", b"1"), file("a", b"2")]).is_err());
        assert!(input_root(&[file("a", b"1"), file("a", b"2")]).is_err());
        input_root(&[file("a", b"1"), file("a", b"1")]).unwrap();
    }
}
