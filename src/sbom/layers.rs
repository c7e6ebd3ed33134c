//! SHA1s of the files in an image's layers, which SPDX 2.3 requires (file checksums and package
//! verification codes) and the image result does not carry.
//!
//! Read from the layer blobs of the image's own OCI layout, so the SBOM describes the bytes that
//! ship. Decompressing every layer on every build would cost more than assembling a warm image,
//! so each layer's list is kept in `<cache>/<layer digest hex>.json` (`{"/path": "sha1 hex"}`,
//! every regular file of the layer). A layer is named by the digest of its content, so an entry
//! never goes stale; an unreadable one is recomputed. The base and runtime layers are shared by
//! services and rebuilds, so usually only the small service layer is read.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use rayon::prelude::*;
use sha1::{Digest as _, Sha1};

use super::{io_err, SbomError};
use crate::image::ImageResult;

/// SHA1 of every file of the image result, keyed by (layer index, path). A file missing from
/// its layer is an error: the SBOM would otherwise describe an image that does not exist.
pub fn sha1_of_files<'a>(
    img: &'a ImageResult,
    cache: &Path,
) -> Result<BTreeMap<(usize, &'a str), [u8; 20]>, SbomError> {
    let mut wanted: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); img.layers.len()];
    for f in &img.files {
        if let Some(w) = wanted.get_mut(f.layer) {
            w.insert(f.path.as_str());
        }
    }
    let per_layer: Vec<BTreeMap<(usize, &str), [u8; 20]>> = img
        .layers
        .par_iter()
        .enumerate()
        .filter(|(i, _)| !wanted[*i].is_empty())
        .map(|(i, layer)| {
            let entry = cache.join(format!("{}.json", layer.digest.hex()));
            let found = match read_cached(&entry) {
                Some(found) => found,
                None => {
                    let blob = crate::oci::layout::blob_path(&img.layout, &layer.digest);
                    let found = sha1_in_layer(&blob)?;
                    write_cached(&entry, &found)?;
                    found
                }
            };
            let mut out = BTreeMap::new();
            for path in &wanted[i] {
                let sha1 = found.get(*path).ok_or_else(|| SbomError::MissingFile {
                    layer: layer.digest.to_string(),
                    path: path.to_string(),
                })?;
                out.insert((i, *path), *sha1);
            }
            Ok(out)
        })
        .collect::<Result<_, SbomError>>()?;
    Ok(per_layer.into_iter().flatten().collect())
}

fn read_cached(entry: &Path) -> Option<BTreeMap<String, [u8; 20]>> {
    let bytes = std::fs::read(entry).ok()?;
    let hexes: BTreeMap<String, String> = serde_json::from_slice(&bytes).ok()?;
    hexes
        .into_iter()
        .map(|(path, h)| {
            let mut sum = [0u8; 20];
            hex::decode_to_slice(h, &mut sum).ok()?;
            Some((path, sum))
        })
        .collect()
}

fn write_cached(entry: &Path, found: &BTreeMap<String, [u8; 20]>) -> Result<(), SbomError> {
    let hexes: BTreeMap<&str, String> = found
        .iter()
        .map(|(p, s)| (p.as_str(), hex::encode(s)))
        .collect();
    let bytes = serde_json::to_vec(&hexes).expect("a map of strings serializes");
    crate::cache::atomic_write(entry, &bytes)
        .map_err(io_err(format!("writing {}", entry.display())))
}

/// Every regular file of one gzip'd layer tarball, by absolute path.
fn sha1_in_layer(blob: &Path) -> Result<BTreeMap<String, [u8; 20]>, SbomError> {
    let context = || format!("reading layer {}", blob.display());
    let file = std::fs::File::open(blob).map_err(io_err(context()))?;
    let mut archive =
        tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let mut out = BTreeMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    for entry in archive.entries().map_err(io_err(context()))? {
        let mut entry = entry.map_err(io_err(context()))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().map_err(io_err(context()))?;
        let path = format!(
            "/{}",
            path.to_string_lossy()
                .trim_start_matches("./")
                .trim_start_matches('/')
        );
        let mut h = Sha1::new();
        loop {
            let n = entry.read(&mut buf).map_err(io_err(context()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        out.insert(path, h.finalize().into());
    }
    Ok(out)
}
