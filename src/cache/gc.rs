//! Garbage collection: least recently used first, as ccache does, by file mtime (bumped on every
//! hit, see the module comment of [`crate::cache`]).
//!
//! What is collected, one *item* at a time:
//! - a CAS blob (`cas/xx/<hex>`),
//! - an action entry (`ac/<base>/<full>.json`),
//! - a cached layer (`layers/<key>.tar.gz` with its `layers/<key>.json`, together),
//! - a test result (`tests/<key>.json`).
//!
//! Memos (toolchain probes, system-file digests, SBOM SHA-1 lists, registry mount hints, the
//! stats log) are small and cheap to lose but are not items: they are never collected by size.
//! Temp files left by a process killed mid-write (`.tmp*`, `.kiln-image-*`, `tmp/*`) are removed
//! once older than the grace period and [`TEMP_MIN_AGE`], whichever is longer: a zero grace must
//! not pull a file from under a writer about to rename it.
//!
//! Safety with concurrent builds: an item used or written within [`GcOptions::grace`] is never
//! removed (its mtime is read again just before removal). A build marks what it is about to
//! restore as used before copying it, and a copy takes milliseconds, so the default grace (ten
//! minutes) covers it many times over; should a blob vanish anyway, the restore is a miss and the
//! action runs. Layers are hard-linked into the assembling build's private directory the moment
//! they are found, so removing the cache's name cannot take them from under it. Entries whose
//! blobs were collected are then removed too, so they do not make every lookup a wasted stat.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::ActionEntry;
use crate::digest::Digest;

/// Ten minutes: far longer than the gap between a hit and the copy it leads to.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(600);

/// A temp file younger than this may still be renamed into place by its writer.
pub const TEMP_MIN_AGE: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug)]
pub struct GcOptions {
    pub max_size: Option<u64>,
    pub max_age: Option<Duration>,
    pub grace: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Blob,
    ActionEntry,
    Layer,
    TestResult,
}

/// One collectable unit and its files.
#[derive(Clone, Debug)]
pub struct Item {
    pub kind: ItemKind,
    pub files: Vec<PathBuf>,
    pub bytes: u64,
    /// Last use: the newest mtime of its files.
    pub used: SystemTime,
}

/// Everything in a cache directory, as GC and `kiln cache stats` see it.
#[derive(Debug, Default)]
pub struct Inventory {
    pub items: Vec<Item>,
    /// Bytes in memos (not collected by size).
    pub memo_bytes: u64,
    /// Leftover temp files and directories, with their mtimes.
    pub temps: Vec<(PathBuf, SystemTime)>,
}

