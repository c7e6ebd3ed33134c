//! The content-addressed cache shared by every workspace on the machine (`$KILN_CACHE`).
//!
//! Layout (all entries immutable once written, all written by temp file + rename, so concurrent
//! kiln processes can share one cache without locks):
//!
//! ```text
//! cas/<2 hex>/<64 hex>            file contents by sha256
//! ac/<base key>/<full key>.json   action results: discovered dependencies and output digests
//! probes/...                      memoised toolchain probes
//! layers/...                      image layers (owned by crate::layer::cache)
//! tests/<key>.json                passing test results (owned by crate::testing)
//! stats/builds.jsonl              one line of hit counts per build (see [`stats`])
//! config.toml                     optional limits (see [`config`])
//! tmp/                            staging for atomic writes
//! ```
//!
//! Nothing read back is trusted: every blob is hashed while it is copied out ([`Cache::restore`])
//! and a blob whose bytes do not match its name is deleted and reported as [`Damage`], so the
//! caller reruns the action instead of handing a damaged object file to the linker. An entry that
//! does not parse is deleted and counts as a miss.
//!
//! Use times are file mtimes, bumped on every hit (blobs and entries alike; reads never depend on
//! atime, which is often off). [`gc`] deletes least recently used files first and never anything
//! used within its grace period, which is what keeps a collection safe while other processes
//! build from the same cache: between a hit (which bumps) and the copy it leads to there are
//! milliseconds, not minutes, and a blob that vanishes anyway is a miss, not an error.
//!
//! An action's *base key* covers everything known before it runs (see [`key::KeyBuilder`]); the
//! dependencies a compiler reports afterwards (headers, Ada specs) are stored in the entry with
//! their digests, and a lookup is a hit only when all of them still have those digests. This is
//! ccache's "direct mode": it needs no preprocessor run to decide a hit.

pub mod config;
pub mod gc;
pub mod key;
pub mod stat;
pub mod stats;
pub mod verify;

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::digest::{Digest, Hasher};

/// Whether what is read back from the cache is hashed and compared with its digest. Always true
/// in kiln. Only `scripts/bench` builds a second binary with the `bench-unverified` feature, as
/// the anchor that measures what verification costs; never ship that build.
pub const VERIFY_READS: bool = !cfg!(feature = "bench-unverified");

/// Writes `bytes` to `path` atomically: readers see the old file or the new one, never a part.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = temp_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A new temp file in `dir` for a file that will be renamed into place (an output, a cache
/// entry): mode 0666 less the umask, as `File::create` would make it. tempfile's own default is
/// 0600, which would leave out/ and the cache readable by their owner alone: a CI step running
/// as another user, or a registry or container tool reading an OCI layout, could not read them.
pub fn new_temp_file_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
}

/// A temp file in `dir`, creating the directory as need be. [`gc`] removes empty entry
/// directories, and may do so at any moment before our temp file makes the directory
/// non-empty, so "exists" from `mkdir` proves nothing and "not found" from the temp file's
/// creation means: make the directory again. The attempts are bounded; only a collector
/// looping on this very directory wins more than a few times in a row.
fn temp_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    const ATTEMPTS: usize = 1000;
    let mut attempt = 0;
    loop {
        match new_temp_file_in(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < ATTEMPTS => {
                attempt += 1;
                match fs::create_dir_all(dir) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
            }
            r => return r,
        }
    }
}

/// Copies `src` to `dst` atomically, preserving the executable bit.
pub fn atomic_copy(src: &Path, dst: &Path, executable: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = temp_in(dst.parent().unwrap_or(Path::new(".")))?;
    fs::copy(src, tmp.path())?;
    let mode = if executable { 0o755 } else { 0o644 };
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))?;
    tmp.persist(dst).map_err(|e| e.error)?;
    Ok(())
}

/// The default cache directory: `$KILN_CACHE`, else `$XDG_CACHE_HOME/kiln` or `~/.cache/kiln`.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KILN_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("kiln")
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputEntry {
    /// File name of the output, relative to the action's output set.
    pub name: String,
    pub digest: Digest,
    pub executable: bool,
}

/// What a successful action produced, stored under its full key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActionEntry {
    /// Dependencies discovered by running the action, with the digests they had.
    pub deps: Vec<(String, Digest)>,
    pub outputs: Vec<OutputEntry>,
    /// Compiler warnings, replayed on a hit so they are not lost.
    pub stderr: String,
}

