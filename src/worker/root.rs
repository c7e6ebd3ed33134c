//! The toolchain root a lease's action runs in (see [`crate::remote::toolchain_root`]): the
//! pins blob its `kiln-toolchain-root` property names, read from the CAS by the caller
//! (verified against that digest), checked, and materialised in this machine's Debian store
//! through the same code a build uses ([`hermetic::materialise_pins`]: trees already there,
//! else .debs from the CAS, where the building machine uploads them, or the mirror, each
//! checked against its pinned sha256). A root already in the
//! store costs a `stat`, so a worker materialises each set once, and workers sharing a store
//! share roots.
//! When the action also names the toolchain's pushed image (`container-image`, a reference
//! kiln made), the missing trees are pulled from it first, as a build pulls from the toolchain
//! file's `image`: layer digests, the config's set and each tree's control data checked.

use std::path::PathBuf;

use super::Roots;
use crate::debian::root::root_dir;
use crate::exec::Runner;
use crate::remote::toolchain_root;
use crate::remote::BlobDigest;
use crate::toolchain::{hermetic, image};

/// Why the root an action names cannot be had on this worker.
#[derive(Debug, thiserror::Error)]
#[error("cannot materialise the toolchain root {property}: {detail}")]
pub struct RootError {
    /// The `kiln-toolchain-root` value, which names the pins blob.
    pub property: String,
    pub detail: String,
}

/// The pins blob a `kiln-toolchain-root` value names (for the caller to read, so that a blob
/// the CAS lost is reported missing like any other input).
pub fn pins_blob(value: &str) -> Result<BlobDigest, RootError> {
    toolchain_root::parse_property(value).map_err(|e| RootError {
        property: value.to_string(),
        detail: e.to_string(),
    })
}

/// The root's directory on this machine, from the pins blob's `bytes` (already verified
/// against the digest `value` names), with the sandbox settings to run in it.
pub fn materialise<'a>(
    runner: &dyn Runner,
    roots: Option<&'a Roots>,
    value: &str,
    bytes: &[u8],
    container_image: Option<&str>,
    cas: Option<&dyn crate::debian::DebSource>,
) -> Result<(PathBuf, &'a Roots), RootError> {
    let fail = |detail: String| RootError {
        property: value.to_string(),
        detail,
    };
    let Some(roots) = roots else {
        return Err(fail(
            "this worker runs no sandbox (bubblewrap is not installed here)".into(),
        ));
    };
    let pins = toolchain_root::decode(bytes).map_err(|e| fail(e.to_string()))?;
    let name = format!("root {}", pins.set);
    if let Some((location, toolchain)) = container_image.and_then(image::location_of_reference) {
        if !root_dir(&roots.store, &pins.set).is_dir() {
            // The trees from the toolchain image, each checked against its pin; what it cannot
            // give, the mirror still may.
            match image::pull_location(&location, &toolchain, &pins.package, &roots.store) {
                Ok(r) => eprintln!(
                    "kiln: worker: {name}: pulled {} package tree(s) from {}",
                    r.pulled, r.reference
                ),
                Err(e) => eprintln!(
                    "kiln: worker: {name}: pulling from {location} failed, using the Debian archive: {}",
                    crate::error::chain(&e)
                ),
            }
        }
    }
    let (_, dir) =
        hermetic::materialise_pins(runner, &name, &pins.package, roots.store.clone(), cas)
            .map_err(|e| fail(crate::error::chain(&e)))?;
    Ok((dir, roots))
}

/// The server's CAS as a source of .debs: REAPI names a blob by its sha256 and size, which is
/// what a pin records, so the .debs a building machine uploaded need no mirror here.
pub struct CasDebs<'a>(pub &'a crate::remote::RemoteCache);

impl crate::debian::DebSource for CasDebs<'_> {
    fn deb(&self, sha256: &crate::digest::Digest, size: u64) -> Option<Vec<u8>> {
        let blob = BlobDigest {
            digest: *sha256,
            size,
        };
        self.0.read_blobs(&[blob]).ok()?.remove(&blob)
    }
}
