//! The content-addressed cache shared by every workspace on the machine (`$KILN_CACHE`).
//!
//! Layout (all entries immutable once written, all written by temp file + rename, so concurrent
//! kiln processes can share one cache without locks):
//!
//! ```text
//! cas/<2 hex>/<64 hex>            file contents by sha256
//! ac/<base key>/<full key>.json   action results: discovered dependencies and output digests
//! probes/...                      memoised toolchain probes
//! layers/...                      image layers (owned by crate::image)
//! tmp/                            staging for atomic writes
//! ```
//!
//! An action's *base key* covers everything known before it runs (see [`key::KeyBuilder`]); the
//! dependencies a compiler reports afterwards (headers, Ada specs) are stored in the entry with
//! their digests, and a lookup is a hit only when all of them still have those digests. This is
//! ccache's "direct mode": it needs no preprocessor run to decide a hit.

pub mod key;
pub mod stat;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// Writes `bytes` to `path` atomically: readers see the old file or the new one, never a part.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Copies `src` to `dst` atomically, preserving the executable bit.
pub fn atomic_copy(src: &Path, dst: &Path, executable: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = dst.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
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

#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn open(root: PathBuf) -> io::Result<Cache> {
        fs::create_dir_all(root.join("tmp"))?;
        Ok(Cache { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root.join("cas").join(&hex[..2]).join(hex)
    }

    /// Stores a file's contents; returns its digest. An existing blob is left alone.
    pub fn put_file(&self, src: &Path) -> io::Result<Digest> {
        let (d, _) = Digest::of_file(src)?;
        let dst = self.blob_path(&d);
        if !dst.exists() {
            let dir = dst.parent().expect("blob path has a parent");
            fs::create_dir_all(dir)?;
            let tmp = tempfile::NamedTempFile::new_in(dir)?;
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
        if !dst.exists() {
            atomic_write(&dst, bytes)?;
        }
        Ok(d)
    }

    pub fn get_bytes(&self, d: &Digest) -> io::Result<Vec<u8>> {
        fs::read(self.blob_path(d))
    }

    fn entry_dir(&self, base: &Digest) -> PathBuf {
        self.root.join("ac").join(base.hex())
    }

    /// Every entry recorded for a base key (usually one; more when dependencies differed).
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
                let entry = serde_json::from_slice(&fs::read(e.path()).ok()?).ok()?;
                Some((full, entry))
            })
            .collect();
        out.sort_by_key(|(d, _)| *d);
        out
    }

    /// Records an action result. Its outputs must already be in the CAS.
    pub fn put_entry(&self, base: &Digest, full: &Digest, entry: &ActionEntry) -> io::Result<()> {
        let path = self.entry_dir(base).join(format!("{}.json", full.hex()));
        atomic_write(
            &path,
            &serde_json::to_vec_pretty(entry).map_err(io::Error::other)?,
        )
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }
}
