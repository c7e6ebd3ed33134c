//! A service's multi-platform image: one OCI image index over the image of each platform, in
//! an OCI layout of its own (`out/images/<service>/`).
//!
//! The layout's `index.json` names one descriptor, the image index blob (annotated with the
//! version as its ref name, like a single image's); the index lists each platform's manifest
//! with its `platform` (os, architecture, variant), in the order given; the blobs are those of
//! the per-platform layouts, hard-linked. The pusher sends the children first and tags the
//! index, so the index digest is what a tag names. The index holds no time and no path, so the
//! same per-platform manifests give the same index bytes; the layout is written whole and
//! renamed into place ([`crate::oci::layout::write`]), and left alone when it already holds
//! this index and its blobs (a no-op build writes nothing).

use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::oci::layout::{self, Blob};
use crate::oci::{self, media_type, Descriptor, Index, Manifest};
use crate::platform::Platform;

use super::ImageError;

/// One platform's finished image.
#[derive(Clone, Debug)]
pub struct PlatformImage {
    pub platform: Platform,
    /// Its OCI layout (`out/<os>-<arch>/images/<service>`).
    pub layout: PathBuf,
}

/// Writes the layout of `images` as one index at `dir`; returns the index digest.
pub fn write_index(
    dir: &Path,
    version: &str,
    images: &[PlatformImage],
) -> Result<Digest, ImageError> {
    let mut entries = Vec::new();
    let mut files: Vec<(Digest, PathBuf)> = Vec::new();
    for img in images {
        let mut desc = layout::read_index(&img.layout)?;
        let (manifest, _): (Manifest, _) = layout::read_json(&img.layout, &desc)?;
        files.push((desc.digest, layout::blob_path(&img.layout, &desc.digest)));
        for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
            files.push((d.digest, layout::sized_blob(&img.layout, d)?));
        }
        // The entry says which platform; the version is the index's own ref name.
        desc.annotations.remove(oci::REF_NAME);
        desc.platform = Some(oci::Platform::of(&img.platform));
        entries.push(desc);
    }
    files.sort();
    files.dedup_by(|a, b| a.0 == b.0);
    let index = Index {
        schema_version: 2,
        media_type: media_type::IMAGE_INDEX.into(),
        manifests: entries,
    };
    let bytes = oci::to_json(&index);
    let digest = Digest::of(&bytes);
    let mut top = Descriptor::new(media_type::IMAGE_INDEX, digest, bytes.len() as u64);
    top.annotations
        .insert(oci::REF_NAME.into(), version.to_string());
    // A no-op build leaves an index that already says this alone.
    if layout::read_index(dir).is_ok_and(|d| d == top)
        && layout::read_blob(dir, &top).is_ok()
        && files.iter().all(|(d, p)| {
            layout::blob_path(dir, d).metadata().ok().map(|m| m.len())
                == p.metadata().ok().map(|m| m.len())
        })
    {
        return Ok(digest);
    }
    let mut blobs: Vec<(Digest, Blob)> = files
        .iter()
        .map(|(d, p)| (*d, Blob::File(p.as_path())))
        .collect();
    blobs.push((digest, Blob::Bytes(&bytes)));
    layout::write(
        dir,
        &Index {
            schema_version: 2,
            media_type: media_type::IMAGE_INDEX.into(),
            manifests: vec![top],
        },
        &blobs,
    )?;
    Ok(digest)
}

/// Whether the index at `dir` names each of `manifests` (a platform and its image's manifest
/// digest) as that platform's entry, or there is no index there. A build of some of the
/// platforms leaves an index that still holds (it names the images this build made); one
/// naming an image since replaced is stale.
pub fn names_images(dir: &Path, manifests: &[(Platform, Digest)]) -> bool {
    if !dir.join(layout::INDEX_FILE).exists() {
        return true;
    }
    let Ok(top) = layout::read_index(dir) else {
        return false;
    };
    let Ok((index, _)) = layout::read_json::<Index>(dir, &top) else {
        return false;
    };
    manifests.iter().all(|(platform, digest)| {
        let want = oci::Platform::of(platform);
        index
            .manifests
            .iter()
            .any(|e| e.platform.as_ref() == Some(&want) && e.digest == *digest)
    })
}
