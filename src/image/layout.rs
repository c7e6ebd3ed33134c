//! OCI image layouts on disk: `oci-layout`, `index.json` and `blobs/sha256/<hex>`.
//!
//! The index holds exactly one manifest descriptor, annotated with
//! `org.opencontainers.image.ref.name` = the service version, so `skopeo`/`podman` address it as
//! `oci:<dir>:<version>`. Manifest and index are kiln's own serde structs (fields in declaration
//! order, `BTreeMap` annotations) because oci-spec's use `HashMap`s, whose order would make the
//! manifest digest vary from run to run.
//!
//! A layout is replaced whole: it is built in a temp directory beside the target and renamed into
//! place, so a reader sees the old layout or the new one, never a mix. Temp directories left by a
//! killed build (`.<name>.new-*`, `.<name>.old-*`) are removed by the next write; the workspace
//! lock guarantees nobody else is writing them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::ImageConfig;
use super::ImageError;
use crate::digest::Digest;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Docker's image manifest v2 schema 2 media types, for `[image] format = "docker"`: the same
/// bytes in every blob but the manifest, which only changes its media types (and carries no
/// annotations, which schema 2 does not define). Podman honours an image's `Healthcheck` only
/// for this format.
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_MEDIA_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// (manifest, config, layer) media types of a format.
pub fn media_types(format: super::ManifestFormat) -> (&'static str, &'static str, &'static str) {
    match format {
        super::ManifestFormat::Oci => (MANIFEST_MEDIA_TYPE, CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE),
        super::ManifestFormat::Docker => (
            DOCKER_MANIFEST_MEDIA_TYPE,
            DOCKER_CONFIG_MEDIA_TYPE,
            DOCKER_LAYER_MEDIA_TYPE,
        ),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

pub fn descriptor(media_type: &str, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest,
        size,
        platform: None,
        annotations: BTreeMap::new(),
    }
}

/// Pretty JSON with a trailing newline: readable in `cat`, and stable because the structs are.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("layout structs serialise");
    bytes.push(b'\n');
    bytes
}

/// A blob to place in the layout: either bytes kiln holds or a file (a cached layer).
pub enum Blob<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// Writes a complete layout at `dir`, replacing any previous one (see the module comment).
pub fn write_layout(dir: &Path, index: &Index, blobs: &[(Digest, Blob)]) -> Result<(), ImageError> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(ImageError::io("creating", parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    remove_leftovers(parent, &name);
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.new-"))
        .tempdir_in(parent)
        .map_err(ImageError::io("creating a temp directory in", parent))?;
    let blob_dir = tmp.path().join("blobs/sha256");
    std::fs::create_dir_all(&blob_dir).map_err(ImageError::io("creating", &blob_dir))?;
    for (digest, blob) in blobs {
        let dst = blob_dir.join(digest.hex());
        match blob {
            Blob::Bytes(bytes) => {
                std::fs::write(&dst, bytes).map_err(ImageError::io("writing", &dst))?
            }
            // A hard link shares the cache's bytes when both live on one filesystem.
            Blob::File(src) => {
                if std::fs::hard_link(src, &dst).is_err() {
                    std::fs::copy(src, &dst).map_err(ImageError::io("copying", *src))?;
                }
            }
        }
    }
    let oci_layout = tmp.path().join("oci-layout");
    std::fs::write(&oci_layout, b"{\"imageLayoutVersion\":\"1.0.0\"}\n")
        .map_err(ImageError::io("writing", &oci_layout))?;
    let index_path = tmp.path().join("index.json");
    std::fs::write(&index_path, to_json(index)).map_err(ImageError::io("writing", &index_path))?;

    let staged = tmp.keep();
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let had_old = dir.exists();
    if had_old {
        std::fs::rename(dir, &old).map_err(ImageError::io("moving aside", dir))?;
    }
    if let Err(e) = std::fs::rename(&staged, dir) {
        if had_old {
            let _ = std::fs::rename(&old, dir);
        }
        let _ = std::fs::remove_dir_all(&staged);
        return Err(ImageError::io("renaming the new layout to", dir)(e));
    }
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

/// Removes what a killed write of layout `name` left in `parent`.
fn remove_leftovers(parent: &Path, name: &str) {
    let (new, old) = (format!(".{name}.new-"), format!(".{name}.old-"));
    for e in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(&new) || n.starts_with(&old) {
            let _ = std::fs::remove_dir_all(e.path());
        }
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
        self.dir.join("blobs/sha256").join(digest.hex())
    }
}

pub fn read_layout(dir: &Path) -> Result<LoadedImage, ImageError> {
    let bad = |reason: String| ImageError::BadLayout {
        path: dir.to_path_buf(),
        reason,
    };
    let read_json = |rel: PathBuf| -> Result<Vec<u8>, ImageError> {
        let path = dir.join(&rel);
        std::fs::read(&path).map_err(ImageError::io("reading", path))
    };
    let index: Index = serde_json::from_slice(&read_json("index.json".into())?)
        .map_err(|e| bad(format!("index.json: {e}")))?;
    let [desc] = index.manifests.as_slice() else {
        return Err(bad(format!(
            "index.json has {} manifests, kiln expects one",
            index.manifests.len()
        )));
    };
    let manifest: Manifest = serde_json::from_slice(&read_json(
        PathBuf::from("blobs/sha256").join(desc.digest.hex()),
    )?)
    .map_err(|e| bad(format!("manifest {}: {e}", desc.digest)))?;
    let config: ImageConfig = serde_json::from_slice(&read_json(
        PathBuf::from("blobs/sha256").join(manifest.config.digest.hex()),
    )?)
    .map_err(|e| bad(format!("config {}: {e}", manifest.config.digest)))?;
    Ok(LoadedImage {
        dir: dir.to_path_buf(),
        manifest_descriptor: desc.clone(),
        manifest,
        config,
    })
}
