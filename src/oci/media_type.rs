//! Media types kiln writes or accepts, in one place.

/// OCI image manifest.
pub const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const IMAGE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image configuration.
pub const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip-compressed layer.
pub const IMAGE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The spec's empty JSON `{}`, the config of artifacts that have none of their own.
pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Docker image manifest v2 schema 2, for `[image] format = "docker"`: the same bytes in every
/// blob but the manifest, which only changes its media types (and carries no annotations, which
/// schema 2 does not define). Podman honours an image's `Healthcheck` only for this format.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (the schema 2 counterpart of an image index); accepted when pushing.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image configuration.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip-compressed layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// SPDX 2.3 JSON document (an SBOM artifact).
pub const SPDX: &str = "application/spdx+json";
/// CycloneDX JSON document (an SBOM artifact).
pub const CYCLONEDX: &str = "application/vnd.cyclonedx+json";
/// in-toto statement (the provenance artifact).
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// Whether `media_type` names a single-image manifest (OCI or Docker).
pub fn is_image_manifest(media_type: &str) -> bool {
    matches!(media_type, IMAGE_MANIFEST | DOCKER_MANIFEST)
}

/// Whether `media_type` names a list of manifests (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    matches!(media_type, IMAGE_INDEX | DOCKER_MANIFEST_LIST)
}