/// A blob found not to match its digest, and already deleted from the cache.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Damage {
    /// The digest the blob is stored under.
    pub blob: Digest,
    /// What its bytes hash to.
    pub actual: Digest,
    pub path: PathBuf,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cache blob {} ({}) is damaged (its bytes hash to {})",
            self.blob,
            self.path.display(),
            self.actual
        )
    }
}

/// Why [`Cache::restore`] did not restore a blob.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Not in the cache (never stored, or collected): a miss.
    #[error("blob {0} is not in the cache")]
    Missing(Digest),
    /// The blob's bytes did not match; it has been deleted: a miss that must be reported.
    #[error("{0}")]
    Damaged(Damage),
    #[error("restoring {}", dest.display())]
    Io {
        dest: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
    /// Damaged blobs this process found (and deleted), for one warning each at the end.
    damage: Arc<Mutex<Vec<Damage>>>,
}

/// Copy buffer: large enough that hashing, not syscalls, bounds a restore.
const COPY_BUF: usize = 256 * 1024;

impl Cache {
    pub fn open(root: PathBuf) -> io::Result<Cache> {
        fs::create_dir_all(root.join("tmp"))?;
        Ok(Cache {
            root,
            damage: Arc::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root.join("cas").join(&hex[..2]).join(hex)
    }

    /// Stores a file's contents; returns its digest. An existing blob of the right size is left
    /// alone (and marked used); one of the wrong size is damaged and replaced.
    pub fn put_file(&self, src: &Path) -> io::Result<Digest> {
        let (d, size) = Digest::of_file(src)?;
        let dst = self.blob_path(&d);
        if fs::metadata(&dst).ok().map(|m| m.len()) == Some(size) {
            touch(&dst);
        } else {
            let tmp = temp_in(dst.parent().expect("blob path has a parent"))?;
            fs::copy(src, tmp.path())?;
            // Verify what landed: a file changing under us must not be stored under a wrong name.
            let (check, _) = Digest::of_file(tmp.path())?;
            if check != d {
                return Err(io::Error::other(format!(
                    "{} changed while it was being cached",
                    src.display()
                )));
            }
            tmp.persist(&dst).map_err(|e| e.error)?;
        }
        Ok(d)
    }

    pub fn put_bytes(&self, bytes: &[u8]) -> io::Result<Digest> {
        let d = Digest::of(bytes);
        let dst = self.blob_path(&d);
        if fs::metadata(&dst).ok().map(|m| m.len()) == Some(bytes.len() as u64) {
            touch(&dst);
        } else {
            atomic_write(&dst, bytes)?;
        }
        Ok(d)
    }

    /// A blob's bytes, checked against its digest. A damaged blob is deleted and recorded, and
    /// reads as `InvalidData`; callers treat every error as a miss.
    pub fn get_bytes(&self, d: &Digest) -> io::Result<Vec<u8>> {
        let path = self.blob_path(d);
        let bytes = fs::read(&path)?;
        let actual = if VERIFY_READS { Digest::of(&bytes) } else { *d };
        if actual != *d {
            let damage = self.discard(d, actual);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                damage.to_string(),
            ));
        }
        touch(&path);
        Ok(bytes)
    }

