//! Image assembly: runtime closure, deterministic layers, OCI config/manifest/layout.
//!
//! The build engine calls [`assemble`] once per service after its binary is linked; `kiln inspect`
//! calls [`inspect`]; [`write_docker_archive`] exports a layout for `podman load`.
//!
//! The steps, each in its own module: resolve the closure ([`crate::closure`]), strip
//! ([`strip`]), plan the layers ([`plan`], [`base`], [`extra`]), write them through the layer
//! cache ([`crate::layer`]), describe them ([`config`], [`layout`]), check the budget
//! ([`budget`]) and only then replace the layout on disk.

mod assemble;
pub mod base;
pub mod budget;
pub mod config;
mod context;
mod docker;
mod error;
mod extra;
pub mod index;
mod inspect;
pub mod layout;
pub mod plan;
pub mod planned;
pub mod safety;
pub mod strip;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::digest::Digest;
pub use crate::dpkg::{DebPackage, Origin};

pub use assemble::{assemble, assemble_in, assemble_tiered};
pub use context::ImageContext;
pub use docker::{write_docker_archive, write_docker_archive_many};
pub use error::ImageError;
pub use inspect::{inspect, FileInspection, Inspection, LayerInspection, ToolchainLabel};

/// Language family of a service; selects the family-runtime layer and the default budget.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    #[serde(rename = "c++")]
    Cxx,
    Ada,
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Cxx => "c++",
            Family::Ada => "ada",
        })
    }
}

/// How the image's manifest is written (`[image] format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManifestFormat {
    /// OCI image manifest 1.1 (the default).
    #[default]
    Oci,
    /// Docker image manifest v2 schema 2, for runtimes that read `Healthcheck` only from it.
    Docker,
}

/// A file or directory the recipe adds to the image.
#[derive(Clone, Debug)]
pub struct ExtraFile {
    /// Absolute host path (already validated to exist inside the workspace).
    pub src: PathBuf,
    /// Absolute path inside the image.
    pub dst: String,
    pub mode: Option<u32>,
}

/// The recipe's health check, as the image config's Docker-compatible `Healthcheck` carries it.
pub use crate::recipe::Healthcheck;

/// Everything needed to assemble one service image. Filled by the build engine from the recipe.
#[derive(Clone, Debug)]
pub struct ImageRequest {
    pub service: String,
    pub family: Family,
    pub version: String,
    pub description: String,
    pub licenses: String,
    /// Git revision of the workspace (full hash) or "unknown".
    pub revision: String,
    /// Source location for the `org.opencontainers.image.source` label.
    pub source: String,
    /// The linked service executable (absolute host path); installed as /usr/local/bin/<name>.
    pub binary: PathBuf,
    /// Name of the binary in the image (`/usr/local/bin/<binary_name>`).
    pub binary_name: String,
    /// Shared libraries the workspace built that the binary needs (absolute host paths);
    /// installed in /usr/local/lib.
    pub workspace_libs: Vec<PathBuf>,
    /// Library directories of the toolchain, searched after DT_RUNPATH and before the defaults.
    pub library_paths: Vec<PathBuf>,
    pub extra_files: Vec<ExtraFile>,
    /// dlopen'd libraries (sonames or absolute paths) ELF cannot show.
    pub extra_libraries: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<u16>,
    pub workdir: String,
    pub labels: BTreeMap<String, String>,
    pub healthcheck: Option<Healthcheck>,
    pub stop_signal: String,
    pub ca_certificates: bool,
    pub format: ManifestFormat,
    /// Seconds since the epoch used for every mtime and the `created` field.
    pub source_date_epoch: i64,
    /// Compressed-size budget in bytes.
    pub budget: u64,
    /// `out/images/<service>` (written atomically).
    pub layout_dir: PathBuf,
    /// `out/debug` (debug info as `<service>.debug`).
    pub debug_dir: PathBuf,
    /// Cache directory for layers (`$KILN_CACHE/layers`).
    pub cache_dir: PathBuf,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LayerSummary {
    pub digest: Digest,
    pub diff_id: Digest,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    pub description: String,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ImageResult {
    pub layout: PathBuf,
    /// Digest of the image manifest.
    pub digest: Digest,
    /// Config plus every layer, compressed (what the budget limits).
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    pub budget: u64,
    pub layers: Vec<LayerSummary>,
    /// Every regular file in the image, by path, with the layer (index into `layers`) holding it.
    pub files: Vec<ImageFile>,
    /// Debian packages with files in the image, sorted by name.
    pub packages: Vec<DebPackage>,
    /// Where the service binary's debug info went (`<debug_dir>/<service>.debug`).
    pub debug_file: PathBuf,
    /// Cached layers found damaged (and rewritten) while assembling, for the build's warning.
    #[serde(skip)]
    pub damage: Vec<crate::cache::Damage>,
}

/// One regular file of an image, for the SBOM.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageFile {
    pub path: String,
    pub size: u64,
    pub sha256: Digest,
    pub layer: usize,
    pub origin: Origin,
}

pub(crate) fn is_system_file(path: &std::path::Path) -> bool {
    ["/usr/", "/lib", "/etc/"]
        .iter()
        .any(|p| path.starts_with(p) || path.to_string_lossy().starts_with(p))
}