impl Inventory {
    pub fn item_bytes(&self) -> u64 {
        self.items.iter().map(|i| i.bytes).sum()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    pub removed_items: u64,
    pub removed_bytes: u64,
    /// Action entries and test results removed because a blob they name was removed.
    pub removed_dangling: u64,
    pub removed_temps: u64,
    pub kept_items: u64,
    pub kept_bytes: u64,
    /// Items that the limits would have removed but that were used within the grace period.
    pub protected_items: u64,
}

fn is_temp(name: &str) -> bool {
    name.starts_with(".tmp") || name.starts_with(".kiln-image-")
}

fn mtime(m: &fs::Metadata) -> SystemTime {
    m.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Lists `dir`'s entries sorted by name (so ties between equal mtimes break the same way on
/// every machine); a missing directory is empty.
fn sorted_entries(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut v: Vec<fs::DirEntry> = rd.collect::<io::Result<_>>()?;
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}

/// Walks the cache once, statting every file.
pub fn inventory(root: &Path) -> io::Result<Inventory> {
    let mut inv = Inventory::default();
    let file = |inv: &mut Inventory, kind: ItemKind, path: PathBuf| -> io::Result<()> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let Ok(m) = fs::symlink_metadata(&path) else {
            return Ok(()); // removed meanwhile
        };
        if is_temp(&name) {
            inv.temps.push((path, mtime(&m)));
        } else if m.is_file() {
            inv.items.push(Item {
                kind,
                bytes: m.len(),
                used: mtime(&m),
                files: vec![path],
            });
        }
        Ok(())
    };
    for shard in sorted_entries(&root.join("cas"))? {
        for e in sorted_entries(&shard.path())? {
            file(&mut inv, ItemKind::Blob, e.path())?;
        }
    }
    for base in sorted_entries(&root.join("ac"))? {
        for e in sorted_entries(&base.path())? {
            file(&mut inv, ItemKind::ActionEntry, e.path())?;
        }
    }
    for e in sorted_entries(&root.join("tests"))? {
        file(&mut inv, ItemKind::TestResult, e.path())?;
    }
    for e in sorted_entries(&root.join("tmp"))? {
        if let Ok(m) = fs::symlink_metadata(e.path()) {
            inv.temps.push((e.path(), mtime(&m)));
        }
    }
    // Layers: the blob and its facts are one item.
    let layers = root.join("layers");
    for e in sorted_entries(&layers)? {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(m) = fs::symlink_metadata(e.path()) else {
            continue;
        };
        if is_temp(&name) {
            inv.temps.push((e.path(), mtime(&m)));
        } else if let Some(key) = name.strip_suffix(".tar.gz") {
            let meta = layers.join(format!("{key}.json"));
            let mut item = Item {
                kind: ItemKind::Layer,
                bytes: m.len(),
                used: mtime(&m),
                files: vec![e.path()],
            };
            if let Ok(mm) = fs::metadata(&meta) {
                item.bytes += mm.len();
                item.used = item.used.max(mtime(&mm));
                item.files.push(meta);
            }
            inv.items.push(item);
        } else if name.ends_with(".json") && layers.join(name.replace(".json", ".tar.gz")).exists()
        {
            // Counted with its blob.
        } else if m.is_file() {
            inv.memo_bytes += m.len();
        }
    }
    for memo in ["probes", "registries", "stats", "sbom-sha1"] {
        inv.memo_bytes += dir_bytes(&root.join(memo));
    }
    Ok(inv)
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Removes least recently used items until the cache fits `max_size`, and every item unused for
/// longer than `max_age`, sparing what was used within `grace` of `now`.
pub fn collect(root: &Path, opts: &GcOptions, now: SystemTime) -> io::Result<GcReport> {
    let inv = inventory(root)?;
    let mut report = GcReport::default();
    let age = |t: SystemTime| now.duration_since(t).unwrap_or(Duration::ZERO);

    for (path, t) in &inv.temps {
        if age(*t) > opts.grace.max(TEMP_MIN_AGE) {
            let gone = if path.is_dir() {
                fs::remove_dir_all(path)
            } else {
                fs::remove_file(path)
            };
            if gone.is_ok() {
                report.removed_temps += 1;
            }
        }
    }

    let mut items = inv.items;
    // Oldest first; the walk order (sorted paths) breaks ties.
    items.sort_by_key(|i| i.used);
    let mut total: u64 = items.iter().map(|i| i.bytes).sum();
    let mut removed_blobs = BTreeSet::new();
    for item in &items {
        let too_old = opts.max_age.is_some_and(|m| age(item.used) > m);
        let too_big = opts.max_size.is_some_and(|m| total > m);
        if !(too_old || too_big) {
            report.kept_items += 1;
            report.kept_bytes += item.bytes;
            continue;
        }
        // Stat again just before removing: a build may have used it since the walk.
        let used_now = item
            .files
            .iter()
            .filter_map(|f| fs::metadata(f).ok())
            .map(|m| mtime(&m))
            .max()
            .unwrap_or(item.used);
        if age(item.used.max(used_now)) <= opts.grace {
            report.protected_items += 1;
            report.kept_items += 1;
            report.kept_bytes += item.bytes;
            continue;
        }
        for f in &item.files {
            let _ = fs::remove_file(f);
        }
        if item.kind == ItemKind::Blob {
            if let Some(name) = item.files[0].file_name() {
                removed_blobs.insert(name.to_string_lossy().into_owned());
            }
        }
        total -= item.bytes;
        report.removed_items += 1;
        report.removed_bytes += item.bytes;
    }

    if !removed_blobs.is_empty() {
        report.removed_dangling = remove_dangling(&items, &removed_blobs);
    }
    remove_empty_entry_dirs(root);
    super::stats::trim(root);
    Ok(report)
}

/// Removes surviving action entries and test results that name a removed blob.
fn remove_dangling(items: &[Item], removed: &BTreeSet<String>) -> u64 {
    let mut n = 0;
    for item in items {
        let path = &item.files[0];
        if !path.exists() {
            continue;
        }
        let names: Vec<Digest> = match item.kind {
            ItemKind::ActionEntry => fs::read(path)
                .ok()
                .and_then(|b| serde_json::from_slice::<ActionEntry>(&b).ok())
                .map(|e| e.outputs.iter().map(|o| o.digest).collect())
                .unwrap_or_default(),
            ItemKind::TestResult => test_result_blob(path).into_iter().collect(),
            _ => continue,
        };
        if names.iter().any(|d| removed.contains(&d.hex())) && fs::remove_file(path).is_ok() {
            n += 1;
        }
    }
    n
}

/// The JUnit blob a test result names (its format is `[result, digest]`, see crate::testing).
pub fn test_result_blob(path: &Path) -> Option<Digest> {
    let v: serde_json::Value = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    v.get(1)?.as_str()?.parse().ok()
}

/// Empty `ac/<base>/` directories, left when their entries were collected. A writer that
/// loses the race recreates the directory (see [`super::atomic_write`]).
fn remove_empty_entry_dirs(root: &Path) {
    for base in sorted_entries(&root.join("ac")).unwrap_or_default() {
        let _ = fs::remove_dir(base.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Cache, OutputEntry};

    fn set_age(path: &Path, now: SystemTime, secs: u64) {
        let f = fs::File::open(path).unwrap();
        f.set_modified(now - Duration::from_secs(secs)).unwrap();
    }

    /// A cache with three action entries of one 1000-byte blob each, used 3, 2 and 1 hours ago.
    fn cache_with_three(now: SystemTime) -> (tempfile::TempDir, Cache, Vec<Digest>) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("c")).unwrap();
        let mut blobs = Vec::new();
        for (i, hours) in [3u64, 2, 1].into_iter().enumerate() {
            let d = cache.put_bytes(&vec![i as u8; 1000]).unwrap();
            let base = Digest::of(format!("base {i}").as_bytes());
            let full = Digest::of(format!("full {i}").as_bytes());
            let entry = ActionEntry {
                deps: Vec::new(),
                outputs: vec![OutputEntry {
                    name: "o".into(),
                    digest: d,
                    executable: false,
                }],
                stderr: String::new(),
            };
            cache.put_entry(&base, &full, &entry).unwrap();
            set_age(&cache.blob_path(&d), now, hours * 3600);
            let entry_path = cache
                .root()
                .join("ac")
                .join(base.hex())
                .join(format!("{}.json", full.hex()));
            // The entry was used more recently than its blob: only size decides which goes.
            set_age(&entry_path, now, hours * 3600 - 60);
            blobs.push(d);
        }
        (dir, cache, blobs)
    }

    fn opts(max_size: Option<u64>, max_age: Option<Duration>) -> GcOptions {
        GcOptions {
            max_size,
            max_age,
            grace: DEFAULT_GRACE,
        }
    }

    #[test]
    fn the_least_recently_used_go_first_until_the_cache_fits() {
        let now = SystemTime::now();
        let (_d, cache, blobs) = cache_with_three(now);
        let inv = inventory(cache.root()).unwrap();
        let total = inv.item_bytes();
        // Room for all but about one blob and its entry.
        let r = collect(cache.root(), &opts(Some(total - 500), None), now).unwrap();
        assert!(!cache.has_blob(&blobs[0]), "the oldest blob stayed");
        assert!(cache.has_blob(&blobs[1]) && cache.has_blob(&blobs[2]));
        assert_eq!(r.removed_items, 1, "{r:?}");
        // Its entry, newer than the blob, survived the size pass but names a removed blob.
        assert_eq!(r.removed_dangling, 1, "{r:?}");
        let left = inventory(cache.root()).unwrap();
        assert_eq!(left.items.len(), 4);
    }

    #[test]
    fn max_age_removes_what_was_not_used_recently_and_grace_protects_the_rest() {
        let now = SystemTime::now();
        let (_d, cache, blobs) = cache_with_three(now);
        let r = collect(
            cache.root(),
            &opts(None, Some(Duration::from_secs(90 * 60))),
            now,
        )
        .unwrap();
        assert!(!cache.has_blob(&blobs[0]) && !cache.has_blob(&blobs[1]));
        assert!(cache.has_blob(&blobs[2]));
        assert_eq!(r.removed_items, 4, "two blobs and two entries: {r:?}");

        // Something used a moment ago stays even with a limit of zero.
        let fresh = cache.put_bytes(b"just used").unwrap();
        let r = collect(cache.root(), &opts(Some(0), None), now).unwrap();
        assert!(cache.has_blob(&fresh));
        assert!(!cache.has_blob(&blobs[2]));
        assert_eq!(r.protected_items, 1, "{r:?}");
        assert_eq!(r.kept_items, 1);
    }

    #[test]
    fn leftover_temp_files_are_removed_once_no_writer_can_still_rename_them() {
        let now = SystemTime::now();
        let (_d, cache, _) = cache_with_three(now);
        let old = cache.root().join("cas/00/.tmpOLD");
        fs::create_dir_all(old.parent().unwrap()).unwrap();
        fs::write(&old, b"half").unwrap();
        set_age(&old, now, 2 * 3600);
        let young = cache.root().join("tmp/.tmpYOUNG");
        fs::write(&young, b"being written").unwrap();
        set_age(&young, now, 1800);
        // Not even a zero grace period touches a temp file a writer may still rename.
        let mut o = opts(None, None);
        o.grace = Duration::ZERO;
        let r = collect(cache.root(), &o, now).unwrap();
        assert_eq!(r.removed_temps, 1);
        assert!(!old.exists() && young.exists());
        assert_eq!(r.removed_items, 0);
    }
}
