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
    /// From the [`LayerTier`] (the remote CAS), its bytes verified, and now cached here too.
    Fetched,
}

/// A store behind the local layer cache: asked on a local miss, and given every layer written
/// here. The remote cache is one (`crate::build::remote::Remote`), so a machine whose build
/// is served by the remote does not compress its images' layers again either.
pub trait LayerTier: Sync {
    /// The facts and gzip blob of the layer cached under `key`; None on a miss, or when the
    /// tier cannot answer (it reports its own failures). [`LayerCache`] checks the bytes
    /// against every digest and size of the facts before using them.
    fn fetch(&self, key: &str) -> Option<(Layer, Vec<u8>)>;
    /// Offers the layer just written under `key`: its facts file and blob (best effort).
    fn store(&self, key: &str, facts: &Path, blob: &Path);
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

pub struct LayerCache<'t> {
    dir: PathBuf,
    /// Where layers are hard-linked for the caller (see [`LayerCache::pinning_into`]).
    pins: Option<PathBuf>,
    tier: Option<&'t dyn LayerTier>,
}

impl<'t> LayerCache<'t> {
    pub fn new(dir: &Path) -> LayerCache<'t> {
        LayerCache {
            dir: dir.to_path_buf(),
            pins: None,
            tier: None,
        }
    }

    /// Local misses are asked of `tier`, and layers written here are given to it.
    pub fn with_tier(mut self, tier: Option<&'t dyn LayerTier>) -> LayerCache<'t> {
        self.tier = tier;
        self
    }

    /// Returned layers' `blob` is a hard link in `pins` (same filesystem as the cache), so a
    /// collection in another process cannot remove it while the caller still needs it.
    pub fn pinning_into(mut self, pins: &Path) -> LayerCache<'t> {
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
        if lookup == Lookup::Written {
            if let Some(mut layer) = self.fetch_from_tier(&key, &blob, &meta) {
                if self.pin(&mut layer) {
                    return Ok((layer, Lookup::Fetched));
                }
            }
        }
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |source: io::Error| LayerError::Write { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(werr(&self.dir))?;
        let tmp = crate::cache::new_temp_file_in(&self.dir).map_err(werr(&self.dir))?;
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
        if let Some(tier) = self.tier {
            tier.store(&key, &meta, &blob);
        }
        if !self.pin(&mut layer) {
            // Collected within microseconds of being written: only with a zero grace period.
            return Err(LayerError::Write {
                path: blob,
                source: io::Error::new(io::ErrorKind::NotFound, "collected while being written"),
            });
        }
        Ok((layer, lookup))
    }

    /// The layer under `key` from the tier, stored here (blob, then facts, each atomically)
    /// once its bytes match the facts: gzip digest and size, and the tar's digest and size
    /// after decompression. Anything else is a miss, and the layer is written here instead
    /// (and offered to the tier again, which repairs it there).
    fn fetch_from_tier(&self, key: &str, blob: &Path, meta: &Path) -> Option<Layer> {
        let (facts, bytes) = self.tier?.fetch(key)?;
        if bytes.len() as u64 != facts.compressed_size || Digest::of(&bytes) != facts.digest {
            return None;
        }
        let mut tar = HashingWriter::new(io::sink());
        io::copy(
            &mut flate2::read::GzDecoder::new(bytes.as_slice()),
            &mut tar,
        )
        .ok()?;
        let (_, diff_id, size) = tar.finish();
        if diff_id != facts.diff_id || size != facts.uncompressed_size {
            return None;
        }
        std::fs::create_dir_all(&self.dir).ok()?;
        write_atomic(blob, &bytes).ok()?;
        let json = serde_json::to_vec_pretty(&facts).expect("layer facts serialise");
        write_atomic(meta, &json).ok()?;
        Some(Layer {
            blob: blob.to_path_buf(),
            ..facts
        })
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
    let mut tmp = crate::cache::new_temp_file_in(dir)?;
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

    /// A tier in memory: what it was given, served back (optionally with lying facts).
    #[derive(Default)]
    struct MemoryTier {
        layers: std::sync::Mutex<std::collections::HashMap<String, (Layer, Vec<u8>)>>,
        stored: std::sync::atomic::AtomicUsize,
    }

    impl LayerTier for MemoryTier {
        fn fetch(&self, key: &str) -> Option<(Layer, Vec<u8>)> {
            self.layers.lock().unwrap().get(key).cloned()
        }
        fn store(&self, key: &str, facts: &Path, blob: &Path) {
            let layer: Layer = serde_json::from_slice(&std::fs::read(facts).unwrap()).unwrap();
            let bytes = std::fs::read(blob).unwrap();
            self.layers
                .lock()
                .unwrap()
                .insert(key.to_string(), (layer, bytes));
            self.stored
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_layer_the_tier_has_is_fetched_verified_and_cached_here() {
        let tier = MemoryTier::default();
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = LayerCache::new(one.path()).with_tier(Some(&tier));
        let (written, how) = first.get_or_write(&spec(b"a", 0o644, 1)).unwrap();
        assert_eq!(how, Lookup::Written);
        assert_eq!(tier.stored.load(std::sync::atomic::Ordering::SeqCst), 1);

        // Another machine's empty cache: the tier serves it, and it is cached locally.
        let second = LayerCache::new(two.path()).with_tier(Some(&tier));
        let (fetched, how) = second.get_or_write(&spec(b"a", 0o644, 1)).unwrap();
        assert_eq!(how, Lookup::Fetched);
        assert_eq!(
            (fetched.digest, fetched.diff_id),
            (written.digest, written.diff_id)
        );
        assert_eq!(
            std::fs::read(&fetched.blob).unwrap(),
            std::fs::read(&written.blob).unwrap()
        );
        let (_, how) = LayerCache::new(two.path())
            .get_or_write(&spec(b"a", 0o644, 1))
            .unwrap();
        assert_eq!(how, Lookup::Hit, "kept in the local cache");
        assert_eq!(tier.stored.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn a_tier_whose_facts_do_not_match_its_bytes_is_not_believed() {
        let tier = MemoryTier::default();
        let one = tempfile::tempdir().unwrap();
        LayerCache::new(one.path())
            .with_tier(Some(&tier))
            .get_or_write(&spec(b"a", 0o644, 1))
            .unwrap();
        let key = Digest::of(cache_key(&spec(b"a", 0o644, 1)).as_bytes()).hex();
        let other = spec(b"b", 0o644, 1);
        let (honest, _) = LayerCache::new(one.path()).get_or_write(&other).unwrap();
        let honest_bytes = std::fs::read(&honest.blob).unwrap();
        type Lie<'a> = Box<dyn Fn(&mut Layer, &mut Vec<u8>) + 'a>;
        let lies: [Lie; 3] = [
            // Another layer's bytes under this key's facts.
            Box::new(|_, b| b.clone_from(&honest_bytes)),
            // The gzip digest right, the tar's digest wrong.
            Box::new(|l, _| l.diff_id = Digest::of(b"not the tar")),
            Box::new(|l, _| l.uncompressed_size += 1),
        ];
        for (n, lie) in lies.iter().enumerate() {
            {
                let mut layers = tier.layers.lock().unwrap();
                let (layer, bytes) = layers.get_mut(&key).unwrap();
                lie(layer, bytes);
            }
            let dir = tempfile::tempdir().unwrap();
            let (layer, how) = LayerCache::new(dir.path())
                .with_tier(Some(&tier))
                .get_or_write(&spec(b"a", 0o644, 1))
                .unwrap();
            assert_eq!(how, Lookup::Written, "lie {n} was believed");
            let (d, _) = Digest::of_file(&layer.blob).unwrap();
            assert_eq!(d, layer.digest);
            // Writing it offered the true layer to the tier again, which repairs it there.
            let (fixed, _) = tier.fetch(&key).unwrap();
            assert_eq!(fixed.digest, layer.digest);
            assert_eq!(fixed.diff_id, layer.diff_id);
        }
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
