//! Reading what to push from an OCI image layout directory.
//!
//! Only manifests are read into memory (they are small and must be sent byte-for-byte, since
//! their digest is over the exact bytes); layers are described by path and size and streamed
//! later. The layout's `index.json` must name exactly one manifest: an image manifest, or an
//! image index whose child manifests are in the same layout.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::upload::{Blob, BlobSource};
use crate::digest::Digest;

pub const MEDIA_TYPE_IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_IMAGE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} names {count} manifests; a pushed layout must name exactly one")]
    NotOneManifest { path: PathBuf, count: usize },
    #[error("blob {digest} is missing from the layout ({path})")]
    MissingBlob { digest: Digest, path: PathBuf },
    #[error("blob {digest} in the layout is {actual} bytes, but its descriptor says {expected}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("manifest {digest} in the layout does not hash to its digest")]
    ManifestDigest { digest: Digest },
    #[error("manifest {digest} has unsupported media type {media_type:?}")]
    MediaType { digest: Digest, media_type: String },
}

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

#[derive(serde::Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: Digest,
    size: u64,
}

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

pub fn blob_path(layout: &Path, digest: &Digest) -> PathBuf {
    layout.join("blobs/sha256").join(digest.hex())
}

fn parse_err(path: &Path, e: impl std::fmt::Display) -> LayoutError {
    LayoutError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

pub fn read_layout(layout: &Path) -> Result<LayoutImage, LayoutError> {
    let index_path = layout.join("index.json");
    let bytes = std::fs::read(&index_path).map_err(|source| LayoutError::Io {
        path: index_path.clone(),
        source,
    })?;
    let index: ManifestShape =
        serde_json::from_slice(&bytes).map_err(|e| parse_err(&index_path, e))?;
    if index.manifests.len() != 1 {
        return Err(LayoutError::NotOneManifest {
            path: index_path,
            count: index.manifests.len(),
        });
    }
    let mut out = LayoutImage {
        blobs: Vec::new(),
        manifests: Vec::new(),
    };
    let mut seen = BTreeSet::new();
    collect(layout, &index.manifests[0], &mut out, &mut seen, 0)?;
    Ok(out)
}

fn collect(
    layout: &Path,
    desc: &Descriptor,
    out: &mut LayoutImage,
    seen: &mut BTreeSet<Digest>,
    depth: usize,
) -> Result<(), LayoutError> {
    let path = blob_path(layout, &desc.digest);
    let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => LayoutError::MissingBlob {
            digest: desc.digest,
            path: path.clone(),
        },
        _ => LayoutError::Io {
            path: path.clone(),
            source,
        },
    })?;
    if Digest::of(&bytes) != desc.digest {
        return Err(LayoutError::ManifestDigest {
            digest: desc.digest,
        });
    }
    let shape: ManifestShape = serde_json::from_slice(&bytes).map_err(|e| parse_err(&path, e))?;
    let media_type = if desc.media_type.is_empty() {
        shape.media_type.clone().unwrap_or_default()
    } else {
        desc.media_type.clone()
    };
    match media_type.as_str() {
        MEDIA_TYPE_IMAGE_INDEX | MEDIA_TYPE_DOCKER_LIST if depth == 0 => {
            for child in &shape.manifests {
                collect(layout, child, out, seen, depth + 1)?;
            }
        }
        MEDIA_TYPE_IMAGE_MANIFEST | MEDIA_TYPE_DOCKER_MANIFEST => {
            for d in shape.config.iter().chain(shape.layers.iter()) {
                if !seen.insert(d.digest) {
                    continue;
                }
                let p = blob_path(layout, &d.digest);
                let meta = std::fs::metadata(&p).map_err(|source| match source.kind() {
                    std::io::ErrorKind::NotFound => LayoutError::MissingBlob {
                        digest: d.digest,
                        path: p.clone(),
                    },
                    _ => LayoutError::Io {
                        path: p.clone(),
                        source,
                    },
                })?;
                if meta.len() != d.size {
                    return Err(LayoutError::SizeMismatch {
                        digest: d.digest,
                        expected: d.size,
                        actual: meta.len(),
                    });
                }
                out.blobs.push(Blob {
                    digest: d.digest,
                    size: d.size,
                    source: BlobSource::File(p),
                });
            }
        }
        _ => {
            return Err(LayoutError::MediaType {
                digest: desc.digest,
                media_type,
            })
        }
    }
    out.manifests.push(ManifestBlob {
        media_type,
        digest: desc.digest,
        bytes,
    });
    Ok(())
}
