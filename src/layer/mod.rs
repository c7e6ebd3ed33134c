//! Deterministic layers: a sorted list of entries becomes a tar stream, gzip-compressed, named by
//! the sha256 of the tar (`diff_id`) and of the gzip (`digest`).
//!
//! What must stay stable (each item changes every layer digest when it changes):
//! - tar: entries sorted by path, every parent directory present, uid/gid 0 unless an entry says
//!   otherwise, no user/group names, mode as given by the planner (never the host's umask),
//!   mtime = SOURCE_DATE_EPOCH, no atime/ctime/xattrs; ustar headers, with a PAX `path`/`linkpath`
//!   record only when a name does not fit ustar's 100+155 bytes. See [`tar`].
//! - gzip: flate2 1.0.35 with its pure-Rust miniz_oxide backend at level [`GZIP_LEVEL`], gzip
//!   header mtime 0, no file name, OS byte 255. A different flate2 version, backend or level
//!   produces different (equally valid) bytes, hence different digests and cache misses everywhere.
//! - [`cache::FORMAT_VERSION`] must be bumped whenever any of the above changes, so cached layers
//!   written by an older kiln are not reused.

pub mod cache;
pub mod tar;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::digest::Digest;

/// gzip level for every layer; see the module comment before changing it.
pub const GZIP_LEVEL: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} changed while the layer was written (expected {expected} bytes, read {actual})"
    )]
    Changed {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("writing layer to {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("layer entry {0:?} is not an absolute, normalised image path")]
    BadPath(String),
}

/// Bytes of a regular file: a host file (streamed when the layer is written) or bytes kiln made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Host(PathBuf),
    Bytes(Arc<Vec<u8>>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File {
        content: Content,
        size: u64,
        digest: Digest,
    },
    Symlink {
        target: String,
    },
}

/// One tar entry. `path` is absolute in the image (`/usr/lib/...`); the tar name drops the '/'.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The planned content of one layer. Immutable once built: [`write`](cache::LayerCache::get_or_write)
/// only reads it.
#[derive(Clone, Debug, Default)]
pub struct LayerSpec {
    entries: BTreeMap<String, Entry>,
    /// Seconds since the epoch for every entry's mtime.
    pub mtime: i64,
}

impl LayerSpec {
    pub fn new(mtime: i64) -> LayerSpec {
        LayerSpec {
            entries: BTreeMap::new(),
            mtime,
        }
    }

    /// Adds an entry, creating missing parent directories (0755, root) so extractors never
    /// invent them with their own defaults. A later entry for the same path replaces the earlier.
    pub fn insert(&mut self, entry: Entry) -> Result<(), LayerError> {
        check_path(&entry.path)?;
        let mut parent = parent_of(&entry.path);
        while let Some(p) = parent {
            if p == "/" {
                break;
            }
            self.entries.entry(p.to_string()).or_insert_with(|| Entry {
                path: p.to_string(),
                kind: EntryKind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
            });
            parent = parent_of(p);
        }
        self.entries.insert(entry.path.clone(), entry);
        Ok(())
    }

    pub fn file(
        &mut self,
        path: &str,
        content: Content,
        size: u64,
        digest: Digest,
        mode: u32,
    ) -> Result<(), LayerError> {
        self.insert(Entry {
            path: path.into(),
            kind: EntryKind::File {
                content,
                size,
                digest,
            },
            mode,
            uid: 0,
            gid: 0,
        })
    }

    pub fn bytes(&mut self, path: &str, bytes: Vec<u8>, mode: u32) -> Result<(), LayerError> {
        let digest = Digest::of(&bytes);
        let size = bytes.len() as u64;
        self.file(path, Content::Bytes(Arc::new(bytes)), size, digest, mode)
    }

    pub fn dir(&mut self, path: &str, mode: u32, owner: u32) -> Result<(), LayerError> {
        self.insert(Entry {
            path: path.into(),
            kind: EntryKind::Dir,
            mode,
            uid: owner,
            gid: owner,
        })
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), LayerError> {
        self.insert(Entry {
            path: path.into(),
            kind: EntryKind::Symlink {
                target: target.into(),
            },
            mode: 0o777,
            uid: 0,
            gid: 0,
        })
    }

    /// Entries in tar order (sorted by path; a directory sorts before its contents).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A written layer blob.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    /// sha256 of the gzip blob (the manifest's layer digest).
    pub digest: Digest,
    /// sha256 of the uncompressed tar (the config's rootfs diff_id).
    pub diff_id: Digest,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    /// Where the gzip blob lives (in the layer cache).
    #[serde(skip)]
    pub blob: PathBuf,
}

fn parent_of(path: &str) -> Option<&str> {
    let idx = path.rfind('/')?;
    Some(if idx == 0 { "/" } else { &path[..idx] })
}

fn check_path(path: &str) -> Result<(), LayerError> {
    let ok = path.starts_with('/')
        && path.len() > 1
        && !path.ends_with('/')
        && path[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(LayerError::BadPath(path.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_added_and_sorted_first() {
        let mut spec = LayerSpec::new(0);
        spec.bytes("/etc/ssl/x", b"x".to_vec(), 0o644).unwrap();
        let paths: Vec<_> = spec.entries().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/etc", "/etc/ssl", "/etc/ssl/x"]);
    }

    #[test]
    fn unnormalised_paths_are_refused() {
        let mut spec = LayerSpec::new(0);
        for bad in ["etc/x", "/etc/../x", "/etc//x", "/", "/etc/"] {
            assert!(spec.bytes(bad, vec![], 0o644).is_err(), "{bad}");
        }
    }
}
