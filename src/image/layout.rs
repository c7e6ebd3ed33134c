//! Reading back a layout kiln wrote: its single manifest and the image config it names.
//!
//! The layout format itself (paths, atomic write, digest-checked reads) is [`crate::oci::layout`];
//! this adds what only images have, the parsed [`ImageConfig`]. The index entry carries
//! `org.opencontainers.image.ref.name` = the service version, so `skopeo`/`podman` address it
//! as `oci:<dir>:<version>`.

use std::path::{Path, PathBuf};

use super::config::ImageConfig;
use super::ImageError;
use crate::digest::Digest;
use crate::oci::{self, media_type, Descriptor, Manifest};

/// (manifest, config, layer) media types of a format.
pub fn media_types(format: super::ManifestFormat) -> (&'static str, &'static str, &'static str) {
    match format {
        super::ManifestFormat::Oci => (
            media_type::IMAGE_MANIFEST,
            media_type::IMAGE_CONFIG,
            media_type::IMAGE_LAYER_GZIP,
        ),
        super::ManifestFormat::Docker => (
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_CONFIG,
            media_type::DOCKER_LAYER_GZIP,
        ),
    }
}

/// A layout read back: its single manifest and the config it names.
#[derive(Clone, Debug)]
pub struct LoadedImage {
    pub dir: PathBuf,
    pub manifest_descriptor: Descriptor,
    pub manifest: Manifest,
    pub config: ImageConfig,
}

impl LoadedImage {
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        oci::layout::blob_path(&self.dir, digest)
    }
}

pub fn read_layout(dir: &Path) -> Result<LoadedImage, ImageError> {
    let desc = oci::layout::read_index(dir)?;
    let (manifest, _): (Manifest, _) = oci::layout::read_json(dir, &desc)?;
    let (config, _): (ImageConfig, _) = oci::layout::read_json(dir, &manifest.config)?;
    Ok(LoadedImage {
        dir: dir.to_path_buf(),
        manifest_descriptor: desc,
        manifest,
        config,
    })
}