    /// Copies blob `d` to `dest` (temp file + rename), hashing the bytes as they pass: `dest`
    /// appears only if they match `d`, and a blob that does not is deleted from the cache.
    pub fn restore(&self, d: &Digest, dest: &Path, executable: bool) -> Result<(), RestoreError> {
        use std::os::unix::fs::PermissionsExt;
        let io_err = |source| RestoreError::Io {
            dest: dest.to_path_buf(),
            source,
        };
        let path = self.blob_path(d);
        let mut src = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(RestoreError::Missing(*d)),
            Err(e) => return Err(io_err(e)),
        };
        touch(&path);
        let dir = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io_err)?;
        let mut tmp = new_temp_file_in(dir).map_err(io_err)?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; COPY_BUF];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            };
            if VERIFY_READS {
                hasher.update(&buf[..n]);
            }
            tmp.write_all(&buf[..n]).map_err(io_err)?;
        }
        let actual = if VERIFY_READS { hasher.finish() } else { *d };
        if actual != *d {
            return Err(RestoreError::Damaged(self.discard(d, actual)));
        }
        let mode = if executable { 0o755 } else { 0o644 };
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode)).map_err(io_err)?;
        tmp.persist(dest).map_err(|e| io_err(e.error))?;
        Ok(())
    }

    /// Deletes a blob found damaged and records it.
    fn discard(&self, d: &Digest, actual: Digest) -> Damage {
        let path = self.blob_path(d);
        let _ = fs::remove_file(&path);
        let damage = Damage {
            blob: *d,
            actual,
            path,
        };
        self.record_damage(damage.clone());
        damage
    }

    /// Records damage found outside the CAS (a cached layer), for the same end-of-build warning.
    pub fn record_damage(&self, damage: Damage) {
        let mut all = self.damage.lock().unwrap();
        if !all.contains(&damage) {
            all.push(damage);
        }
    }

    /// Damage found by this process so far, each blob once, in digest order.
    pub fn damage(&self) -> Vec<Damage> {
        let mut all = self.damage.lock().unwrap().clone();
        all.sort();
        all.dedup_by(|a, b| a.blob == b.blob);
        all
    }

    fn entry_dir(&self, base: &Digest) -> PathBuf {
        self.root.join("ac").join(base.hex())
    }

    fn entry_path(&self, base: &Digest, full: &Digest) -> PathBuf {
        self.entry_dir(base).join(format!("{}.json", full.hex()))
    }

    /// Every entry recorded for a base key (usually one; more when dependencies differed). An
    /// entry that does not parse is deleted: it can only be damage, since entries are renamed
    /// into place whole.
    pub fn entries(&self, base: &Digest) -> Vec<(Digest, ActionEntry)> {
        let Ok(dir) = fs::read_dir(self.entry_dir(base)) else {
            return Vec::new();
        };
        let mut out: Vec<(Digest, ActionEntry)> = dir
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let full: Digest = format!("sha256:{}", name.strip_suffix(".json")?)
                    .parse()
                    .ok()?;
                let bytes = fs::read(e.path()).ok()?;
                match serde_json::from_slice(&bytes) {
                    Ok(entry) => Some((full, entry)),
                    Err(_) => {
                        let _ = fs::remove_file(e.path());
                        None
                    }
                }
            })
            .collect();
        out.sort_by_key(|(d, _)| *d);
        out
    }

    /// Records an action result. Its outputs must already be in the CAS.
    pub fn put_entry(&self, base: &Digest, full: &Digest, entry: &ActionEntry) -> io::Result<()> {
        atomic_write(
            &self.entry_path(base, full),
            &serde_json::to_vec_pretty(entry).map_err(io::Error::other)?,
        )
    }

    /// Marks an entry used, for least-recently-used collection.
    pub fn touch_entry(&self, base: &Digest, full: &Digest) {
        touch(&self.entry_path(base, full));
    }

    /// Deletes an entry whose outputs turned out damaged.
    pub fn remove_entry(&self, base: &Digest, full: &Digest) {
        let _ = fs::remove_file(self.entry_path(base, full));
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }
}

/// Sets a file's mtime to now: its last use, for [`gc`]. Failing to record a use only makes the
/// file look older, so errors are ignored.
pub fn touch(path: &Path) {
    if let Ok(f) = fs::File::open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A collector removing the empty directory whenever it can (resting 50 µs after each
    /// removal, still far busier than a real one) while entries are written into it: every write
    /// lands. The race once failed a build with "File exists"; a slower machine only makes the
    /// collector lose more often.
    #[test]
    fn entry_writes_survive_a_collector_removing_their_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ac").join("base");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let collector = {
            let (dir, stop) = (dir.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut removed = 0u32;
                for _ in 0..2_000_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    if fs::remove_dir(&dir).is_ok() {
                        removed += 1;
                        std::thread::sleep(std::time::Duration::from_micros(50));
                    }
                }
                removed
            })
        };
        for i in 0..2000 {
            let path = dir.join(format!("{i}.json"));
            atomic_write(&path, b"{}").unwrap_or_else(|e| panic!("write {i}: {e}"));
            assert_eq!(fs::read(&path).unwrap(), b"{}");
            fs::remove_file(&path).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        collector.join().unwrap();
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_an_error_not_a_loop() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("ac"), b"").unwrap();
        assert!(atomic_write(&root.path().join("ac/x.json"), b"{}").is_err());
        assert!(root.path().join("ac").is_file());
    }
}
