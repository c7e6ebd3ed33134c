//! The OCI vocabulary every other module speaks: descriptors, media types, manifests, indexes and
//! the image layout on disk.
//!
//! The image writer ([`crate::image`]), the pusher ([`crate::registry`]), `kiln verify` and the
//! SBOM writer all describe OCI objects with these types, so they agree on the format by
//! construction. Nothing outside this module spells a media type or a blob path.
//!
//! The structs are kiln's own serde types rather than oci-spec's: theirs hold annotations in
//! `HashMap`s, whose iteration order would make a manifest's digest vary from run to run. Fields
//! serialise in declaration order and optional ones are left out when empty, so one struct can
//! describe both an image manifest and an artifact manifest byte-for-byte as each is expected.

mod descriptor;
pub mod layout;
mod manifest;
pub mod media_type;

pub use descriptor::{Descriptor, Platform};
pub use layout::LayoutError;
pub use manifest::{to_json, Index, Manifest};

/// Annotation naming a manifest in a layout's `index.json` (what `oci:<dir>:<ref>` selects).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation with an object's creation time (RFC 3339).
pub const CREATED: &str = "org.opencontainers.image.created";
