//! What the images of one build share, owned by whoever assembles them (the driver, for a
//! build) rather than held in process-wide statics: the dpkg database the runtime's files are
//! attributed from, and the memo of system-file digests kept in the layer cache.
//!
//! Both exist for speed: every image of a build asks the same question of the same 100k-path
//! dpkg index (slow to read, tens of MB to hold once per image thread), and hashes the same few
//! MB of libstdc++, wx and libc. Two contexts never share anything, so `kiln verify`'s
//! independent rebuild against its own cache reads none of the original's digests.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::strip::Binutils;
use crate::cache::stat::StatCache;
use crate::dpkg::{Database, DpkgError};

/// The memo's file name in the layer cache.
const MEMO_FILE: &str = "host-file-digests.json";

pub struct ImageContext {
    pub(super) binutils: Binutils,
    dpkg_root: PathBuf,
    database: Mutex<Option<Arc<Database>>>,
    host_digests: Arc<StatCache>,
}

impl ImageContext {
    /// This machine's binutils and dpkg database, with the memo in `layer_cache`.
    pub fn host(layer_cache: &Path) -> ImageContext {
        ImageContext::new(layer_cache, Binutils::default(), Path::new("/"))
    }

    /// Explicit binutils and dpkg root (a seam for other toolchains, package trees and tests).
    pub fn new(layer_cache: &Path, binutils: Binutils, dpkg_root: &Path) -> ImageContext {
        ImageContext {
            binutils,
            dpkg_root: dpkg_root.to_path_buf(),
            database: Mutex::new(None),
            host_digests: Arc::new(StatCache::load(layer_cache.join(MEMO_FILE))),
        }
    }

    /// A context over another root (a toolchain root, with its binutils) that shares this
    /// one's memo of file digests, so one build keeps one memo whatever roots its images use.
    pub fn sibling(&self, binutils: Binutils, dpkg_root: &Path) -> ImageContext {
        ImageContext {
            binutils,
            dpkg_root: dpkg_root.to_path_buf(),
            database: Mutex::new(None),
            host_digests: Arc::clone(&self.host_digests),
        }
    }

    /// Starts loading the dpkg database on a thread of its own, so that the load (tens of
    /// milliseconds for a full host database) overlaps the action phase instead of opening the
    /// image phase. The thread is detached: a build whose images all turn out fresh never waits
    /// for it, and the first image that needs the database waits for this load rather than
    /// starting another.
    pub fn preload(self: &Arc<Self>) {
        let me = Arc::clone(self);
        let _ = std::thread::Builder::new()
            .name("kiln-dpkg-preload".into())
            .spawn(move || {
                let _ = me.database();
            });
    }

    /// The dpkg database, loaded on first use; concurrent image threads wait for one load
    /// instead of racing.
    pub(super) fn database(&self) -> Result<Arc<Database>, DpkgError> {
        let mut db = self.database.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = &*db {
            return Ok(db.clone());
        }
        let loaded = Arc::new(Database::load(&self.dpkg_root)?);
        *db = Some(loaded.clone());
        Ok(loaded)
    }

    /// Digests of system files, remembered under their file metadata across builds. Only
    /// paths under the system prefixes go in (see [`super::is_system_file`]); stripped
    /// temporary copies and workspace files are hashed each time.
    pub(super) fn host_digests(&self) -> &StatCache {
        &self.host_digests
    }

    /// The root whose dpkg database and files the images of this context take their runtime
    /// from (`/` for this machine).
    pub fn dpkg_root(&self) -> &Path {
        &self.dpkg_root
    }

    /// Writes the memo back; losing it only costs hashing next time.
    pub fn save(&self) -> std::io::Result<()> {
        self.host_digests.save()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_loads_the_database_once_and_another_context_loads_its_own() {
        let root = tempfile::tempdir().unwrap();
        let dpkg = root.path().join("var/lib/dpkg");
        std::fs::create_dir_all(dpkg.join("info")).unwrap();
        std::fs::write(
            dpkg.join("status"),
            "Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n",
        )
        .unwrap();
        let cache = tempfile::tempdir().unwrap();
        let cx = ImageContext::new(cache.path(), Binutils::default(), root.path());
        let first = cx.database().unwrap();
        assert!(Arc::ptr_eq(&first, &cx.database().unwrap()));
        let other = ImageContext::new(cache.path(), Binutils::default(), root.path());
        assert!(!Arc::ptr_eq(&first, &other.database().unwrap()));
    }
}
