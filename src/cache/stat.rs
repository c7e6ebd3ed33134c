//! A stat cache: file digests remembered under (size, mtime, inode), so a no-op build reads
//! metadata only. Stored per workspace in `out/.kiln/stat.json`; losing it only costs time.
//!
//! A file rewritten within the same nanosecond-resolution mtime with the same size would be
//! missed; kiln accepts that, like make and ninja accept far coarser timestamps.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::digest::Digest;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    ino: u64,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Table {
    entries: BTreeMap<PathBuf, (Stamp, Digest)>,
}

pub struct StatCache {
    path: PathBuf,
    table: Mutex<Table>,
    dirty: Mutex<bool>,
    /// Paths already checked by this process. A header included by a hundred translation units
    /// is statted once per build, not a hundred times; files kiln itself writes are forgotten
    /// when written. Like make and ninja, kiln does not notice edits made during a build.
    seen: Mutex<std::collections::HashMap<PathBuf, Digest>>,
}

impl StatCache {
    pub fn load(path: PathBuf) -> StatCache {
        let table = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        StatCache {
            path,
            table: Mutex::new(table),
            dirty: Mutex::new(false),
            seen: Mutex::default(),
        }
    }

    /// The digest of a file, or None if it does not exist. `path` is absolute or relative to cwd
    /// as the caller resolves it; the cache is keyed by that exact path.
    pub fn digest(&self, path: &Path) -> std::io::Result<Digest> {
        if let Some(d) = self.seen.lock().unwrap().get(path) {
            return Ok(*d);
        }
        let d = self.digest_uncached(path)?;
        self.seen.lock().unwrap().insert(path.to_path_buf(), d);
        Ok(d)
    }

    fn digest_uncached(&self, path: &Path) -> std::io::Result<Digest> {
        let m = std::fs::metadata(path)?;
        let stamp = Stamp {
            size: m.len(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ino: m.ino(),
        };
        if let Some((s, d)) = self.table.lock().unwrap().entries.get(path) {
            if *s == stamp {
                return Ok(*d);
            }
        }
        let (d, _) = Digest::of_file(path)?;
        self.table
            .lock()
            .unwrap()
            .entries
            .insert(path.to_path_buf(), (stamp, d));
        *self.dirty.lock().unwrap() = true;
        Ok(d)
    }

    pub fn forget(&self, path: &Path) {
        self.seen.lock().unwrap().remove(path);
        self.table.lock().unwrap().entries.remove(path);
    }

    pub fn save(&self) -> std::io::Result<()> {
        if !*self.dirty.lock().unwrap() {
            return Ok(());
        }
        let bytes =
            serde_json::to_vec(&*self.table.lock().unwrap()).map_err(std::io::Error::other)?;
        super::atomic_write(&self.path, &bytes)
    }
}
