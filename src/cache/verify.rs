//! `kiln cache verify`: every blob hashed against its name, every entry parsed and checked for
//! the blobs it names, every cached layer checked against its facts. What fails is removed, so
//! the next build reruns exactly those actions, and is reported with the reason.
//!
//! Safe beside running builds: it removes only what is wrong, and a build that was about to use
//! it sees a miss. Paths in the report are relative to the cache, in walk order (sorted).

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;

use super::{gc, ActionEntry};
use crate::digest::Digest;
use crate::layer::cache::LayerCache;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    /// Relative to the cache directory.
    pub path: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub blobs: u64,
    pub action_entries: u64,
    pub layers: u64,
    pub test_results: u64,
    pub removed: Vec<Removed>,
}

pub fn verify(root: &Path) -> io::Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let rel = |p: &Path| {
        p.strip_prefix(root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let inv = gc::inventory(root)?;
    let mut good_blobs = BTreeSet::new();
    for item in inv.items.iter().filter(|i| i.kind == gc::ItemKind::Blob) {
        report.blobs += 1;
        let path = &item.files[0];
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let why = match format!("sha256:{name}").parse::<Digest>() {
            Err(_) => Some("its name is not a sha256 digest".to_string()),
            Ok(want) => match Digest::of_file(path) {
                Ok((got, _)) if got == want => {
                    good_blobs.insert(want);
                    None
                }
                Ok((got, _)) => Some(format!("its bytes hash to {got}")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => Some(format!("it cannot be read ({e})")),
            },
        };
        if let Some(reason) = why {
            let _ = fs::remove_file(path);
            report.removed.push(Removed {
                path: rel(path),
                reason,
            });
        }
    }
    for item in &inv.items {
        let path = &item.files[0];
        let why = match item.kind {
            gc::ItemKind::ActionEntry => {
                report.action_entries += 1;
                match fs::read(path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ActionEntry>(&b).ok())
                {
                    None => Some("it does not parse".to_string()),
                    Some(e) => e
                        .outputs
                        .iter()
                        .find(|o| !good_blobs.contains(&o.digest))
                        .map(|o| {
                            format!("blob {} of `{}` is missing or damaged", o.digest, o.name)
                        }),
                }
            }
            gc::ItemKind::TestResult => {
                report.test_results += 1;
                match gc::test_result_blob(path) {
                    None => Some("it does not parse".to_string()),
                    Some(d) if !good_blobs.contains(&d) => {
                        Some(format!("its JUnit blob {d} is missing or damaged"))
                    }
                    Some(_) => None,
                }
            }
            _ => None,
        };
        if let Some(reason) = why {
            if fs::remove_file(path).is_ok() {
                report.removed.push(Removed {
                    path: rel(path),
                    reason,
                });
            }
        }
    }
    let layers = root.join("layers");
    let (checked, removed) = LayerCache::new(&layers).verify_all()?;
    report.layers = checked;
    report
        .removed
        .extend(removed.into_iter().map(|(name, reason)| Removed {
            path: rel(&layers.join(name)),
            reason,
        }));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Cache, OutputEntry};

    #[test]
    fn damaged_blobs_and_the_entries_naming_them_are_removed_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().to_path_buf()).unwrap();
        let good = cache.put_bytes(b"good object").unwrap();
        let bad = cache.put_bytes(b"object to damage").unwrap();
        let entry = |d: Digest| ActionEntry {
            deps: Vec::new(),
            outputs: vec![OutputEntry {
                name: "x.o".into(),
                digest: d,
                executable: false,
            }],
            stderr: String::new(),
        };
        let (b1, b2, f) = (Digest::of(b"b1"), Digest::of(b"b2"), Digest::of(b"f"));
        cache.put_entry(&b1, &f, &entry(good)).unwrap();
        cache.put_entry(&b2, &f, &entry(bad)).unwrap();
        fs::write(cache.blob_path(&bad), b"object to damagf").unwrap();
        let junk = dir
            .path()
            .join("ac")
            .join(b1.hex())
            .join(format!("{}.json", b2.hex()));
        fs::write(&junk, b"{").unwrap();

        let r = verify(cache.root()).unwrap();
        assert_eq!((r.blobs, r.action_entries), (2, 3));
        let bad_hex = bad.hex();
        let why = |p: String| {
            r.removed
                .iter()
                .find(|x| x.path == p)
                .map(|x| x.reason.clone())
                .unwrap_or_else(|| panic!("{p} not removed: {:?}", r.removed))
        };
        assert_eq!(r.removed.len(), 3, "{:?}", r.removed);
        assert!(why(format!("cas/{}/{bad_hex}", &bad_hex[..2])).starts_with("its bytes hash to "));
        assert_eq!(
            why(format!("ac/{}/{}.json", b1.hex(), b2.hex())),
            "it does not parse"
        );
        assert_eq!(
            why(format!("ac/{}/{}.json", b2.hex(), f.hex())),
            format!("blob {bad} of `x.o` is missing or damaged")
        );
        assert!(cache.has_blob(&good) && !cache.has_blob(&bad));
        // A second pass finds nothing more.
        assert!(verify(cache.root()).unwrap().removed.is_empty());
    }
}
