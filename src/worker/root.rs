//! The toolchain root a lease's action runs in (see [`crate::remote::toolchain_root`]): the
//! pins blob its `kiln-toolchain-root` property names, read from the CAS (verified against
//! that digest), checked, and materialised in this machine's Debian store through the same
//! code a build uses ([`hermetic::materialise_pins`]: trees already there, else .debs from the
//! mirror, each checked against its pinned sha256). A root already in the store costs a
//! `stat`, so a worker materialises each set once, and workers sharing a store share roots.

use std::path::PathBuf;

use super::Roots;
use crate::exec::Runner;
use crate::remote::toolchain_root::{self, ROOT_PROPERTY};
use crate::remote::RemoteCache;
use crate::toolchain::hermetic;

/// Why the root an action names cannot be had on this worker.
#[derive(Debug, thiserror::Error)]
#[error("cannot materialise the toolchain root {property}: {detail}")]
pub struct RootError {
    /// The `kiln-toolchain-root` value, which names the pins blob.
    pub property: String,
    pub detail: String,
}

/// The root's directory on this machine for the property value `value`.
pub fn materialise(
    remote: &RemoteCache,
    runner: &dyn Runner,
    roots: Option<&Roots>,
    value: &str,
) -> Result<PathBuf, RootError> {
    let fail = |detail: String| RootError {
        property: value.to_string(),
        detail,
    };
    let Some(roots) = roots else {
        return Err(fail(
            "this worker runs no sandbox (bubblewrap is not installed here)".into(),
        ));
    };
    let blob = toolchain_root::parse_property(value).map_err(|e| fail(e.to_string()))?;
    let bytes = remote
        .read_blobs(&[blob])
        .map_err(|e| fail(format!("reading its pins: {}", crate::error::chain(&e))))?
        .remove(&blob)
        .ok_or_else(|| fail(format!("the CAS has no {ROOT_PROPERTY} blob")))?;
    let pins = toolchain_root::decode(&bytes).map_err(|e| fail(e.to_string()))?;
    let name = format!("root {}", pins.set);
    let (_, dir) = hermetic::materialise_pins(runner, &name, &pins.package, roots.store.clone())
        .map_err(|e| fail(crate::error::chain(&e)))?;
    Ok(dir)
}
