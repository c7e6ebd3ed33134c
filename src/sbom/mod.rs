//! Software bills of materials and build provenance for each image.
//!
//! For every service image, [`write_for_image`] writes three files:
//! - `out/sbom/<service>.spdx.json`: SPDX 2.3 ([`spdx`]),
//! - `out/sbom/<service>.cdx.json`: CycloneDX 1.5 ([`cyclonedx`]),
//! - `out/provenance/<service>.intoto.json`: an in-toto v1 Statement with a SLSA v1 provenance
//!   predicate ([`provenance`]).
//!
//! [`artifacts`] reads them back for `kiln push`, which attaches them to the pushed manifest as
//! OCI referrers.
//!
//! What must stay stable: the bytes. The files are attached to images by digest and compared
//! across rebuilds, so the same image and inputs must give the same bytes on any machine and
//! any day. Hence no wall-clock time (SOURCE_DATE_EPOCH instead), identifiers derived from the
//! image digest rather than random, every list in a defined order, and nothing from the host
//! that the image does not already pin (no absolute workspace paths, no hostnames).
//!
//! Both SBOM formats are rendered from one [`inventory::Inventory`], so they cannot disagree on
//! what the image holds.

mod cyclonedx;
mod inventory;
mod layers;
mod license;
mod provenance;
mod purl;
mod spdx;
pub(crate) use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::image::ImageResult;
use crate::oci::media_type;
use crate::recipe::Recipe;
use crate::registry::{Artifact, ArtifactContent};
use crate::vcs::Meta;
use crate::workspace::OutDir;

pub use inventory::Inventory;
pub use purl::deb_purl;

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("{context}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("reading recipe {file} for the SBOM: {message}")]
    Recipe { file: String, message: String },
    #[error(
        "layer {layer} of the image has no regular file {path} (the image result says it does)"
    )]
    MissingFile { layer: String, path: String },
    #[error("no {what} for service `{service}` at {path}: build the service first")]
    NotBuilt {
        service: String,
        what: &'static str,
        path: PathBuf,
    },
    #[error("{path} is not a valid SPDX document: {message}")]
    Malformed { path: PathBuf, message: String },
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SbomError {
    let context = context.into();
    move |source| SbomError::Io { context, source }
}

/// What SBOM and provenance writers know about one image's build.
pub struct SbomInput<'a> {
    pub root: &'a Path,
    /// The kiln cache (`$KILN_CACHE`), for per-layer SHA-1 lists.
    pub cache_dir: &'a Path,
    pub recipe: &'a Recipe,
    pub meta: &'a Meta,
    pub image: &'a ImageResult,
    /// `(toolchain name, fingerprint)` of the toolchains that built the service.
    pub toolchains: Vec<(String, crate::digest::Digest)>,
    /// Digests of the recipe files that went into the service (its own and its libraries').
    pub recipes: Vec<(String, crate::digest::Digest)>,
}

/// Where the three documents of `service` live under the workspace `root`.
pub struct Paths {
    pub spdx: PathBuf,
    pub cyclonedx: PathBuf,
    pub provenance: PathBuf,
}

impl Paths {
    pub fn of(root: &Path, service: &str) -> Paths {
        Paths::of_platform(root, None, service)
    }

    /// The documents of `service`'s image for `platform` (under that platform's out/, see
    /// [`OutDir::of_platform`]).
    pub fn of_platform(
        root: &Path,
        platform: Option<&crate::platform::Platform>,
        service: &str,
    ) -> Paths {
        let out = OutDir::of_platform(root, platform);
        Paths {
            spdx: out.spdx(service),
            cyclonedx: out.cyclonedx(service),
            provenance: out.provenance(service),
        }
    }
}

/// Whether all three documents of `service` exist (an unchanged image keeps them).
pub fn written_for(
    root: &Path,
    platform: Option<&crate::platform::Platform>,
    service: &str,
) -> bool {
    let p = Paths::of_platform(root, platform, service);
    p.spdx.is_file() && p.cyclonedx.is_file() && p.provenance.is_file()
}

/// Writes `out/sbom/<service>.spdx.json`, `out/sbom/<service>.cdx.json` and
/// `out/provenance/<service>.intoto.json`; returns the paths written.
pub fn write_for_image(input: &SbomInput) -> Result<Vec<PathBuf>, SbomError> {
    let inv = Inventory::of(input)?;
    let paths = Paths::of_platform(
        input.root,
        input.recipe.platform.as_ref(),
        &input.recipe.name,
    );
    let spdx = to_bytes(&spdx::document(&inv));
    let cdx = to_bytes(&cyclonedx::document(&inv));
    let byproducts = [
        (&paths.spdx, media_type::SPDX, &spdx),
        (&paths.cyclonedx, media_type::CYCLONEDX, &cdx),
    ]
    .map(|(p, media_type, bytes)| provenance::Byproduct {
        name: file_name(p),
        media_type,
        digest: crate::digest::Digest::of(bytes),
    });
    let prov = to_bytes(&provenance::statement(input, &inv, &byproducts));
    for (path, bytes) in [
        (&paths.spdx, &spdx),
        (&paths.cyclonedx, &cdx),
        (&paths.provenance, &prov),
    ] {
        crate::cache::atomic_write(path, bytes)
            .map_err(io_err(format!("writing {}", path.display())))?;
    }
    Ok(vec![paths.spdx, paths.cyclonedx, paths.provenance])
}

/// Pretty-printed with a final newline: the files are meant to be read and diffed by people too,
/// and serde_json's pretty printer is as deterministic as the compact one.
fn to_bytes(v: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).expect("a JSON value serializes");
    out.push(b'\n');
    out
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The artifacts to attach to a pushed image (SBOMs and provenance), read from out/.
///
/// Each carries `org.opencontainers.image.created` taken from the SPDX document's creation time
/// (itself SOURCE_DATE_EPOCH), so re-attaching after a rebuild yields identical manifests.
pub fn artifacts(root: &Path, service: &str) -> Result<Vec<Artifact>, SbomError> {
    artifacts_of(root, None, service)
}

/// [`artifacts`] of `service`'s image for `platform` (see [`Paths::of_platform`]).
pub fn artifacts_of(
    root: &Path,
    platform: Option<&crate::platform::Platform>,
    service: &str,
) -> Result<Vec<Artifact>, SbomError> {
    let paths = Paths::of_platform(root, platform, service);
    for (path, what) in [
        (&paths.spdx, "SPDX SBOM"),
        (&paths.cyclonedx, "CycloneDX SBOM"),
        (&paths.provenance, "provenance"),
    ] {
        if !path.is_file() {
            return Err(SbomError::NotBuilt {
                service: service.to_string(),
                what,
                path: path.clone(),
            });
        }
    }
    let created = spdx::created_of(&paths.spdx)?;
    let mut annotations = BTreeMap::new();
    annotations.insert(crate::oci::CREATED.to_string(), created);
    Ok([
        (paths.spdx, media_type::SPDX),
        (paths.cyclonedx, media_type::CYCLONEDX),
        (paths.provenance, media_type::IN_TOTO),
    ]
    .into_iter()
    .map(|(path, media_type)| Artifact {
        artifact_type: media_type.to_string(),
        media_type: media_type.to_string(),
        content: ArtifactContent::File(path),
        annotations: annotations.clone(),
    })
    .collect())
}
