//! How a Debian toolchain's root travels to a remote worker: not as files in the input root
//! (a root is hundreds of megabytes of hard links), but as its *pins*, a small canonical blob
//! in the CAS that the worker materialises the root from, the way a build on a second machine
//! does from kiln.lock.
//!
//! The blob is JSON, written from ordered structs:
//!
//! ```json
//! {"format":"kiln-toolchain-root-v1","set":"sha256:…","package":[{"name":"binutils",…},…]}
//! ```
//!
//! `package` is every pinned package sorted by name, with the fields kiln.lock records (name,
//! version, architecture, suite, filename, size, .deb sha256, source); `set` is their set
//! digest, which names the root on every machine. The same pins give the same bytes, so the
//! same digest, wherever they are encoded. The Action names the blob in the platform property
//! [`ROOT_PROPERTY`] as `<sha256 hex>/<size>` (REAPI's digest notation); platform properties
//! are part of the Action digest, so actions over different roots never share a result.
//!
//! A worker reads the blob (verified against that digest like every blob), [`decode`] checks
//! the format and that `set` is the set digest of `package`, and the worker materialises the
//! root from its own Debian store or mirror, every .deb checked against its pinned sha256.
//!
//! The other properties of such an action: [`SANDBOX_PROPERTY`] `=bwrap` (a scheduler matches
//! it against the workers that advertise it: a worker that can run bubblewrap over a root), and
//! [`CONTAINER_IMAGE_PROPERTY`], REAPI's conventional name for the image to run an action in,
//! when the toolchain file names a pushed toolchain image, for workers in the field that run
//! actions in containers.

use serde::{Deserialize, Serialize};

use super::blob::BlobDigest;
use crate::debian::locked::{set_digest, LockedPackage};
use crate::digest::Digest;

/// Platform property naming the pins blob.
pub const ROOT_PROPERTY: &str = "kiln-toolchain-root";
/// Platform property asking for a worker that runs commands in bubblewrap over a root.
pub const SANDBOX_PROPERTY: &str = "kiln-sandbox";
/// The one sandbox there is.
pub const SANDBOX_BWRAP: &str = "bwrap";
/// REAPI's conventional property for the container image an action runs in.
pub const CONTAINER_IMAGE_PROPERTY: &str = "container-image";

const FORMAT: &str = "kiln-toolchain-root-v1";

/// The pins of a toolchain root, as the blob holds them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootPins {
    format: String,
    /// The set digest of `package`: the root's name.
    pub set: Digest,
    /// Sorted by name.
    pub package: Vec<LockedPackage>,
}

#[derive(Debug, thiserror::Error)]
pub enum PinsError {
    #[error("the toolchain root's pins do not parse: {0}")]
    Parse(String),
    #[error("the toolchain root's pins are in format {0:?}, not {FORMAT}")]
    Format(String),
    #[error("the toolchain root's pins say set {claimed}, but their packages make {actual}")]
    Set { claimed: Digest, actual: Digest },
    #[error("platform property {ROOT_PROPERTY}={0:?} is not <sha256 hex>/<size>")]
    Property(String),
}

impl RootPins {
    pub fn new(packages: &[LockedPackage]) -> RootPins {
        let mut package = packages.to_vec();
        package.sort();
        package.dedup();
        RootPins {
            format: FORMAT.to_string(),
            set: set_digest(&package),
            package,
        }
    }

    /// The canonical bytes and their digest.
    pub fn encode(&self) -> (BlobDigest, Vec<u8>) {
        let bytes = serde_json::to_vec(self).expect("pins serialise");
        (BlobDigest::of(&bytes), bytes)
    }
}

/// The pins in `bytes` (already verified against their digest), checked.
pub fn decode(bytes: &[u8]) -> Result<RootPins, PinsError> {
    let pins: RootPins =
        serde_json::from_slice(bytes).map_err(|e| PinsError::Parse(e.to_string()))?;
    if pins.format != FORMAT {
        return Err(PinsError::Format(pins.format));
    }
    let actual = set_digest(&pins.package);
    if actual != pins.set {
        return Err(PinsError::Set {
            claimed: pins.set,
            actual,
        });
    }
    Ok(pins)
}

/// The property value naming `blob`.
pub fn property_value(blob: &BlobDigest) -> String {
    format!("{}/{}", blob.digest.hex(), blob.size)
}

/// The blob a [`ROOT_PROPERTY`] value names.
pub fn parse_property(value: &str) -> Result<BlobDigest, PinsError> {
    let bad = || PinsError::Property(value.to_string());
    let (hex, size) = value.split_once('/').ok_or_else(bad)?;
    let digest: Digest = format!("sha256:{hex}").parse().map_err(|_| bad())?;
    let size: u64 = size.parse().map_err(|_| bad())?;
    Ok(BlobDigest { digest, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            suite: "bookworm".into(),
            filename: format!("pool/{name}.deb"),
            size: 10,
            sha256: Digest::of(name.as_bytes()),
            source: name.into(),
            source_version: version.into(),
        }
    }

    #[test]
    fn the_same_pins_in_any_order_make_the_same_blob_and_others_another() {
        let a = RootPins::new(&[pkg("a", "1"), pkg("b", "1")]).encode();
        assert_eq!(a, RootPins::new(&[pkg("b", "1"), pkg("a", "1")]).encode());
        assert_ne!(
            a.0,
            RootPins::new(&[pkg("a", "2"), pkg("b", "1")]).encode().0
        );
        let back = decode(&a.1).unwrap();
        assert_eq!(back, RootPins::new(&[pkg("a", "1"), pkg("b", "1")]));
    }

    #[test]
    fn pins_whose_set_does_not_follow_from_their_packages_are_refused() {
        let mut p = RootPins::new(&[pkg("a", "1")]);
        p.package[0].sha256 = Digest::of(b"other");
        let (_, bytes) = p.encode();
        assert!(matches!(decode(&bytes), Err(PinsError::Set { .. })));
        let text = String::from_utf8(RootPins::new(&[pkg("a", "1")]).encode().1)
            .unwrap()
            .replace(FORMAT, "kiln-toolchain-root-v0");
        assert!(matches!(decode(text.as_bytes()), Err(PinsError::Format(_))));
        assert!(matches!(decode(b"{}"), Err(PinsError::Parse(_))));
    }

    #[test]
    fn the_property_names_the_blob() {
        let (d, _) = RootPins::new(&[pkg("a", "1")]).encode();
        let v = property_value(&d);
        assert_eq!(parse_property(&v).unwrap(), d);
        for bad in ["", "abc", "abc/1", &format!("{}/x", d.digest.hex())] {
            assert!(parse_property(bad).is_err(), "{bad}");
        }
    }
}
