//! The layer cache: a layer whose entries did not change is neither re-tarred nor re-compressed.
//!
//! Layout under the cache directory: `<key>.tar.gz` (the blob) and `<key>.json` (its [`Layer`]
//! facts), both written to a temp file and renamed into place, blob first, so a reader that sees
//! the JSON always sees a complete blob. `<key>` is the hex sha256 of [`cache_key`]'s text.
//!
//! A hit is trusted only after the blob is hashed (its one read: the layout then hard-links it),
//! so a damaged layer is rewritten instead of published; the JSON's mtime records the use for
//! the cache's least-recently-used collection.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};

use super::{tar::write_tar, EntryKind, Layer, LayerError, LayerSpec, GZIP_LEVEL};
use crate::cache::Damage;
use crate::digest::{Digest, Hasher};

/// How [`LayerCache::get_or_write`] found its layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// From the cache, its bytes verified.
    Hit,
    /// Written now.
    Written,
    /// The cached blob was damaged: it was removed and the layer written again.
    Repaired(Damage),
}

/// Bump when anything in the tar or gzip encoding changes (see the `layer` module comment); it is
/// part of every key, so old entries stop matching instead of being served with new digests.
pub const FORMAT_VERSION: &str = "kiln-layer-v1 ustar+pax gzip/miniz_oxide/flate2-1.0.35";

/// The text hashed into a layer's cache key: format version, mtime, then one line per entry with
/// everything that reaches the tar bytes (path, kind, mode, owner, content digest and size, or
/// link target). Host paths are deliberately absent: the same bytes from another checkout hit.
pub fn cache_key(spec: &LayerSpec) -> String {
    let mut text = format!(
        "{FORMAT_VERSION}\nlevel {GZIP_LEVEL}\nmtime {}\n",
        spec.mtime
    );
    for e in spec.entries() {
        let what = match &e.kind {
            EntryKind::Dir => "dir".to_string(),
            EntryKind::File { digest, size, .. } => format!("file {digest} {size}"),
            EntryKind::Symlink { target } => format!("symlink {target:?}"),
        };
        text.push_str(&format!(
            "{:?} {:o} {}:{} {what}\n",
            e.path, e.mode, e.uid, e.gid
        ));
    }
    text
}

pub struct LayerCache {
    dir: PathBuf,
    /// Where layers are hard-linked for the caller (see [`LayerCache::pinning_into`]).
    pins: Option<PathBuf>,
}

impl LayerCache {
    pub fn new(dir: &Path) -> LayerCache {
        LayerCache {
            dir: dir.to_path_buf(),
            pins: None,
        }
    }

    /// Returned layers' `blob` is a hard link in `pins` (same filesystem as the cache), so a
    /// collection in another process cannot remove it while the caller still needs it.
    pub fn pinning_into(mut self, pins: &Path) -> LayerCache {
        self.pins = Some(pins.to_path_buf());
        self
    }

    /// Links `layer.blob` into the pin directory; false when the blob is gone.
    fn pin(&self, layer: &mut Layer) -> bool {
        let Some(pins) = &self.pins else {
            return true;
        };
        let pinned = pins.join(format!("{}.tar.gz", layer.digest.hex()));
        if pinned.exists() || std::fs::hard_link(&layer.blob, &pinned).is_ok() {
            layer.blob = pinned;
            return true;
        }
        false
    }

