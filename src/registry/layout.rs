//! Reading what to push from an OCI image layout directory.
//!
//! Only manifests are read into memory (they are small and must be sent byte-for-byte, since
//! their digest is over the exact bytes); layers are described by path and size and streamed
//! later. The layout's `index.json` must name exactly one manifest: an image manifest, or an
//! image index whose child manifests are in the same layout.

use std::collections::BTreeSet;
use std::path::Path;

use super::upload::{Blob, BlobSource};
use crate::digest::Digest;
use crate::oci::{layout, media_type, Descriptor};

use crate::oci::LayoutError;

/// A manifest to PUT: its exact bytes and the media type to send as `Content-Type`.
#[derive(Clone, Debug)]
pub struct ManifestBlob {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

/// Everything one layout asks to push, in an order that is safe: `blobs` before any manifest,
/// `manifests` children before parents (the last one is what tags point at).
#[derive(Clone, Debug)]
pub struct LayoutImage {
    pub blobs: Vec<Blob>,
    pub manifests: Vec<ManifestBlob>,
}

impl LayoutImage {
    pub fn top(&self) -> &ManifestBlob {
        self.manifests
            .last()
            .expect("a layout image has at least one manifest")
    }
}

/// Any manifest-like document: an image manifest (config + layers) or an index (manifests).
#[derive(serde::Deserialize)]
struct ManifestShape {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

pub fn read_layout(dir: &Path) -> Result<LayoutImage, LayoutError> {
    let top = layout::read_index(dir)?;
    let mut out = LayoutImage {
        blobs: Vec::new(),
        manifests: Vec::new(),
    };
    let mut seen = BTreeSet::new();
    collect(dir, &top, &mut out, &mut seen, 0)?;
    Ok(out)
}

fn collect(
    dir: &Path,
    desc: &Descriptor,
    out: &mut LayoutImage,
    seen: &mut BTreeSet<Digest>,
    depth: usize,
) -> Result<(), LayoutError> {
    let (shape, bytes): (ManifestShape, _) = layout::read_json(dir, desc)?;
    let media_type = if desc.media_type.is_empty() {
        shape.media_type.clone().unwrap_or_default()
    } else {
        desc.media_type.clone()
    };
    if media_type::is_index(&media_type) && depth == 0 {
        for child in &shape.manifests {
            collect(dir, child, out, seen, depth + 1)?;
        }
    } else if media_type::is_image_manifest(&media_type) {
        for d in shape.config.iter().chain(shape.layers.iter()) {
            if !seen.insert(d.digest) {
                continue;
            }
            out.blobs.push(Blob {
                digest: d.digest,
                size: d.size,
                source: BlobSource::File(layout::sized_blob(dir, d)?),
            });
        }
    } else {
        return Err(LayoutError::MediaType {
            digest: desc.digest,
            media_type,
        });
    }
    out.manifests.push(ManifestBlob {
        media_type,
        digest: desc.digest,
        bytes,
    });
    Ok(())
}