    /// The layer for `spec`, from the cache when present, otherwise written in one streaming pass
    /// (tar -> hash -> gzip -> hash -> temp file) and stored. Also says how it was found.
    pub fn get_or_write(&self, spec: &LayerSpec) -> Result<(Layer, Lookup), LayerError> {
        let key = Digest::of(cache_key(spec).as_bytes()).hex();
        let blob = self.dir.join(format!("{key}.tar.gz"));
        let meta = self.dir.join(format!("{key}.json"));
        let mut lookup = Lookup::Written;
        if let Some(mut layer) = read_meta(&meta, &blob) {
            crate::cache::touch(&meta);
            // Pin first, then hash what was pinned: what is checked is what will be used. A
            // blob collected since the JSON was read is a miss.
            let pinned = self.pin(&mut layer);
            match check_blob(&layer) {
                Ok(()) if pinned => return Ok((layer, Lookup::Hit)),
                Ok(()) => {}
                Err(_) if !pinned => {}
                Err(actual) => {
                    let _ = std::fs::remove_file(&meta);
                    let _ = std::fs::remove_file(&blob);
                    if layer.blob != blob {
                        let _ = std::fs::remove_file(&layer.blob);
                    }
                    lookup = Lookup::Repaired(Damage {
                        blob: layer.digest,
                        actual,
                        path: blob.clone(),
                    });
                }
            }
        }
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |source: io::Error| LayerError::Write { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(werr(&self.dir))?;
        let tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(werr(&self.dir))?;
        let compressed = HashingWriter::new(io::BufWriter::new(tmp));
        let gz = GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(compressed, Compression::new(GZIP_LEVEL));
        let tar_sink = HashingWriter::new(gz);
        let tar_sink = write_tar(spec.entries(), spec.mtime, tar_sink)?;
        let (gz, diff_id, uncompressed_size) = tar_sink.finish();
        let compressed = gz.finish().map_err(werr(&blob))?;
        let (buf, digest, compressed_size) = compressed.finish();
        let tmp = buf.into_inner().map_err(|e| LayerError::Write {
            path: blob.clone(),
            source: e.into_error(),
        })?;
        tmp.as_file().sync_all().map_err(werr(&blob))?;
        tmp.persist(&blob).map_err(|e| LayerError::Write {
            path: blob.clone(),
            source: e.error,
        })?;
        let mut layer = Layer {
            digest,
            diff_id,
            compressed_size,
            uncompressed_size,
            blob: blob.clone(),
        };
        let json = serde_json::to_vec_pretty(&layer).expect("layer facts serialise");
        write_atomic(&meta, &json).map_err(werr(&meta))?;
        if !self.pin(&mut layer) {
            // Collected within microseconds of being written: only with a zero grace period.
            return Err(LayerError::Write {
                path: blob,
                source: io::Error::new(io::ErrorKind::NotFound, "collected while being written"),
            });
        }
        Ok((layer, lookup))
    }

    /// Checks every cached layer (for `kiln cache verify`): facts that parse, a blob of the
    /// recorded size and digest. A bad one loses both files; returns their names and why.
    pub fn verify_all(&self) -> std::io::Result<(u64, Vec<(String, String)>)> {
        let mut removed = Vec::new();
        let mut checked = 0;
        let mut names: Vec<String> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        names.sort();
        for name in names {
            let Some(key) = name.strip_suffix(".tar.gz") else {
                continue;
            };
            checked += 1;
            let blob = self.dir.join(&name);
            let meta = self.dir.join(format!("{key}.json"));
            if !meta.exists() {
                // Being written (the blob lands first), or left by a killed writer: GC's job.
                continue;
            }
            let why = match read_meta(&meta, &blob) {
                None => Some("its facts do not parse or its size differs".to_string()),
                Some(layer) => check_blob(&layer)
                    .err()
                    .map(|actual| format!("its bytes hash to {actual}, not {}", layer.digest)),
            };
            if let Some(why) = why {
                let _ = std::fs::remove_file(&meta);
                let _ = std::fs::remove_file(&blob);
                removed.push((name, why));
            }
        }
        Ok((checked, removed))
    }
}

/// Hashes a layer's blob; the digest it really has when that is not the recorded one.
fn check_blob(layer: &Layer) -> Result<(), Digest> {
    if !crate::cache::VERIFY_READS {
        return Ok(());
    }
    match Digest::of_file(&layer.blob) {
        Ok((d, _)) if d == layer.digest => Ok(()),
        Ok((d, _)) => Err(d),
        // Unreadable counts as damaged: it must not be linked into a layout.
        Err(_) => Err(Digest::of(b"")),
    }
}

fn read_meta(meta: &Path, blob: &Path) -> Option<Layer> {
    let mut layer: Layer = serde_json::from_slice(&std::fs::read(meta).ok()?).ok()?;
    // A blob truncated by someone else is a miss, not a corrupt image.
    if std::fs::metadata(blob).ok()?.len() != layer.compressed_size {
        return None;
    }
    layer.blob = blob.to_path_buf();
    Some(layer)
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Passes bytes through to `inner` while hashing and counting them.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(),
        }
    }
    pub fn finish(self) -> (W, Digest, u64) {
        let len = self.hasher.len();
        (self.inner, self.hasher.finish(), len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(content: &[u8], mode: u32, mtime: i64) -> LayerSpec {
        let mut s = LayerSpec::new(mtime);
        s.bytes("/etc/x", content.to_vec(), mode).unwrap();
        s
    }

    #[test]
    fn every_tar_input_changes_the_key() {
        let base = cache_key(&spec(b"a", 0o644, 1));
        assert_ne!(base, cache_key(&spec(b"b", 0o644, 1)), "content ignored");
        assert_ne!(base, cache_key(&spec(b"a", 0o755, 1)), "mode ignored");
        assert_ne!(base, cache_key(&spec(b"a", 0o644, 2)), "mtime ignored");
        let mut owned = spec(b"a", 0o644, 1);
        owned.dir("/home", 0o755, 65532).unwrap();
        let mut root = spec(b"a", 0o644, 1);
        root.dir("/home", 0o755, 0).unwrap();
        assert_ne!(cache_key(&owned), cache_key(&root), "owner ignored");
        let mut l1 = LayerSpec::new(1);
        l1.symlink("/lib", "usr/lib").unwrap();
        let mut l2 = LayerSpec::new(1);
        l2.symlink("/lib", "usr/lib64").unwrap();
        assert_ne!(cache_key(&l1), cache_key(&l2), "link target ignored");
    }

    #[test]
    fn a_hit_returns_the_same_layer_without_rewriting() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::new(dir.path());
        let (a, hit_a) = cache.get_or_write(&spec(b"a", 0o644, 1)).unwrap();
        let (b, hit_b) = cache.get_or_write(&spec(b"a", 0o644, 1)).unwrap();
        assert_eq!((hit_a, hit_b), (Lookup::Written, Lookup::Hit));
        assert_eq!(a, b);
        let (d, _) = Digest::of_file(&a.blob).unwrap();
        assert_eq!(d, a.digest);
    }

    #[test]
    fn a_damaged_layer_is_rewritten_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::new(dir.path());
        let (good, _) = cache.get_or_write(&spec(b"a", 0o644, 1)).unwrap();
        let mut bytes = std::fs::read(&good.blob).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40; // same size: only the digest can tell
        std::fs::write(&good.blob, &bytes).unwrap();
        let (again, lookup) = cache.get_or_write(&spec(b"a", 0o644, 1)).unwrap();
        assert_eq!(
            lookup,
            Lookup::Repaired(Damage {
                blob: good.digest,
                actual: Digest::of(&bytes),
                path: good.blob.clone(),
            })
        );
        assert_eq!(again, good);
        assert_eq!(Digest::of_file(&again.blob).unwrap().0, good.digest);

        // `kiln cache verify` finds the same damage and removes both files.
        std::fs::write(&good.blob, &bytes).unwrap();
        let (checked, removed) = cache.verify_all().unwrap();
        assert_eq!(checked, 1);
        assert_eq!(removed.len(), 1, "{removed:?}");
        assert!(removed[0].1.contains(&Digest::of(&bytes).to_string()));
        assert!(!good.blob.exists());
        assert_eq!(cache.verify_all().unwrap(), (0, Vec::new()));
    }
}
